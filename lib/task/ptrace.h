// Thin ptrace(2) wrappers that return absl::Status and name the task.
//
//   RETURN_IF_ERROR(Seize(tid, kSeizeOptions));
//   RETURN_IF_ERROR(Interrupt(tid));
//   ASSIGN_OR_RETURN(StopInfo stop, WaitStop(tid));
//   ASSIGN_OR_RETURN(user_regs_struct regs, GetRegs(tid));

#ifndef LIBCKPT_LIB_TASK_PTRACE_H_
#define LIBCKPT_LIB_TASK_PTRACE_H_

#include <signal.h>
#include <sys/types.h>
#include <sys/user.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ckpt::task {

// What waitpid reported for a traced task.
struct StopInfo {
  int status = 0;    // raw wait status
  bool exited = false;  // exited or was killed; `status` says how
  int signal = 0;    // the stop signal (WSTOPSIG), 0 if not stopped
  int event = 0;     // PTRACE_EVENT_* of an event stop, else 0
  bool syscall_stop = false;  // a syscall-entry or -exit stop (TRACESYSGOOD)
  bool group_stop = false;    // PTRACE_EVENT_STOP (interrupt or group stop)
};

absl::Status Seize(pid_t tid, unsigned long options);
// Whether `tid`, just seized and not yet interrupted, is in a group stop
// of job control: seizing a stopped thread makes it report a trap before
// PTRACE_SEIZE returns. The report is looked at, not taken (WNOWAIT); a
// signal-delivery stop is not a group stop.
absl::StatusOr<bool> SeizedInGroupStop(pid_t tid);
absl::Status SetOptions(pid_t tid, unsigned long options);
absl::Status Interrupt(pid_t tid);
// PTRACE_CONT / PTRACE_SYSCALL / PTRACE_DETACH with a signal to deliver.
absl::Status Cont(pid_t tid, int sig = 0);
absl::Status ContSyscall(pid_t tid, int sig = 0);
absl::Status Detach(pid_t tid, int sig = 0);

// Waits for the next ptrace event of `tid` (__WALL).
absl::StatusOr<StopInfo> WaitStop(pid_t tid);
// The same, where an exit is an error: "<task> exited while <during>".
absl::StatusOr<StopInfo> WaitStopAlive(pid_t pid, pid_t tid, absl::string_view during);

absl::StatusOr<user_regs_struct> GetRegs(pid_t tid);
absl::Status SetRegs(pid_t tid, const user_regs_struct& regs);
// The XSAVE area (NT_X86_XSTATE), as long as the kernel reports it.
absl::StatusOr<std::string> GetXstate(pid_t tid);
absl::Status SetXstate(pid_t tid, const std::string& xstate);
absl::StatusOr<uint64_t> GetSigmask(pid_t tid);
// The siginfo of the signal that caused the current signal-delivery stop.
absl::StatusOr<siginfo_t> GetSiginfo(pid_t tid);
absl::Status SetSigmask(pid_t tid, uint64_t mask);

struct RseqConfig {
  uint64_t ptr = 0;
  uint32_t size = 0;  // 0: not registered
  uint32_t signature = 0;
  uint32_t flags = 0;
};
absl::StatusOr<RseqConfig> GetRseqConfig(pid_t tid);

// Options libckpt seizes with: syscall stops marked with 0x80, new threads
// and children traced automatically.
inline constexpr unsigned long kSeizeOptions = 0x1 /* TRACESYSGOOD */;
// PTRACE_O_SUSPEND_SECCOMP: the tracee's seccomp filters do not see the
// calls injected into it (needs CAP_SYS_ADMIN in the initial user
// namespace and a tracer under no seccomp; dropped at detach).
inline constexpr unsigned long kSuspendSeccomp = 0x200000;

// Tests only: `hook` runs before every ptrace request that changes a
// tracee (resume, detach, interrupt, registers, mask), so that a test can
// kill the tracer at each of those moments. nullptr removes it.
void SetPtraceHookForTesting(void (*hook)(long request));

// "task 1234" or "task 1234 (thread 1240)".
std::string TaskName(pid_t pid, pid_t tid = 0);

}  // namespace ckpt::task

#endif  // LIBCKPT_LIB_TASK_PTRACE_H_
