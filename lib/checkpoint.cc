// The dump driver: gate, freeze, collect, write, then resume or kill.
//
// It walks the tree and calls each layer in a fixed order; it does not
// know object kinds (the handler table writes the objects section).

#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ckpt/ckpt.hpp"
#include "lib/base/status.h"
#include "lib/base/trace.h"
#include "lib/fs/fs.h"
#include "lib/handlers.h"
#include "lib/image/format.h"
#include "lib/image/writer.h"
#include "lib/mm/mm.h"
#include "lib/objhash/objhash.h"
#include "lib/task/core.h"
#include "lib/task/inject.h"
#include "lib/task/proc.h"
#include "lib/task/ptrace.h"
#include "lib/task/signals.h"
#include "lib/task/thread.h"
#include "lib/task/vdso.h"

namespace ckpt {
namespace {

uint64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Every signal but SIGTRAP (the trampoline's int3) is held back while
// syscalls are injected, so that none is delivered half-way.
constexpr uint64_t kInjectionMask = ~(1ull << (SIGTRAP - 1));

struct TaskDump {
  pid_t pid = 0;
  uint32_t pid_ref = 0;
  uint32_t pgrp_ref = 0;
  uint32_t session_ref = 0;
  task::ProcStatus status;
  std::vector<task::ThreadState> threads;
  std::vector<pid_t> seized;  // threads under our ptrace
  std::unique_ptr<task::Injector> injector;
  bool regs_touched = false;  // the injector changed the leader's registers
  task::TaskCore core;
  fs::FsState fs;
  std::vector<fs::FdEntry> fds;
  mm::MmDump mm;
  image::ckpt_sighand sighand{};
};

class Dumper {
 public:
  Dumper(const DumpOptions& options, DumpStats* stats) : options_(options), stats_(stats) {}
  ~Dumper() { Thaw(/*kill=*/false).IgnoreError(); }

  absl::Status Run(pid_t root, int out_fd);

 private:
  absl::Status Gate(pid_t root);
  absl::Status Freeze(TaskDump& t);
  absl::Status Collect(TaskDump& t);
  absl::Status Write(int out_fd);
  // Lets every task go: as it was (registers, mask, no trampoline), or
  // killed.
  absl::Status Thaw(bool kill);
  absl::Status ThawTask(TaskDump& t, bool kill);

  const DumpOptions& options_;
  DumpStats* stats_;
  image::ckpt_image_header header_{};
  objhash::ObjHash objects_;
  std::vector<std::unique_ptr<TaskDump>> tasks_;
};

absl::Status Dumper::Gate(pid_t root) {
  if (root <= 0) return absl::InvalidArgumentError(absl::StrCat("bad PID ", root));
  if (root == getpid()) {
    return absl::InvalidArgumentError("the dumping process cannot dump itself");
  }
  absl::StatusOr<task::ProcStatus> st = task::ReadProcStatus(root);
  if (!st.ok()) {
    if (absl::IsNotFound(st.status())) {
      return absl::NotFoundError(absl::StrCat("task ", root, " does not exist"));
    }
    return st.status();
  }
  if (st->tgid != root) {
    return absl::InvalidArgumentError(
        absl::StrCat("task ", root, " is a thread of process ", st->tgid, "; dump the process"));
  }
  ASSIGN_OR_RETURN(task::ProcStat stat, task::ReadProcStat(root));
  if (stat.flags & task::kPfKthread) {
    return absl::FailedPreconditionError(absl::StrCat("task ", root, " is a kernel thread"));
  }
  if (st->state == 'Z' || st->state == 'X') {
    return absl::FailedPreconditionError(absl::StrCat("task ", root, " is a zombie"));
  }
  if (st->state == 'T') {
    return absl::FailedPreconditionError(
        absl::StrCat("task ", root, " is stopped by job control; continue it first"));
  }
  if (st->tracer_pid != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("task ", root, " is already traced by process ", st->tracer_pid));
  }
  if (st->threads > 1) {
    return absl::UnimplementedError(absl::StrCat(
        "task ", root, " has ", st->threads, " threads: multi-threaded processes are not supported yet"));
  }
  ASSIGN_OR_RETURN(std::vector<pid_t> children, task::ListChildren(root));
  if (!children.empty()) {
    return absl::UnimplementedError(absl::StrCat("task ", root, " has children (", children[0],
                                                 ", ...): process trees are not supported yet"));
  }
  auto t = std::make_unique<TaskDump>();
  t->pid = root;
  t->status = *std::move(st);
  tasks_.push_back(std::move(t));
  return absl::OkStatus();
}

absl::Status Dumper::Freeze(TaskDump& t) {
  ASSIGN_OR_RETURN(std::vector<pid_t> tids, task::ListThreads(t.pid));
  for (pid_t tid : tids) {
    absl::Status st = task::Seize(tid, task::kSeizeOptions);
    if (!st.ok()) {
      if (absl::IsPermissionDenied(st)) {
        return absl::PermissionDeniedError(absl::StrCat(
            task::TaskName(t.pid, tid), " may not be traced by this process: ", st.message()));
      }
      return Annotate(st, task::TaskName(t.pid, tid));
    }
    t.seized.push_back(tid);
    RETURN_IF_ERROR(task::Interrupt(tid));
  }
  for (pid_t tid : tids) {
    for (;;) {
      ASSIGN_OR_RETURN(task::StopInfo stop, task::WaitStop(tid));
      if (stop.exited) {
        return absl::AbortedError(absl::StrCat(task::TaskName(t.pid, tid),
                                               " exited while it was being frozen"));
      }
      if (stop.group_stop) break;
      // A signal arrived before the interrupt: let it be delivered, then
      // the interrupt stops the task.
      RETURN_IF_ERROR(task::Cont(tid, stop.signal));
    }
    task::ThreadState ts;
    RETURN_IF_ERROR(task::CaptureThreadFrozen(tid, &ts));
    t.threads.push_back(std::move(ts));
  }
  return absl::OkStatus();
}

absl::Status Dumper::Collect(TaskDump& t) {
  // Pid objects: the task's pid, and its group and session when it leads
  // them (subtree rule: others are outside the dump).
  ASSIGN_OR_RETURN(objhash::ObjHash::Found pid,
                   objects_.LookupAdd(objhash::ObjKind::kPid, objhash::Identity::OfPid(t.pid)));
  t.pid_ref = pid.objref;
  ASSIGN_OR_RETURN(task::ProcStat stat, task::ReadProcStat(t.pid));
  if (stat.pgrp == t.pid) t.pgrp_ref = t.pid_ref;
  if (stat.session == t.pid) t.session_ref = t.pid_ref;

  {
    Phase p("dump: collect mm");
    ASSIGN_OR_RETURN(t.mm, mm::CollectMm(t.pid, 0, objects_));
  }
  uint64_t vdso = 0;
  for (const mm::VmaDump& v : t.mm.vmas) {
    if (v.rec.kind == image::kVmaVdso) vdso = v.rec.start;
  }
  if (vdso == 0) {
    return absl::UnimplementedError(absl::StrCat(
        "task ", t.pid, " has no [vdso] mapping: not supported (libckpt injects syscalls "
        "through the vdso's syscall instruction)"));
  }
  ASSIGN_OR_RETURN(uint64_t syscall_off, task::VdsoSyscallOffset());

  task::ThreadState& leader = t.threads[0];
  t.injector = std::make_unique<task::Injector>(t.pid, leader.tid);
  RETURN_IF_ERROR(t.injector->Begin(vdso + syscall_off));
  t.regs_touched = true;
  {
    Phase p("dump: map trampoline");
    RETURN_IF_ERROR(t.injector->MapTrampoline());
  }
  // The first resume put back any mask sigsuspend() and the like had
  // saved: read the mask now.
  ASSIGN_OR_RETURN(leader.sigmask, task::GetSigmask(leader.tid));
  RETURN_IF_ERROR(task::SetSigmask(leader.tid, kInjectionMask));

  task::SyscallBatch batch = t.injector->NewBatch();
  size_t brk = batch.Add(SYS_brk, {0});
  task::CoreQuery core_q = task::QueueCoreQuery(batch);
  task::SighandQuery sig_q = task::QueueSighandQuery(batch, t.status.sig_cgt | t.status.sig_ign);
  task::ThreadQuery thread_q = task::QueueThreadQuery(batch);
  {
    Phase p("dump: injected queries");
    RETURN_IF_ERROR(t.injector->Run(batch));
  }
  t.mm.rec.brk = static_cast<uint64_t>(batch.ret(brk));
  ASSIGN_OR_RETURN(t.core, task::ReadCore(t.pid, t.status, batch, core_q));
  t.sighand = task::ReadSighand(batch, sig_q);
  task::ReadThreadQuery(batch, thread_q, &leader);

  Phase p("dump: collect fs and fds");
  ASSIGN_OR_RETURN(t.fs, fs::CollectFs(t.pid));
  uint32_t flags = 0;
  if (options_.shell_job) flags |= objhash::kDumpShellJob;
  if (options_.leave_running) flags |= objhash::kDumpLeaveRunning;
  ASSIGN_OR_RETURN(t.fds, fs::CollectFds(t.pid, objects_, flags));
  return absl::OkStatus();
}

absl::Status Dumper::Write(int out_fd) {
  ASSIGN_OR_RETURN(const objhash::HandlerTable* handlers, Handlers());
  image::FdSink sink(out_fd);
  image::Writer w(&sink);
  if (options_.leave_running) header_.flags |= image::kImageLeftRunning;
  RETURN_IF_ERROR(w.WriteImageHeader(header_));

  // The tree: pid objects, then the tasks.
  image::ckpt_tree tree{};
  tree.nr_tasks = static_cast<uint32_t>(tasks_.size());
  for (const auto& e : objects_.entries()) {
    if (e->kind == objhash::ObjKind::kPid) ++tree.nr_pids;
  }
  RETURN_IF_ERROR(w.AppendStruct(image::CKPT_HDR_TREE, tree));
  for (const auto& t : tasks_) {
    image::ckpt_pid pid{};
    pid.objref = t->pid_ref;
    pid.nr_levels = static_cast<uint32_t>(t->status.nspid.size());
    for (size_t i = 0; i < t->status.nspid.size() && i < image::kMaxPidLevels; ++i) {
      pid.nr[i] = t->status.nspid[i];
    }
    RETURN_IF_ERROR(w.AppendStruct(image::CKPT_HDR_PID, pid));
  }
  for (const auto& t : tasks_) {
    image::ckpt_task_entry e{};
    e.pid_ref = t->pid_ref;
    e.pgrp_ref = t->pgrp_ref;
    e.session_ref = t->session_ref;
    e.state = image::kTaskAlive;
    e.nr_threads = static_cast<uint32_t>(t->threads.size());
    e.free_area = t->mm.free_area;
    RETURN_IF_ERROR(w.AppendStruct(image::CKPT_HDR_TASK_ENTRY, e));
  }

  // Every shared object, once, before any task refers to it.
  image::ckpt_objects objs{};
  for (const auto& e : objects_.entries()) {
    if (e->kind != objhash::ObjKind::kPid) ++objs.nr_objects;
  }
  for (const auto& t : tasks_) {
    for (const fs::FdEntry& f : t->fds) {
      objs.fd_limit = std::max(objs.fd_limit, static_cast<uint32_t>(f.fd) + 1);
    }
  }
  RETURN_IF_ERROR(w.AppendStruct(image::CKPT_HDR_OBJECTS, objs));
  objhash::CheckpointContext ctx{&w, &objects_, 0};
  for (const auto& e : objects_.entries()) {
    if (e->kind == objhash::ObjKind::kPid) continue;
    const objhash::ObjectOps* ops = handlers->ForKind(e->kind);
    if (ops == nullptr) {
      return absl::InternalError(
          absl::StrCat("no handler for ", objhash::ObjKindName(e->kind), " objects"));
    }
    RETURN_IF_ERROR(ops->checkpoint(ctx, *e));
  }

  // Each task's own section.
  for (const auto& t : tasks_) {
    task::TaskCore core = t->core;
    core.task.pid_ref = t->pid_ref;
    core.task.nr_threads = static_cast<uint32_t>(t->threads.size());
    core.task.nr_fds = static_cast<uint32_t>(t->fds.size());
    RETURN_IF_ERROR(task::WriteCore(core, w));
    RETURN_IF_ERROR(fs::WriteFs(t->fs, w));
    RETURN_IF_ERROR(fs::WriteFds(t->fds, w));
    mm::MmStats mm_stats;
    RETURN_IF_ERROR(mm::WriteMm(t->pid, t->mm, w, &mm_stats));
    stats_->vmas += mm_stats.vmas;
    stats_->pages_written += mm_stats.pages;
    stats_->pages_skipped += mm_stats.skipped_pages;
    RETURN_IF_ERROR(task::WriteSighand(t->sighand, w));
    for (const task::ThreadState& th : t->threads) {
      RETURN_IF_ERROR(task::WriteThread(th, t->pid_ref, w));
    }
    ++stats_->tasks;
    stats_->threads += t->threads.size();
  }
  RETURN_IF_ERROR(w.Finish());
  stats_->image_bytes = w.bytes();
  return absl::OkStatus();
}

absl::Status Dumper::ThawTask(TaskDump& t, bool kill) {
  if (t.seized.empty()) return absl::OkStatus();
  if (kill) {
    ::kill(t.pid, SIGKILL);
    // Wait until it is dead. When this process is also its parent, leave
    // the exit status for the caller to reap (WNOWAIT); otherwise take the
    // tracer's notification, which hands the task to its parent.
    const bool own_child = t.status.ppid == getpid();
    for (pid_t tid : t.seized) {
      siginfo_t info;
      int options = WEXITED | __WALL | (own_child ? WNOWAIT : 0);
      while (waitid(P_PID, tid, &info, options) < 0 && errno == EINTR) {
      }
    }
    t.seized.clear();
    return absl::OkStatus();
  }
  absl::Status result;
  if (t.regs_touched && !t.threads.empty()) {
    const task::ThreadState& leader = t.threads[0];
    // An ignored SIGTRAP was reset by the trampoline's int3: set it back.
    const image::ckpt_sigaction& trap = t.sighand.action[SIGTRAP - 1];
    bool trap_ignored = trap.handler == reinterpret_cast<uint64_t>(SIG_IGN);
    result = t.injector->Finish(leader.regs, leader.sigmask, trap_ignored ? &trap : nullptr);
  }
  for (pid_t tid : t.seized) {
    absl::Status st = task::Detach(tid, 0);
    if (result.ok()) result = st;
  }
  if (t.injector != nullptr) {
    for (int sig : t.injector->held_signals()) syscall(SYS_tgkill, t.pid, t.pid, sig);
  }
  t.seized.clear();
  return result;
}

absl::Status Dumper::Thaw(bool kill) {
  absl::Status result;
  for (auto& t : tasks_) {
    absl::Status st = ThawTask(*t, kill);
    if (result.ok()) result = st;
  }
  return result;
}

absl::Status Dumper::Run(pid_t root, int out_fd) {
  const uint64_t start = NowNs();
  header_ = image::DefaultImageHeader();
  {
    Phase p("dump: gate");
    RETURN_IF_ERROR(Gate(root));
  }
  for (auto& t : tasks_) {
    Phase p("dump: freeze");
    absl::Status st = Freeze(*t);
    if (!st.ok()) {
      Thaw(false).IgnoreError();  // the freeze error says more
      return st;
    }
  }
  stats_->freeze_ns = NowNs() - start;
  absl::Status st;
  for (auto& t : tasks_) {
    Phase p("dump: collect");
    st = Collect(*t);
    if (!st.ok()) break;
  }
  if (st.ok()) {
    Phase p("dump: write");
    st = Write(out_fd);
  }
  if (!st.ok()) {
    // A failed dump leaves the tree as it was.
    absl::Status thaw = Thaw(false);
    if (!thaw.ok()) {
      st = absl::Status(st.code(),
                        absl::StrCat(st.message(), " (and resuming the tree failed: ",
                                     thaw.message(), ")"));
    }
    return st;
  }
  {
    Phase p("dump: thaw");
    st = Thaw(!options_.leave_running);
  }
  stats_->total_ns = NowNs() - start;
  return st;
}

}  // namespace

absl::Status Checkpointer::Dump(pid_t root, int out_fd) {
  stats_ = DumpStats{};
  Dumper dumper(options_, &stats_);
  return dumper.Run(root, out_fd);
}

}  // namespace ckpt
