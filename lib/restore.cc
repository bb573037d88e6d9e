// The restore driver: read the tree and the objects, create the tasks,
// rebuild each from its section, check the tail, then let them all go.
//
// Every task is held in a ptrace stop until the whole image has been read
// and its checksum verified; on any failure every task created is killed.

#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ckpt/ckpt.hpp"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/base/trace.h"
#include "lib/fs/fs.h"
#include "lib/handlers.h"
#include "lib/image/format.h"
#include "lib/image/reader.h"
#include "lib/mm/mm.h"
#include "lib/base/buffer.h"
#include "lib/objhash/objhash.h"
#include "lib/task/core.h"
#include "lib/task/inject.h"
#include "lib/task/ptrace.h"
#include "lib/task/signals.h"
#include "lib/task/spawn.h"
#include "lib/task/thread.h"
#include "lib/task/vdso.h"

namespace ckpt {
namespace {

uint64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

constexpr uint64_t kInjectionMask = ~(1ull << (SIGTRAP - 1));

struct TaskRestore {
  image::ckpt_task_entry entry{};
  std::vector<pid_t> pids;  // outermost first
  pid_t pid = 0;            // as this process sees it
  bool created = false;
  std::unique_ptr<task::Injector> injector;
  std::unique_ptr<task::SyscallQueue> queue;
};

class RestoreRun {
 public:
  RestoreRun(const RestoreOptions& options, RestoreStats* stats)
      : options_(options), stats_(stats) {}
  ~RestoreRun() {
    if (!released_) KillAll();
  }

  absl::StatusOr<pid_t> Run(int in_fd);

 private:
  absl::Status ReadTree(image::Reader& r);
  absl::Status ReadObjects(image::Reader& r);
  absl::Status CreateTask(TaskRestore& t);
  absl::Status RestoreTask(image::Reader& r, TaskRestore& t);
  void KillAll();

  const RestoreOptions& options_;
  RestoreStats* stats_;
  std::map<uint32_t, std::vector<pid_t>> pids_;  // pid objref -> numbers
  std::vector<std::unique_ptr<TaskRestore>> tasks_;
  objhash::RestoreTable objects_;
  int high_fd_base_ = 0;
  mm::RestorerLayout layout_;
  Buffer buffer_;
  bool released_ = false;
};

absl::Status RestoreRun::ReadTree(image::Reader& r) {
  ASSIGN_OR_RETURN(image::ckpt_tree tree, r.Expect<image::ckpt_tree>(image::CKPT_HDR_TREE));
  if (tree.nr_tasks == 0) return r.FieldError("nr_tasks", "the image has no task");
  if (tree.nr_tasks > 1) {
    return absl::UnimplementedError(absl::StrCat(
        "the image holds ", tree.nr_tasks, " tasks: process trees are not supported yet"));
  }
  if (tree.nr_pids < tree.nr_tasks || tree.nr_pids > 4 * tree.nr_tasks + 4) {
    return r.FieldError("nr_pids", tree.nr_pids, " does not fit ", tree.nr_tasks, " tasks");
  }
  for (uint32_t i = 0; i < tree.nr_pids; ++i) {
    ASSIGN_OR_RETURN(image::ckpt_pid pid, r.Expect<image::ckpt_pid>(image::CKPT_HDR_PID));
    if (pid.objref == 0 || pids_.count(pid.objref)) {
      return r.FieldError("objref", pid.objref, " is zero or repeated");
    }
    if (pid.nr_levels == 0 || pid.nr_levels > image::kMaxPidLevels) {
      return r.FieldError("nr_levels", pid.nr_levels, " is out of range");
    }
    std::vector<pid_t> nrs(pid.nr, pid.nr + pid.nr_levels);
    for (pid_t nr : nrs) {
      if (nr <= 0) return r.FieldError("nr", nr, " is not a PID");
    }
    pids_[pid.objref] = nrs;
  }
  for (uint32_t i = 0; i < tree.nr_tasks; ++i) {
    auto t = std::make_unique<TaskRestore>();
    ASSIGN_OR_RETURN(t->entry, r.Expect<image::ckpt_task_entry>(image::CKPT_HDR_TASK_ENTRY));
    const image::ckpt_task_entry& e = t->entry;
    auto it = pids_.find(e.pid_ref);
    if (it == pids_.end()) return r.FieldError("pid_ref", e.pid_ref, " names no PID record");
    if (e.parent_ref != 0) return r.FieldError("parent_ref", "a lone task has no parent");
    if ((e.pgrp_ref != 0 && e.pgrp_ref != e.pid_ref) ||
        (e.session_ref != 0 && e.session_ref != e.pid_ref)) {
      return r.FieldError("pgrp_ref", "a lone task can only lead its own group and session");
    }
    if (e.state != image::kTaskAlive) return r.FieldError("state", e.state, " is not supported");
    if (e.nr_threads != 1) {
      return absl::UnimplementedError(absl::StrCat("task ", it->second.back(), " has ",
                                                   e.nr_threads, " threads: not supported yet"));
    }
    if (e.free_area % 4096 || e.free_area == 0 ||
        e.free_area > mm::kUserSpaceEnd - mm::kFreeAreaSize) {
      return r.FieldError("free_area", absl::Hex(e.free_area), " is not a usable address");
    }
    if (it->second.size() != 1) {
      return absl::UnimplementedError(
          absl::StrCat("task ", it->second.back(), " lived in a nested pid namespace (",
                       it->second.size(), " levels): not supported yet"));
    }
    t->pids = it->second;
    tasks_.push_back(std::move(t));
  }
  return absl::OkStatus();
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
  objhash::RestoreContext ctx{&r, &objects_, high_fd_base_, 0};
  for (uint32_t i = 0; i < objs.nr_objects; ++i) {
    ASSIGN_OR_RETURN(image::Record rec, r.Next());
    const objhash::ObjectOps* ops = handlers->ForRecord(rec.type);
    if (ops == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(image::Reader::Where(rec),
                                                     ": not an object record (", i, " of ",
                                                     objs.nr_objects, " objects read)"));
    }
    absl::StatusOr<objhash::RestoredObject> obj = ops->restore(ctx, rec);
    if (!obj.ok()) return obj.status();
    RETURN_IF_ERROR(objects_.Insert(obj->objref, ops->kind, *obj));
  }
  return absl::OkStatus();
}

absl::Status RestoreRun::CreateTask(TaskRestore& t) {
  if (!mm::IsFreeArea(layout_.all, t.entry.free_area)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "task ", t.pids.back(), ": its free area at 0x", absl::Hex(t.entry.free_area),
        " is used by the restoring process"));
  }
  task::SpawnSpec spec;
  spec.pids = t.pids;
  spec.set_sid = t.entry.session_ref == t.entry.pid_ref;
  spec.set_pgid = !spec.set_sid && t.entry.pgrp_ref == t.entry.pid_ref;
  spec.trampoline = t.entry.free_area;
  absl::StatusOr<pid_t> pid = task::SpawnTask(spec);
  if (!pid.ok()) return Annotate(pid.status(), absl::StrCat("task ", t.pids.back()));
  t.pid = *pid;
  t.created = true;
  RETURN_IF_ERROR(task::SetSigmask(t.pid, kInjectionMask));
  ASSIGN_OR_RETURN(uint64_t syscall_off, task::VdsoSyscallOffset());
  uint64_t vdso = 0;
  for (const mm::Vma& v : layout_.vdso_family) {
    if (v.name == "[vdso]") vdso = v.start;
  }
  t.injector = std::make_unique<task::Injector>(t.pid, t.pid);
  RETURN_IF_ERROR(t.injector->Begin(vdso + syscall_off));
  t.injector->AdoptTrampoline(t.entry.free_area);
  t.queue = std::make_unique<task::SyscallQueue>(t.injector.get());
  // The child inherited this process's rseq registration; it must go
  // before the memory it points into does.
  ASSIGN_OR_RETURN(task::RseqConfig rseq, task::GetRseqConfig(t.pid));
  if (rseq.size != 0) {
    t.queue->batch().Add(SYS_rseq, {rseq.ptr, rseq.size, 1 /* RSEQ_FLAG_UNREGISTER */,
                                    rseq.signature});
  }
  ++stats_->tasks;
  return absl::OkStatus();
}

absl::Status RestoreRun::RestoreTask(image::Reader& r, TaskRestore& t) {
  task::SyscallQueue& q = *t.queue;
  ASSIGN_OR_RETURN(task::TaskCore core, task::ReadCoreRecords(r));
  if (core.task.pid_ref != t.entry.pid_ref) {
    return r.FieldError("pid_ref", "the task sections are not in tree order");
  }
  if (core.task.nr_threads != t.entry.nr_threads) {
    return r.FieldError("nr_threads", core.task.nr_threads, " differs from the tree's ",
                        t.entry.nr_threads);
  }
  RETURN_IF_ERROR(task::QueueCoreRestore(q, core));
  ASSIGN_OR_RETURN(fs::FsState fs, fs::ReadFsRecord(r));
  RETURN_IF_ERROR(fs::QueueFsRestore(q, fs));
  ASSIGN_OR_RETURN(std::vector<fs::FdEntry> fds,
                   fs::ReadFdRecords(r, core.task.nr_fds, high_fd_base_));
  RETURN_IF_ERROR(fs::QueueFdRestore(q, fds, objects_, high_fd_base_));

  mm::MmRestoreContext mctx;
  mctx.pid = t.pid;
  mctx.free_area = t.entry.free_area;
  mctx.layout = &layout_;
  mctx.objects = &objects_;
  mctx.queue = &q;
  mctx.buffer = &buffer_;
  mm::MmStats mstats;
  absl::Status st;
  {
    Phase p("restore: mm");
    st = mm::RestoreMm(r, mctx, &mstats);
  }
  stats_->pages_written += mstats.pages;
  if (!st.ok()) return Annotate(st, absl::StrCat("task ", t.pid));
  // From here on the task's own vdso carries the injections that need no
  // trampoline.
  ASSIGN_OR_RETURN(uint64_t syscall_off, task::VdsoSyscallOffset());
  t.injector->set_syscall_insn(mctx.vdso_start + syscall_off);

  ASSIGN_OR_RETURN(image::ckpt_sighand sighand, task::ReadSighandRecord(r));
  RETURN_IF_ERROR(task::QueueSighandRestore(q, sighand));
  uint32_t tid_ref = 0;
  ASSIGN_OR_RETURN(task::ThreadState thread, task::ReadThreadRecords(r, &tid_ref));
  if (tid_ref != t.entry.pid_ref) return r.FieldError("tid_ref", tid_ref, " is not the task's");
  RETURN_IF_ERROR(task::QueueThreadRestore(q, thread));
  RETURN_IF_ERROR(task::QueueRlimitsRestore(q, core));
  RETURN_IF_ERROR(task::QueueCredsRestore(q, core));
  RETURN_IF_ERROR(fs::QueueCloseObjects(q, high_fd_base_));
  {
    Phase p("restore: final batch");
    st = q.Flush();
  }
  if (!st.ok()) return Annotate(st, absl::StrCat("task ", t.pid));
  Phase p("restore: rlimits, regs, park");
  RETURN_IF_ERROR(task::SetXstate(t.pid, thread.xstate));
  const image::ckpt_sigaction& trap = sighand.action[SIGTRAP - 1];
  bool trap_ignored = trap.handler == reinterpret_cast<uint64_t>(SIG_IGN);
  st = t.injector->Finish(thread.regs, thread.sigmask, trap_ignored ? &trap : nullptr);
  if (!st.ok()) return Annotate(st, absl::StrCat("task ", t.pid));
  return absl::OkStatus();
}

void RestoreRun::KillAll() {
  for (auto& t : tasks_) {
    if (!t->created) continue;
    kill(t->pid, SIGKILL);
    int status;
    while (waitpid(t->pid, &status, __WALL) < 0 && errno == EINTR) {
    }
    t->created = false;
  }
}

absl::StatusOr<pid_t> RestoreRun::Run(int in_fd) {
  const uint64_t start = NowNs();
  image::FdSource source(in_fd);
  image::Reader r(&source);
  ASSIGN_OR_RETURN(image::ckpt_image_header header, r.ReadImageHeader());
  (void)header;
  {
    Phase p("restore: tree and objects");
    RETURN_IF_ERROR(ReadTree(r));
    RETURN_IF_ERROR(ReadObjects(r));
    ASSIGN_OR_RETURN(layout_, mm::ReadRestorerLayout());
  }
  for (auto& t : tasks_) {
    Phase p("restore: create task");
    RETURN_IF_ERROR(CreateTask(*t));
  }
  for (auto& t : tasks_) {
    Phase p("restore: task section");
    RETURN_IF_ERROR(RestoreTask(r, *t));
  }
  RETURN_IF_ERROR(r.ExpectTail());
  stats_->image_bytes = r.offset();
  // Everything is in place: let the tasks go.
  for (auto& t : tasks_) RETURN_IF_ERROR(task::Detach(t->pid, 0));
  released_ = true;
  stats_->total_ns = NowNs() - start;
  return tasks_.front()->pid;
}

}  // namespace

absl::StatusOr<pid_t> Restorer::Restore(int in_fd) {
  stats_ = RestoreStats{};
  RestoreRun run(options_, &stats_);
  return run.Run(in_fd);
}

}  // namespace ckpt
