#include "lib/sections.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "absl/strings/str_cat.h"
#include "lib/base/status.h"
#include "lib/base/trace.h"
#include "lib/fs/locks.h"
#include "lib/fs/sockopt.h"
#include "lib/objhash/identity.h"
#include "lib/task/recovery.h"
#include "lib/task/sched.h"
#include "lib/task/vdso.h"

namespace ckpt {
namespace {

// ------------------------------------------------ core: comm, creds, rlimits

absl::Status WriteCoreSection(const TaskDump& t, SectionWriteContext& ctx) {
  task::TaskCore core = t.core;
  core.task.pid_ref = t.pid_ref;
  core.task.nr_threads = static_cast<uint32_t>(t.threads.size());
  core.task.nr_fds = static_cast<uint32_t>(t.fds.size());
  return task::WriteCore(core, *ctx.writer);
}

absl::Status RestoreCoreSection(SectionRestoreContext& ctx) {
  image::Reader& r = *ctx.reader;
  TaskRestore& t = *ctx.task;
  ASSIGN_OR_RETURN(ctx.core, task::ReadCoreRecords(r));
  RETURN_IF_ERROR(ctx.check_credentials(ctx.core));
  if (ctx.core.task.pid_ref != t.entry.pid_ref) {
    return r.FieldError("pid_ref", "the task sections are not in tree order");
  }
  if (ctx.parent != nullptr) {
    // Forked from its restored parent, it has the parent's no_new_privs
    // and membarrier registrations, which nothing takes back.
    const image::ckpt_task& p = ctx.parent->core.task;
    if ((p.membarrier & ~ctx.core.task.membarrier) != 0 ||
        (p.no_new_privs && !ctx.core.task.no_new_privs)) {
      return r.FieldError("membarrier", "the task inherits its parent's memory but not its "
                          "membarrier registrations or no_new_privs, which a fork passes on");
    }
  }
  if (ctx.core.task.nr_threads != t.entry.nr_threads) {
    return r.FieldError("nr_threads", ctx.core.task.nr_threads, " differs from the tree's ",
                        t.entry.nr_threads);
  }
  return task::QueueCoreRestore(*t.queue, ctx.core);
}

// ---------------------------------------------------------- fs: cwd, root

absl::Status WriteFsSection(const TaskDump& t, SectionWriteContext& ctx) {
  return fs::WriteFs(t.fs, *ctx.writer);
}

absl::Status RestoreFsSection(SectionRestoreContext& ctx) {
  ASSIGN_OR_RETURN(fs::FsState fs, fs::ReadFsRecord(*ctx.reader));
  if (ctx.parent != nullptr && ctx.parent->root != "/") {
    // Forked from its restored parent, it starts in the parent's root,
    // where the paths of its own would not resolve as they did.
    return ctx.reader->FieldError("root", "the task inherits the memory of a parent whose root is ",
                                  ctx.parent->root, ", not /");
  }
  ctx.root = fs.root;
  return fs::QueueFsRestore(*ctx.task->queue, fs, *ctx.objects);
}

// ------------------------------------------------------------------- fds

absl::Status WriteFdsSection(const TaskDump& t, SectionWriteContext& ctx) {
  return fs::WriteFds(t.fds, *ctx.writer);
}

absl::Status RestoreFdsSection(SectionRestoreContext& ctx) {
  image::Reader& r = *ctx.reader;
  ASSIGN_OR_RETURN(std::vector<fs::FdEntry> fds,
                   fs::ReadFdRecords(r, ctx.core.task.nr_fds, ctx.high_fd_base));
  if (ctx.task->shares_files || ctx.task->files_of >= 0) {
    // The parent (or the first sibling) restored the table they share.
    if (!fds.empty()) return r.FieldError("nr_fds", "a task sharing another's fd table has none");
    return absl::OkStatus();
  }
  for (const fs::FdEntry& f : fds) {
    ctx.task->fd_of.emplace(f.file_ref, f.fd);
    ctx.task->fds_of[f.file_ref].push_back({f.fd, (f.fd_flags & FD_CLOEXEC) != 0});
    ctx.fds.insert(f.fd);
  }
  return fs::QueueFdRestore(*ctx.task->queue, fds, *ctx.objects, ctx.high_fd_base);
}

// ------------------------------------ locks: flock, POSIX and OFD locks held

absl::Status WriteLocksSection(const TaskDump& t, SectionWriteContext& ctx) {
  ASSIGN_OR_RETURN(std::vector<image::ckpt_lock> locks, fs::CollectLocks(t.pid, t.fds));
  return fs::WriteLocks(locks, *ctx.writer);
}

absl::Status RestoreLocksSection(SectionRestoreContext& ctx) {
  TaskRestore& t = *ctx.task;
  ASSIGN_OR_RETURN(std::vector<image::ckpt_lock> locks,
                   fs::ReadLocks(*ctx.reader, [&](int fd) { return ctx.fds.count(fd) > 0; }));
  // flock and OFD locks belong to the description: taken now. POSIX
  // ones once the restorer's fds on the same files are closed (FinishTask).
  std::vector<image::ckpt_lock> now;
  for (const image::ckpt_lock& l : locks) {
    (l.kind == image::kLockPosix ? ctx.posix_locks : now).push_back(l);
  }
  if (now.empty()) return absl::OkStatus();
  RETURN_IF_ERROR(t.queue->Flush());  // its fds are in place
  return fs::TakeLocks(*t.injector, t.pid, now);
}

// -------------------------------------------------- mm: the VMAs and pages

absl::Status WriteMmSection(const TaskDump& t, SectionWriteContext& ctx) {
  mm::MmStats mm_stats;
  RETURN_IF_ERROR(mm::WriteMm(t.pid, t.mm, *ctx.writer, &mm_stats));
  ctx.stats->vmas += mm_stats.vmas;
  ctx.stats->pages_written += mm_stats.pages;
  ctx.stats->pages_skipped += mm_stats.skipped_pages;
  return absl::OkStatus();
}

// The task makes its own userfaultfd (only a task can, for its own
// memory; before its credentials are restored, which may not allow it),
// moves it above every fd of its own, and this process takes a copy to
// fill its pages from the image while it runs.
absl::Status StartLazyFill(SectionRestoreContext& ctx, mm::MmRestoreContext& mctx) {
  TaskRestore& t = *ctx.task;
  RETURN_IF_ERROR(t.queue->Flush());
  task::SyscallBatch make = t.injector->NewBatch();
  const size_t made = make.Add(SYS_userfaultfd, {O_CLOEXEC | O_NONBLOCK}, task::kMayFail);
  RETURN_IF_ERROR(t.injector->Run(make));
  if (make.ret(made) < 0) {
    return ErrnoError(static_cast<int>(-make.ret(made)),
                      "userfaultfd() in the task (it needs CAP_SYS_PTRACE, or "
                      "vm.unprivileged_userfaultfd=1)");
  }
  const uint64_t fd = static_cast<uint64_t>(make.ret(made));
  task::SyscallBatch move = t.injector->NewBatch();
  const size_t moved = move.Add(SYS_fcntl, {fd, F_DUPFD_CLOEXEC, static_cast<uint64_t>(ctx.high_fd_base)});
  move.Add(SYS_close, {fd});
  RETURN_IF_ERROR(t.injector->Run(move));
  t.lazy_fd = static_cast<int>(move.ret(moved));
  ASSIGN_OR_RETURN(UniqueFd uffd, fs::CopyOfFd(t.pid, t.lazy_fd));
  for (mm::LazyRun& run : mctx.lazy_runs) run.offset += ctx.image_base;
  mm::LazyFill::Options options;
  options.pid = t.pid;
  const int image = ctx.image_fd;
  options.read = [image](uint64_t off, void* buf, size_t len) -> absl::Status {
    ASSIGN_OR_RETURN(size_t got, PreadFull(image, buf, len, off));
    if (got != len) return absl::DataLossError("the image ends inside page contents");
    return absl::OkStatus();
  };
  ASSIGN_OR_RETURN(t.lazy_fill, mm::LazyFill::Start(std::move(uffd), std::move(mctx.lazy_vmas),
                                                    std::move(mctx.lazy_runs), options));
  return absl::OkStatus();
}

absl::Status RestoreMmSection(SectionRestoreContext& ctx) {
  TaskRestore& t = *ctx.task;
  mm::MmRestoreContext mctx;
  mctx.pid = t.pid;
  mctx.free_area = t.entry.free_area;
  mctx.layout = ctx.layout;
  mctx.parent = ctx.parent != nullptr ? &ctx.parent->task->mm : nullptr;
  mctx.restored = &t.mm;
  mctx.objects = ctx.objects;
  mctx.ipc_ns_ref = t.entry.ipc_ns_ref;
  mctx.queue = t.queue.get();
  mctx.buffer = ctx.buffer;
  mctx.lazy = ctx.lazy;
  mm::MmStats mstats;
  absl::Status st;
  {
    Phase p("restore: mm");
    st = mm::RestoreMm(*ctx.reader, mctx, &mstats);
  }
  ctx.stats->pages_written += mstats.pages;
  TraceSpan("restore: mm, reading pages", 0, mstats.read_ns);
  TraceSpan("restore: mm, writing pages", 0, mstats.write_ns);
  TraceSpan("restore: mm, awaiting populate", 0, mstats.wait_ns);
  if (!st.ok()) return Annotate(st, absl::StrCat("task ", t.pid));
  if (!mctx.lazy_runs.empty()) {
    st = StartLazyFill(ctx, mctx);
    if (!st.ok()) return Annotate(st, absl::StrCat("task ", t.pid, ": lazy restore"));
  }
  // From here on the task's own vdso carries the injections that need no
  // trampoline; in a task without one, the syscall instruction of the C
  // library's rt_sigreturn gadget (as the dump used).
  if (mctx.vdso_start != 0) {
    ASSIGN_OR_RETURN(uint64_t syscall_off, task::VdsoSyscallOffset());
    t.injector->set_syscall_insn(mctx.vdso_start + syscall_off);
    return absl::OkStatus();
  }
  std::vector<task::CodeRange> code;
  for (const image::ckpt_vma& v : t.mm.vmas) {
    if ((v.prot & PROT_EXEC) && v.kind == image::kVmaFile) {
      code.push_back({v.start, v.end, absl::StrCat("restored ", t.pid, " 0x", absl::Hex(v.start))});
    }
  }
  const uint64_t gadget = task::FindSigreturnGadget(t.pid, code);
  if (gadget == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "task ", t.pid, " has no [vdso], and no rt_sigreturn gadget was found in its code"));
  }
  t.injector->set_syscall_insn(gadget + 7);
  return absl::OkStatus();
}

// ---------------------------------------------- sighand: signal actions

absl::Status WriteSighandSection(const TaskDump& t, SectionWriteContext& ctx) {
  return task::WriteSighand(t.sighand, *ctx.writer);
}

absl::Status RestoreSighandSection(SectionRestoreContext& ctx) {
  ASSIGN_OR_RETURN(ctx.sighand, task::ReadSighandRecord(*ctx.reader));
  return task::QueueSighandRestore(*ctx.task->queue, ctx.sighand);
}

// ------------------------ signals: pending, itimers, POSIX timers (queued last)

absl::Status WriteSignalsSection(const TaskDump& t, SectionWriteContext& ctx) {
  return task::WriteSignals(t.signals, *ctx.writer);
}

absl::Status RestoreSignalsSection(SectionRestoreContext& ctx) {
  ASSIGN_OR_RETURN(ctx.signals, task::ReadSignalsRecords(*ctx.reader));
  return absl::OkStatus();
}

// ------------------------------------- threads: the leader first, then others

// The task's threads, the leader first, each with its pid objref.
absl::StatusOr<std::vector<std::pair<pid_t, uint32_t>>> ThreadOrder(const TaskDump& t,
                                                                     const SectionWriteContext& ctx) {
  std::vector<pid_t> order = {t.pid};
  for (const auto& [id, th] : t.threads) {
    if (id != t.pid) order.push_back(id);
  }
  std::vector<std::pair<pid_t, uint32_t>> out;
  for (pid_t tid : order) {
    ASSIGN_OR_RETURN(uint32_t tid_ref,
                     ctx.objects->Lookup(objhash::ObjKind::kPid, objhash::Identity::OfPid(tid)));
    out.push_back({tid, tid_ref});
  }
  return out;
}

absl::Status WriteThreadsSection(const TaskDump& t, SectionWriteContext& ctx) {
  ASSIGN_OR_RETURN(auto order, ThreadOrder(t, ctx));
  for (const auto& [tid, tid_ref] : order) {
    RETURN_IF_ERROR(task::WriteThread(t.threads.at(tid).state, tid_ref, *ctx.writer));
  }
  ++ctx.stats->tasks;
  ctx.stats->threads += t.threads.size();
  return absl::OkStatus();
}

absl::Status RestoreThreadsSection(SectionRestoreContext& ctx) {
  image::Reader& r = *ctx.reader;
  TaskRestore& t = *ctx.task;
  for (uint32_t i = 0; i < t.entry.nr_threads; ++i) {
    uint32_t tid_ref = 0;
    ASSIGN_OR_RETURN(task::ThreadState thread, task::ReadThreadRecords(r, &tid_ref));
    if (i == 0) {
      if (tid_ref != t.entry.pid_ref) return r.FieldError("tid_ref", "the leader comes first");
      ctx.tids[tid_ref] = t.pid;
      ctx.leader = std::move(thread);
      RETURN_IF_ERROR(task::QueueThreadRestore(*t.queue, ctx.leader));
      continue;
    }
    if (tid_ref == t.entry.pid_ref) return r.FieldError("tid_ref", "the leader appears twice");
    if (thread.creds) {
      // The trust model holds for a thread's own credentials too.
      task::TaskCore own = ctx.core;
      own.creds = thread.creds->creds;
      own.groups = thread.creds->groups;
      RETURN_IF_ERROR(ctx.check_credentials(own));
    }
    absl::StatusOr<pid_t> tid = ctx.add_thread(thread, tid_ref, ctx.core);
    if (!tid.ok()) return Annotate(tid.status(), absl::StrCat("task ", t.pid));
    ctx.tids[tid_ref] = *tid;
    if (!thread.pending.empty()) ctx.thread_pending.push_back({*tid, thread.pending});
  }
  return absl::OkStatus();
}

// --------------------------- sched: policy, nice, affinity, oom_score_adj

absl::Status WriteSchedSection(const TaskDump& t, SectionWriteContext& ctx) {
  ASSIGN_OR_RETURN(auto threads, ThreadOrder(t, ctx));  // the threads section's order
  return task::WriteSched(t.pid, threads, *ctx.writer);
}

absl::Status RestoreSchedSection(SectionRestoreContext& ctx) {
  TaskRestore& t = *ctx.task;
  ASSIGN_OR_RETURN(task::TaskSched s, task::ReadSched(*ctx.reader, t.entry.nr_threads));
  // Set once nothing more runs in the task for the restore.
  ctx.before_release.push_back([&ctx, &t, s = std::move(s)]() {
    return task::ApplySched(t.pid, s, [&](uint32_t ref) -> pid_t {
      auto it = ctx.tids.find(ref);
      return it == ctx.tids.end() ? 0 : it->second;
    });
  });
  return absl::OkStatus();
}

constexpr TaskSectionOps kSections[] = {
    {"core", WriteCoreSection, RestoreCoreSection},
    {"fs", WriteFsSection, RestoreFsSection},
    {"fds", WriteFdsSection, RestoreFdsSection},
    {"locks", WriteLocksSection, RestoreLocksSection},
    {"mm", WriteMmSection, RestoreMmSection},
    {"sighand", WriteSighandSection, RestoreSighandSection},
    {"signals", WriteSignalsSection, RestoreSignalsSection},
    {"threads", WriteThreadsSection, RestoreThreadsSection},
    {"sched", WriteSchedSection, RestoreSchedSection},
};

}  // namespace

std::span<const TaskSectionOps> TaskSections() { return kSections; }

}  // namespace ckpt
