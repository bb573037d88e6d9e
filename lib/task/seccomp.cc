#include "lib/task/seccomp.h"

#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "lib/base/status.h"
#include "lib/image/records.h"
#include "lib/task/proc.h"
#include "lib/task/ptrace.h"

namespace ckpt::task {
namespace {

constexpr image::FieldSpec kSeccompFields[] = {
    CKPT_FIELD(image::ckpt_seccomp, mode, kUnsigned),
    CKPT_FIELD(image::ckpt_seccomp, nr_filters, kUnsigned),
};
CKPT_RECORD(image::CKPT_HDR_SECCOMP, "SECCOMP", image::ckpt_seccomp, kSeccompFields, 0, kNone);

constexpr image::FieldSpec kSeccompFilterFields[] = {
    CKPT_FIELD(image::ckpt_seccomp_filter, flags, kHex),
    CKPT_FIELD(image::ckpt_seccomp_filter, nr_insns, kUnsigned),
};
CKPT_RECORD(image::CKPT_HDR_SECCOMP_FILTER, "SECCOMP_FILTER", image::ckpt_seccomp_filter,
            kSeccompFilterFields, image::kMaxSeccompInsns * sizeof(struct sock_filter), kRawBytes);

constexpr int kGetFilter = 0x420c;    // PTRACE_SECCOMP_GET_FILTER
constexpr int kGetMetadata = 0x420d;  // PTRACE_SECCOMP_GET_METADATA
constexpr uint32_t kKnownFilterFlags = SECCOMP_FILTER_FLAG_LOG;

}  // namespace

absl::StatusOr<SeccompState> ReadSeccomp(pid_t pid, pid_t tid, const ProcStatus& st) {
  SeccompState s;
  s.mode = static_cast<uint32_t>(st.seccomp);
  if (s.mode == SECCOMP_MODE_DISABLED) return s;
  // Strict mode allows read, write, exit and sigreturn: the calls the dump
  // and the restore inject pass by it only under PTRACE_O_SUSPEND_SECCOMP,
  // which the caller sets for any mode.
  if (s.mode == SECCOMP_MODE_STRICT) return s;
  if (s.mode != SECCOMP_MODE_FILTER) {
    return absl::UnimplementedError(absl::StrCat(TaskName(pid, tid), ": seccomp mode ", s.mode));
  }
  // Index 0 is the oldest filter (the kernel counts back from the newest).
  for (unsigned long i = 0;; ++i) {
    long n = ptrace(static_cast<__ptrace_request>(kGetFilter), tid, i, nullptr);
    if (n < 0 && errno == ENOENT) break;
    if (n < 0) {
      if (errno == EACCES || errno == EPERM) {
        return absl::PermissionDeniedError(absl::StrCat(
            TaskName(pid, tid), " has seccomp filters; reading them needs CAP_SYS_ADMIN in the "
            "initial user namespace and a dumper under no seccomp filter of its own"));
      }
      return ErrnoError(errno, TaskName(pid, tid), ": PTRACE_SECCOMP_GET_FILTER ", i);
    }
    if (n == 0 || static_cast<uint64_t>(n) > image::kMaxSeccompInsns) {
      return absl::InternalError(absl::StrCat(TaskName(pid, tid), ": seccomp filter ", i, " has ", n,
                                              " instructions"));
    }
    SeccompFilter f;
    f.insns.resize(static_cast<size_t>(n));
    if (ptrace(static_cast<__ptrace_request>(kGetFilter), tid, i, f.insns.data()) != n) {
      return ErrnoError(errno, TaskName(pid, tid), ": PTRACE_SECCOMP_GET_FILTER ", i);
    }
    struct {
      uint64_t filter_off;
      uint64_t flags;
    } md = {i, 0};
    if (ptrace(static_cast<__ptrace_request>(kGetMetadata), tid, sizeof(md), &md) < 0) {
      return ErrnoError(errno, TaskName(pid, tid), ": PTRACE_SECCOMP_GET_METADATA ", i);
    }
    f.flags = static_cast<uint32_t>(md.flags) & kKnownFilterFlags;
    for (const struct sock_filter& insn : f.insns) {
      if (insn.code == (BPF_RET | BPF_K) && (insn.k & SECCOMP_RET_ACTION_FULL) == SECCOMP_RET_USER_NOTIF) {
        return absl::UnimplementedError(absl::StrCat(
            TaskName(pid, tid), ": a seccomp filter hands syscalls to a user-space listener "
            "(SECCOMP_RET_USER_NOTIF): not supported"));
      }
    }
    s.filters.push_back(std::move(f));
    if (s.filters.size() > image::kMaxSeccompFilters) {
      return absl::UnimplementedError(absl::StrCat(TaskName(pid, tid), " has more than ",
                                                   image::kMaxSeccompFilters, " seccomp filters"));
    }
  }
  if (s.filters.empty()) {
    return absl::InternalError(absl::StrCat(TaskName(pid, tid), ": seccomp filter mode without a filter"));
  }
  return s;
}

absl::Status WriteSeccomp(const SeccompState& s, image::Writer& w) {
  image::ckpt_seccomp rec{s.mode, static_cast<uint32_t>(s.filters.size())};
  RETURN_IF_ERROR(w.AppendStruct(image::CKPT_HDR_SECCOMP, rec));
  for (const SeccompFilter& f : s.filters) {
    image::ckpt_seccomp_filter h{f.flags, static_cast<uint32_t>(f.insns.size())};
    RETURN_IF_ERROR(w.AppendStructWith(image::CKPT_HDR_SECCOMP_FILTER, h, f.insns.data(),
                                       f.insns.size() * sizeof(struct sock_filter)));
  }
  return absl::OkStatus();
}

absl::StatusOr<SeccompState> ReadSeccompRecords(image::Reader& r) {
  ASSIGN_OR_RETURN(image::ckpt_seccomp rec, r.Expect<image::ckpt_seccomp>(image::CKPT_HDR_SECCOMP));
  SeccompState s;
  s.mode = rec.mode;
  if (rec.mode != SECCOMP_MODE_FILTER && rec.mode != SECCOMP_MODE_STRICT) {
    return r.FieldError("mode", rec.mode, " is not seccomp's strict or filter mode");
  }
  if ((rec.mode == SECCOMP_MODE_STRICT && rec.nr_filters != 0) ||
      (rec.mode == SECCOMP_MODE_FILTER &&
       (rec.nr_filters == 0 || rec.nr_filters > image::kMaxSeccompFilters))) {
    return r.FieldError("nr_filters", rec.nr_filters, " does not fit mode ", rec.mode);
  }
  for (uint32_t i = 0; i < rec.nr_filters; ++i) {
    ASSIGN_OR_RETURN(image::ckpt_seccomp_filter h,
                     r.Expect<image::ckpt_seccomp_filter>(image::CKPT_HDR_SECCOMP_FILTER));
    if (h.flags & ~kKnownFilterFlags) return r.FieldError("flags", h.flags, " has unknown bits");
    if (h.nr_insns == 0 || h.nr_insns > image::kMaxSeccompInsns ||
        h.nr_insns * sizeof(struct sock_filter) != r.payload_remaining()) {
      return r.FieldError("nr_insns", h.nr_insns, " does not match ", r.payload_remaining(),
                          " bytes of instructions");
    }
    SeccompFilter f;
    f.flags = h.flags;
    f.insns.resize(h.nr_insns);
    RETURN_IF_ERROR(r.ReadPayload(f.insns.data(), h.nr_insns * sizeof(struct sock_filter)));
    s.filters.push_back(std::move(f));
  }
  return s;
}

absl::Status QueueSeccompFilters(SyscallQueue& q, const SeccompState& s) {
  if (s.mode == SECCOMP_MODE_STRICT) {
    RETURN_IF_ERROR(q.Reserve(1, 0));
    q.batch().Add(SYS_seccomp, {SECCOMP_SET_MODE_STRICT, 0, 0});
    return absl::OkStatus();
  }
  if (s.mode != SECCOMP_MODE_FILTER) return absl::OkStatus();
  for (const SeccompFilter& f : s.filters) {
    const size_t bytes = f.insns.size() * sizeof(struct sock_filter);
    RETURN_IF_ERROR(q.Reserve(1, bytes + sizeof(struct sock_fprog) + 16));
    SyscallBatch& b = q.batch();
    struct sock_fprog prog {};
    prog.len = static_cast<unsigned short>(f.insns.size());
    prog.filter = reinterpret_cast<struct sock_filter*>(b.AddData(f.insns.data(), bytes));
    b.Add(SYS_seccomp, {SECCOMP_SET_MODE_FILTER, f.flags, b.AddStruct(prog)});
  }
  return absl::OkStatus();
}

}  // namespace ckpt::task
