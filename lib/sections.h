// The sections of each task in the image, in one declared order, each with
// its write (dump) and its restore side by side: core (comm, creds,
// rlimits), fs (cwd, root), fds, mm, sighand, signals, threads, sched
// (policy, nice, CPU affinity of each thread; oom_score_adj). Neither
// driver writes the order out: both walk kTaskSections. A new per-task
// section (namespaces, cgroup, controlling terminal, seccomp, scheduling)
// is one more entry here and its two functions; what it collects during
// the dump goes into TaskDump::extra under its name.
//
// The drivers' per-task state (TaskDump, TaskRestore) lives here too, for
// the sections to read and fill.

#ifndef LIBCKPT_LIB_SECTIONS_H_
#define LIBCKPT_LIB_SECTIONS_H_

#include <sys/types.h>

#include <any>
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "ckpt/ckpt.hpp"
#include "lib/base/buffer.h"
#include "lib/fs/fs.h"
#include "lib/image/format.h"
#include "lib/image/reader.h"
#include "lib/image/writer.h"
#include "lib/mm/mm.h"
#include "lib/objhash/objhash.h"
#include "lib/task/core.h"
#include "lib/task/inject.h"
#include "lib/task/proc.h"
#include "lib/task/signals.h"
#include "lib/task/thread.h"
#include "lib/task/tree.h"

namespace ckpt {

// ------------------------------------------------------------------ dump

struct ThreadDump {
  task::ThreadState state;
  std::unique_ptr<task::Injector> injector;
  bool touched = false;  // its registers were changed for injection
  int64_t sleep_expiry = -1;  // CLOCK_MONOTONIC expiry of the sleep the freeze broke
  int64_t interrupted_ns = 0;  // CLOCK_MONOTONIC when the freeze interrupted it
  bool job_stopped = false;   // it was in a group stop when seized
  // A thread of a task stopped by job control holds every signal while
  // the dump resumes it (task::kAllSignalsHeld), so that none is taken off
  // its queue; this was its mask before.
  bool signals_held = false;
  uint64_t mask_before_hold = 0;
  int trap_signal = 0;  // what its first event stop reported (SIGTRAP, or a stop signal)
  task::ProcStatus status;  // its /proc status once frozen (seccomp mode, credentials)
};

// A task of the dump; what the tree needs of it (pid, parent, zombie,
// status, stat, pid objects) is in task::TreeTask.
struct TaskDump : task::TreeTask {
  std::vector<pid_t> Tids() const override {
    std::vector<pid_t> tids;
    for (const auto& [tid, th] : threads) tids.push_back(tid);
    return tids;
  }
  uint64_t FreeArea() const override { return mm.free_area; }
  // From the status each thread's collection read once it was frozen.
  absl::StatusOr<std::vector<pid_t>> ThreadNsPid(pid_t tid) const override {
    auto it = threads.find(tid);
    if (it == threads.end() || it->second.status.tgid == 0) return TreeTask::ThreadNsPid(tid);
    return it->second.status.nspid;
  }

  std::map<pid_t, ThreadDump> threads;  // seized threads by tid
  bool frozen_childless = false;  // frozen, and listed with no children
  task::TaskCore core;
  fs::FsState fs;
  std::vector<fs::FdEntry> fds;
  mm::MmDump mm;
  image::ckpt_sighand sighand{};
  task::TaskSignals signals;
  std::map<std::string, std::any> extra;  // what later sections collect, by section name

  ThreadDump& leader() { return threads.at(pid); }
  const ThreadDump& leader() const { return threads.at(pid); }
};

struct SectionWriteContext {
  image::Writer* writer = nullptr;
  const objhash::ObjHash* objects = nullptr;
  DumpStats* stats = nullptr;
};

// --------------------------------------------------------------- restore

struct SectionRestoreContext;

// A task being restored (its place in the tree is task::TreeNode; parent
// is an index in the driver's tasks, which are the tree's nodes in order).
struct TaskRestore : task::TreeNode {
  std::vector<pid_t> threads;  // every thread seized, the leader first
  std::unique_ptr<task::Injector> injector;
  std::unique_ptr<task::SyscallQueue> queue;
  // Each FILE object's lowest fd number in the task's table (a task that
  // shares its parent's table: the parent's), for the late pass.
  std::map<uint32_t, int> fd_of;
  // ... and every fd number of each, with its close-on-exec flag.
  std::map<uint32_t, std::vector<std::pair<int, bool>>> fds_of;
  // What its sections read, kept until the driver finishes the task.
  std::unique_ptr<SectionRestoreContext> sections;
  // Its memory as restored, for the children forked from it
  // (inherits_memory).
  mm::RestoredMm mm;
  // A lazy restore: what fills its private pages once it runs, and the fd
  // of its own userfaultfd in its table (kept until the fill is done, so
  // that the restorer's death never leaves it on zero pages: the tasks
  // are killed first, PTRACE_O_EXITKILL).
  std::unique_ptr<mm::LazyFill> lazy_fill;
  int lazy_fd = -1;
};

// What the sections of one task read and leave for the ones after them
// (and for the driver, which finishes the task once all are read).
struct SectionRestoreContext {
  // Given by the driver.
  image::Reader* reader = nullptr;
  TaskRestore* task = nullptr;
  const objhash::RestoreTable* objects = nullptr;
  int high_fd_base = 0;
  const mm::RestorerLayout* layout = nullptr;
  // The parent's sections (and through them its restored memory), for a
  // task forked from it (inherits_memory).
  const SectionRestoreContext* parent = nullptr;
  Buffer* buffer = nullptr;
  RestoreStats* stats = nullptr;
  // A lazy restore of this task: the image's fd (read with pread) and where
  // the stream begins in it.
  bool lazy = false;
  int image_fd = -1;
  uint64_t image_base = 0;
  // Creates another thread of the task (the threads section); returns its
  // TID as this process sees it.
  std::function<absl::StatusOr<pid_t>(const task::ThreadState& thread, uint32_t tid_ref,
                                      const task::TaskCore& core)>
      add_thread;
  // The credentials check of the trust model, before anything of the task
  // is restored.
  std::function<absl::Status(const task::TaskCore& core)> check_credentials;

  // Filled by the sections.
  task::TaskCore core;
  std::string root;  // its root directory (fs)
  std::set<int> fds;  // the fd numbers of its own table (none if it shares its parent's)
  // POSIX locks belong to the fd table, and any close of a file drops the
  // table's locks on it: taken once the restorer's fds are closed.
  std::vector<image::ckpt_lock> posix_locks;
  image::ckpt_sighand sighand{};
  task::TaskSignals signals;
  task::ThreadState leader;
  std::vector<std::pair<pid_t, std::vector<image::ckpt_siginfo>>> thread_pending;
  std::map<uint32_t, pid_t> tids;  // each thread's pid objref -> its TID here (threads section)
  // Run by the driver once nothing more is injected into the task, just
  // before it is let go (what would slow the restore down if done
  // earlier: a SCHED_IDLE thread barely runs on a busy machine).
  std::vector<std::function<absl::Status()>> before_release;
  std::map<std::string, std::any> extra;
};

// ---------------------------------------------------------------- table

struct TaskSectionOps {
  const char* name;
  absl::Status (*write)(const TaskDump& t, SectionWriteContext& ctx);
  absl::Status (*restore)(SectionRestoreContext& ctx);
};

// Every section, in the order the image holds them.
std::span<const TaskSectionOps> TaskSections();

}  // namespace ckpt

#endif  // LIBCKPT_LIB_SECTIONS_H_
