// The restore driver: read the tree and the objects, create every task
// with its PID, set up groups, rebuild each task from its section, check
// the tail, then let them all go.
//
// Every task is held in a ptrace stop until the whole image has been read
// and its checksum verified; on any failure every task created is killed.

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <linux/sched.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <any>
#include <atomic>
#include <thread>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <map>
#include <set>
#include <string>
#include <memory>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ckpt/ckpt.hpp"
#include "lib/base/clock.h"
#include "lib/base/buffer.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/base/trace.h"
#include "lib/fs/fs.h"
#include "lib/fs/locks.h"
#include "lib/handlers.h"
#include "lib/image/format.h"
#include "lib/image/reader.h"
#include "lib/ipc/sysv.h"
#include "lib/mm/mm.h"
#include "lib/objhash/objhash.h"
#include "lib/sections.h"
#include "lib/task/core.h"
#include "lib/task/inject.h"
#include "lib/task/jobstop.h"
#include "lib/task/proc.h"
#include "lib/task/ptrace.h"
#include "lib/task/restart.h"
#include "lib/task/signals.h"
#include "lib/task/spawn.h"
#include "lib/task/thread.h"
#include "lib/task/vdso.h"

namespace ckpt {
namespace {

// Whether a thread's registers, as dumped, show it interrupted in a
// syscall that the kernel restarts (-ERESTARTSYS .. -ERESTART_RESTARTBLOCK).
bool InSyscall(const user_regs_struct& regs) {
  const int64_t rax = static_cast<int64_t>(regs.rax);
  return static_cast<int64_t>(regs.orig_rax) >= 0 && rax <= -512 && rax >= -516;
}


constexpr unsigned long kExitKill = 0x100000;   // PTRACE_O_EXITKILL
constexpr unsigned long kTraceClone = 0x8;      // PTRACE_O_TRACECLONE
constexpr unsigned long kTraceFork = 0x2;       // PTRACE_O_TRACEFORK
constexpr unsigned long kTraceVfork = 0x4;      // PTRACE_O_TRACEVFORK
constexpr int kZombieWaitMs = 10000;

class RestoreRun {
 public:
  RestoreRun(const RestoreOptions& options, RestoreStats* stats)
      : options_(options), stats_(stats) {}
  ~RestoreRun() {
    if (!released_) KillAll();
    if (verify_.joinable()) verify_.join();
    if (subreaper_set_) prctl(PR_SET_CHILD_SUBREAPER, old_subreaper_, 0, 0, 0);
  }

  absl::StatusOr<pid_t> Run(int in_fd);

 private:
  absl::Status ReadObjects(image::Reader& r);
  absl::StatusOr<pid_t> RunStream(image::Reader& r);
  absl::Status WaitForFreePids();
  absl::Status CreateTasks();
  absl::Status SetUpGroups();
  // Forks `t` (inherits_memory) from its parent, whose memory is restored.
  absl::Status ForkFromParent(TaskRestore& t);
  // Takes over a task just made, stopped and seized as `pid`: its
  // injector (through `syscall_insn`, with the trampoline in its free
  // area) and queue, which starts by dropping the rseq registration it
  // inherited (it must go before the memory it points into does).
  absl::Status TakeOver(TaskRestore& t, pid_t pid, uint64_t syscall_insn);
  // Reads and queues the sections of `t`.
  absl::Status RestoreTask(image::Reader& r, TaskRestore& t);
  // The steps handlers left for when every task has its fds.
  absl::Status RunLateSteps();
  absl::Status EnterStops();
  void WaitStopped();
  void WaitAsleep();
  const TaskRestore* TableRoot(const TaskRestore& t) const;
  // What comes last in `t`: limits, credentials, the restorer's objects
  // closed, signals, registers.
  absl::Status FinishTask(TaskRestore& t);
  // Creates a thread of `t`; returns its TID as the task sees it.
  absl::StatusOr<pid_t> AddThread(TaskRestore& t, const task::ThreadState& thread,
                                  uint32_t tid_ref, const task::TaskCore& core);
  void KillAll();
  // Whether `t`'s private memory is left to a lazy fill.
  bool LazyFor(const TaskRestore& t) const;
  // A lazy restore, once the tree runs: keeps every thread of the lazily
  // filled tasks traced (PTRACE_O_EXITKILL: the restorer's death kills
  // them), passes on their signals and stops, holds processes they fork
  // until every page is in, and waits for the fills and the image's
  // checksum; then lets the tasks go. An error kills the tree.
  struct LazyTracees;
  absl::Status SuperviseLazy(LazyTracees& l);
  absl::Status EndLazy(LazyTracees& l);
  bool LazyStop(LazyTracees& l, pid_t tid, int status, bool interrupted);
  bool PollLazy(LazyTracees& l, bool interrupted, std::set<pid_t>* ready);
  absl::Status LetGo(LazyTracees& l, pid_t tid, const std::map<pid_t, user_regs_struct>& leave_with);
  // Kills the tree and whatever it made while traced, and reaps them.
  void KillLazy(LazyTracees& l);
  // The number of pid object `ref` in the pid namespace of task `t`.
  pid_t PidIn(uint32_t ref, const TaskRestore& t) const { return tree_.PidIn(ref, t); }

  const RestoreOptions& options_;
  RestoreStats* stats_;
  std::vector<std::unique_ptr<TaskRestore>> tasks_;  // tree order, then helpers
  // Its nodes are tasks_, in order.
  task::TreeRestore tree_{[this]() -> task::TreeNode& {
    tasks_.push_back(std::make_unique<TaskRestore>());
    return *tasks_.back();
  }};
  objhash::RestoreTable objects_;
  std::vector<objhash::LateStep> late_;  // left by object handlers
  std::map<uint32_t, int> session_ttys_;  // session leader's pid_ref -> fd on its terminal
  std::map<uint32_t, pid_t> thread_here_;  // a thread's pid object -> its TID as this process sees it
  std::vector<std::function<void()>> commits_;  // likewise, run once released
  std::map<std::string, std::any> kind_state_;  // the kinds' own, for this restore
  int high_fd_base_ = 0;
  int64_t start_ns_ = 0;  // CLOCK_MONOTONIC at the restore's start
  mm::RestorerLayout layout_;
  Buffer buffer_;
  uint64_t vdso_syscall_ = 0;
  task::SpawnedTree spawned_;  // what CreateTasks made, with a pidfd each
  bool released_ = false;
  std::vector<pid_t> in_syscall_;  // threads let go back into an interrupted syscall
  bool subreaper_set_ = false;
  int old_subreaper_ = 0;
  // A lazy restore: the image file and where the stream starts in it; the
  // checksum of the whole image, checked on a thread of its own.
  int image_fd_ = -1;
  uint64_t image_base_ = 0;
  std::thread verify_;
  absl::Status verify_status_;
  std::atomic<bool> verify_done_{false};
};

// The trust model: a restored task gets its credentials by asking the
// kernel for them from inside, with the restorer's own privileges, so an
// image can never give a task more than the restorer has. This says so
// up front, naming what is missing, rather than as a failed setresuid.
absl::Status CheckCredentialsGrantable(pid_t pid, const task::TaskCore& core) {
  ASSIGN_OR_RETURN(task::ProcStatus self, task::ReadProcStatus(getpid()));
  const image::ckpt_creds& c = core.creds;
  const bool same_ids = self.uid[0] == c.uid && self.uid[1] == c.euid && self.uid[2] == c.suid &&
                        self.uid[3] == c.fsuid && self.gid[0] == c.gid && self.gid[1] == c.egid &&
                        self.gid[2] == c.sgid && self.gid[3] == c.fsgid &&
                        self.groups == core.groups;
  constexpr uint64_t kSetgid = 1ull << 6, kSetuid = 1ull << 7, kSetpcap = 1ull << 8;
  std::vector<std::string> missing;
  if (!same_ids && !(self.cap_eff & kSetuid)) missing.push_back("CAP_SETUID");
  if (!same_ids && !(self.cap_eff & kSetgid)) missing.push_back("CAP_SETGID");
  // Capabilities the task had that the restorer does not hold cannot be
  // given, and changing the sets needs CAP_SETPCAP.
  const uint64_t more = ((c.cap_permitted | c.cap_effective | c.cap_inheritable) & ~self.cap_prm) |
                        (c.cap_bounding & ~self.cap_bnd);
  const bool caps_differ = c.cap_permitted != self.cap_prm || c.cap_effective != self.cap_eff ||
                           c.cap_inheritable != self.cap_inh || c.cap_bounding != self.cap_bnd;
  if (caps_differ && !(self.cap_eff & kSetpcap)) missing.push_back("CAP_SETPCAP");
  if (missing.empty() && more == 0) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "task ", pid, " ran as uid ", c.uid, " gid ", c.gid, " with capabilities 0x",
      absl::Hex(c.cap_effective), ", which this restorer (uid ", self.uid[0], ", capabilities 0x",
      absl::Hex(self.cap_eff), ") cannot give it",
      more != 0 ? absl::StrCat(": it does not hold capabilities 0x", absl::Hex(more)) : "",
      missing.empty() ? "" : absl::StrCat(": it lacks ", absl::StrJoin(missing, ", ")),
      " (an image never grants more than its restorer has)"));
}

absl::Status RestoreRun::ReadObjects(image::Reader& r) {
  ASSIGN_OR_RETURN(image::ckpt_objects objs,
                   r.Expect<image::ckpt_objects>(image::CKPT_HDR_OBJECTS));
  // Restored objects sit above every fd number a task uses and every fd
  // this process has open.
  ASSIGN_OR_RETURN(int max_own, MaxOpenFd());
  struct rlimit nofile;
  getrlimit(RLIMIT_NOFILE, &nofile);
  high_fd_base_ = std::max<int>(static_cast<int>(objs.fd_limit), max_own + 1);
  high_fd_base_ = (high_fd_base_ + 63) & ~63;
  uint64_t need = static_cast<uint64_t>(high_fd_base_) + objs.nr_objects + 64;
  if (need > nofile.rlim_cur) {
    if (need > nofile.rlim_max) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the restore needs ", need, " file descriptors, RLIMIT_NOFILE allows ", nofile.rlim_max));
    }
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }

  ASSIGN_OR_RETURN(const objhash::HandlerTable* handlers, Handlers());
  std::map<std::string, int> inherited;
  for (const InheritFd& in : options_.inherit_fds) {
    if (in.fd < 0 || fcntl(in.fd, F_GETFD) < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--inherit-fd ", in.fd, ":", in.name, ": fd ", in.fd, " is not open"));
    }
    if (!inherited.emplace(in.name, in.fd).second) {
      return absl::InvalidArgumentError(absl::StrCat("--inherit-fd names ", in.name, " twice"));
    }
  }
  std::set<std::string> inherited_used;
  uint32_t flags = 0;
  if (options_.shell_job) flags |= objhash::kRestoreShellJob;
  if (options_.allow_changed_files) flags |= objhash::kRestoreAllowChangedFiles;
  if (options_.ipc_ns == IpcNamespace::kNew) flags |= objhash::kRestoreIpcNew;
  if (options_.ipc_ns == IpcNamespace::kCurrent) flags |= objhash::kRestoreIpcCurrent;
  objhash::RestoreContext ctx{&r, &objects_, high_fd_base_, flags, start_ns_, &inherited,
                              &inherited_used};
  if (objs.reserved != 0) return r.FieldError("reserved", objs.reserved, " is not zero");
  if (objs.nr_links > objs.nr_objects) {
    return r.FieldError("nr_links", objs.nr_links, " is more than the ", objs.nr_objects, " objects");
  }
  ctx.late = &late_;
  ctx.commits = &commits_;
  ctx.kind_state = &kind_state_;
  ctx.session_ttys = &session_ttys_;
  RETURN_IF_ERROR(objhash::ReadObjects(ctx, *handlers, objs.nr_objects, objs.nr_links));
  for (const auto& [name, fd] : inherited) {
    if (!inherited_used.count(name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--inherit-fd ", fd, ":", name, ": the image has no external object ", name));
    }
  }
  return absl::OkStatus();
}

// A PID held by a zombie (the dumped task, not yet reaped) comes free as
// soon as its parent reaps it: wait a little for that rather than fail.
absl::Status RestoreRun::WaitForFreePids() {
  if (options_.new_pidns) return absl::OkStatus();  // a fresh namespace has them all
  const uint64_t deadline = static_cast<uint64_t>(MonotonicNs()) + uint64_t{kZombieWaitMs} * 1000000;
  for (const auto& t : tasks_) {
    pid_t pid = t->pids.front();
    for (;;) {
      absl::StatusOr<task::ProcStat> stat = task::ReadProcStat(pid);
      if (!stat.ok()) break;  // free
      if (stat->state != 'Z' && stat->state != 'X') {
        return absl::AlreadyExistsError(absl::StrCat("PID ", pid, " is taken by another process",
                                                     task::DescribePidHolder(pid)));
      }
      if (static_cast<uint64_t>(MonotonicNs()) > deadline) {
        return absl::AlreadyExistsError(
            absl::StrCat("PID ", pid, " is held by a zombie that nobody reaps"));
      }
      usleep(1000);
    }
  }
  return absl::OkStatus();
}

absl::Status RestoreRun::CreateTasks() {
  for (auto& t : tasks_) {
    if (!t->zombie && !t->inherits_memory && !mm::IsFreeArea(layout_.all, t->entry.free_area)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "task ", t->pids.front(), ": its free area at 0x", absl::Hex(t->entry.free_area),
          " is used by the restoring process"));
    }
  }
  std::vector<task::SpawnNode> plan = tree_.SpawnPlan(options_.new_pidns);
  // Each task enters its IPC namespace as it is made, when it is not the
  // one it inherits (its parent's; for the root, this process's).
  for (auto& t : tasks_) {
    if (t->zombie || t->helper || t->inherits_memory) continue;
    absl::StatusOr<const objhash::RestoredObject*> ns =
        objects_.Get(t->entry.ipc_ns_ref, ipc::kObjIpcNs);
    if (!ns.ok()) {
      return Annotate(ns.status(), absl::StrCat("image record TASK_ENTRY of task ", t->pids.front(),
                                                ": field 'ipc_ns_ref'"));
    }
    const bool enters = t->parent >= 0 ? tasks_[t->parent]->entry.ipc_ns_ref != t->entry.ipc_ns_ref
                                       : (*ns)->id == 1;  // a fresh namespace
    if (enters) plan[t->node].ipc_ns_fd = (*ns)->fd;
  }
  // Session leaders take their controlling terminals as they are made.
  for (const auto& [session_ref, fd] : session_ttys_) {
    TaskRestore* leader = nullptr;
    for (auto& t : tasks_) {
      if (!t->helper && t->entry.pid_ref == session_ref && t->entry.session_ref == session_ref) {
        leader = t.get();
      }
    }
    if (leader == nullptr || leader->zombie) {
      return absl::InvalidArgumentError(absl::StrCat(
          "image record PTY: field 'session_ref' ", session_ref,
          " names no live task of the image that leads its session"));
    }
    // One forked from its parent later takes it then (ForkFromParent).
    if (!leader->inherits_memory) plan[leader->node].ctty_fd = fd;
  }
  ASSIGN_OR_RETURN(spawned_, task::SpawnTree(plan, !options_.new_pidns));
  const std::vector<pid_t>& pids = spawned_.pids;
  ASSIGN_OR_RETURN(uint64_t syscall_off, task::VdsoSyscallOffset());
  for (const mm::Vma& v : layout_.vdso_family) {
    if (v.name == "[vdso]") vdso_syscall_ = v.start + syscall_off;
  }
  for (auto& t : tasks_) {
    t->pid = pids[t->node];
    if (t->zombie || t->inherits_memory) continue;
    RETURN_IF_ERROR(TakeOver(*t, t->pid, vdso_syscall_));
    if (!t->helper) ++stats_->tasks;
  }
  return absl::OkStatus();
}

absl::Status RestoreRun::TakeOver(TaskRestore& t, pid_t pid, uint64_t syscall_insn) {
  t.pid = pid;
  t.threads = {pid};
  RETURN_IF_ERROR(task::SetSigmask(pid, task::kRestoreInjectionMask));
  t.injector = std::make_unique<task::Injector>(pid, pid);
  RETURN_IF_ERROR(t.injector->Begin(syscall_insn));
  t.injector->AdoptTrampoline(t.entry.free_area);
  t.queue = std::make_unique<task::SyscallQueue>(t.injector.get());
  ASSIGN_OR_RETURN(task::RseqConfig rseq, task::GetRseqConfig(pid));
  if (rseq.size != 0) {
    t.queue->batch().Add(SYS_rseq, {rseq.ptr, rseq.size, 1 /* RSEQ_FLAG_UNREGISTER */,
                                    rseq.signature});
  }
  return absl::OkStatus();
}

// Waits for the first stop of a task or thread that a traced clone made:
// its PTRACE_EVENT_STOP (a signal stop before it is passed over).
absl::Status WaitBirthStop(pid_t tid, const char* what) {
  for (;;) {
    ASSIGN_OR_RETURN(task::StopInfo stop, task::WaitStop(tid));
    if (stop.exited) return absl::AbortedError(absl::StrCat(what, " ", tid, " died at birth"));
    if (stop.group_stop) return absl::OkStatus();
    RETURN_IF_ERROR(task::Cont(tid, 0));
  }
}

absl::Status RestoreRun::SetUpGroups() {
  auto run = [](task::TreeNode& node, long nr, std::initializer_list<uint64_t> args) {
    TaskRestore& t = static_cast<TaskRestore&>(node);
    task::SyscallBatch b = t.injector->NewBatch();
    b.Add(nr, args);
    return t.injector->Run(b);
  };
  auto end_helper = [this](task::TreeNode& node) {
    TaskRestore& h = static_cast<TaskRestore&>(node);
    task::KillByPidfd(spawned_.pidfds[h.node].get());
    int status;
    while (waitpid(h.pid, &status, __WALL) < 0 && errno == EINTR) {
    }
    h.injector.reset();
    h.threads.clear();
  };
  // Zombies of another task's group wait at the gate until the groups
  // exist; then each joins its group and exits.
  auto release_zombies = [this]() -> absl::Status {
    std::vector<TaskRestore*> gated;
    for (auto& t : tasks_) {
      if (t->zombie && !t->helper && t->join_pgid > 0) gated.push_back(t.get());
    }
    for (size_t i = 0; i < gated.size(); ++i) {
      if (write(spawned_.zombie_gate.get(), "g", 1) != 1) return ErrnoError(errno, "zombie gate");
    }
    const int64_t deadline = MonotonicNs() + 5000 * 1000000LL;
    for (TaskRestore* t : gated) {
      absl::StatusOr<task::ProcStat> st = task::WaitForState(t->pid, 'Z', deadline);
      if (!st.ok()) {
        return absl::DeadlineExceededError(absl::StrCat("task ", t->pid, " did not become a zombie"));
      }
      const pid_t want = tree_.pids().at(t->entry.pgrp_ref).front();
      if (!options_.new_pidns && st->pgrp != want) {
        return absl::InternalError(absl::StrCat("zombie ", t->pid, " could not join process group ",
                                                want, " (it is in ", st->pgrp, ")"));
      }
    }
    return absl::OkStatus();
  };
  return tree_.SetUpGroups(options_.new_pidns, run, end_helper, release_zombies);
}

// The calls injected into thread `tid` from now on pass by the seccomp
// filters it is about to get.
absl::Status SuspendSeccomp(pid_t tid) {
  absl::Status st = task::SetOptions(tid, task::kSeizeOptions | kExitKill | task::kSuspendSeccomp);
  if (!st.ok()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "thread ", tid, " has seccomp filters in the image, and this process may not suspend "
        "them for its injected calls (PTRACE_O_SUSPEND_SECCOMP needs CAP_SYS_ADMIN in the "
        "initial user namespace and no seccomp filter of its own): ", st.message()));
  }
  return absl::OkStatus();
}

// Injects clone3 into `t` with `flags` and the PID `nrs` (outermost
// first) at every level; the caller has set the ptrace options that make
// the new task start traced and stopped. The kernel frees an exited
// task's PID a moment after its parent has been told of the exit
// (release_task notifies, then frees): a PID that no task holds any more
// comes free within microseconds, so EEXIST is tried again for a while.
absl::Status CloneWithPid(TaskRestore& t, uint64_t flags, uint64_t exit_signal,
                          const std::vector<pid_t>& nrs, const char* what) {
  pid_t set_tid[32];
  if (nrs.empty() || nrs.size() > 32) return absl::InternalError("a task's PID levels");
  for (size_t i = 0; i < nrs.size(); ++i) set_tid[i] = nrs[nrs.size() - 1 - i];
  struct clone_args args;
  std::memset(&args, 0, sizeof(args));
  args.flags = flags;
  args.exit_signal = exit_signal;
  args.set_tid_size = nrs.size();
  const int64_t deadline = MonotonicNs() + task::kPidReleaseWaitNs;
  for (;;) {
    task::SyscallBatch b = t.injector->NewBatch();
    args.set_tid = b.AddData(set_tid, nrs.size() * sizeof(pid_t));
    b.Add(SYS_clone3, {b.AddStruct(args), sizeof(args)});
    absl::Status st = t.injector->Run(b);
    if (st.code() != absl::StatusCode::kAlreadyExists) return st;
    std::string holder = task::DescribePidHolder(nrs.front());
    if (!holder.empty() || MonotonicNs() > deadline) {
      return absl::AlreadyExistsError(absl::StrCat(what, " ", nrs.front(), " is taken", holder));
    }
    usleep(200);
  }
}

absl::StatusOr<pid_t> RestoreRun::AddThread(TaskRestore& t, const task::ThreadState& thread,
                                            uint32_t tid_ref, const task::TaskCore& core) {
  auto levels = tree_.pids().find(tid_ref);
  if (levels == tree_.pids().end() || levels->second.size() != t.pids.size()) {
    return absl::InvalidArgumentError(absl::StrCat("task ", t.pid, ": thread objref ", tid_ref,
                                                   " names no PID of its namespace"));
  }
  const std::vector<pid_t>& nrs = levels->second;
  // clone3 in the leader, with the thread's TID at every level; the new
  // thread starts traced (PTRACE_O_TRACECLONE) and stopped, before it
  // runs any code.
  task::SyscallQueue& q = *t.queue;
  RETURN_IF_ERROR(q.Flush());
  RETURN_IF_ERROR(task::SetOptions(t.pid, task::kSeizeOptions | kExitKill | kTraceClone));
  absl::Status st = CloneWithPid(
      t, CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM, 0, nrs,
      "thread ID");
  if (!st.ok()) return Annotate(st, absl::StrCat("task ", t.pid, ": creating thread ", nrs.front()));
  RETURN_IF_ERROR(task::SetOptions(t.pid, task::kSeizeOptions | kExitKill));
  // The TID as this process sees it.
  pid_t tid = nrs.front();
  if (options_.new_pidns) {
    ASSIGN_OR_RETURN(tid, task::OuterTid(t.pid, nrs.back()));
  }
  t.threads.push_back(tid);
  thread_here_[tid_ref] = tid;
  RETURN_IF_ERROR(WaitBirthStop(tid, "thread"));
  RETURN_IF_ERROR(task::SetSigmask(tid, task::kRestoreInjectionMask));
  task::Injector inj(t.pid, tid);
  RETURN_IF_ERROR(inj.Begin(t.injector->syscall_insn()));
  inj.AdoptTrampoline(t.injector->layout().base);
  task::SyscallQueue tq(&inj);
  RETURN_IF_ERROR(task::QueueThreadRestore(tq, thread));
  // Its seccomp filters before its credentials: installing one needs
  // no_new_privs or CAP_SYS_ADMIN, which the credentials may drop. The
  // calls injected after them do not meet them.
  if (thread.seccomp.mode != 0) {
    RETURN_IF_ERROR(SuspendSeccomp(tid));
    RETURN_IF_ERROR(task::QueueSeccompFilters(tq, thread.seccomp));
  }
  task::TaskCore own = core;  // the process's credentials, or the thread's own
  if (thread.creds) {
    own.creds = thread.creds->creds;
    own.groups = thread.creds->groups;
  }
  RETURN_IF_ERROR(task::QueueCredsRestore(tq, own));
  RETURN_IF_ERROR(tq.Flush());
  RETURN_IF_ERROR(task::SetXstate(tid, thread.xstate));
  user_regs_struct regs = thread.regs;
  if (thread.restart) {
    ASSIGN_OR_RETURN(regs, task::PrimeRestart(inj, thread.regs, *thread.restart, start_ns_));
  }
  if (InSyscall(thread.regs)) in_syscall_.push_back(tid);
  RETURN_IF_ERROR(inj.ParkWith(regs, thread.sigmask));
  return nrs.back();
}

// A task that shared pages with its parent is forked from it now, the
// parent's memory restored: clone3 (with the task's PID at every level)
// injected into the parent, which passes the child on to this tracer
// (PTRACE_O_TRACEFORK) stopped before it runs. The child then has its
// parent's memory, and a copy of its fd table and of what else a fork
// copies; its own sections replace all of it but the pages it keeps.
absl::Status RestoreRun::ForkFromParent(TaskRestore& t) {
  TaskRestore& p = *tasks_[t.parent];
  if (p.injector == nullptr || p.zombie || p.helper) {
    return absl::InternalError(absl::StrCat("task ", t.pids.front(), ": its parent is not restored"));
  }
  task::SyscallQueue& pq = *p.queue;
  RETURN_IF_ERROR(pq.Flush());
  RETURN_IF_ERROR(task::SetOptions(p.pid, task::kSeizeOptions | kExitKill | kTraceFork));
  const std::vector<pid_t>& nrs = t.pids;
  absl::Status st = CloneWithPid(p, 0, SIGCHLD, nrs, "PID");
  absl::Status reset = task::SetOptions(p.pid, task::kSeizeOptions | kExitKill);
  // The child as this process sees it, found among the parent's children
  // (whatever the injection said: one made is one to kill on failure).
  pid_t pid = 0;
  absl::StatusOr<std::vector<pid_t>> children = task::ListChildren(p.pid);
  if (children.ok()) {
    for (pid_t c : *children) {
      absl::StatusOr<pid_t> inner = options_.new_pidns ? task::InnerPid(c) : c;
      if (inner.ok() && *inner == (options_.new_pidns ? nrs.back() : nrs.front())) pid = c;
    }
  }
  UniqueFd pidfd(pid > 0 ? static_cast<int>(syscall(SYS_pidfd_open, pid, 0)) : -1);
  absl::StatusOr<task::ProcStat> stat = pidfd.valid() ? task::ReadProcStat(pid)
                                                      : absl::NotFoundError("no pidfd");
  if (stat.ok() && stat->ppid == p.pid) {
    spawned_.pids[t.node] = pid;
    spawned_.pidfds[t.node] = std::move(pidfd);
  }
  if (!st.ok()) {
    return Annotate(st, absl::StrCat("task ", p.pid, ": forking task ", nrs.front(),
                                     " after its memory"));
  }
  RETURN_IF_ERROR(reset);
  if (!spawned_.pidfds[t.node].valid()) {
    return absl::InternalError(absl::StrCat("task ", nrs.front(), " forked by ", p.pid,
                                            " is not found as its child"));
  }
  t.pid = pid;
  t.threads = {pid};
  RETURN_IF_ERROR(WaitBirthStop(pid, "task"));
  RETURN_IF_ERROR(task::SetOptions(pid, task::kSeizeOptions | kExitKill));
  // Its trampoline is the parent's, in the free area they have in common
  // (TreeRestore::Read); the parent's rseq registration came along (its
  // own comes back with its threads section).
  RETURN_IF_ERROR(TakeOver(t, pid, p.injector->syscall_insn()));
  // The group or session it leads is made now.
  task::SyscallQueue& q = *t.queue;
  if (t.entry.session_ref == t.entry.pid_ref) {
    q.batch().Add(SYS_setsid, {});
    // Its controlling terminal, before it forks its own children: the
    // restorer's fd on it is in the table it copied from its parent.
    auto tty = session_ttys_.find(t.entry.pid_ref);
    if (tty != session_ttys_.end()) {
      q.batch().Add(SYS_ioctl, {static_cast<uint64_t>(tty->second), TIOCSCTTY, 0});
    }
  } else if (t.entry.pgrp_ref == t.entry.pid_ref) {
    q.batch().Add(SYS_setpgid, {0, 0});
  }
  st = q.Flush();
  if (!st.ok()) return Annotate(st, absl::StrCat("task ", pid, ": after its fork"));
  ++stats_->tasks;
  return absl::OkStatus();
}

absl::Status RestoreRun::RestoreTask(image::Reader& r, TaskRestore& t) {
  t.sections = std::make_unique<SectionRestoreContext>();
  SectionRestoreContext& ctx = *t.sections;
  ctx.reader = &r;
  ctx.task = &t;
  ctx.objects = &objects_;
  ctx.high_fd_base = high_fd_base_;
  ctx.layout = &layout_;
  if (t.inherits_memory) ctx.parent = tasks_[t.parent]->sections.get();
  ctx.buffer = &buffer_;
  ctx.stats = stats_;
  ctx.lazy = LazyFor(t);
  ctx.image_fd = image_fd_;
  ctx.image_base = image_base_;
  ctx.add_thread = [&](const task::ThreadState& thread, uint32_t tid_ref,
                       const task::TaskCore& core) { return AddThread(t, thread, tid_ref, core); };
  ctx.check_credentials = [&](const task::TaskCore& core) {
    return CheckCredentialsGrantable(t.pid, core);
  };
  for (const TaskSectionOps& section : TaskSections()) RETURN_IF_ERROR(section.restore(ctx));
  const int table = t.files_of >= 0 ? t.files_of : t.shares_files ? t.parent : -1;
  if (table >= 0) {
    t.fd_of = tasks_[table]->fd_of;
    t.fds_of = tasks_[table]->fds_of;
  }
  return absl::OkStatus();
}

namespace {

// A restored task as the late pass sees it: its fd numbers, and syscalls
// run through its trampoline after what its sections queued.
class LateTaskImpl : public objhash::LateTask {
 public:
  LateTaskImpl(TaskRestore& t, const task::TreeRestore& tree) : t_(t), tree_(tree) {}
  pid_t PidOf(uint32_t pid_ref) const override {
    return tree_.pids().count(pid_ref) ? tree_.PidIn(pid_ref, t_) : 0;
  }
  pid_t pid() const override { return t_.pid; }
  int FdOf(uint32_t objref) const override {
    auto it = t_.fd_of.find(objref);
    return it == t_.fd_of.end() ? -1 : it->second;
  }
  std::vector<std::pair<int, bool>> FdsOf(uint32_t objref) const override {
    auto it = t_.fds_of.find(objref);
    return it == t_.fds_of.end() ? std::vector<std::pair<int, bool>>{} : it->second;
  }
  absl::StatusOr<int64_t> Syscall(long nr, std::array<uint64_t, 6> args,
                                  std::span<const uint8_t> data, int data_arg) override {
    RETURN_IF_ERROR(t_.queue->Flush());
    task::SyscallBatch b = t_.injector->NewBatch();
    if (data_arg >= 6 || (data_arg < 0 && !data.empty())) {
      return absl::InternalError(absl::StrCat("a late syscall's data for argument ", data_arg));
    }
    if (data_arg >= 0) args[data_arg] = b.AddData(data.data(), data.size());
    size_t i = b.Add(nr, {args[0], args[1], args[2], args[3], args[4], args[5]}, task::kMayFail);
    RETURN_IF_ERROR(t_.injector->Run(b));
    return b.ret(i);
  }

 private:
  TaskRestore& t_;
  const task::TreeRestore& tree_;
};

}  // namespace

absl::Status RestoreRun::RunLateSteps() {
  if (late_.empty()) return absl::OkStatus();
  Phase p("restore: late steps");
  std::vector<std::unique_ptr<LateTaskImpl>> impls;
  objhash::LateContext ctx;
  ctx.objects = &objects_;
  ctx.pid_here = [this](uint32_t pid_ref) -> pid_t {
    for (const auto& t : tasks_) {
      if (!t->helper && t->entry.pid_ref == pid_ref) return t->pid;
    }
    auto thread = thread_here_.find(pid_ref);
    return thread != thread_here_.end() ? thread->second : 0;
  };
  for (auto& t : tasks_) {
    if (t->zombie || t->helper) continue;
    impls.push_back(std::make_unique<LateTaskImpl>(*t, tree_));
    ctx.tasks.push_back(impls.back().get());
  }
  for (objhash::LateStep& step : late_) RETURN_IF_ERROR(step(ctx));
  return absl::OkStatus();
}

// Tasks stopped by job control enter their group stop now, before any
// parent's last batch: the SIGCHLD the stop sends a parent is then
// discarded with the restore's own, and a parent that had already waited
// for the stop takes the report again (FinishTask).
absl::Status RestoreRun::EnterStops() {
  for (auto& t : tasks_) {
    if (t->zombie || t->helper || t->stop_signo == 0) continue;
    Phase p("restore: job-control stops");
    const int signo = t->stop_signo;
    const image::ckpt_sigaction& action = t->sections->sighand.action[signo - 1];
    if (signo != SIGSTOP && action.handler != reinterpret_cast<uint64_t>(SIG_DFL)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "task ", t->pid, ": TASK_ENTRY stop_signo ", signo,
          " stopped it, but its action for that signal is not the default one"));
    }
    // A stop signal flushes a pending SIGCONT, and SIGCONT a stop: an image
    // with both describes no task that can exist.
    auto has_cont = [](const std::vector<image::ckpt_siginfo>& q) {
      for (const image::ckpt_siginfo& s : q) {
        int signo = 0;
        std::memcpy(&signo, s.info, sizeof(signo));  // siginfo_t.si_signo
        if (signo == SIGCONT) return true;
      }
      return false;
    };
    bool cont = has_cont(t->sections->signals.pending) || has_cont(t->sections->leader.pending);
    for (const auto& [tid, q] : t->sections->thread_pending) cont |= has_cont(q);
    if (cont) {
      return absl::InvalidArgumentError(absl::StrCat(
          "task ", t->pid, ": TASK_ENTRY stop_signo ", signo,
          " for a task with SIGCONT pending (a stop and a pending SIGCONT cannot coexist)"));
    }
    RETURN_IF_ERROR(t->queue->Flush());
    absl::StatusOr<int> sig =
        task::EnterGroupStop(t->pid, t->threads, signo, task::kRestoreInjectionMask);
    if (!sig.ok()) return Annotate(sig.status(), "restoring a job-control stop");
    t->stop_signo = *sig;
  }
  return absl::OkStatus();
}

// Let go, a stopped task's threads enter their group stop by themselves
// (the kernel puts a detached tracee back into a group stop in effect):
// the restore returns once every one of them is there (or 2 s have gone
// by: the stop is the kernel's to finish), so that whoever looks at the
// restored tree finds it stopped.
void RestoreRun::WaitStopped() {
  const int64_t deadline = MonotonicNs() + 2000 * 1000000LL;
  for (auto& t : tasks_) {
    if (t->zombie || t->helper || t->stop_signo == 0) continue;
    for (pid_t tid : t->threads) task::WaitForState(tid, 'T', deadline).IgnoreError();
  }
}

// A thread let go from a stop still has a signal pending, for the kernel,
// until it has run again and restarted its syscall; a signal sent to the
// process meanwhile goes to another of its threads (a Python program
// whose main thread waits on a lock then never runs its handler). The
// restore returns once every thread that was in a syscall sleeps in it
// again (or 100 ms have gone by: its syscall may have finished at once).
void RestoreRun::WaitAsleep() {
  const int64_t deadline = MonotonicNs() + 100 * 1000000LL;
  for (pid_t tid : in_syscall_) {
    for (;;) {
      absl::StatusOr<task::ProcStat> st = task::ReadProcStat(tid);
      if (!st.ok() || st->state != 'R' || MonotonicNs() > deadline) break;
      usleep(50);
    }
  }
}

// The task whose fd table `t` uses (itself unless it shares its parent's).
const TaskRestore* RestoreRun::TableRoot(const TaskRestore& t) const {
  const TaskRestore* r = &t;
  for (;;) {
    if (r->files_of >= 0) {
      r = tasks_[r->files_of].get();
    } else if (r->shares_files && r->parent >= 0) {
      r = tasks_[r->parent].get();
    } else {
      return r;
    }
  }
}

absl::Status RestoreRun::FinishTask(TaskRestore& t) {
  task::SyscallQueue& q = *t.queue;
  SectionRestoreContext& ctx = *t.sections;
  const task::TaskCore& core = ctx.core;
  const task::ThreadState& leader = ctx.leader;
  const image::ckpt_sighand& sighand = ctx.sighand;
  auto& thread_pending = ctx.thread_pending;
  absl::Status st;

  // Last, what must come after every thread exists: limits, credentials,
  // the restorer's objects closed, pending signals and timers, registers.
  RETURN_IF_ERROR(task::QueueRlimitsRestore(q, core));
  // Seccomp filters before the credentials (see AddThread).
  if (leader.seccomp.mode != 0) {
    RETURN_IF_ERROR(SuspendSeccomp(t.pid));
    RETURN_IF_ERROR(task::QueueSeccompFilters(q, leader.seccomp));
  }
  RETURN_IF_ERROR(task::QueueCredsRestore(q, core));
  // The restorer's objects stay in a shared fd table until its last
  // sharer has mapped its files.
  if (t.closes_objects) {
    // A lazy restore's userfaultfds in this table stay until the fills end.
    std::vector<int> keep;
    for (auto& u : tasks_) {
      if (u->lazy_fd >= 0 && TableRoot(*u) == TableRoot(t)) keep.push_back(u->lazy_fd);
    }
    std::sort(keep.begin(), keep.end());
    RETURN_IF_ERROR(fs::QueueCloseObjects(q, high_fd_base_, keep));
    // Then the POSIX locks of its table (which the closes would have
    // dropped), those the table's first owner held.
    for (auto& u : tasks_) {
      if (u->zombie || u->helper || u->sections == nullptr || u->sections->posix_locks.empty()) continue;
      if (TableRoot(*u) != TableRoot(t)) continue;
      RETURN_IF_ERROR(q.Flush());
      RETURN_IF_ERROR(fs::TakeLocks(*t.injector, t.pid, u->sections->posix_locks));
    }
  }
  // SIGCHLD from the restore's own zombies and helpers is not the task's.
  RETURN_IF_ERROR(q.Reserve(1, 32));
  uint64_t chld = 1ull << (SIGCHLD - 1);
  struct timespec zero = {0, 0};
  q.batch().Add(SYS_rt_sigtimedwait,
                {q.batch().AddStruct(chld), 0, q.batch().AddStruct(zero), 8}, task::kMayFail);
  // A stopped child whose stop this task had already waited for: the
  // report the restored stop made is taken again.
  for (auto& c : tasks_) {
    if (c->parent < 0 || tasks_[c->parent].get() != &t || c->stop_signo == 0 ||
        !c->stop_reported) {
      continue;
    }
    RETURN_IF_ERROR(q.Reserve(1, sizeof(siginfo_t)));
    q.batch().Add(SYS_waitid,
                  {P_PID, static_cast<uint64_t>(PidIn(c->entry.pid_ref, t)),
                   q.batch().Reserve(sizeof(siginfo_t)), WSTOPPED | WNOHANG | __WALL, 0});
  }
  // Then the task's own pending signals and its timers.
  const pid_t tgid = PidIn(t.entry.pid_ref, t);
  if (!leader.pending.empty()) thread_pending.push_back({tgid, leader.pending});
  RETURN_IF_ERROR(task::QueueSignalsRestore(
      q, tgid, ctx.signals, thread_pending, start_ns_, [&](uint32_t ref) -> absl::StatusOr<pid_t> {
        if (!tree_.pids().count(ref)) {
          return absl::InvalidArgumentError(
              absl::StrCat("task ", t.pid, ": a POSIX timer names pid objref ", ref,
                           ", which the image does not have"));
        }
        return PidIn(ref, t);
      }));
  {
    Phase p("restore: final batch");
    st = q.Flush();
  }
  if (!st.ok()) return Annotate(st, absl::StrCat("task ", t.pid));
  Phase p("restore: regs, park");
  RETURN_IF_ERROR(task::SetXstate(t.pid, leader.xstate));
  const image::ckpt_sigaction& trap = sighand.action[SIGTRAP - 1];
  bool trap_ignored = trap.handler == reinterpret_cast<uint64_t>(SIG_IGN);
  user_regs_struct regs = leader.regs;
  if (leader.restart) {
    absl::StatusOr<user_regs_struct> primed =
        task::PrimeRestart(*t.injector, leader.regs, *leader.restart, start_ns_);
    if (!primed.ok()) return Annotate(primed.status(), absl::StrCat("task ", t.pid));
    regs = *primed;
  }
  if (InSyscall(leader.regs)) in_syscall_.push_back(t.pid);
  st = t.injector->Finish(regs, leader.sigmask, trap_ignored ? &trap : nullptr);
  if (!st.ok()) return Annotate(st, absl::StrCat("task ", t.pid));
  for (const auto& step : ctx.before_release) RETURN_IF_ERROR(step());
  return absl::OkStatus();
}

void RestoreRun::KillAll() {
  // Through the pidfds of the tasks this restore made, and nothing else;
  // every thread it made is reaped too, so that no zombie stays behind.
  std::vector<pid_t> tids;
  for (auto& t : tasks_) {
    for (pid_t tid : t->threads) {
      if (tid != t->pid) tids.push_back(tid);
    }
  }
  task::KillTree(spawned_, tids);
  for (auto& t : tasks_) t->pid = 0;
}

// After a failed restore: the records it had not reached that a kind must
// see anyway (ObjectOps::abandoned), to the end of the stream or the
// first record that cannot be read.
void Abandon(image::Reader& r) {
  absl::StatusOr<const objhash::HandlerTable*> handlers = objhash::GlobalHandlers();
  if (!handlers.ok()) return;
  bool any = false;
  for (const objhash::ObjectOps& ops : (*handlers)->all()) any |= ops.abandoned != nullptr;
  if (!any || r.finished()) return;
  std::map<uint32_t, std::any> state;
  for (;;) {
    // What is left of the record the restore stopped in (or of the last
    // one a kind looked at) is not a fault here.
    if (!r.SkipPayload().ok()) return;
    absl::StatusOr<image::Record> rec = r.Next();
    if (!rec.ok() || rec->type == image::CKPT_HDR_TAIL) return;
    const objhash::ObjectOps* ops = (*handlers)->ForRecord(rec->type);
    if (ops != nullptr && ops->abandoned != nullptr) ops->abandoned(r, *rec, state[rec->type]);
  }
}

bool RestoreRun::LazyFor(const TaskRestore& t) const {
  if (!options_.lazy || t.inherits_memory || t.stop_signo != 0) return false;
  // Its children forked from it keep pages of its memory (inherits_memory):
  // both are filled before they run.
  for (const auto& c : tasks_) {
    if (c->inherits_memory && c->parent >= 0 && tasks_[c->parent].get() == &t) return false;
  }
  return true;
}

namespace {

constexpr unsigned long kTraceExit = 0x40;  // PTRACE_O_TRACEEXIT
constexpr unsigned long kLazyOptions =
    task::kSeizeOptions | kExitKill | kTraceFork | kTraceVfork | kTraceClone | kTraceExit;

enum class Report { kNone, kStop, kGone };

// The next report of traced thread `tid` (blocking or not). A stop is
// taken (*status in waitpid's form). An exit is taken too, unless `tid` is
// in `own`: a process whose real parent is this one, whose exit status is
// left to whoever waits for it (the caller of the restore).
Report NextReport(pid_t tid, bool block, const std::set<pid_t>& own, int* status) {
  siginfo_t info{};
  const int options = WEXITED | WSTOPPED | __WALL | WNOWAIT | (block ? 0 : WNOHANG);
  for (;;) {
    if (waitid(P_PID, static_cast<id_t>(tid), &info, options) == 0) break;
    if (errno == EINTR) continue;
    return Report::kGone;  // ECHILD: not traced any more
  }
  if (info.si_pid == 0) return Report::kNone;
  if (info.si_code == CLD_EXITED || info.si_code == CLD_KILLED || info.si_code == CLD_DUMPED) {
    siginfo_t taken{};
    if (!own.count(tid)) waitid(P_PID, static_cast<id_t>(tid), &taken, WEXITED | __WALL | WNOHANG);
    return Report::kGone;
  }
  // Only a stop is taken here: an exit that came since the peek stays.
  siginfo_t stop{};
  if (waitid(P_PID, static_cast<id_t>(tid), &stop, WSTOPPED | __WALL | WNOHANG) != 0 ||
      stop.si_pid != tid) {
    return Report::kNone;
  }
  // A ptrace stop's si_status is its exit code (signal | event << 8).
  *status = (stop.si_status << 8) | 0x7f;
  return Report::kStop;
}

bool SameVm(pid_t a, pid_t b) { return syscall(SYS_kcmp, a, b, 1 /* KCMP_VM */, 0, 0) == 0; }

// The thread group of `tid` (/proc/TID/status Tgid), 0 if unreadable.
pid_t TgidOf(pid_t tid) {
  absl::StatusOr<task::ProcStatus> st = task::ReadProcStatus(tid);
  return st.ok() ? st->tgid : 0;
}

}  // namespace

// The lazily restored tree, traced while its pages come in: its threads,
// and the threads and processes they make meanwhile.
struct RestoreRun::LazyTracees {
  std::set<pid_t> traced;
  std::map<pid_t, TaskRestore*> origin;  // whose userfaultfd each inherited
  std::map<pid_t, pid_t> origin_tid;     // newborn -> the thread that made it
  std::set<pid_t> newborn;               // auto-attached, first stop not seen
  std::set<pid_t> held;                  // forked processes, stopped until the end
  std::set<pid_t> released;              // processes made meanwhile, let go at the end
  std::set<pid_t> own;                   // processes this one is the parent of
};

void RestoreRun::KillLazy(LazyTracees& l) {
  // Those stopped at a fork report whose child is not known yet: the
  // child, auto-attached, is killed too.
  for (bool more = true; more;) {
    more = false;
    for (pid_t tid : std::vector<pid_t>(l.traced.begin(), l.traced.end())) {
      siginfo_t info{};
      if (waitid(P_PID, static_cast<id_t>(tid), &info, WSTOPPED | __WALL | WNOHANG | WNOWAIT) != 0 ||
          info.si_pid != tid) {
        continue;
      }
      const int event = info.si_status >> 8;
      if (event == PTRACE_EVENT_FORK || event == PTRACE_EVENT_VFORK || event == PTRACE_EVENT_CLONE) {
        unsigned long child = 0;
        if (ptrace(PTRACE_GETEVENTMSG, tid, 0, &child) == 0 && child != 0 &&
            l.traced.insert(static_cast<pid_t>(child)).second) {
          more = true;
        }
      }
    }
  }
  for (pid_t tid : l.traced) syscall(SYS_tkill, tid, SIGKILL);
  for (pid_t pid : l.released) kill(pid, SIGKILL);
  // Anything else still traced by this process (a child born as its
  // parent was killed, never reported): found in /proc.
  if (DIR* proc = opendir("/proc")) {
    while (struct dirent* e = readdir(proc)) {
      pid_t pid;
      if (!absl::SimpleAtoi(e->d_name, &pid)) continue;
      absl::StatusOr<task::ProcStatus> st = task::ReadProcStatus(pid);
      if (st.ok() && st->tracer_pid == getpid()) {
        kill(pid, SIGKILL);
        l.traced.insert(pid);
      }
    }
    closedir(proc);
  }
  // Each stops once more on its way out (PTRACE_EVENT_EXIT) and is let
  // go there; an exit reported to this process as their tracer is taken
  // (a leader is reported dead only once its threads are), as their
  // parent it is left to KillAll.
  std::set<pid_t> left = l.traced;
  std::set<pid_t> killed = l.traced;
  killed.insert(l.released.begin(), l.released.end());
  for (const int64_t deadline = MonotonicNs() + 5000 * 1000000LL;
       !left.empty() && MonotonicNs() < deadline;) {
    for (auto it = left.begin(); it != left.end();) {
      int status = 0;
      const Report r = NextReport(*it, /*block=*/false, l.own, &status);
      if (r == Report::kStop) {
        if (task::Detach(*it, 0).ok()) {
          it = left.erase(it);
          continue;
        }
        ptrace(PTRACE_CONT, *it, 0, 0);
      }
      if (r == Report::kGone) {
        it = left.erase(it);
        continue;
      }
      ++it;
    }
    if (!left.empty()) usleep(200);
  }
  // Dead when this returns, not only on the way (a zombie, or gone).
  for (const int64_t deadline = MonotonicNs() + 5000 * 1000000LL; MonotonicNs() < deadline;) {
    bool dying = false;
    for (pid_t tid : killed) {
      absl::StatusOr<task::ProcStat> st = task::ReadProcStat(tid);
      if (st.ok() && st->state != 'Z' && st->state != 'X') dying = true;
    }
    if (!dying) break;
    usleep(200);
  }
  KillAll();
  l.traced.clear();
}

// Handles a stop of traced `tid` (status in waitpid's form) while the tree
// runs: passes signals and group stops on, notes what it made, lets go a
// thread that exits. Returns true for a stop that is this process's to
// end: the first stop of a forked process (held), or any interrupt or
// first stop when `interrupted` (EndLazy's).
bool RestoreRun::LazyStop(LazyTracees& l, pid_t tid, int status, bool interrupted) {
  const int sig = WSTOPSIG(status);
  const int event = status >> 16;
  if (event == PTRACE_EVENT_FORK || event == PTRACE_EVENT_VFORK || event == PTRACE_EVENT_CLONE) {
    unsigned long child = 0;
    ptrace(PTRACE_GETEVENTMSG, tid, 0, &child);
    if (child != 0) {
      const pid_t c = static_cast<pid_t>(child);
      l.newborn.insert(c);
      l.traced.insert(c);
      l.origin[c] = l.origin[tid];
      l.origin_tid[c] = tid;
    }
    task::Cont(tid, 0).IgnoreError();
    return false;
  }
  if (event == PTRACE_EVENT_EXIT) {
    // On its way out (exit, exit_group, a fatal signal): let go now, so
    // that no zombie leader is left traced (it could not be detached).
    task::Detach(tid, 0).IgnoreError();
    l.traced.erase(tid);
    l.held.erase(tid);
    l.newborn.erase(tid);
    return false;
  }
  if (event == PTRACE_EVENT_STOP) {
    if (l.newborn.erase(tid)) {
      // A process of its own (not a thread, not a vfork child sharing the
      // memory) runs once every page is in: its fill began at the fork.
      const pid_t from = l.origin_tid.count(tid) ? l.origin_tid[tid] : 0;
      l.origin_tid.erase(tid);
      const bool thread = TgidOf(tid) != tid;
      TaskRestore* t = l.origin[tid];
      const bool same_vm =
          !thread && ((from > 0 && SameVm(from, tid)) || (t != nullptr && SameVm(t->pid, tid)));
      if (!thread && !same_vm) {
        l.held.insert(tid);
        return true;
      }
      if (interrupted) return true;
      task::Cont(tid, 0).IgnoreError();
      return false;
    }
    if (interrupted) return true;
    if (task::IsStopSignal(sig)) {
      ptrace(PTRACE_LISTEN, tid, 0, 0);  // a group stop: it stays stopped
    } else {
      task::Cont(tid, 0).IgnoreError();
    }
    return false;
  }
  if (event != 0 || sig == (SIGTRAP | 0x80)) {
    task::Cont(tid, 0).IgnoreError();
  } else {
    task::Cont(tid, sig).IgnoreError();  // a signal for it: delivered
  }
  return false;
}

absl::Status RestoreRun::SuperviseLazy(LazyTracees& l) {
  auto fail = [&](absl::Status st) {
    KillLazy(l);
    return st;
  };
  for (;;) {
    uint64_t pending = 0;
    for (auto& t : tasks_) {
      if (t->lazy_fill == nullptr) continue;
      absl::Status st = t->lazy_fill->error();
      if (!st.ok()) return fail(Annotate(st, absl::StrCat("task ", t->pid, ": lazy fill")));
      pending += t->lazy_fill->pending_pages_all();
    }
    const bool verified = verify_done_;  // read once: the status below is then final
    if (verified && !verify_status_.ok()) {
      return fail(Annotate(verify_status_, "the lazily restored tree was killed: its image"));
    }
    if (pending == 0 && verified) break;
    if (!PollLazy(l, /*interrupted=*/false, nullptr)) usleep(200);
  }
  return EndLazy(l);
}

// One round over the traced threads: each report is handled (LazyStop);
// those that stop for this process go to *ready. Whether any reported.
bool RestoreRun::PollLazy(LazyTracees& l, bool interrupted, std::set<pid_t>* ready) {
  bool any = false;
  for (pid_t tid : std::vector<pid_t>(l.traced.begin(), l.traced.end())) {
    if (!l.traced.count(tid) || (ready != nullptr && ready->count(tid))) continue;
    int status = 0;
    const Report r = NextReport(tid, /*block=*/false, l.own, &status);
    if (r == Report::kNone) continue;
    any = true;
    if (r == Report::kGone) {
      l.traced.erase(tid);
      l.newborn.erase(tid);
      l.held.erase(tid);
      continue;
    }
    if (LazyStop(l, tid, status, interrupted) && ready != nullptr) ready->insert(tid);
  }
  return any;
}

// Every page is in: the ranges are unregistered; every traced thread is
// stopped (an event loop: a fork, a vfork or a signal on the way is
// served meanwhile), each fd table that still holds the task's
// userfaultfd (kcmp says it is that file, not one the program put at the
// number since) has it closed by an injected close, and the thread is let
// go as it was, an epoll wait with the time it had left. Then this
// process closes its own copies, which releases the userfaultfds.
absl::Status RestoreRun::EndLazy(LazyTracees& l) {
  absl::Status result;
  for (auto& t : tasks_) {
    if (t->lazy_fill == nullptr) continue;
    absl::Status st = t->lazy_fill->Wait();
    if (result.ok() && !st.ok()) result = Annotate(st, absl::StrCat("task ", t->pid, ": lazy fill"));
  }
  if (!result.ok()) {
    KillLazy(l);
    return result;
  }
  std::set<pid_t> ready;
  std::map<pid_t, user_regs_struct> leave_with;  // epoll waits, with the time they had left
  // An interrupt ends an epoll wait with EINTR: a thread in one with a
  // timeout is stopped with the sleep probe (as a dump stops it), and let
  // go back into it with the time it had left.
  for (pid_t tid : std::vector<pid_t>(l.traced.begin(), l.traced.end())) {
    TaskRestore* t = l.origin[tid];
    if (t == nullptr || l.held.count(tid) || l.newborn.count(tid) || !l.traced.count(tid) ||
        !task::InTimedEpollWait(t->pid, tid)) {
      continue;
    }
    auto stop = [&]() -> absl::Status {
      RETURN_IF_ERROR(task::Interrupt(tid));
      for (;;) {
        int status = 0;
        const Report r = NextReport(tid, /*block=*/true, l.own, &status);
        if (r == Report::kGone) return absl::AbortedError("gone");
        if (r == Report::kStop && LazyStop(l, tid, status, /*interrupted=*/true)) break;
      }
      return absl::OkStatus();
    };
    task::SleepProbe probe = task::TakeSleepProbe();
    const int64_t at = MonotonicNs();
    if (!stop().ok()) continue;
    ready.insert(tid);
    int64_t expiry = -1;
    if (probe.armed()) {
      absl::StatusOr<int64_t> e = task::ResolveSleepExpiry(t->pid, tid, probe, stop);
      if (e.ok()) expiry = *e;
    }
    absl::StatusOr<user_regs_struct> regs = task::GetRegs(tid);
    if (!regs.ok() || !l.traced.count(tid)) continue;
    absl::StatusOr<std::optional<image::ckpt_restart>> plan =
        task::PlanRestart(t->pid, *regs, expiry, at, at);
    if (plan.ok() && plan->has_value() && !task::UnblockedSignalPending(tid)) {
      absl::StatusOr<user_regs_struct> again =
          task::RestartedEpollWait(tid, *regs, **plan, (*plan)->remaining_ns - (MonotonicNs() - at));
      if (again.ok()) leave_with[tid] = *again;
    }
  }
  // The others at once (a held process is stopped already; a newborn's
  // first stop comes by itself).
  for (pid_t tid : l.traced) {
    if (!ready.count(tid) && !l.held.count(tid) && !l.newborn.count(tid)) {
      task::Interrupt(tid).IgnoreError();
    }
  }
  for (pid_t tid : l.held) ready.insert(tid);
  const int64_t deadline = MonotonicNs() + 30 * 1000000000LL;
  while (!l.traced.empty()) {
    bool any = PollLazy(l, /*interrupted=*/true, &ready);
    for (pid_t tid : std::vector<pid_t>(ready.begin(), ready.end())) {
      ready.erase(tid);
      if (!l.traced.count(tid)) continue;
      any = true;
      absl::Status st = LetGo(l, tid, leave_with);
      if (!st.ok()) {
        KillLazy(l);
        return Annotate(st, "ending the lazy restore (the tree was killed)");
      }
    }
    if (any) continue;
    if (MonotonicNs() > deadline) {
      const pid_t stuck = *l.traced.begin();
      KillLazy(l);
      return absl::DeadlineExceededError(absl::StrCat(
          "ending the lazy restore: thread ", stuck,
          " did not stop in 30 s to be let go (the tree was killed)"));
    }
    usleep(100);
  }
  // The tasks' own copies are closed: this process's are the last.
  for (auto& t : tasks_) {
    t->lazy_fill.reset();
    t->lazy_fd = -1;
  }
  return absl::OkStatus();
}

// Thread `tid`, stopped for this process: closes the task's userfaultfd in
// its fd table if it is still there, and lets it go.
absl::Status RestoreRun::LetGo(LazyTracees& l, pid_t tid,
                               const std::map<pid_t, user_regs_struct>& leave_with) {
  TaskRestore* t = l.origin[tid];
  l.traced.erase(tid);
  l.held.erase(tid);
  const pid_t tgid = TgidOf(tid);
  if (tgid == tid && (t == nullptr || tid != t->pid)) l.released.insert(tid);
  absl::StatusOr<user_regs_struct> regs = task::GetRegs(tid);
  absl::StatusOr<uint64_t> mask = task::GetSigmask(tid);
  if (!regs.ok() || !mask.ok()) {
    task::Detach(tid, 0).IgnoreError();
    return absl::OkStatus();  // gone meanwhile
  }
  user_regs_struct back = *regs;
  if (auto it = leave_with.find(tid); it != leave_with.end()) {
    back = it->second;
  } else if (task::IsInterruptedEpollWait(back)) {
    // Waited forever (or began its wait just now): waits again.
    back.rax = back.orig_rax;
    back.rip -= 2;
  }
  const bool closer = t != nullptr && t->lazy_fill != nullptr && t->lazy_fd >= 0 && tgid > 0 &&
                      syscall(SYS_kcmp, getpid(), tid, 0 /* KCMP_FILE */, t->lazy_fill->fd(),
                              t->lazy_fd) == 0;
  absl::Status result;
  if (closer) {
    // Its seccomp filters, if any, are passed by for this call only (the
    // detach ends the option).
    task::SetOptions(tid, kLazyOptions | task::kSuspendSeccomp).IgnoreError();
    task::Injector inj(tgid, tid);
    inj.Begin(t->injector->syscall_insn(), *regs);
    absl::StatusOr<int64_t> r =
        inj.SyscallViaInsn(SYS_close, {static_cast<uint64_t>(t->lazy_fd), 0, 0, 0, 0, 0});
    absl::Status parked = inj.ParkWith(back, *mask);
    if (!r.ok()) result = Annotate(r.status(), absl::StrCat("thread ", tid, ": close"));
    if (result.ok() && !parked.ok()) result = parked;
    for (int sig : inj.held_signals()) syscall(SYS_tgkill, tgid, tid, sig);
  } else if (back.rip != regs->rip || back.rax != regs->rax) {
    result = task::SetRegs(tid, back);
  }
  if (!result.ok()) {
    l.traced.insert(tid);  // KillLazy's
    return result;
  }
  task::Detach(tid, 0).IgnoreError();  // fails only if it is gone meanwhile
  return absl::OkStatus();
}

absl::StatusOr<pid_t> RestoreRun::Run(int in_fd) {
  if (options_.lazy) {
    // Known to be unsafe yet (see README): a page dropped or moved while a
    // copy is on its way, VMAs split after registration, and tracees made
    // while the restore lets the tree go can still go wrong or hang.
    const char* on = getenv("CKPT_EXPERIMENTAL_LAZY");
    if (on == nullptr || std::string(on) != "1") {
      return absl::UnimplementedError(
          "lazy restore is experimental and off by default: it has known faults (README, "
          "'What is not supported yet'); set CKPT_EXPERIMENTAL_LAZY=1 to try it");
    }
    struct stat st;
    if (fstat(in_fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      return absl::InvalidArgumentError(
          "--lazy needs the image in a file: from a pipe or a socket, each task's pages come "
          "before the rest of its state (not supported yet)");
    }
    const off_t at = lseek(in_fd, 0, SEEK_CUR);
    if (at < 0) return ErrnoError(errno, "lseek in the image");
    image_fd_ = in_fd;
    image_base_ = static_cast<uint64_t>(at);
    verify_ = std::thread([this] {
      verify_status_ = image::VerifyImage(image_fd_, image_base_);
      verify_done_ = true;
    });
  }
  image::FdSource source(in_fd);
  image::Reader r(&source);
  absl::StatusOr<pid_t> pid = RunStream(r);
  if (!pid.ok()) Abandon(r);
  return pid;
}

absl::StatusOr<pid_t> RestoreRun::RunStream(image::Reader& r) {
  start_ns_ = MonotonicNs();
  const uint64_t start = static_cast<uint64_t>(start_ns_);
  ASSIGN_OR_RETURN(image::ckpt_image_header header, r.ReadImageHeader());
  (void)header;
  {
    Phase p("restore: tree");
    RETURN_IF_ERROR(tree_.Read(r, options_.new_pidns, mm::kUserSpaceEnd - mm::kFreeAreaSize));
    RETURN_IF_ERROR(tree_.PlanSessions());
  }
  {
    Phase p("restore: objects");
    RETURN_IF_ERROR(ReadObjects(r));
    ASSIGN_OR_RETURN(layout_, mm::ReadRestorerLayout());
  }
  // While it restores, this process adopts orphans, so that a failed
  // restore can reap every task it made.
  old_subreaper_ = 0;
  prctl(PR_GET_CHILD_SUBREAPER, &old_subreaper_, 0, 0, 0);
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0) subreaper_set_ = true;
  {
    Phase p("restore: create tasks");
    RETURN_IF_ERROR(WaitForFreePids());
    RETURN_IF_ERROR(CreateTasks());
    RETURN_IF_ERROR(SetUpGroups());
  }
  for (auto& t : tasks_) {
    if (t->zombie || t->helper) continue;
    Phase p("restore: task section");
    if (t->inherits_memory) RETURN_IF_ERROR(ForkFromParent(*t));
    RETURN_IF_ERROR(RestoreTask(r, *t));
  }
  RETURN_IF_ERROR(r.ExpectTail());
  RETURN_IF_ERROR(RunLateSteps());
  RETURN_IF_ERROR(EnterStops());
  for (auto& t : tasks_) {
    if (t->zombie || t->helper) continue;
    RETURN_IF_ERROR(FinishTask(*t));
  }
  stats_->image_bytes = r.offset();
  // Everything is in place: let the tasks go, children first; those whose
  // pages are still being filled stay traced.
  LazyTracees lazy;
  for (size_t i = tasks_.size(); i-- > 0;) {
    TaskRestore* t = tasks_[i].get();
    if (t->lazy_fill != nullptr) {
      t->lazy_fill->SetRunning();
      absl::StatusOr<task::ProcStat> stat = task::ReadProcStat(t->pid);
      if (stat.ok() && stat->ppid == getpid()) lazy.own.insert(t->pid);
    }
    for (pid_t tid : t->threads) {
      if (t->lazy_fill != nullptr) {
        // (Not PTRACE_O_SUSPEND_SECCOMP: it would leave the program's
        // own filters off while it runs. EndLazy sets it for its call.)
        RETURN_IF_ERROR(task::SetOptions(tid, kLazyOptions));
        RETURN_IF_ERROR(task::Cont(tid, 0));
        lazy.traced.insert(tid);
        lazy.origin[tid] = t;
      } else {
        RETURN_IF_ERROR(task::Detach(tid, 0));
      }
    }
  }
  released_ = true;
  // From now on orphans of the tree go where they would have gone had it
  // never been restored, not to this process (a lazy restore runs on).
  if (subreaper_set_) {
    prctl(PR_SET_CHILD_SUBREAPER, old_subreaper_, 0, 0, 0);
    subreaper_set_ = false;
  }
  WaitStopped();
  WaitAsleep();
  const int64_t running = MonotonicNs();
  stats_->running_ns = static_cast<uint64_t>(running) - start;
  TraceSpan("restore: until the tree runs", start_ns_, running);
  if (options_.on_running) options_.on_running(tasks_.front()->pid);
  if (!lazy.traced.empty()) {
    Phase p("restore: lazy fill");
    RETURN_IF_ERROR(SuperviseLazy(lazy));
  }
  for (const auto& commit : commits_) commit();
  stats_->total_ns = static_cast<uint64_t>(MonotonicNs()) - start;
  return tasks_.front()->pid;
}

// The restore raises the soft RLIMIT_NOFILE when the restored objects
// need more fds (the restored tasks set their own limits); the caller's is
// put back afterwards, unless something else changed the limits meanwhile.
class NofileLimitKept {
 public:
  NofileLimitKept() { saved_ = getrlimit(RLIMIT_NOFILE, &before_) == 0; }
  ~NofileLimitKept() {
    struct rlimit now;
    if (!saved_ || getrlimit(RLIMIT_NOFILE, &now) != 0) return;
    if (now.rlim_max == before_.rlim_max && now.rlim_cur == now.rlim_max &&
        now.rlim_cur != before_.rlim_cur) {
      setrlimit(RLIMIT_NOFILE, &before_);
    }
  }
  NofileLimitKept(const NofileLimitKept&) = delete;
  NofileLimitKept& operator=(const NofileLimitKept&) = delete;

 private:
  struct rlimit before_ {};
  bool saved_ = false;
};

}  // namespace

absl::StatusOr<pid_t> Restorer::Restore(int in_fd) {
  NofileLimitKept nofile;
  stats_ = RestoreStats{};
  RestoreRun run(options_, &stats_);
  return run.Run(in_fd);
}

}  // namespace ckpt
