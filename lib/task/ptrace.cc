#include "lib/task/ptrace.h"

#include <elf.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <memory>

#include "absl/strings/str_cat.h"
#include "lib/base/status.h"

namespace ckpt::task {
namespace {

std::atomic<void (*)(long)> g_hook{nullptr};

long Ptrace(int request, pid_t tid, unsigned long addr, void* data) {
  switch (request) {
    case PTRACE_CONT:
    case PTRACE_SYSCALL:
    case PTRACE_DETACH:
    case PTRACE_INTERRUPT:
    case PTRACE_SETREGS:
    case PTRACE_SETREGSET:
    case PTRACE_SETSIGMASK:
      if (void (*hook)(long) = g_hook.load(std::memory_order_relaxed)) hook(request);
      break;
    default:
      break;
  }
  return ptrace(static_cast<__ptrace_request>(request), tid, addr, data);
}

}  // namespace

void SetPtraceHookForTesting(void (*hook)(long request)) { g_hook.store(hook); }

std::string TaskName(pid_t pid, pid_t tid) {
  if (tid == 0 || tid == pid) return absl::StrCat("task ", pid);
  return absl::StrCat("task ", pid, " (thread ", tid, ")");
}

absl::Status Seize(pid_t tid, unsigned long options) {
  if (Ptrace(PTRACE_SEIZE, tid, 0, reinterpret_cast<void*>(options)) != 0) {
    return ErrnoError(errno, "ptrace(SEIZE) of thread ", tid);
  }
  return absl::OkStatus();
}

absl::Status SetOptions(pid_t tid, unsigned long options) {
  if (Ptrace(PTRACE_SETOPTIONS, tid, 0, reinterpret_cast<void*>(options)) != 0) {
    return ErrnoError(errno, "ptrace(SETOPTIONS) of thread ", tid);
  }
  return absl::OkStatus();
}

absl::Status Interrupt(pid_t tid) {
  if (Ptrace(PTRACE_INTERRUPT, tid, 0, nullptr) != 0) {
    return ErrnoError(errno, "ptrace(INTERRUPT) of thread ", tid);
  }
  return absl::OkStatus();
}

absl::Status Cont(pid_t tid, int sig) {
  if (Ptrace(PTRACE_CONT, tid, 0, reinterpret_cast<void*>(static_cast<long>(sig))) != 0) {
    return ErrnoError(errno, "ptrace(CONT) of thread ", tid);
  }
  return absl::OkStatus();
}

absl::Status ContSyscall(pid_t tid, int sig) {
  if (Ptrace(PTRACE_SYSCALL, tid, 0, reinterpret_cast<void*>(static_cast<long>(sig))) != 0) {
    return ErrnoError(errno, "ptrace(SYSCALL) of thread ", tid);
  }
  return absl::OkStatus();
}

absl::Status Detach(pid_t tid, int sig) {
  if (Ptrace(PTRACE_DETACH, tid, 0, reinterpret_cast<void*>(static_cast<long>(sig))) != 0) {
    return ErrnoError(errno, "ptrace(DETACH) of thread ", tid);
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> SeizedInGroupStop(pid_t tid) {
  siginfo_t info{};
  for (;;) {
    if (waitid(P_PID, static_cast<id_t>(tid), &info, WSTOPPED | WNOHANG | WNOWAIT | __WALL) == 0) break;
    if (errno == EINTR) continue;
    // Gone already (a thread that exited just after the seize): not in a
    // group stop; the interrupt and the wait that follow see it gone.
    return false;
  }
  // si_status of a ptrace stop is its exit code: signal | event << 8.
  return info.si_pid == tid && info.si_code == CLD_TRAPPED &&
         (info.si_status >> 8) == PTRACE_EVENT_STOP;
}

absl::StatusOr<StopInfo> WaitStop(pid_t tid) {
  StopInfo info;
  for (;;) {
    pid_t r = waitpid(tid, &info.status, __WALL);
    if (r == tid) break;
    if (r < 0 && errno == EINTR) continue;
    return ErrnoError(errno, "waitpid(", tid, ")");
  }
  int s = info.status;
  if (WIFEXITED(s) || WIFSIGNALED(s)) {
    info.exited = true;
    return info;
  }
  if (WIFSTOPPED(s)) {
    info.signal = WSTOPSIG(s);
    info.event = s >> 16;
    info.syscall_stop = info.signal == (SIGTRAP | 0x80);
    info.group_stop = info.event == PTRACE_EVENT_STOP;
  }
  return info;
}

absl::StatusOr<StopInfo> WaitStopAlive(pid_t pid, pid_t tid, absl::string_view during) {
  ASSIGN_OR_RETURN(StopInfo stop, WaitStop(tid));
  if (stop.exited) {
    return absl::AbortedError(
        absl::StrCat(TaskName(pid, tid), " exited while ", during, " (status ", stop.status, ")"));
  }
  return stop;
}

absl::StatusOr<siginfo_t> GetSiginfo(pid_t tid) {
  siginfo_t info;
  if (Ptrace(PTRACE_GETSIGINFO, tid, 0, &info) != 0) {
    return ErrnoError(errno, "ptrace(GETSIGINFO) of thread ", tid);
  }
  return info;
}

absl::StatusOr<user_regs_struct> GetRegs(pid_t tid) {
  user_regs_struct regs;
  if (Ptrace(PTRACE_GETREGS, tid, 0, &regs) != 0) {
    return ErrnoError(errno, "ptrace(GETREGS) of thread ", tid);
  }
  return regs;
}

absl::Status SetRegs(pid_t tid, const user_regs_struct& regs) {
  if (Ptrace(PTRACE_SETREGS, tid, 0, const_cast<user_regs_struct*>(&regs)) != 0) {
    return ErrnoError(errno, "ptrace(SETREGS) of thread ", tid);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> GetXstate(pid_t tid) {
  // Read into one buffer kept for the calling thread, then copy out what
  // the kernel filled (2-3 KiB): a fresh 64 KiB buffer per thread costs a
  // page fault per 4 KiB, which was most of a wide dump's per-thread time.
  thread_local std::unique_ptr<char[]> buf;
  constexpr size_t kMax = 64 * 1024;
  if (buf == nullptr) buf = std::make_unique<char[]>(kMax);
  struct iovec iov = {buf.get(), kMax};
  if (Ptrace(PTRACE_GETREGSET, tid, NT_X86_XSTATE, &iov) != 0) {
    return ErrnoError(errno, "ptrace(GETREGSET, NT_X86_XSTATE) of thread ", tid);
  }
  return std::string(buf.get(), std::min(iov.iov_len, kMax));
}

absl::Status SetXstate(pid_t tid, const std::string& xstate) {
  struct iovec iov = {const_cast<char*>(xstate.data()), xstate.size()};
  if (Ptrace(PTRACE_SETREGSET, tid, NT_X86_XSTATE, &iov) != 0) {
    return ErrnoError(errno, "ptrace(SETREGSET, NT_X86_XSTATE) of thread ", tid,
                      " (the image's FPU state does not fit this CPU?)");
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> GetSigmask(pid_t tid) {
  uint64_t mask = 0;
  if (Ptrace(PTRACE_GETSIGMASK, tid, sizeof(mask), &mask) != 0) {
    return ErrnoError(errno, "ptrace(GETSIGMASK) of thread ", tid);
  }
  return mask;
}

absl::Status SetSigmask(pid_t tid, uint64_t mask) {
  if (Ptrace(PTRACE_SETSIGMASK, tid, sizeof(mask), &mask) != 0) {
    return ErrnoError(errno, "ptrace(SETSIGMASK) of thread ", tid);
  }
  return absl::OkStatus();
}

absl::StatusOr<RseqConfig> GetRseqConfig(pid_t tid) {
  struct {
    uint64_t rseq_abi_pointer;
    uint32_t rseq_abi_size;
    uint32_t signature;
    uint32_t flags;
    uint32_t pad;
  } conf{};
  constexpr int kGetRseqConfiguration = 0x420f;
  long r = Ptrace(kGetRseqConfiguration, tid, sizeof(conf), &conf);
  if (r < 0) return ErrnoError(errno, "ptrace(GET_RSEQ_CONFIGURATION) of thread ", tid);
  return RseqConfig{conf.rseq_abi_pointer, conf.rseq_abi_size, conf.signature, conf.flags};
}

}  // namespace ckpt::task
