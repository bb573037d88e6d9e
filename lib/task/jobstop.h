// Job-control stops: a task stopped by SIGSTOP, SIGTSTP, SIGTTIN or
// SIGTTOU is dumped as stopped (the signal, and whether its parent has
// already waited for the stop) and restored stopped, without running an
// instruction of its own: the stop signal is delivered to the restored
// task while it is still traced, so that the kernel itself puts the whole
// thread group into its group stop, and when the restore lets it go the
// kernel keeps it there (a detached tracee goes back to a group stop in
// effect). SIGCONT then resumes it like any stopped task.
//
//   if (IsStopSignal(stop.signal)) t.stop_signo = stop.signal;       // dump
//   ASSIGN_OR_RETURN(int sig, EnterGroupStop(pid, tids, signo, mask)); // restore

#ifndef LIBCKPT_LIB_TASK_JOBSTOP_H_
#define LIBCKPT_LIB_TASK_JOBSTOP_H_

#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace ckpt::task {

// SIGSTOP, SIGTSTP, SIGTTIN or SIGTTOU.
bool IsStopSignal(int sig);

// A stopped thread is still inside the kernel's signal check: the first
// time it is resumed it takes any signal its mask lets through, handlers
// and all. The dump holds every signal of a stopped task before that
// (PTRACE_SETSIGMASK with this mask, as the kernel reports it back). The
// mask read just before is the thread's own: PTRACE_GETSIGMASK reports
// the mask sigsuspend() and the like saved, and PTRACE_SETSIGMASK drops
// the saved one (the interrupted call, restarted, saves the mask again).
inline constexpr uint64_t kAllSignalsHeld = ~((1ull << (SIGKILL - 1)) | (1ull << (SIGSTOP - 1)));

// Puts the traced process `pid` (its threads `tids`, the leader first)
// into a group stop by `signo`. The leader must be in a ptrace stop with
// `signo`'s action the default one; every other thread parked (in an
// event stop on its way back to user space). Every thread is left in a
// ptrace event stop of the group stop, the leader with `mask_after` as its
// signal mask. The kernel drops SIGTSTP, SIGTTIN and SIGTTOU for a member
// of an orphaned process group: then SIGSTOP stops it instead. Returns the
// signal that stopped it.
absl::StatusOr<int> EnterGroupStop(pid_t pid, const std::vector<pid_t>& tids, int signo,
                                   uint64_t mask_after);

}  // namespace ckpt::task

#endif  // LIBCKPT_LIB_TASK_JOBSTOP_H_
