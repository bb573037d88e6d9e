#include "lib/task/spawn.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/task/inject.h"
#include "lib/task/ptrace.h"

namespace ckpt::task {
namespace {

constexpr unsigned long kExitKill = 0x100000;  // PTRACE_O_EXITKILL
constexpr int kReadyTimeoutMs = 10000;

// Runs in the child, a copy of a possibly multi-threaded restorer: raw
// syscalls only, no allocation, no locks.
[[noreturn]] void ChildMain(const SpawnSpec& spec, int ready_fd, const uint8_t* code,
                            size_t code_len) {
  // If the restorer dies before it seizes us, die too.
  syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  char status = 'R';
  if (spec.set_sid) {
    if (syscall(SYS_setsid) < 0) status = 'S';
  } else if (spec.set_pgid) {
    if (syscall(SYS_setpgid, 0, 0) < 0) status = 'G';
  }
  long addr = syscall(SYS_mmap, spec.trampoline, TrampolineLayout::kSize,
                      PROT_READ | PROT_WRITE | PROT_EXEC,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (addr != static_cast<long>(spec.trampoline)) {
    status = 'M';
  } else {
    std::memcpy(reinterpret_cast<void*>(addr), code, code_len);
  }
  syscall(SYS_write, ready_fd, &status, 1);
  for (;;) syscall(SYS_pause);
}

}  // namespace

absl::StatusOr<pid_t> SpawnTask(const SpawnSpec& spec) {
  if (spec.pids.empty() || spec.pids.size() > 32) {
    return absl::InvalidArgumentError("a task needs 1 to 32 pid levels");
  }
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe");
  UniqueFd ready_r(p[0]), ready_w(p[1]);
  std::span<const uint8_t> code = TrampolineCode();

  // set_tid lists the innermost namespace first.
  pid_t set_tid[32];
  for (size_t i = 0; i < spec.pids.size(); ++i) set_tid[i] = spec.pids[spec.pids.size() - 1 - i];
  struct clone_args args;
  std::memset(&args, 0, sizeof(args));
  args.exit_signal = SIGCHLD;
  args.set_tid = reinterpret_cast<uint64_t>(set_tid);
  args.set_tid_size = spec.pids.size();

  // The child starts with every signal blocked, so that none of the
  // restorer's handlers ever runs in it.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  long pid = syscall(SYS_clone3, &args, sizeof(args));
  if (pid == 0) ChildMain(spec, ready_w.get(), code.data(), code.size());
  int clone_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pid_t want = spec.pids.back();
  if (pid < 0) {
    if (clone_errno == EEXIST) {
      return absl::AlreadyExistsError(absl::StrCat("PID ", want, " is taken by another process"));
    }
    return ErrnoError(clone_errno, "clone3 with PID ", want);
  }
  auto kill_child = [&](absl::Status st) {
    kill(static_cast<pid_t>(pid), SIGKILL);
    waitpid(static_cast<pid_t>(pid), nullptr, __WALL);
    return st;
  };
  ready_w.reset();
  struct pollfd pfd = {ready_r.get(), POLLIN, 0};
  int n = poll(&pfd, 1, kReadyTimeoutMs);
  char status = 0;
  if (n <= 0 || read(ready_r.get(), &status, 1) != 1) {
    return kill_child(absl::DeadlineExceededError(
        absl::StrCat("task ", want, ": the new process did not report ready")));
  }
  if (status != 'R') {
    const char* what = status == 'S'   ? "setsid failed"
                       : status == 'G' ? "setpgid failed"
                                       : "the trampoline could not be mapped in its free area";
    return kill_child(absl::InternalError(absl::StrCat("task ", want, ": ", what)));
  }
  absl::Status st = Seize(static_cast<pid_t>(pid), kSeizeOptions | kExitKill);
  if (st.ok()) st = Interrupt(static_cast<pid_t>(pid));
  if (!st.ok()) return kill_child(st);
  for (;;) {
    absl::StatusOr<StopInfo> stop = WaitStop(static_cast<pid_t>(pid));
    if (!stop.ok()) return kill_child(stop.status());
    if (stop->exited) {
      return absl::AbortedError(absl::StrCat("task ", want, " died before it was seized"));
    }
    if (stop->group_stop) break;
    // A signal-delivery stop (all signals are blocked, so only a SIGSTOP
    // sent from outside): suppress it and wait for the interrupt.
    st = Cont(static_cast<pid_t>(pid), 0);
    if (!st.ok()) return kill_child(st);
  }
  return static_cast<pid_t>(pid);
}

}  // namespace ckpt::task
