// What a thread under syscall injection runs if its tracer vanishes.
//
// A dump injects syscalls into the tasks it freezes. If the dumping
// process dies in the middle (SIGKILL cannot be caught), the kernel
// detaches every tracee and lets it run from wherever its registers point:
// into the trampoline, or at a `syscall` instruction of the [vdso]. Every
// such place is made to lead back to the thread's own state: an
// rt_sigframe that holds the thread's registers (with the kernel's
// syscall-restart fix-up already applied), its XSAVE area and its signal
// mask, and an rt_sigreturn that loads it.
//
//  - In the trampoline, the frame lives in the trampoline's frames area and
//    %r13 points at it (see trampoline.S).
//  - Around a syscall run at the [vdso] (mapping and unmapping the
//    trampoline, when there is no trampoline to run it from), the frame is
//    written on the thread's stack below the red zone, where the kernel
//    itself puts signal frames, and the syscall runs at a [vdso]
//    `syscall ... ret` sequence whose `ret` lands on a `mov $15, %rax;
//    syscall` (rt_sigreturn) found in the task's own code (glibc's, musl's
//    and Go's signal restorers are exactly that).
//
//   ASSIGN_OR_RETURN(std::string frame, BuildRecoveryFrame(at, regs, xstate, mask, pretcode));

#ifndef LIBCKPT_LIB_TASK_RECOVERY_H_
#define LIBCKPT_LIB_TASK_RECOVERY_H_

#include <sys/types.h>
#include <sys/user.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ckpt::task {

// Bytes a recovery frame for an XSAVE area of `xstate_len` bytes takes,
// rounded to 64.
size_t RecoveryFrameSize(size_t xstate_len);

// Where, in a frame BuildRecoveryFrame made, the signal mask is (8 bytes).
size_t RecoveryFrameMaskOffset();

// The frame to place at `at` (64-byte aligned): rt_sigreturn, run with
// %rsp = at + 8, puts back `regs`, `xstate` (NT_X86_XSTATE as ptrace gives
// it) and `sigmask`, and leaves the alternate signal stack as it is.
// `pretcode` is the frame's first word. A thread stopped in an interrupted
// syscall (-ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND) is set to run it
// again, as the kernel would; one whose syscall had a restart block
// (-ERESTART_RESTARTBLOCK) returns -EINTR from it, as after a signal
// handler (rt_sigreturn resets the restart block).
absl::StatusOr<std::string> BuildRecoveryFrame(uint64_t at, const user_regs_struct& regs,
                                               const std::string& xstate, uint64_t sigmask,
                                               uint64_t pretcode);

// Where, below `rsp` and its red zone, a recovery frame of `size` bytes
// starts (64-byte aligned).
uint64_t StackFrameAddress(uint64_t rsp, size_t size);

// The offset in [vdso] of a `syscall` followed only by register-clearing
// instructions and `ret`; 0 if this kernel's [vdso] has none.
uint64_t VdsoSyscallRetOffset();

// An executable range of a task, and a name that identifies its contents
// (path, file offset, length) across the tasks that map the same file.
struct CodeRange {
  uint64_t start = 0;
  uint64_t end = 0;
  std::string key;
};

// The address, in the task, of `mov $15, %rax; syscall`, searched in
// `ranges` in order (results cached per key); 0 if none has it.
uint64_t FindSigreturnGadget(pid_t pid, const std::vector<CodeRange>& ranges);

}  // namespace ckpt::task

#endif  // LIBCKPT_LIB_TASK_RECOVERY_H_
