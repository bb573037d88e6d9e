#include "lib/task/inject.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "lib/base/status.h"
#include "lib/task/proc.h"
#include "lib/task/ptrace.h"
#include "lib/task/recovery.h"
#include "lib/task/remote.h"

extern "C" const uint8_t ckpt_trampoline_code[];
extern "C" const uint8_t ckpt_trampoline_trap[];
extern "C" const uint8_t ckpt_trampoline_done[];
extern "C" const uint8_t ckpt_trampoline_done_unblocked[];
extern "C" const uint8_t ckpt_trampoline_single[];
extern "C" const uint8_t ckpt_trampoline_code_end[];

namespace ckpt::task {
namespace {

// A value no syscall returns: marks calls the batch did not reach.
constexpr int64_t kNotRun = INT64_MIN;

bool IsError(int64_t ret) { return ret < 0 && ret >= -4095; }

// Offsets of the trampoline's labels from its start.
uint64_t Offset(const uint8_t* label) { return static_cast<uint64_t>(label - ckpt_trampoline_code); }

bool IsFault(int sig) {
  return sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE;
}

}  // namespace

std::span<const uint8_t> TrampolineCode() {
  return {ckpt_trampoline_code, static_cast<size_t>(ckpt_trampoline_code_end - ckpt_trampoline_code)};
}

std::string SyscallName(long nr) {
  switch (nr) {
    case SYS_mmap: return "mmap";
    case SYS_munmap: return "munmap";
    case SYS_mremap: return "mremap";
    case SYS_mprotect: return "mprotect";
    case SYS_madvise: return "madvise";
    case SYS_brk: return "brk";
    case SYS_rt_sigaction: return "rt_sigaction";
    case SYS_sigaltstack: return "sigaltstack";
    case SYS_prctl: return "prctl";
    case SYS_arch_prctl: return "arch_prctl";
    case SYS_rseq: return "rseq";
    case SYS_set_robust_list: return "set_robust_list";
    case SYS_set_tid_address: return "set_tid_address";
    case SYS_close_range: return "close_range";
    case SYS_close: return "close";
    case SYS_dup3: return "dup3";
    case SYS_fcntl: return "fcntl";
    case SYS_lseek: return "lseek";
    case SYS_openat: return "openat";
    case SYS_chdir: return "chdir";
    case SYS_fchdir: return "fchdir";
    case SYS_chroot: return "chroot";
    case SYS_umask: return "umask";
    case SYS_personality: return "personality";
    case SYS_setresuid: return "setresuid";
    case SYS_setresgid: return "setresgid";
    case SYS_setgroups: return "setgroups";
    case SYS_setfsuid: return "setfsuid";
    case SYS_setfsgid: return "setfsgid";
    case SYS_capset: return "capset";
    case SYS_clone3: return "clone3";
    case SYS_getitimer: return "getitimer";
    case SYS_setitimer: return "setitimer";
    case SYS_getpid: return "getpid";
    default: return absl::StrCat("syscall ", nr);
  }
}

size_t SyscallBatch::Add(long nr, std::initializer_list<uint64_t> args, uint32_t flags) {
  InjectedCall call{};
  call.nr = static_cast<uint32_t>(nr);
  call.flags = flags;
  size_t i = 0;
  for (uint64_t a : args) {
    if (i < 6) call.args[i++] = a;
  }
  call.ret = kNotRun;
  calls_.push_back(call);
  return calls_.size() - 1;
}

uint64_t SyscallBatch::AddData(const void* data, size_t len) {
  size_t at = (data_.size() + 15) & ~size_t{15};
  data_.resize(at + len);
  if (len > 0) std::memcpy(data_.data() + at, data, len);
  return layout_.data() + at;
}

uint64_t SyscallBatch::AddString(absl::string_view s) {
  std::string z(s);
  return AddData(z.c_str(), z.size() + 1);
}

uint64_t SyscallBatch::Reserve(size_t len) {
  read_back_ = true;
  size_t at = (data_.size() + 15) & ~size_t{15};
  data_.resize(at + len, 0);
  return layout_.data() + at;
}

bool SyscallBatch::HasRoom(size_t calls, size_t data) const {
  return calls_.size() + calls <= layout_.max_calls &&
         data_.size() + data + 16 <= layout_.max_data;
}

void SyscallBatch::Clear() {
  calls_.clear();
  data_.clear();
  read_back_ = false;
}

absl::Status Injector::Begin(uint64_t syscall_insn) {
  syscall_insn_ = syscall_insn;
  ASSIGN_OR_RETURN(template_, GetRegs(tid_));
  template_.eflags &= ~0x100ull;  // never single-step
  return absl::OkStatus();
}

void Injector::Begin(uint64_t syscall_insn, const user_regs_struct& regs) {
  syscall_insn_ = syscall_insn;
  template_ = regs;
  template_.eflags &= ~0x100ull;
}

absl::Status Injector::StepSyscallStop(const char* which) {
  for (;;) {
    RETURN_IF_ERROR(ContSyscall(tid_, 0));
    ASSIGN_OR_RETURN(StopInfo stop, WaitStop(tid_));
    if (stop.exited) {
      return absl::AbortedError(absl::StrCat(TaskName(pid_, tid_),
                                             " died while a syscall was injected (status ",
                                             stop.status, ")"));
    }
    if (stop.syscall_stop) return absl::OkStatus();
    if (stop.event == 0 && stop.signal != 0) {
      if (IsFault(stop.signal)) {
        return absl::InternalError(absl::StrCat(TaskName(pid_, tid_), ": signal ", stop.signal,
                                                " while stepping to syscall ", which));
      }
      held_signals_.push_back(stop.signal);
    }
    // Event stops (a group stop, an interrupt) are passed over.
  }
}

absl::Status Injector::EnableRecovery(const user_regs_struct& regs, const std::string& xstate,
                                      uint64_t sigmask, uint64_t vdso_start,
                                      uint64_t sigreturn_gadget) {
  recovery_.enabled = true;
  recovery_.regs = regs;
  recovery_.xstate = xstate;
  recovery_.sigmask = sigmask;
  const uint64_t off = VdsoSyscallRetOffset();
  recovery_.vdso_gadget = off != 0 && vdso_start != 0 ? vdso_start + off : 0;
  recovery_.sigreturn_gadget = sigreturn_gadget;
  FramesChanged(/*stack=*/true, /*trampoline=*/true);
  return absl::OkStatus();
}

absl::Status Injector::SetRecoveryMask(uint64_t sigmask) {
  if (!recovery_.enabled || sigmask == recovery_.sigmask) return absl::OkStatus();
  const uint64_t before = recovery_.sigmask;
  recovery_.sigmask = sigmask;
  // The frames written hold the same registers and XSAVE area: only their
  // masks change, in one write. Frames still to be written get it then.
  struct iovec local[2], remote[2];
  int n = 0;
  auto patch = [&](uint64_t frame, bool stale) {
    if (frame == 0 || stale) return;
    local[n] = {&recovery_.sigmask, sizeof(recovery_.sigmask)};
    remote[n] = {reinterpret_cast<void*>(frame + RecoveryFrameMaskOffset()), sizeof(uint64_t)};
    ++n;
  };
  patch(recovery_.stack_frame, recovery_.stack_stale);
  patch(recovery_.frame, recovery_.frame_stale);
  if (n == 0) return absl::OkStatus();
  absl::Status st = WriteRemoteV(pid_, local, n, remote, n);
  if (!st.ok()) recovery_.sigmask = before;  // a retry writes it again
  return st;
}

void Injector::FramesChanged(bool stack, bool trampoline) {
  if (!recovery_.enabled) return;
  recovery_.stack_stale |= stack;
  recovery_.frame_stale |= trampoline;
}

absl::Status Injector::FlushFrames(bool stack) {
  if (!recovery_.enabled) return absl::OkStatus();
  const size_t size = RecoveryFrameSize(recovery_.xstate.size());
  // On the stack, below the red zone, for syscalls run at the [vdso]: the
  // `ret` after the syscall takes the frame's first word, the rt_sigreturn
  // gadget, which loads the frame. Where the stack has no room, those few
  // syscalls go without.
  if (stack && recovery_.stack_stale) {
    recovery_.stack_stale = false;
    recovery_.stack_frame = 0;
    if (recovery_.vdso_gadget != 0 && recovery_.sigreturn_gadget != 0) {
      const uint64_t at = StackFrameAddress(recovery_.regs.rsp, size);
      absl::StatusOr<std::string> frame = BuildRecoveryFrame(
          at, recovery_.regs, recovery_.xstate, recovery_.sigmask, recovery_.sigreturn_gadget);
      if (frame.ok() && WriteRemote(pid_, at, frame->data(), frame->size()).ok()) {
        recovery_.stack_frame = at;
      }
    }
  }
  if (recovery_.frame != 0 && recovery_.frame_stale) {
    ASSIGN_OR_RETURN(std::string frame, BuildRecoveryFrame(recovery_.frame, recovery_.regs,
                                                           recovery_.xstate, recovery_.sigmask, 0));
    RETURN_IF_ERROR(WriteRemote(pid_, recovery_.frame, frame.data(), frame.size()));
    recovery_.frame_stale = false;
  }
  return absl::OkStatus();
}

user_regs_struct Injector::SyscallRegs(long nr, const std::array<uint64_t, 6>& args,
                                       bool at_vdso) const {
  user_regs_struct regs = template_;
  if (!at_vdso && has_trampoline() && recovery_.frame != 0) {
    // The trampoline's `syscall; jmp recover`.
    regs.rip = layout_.code() + Offset(ckpt_trampoline_single);
    regs.r13 = recovery_.frame;
  } else if (recovery_.stack_frame != 0) {
    // The [vdso]'s `syscall ... ret`, returning into rt_sigreturn.
    regs.rip = recovery_.vdso_gadget;
    regs.rsp = recovery_.stack_frame;
  } else {
    regs.rip = syscall_insn_;
  }
  regs.rax = static_cast<uint64_t>(nr);
  regs.orig_rax = ~0ull;  // not in a syscall: no restart fix-up on resume
  regs.rdi = args[0];
  regs.rsi = args[1];
  regs.rdx = args[2];
  regs.r10 = args[3];
  regs.r8 = args[4];
  regs.r9 = args[5];
  return regs;
}

absl::StatusOr<int64_t> Injector::SyscallViaInsn(long nr, std::array<uint64_t, 6> args) {
  RETURN_IF_ERROR(FlushFrames(/*stack=*/true));
  return StepSyscall(SyscallRegs(nr, args), nr);
}

absl::StatusOr<int64_t> Injector::StepSyscall(const user_regs_struct& regs, long nr) {
  if (syscall_insn_ == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(TaskName(pid_, tid_), ": no syscall instruction to inject through"));
  }
  (void)nr;
  RETURN_IF_ERROR(SetRegs(tid_, regs));
  RETURN_IF_ERROR(StepSyscallStop("entry"));
  RETURN_IF_ERROR(StepSyscallStop("exit"));
  ASSIGN_OR_RETURN(user_regs_struct after, GetRegs(tid_));
  return static_cast<int64_t>(after.rax);
}

absl::StatusOr<int64_t> Injector::SyscallInterrupted(long nr, std::array<uint64_t, 6> args) {
  if (syscall_insn_ == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(TaskName(pid_, tid_), ": no syscall instruction to inject through"));
  }
  RETURN_IF_ERROR(FlushFrames(/*stack=*/true));
  RETURN_IF_ERROR(SetRegs(tid_, SyscallRegs(nr, args)));
  RETURN_IF_ERROR(StepSyscallStop("entry"));
  // Into the syscall, and interrupted at once: a sleep that has started
  // wakes up; one that has not yet started sees the pending interrupt and
  // does not sleep. Either way it leaves through its restart path.
  RETURN_IF_ERROR(ContSyscall(tid_, 0));
  RETURN_IF_ERROR(Interrupt(tid_));
  for (;;) {
    ASSIGN_OR_RETURN(StopInfo stop, WaitStop(tid_));
    if (stop.exited) {
      return absl::AbortedError(absl::StrCat(TaskName(pid_, tid_), " died in an injected ",
                                             SyscallName(nr)));
    }
    if (stop.syscall_stop) break;
    if (stop.event == 0 && stop.signal != 0) {
      if (IsFault(stop.signal)) {
        return absl::InternalError(absl::StrCat(TaskName(pid_, tid_), ": signal ", stop.signal,
                                                " in an injected ", SyscallName(nr)));
      }
      held_signals_.push_back(stop.signal);
    }
    RETURN_IF_ERROR(ContSyscall(tid_, 0));
  }
  ASSIGN_OR_RETURN(user_regs_struct after, GetRegs(tid_));
  return static_cast<int64_t>(after.rax);
}

absl::StatusOr<int64_t> Injector::CheckedSyscallViaInsn(long nr, std::array<uint64_t, 6> args) {
  ASSIGN_OR_RETURN(int64_t ret, SyscallViaInsn(nr, args));
  if (IsError(ret)) {
    return ErrnoError(static_cast<int>(-ret), TaskName(pid_, tid_), ": injected ",
                      SyscallName(nr), " failed");
  }
  return ret;
}

absl::Status Injector::MapTrampoline(uint64_t nr_frames) {
  TrampolineLayout layout;
  if (recovery_.enabled) {
    layout.frame_size = RecoveryFrameSize(recovery_.xstate.size());
    layout.nr_frames = std::max<uint64_t>(nr_frames, 1);
  }
  ASSIGN_OR_RETURN(int64_t addr,
                   CheckedSyscallViaInsn(SYS_mmap, {0, layout.mapped_size(),
                                                    PROT_READ | PROT_WRITE | PROT_EXEC,
                                                    MAP_PRIVATE | MAP_ANONYMOUS, ~0ull, 0}));
  layout.base = static_cast<uint64_t>(addr);
  layout_ = layout;
  std::span<const uint8_t> code = TrampolineCode();
  RETURN_IF_ERROR(WriteRemote(pid_, layout_.code(), code.data(), code.size()));
  if (!recovery_.enabled) return absl::OkStatus();
  recovery_.frame = layout_.frame(0);
  FramesChanged(/*stack=*/false, /*trampoline=*/true);
  return absl::OkStatus();
}

void Injector::AdoptTrampoline(uint64_t base) { layout_.base = base; }

absl::Status Injector::AdoptTrampoline(const TrampolineLayout& layout, uint64_t frame) {
  layout_ = layout;
  if (!recovery_.enabled) return absl::OkStatus();
  if (frame >= layout.nr_frames) {
    return absl::InternalError(absl::StrCat(TaskName(pid_, tid_), ": no recovery frame ", frame,
                                            " in a trampoline of ", layout.nr_frames));
  }
  recovery_.frame = layout_.frame(frame);
  FramesChanged(/*stack=*/false, /*trampoline=*/true);
  return absl::OkStatus();
}

absl::Status Injector::WriteBatch(const SyscallBatch& batch) {
  struct iovec local[2] = {
      {const_cast<InjectedCall*>(batch.calls_.data()), batch.calls_.size() * sizeof(InjectedCall)},
      {const_cast<uint8_t*>(batch.data_.data()), batch.data_.size()}};
  struct iovec remote[2] = {{reinterpret_cast<void*>(layout_.table()), local[0].iov_len},
                            {reinterpret_cast<void*>(layout_.data()), local[1].iov_len}};
  return WriteRemoteV(pid_, local, batch.data_.empty() ? 1 : 2, remote,
                      batch.data_.empty() ? 1 : 2);
}

absl::StatusOr<bool> Injector::IsBatchEnd(int sig) {
  const bool marked = recovery_.frame != 0;
  if (sig != (marked ? SIGURG : SIGTRAP)) return false;
  ASSIGN_OR_RETURN(user_regs_struct regs, GetRegs(tid_));
  if (!marked) return regs.rip == layout_.code() + Offset(ckpt_trampoline_trap) + 1;
  if (regs.rip != layout_.code() + Offset(ckpt_trampoline_done) &&
      regs.rip != layout_.code() + Offset(ckpt_trampoline_done_unblocked)) {
    return false;
  }
  ended_unblocked_ = regs.rip == layout_.code() + Offset(ckpt_trampoline_done_unblocked);
  // The SIGURG this thread sent itself, unless one was pending already
  // (standard signals do not queue): that one is held, like any other.
  ASSIGN_OR_RETURN(siginfo_t info, GetSiginfo(tid_));
  if (own_tgid_ == 0) {
    // si_pid is the sender as the receiver's pid namespace numbers it.
    ASSIGN_OR_RETURN(ProcStatus st, ReadProcStatus(tid_));
    own_tgid_ = st.nstgid.empty() ? st.tgid : st.nstgid.back();
  }
  if (info.si_code != SI_TKILL || info.si_pid != own_tgid_) held_signals_.push_back(SIGURG);
  return true;
}

absl::Status Injector::WaitTrap() {
  for (;;) {
    ASSIGN_OR_RETURN(StopInfo stop, WaitStop(tid_));
    if (stop.exited) {
      return absl::AbortedError(absl::StrCat(TaskName(pid_, tid_),
                                             " died while injected syscalls ran (status ",
                                             stop.status, ")"));
    }
    if (stop.event == 0 && stop.signal != 0 && !stop.syscall_stop) {
      ASSIGN_OR_RETURN(bool end, IsBatchEnd(stop.signal));
      if (end) return absl::OkStatus();
      if (IsFault(stop.signal)) {
        ASSIGN_OR_RETURN(user_regs_struct regs, GetRegs(tid_));
        return absl::InternalError(absl::StrFormat(
            "%s: signal %d at 0x%x while injected syscalls ran", TaskName(pid_, tid_),
            stop.signal, regs.rip));
      }
      held_signals_.push_back(stop.signal);
    }
    RETURN_IF_ERROR(Cont(tid_, 0));
  }
}

absl::Status Injector::Run(SyscallBatch& batch) {
  RETURN_IF_ERROR(Start(batch));
  return Wait(batch);
}

absl::Status Injector::Start(SyscallBatch& batch) {
  if (running_) return absl::FailedPreconditionError("a syscall batch is already running");
  if (batch.empty()) return absl::OkStatus();
  if (!has_trampoline()) {
    return absl::FailedPreconditionError(
        absl::StrCat(TaskName(pid_, tid_), ": no trampoline mapped"));
  }
  if (batch.calls_.size() > layout_.max_calls || batch.data_.size() > layout_.max_data) {
    return absl::InternalError("syscall batch larger than the trampoline");
  }
  RETURN_IF_ERROR(FlushFrames(/*stack=*/false));
  RETURN_IF_ERROR(WriteBatch(batch));
  user_regs_struct regs = template_;
  regs.rip = layout_.code();
  regs.rbx = layout_.table();
  regs.r12 = layout_.table() + batch.calls_.size() * sizeof(InjectedCall);
  regs.r13 = recovery_.frame;  // 0 (a restore): the batch ends on int3
  regs.orig_rax = ~0ull;
  regs.rax = 0;
  RETURN_IF_ERROR(SetRegs(tid_, regs));
  RETURN_IF_ERROR(Cont(tid_, 0));
  running_ = true;
  return absl::OkStatus();
}

absl::Status Injector::Wait(SyscallBatch& batch) {
  if (!running_) return absl::OkStatus();
  running_ = false;
  RETURN_IF_ERROR(WaitTrap());
  // Read the results back (and the data area when the batch asked for it).
  struct iovec local[2] = {{batch.calls_.data(), batch.calls_.size() * sizeof(InjectedCall)},
                           {batch.data_.data(), batch.data_.size()}};
  struct iovec remote[2] = {{reinterpret_cast<void*>(layout_.table()), local[0].iov_len},
                            {reinterpret_cast<void*>(layout_.data()), local[1].iov_len}};
  int n = batch.read_back_ && !batch.data_.empty() ? 2 : 1;
  RETURN_IF_ERROR(ReadRemoteV(pid_, local, n, remote, n));
  for (const InjectedCall& call : batch.calls_) {
    if (call.ret == kNotRun) {
      return absl::InternalError(absl::StrCat(TaskName(pid_, tid_), ": injected ",
                                              SyscallName(call.nr), " did not run"));
    }
    if (IsError(call.ret) && !(call.flags & kMayFail)) {
      return ErrnoError(static_cast<int>(-call.ret),
                        absl::StrFormat("%s: injected %s(0x%x, 0x%x, 0x%x, ...) failed",
                                        TaskName(pid_, tid_), SyscallName(call.nr),
                                        call.args[0], call.args[1], call.args[2]));
    }
  }
  return absl::OkStatus();
}

absl::Status Injector::ParkWith(const user_regs_struct& regs, uint64_t sigmask) {
  RETURN_IF_ERROR(StartPark(regs, sigmask));
  return WaitParked();
}

absl::Status Injector::StartPark(const user_regs_struct& regs, uint64_t sigmask) {
  RETURN_IF_ERROR(SetRegs(tid_, regs));
  RETURN_IF_ERROR(SetSigmask(tid_, sigmask));
  // A PTRACE_INTERRUPT taken on the way back to user space stops the thread
  // inside get_signal(): once let go, the kernel applies its restart logic
  // to `regs` and restores any saved sigmask, as after any signal check.
  RETURN_IF_ERROR(Interrupt(tid_));
  return Cont(tid_, 0);
}

absl::Status Injector::WaitParked() {
  for (;;) {
    ASSIGN_OR_RETURN(StopInfo stop, WaitStop(tid_));
    if (stop.exited) {
      return absl::AbortedError(absl::StrCat(TaskName(pid_, tid_), " died while parked"));
    }
    if (stop.group_stop) return absl::OkStatus();
    if (stop.event == 0 && stop.signal != 0 && !stop.syscall_stop) {
      // A signal queued meanwhile: it stays queued only if we do not
      // consume it here, so deliver it back through the same stop.
      held_signals_.push_back(stop.signal);
    }
    RETURN_IF_ERROR(Cont(tid_, 0));
  }
}

absl::Status Injector::Finish(const user_regs_struct& regs, uint64_t sigmask,
                              const void* sigtrap_action) {
  if (has_trampoline() && sigtrap_action != nullptr) {
    RETURN_IF_ERROR(WriteRemote(pid_, layout_.data(), sigtrap_action, 32));
    RETURN_IF_ERROR(
        CheckedSyscallViaInsn(SYS_rt_sigaction, {SIGTRAP, layout_.data(), 0, 8, 0, 0}).status());
  }
  if (has_trampoline()) {
    // From the [vdso]: the trampoline goes away under this very syscall. A
    // thread let go in the middle comes back to `regs` from its stack.
    if (recovery_.enabled) {
      recovery_.regs = regs;
      recovery_.sigmask = sigmask;
      recovery_.frame = 0;
      FramesChanged(/*stack=*/true, /*trampoline=*/false);
      RETURN_IF_ERROR(FlushFrames(/*stack=*/true));
    }
    ASSIGN_OR_RETURN(int64_t ret, StepSyscall(SyscallRegs(SYS_munmap, {layout_.base,
                                                                        layout_.mapped_size(), 0,
                                                                        0, 0, 0},
                                                           /*at_vdso=*/true),
                                              SYS_munmap));
    if (IsError(ret)) {
      return ErrnoError(static_cast<int>(-ret), TaskName(pid_, tid_),
                        ": injected munmap of the trampoline failed");
    }
    layout_ = TrampolineLayout{};
  }
  return ParkWith(regs, sigmask);
}

absl::Status SyscallQueue::Reserve(size_t calls, size_t data) {
  if (!batch_.HasRoom(calls, data)) RETURN_IF_ERROR(Flush());
  if (!batch_.HasRoom(calls, data)) {
    return absl::InternalError(absl::StrCat("a syscall batch of ", calls, " calls and ", data,
                                            " bytes does not fit the trampoline"));
  }
  return absl::OkStatus();
}

absl::Status SyscallQueue::Flush() {
  if (batch_.empty()) return absl::OkStatus();
  absl::Status st = injector_->Run(batch_);
  batch_.Clear();
  return st;
}

}  // namespace ckpt::task
