#include "lib/task/sched.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/image/records.h"

namespace ckpt::task {
namespace {

constexpr image::FieldSpec kSchedFields[] = {
    CKPT_FIELD(image::ckpt_sched, oom_score_adj, kSigned),
    CKPT_FIELD(image::ckpt_sched, nr_threads, kUnsigned),
};
CKPT_RECORD(image::CKPT_HDR_SCHED, "SCHED", image::ckpt_sched, kSchedFields, 0, kNone);

constexpr image::FieldSpec kSchedThreadFields[] = {
    CKPT_FIELD(image::ckpt_sched_thread, tid_ref, kUnsigned),
    CKPT_FIELD(image::ckpt_sched_thread, policy, kUnsigned),
    CKPT_FIELD(image::ckpt_sched_thread, flags, kHex),
    CKPT_FIELD(image::ckpt_sched_thread, nice, kSigned),
    CKPT_FIELD(image::ckpt_sched_thread, priority, kUnsigned),
    CKPT_FIELD(image::ckpt_sched_thread, runtime_ns, kUnsigned),
    CKPT_FIELD(image::ckpt_sched_thread, deadline_ns, kUnsigned),
    CKPT_FIELD(image::ckpt_sched_thread, period_ns, kUnsigned),
    CKPT_FIELD(image::ckpt_sched_thread, nr_cpu_words, kUnsigned),
    CKPT_FIELD(image::ckpt_sched_thread, reserved, kHex),
};
CKPT_RECORD(image::CKPT_HDR_SCHED_THREAD, "SCHED_THREAD", image::ckpt_sched_thread,
            kSchedThreadFields, 8ull * image::kMaxCpuWords, kU64Array);

// The kernel's struct sched_attr (sched_setattr(2)), first version plus
// the utilization clamps.
struct SchedAttr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime;
  uint64_t sched_deadline;
  uint64_t sched_period;
  uint32_t sched_util_min;
  uint32_t sched_util_max;
};

constexpr uint32_t kSchedOther = 0, kSchedFifo = 1, kSchedRr = 2, kSchedBatch = 3,
                   kSchedIdle = 5, kSchedDeadline = 6;
constexpr uint64_t kResetOnFork = 0x01;
// The flags a restore sets again; the others (reclaim, dl-overrun, the
// clamps) are refused at dump, not silently dropped.
constexpr uint64_t kKeptFlags = kResetOnFork;

absl::StatusOr<int32_t> ReadOomScoreAdj(pid_t pid) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(absl::StrCat("/proc/", pid, "/oom_score_adj")));
  int32_t v = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &v)) {
    return absl::InternalError(absl::StrCat("/proc/", pid, "/oom_score_adj: '", text, "'"));
  }
  return v;
}

}  // namespace

absl::Status WriteSched(pid_t pid, const std::vector<std::pair<pid_t, uint32_t>>& threads,
                        image::Writer& w) {
  image::ckpt_sched rec{};
  ASSIGN_OR_RETURN(rec.oom_score_adj, ReadOomScoreAdj(pid));
  rec.nr_threads = static_cast<uint32_t>(threads.size());
  RETURN_IF_ERROR(w.AppendStruct(image::CKPT_HDR_SCHED, rec));
  for (const auto& [tid, tid_ref] : threads) {
    SchedAttr a{};
    if (syscall(SYS_sched_getattr, tid, &a, sizeof(a), 0) != 0) {
      return ErrnoError(errno, "task ", pid, " thread ", tid, ": sched_getattr");
    }
    if (a.sched_flags & ~(kKeptFlags | 0x60ull /* the clamp flags: not restored */)) {
      return absl::UnimplementedError(absl::StrCat("task ", pid, " thread ", tid,
                                                   ": scheduling flags 0x", absl::Hex(a.sched_flags),
                                                   " are not supported"));
    }
    // Utilization clamps (0..1024, 1024 the default maximum; both 0 on a
    // kernel without them) are not restored: refused rather than lost.
    if (a.sched_util_min != 0 || (a.sched_util_max != 0 && a.sched_util_max != 1024)) {
      return absl::UnimplementedError(absl::StrCat(
          "task ", pid, " thread ", tid, ": utilization clamps (", a.sched_util_min, "..",
          a.sched_util_max, ") are not supported"));
    }
    image::ckpt_sched_thread t{};
    t.tid_ref = tid_ref;
    t.policy = a.sched_policy;
    t.flags = a.sched_flags & kKeptFlags;
    t.nice = a.sched_nice;
    t.priority = a.sched_priority;
    t.runtime_ns = a.sched_runtime;
    t.deadline_ns = a.sched_deadline;
    t.period_ns = a.sched_period;
    std::vector<uint64_t> cpus(image::kMaxCpuWords, 0);
    long n = syscall(SYS_sched_getaffinity, tid, cpus.size() * sizeof(uint64_t), cpus.data());
    if (n < 0) return ErrnoError(errno, "task ", pid, " thread ", tid, ": sched_getaffinity");
    cpus.resize(static_cast<size_t>(n) / sizeof(uint64_t));
    while (!cpus.empty() && cpus.back() == 0) cpus.pop_back();
    t.nr_cpu_words = static_cast<uint32_t>(cpus.size());
    RETURN_IF_ERROR(w.AppendStructWith(image::CKPT_HDR_SCHED_THREAD, t, cpus.data(),
                                       cpus.size() * sizeof(uint64_t)));
  }
  return absl::OkStatus();
}

absl::StatusOr<TaskSched> ReadSched(image::Reader& r, uint32_t nr_threads) {
  ASSIGN_OR_RETURN(image::ckpt_sched rec, r.Expect<image::ckpt_sched>(image::CKPT_HDR_SCHED));
  if (rec.oom_score_adj < -1000 || rec.oom_score_adj > 1000) {
    return r.FieldError("oom_score_adj", rec.oom_score_adj, " is out of -1000..1000");
  }
  if (rec.nr_threads != nr_threads) {
    return r.FieldError("nr_threads", rec.nr_threads, " is not the task's ", nr_threads, " threads");
  }
  TaskSched s;
  s.oom_score_adj = rec.oom_score_adj;
  for (uint32_t i = 0; i < rec.nr_threads; ++i) {
    ThreadSched t;
    ASSIGN_OR_RETURN(t.rec, r.Expect<image::ckpt_sched_thread>(image::CKPT_HDR_SCHED_THREAD));
    const image::ckpt_sched_thread& x = t.rec;
    switch (x.policy) {
      case kSchedOther:
      case kSchedBatch:
      case kSchedIdle:
        if (x.priority != 0) return r.FieldError("priority", x.priority, " for a policy without one");
        if (x.nice < -20 || x.nice > 19) return r.FieldError("nice", x.nice, " is out of -20..19");
        break;
      case kSchedFifo:
      case kSchedRr:
        if (x.priority < 1 || x.priority > 99) {
          return r.FieldError("priority", x.priority, " is out of 1..99");
        }
        break;
      case kSchedDeadline:
        if (x.runtime_ns == 0 || x.runtime_ns > x.deadline_ns ||
            (x.period_ns != 0 && x.deadline_ns > x.period_ns)) {
          return r.FieldError("runtime_ns", x.runtime_ns, " does not fit deadline ", x.deadline_ns,
                              " and period ", x.period_ns);
        }
        break;
      default:
        return r.FieldError("policy", x.policy, " is not a scheduling policy");
    }
    if (x.flags & ~kKeptFlags) return r.FieldError("flags", absl::Hex(x.flags), " has unknown bits");
    if (x.reserved != 0) return r.FieldError("reserved", x.reserved, " is not zero");
    if (x.nr_cpu_words == 0 || x.nr_cpu_words > image::kMaxCpuWords) {
      return r.FieldError("nr_cpu_words", x.nr_cpu_words, " is out of 1..", image::kMaxCpuWords);
    }
    t.cpus.resize(x.nr_cpu_words);
    RETURN_IF_ERROR(r.ReadPayload(t.cpus.data(), t.cpus.size() * sizeof(uint64_t)));
    s.threads.push_back(std::move(t));
  }
  return s;
}

absl::Status ApplySched(pid_t pid, const TaskSched& s,
                        const std::function<pid_t(uint32_t tid_ref)>& tid_of) {
  for (const ThreadSched& t : s.threads) {
    const pid_t tid = tid_of(t.rec.tid_ref);
    if (tid <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "image record SCHED_THREAD: field 'tid_ref': ", t.rec.tid_ref, " is no thread of task ", pid));
    }
    // Affinity first: a real-time thread may not be movable later.
    if (syscall(SYS_sched_setaffinity, tid, t.cpus.size() * sizeof(uint64_t), t.cpus.data()) != 0) {
      std::vector<int> cpus;
      for (size_t w = 0; w < t.cpus.size(); ++w) {
        for (int b = 0; b < 64; ++b) {
          if (t.cpus[w] >> b & 1) cpus.push_back(static_cast<int>(w * 64 + b));
        }
      }
      return ErrnoError(errno, "task ", pid, " thread ", tid, ": CPU affinity {",
                        absl::StrJoin(cpus, ","), "} (sched_setaffinity; does this machine have those CPUs?)");
    }
    SchedAttr a{};
    a.size = sizeof(a);
    a.sched_policy = t.rec.policy;
    a.sched_flags = t.rec.flags;
    a.sched_nice = t.rec.nice;
    a.sched_priority = t.rec.priority;
    a.sched_runtime = t.rec.runtime_ns;
    a.sched_deadline = t.rec.deadline_ns;
    a.sched_period = t.rec.period_ns;
    // The first version of the struct: no clamps (they keep their defaults).
    a.size = offsetof(SchedAttr, sched_util_min);
    if (syscall(SYS_sched_setattr, tid, &a, 0) != 0) {
      return ErrnoError(errno, "task ", pid, " thread ", tid, ": scheduling policy ", t.rec.policy,
                        " priority ", t.rec.priority, " nice ", t.rec.nice, " (sched_setattr)");
    }
  }
  const std::string path = absl::StrCat("/proc/", pid, "/oom_score_adj");
  ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_WRONLY));
  const std::string v = absl::StrCat(s.oom_score_adj);
  if (write(fd.get(), v.data(), v.size()) != static_cast<ssize_t>(v.size())) {
    return ErrnoError(errno, "task ", pid, ": oom_score_adj ", s.oom_score_adj,
                      errno == EACCES ? " (lowering it needs CAP_SYS_RESOURCE)" : "");
  }
  return absl::OkStatus();
}

}  // namespace ckpt::task
