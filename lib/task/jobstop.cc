#include "lib/task/jobstop.h"

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "lib/base/status.h"
#include "lib/task/ptrace.h"

namespace ckpt::task {

bool IsStopSignal(int sig) {
  return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

namespace {

constexpr uint64_t SigBit(int sig) { return 1ull << (sig - 1); }

absl::StatusOr<StopInfo> NextStop(pid_t pid, pid_t tid) {
  return WaitStopAlive(pid, tid, "it was being stopped");
}

// One try with `sig`: whether the group stop began.
absl::StatusOr<bool> TryStop(pid_t pid, int sig) {
  // Only `sig` may be taken off the queue: every other signal stays
  // pending for the task to take once it is continued.
  RETURN_IF_ERROR(SetSigmask(pid, ~SigBit(sig)));
  if (syscall(SYS_tgkill, pid, pid, sig) != 0) {
    return ErrnoError(errno, "sending signal ", sig, " to ", TaskName(pid));
  }
  RETURN_IF_ERROR(Cont(pid, 0));
  for (;;) {
    ASSIGN_OR_RETURN(StopInfo stop, NextStop(pid, pid));
    if (stop.event == 0 && !stop.syscall_stop && stop.signal == sig) break;
    if (stop.event == 0 && !stop.syscall_stop && stop.signal != 0) {
      return absl::InternalError(absl::StrCat(TaskName(pid), ": signal ", stop.signal,
                                              " arrived while it was being stopped by ", sig));
    }
    RETURN_IF_ERROR(Cont(pid, 0));  // an event or syscall stop on the way
  }
  // Delivered now. The interrupt makes the thread trap right after, in
  // the same signal check: in the group stop if the signal began one, or
  // (when the kernel dropped it) before it ever returns to user space.
  RETURN_IF_ERROR(Interrupt(pid));
  RETURN_IF_ERROR(Cont(pid, sig));
  for (;;) {
    ASSIGN_OR_RETURN(StopInfo stop, NextStop(pid, pid));
    if (stop.group_stop) return stop.signal == sig;
    if (stop.event == 0 && !stop.syscall_stop && stop.signal != 0) {
      return absl::InternalError(absl::StrCat(TaskName(pid), ": signal ", stop.signal,
                                              " arrived while it was being stopped by ", sig));
    }
    RETURN_IF_ERROR(Cont(pid, 0));
  }
}

}  // namespace

absl::StatusOr<int> EnterGroupStop(pid_t pid, const std::vector<pid_t>& tids, int signo,
                                   uint64_t mask_after) {
  if (!IsStopSignal(signo)) {
    return absl::InvalidArgumentError(absl::StrCat("signal ", signo, " is not a stop signal"));
  }
  ASSIGN_OR_RETURN(bool stopped, TryStop(pid, signo));
  int sig = signo;
  if (!stopped && signo != SIGSTOP) {
    sig = SIGSTOP;
    ASSIGN_OR_RETURN(stopped, TryStop(pid, sig));
  }
  if (!stopped) {
    return absl::InternalError(absl::StrCat(TaskName(pid), " did not stop on signal ", sig));
  }
  RETURN_IF_ERROR(SetSigmask(pid, mask_after));
  // Every other thread takes part in the group stop the next time it
  // passes a signal check: let each go as far as that.
  for (pid_t tid : tids) {
    if (tid == pid) continue;
    RETURN_IF_ERROR(Cont(tid, 0));
    for (;;) {
      ASSIGN_OR_RETURN(StopInfo stop, NextStop(pid, tid));
      if (stop.group_stop && stop.signal == sig) break;
      if (stop.event == 0 && !stop.syscall_stop && stop.signal != 0) {
        return absl::InternalError(absl::StrCat(TaskName(pid, tid), ": signal ", stop.signal,
                                                " arrived while it was being stopped"));
      }
      RETURN_IF_ERROR(Cont(tid, 0));
    }
  }
  return sig;
}

}  // namespace ckpt::task
