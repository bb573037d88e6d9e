// Syscalls the freeze interrupted that the kernel resumes through a
// restart block: nanosleep, relative clock_nanosleep, poll with a timeout
// and futex waits with a timeout return -ERESTART_RESTARTBLOCK, and the
// kernel keeps their deadline in the task's restart block, where no one
// outside can read it. Other interrupted syscalls (-ERESTARTSYS,
// -ERESTARTNOINTR, -ERESTARTNOHAND) are restarted by the kernel from the
// registers alone, and need nothing here.
//
// Dump: the time left is learned
//  - from the sleep's own report: nanosleep and clock_nanosleep write it to
//    their `rem` argument when interrupted, if they have one;
//  - else from /proc/timer_list: the thread's sleep timer is the
//    hrtimer_wakeup timer that goes away when the thread is interrupted
//    (TakeSleepProbe before PTRACE_INTERRUPT, ResolveSleepExpiry once it
//    stopped);
//  - futex waits with an absolute deadline need no time: the same
//    arguments give the same deadline.
// When none works, the image says so (kRestartEintr) and the restored call
// fails with EINTR, as it would have after a restore without this.
//
// Restore: PrimeRestart makes the kernel build the restart block itself,
// in the restored thread: it injects the same call with the time left
// (counted from the restore's start) and the thread's own pointers,
// interrupts it at once, and leaves the thread at that
// -ERESTART_RESTARTBLOCK exit, so that on release the thread resumes
// through restart_syscall exactly as if it had never been checkpointed.

#ifndef LIBCKPT_LIB_TASK_RESTART_H_
#define LIBCKPT_LIB_TASK_RESTART_H_

#include <sys/types.h>
#include <sys/user.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "lib/image/format.h"
#include "lib/task/inject.h"

namespace ckpt::task {

inline constexpr int64_t kErestartRestartblock = 516;

// The sleep timers that exist just before a thread is interrupted.
struct SleepProbe {
  struct Timer {
    int64_t soft_mono_ns;  // soft expiry, on CLOCK_MONOTONIC
    int64_t hard_mono_ns;  // hard expiry (soft + the task's timer slack)
  };
  std::map<std::string, Timer> before;  // hrtimer_wakeup timers by (hashed) address
  int64_t taken_ns = 0;                 // CLOCK_MONOTONIC when the reads began
  // Taken (and readable): ResolveSleepExpiry can tell.
  bool armed() const { return !before.empty(); }
};
// Whether the seized, still running thread is blocked in a timed sleep
// whose time left only its timer can tell.
bool NeedsSleepProbe(pid_t pid, pid_t tid);
// Whether thread `tid` is blocked in an epoll wait with a finite timeout,
// which a PTRACE_INTERRUPT ends with EINTR (one without is restarted).
bool InTimedEpollWait(pid_t pid, pid_t tid);
// The sleep timers now, just before PTRACE_INTERRUPT of that thread;
// every other thread interrupted before must have stopped already (their
// timers go away too). Never fails: unreadable timers leave it unarmed.
SleepProbe TakeSleepProbe();
// Once the thread has stopped: the CLOCK_MONOTONIC expiry of its sleep,
// the one timer that went away. Made unambiguous when other tasks' timers
// went away in the same window (a busy machine cancels sleep timers all the time): the
// thread, stopped at its -ERESTART_RESTARTBLOCK exit, is let go back to
// sleep through restart_syscall (the kernel re-arms the same expiry from
// its restart block), the timers are read again, and `refreeze` stops it
// again; of the candidates, only its own expiry comes back. Its
// registers are put back as the first stop left them (only orig_rax
// differs: restart_syscall instead of the sleep's number). -1: unknown.
absl::StatusOr<int64_t> ResolveSleepExpiry(pid_t pid, pid_t tid, const SleepProbe& probe,
                                           const std::function<absl::Status()>& refreeze);
// ResolveSleepExpiry's answer for a thread whose sleep ended while it was
// probed and that went on into another timed sleep, in which it was
// stopped again: that one began moments ago, and PlanRestart gives it its
// whole length.
inline constexpr int64_t kSleepBegunDuringProbe = -2;

// The same for a thread of a task stopped by job control, traced and in
// its group stop, with every signal held: it had no timer to lose. It is
// let into restart_syscall one syscall stop at a time, so that it never
// runs an instruction of its own: its candidates are the timers that come
// with it and go when it is interrupted, in two rounds at least. A sleep
// whose time is already up returns at once: the thread is left parked
// with the call's result (0), as SIGCONT would have found it, and the
// answer is -1 (nothing to restart).
absl::StatusOr<int64_t> ResolveStoppedSleep(pid_t pid, pid_t tid);

// From the frozen thread's registers: how its syscall resumes, or nothing
// when it was not in a restart-block syscall. `expiry_mono_ns` comes from
// ResolveSleepExpiry (-1: unknown, or kSleepBegunDuringProbe), `start_mono_ns` is
// the checkpoint's start, `interrupted_mono_ns` when the freeze interrupted
// the thread (0: not known).
absl::StatusOr<std::optional<image::ckpt_restart>> PlanRestart(pid_t pid,
                                                               const user_regs_struct& regs,
                                                               int64_t expiry_mono_ns,
                                                               int64_t start_mono_ns,
                                                               int64_t interrupted_mono_ns = 0);

// An epoll_wait, epoll_pwait or epoll_pwait2 that the freeze interrupted
// returns -EINTR (the kernel never restarts them). When no signal was
// pending for it, PlanRestart plans it like the sleeps above, and these
// registers make the thread call it again, with `left_ns` (time-left) or
// as it was (same-args); else the registers stay, and it returns EINTR.
// Used at restore (through PrimeRestart) and when a dump lets the tree
// run on.
bool IsInterruptedEpollWait(const user_regs_struct& regs);
// Whether a signal the thread does not block is pending for it or its
// process (/proc/TID/status); true when that cannot be read.
bool UnblockedSignalPending(pid_t tid);
absl::StatusOr<user_regs_struct> RestartedEpollWait(pid_t pid, const user_regs_struct& regs,
                                                    const image::ckpt_restart& restart, int64_t left_ns);

// Checks a RESTART record against the thread's registers.
absl::Status CheckRestart(const image::ckpt_restart& restart, const user_regs_struct& regs);

// Restore, in the thread (its injector has the trampoline mapped): primes
// the restart block and returns the registers to park the thread with.
absl::StatusOr<user_regs_struct> PrimeRestart(Injector& injector, const user_regs_struct& regs,
                                              const image::ckpt_restart& restart,
                                              int64_t restore_start_mono_ns);

}  // namespace ckpt::task

#endif  // LIBCKPT_LIB_TASK_RESTART_H_
