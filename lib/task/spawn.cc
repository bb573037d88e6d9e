#include "lib/task/spawn.h"


#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "lib/base/clock.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/task/inject.h"
#include "lib/task/proc.h"
#include "lib/task/ptrace.h"

namespace ckpt::task {
namespace {

constexpr unsigned long kExitKill = 0x100000;  // PTRACE_O_EXITKILL
constexpr int kReadyTimeoutMs = 20000;

// What a new task reports on the ready pipe.
struct ReadyMessage {
  int32_t node;
  int32_t what;  // 'R' ready, 'F' a child could not be created, 'S' setsid, 'M' mmap,
                 // 'N' setns into its IPC namespace
  int32_t err;   // errno for 'F'
  int32_t pad;
};

// Everything a new task reads: a copy of the restorer's memory, read-only.
struct ChildEnv {
  const std::vector<SpawnNode>* plan;
  int ready_fd;
  int gate_fd;  // zombies that join a group read a byte here first
  const uint8_t* code;
  size_t code_len;
};

// The code below runs in new tasks, copies of a possibly multi-threaded
// restorer: raw syscalls only, no allocation, no locks.

void Report(const ChildEnv& env, int node, int what, int err) {
  ReadyMessage m = {node, what, err, 0};
  syscall(SYS_write, env.ready_fd, &m, sizeof(m));
}

long CloneNode(const SpawnNode& n, int* pidfd = nullptr) {
  pid_t set_tid[32];
  size_t levels = n.pids.size();
  for (size_t i = 0; i < levels; ++i) set_tid[i] = n.pids[levels - 1 - i];  // innermost first
  struct clone_args args;
  std::memset(&args, 0, sizeof(args));
  args.flags = (n.new_pidns ? CLONE_NEWPID : 0) | (n.share_files ? CLONE_FILES : 0);
  args.exit_signal = SIGCHLD;
  args.set_tid = reinterpret_cast<uint64_t>(set_tid);
  args.set_tid_size = levels;
  if (pidfd != nullptr) {
    args.flags |= CLONE_PIDFD;
    args.pidfd = reinterpret_cast<uint64_t>(pidfd);
  }
  // A PID that the restorer found free (WaitForFreePids) but the kernel
  // has not quite released yet (see kPidReleaseWaitNs): try again.
  const struct timespec pause = {0, 200 * 1000};
  for (int64_t waited = 0;; waited += pause.tv_nsec) {
    long r = syscall(SYS_clone3, &args, sizeof(args));
    if (r >= 0 || errno != EEXIST || waited >= kPidReleaseWaitNs) return r;
    syscall(SYS_nanosleep, &pause, nullptr);
  }
}

[[noreturn]] void ExitWithStatus(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    struct {
      uint64_t handler, flags, restorer, mask;
    } dfl = {0, 0, 0, 0};
    syscall(SYS_rt_sigaction, sig, &dfl, nullptr, 8);
    uint64_t unblock = 1ull << (sig - 1);
    syscall(SYS_rt_sigprocmask, SIG_UNBLOCK, &unblock, nullptr, 8);
    syscall(SYS_kill, syscall(SYS_getpid), sig);
  }
  syscall(SYS_exit_group, WIFEXITED(status) ? WEXITSTATUS(status) : 0);
  __builtin_unreachable();
}

void ForkChildren(const ChildEnv& env, int me, bool early);

[[noreturn]] void RunNode(const ChildEnv& env, int me) {
  const SpawnNode& n = (*env.plan)[me];
  // If the task that forked us dies before the restore is done, die too.
  syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (n.ipc_ns_fd >= 0 && syscall(SYS_setns, n.ipc_ns_fd, CLONE_NEWIPC) != 0) {
    Report(env, me, 'N', errno);
  }
  ForkChildren(env, me, /*early=*/true);
  if (n.set_sid && syscall(SYS_setsid) < 0) Report(env, me, 'S', errno);
  if (n.ctty_fd >= 0 && syscall(SYS_ioctl, n.ctty_fd, TIOCSCTTY, 0) != 0) Report(env, me, 'T', errno);
  ForkChildren(env, me, /*early=*/false);
  if (n.zombie_status >= 0) {
    if (n.set_pgid) syscall(SYS_setpgid, 0, 0);
    if (n.join_pgid > 0) {
      // End of file (the restore gave up): exit all the same.
      char go;
      while (syscall(SYS_read, env.gate_fd, &go, 1) < 0 && errno == EINTR) {
      }
      syscall(SYS_setpgid, 0, n.join_pgid);
    }
    ExitWithStatus(n.zombie_status);
  }
  long addr = syscall(SYS_mmap, n.trampoline, TrampolineLayout::kSize,
                      PROT_READ | PROT_WRITE | PROT_EXEC,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (addr != static_cast<long>(n.trampoline)) {
    Report(env, me, 'M', addr < 0 ? static_cast<int>(-addr) : EEXIST);
  } else {
    std::memcpy(reinterpret_cast<void*>(addr), env.code, env.code_len);
    Report(env, me, 'R', 0);
  }
  for (;;) syscall(SYS_pause);
}

void ForkChildren(const ChildEnv& env, int me, bool early) {
  const std::vector<SpawnNode>& plan = *env.plan;
  // Children sharing a table this task gives up come first: made with
  // CLONE_FILES, then the task unshares (it restores a table of its own).
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t c = static_cast<size_t>(me) + 1; c < plan.size(); ++c) {
      if (plan[c].parent != me || plan[c].early != early || plan[c].deferred ||
          plan[c].files_group != (pass == 0)) {
        continue;
      }
      long r = CloneNode(plan[c]);
      if (r == 0) RunNode(env, static_cast<int>(c));
      if (r < 0) Report(env, static_cast<int>(c), 'F', errno);
      if (plan[c].unshare_after && syscall(SYS_unshare, CLONE_FILES) != 0) {
        Report(env, static_cast<int>(c), 'U', errno);
      }
    }
  }
}

absl::Status NodeError(const SpawnNode& n, int what, int err) {
  pid_t pid = n.pids.front();
  switch (what) {
    case 'F':
      if (err == EEXIST) {
        return absl::AlreadyExistsError(absl::StrCat("PID ", pid, " is taken by another process",
                                                     DescribePidHolder(pid)));
      }
      return ErrnoError(err, "task ", pid, ": clone3 with its PID");
    case 'S':
      return ErrnoError(err, "task ", pid, ": setsid");
    case 'T':
      return ErrnoError(err, "task ", pid, ": taking its controlling terminal (TIOCSCTTY)");
    case 'N':
      return ErrnoError(err, "task ", pid, ": entering its IPC namespace (setns)");
    case 'M':
      return ErrnoError(err, "task ", pid, ": mapping the trampoline in its free area");
    case 'U':
      return ErrnoError(err, "the parent of task ", pid, ": unshare(CLONE_FILES) after it");
  }
  return absl::InternalError(absl::StrCat("task ", pid, ": bad report '", what, "'"));
}

long NowMs() { return static_cast<long>(MonotonicNs() / 1000000); }

}  // namespace

void KillByPidfd(int pidfd) {
  if (pidfd >= 0) syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
}

void KillTree(const SpawnedTree& tree, const std::vector<pid_t>& tids) {
  for (size_t i = tree.pidfds.size(); i-- > 0;) KillByPidfd(tree.pidfds[i].get());
  // Reap: this process is the nodes' tracer, the root's parent and the
  // subreaper of the others. A traced task that dies is reported to its
  // tracer first and stays a zombie for its parent; once its parent (a
  // node) is gone it is this process's child and is reported again. So a
  // task is done only when /proc no longer shows it (or shows a task that
  // is neither dead nor a child of this restore, its PID taken since).
  std::set<pid_t> ours = {getpid()};
  for (size_t i = 0; i < tree.pids.size(); ++i) {
    if (tree.pids[i] > 0 && tree.pidfds[i].valid()) ours.insert(tree.pids[i]);
  }
  std::vector<pid_t> left = tids;
  for (size_t i = tree.pids.size(); i-- > 0;) {
    if (tree.pids[i] > 0 && tree.pidfds[i].valid()) left.push_back(tree.pids[i]);
  }
  const long deadline = NowMs() + 10000;
  while (!left.empty() && NowMs() < deadline) {
    std::vector<pid_t> still;
    for (pid_t pid : left) {
      int status;
      while (waitpid(pid, &status, __WALL | WNOHANG) == pid) {
      }
      absl::StatusOr<ProcStat> st = ReadProcStat(pid);
      const bool gone = !st.ok() || (st->state != 'Z' && st->state != 'X' && !ours.count(st->ppid) &&
                                     !(st->flags & kPfExiting));
      if (!gone) still.push_back(pid);
    }
    if (!still.empty()) usleep(1000);
    left.swap(still);
  }
}

namespace {

// A pidfd for `pid` if it is the child of `parent` (both as this process
// sees them); the pidfd pins the task, so the check cannot go stale.
UniqueFd PidfdIfChildOf(pid_t pid, pid_t parent) {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return UniqueFd();
  UniqueFd pidfd(fd);
  absl::StatusOr<ProcStat> st = ReadProcStat(pid);
  if (!st.ok() || st->ppid != parent) return UniqueFd();
  return pidfd;
}

}  // namespace

// Innermost PID of a task this process sees as `pid` (NSpid's last number).
absl::StatusOr<pid_t> InnerPid(pid_t pid) {
  ASSIGN_OR_RETURN(std::string status, ReadFile(absl::StrCat("/proc/", pid, "/status")));
  size_t at = status.find("\nNSpid:");
  if (at == std::string::npos) return absl::NotFoundError("no NSpid");
  size_t end = status.find('\n', at + 1);
  std::string line = status.substr(at + 8, end - at - 8);
  size_t last = line.find_last_of(" \t");
  return static_cast<pid_t>(strtol(line.c_str() + (last == std::string::npos ? 0 : last + 1),
                                   nullptr, 10));
}

absl::StatusOr<pid_t> OuterTid(pid_t pid, pid_t inner) {
  ASSIGN_OR_RETURN(std::vector<pid_t> tids, ListThreads(pid));
  for (pid_t tid : tids) {
    absl::StatusOr<pid_t> in = InnerPid(tid);
    if (in.ok() && *in == inner) return tid;
  }
  return absl::NotFoundError(absl::StrCat("task ", pid, " has no thread ", inner));
}

absl::StatusOr<SpawnedTree> SpawnTree(const std::vector<SpawnNode>& plan, bool caller_level) {
  for (size_t i = 0; i < plan.size(); ++i) {
    if (plan[i].pids.empty() || plan[i].pids.size() > 32 || plan[i].parent >= static_cast<int>(i)) {
      return absl::InvalidArgumentError("a spawn plan lists parents before children, 1-32 levels");
    }
    if ((plan[i].deferred && (plan[i].parent < 0 || plan[i].zombie_status >= 0)) ||
        (plan[i].parent >= 0 && plan[plan[i].parent].deferred && !plan[i].deferred)) {
      return absl::InvalidArgumentError(
          "a deferred node is a live child, and its children are deferred too");
    }
  }
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe");
  UniqueFd ready_r(p[0]), ready_w(p[1]);
  if (pipe2(p, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe");
  UniqueFd gate_r(p[0]), gate_w(p[1]);
  std::span<const uint8_t> code = TrampolineCode();
  ChildEnv env{&plan, ready_w.get(), gate_r.get(), code.data(), code.size()};

  // A node is ours once this process made it (the roots: clone3 gave a
  // pidfd) or found it as the child of a node that is ours; only those are
  // ever signalled. A node below one that dies dies too (PDEATHSIG) and is
  // reparented to this process, the subreaper; it is reaped below only if
  // it is known to be ours.
  SpawnedTree tree;
  tree.pids.assign(plan.size(), 0);
  tree.pidfds.resize(plan.size());
  std::vector<pid_t>& pids = tree.pids;
  auto planned = [&](size_t i) { return caller_level ? plan[i].pids.front() : 0; };
  // Every node whose PID is known and whose parent is ours gets its pidfd.
  auto claim = [&]() {
    for (size_t i = 0; i < plan.size(); ++i) {
      if (tree.pidfds[i].valid() || plan[i].parent < 0 || plan[i].deferred) continue;
      const size_t parent = static_cast<size_t>(plan[i].parent);
      if (!tree.pidfds[parent].valid()) continue;
      pid_t pid = pids[i] != 0 ? pids[i] : planned(i);
      if (pid == 0) continue;
      tree.pidfds[i] = PidfdIfChildOf(pid, pids[parent]);
      if (tree.pidfds[i].valid()) pids[i] = pid;
    }
  };
  auto fail = [&](absl::Status st) -> absl::Status {
    claim();
    for (size_t i = 0; i < plan.size(); ++i) {
      if (!tree.pidfds[i].valid()) pids[i] = 0;
    }
    KillTree(tree);
    return st;
  };

  // New tasks start with every signal blocked, so that none of the
  // restorer's handlers ever runs in them.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  absl::Status st;
  for (size_t i = 0; i < plan.size(); ++i) {
    if (plan[i].parent != -1) continue;
    int pidfd = -1;
    long r = CloneNode(plan[i], &pidfd);
    if (r == 0) RunNode(env, static_cast<int>(i));
    if (r < 0) {
      st = NodeError(plan[i], 'F', errno);
      break;
    }
    pids[i] = static_cast<pid_t>(r);
    tree.pidfds[i] = UniqueFd(pidfd);
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ready_w.reset();
  if (!st.ok()) return fail(st);

  // Every live task reports once; a failure anywhere stops the wait.
  size_t live = 0;
  for (const SpawnNode& n : plan) live += n.zombie_status < 0 && !n.deferred ? 1 : 0;
  const long deadline = NowMs() + kReadyTimeoutMs;
  for (size_t seen = 0; seen < live;) {
    struct pollfd pfd = {ready_r.get(), POLLIN, 0};
    int n = poll(&pfd, 1, static_cast<int>(std::max(0l, deadline - NowMs())));
    ReadyMessage m;
    if (n <= 0 || read(ready_r.get(), &m, sizeof(m)) != sizeof(m)) {
      return fail(absl::DeadlineExceededError(
          absl::StrCat("the new tasks did not all report ready (", seen, " of ", live, ")")));
    }
    if (m.node < 0 || static_cast<size_t>(m.node) >= plan.size()) continue;
    if (m.what != 'R') return fail(NodeError(plan[m.node], m.what, m.err));
    ++seen;
  }
  if (!caller_level) {
    // Find each task among its parent's children by its innermost PID.
    for (size_t i = 0; i < plan.size(); ++i) {
      if (plan[i].parent < 0 || plan[i].deferred) continue;
      absl::StatusOr<std::vector<pid_t>> children = ListChildren(pids[plan[i].parent]);
      if (!children.ok()) return fail(children.status());
      for (pid_t c : *children) {
        absl::StatusOr<pid_t> inner = InnerPid(c);
        if (inner.ok() && *inner == plan[i].pids.back()) pids[i] = c;
      }
      if (pids[i] == 0) {
        return fail(absl::InternalError(
            absl::StrCat("task ", plan[i].pids.back(), " of the new pid namespace was not found")));
      }
    }
  }
  claim();
  for (size_t i = 0; i < plan.size(); ++i) {
    if (!tree.pidfds[i].valid() && !plan[i].deferred) {
      return fail(absl::InternalError(absl::StrCat(
          "task ", pids[i] != 0 ? pids[i] : planned(i), " was made but is not the child of its parent")));
    }
  }
  tree.zombie_gate = std::move(gate_w);
  // Zombies exited at once (but those waiting at the gate); wait until
  // the kernel shows them so.
  for (size_t i = 0; i < plan.size(); ++i) {
    if (plan[i].zombie_status < 0 || plan[i].join_pgid > 0) continue;
    if (!WaitForState(pids[i], 'Z', deadline * 1000000LL).ok()) {
      return fail(absl::DeadlineExceededError(
          absl::StrCat("task ", pids[i], " did not become a zombie")));
    }
  }
  // Seize and stop the live ones.
  for (size_t i = 0; i < plan.size(); ++i) {
    if (plan[i].zombie_status >= 0 || plan[i].deferred) continue;
    st = Seize(pids[i], kSeizeOptions | kExitKill);
    if (st.ok()) st = Interrupt(pids[i]);
    if (!st.ok()) return fail(Annotate(st, absl::StrCat("task ", pids[i])));
  }
  for (size_t i = 0; i < plan.size(); ++i) {
    if (plan[i].zombie_status >= 0 || plan[i].deferred) continue;
    for (;;) {
      absl::StatusOr<StopInfo> stop = WaitStop(pids[i]);
      if (!stop.ok()) return fail(stop.status());
      if (stop->exited) {
        return fail(absl::AbortedError(absl::StrCat("task ", pids[i], " died before it was seized")));
      }
      if (stop->group_stop) break;
      // A signal-delivery stop (only SIGSTOP from outside can get past the
      // blocked mask): suppress it and wait for the interrupt.
      st = Cont(pids[i], 0);
      if (!st.ok()) return fail(st);
    }
  }
  return tree;
}

}  // namespace ckpt::task
