#include "lib/task/signals.h"

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <time.h>

#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "lib/base/clock.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/task/ptrace.h"

namespace ckpt::task {
namespace {

constexpr uint64_t kSaRestorer = 0x04000000;
constexpr uint64_t kKnownSaFlags = SA_NOCLDSTOP | SA_NOCLDWAIT | SA_SIGINFO | SA_ONSTACK |
                                   SA_RESTART | SA_NODEFER | SA_RESETHAND | kSaRestorer |
                                   0x00000400 /* SA_EXPOSE_TAGBITS */ |
                                   0x00000800 /* SA_UNSUPPORTED */;

constexpr long kPeekSiginfo = 0x4209;
constexpr uint32_t kPeekSiginfoShared = 1;
constexpr int kTimerCreateRestoreIds = 77;

struct PeekArgs {
  uint64_t off;
  uint32_t flags;
  int32_t nr;
};

// The kernel's struct sigevent (64 bytes).
struct KernelSigevent {
  uint64_t value;
  int32_t signo;
  int32_t notify;
  int32_t tid;
  int32_t pad[11];
};
static_assert(sizeof(KernelSigevent) == 64);

// Clocks that run while the task is frozen (wall and monotonic kinds), as
// opposed to CPU-time clocks.
bool RunsWhileFrozen(int clock) {
  return clock == CLOCK_REALTIME || clock == CLOCK_MONOTONIC || clock == CLOCK_BOOTTIME ||
         clock == CLOCK_TAI || clock == CLOCK_REALTIME_ALARM || clock == CLOCK_BOOTTIME_ALARM;
}

}  // namespace

SighandQuery QueueSighandQuery(SyscallBatch& b, uint64_t mask) {
  SighandQuery q;
  for (int sig = 1; sig <= 64; ++sig) {
    if (!(mask >> (sig - 1) & 1) || sig == SIGKILL || sig == SIGSTOP) continue;
    uint64_t out = b.Reserve(sizeof(image::ckpt_sigaction));
    b.Add(SYS_rt_sigaction, {static_cast<uint64_t>(sig), 0, out, 8});
    q.outputs.push_back({sig, out});
  }
  return q;
}

image::ckpt_sighand ReadSighand(const SyscallBatch& b, const SighandQuery& q) {
  image::ckpt_sighand sh{};
  for (const auto& [sig, out] : q.outputs) {
    std::memcpy(&sh.action[sig - 1], b.Output(out), sizeof(image::ckpt_sigaction));
  }
  return sh;
}

absl::Status WriteSighand(const image::ckpt_sighand& sh, image::Writer& w) {
  return w.AppendStruct(image::CKPT_HDR_SIGHAND, sh);
}

absl::StatusOr<image::ckpt_sighand> ReadSighandRecord(image::Reader& r) {
  ASSIGN_OR_RETURN(image::ckpt_sighand sh, r.Expect<image::ckpt_sighand>(image::CKPT_HDR_SIGHAND));
  for (int sig = 1; sig <= 64; ++sig) {
    const image::ckpt_sigaction& a = sh.action[sig - 1];
    if (a.flags & ~kKnownSaFlags) {
      return r.FieldError("flags", "signal ", sig, " has unknown flags ", a.flags);
    }
    if ((sig == SIGKILL || sig == SIGSTOP) && (a.handler != 0 || a.flags != 0)) {
      return r.FieldError("handler", "signal ", sig, " cannot have an action");
    }
  }
  return sh;
}

absl::Status QueueSighandRestore(SyscallQueue& q, const image::ckpt_sighand& sh) {
  RETURN_IF_ERROR(q.Reserve(64, sizeof(sh) + 64 * 16));
  SyscallBatch& b = q.batch();
  for (int sig = 1; sig <= 64; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    b.Add(SYS_rt_sigaction, {static_cast<uint64_t>(sig), b.AddStruct(sh.action[sig - 1]), 0, 8});
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<image::ckpt_siginfo>> PeekPending(pid_t tid, bool shared) {
  std::vector<image::ckpt_siginfo> out;
  image::ckpt_siginfo buf[32];
  for (;;) {
    PeekArgs args = {out.size(), shared ? kPeekSiginfoShared : 0, 32};
    long n = ptrace(static_cast<__ptrace_request>(kPeekSiginfo), tid, &args, buf);
    if (n < 0) {
      return ErrnoError(errno, TaskName(tid), ": reading its ", shared ? "process's " : "",
                        "pending signals");
    }
    if (n == 0) break;
    out.insert(out.end(), buf, buf + n);
    if (out.size() > image::kMaxPendingSignals) {
      return absl::UnimplementedError(absl::StrCat(TaskName(tid), ": more than ",
                                                   image::kMaxPendingSignals, " pending signals"));
    }
  }
  return out;
}

absl::StatusOr<std::vector<ProcTimer>> ReadProcTimers(pid_t pid) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(absl::StrCat("/proc/", pid, "/timers")));
  std::vector<ProcTimer> timers;
  auto bad = [&](absl::string_view line) {
    return absl::InternalError(absl::StrCat("/proc/", pid, "/timers: unexpected '", line, "'"));
  };
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (absl::ConsumePrefix(&line, "ID: ")) {
      timers.emplace_back();
      if (!absl::SimpleAtoi(line, &timers.back().id)) return bad(line);
      continue;
    }
    if (timers.empty()) return bad(line);
    ProcTimer& t = timers.back();
    if (absl::ConsumePrefix(&line, "signal: ")) {
      std::vector<absl::string_view> w = absl::StrSplit(line, '/');
      if (w.size() != 2 || !absl::SimpleAtoi(w[0], &t.signo) || !absl::SimpleHexAtoi(w[1], &t.value)) {
        return bad(line);
      }
    } else if (absl::ConsumePrefix(&line, "notify: ")) {
      // "signal/pid.123", "none/pid.123", "signal/tid.124"
      std::vector<absl::string_view> w = absl::StrSplit(line, absl::ByAnyChar("/."));
      if (w.size() != 3) return bad(line);
      if (w[0] == "signal") {
        t.notify = SIGEV_SIGNAL;
      } else if (w[0] == "none") {
        t.notify = SIGEV_NONE;
      } else {
        return absl::UnimplementedError(
            absl::StrCat("task ", pid, ": POSIX timer ", t.id, " notifies by '", w[0], "'"));
      }
      if (w[1] == "tid") {
        t.notify |= SIGEV_THREAD_ID;
        if (!absl::SimpleAtoi(w[2], &t.tid)) return bad(line);
      }
    } else if (absl::ConsumePrefix(&line, "ClockID: ")) {
      if (!absl::SimpleAtoi(line, &t.clock)) return bad(line);
    }
  }
  return timers;
}

SignalsQuery QueueSignalsQuery(SyscallBatch& b, std::vector<ProcTimer> timers) {
  SignalsQuery q;
  for (int which = 0; which < 3; ++which) {
    q.itimer_out[which] = b.Reserve(sizeof(struct itimerval));
    b.Add(SYS_getitimer, {static_cast<uint64_t>(which), q.itimer_out[which]});
  }
  for (const ProcTimer& t : timers) {
    uint64_t out = b.Reserve(sizeof(struct itimerspec));
    b.Add(SYS_timer_gettime, {static_cast<uint64_t>(t.id), out});
    q.timer_out.push_back(out);
    q.overrun_call.push_back(b.Add(SYS_timer_getoverrun, {static_cast<uint64_t>(t.id)}));
  }
  q.timers = std::move(timers);
  return q;
}

absl::StatusOr<TaskSignals> ReadSignalsQuery(
    const SyscallBatch& b, const SignalsQuery& q, int64_t elapsed_ns,
    const std::function<absl::StatusOr<uint32_t>(pid_t)>& tid_ref) {
  TaskSignals s;
  for (int which = 0; which < 3; ++which) {
    struct itimerval v;
    std::memcpy(&v, b.Output(q.itimer_out[which]), sizeof(v));
    s.rec.itimer[which].interval_ns = TimevalToNs(v.it_interval);
    int64_t value = TimevalToNs(v.it_value);
    // ITIMER_REAL counted on while the task was frozen.
    if (which == ITIMER_REAL && value > 0) value += elapsed_ns;
    s.rec.itimer[which].value_ns = value;
  }
  for (size_t i = 0; i < q.timers.size(); ++i) {
    const ProcTimer& t = q.timers[i];
    image::ckpt_posix_timer rec{};
    rec.id = t.id;
    rec.clock = t.clock;
    rec.notify = t.notify;
    rec.signo = t.signo;
    rec.value = t.value;
    if (t.notify & SIGEV_THREAD_ID) {
      ASSIGN_OR_RETURN(uint32_t ref, tid_ref(t.tid));
      rec.tid_ref = static_cast<int32_t>(ref);
    }
    struct itimerspec v;
    std::memcpy(&v, b.Output(q.timer_out[i]), sizeof(v));
    rec.interval_ns = TimespecToNs(v.it_interval);
    rec.value_ns = TimespecToNs(v.it_value);
    if (rec.value_ns > 0 && RunsWhileFrozen(t.clock)) rec.value_ns += elapsed_ns;
    int64_t overrun = b.ret(q.overrun_call[i]);
    rec.overrun = overrun > 0 ? static_cast<int32_t>(overrun) : 0;
    s.timers.push_back(rec);
  }
  return s;
}

absl::Status WriteSignals(const TaskSignals& s, image::Writer& w) {
  image::ckpt_signals rec = s.rec;
  rec.nr_pending = static_cast<uint32_t>(s.pending.size());
  rec.nr_timers = static_cast<uint32_t>(s.timers.size());
  RETURN_IF_ERROR(w.AppendStruct(image::CKPT_HDR_SIGNALS, rec));
  for (const image::ckpt_siginfo& p : s.pending) {
    RETURN_IF_ERROR(w.AppendStruct(image::CKPT_HDR_SIGINFO, p));
  }
  for (const image::ckpt_posix_timer& t : s.timers) {
    RETURN_IF_ERROR(w.AppendStruct(image::CKPT_HDR_POSIX_TIMER, t));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<image::ckpt_siginfo>> ReadSiginfoRecords(image::Reader& r, uint32_t n) {
  if (n > image::kMaxPendingSignals) return r.FieldError("nr_pending", n, " is too many");
  std::vector<image::ckpt_siginfo> out;
  for (uint32_t i = 0; i < n; ++i) {
    ASSIGN_OR_RETURN(image::ckpt_siginfo p, r.Expect<image::ckpt_siginfo>(image::CKPT_HDR_SIGINFO));
    int32_t signo;
    std::memcpy(&signo, p.info, sizeof(signo));
    if (signo < 1 || signo > 64 || signo == SIGKILL || signo == SIGSTOP) {
      return r.FieldError("signo", signo, " cannot be queued");
    }
    out.push_back(p);
  }
  return out;
}

absl::StatusOr<TaskSignals> ReadSignalsRecords(image::Reader& r) {
  TaskSignals s;
  ASSIGN_OR_RETURN(s.rec, r.Expect<image::ckpt_signals>(image::CKPT_HDR_SIGNALS));
  for (int which = 0; which < 3; ++which) {
    const image::ckpt_itimer& t = s.rec.itimer[which];
    if (t.interval_ns < 0 || t.interval_ns > image::kMaxDurationNs || t.value_ns < 0 || t.value_ns > image::kMaxDurationNs) {
      return r.FieldError("itimer", "interval timer ", which, " is out of range");
    }
  }
  if (s.rec.nr_timers > image::kMaxPosixTimers) {
    return r.FieldError("nr_timers", s.rec.nr_timers, " is too many");
  }
  ASSIGN_OR_RETURN(s.pending, ReadSiginfoRecords(r, s.rec.nr_pending));
  for (uint32_t i = 0; i < s.rec.nr_timers; ++i) {
    ASSIGN_OR_RETURN(image::ckpt_posix_timer t,
                     r.Expect<image::ckpt_posix_timer>(image::CKPT_HDR_POSIX_TIMER));
    if (t.id < 0) return r.FieldError("id", t.id, " is negative");
    if (t.notify != SIGEV_SIGNAL && t.notify != SIGEV_NONE &&
        t.notify != (SIGEV_SIGNAL | SIGEV_THREAD_ID)) {
      return r.FieldError("notify", t.notify, " is not a notification libckpt restores");
    }
    if (t.notify != SIGEV_NONE && (t.signo < 1 || t.signo > 64)) {
      return r.FieldError("signo", t.signo, " is not a signal");
    }
    if (t.interval_ns < 0 || t.interval_ns > image::kMaxDurationNs || t.value_ns < 0 || t.value_ns > image::kMaxDurationNs) {
      return r.FieldError("value_ns", "timer ", t.id, " is out of range");
    }
    s.timers.push_back(t);
  }
  return s;
}

absl::Status QueueSignalsRestore(
    SyscallQueue& q, pid_t tgid, const TaskSignals& s,
    const std::vector<std::pair<pid_t, std::vector<image::ckpt_siginfo>>>& per_thread,
    int64_t restore_start_mono_ns, const std::function<absl::StatusOr<pid_t>(uint32_t)>& ref_tid) {
  auto left = [&](int64_t value_ns, int64_t floor) {
    int64_t l = value_ns - (MonotonicNs() - restore_start_mono_ns);
    return l < floor ? floor : l;
  };
  auto signo_of = [](const image::ckpt_siginfo& p) {
    int32_t signo;
    std::memcpy(&signo, p.info, sizeof(signo));
    return static_cast<uint64_t>(signo);
  };
  for (const image::ckpt_siginfo& p : s.pending) {
    RETURN_IF_ERROR(q.Reserve(1, sizeof(p) + 16));
    q.batch().Add(SYS_rt_sigqueueinfo, {static_cast<uint64_t>(tgid), signo_of(p), q.batch().AddStruct(p)});
  }
  for (const auto& [tid, list] : per_thread) {
    for (const image::ckpt_siginfo& p : list) {
      RETURN_IF_ERROR(q.Reserve(1, sizeof(p) + 16));
      q.batch().Add(SYS_rt_tgsigqueueinfo, {static_cast<uint64_t>(tgid), static_cast<uint64_t>(tid),
                                            signo_of(p), q.batch().AddStruct(p)});
    }
  }
  if (!s.timers.empty()) {
    // timer_create takes the id to use from *timerid while this is on.
    RETURN_IF_ERROR(q.Reserve(1, 0));
    q.batch().Add(SYS_prctl, {kTimerCreateRestoreIds, 1, 0, 0, 0});
    for (const image::ckpt_posix_timer& t : s.timers) {
      KernelSigevent ev{};
      ev.value = t.value;
      ev.signo = t.signo;
      ev.notify = t.notify;
      if (t.notify & SIGEV_THREAD_ID) {
        ASSIGN_OR_RETURN(pid_t tid, ref_tid(static_cast<uint32_t>(t.tid_ref)));
        ev.tid = tid;
      }
      int32_t id = t.id;
      RETURN_IF_ERROR(q.Reserve(2, sizeof(ev) + 64));
      SyscallBatch& b = q.batch();
      b.Add(SYS_timer_create, {static_cast<uint64_t>(t.clock), b.AddStruct(ev), b.AddStruct(id)});
      if (t.value_ns > 0) {
        struct itimerspec v = {NsToTimespec(t.interval_ns), NsToTimespec(left(t.value_ns, 1))};
        b.Add(SYS_timer_settime, {static_cast<uint64_t>(t.id), 0, b.AddStruct(v), 0});
      }
    }
    RETURN_IF_ERROR(q.Reserve(1, 0));
    q.batch().Add(SYS_prctl, {kTimerCreateRestoreIds, 0, 0, 0, 0});
  }
  for (int which = 0; which < 3; ++which) {
    const image::ckpt_itimer& t = s.rec.itimer[which];
    if (t.value_ns == 0) continue;
    struct itimerval v = {NsToTimeval(t.interval_ns), NsToTimeval(left(t.value_ns, 1000))};
    RETURN_IF_ERROR(q.Reserve(1, sizeof(v) + 16));
    q.batch().Add(SYS_setitimer, {static_cast<uint64_t>(which), q.batch().AddStruct(v), 0});
  }
  return absl::OkStatus();
}

}  // namespace ckpt::task
