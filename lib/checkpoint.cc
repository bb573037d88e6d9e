// The dump driver: gate, freeze the tree, collect, write, then resume or
// kill.
//
// It walks the tree and calls each layer in a fixed order; it does not
// know object kinds (the handler table writes the objects section).

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ckpt/ckpt.hpp"
#include "lib/base/clock.h"
#include "lib/base/status.h"
#include "lib/base/trace.h"
#include "lib/fs/fs.h"
#include "lib/fs/ghost.h"
#include "lib/fs/pipe.h"
#include "lib/fs/pty.h"
#include "lib/fs/inetsock.h"
#include "lib/fs/unixsock.h"
#include "lib/handlers.h"
#include "lib/image/format.h"
#include "lib/image/writer.h"
#include "lib/ipc/sysv.h"
#include "lib/mm/maps.h"
#include "lib/mm/mm.h"
#include "lib/objhash/objhash.h"
#include "lib/preflight.h"
#include "lib/sections.h"
#include "lib/task/core.h"
#include "lib/task/inject.h"
#include "lib/task/jobstop.h"
#include "lib/task/proc.h"
#include "lib/task/ptrace.h"
#include "lib/task/recovery.h"
#include "lib/task/restart.h"
#include "lib/task/signals.h"
#include "lib/task/thread.h"
#include "lib/task/vdso.h"

namespace ckpt {
namespace {

// Rounds of "freeze what is new, look again" before a tree that keeps
// changing is given up on.
constexpr int kMaxFreezeRounds = 16;

class Dumper {
 public:
  Dumper(const DumpOptions& options, DumpStats* stats) : options_(options), stats_(stats) {}
  ~Dumper() { Thaw(/*kill=*/false).IgnoreError(); }

  absl::Status Run(pid_t root, ImageOutput& out);

 private:
  absl::Status Gate(pid_t root);
  absl::Status FreezeTree(pid_t root);
  absl::Status ReadFrozenStatus();
  absl::StatusOr<bool> FreezeTask(TaskDump& t);
  absl::Status WaitFrozen(TaskDump& t, pid_t tid);
  absl::Status HoldSignals(ThreadDump& th, pid_t tid);
  absl::Status CheckTask(const TaskDump& t);
  std::vector<task::TreeTask*> TreeTasks() const;
  absl::Status CheckShared(TaskDump& t);
  absl::Status Collect(TaskDump& t);
  // Which tasks the restore forks from their parents, for the pages they
  // share (task::TreeTask::inherits_memory).
  absl::Status PlanInheritedMemory();
  // Marks the first of siblings that share an fd table their parent gave
  // up, and refuses what the restore cannot make.
  absl::Status PlanSiblingFiles();
  absl::Status ResolveTerminals(const std::vector<std::string>& external);
  absl::Status Write(ImageOutput& out);
  absl::Status Cancelled() const;
  absl::Status Thaw(bool kill);
  absl::Status ThawTask(TaskDump& t, bool kill);
  absl::Status EndInjection(TaskDump& t);
  TaskDump* Find(pid_t pid);

  const DumpOptions& options_;
  DumpStats* stats_;
  image::ckpt_image_header header_{};
  int64_t start_ns_ = 0;  // CLOCK_MONOTONIC at the checkpoint's start
  objhash::ObjHash objects_;
  uint64_t ipc_pages_ = 0;  // what the IPC namespaces' segments write
  std::vector<std::unique_ptr<TaskDump>> tasks_;  // parents before children
  task::TreeDump tree_;  // pid objects, task entries, sessions, groups
  PipeCheck pipe_check_;  // what the pre-flight found of pipes held outside
  // The tasks' smaps, read on another thread while the rest of the
  // frozen tree's state is read, until each task's Collect takes them.
  std::unique_ptr<mm::VmaPrefetch> vmas_;
};

// The task's executable file mappings, the C library's first: where its
// rt_sigreturn restorer is looked for.
std::vector<task::CodeRange> CodeRanges(const mm::MmDump& mm) {
  std::vector<task::CodeRange> ranges;
  for (const mm::VmaDump& v : mm.vmas) {
    if (!(v.rec.prot & PROT_EXEC) || v.name.empty() || v.name[0] != '/') continue;
    ranges.push_back({v.rec.start, v.rec.end,
                      absl::StrCat(v.name, ":", v.rec.pgoff, ":", v.rec.end - v.rec.start)});
  }
  std::stable_partition(ranges.begin(), ranges.end(), [](const task::CodeRange& r) {
    return r.key.find("/libc.") != std::string::npos || r.key.find("/libc-") != std::string::npos;
  });
  return ranges;
}

// The Writer's sink over the caller's output: a write interrupted by a
// signal is tried again unless the dump was cancelled.
class OutputSink : public image::ByteSink {
 public:
  OutputSink(ImageOutput& out, const volatile sig_atomic_t* cancel) : out_(out), cancel_(cancel) {}
  absl::StatusOr<size_t> WriteV(const struct iovec* iov, int iovcnt) override {
    for (;;) {
      if (cancel_ != nullptr && *cancel_) return absl::CancelledError("the dump was cancelled");
      ASSIGN_OR_RETURN(size_t n, out_.WriteV(iov, iovcnt));
      if (n > 0) return n;
    }
  }

 private:
  ImageOutput& out_;
  const volatile sig_atomic_t* cancel_;
};

// Copy-on-write sharing after a fork is kept by forking the child from its
// restored parent: the restore does so for a child that shares pages with
// its parent (or whose parent is forked so), when a fork can make it as it
// is. It is then in its parent's namespaces, group and session (or leads
// its own, which only its descendants joined), with its parent's
// executable and no_new_privs, and its parent's free area free in its
// layout; every child of it can be forked so too (a zombie cannot).
absl::Status Dumper::PlanInheritedMemory() {
  const size_t n = tasks_.size();
  std::map<pid_t, size_t> index;
  for (size_t i = 0; i < n; ++i) index[tasks_[i]->pid] = i;
  std::vector<int> parent(n, -1);
  for (size_t i = 0; i < n; ++i) {
    auto it = index.find(tasks_[i]->parent);
    if (tasks_[i]->parent != 0 && it != index.end()) parent[i] = static_cast<int>(it->second);
  }
  auto free_in = [](const mm::MmDump& mm, uint64_t area) {
    for (const mm::VmaDump& v : mm.vmas) {
      if (v.rec.start < area + mm::kFreeAreaSize && area < v.rec.end) return false;
    }
    return true;
  };
  // A parent a child can be forked from: its root is / (the child starts
  // in it), it has no sealed mapping (a fork passes the seal on, and the
  // child could not unmap it), and its vdso mappings can be parked
  // together in the free area.
  auto forks_ok = [](const TaskDump& p) {
    if (p.fs.root != "/") return false;
    uint64_t lo = ~0ull, hi = 0;
    for (const mm::VmaDump& v : p.mm.vmas) {
      if (v.rec.advice & image::kAdvSealed) return false;
      if (v.rec.kind == image::kVmaVdso || v.rec.kind == image::kVmaVvar ||
          v.rec.kind == image::kVmaVvarVclock) {
        lo = std::min(lo, v.rec.start);
        hi = std::max(hi, v.rec.end);
      }
    }
    return hi > lo && hi - lo <= mm::kFreeAreaSize - mm::kParkOffset;
  };
  std::vector<bool> can(n, false);
  for (size_t i = 0; i < n; ++i) {
    const TaskDump& t = *tasks_[i];
    if (t.zombie || parent[i] < 0) continue;
    const TaskDump& p = *tasks_[parent[i]];
    // Its free area will be that of an ancestor (the nearest one created
    // with the tree): each must be free in its layout.
    bool areas_free = true;
    for (int a = parent[i]; a >= 0 && areas_free; a = parent[a]) {
      areas_free = free_in(t.mm, tasks_[a]->mm.free_area);
    }
    const bool groups_ok =
        (t.stat.session == p.stat.session && (t.stat.pgrp == p.stat.pgrp || t.stat.pgrp == t.pid)) ||
        (t.stat.session == t.pid && t.stat.pgrp == t.pid);
    can[i] = !p.zombie && !t.uses_others_files() && !t.files_head && !t.carries_files &&
             t.ipc_ns_ref == p.ipc_ns_ref &&
             t.status.nspid.size() == p.status.nspid.size() && groups_ok &&
             !(p.core.task.no_new_privs && !t.core.task.no_new_privs) &&
             // A fork passes membarrier registrations on; none is undone.
             (p.core.task.membarrier & ~t.core.task.membarrier) == 0 &&
             t.mm.rec.exe_ref == p.mm.rec.exe_ref && areas_free && forks_ok(p);
  }
  // The members of a group or session such a task leads are its
  // descendants (made after it, by forks below it).
  auto descends = [&](size_t j, size_t i) {
    for (int a = static_cast<int>(j); a >= 0; a = parent[a]) {
      if (a == static_cast<int>(i)) return true;
    }
    return false;
  };
  for (size_t j = 0; j < n; ++j) {
    for (pid_t leader : {tasks_[j]->stat.pgrp, tasks_[j]->stat.session}) {
      auto it = index.find(leader);
      if (it != index.end() && can[it->second] && !descends(j, it->second)) can[it->second] = false;
    }
  }
  for (size_t i = n; i-- > 0;) {
    if (!can[i] && parent[i] >= 0) can[parent[i]] = false;
  }
  uint64_t shared = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!can[i]) continue;
    TaskDump& t = *tasks_[i];
    TaskDump& p = *tasks_[parent[i]];
    ASSIGN_OR_RETURN(uint64_t moved, mm::ShareWithParent(t.pid, t.mm, p.pid, p.mm));
    shared += moved;
    if (moved == 0 && !p.inherits_memory) continue;
    t.inherits_memory = true;
    t.mm.inherits = true;
    t.mm.free_area = p.mm.free_area;
  }
  stats_->pages_shared = shared;
  return absl::OkStatus();
}

// Which terminal each session of the tree has (read again: the tree is
// stopped now), and what each terminal the tree uses is (fs::ResolvePtys).
absl::Status Dumper::ResolveTerminals(const std::vector<std::string>& external) {
  std::vector<fs::TtyOfTask> ttys;
  std::map<pid_t, uint32_t> pgrp_refs;
  for (const auto& t : tasks_) {
    if (t->pgrp_ref != 0) pgrp_refs.emplace(t->stat.pgrp, t->pgrp_ref);
    if (t->zombie) continue;
    ASSIGN_OR_RETURN(task::ProcStat stat, task::ReadProcStat(t->pid));
    ttys.push_back({t->pid, stat.session, static_cast<uint32_t>(stat.tty_nr), stat.tpgid, t->pid_ref});
  }
  uint32_t flags = options_.shell_job ? objhash::kDumpShellJob : 0u;
  return fs::ResolvePtys(objects_, ttys, pgrp_refs, external, flags);
}

absl::Status Dumper::PlanSiblingFiles() {
  // A child sharing its grandparent's table: its parent carried it.
  for (auto& t : tasks_) {
    if (!t->files_grandparent) continue;
    TaskDump* parent = Find(t->parent);
    if (parent == nullptr) return absl::InternalError("a grandparent's table");
    parent->carries_files = true;
    if (parent->shares_parent_files || parent->files_sibling != 0 || parent->files_grandparent ||
        (parent->stat.session == parent->pid && t->stat.session != parent->pid &&
         t->stat.session != t->pid)) {
      return absl::UnimplementedError(absl::StrCat(
          "task ", t->pid, " shares its grandparent's fd table, which its parent ", parent->pid,
          " gave up, in a way the restore cannot make (the parent shares another table, or the "
          "task stays in a session its parent left): not supported"));
    }
  }
  for (auto& t : tasks_) {
    if (t->files_sibling == 0) continue;
    TaskDump* head = Find(t->files_sibling);
    TaskDump* parent = Find(t->parent);
    if (head == nullptr || parent == nullptr) return absl::InternalError("a sibling's table");
    head->files_head = true;
    if (parent->shares_parent_files || parent->carries_files) {
      return absl::UnimplementedError(absl::StrCat(
          "tasks ", head->pid, " and ", t->pid, " share an fd table that their parent ",
          parent->pid, " gave up, and the parent shares its own parent's: not supported"));
    }
    // Each of them is made after the parent's setsid (as the restore does):
    // none may stay in the session the parent left.
    for (const TaskDump* m : {static_cast<const TaskDump*>(head), static_cast<const TaskDump*>(t.get())}) {
      if (parent->stat.session == parent->pid && m->stat.session != parent->pid &&
          m->stat.session != m->pid) {
        return absl::UnimplementedError(absl::StrCat(
            "task ", m->pid, " shares an fd table with its siblings and stays in the session its "
            "parent ", parent->pid, " left: not supported"));
      }
    }
  }
  // Among a parent's children, the members of one table come before the
  // first of another (the restore makes them in turn, unsharing between).
  for (auto& p : tasks_) {
    pid_t current = 0;
    for (auto& c : tasks_) {
      if (c->parent != p->pid || c->zombie) continue;
      if (c->files_head) {
        current = c->pid;
      } else if (c->files_sibling != 0 && c->files_sibling != current) {
        return absl::UnimplementedError(absl::StrCat(
            "the children of task ", p->pid, " share fd tables that it gave up, in an order the "
            "restore cannot make (task ", c->pid, " shares ", c->files_sibling,
            "'s after another table's first): not supported"));
      }
    }
  }
  return absl::OkStatus();
}

std::vector<task::TreeTask*> Dumper::TreeTasks() const {
  std::vector<task::TreeTask*> v;
  for (const auto& t : tasks_) v.push_back(t.get());
  return v;
}

TaskDump* Dumper::Find(pid_t pid) {
  for (auto& t : tasks_) {
    if (t->pid == pid) return t.get();
  }
  return nullptr;
}

// The pre-flight: every problem the tree has, reported at once, before
// anything is frozen.
absl::Status Dumper::Gate(pid_t root) {
  ASSIGN_OR_RETURN(TreeReport report,
                   Preflight(root, options_, PreflightDepth::kQuick, &pipe_check_));
  if (report.problems.empty()) return absl::OkStatus();
  std::vector<std::string> lines;
  for (const absl::Status& p : report.problems) lines.emplace_back(p.message());
  const std::string all = absl::StrJoin(lines, "; ");
  return absl::Status(report.problems.front().code(),
                      report.problems.size() == 1
                          ? all
                          : absl::StrCat(report.problems.size(), " problems: ", all));
}

// What the freeze read of a task when it first found it (/proc status and
// stat) may have changed before the task's last thread stopped: a thread
// not yet seized sets a signal action, calls setsid() or setuid(). Read
// again now that the whole tree is stopped, with each thread's status,
// which the pid objects and the thread states use.
absl::Status Dumper::ReadFrozenStatus() {
  for (auto& t : tasks_) {
    if (t->zombie) continue;
    auto gone = [&](const absl::Status& st) {
      if (!absl::IsNotFound(st)) return st;
      return absl::AbortedError(absl::StrCat("task ", t->pid, " exited while it was being dumped"));
    };
    for (auto& [tid, th] : t->threads) {
      absl::StatusOr<task::ProcStatus> status = task::ReadProcStatus(tid);
      if (!status.ok()) return gone(status.status());
      // Killed while stopped (an outside SIGKILL, or a thread not yet
      // seized called exit_group or execve): traced, it stays a zombie.
      if (status->state == 'Z' || status->state == 'X') {
        return absl::AbortedError(absl::StrCat(task::TaskName(t->pid, tid),
                                               " exited while the tree was being frozen"));
      }
      th.status = *std::move(status);
    }
    auto leader = t->threads.find(t->pid);
    if (leader != t->threads.end()) {
      t->status = leader->second.status;
    } else {
      absl::StatusOr<task::ProcStatus> status = task::ReadProcStatus(t->pid);
      if (!status.ok()) return gone(status.status());
      t->status = *std::move(status);
    }
    absl::StatusOr<task::ProcStat> stat = task::ReadProcStat(t->pid);
    if (!stat.ok()) return gone(stat.status());
    t->stat = *std::move(stat);
  }
  return absl::OkStatus();
}

// Refusals that do not depend on the rest of the tree (the pre-flight
// made them too; tasks may have changed since).
absl::Status Dumper::CheckTask(const TaskDump& t) { return CheckTaskState(t.pid, t.status, t.stat); }

// Waits until the interrupted thread `tid` of `t` stops (forgetting it if
// it exits).
absl::Status Dumper::WaitFrozen(TaskDump& t, pid_t tid) {
  for (;;) {
    ASSIGN_OR_RETURN(task::StopInfo stop, task::WaitStop(tid));
    if (stop.exited) {
      t.threads.erase(tid);
      if (tid == t.pid) {
        return absl::AbortedError(absl::StrCat("task ", t.pid, " exited while it was being frozen"));
      }
      return absl::OkStatus();
    }
    if (stop.group_stop) {
      // In (or on its way into) a group stop of job control: the event
      // stop reports the signal that stopped the group.
      if (task::IsStopSignal(stop.signal)) t.stop_signo = stop.signal;
      if (t.threads[tid].trap_signal == 0) t.threads[tid].trap_signal = stop.signal;
      return absl::OkStatus();
    }
    // A signal arrived before the interrupt: let it be delivered, then the
    // interrupt stops the thread.
    RETURN_IF_ERROR(task::Cont(tid, stop.signal));
  }
}

// A thread of a stopped task takes no signal while the dump resumes it.
absl::Status Dumper::HoldSignals(ThreadDump& th, pid_t tid) {
  if (th.signals_held) return absl::OkStatus();
  ASSIGN_OR_RETURN(th.mask_before_hold, task::GetSigmask(tid));
  RETURN_IF_ERROR(task::SetSigmask(tid, task::kAllSignalsHeld));
  th.signals_held = true;
  return absl::OkStatus();
}

// Seizes and stops every thread of `t` not yet seized, until no new one
// appears. Returns whether anything new was frozen.
absl::StatusOr<bool> Dumper::FreezeTask(TaskDump& t) {
  bool changed = false;
  for (int round = 0; round < kMaxFreezeRounds; ++round) {
    absl::StatusOr<std::vector<pid_t>> tids = task::ListThreads(t.pid);
    if (!tids.ok()) {
      return absl::AbortedError(absl::StrCat("task ", t.pid, " exited while it was being frozen"));
    }
    std::vector<pid_t> fresh;
    bool seized = false;
    for (pid_t tid : *tids) {
      if (t.threads.count(tid)) continue;
      absl::Status st = task::Seize(tid, task::kSeizeOptions);
      if (!st.ok()) {
        if (absl::IsNotFound(st)) continue;  // the thread just exited
        // The kernel refuses to seize a task that has begun to exit
        // (EPERM, like a task one may not trace): exiting is not a refusal.
        if (absl::IsPermissionDenied(st) && task::IsExiting(tid)) {
          if (tid == t.pid) {
            return absl::AbortedError(absl::StrCat("task ", t.pid, " exited while it was being frozen"));
          }
          continue;
        }
        if (absl::IsPermissionDenied(st)) {
          return absl::PermissionDeniedError(absl::StrCat(
              task::TaskName(t.pid, tid), " may not be traced by this process: ", st.message()));
        }
        return Annotate(st, task::TaskName(t.pid, tid));
      }
      t.threads[tid].state.tid = tid;
      seized = true;
      // A thread in a group stop is seized into a trap already (the
      // kernel waits for it before the seize returns; an interrupt would
      // only stop it once more the next time it is let go). Its sleep, if
      // it was stopped in one, kept a deadline only its restart block
      // knows.
      ASSIGN_OR_RETURN(bool group_stopped, task::SeizedInGroupStop(tid));
      if (group_stopped) {
        RETURN_IF_ERROR(WaitFrozen(t, tid));
        if (!t.threads.count(tid)) continue;
        // Signals held only while the probe lets it run: a dump killed
        // outside that moment leaves its mask as it was.
        ThreadDump& th = t.threads[tid];
        RETURN_IF_ERROR(HoldSignals(th, tid));
        ASSIGN_OR_RETURN(int64_t expiry, task::ResolveStoppedSleep(t.pid, tid));
        RETURN_IF_ERROR(task::SetSigmask(tid, th.mask_before_hold));
        th.signals_held = false;
        th.sleep_expiry = expiry;
        th.job_stopped = true;
        continue;
      }
      // A thread in a timed sleep whose time left only the kernel's timer
      // knows: once the threads interrupted so far have stopped (their
      // timers gone), note the timers, stop it, and see which one went.
      task::SleepProbe probe;
      if (task::NeedsSleepProbe(t.pid, tid)) {
        for (pid_t f : fresh) RETURN_IF_ERROR(WaitFrozen(t, f));
        fresh.clear();
        probe = task::TakeSleepProbe();
      }
      t.threads[tid].interrupted_ns = MonotonicNs();
      RETURN_IF_ERROR(task::Interrupt(tid));
      if (probe.armed()) {
        RETURN_IF_ERROR(WaitFrozen(t, tid));
        if (t.threads.count(tid)) {
          ASSIGN_OR_RETURN(int64_t expiry,
                           task::ResolveSleepExpiry(t.pid, tid, probe, [&]() -> absl::Status {
                             RETURN_IF_ERROR(task::Interrupt(tid));
                             return WaitFrozen(t, tid);
                           }));
          if (t.threads.count(tid)) t.threads[tid].sleep_expiry = expiry;
        }
      } else {
        fresh.push_back(tid);
      }
      seized = true;
    }
    for (pid_t tid : fresh) RETURN_IF_ERROR(WaitFrozen(t, tid));
    if (!seized) return changed;
    changed = true;
  }
  return absl::AbortedError(absl::StrCat("task ", t.pid, " keeps creating threads"));
}

absl::Status Dumper::FreezeTree(pid_t root) {
  for (int round = 0; round < kMaxFreezeRounds; ++round) {
    bool changed = false;
    // Breadth first from the root: a task is frozen before its children
    // are listed, so the list cannot grow behind our back.
    std::vector<std::pair<pid_t, pid_t>> queue = {{root, 0}};
    for (size_t qi = 0; qi < queue.size(); ++qi) {
      auto [pid, parent] = queue[qi];
      TaskDump* t = Find(pid);
      if (t == nullptr) {
        auto fresh = std::make_unique<TaskDump>();
        fresh->pid = pid;
        fresh->parent = parent;
        absl::StatusOr<task::ProcStatus> st = task::ReadProcStatus(pid);
        absl::StatusOr<task::ProcStat> stat = task::ReadProcStat(pid);
        if (!st.ok() || !stat.ok()) {
          if (pid == root) return absl::AbortedError(absl::StrCat("task ", root, " exited"));
          continue;  // reaped meanwhile: not part of the tree any more
        }
        fresh->status = *std::move(st);
        fresh->stat = *std::move(stat);
        fresh->zombie = fresh->status.state == 'Z' || fresh->status.state == 'X';
        fresh->exit_code = fresh->stat.exit_code;
        RETURN_IF_ERROR(CheckTask(*fresh));
        t = fresh.get();
        tasks_.push_back(std::move(fresh));
        changed = true;
      }
      if (t->zombie) continue;
      absl::StatusOr<bool> grew = FreezeTask(*t);
      if (!grew.ok()) {
        // A child that died while being frozen is a zombie now (its parent
        // is frozen): look again.
        if (absl::IsAborted(grew.status()) && pid != root) {
          t->zombie = true;
          absl::StatusOr<task::ProcStat> stat = task::ReadProcStat(pid);
          if (!stat.ok() || (stat->state != 'Z' && stat->state != 'X')) return grew.status();
          t->exit_code = stat->exit_code;
          t->threads.clear();
          changed = true;
          continue;
        }
        return grew.status();
      }
      changed |= *grew;
      // A frozen task that had no children when it was listed cannot have
      // any now: its threads cannot fork, and nothing below it can hand it
      // a child (CLONE_PARENT, orphans for a subreaper). Not listing it
      // again saves a /proc read per thread.
      if (!*grew && t->frozen_childless) continue;
      ASSIGN_OR_RETURN(std::vector<pid_t> children, task::ListChildren(pid));
      t->frozen_childless = children.empty();
      for (pid_t c : children) queue.push_back({c, pid});
    }
    if (!changed) return absl::OkStatus();
  }
  return absl::AbortedError("the tree keeps changing while it is being frozen");
}

// Kernel objects shared between processes that this version cannot
// recreate shared.
absl::Status Dumper::CheckShared(TaskDump& t) {
  TaskDump* parent = t.parent != 0 ? Find(t.parent) : nullptr;
  return CheckSharedResources(objects_, t.pid, t.parent, parent != nullptr && !parent->zombie,
                              &t.shares_parent_files, &t.files_sibling, &t.files_grandparent,
                              [this](pid_t p) {
                                TaskDump* d = Find(p);
                                return d != nullptr ? d->parent : 0;
                              });
}

absl::Status Dumper::Collect(TaskDump& t) {
  RETURN_IF_ERROR(CheckShared(t));
  std::optional<Phase> threads_phase(std::in_place, "dump: thread states");
  for (auto& [tid, th] : t.threads) {
    RETURN_IF_ERROR(task::CaptureThreadFrozen(tid, &th.state));
    ASSIGN_OR_RETURN(th.state.seccomp, task::ReadSeccomp(t.pid, tid, th.status));
    if (th.state.seccomp.mode != 0) {
      // The calls the dump injects must not meet the thread's own filters
      // (one that kills calls it does not know would kill it).
      absl::Status suspend = task::SetOptions(tid, task::kSeizeOptions | task::kSuspendSeccomp);
      if (!suspend.ok()) {
        return absl::PermissionDeniedError(absl::StrCat(
            task::TaskName(t.pid, tid), " has seccomp filters, and this process may not suspend "
            "them for its injected calls (PTRACE_O_SUSPEND_SECCOMP needs CAP_SYS_ADMIN in the "
            "initial user namespace and no seccomp filter of its own): ", suspend.message()));
      }
    }
    ASSIGN_OR_RETURN(th.state.restart,
                     task::PlanRestart(tid, th.state.regs, th.sleep_expiry, start_ns_, th.interrupted_ns));
    // An epoll wait that a job-control stop interrupted returns EINTR
    // once continued (signal(7)): so it does after the restore too (and
    // the mask the dump reads then is the wait's own, not the thread's).
    if (th.job_stopped && task::IsInterruptedEpollWait(th.state.regs)) th.state.restart.reset();
    ASSIGN_OR_RETURN(th.state.pending, task::PeekPending(tid, /*shared=*/false));
  }
  threads_phase.reset();
  ASSIGN_OR_RETURN(std::vector<task::ProcTimer> timers, task::ReadProcTimers(t.pid));
  {
    Phase p("dump: collect mm");
    mm::CollectOptions options;
    options.register_deleted = [this](pid_t pid, const mm::Vma& v) {
      return fs::RegisterMappedGhost(objects_, pid, v.start, v.end, v.name,
                                     makedev(v.dev_major, v.dev_minor), v.ino);
    };
    if (vmas_ != nullptr) options.read_vmas = [this](pid_t pid) { return vmas_->Take(pid); };
    ASSIGN_OR_RETURN(t.mm, mm::CollectMm(t.pid, 0, objects_, options));
  }
  uint64_t vdso = 0;
  for (const mm::VmaDump& v : t.mm.vmas) {
    if (v.rec.kind == image::kVmaVdso) vdso = v.rec.start;
  }
  ASSIGN_OR_RETURN(uint64_t syscall_off, task::VdsoSyscallOffset());
  // If this process dies while syscalls are injected, each thread comes
  // back to its own state by itself (lib/task/recovery.h).
  const uint64_t sigreturn = task::FindSigreturnGadget(t.pid, CodeRanges(t.mm));
  // Syscalls are injected through the [vdso]'s syscall instruction, or,
  // in a task that unmapped its vdso, through the one that ends the C
  // library's rt_sigreturn gadget (`mov $15, %rax; syscall`).
  const uint64_t syscall_insn = vdso != 0 ? vdso + syscall_off : sigreturn != 0 ? sigreturn + 7 : 0;
  if (vdso == 0) {
    // Without [vdso], none of its family: the restore makes all or none.
    for (const mm::VmaDump& v : t.mm.vmas) {
      if (v.rec.kind == image::kVmaVvar || v.rec.kind == image::kVmaVvarVclock) {
        return absl::UnimplementedError(absl::StrCat(
            "task ", t.pid, " unmapped its [vdso] but kept ", v.name, ": not supported"));
      }
    }
  }
  if (syscall_insn == 0) {
    return absl::UnimplementedError(absl::StrCat(
        "task ", t.pid, " has no [vdso] mapping and no rt_sigreturn gadget in its code: not "
        "supported (libckpt injects syscalls through a syscall instruction of the task's own)"));
  }
  auto begin = [&](ThreadDump& th, pid_t tid) -> absl::Status {
    th.injector = std::make_unique<task::Injector>(t.pid, tid);
    th.injector->set_own_tgid(t.status.nstgid.empty() ? t.status.tgid : t.status.nstgid.back());
    // The registers read once the thread stopped: it has not run since.
    th.injector->Begin(syscall_insn, th.state.regs);
    // A stopped thread takes no signal on its first resume
    // (task::kAllSignalsHeld): held just before it, with the recovery
    // frame's mask its own. Not /proc's SigBlk: in sigsuspend, ppoll and
    // the like that is the call's temporary mask, GETSIGMASK the one the
    // thread goes back to.
    if (t.stop_signo != 0) RETURN_IF_ERROR(HoldSignals(th, tid));
    uint64_t mask = th.mask_before_hold;
    if (!th.signals_held) {
      ASSIGN_OR_RETURN(mask, task::GetSigmask(tid));
    }
    th.touched = true;
    return th.injector->EnableRecovery(th.state.regs, th.state.xstate, mask, vdso, sigreturn);
  };
  // The first resume puts back any mask sigsuspend() and the like had
  // saved: read the mask after it, then hold every signal back.
  auto hold_signals = [&](ThreadDump& th, pid_t tid) -> absl::Status {
    ASSIGN_OR_RETURN(th.state.sigmask, task::GetSigmask(tid));
    if (th.signals_held) th.state.sigmask = th.mask_before_hold;  // see task::kAllSignalsHeld
    RETURN_IF_ERROR(th.injector->SetRecoveryMask(th.state.sigmask));
    return task::SetSigmask(tid, task::kDumpInjectionMask);
  };

  // The same after a thread's first resume was its only batch: the mask it
  // has now is its own, but for SIGURG, which the trampoline unblocked if
  // the mask blocked it. No signal needs holding back: nothing more runs.
  auto first_resume_done = [&](ThreadDump& th, pid_t tid) -> absl::Status {
    ASSIGN_OR_RETURN(th.state.sigmask, task::GetSigmask(tid));
    if (th.injector->ended_unblocked()) th.state.sigmask |= 1ull << (SIGURG - 1);
    if (th.signals_held) th.state.sigmask = th.mask_before_hold;  // see task::kAllSignalsHeld
    return th.injector->SetRecoveryMask(th.state.sigmask);
  };

  // The leader maps the trampoline and answers the process-wide queries;
  // every other thread then answers its own through the same trampoline.
  ThreadDump& leader = t.leader();
  RETURN_IF_ERROR(begin(leader, t.pid));
  {
    Phase p("dump: map trampoline");
    RETURN_IF_ERROR(leader.injector->MapTrampoline(t.threads.size()));
  }
  RETURN_IF_ERROR(hold_signals(leader, t.pid));

  task::SyscallBatch batch = leader.injector->NewBatch();
  size_t brk = batch.Add(SYS_brk, {0});
  task::CoreQuery core_q = task::QueueCoreQuery(batch);
  task::SighandQuery sig_q = task::QueueSighandQuery(batch, t.status.sig_cgt | t.status.sig_ign);
  task::ThreadQuery thread_q = task::QueueThreadQuery(batch);
  task::SignalsQuery signals_q = task::QueueSignalsQuery(batch, std::move(timers));
  // Whether this task has waited (WUNTRACED) for each stopped child: a
  // report still there is looked at, not taken (WNOWAIT).
  struct StopQuery {
    TaskDump* child;
    pid_t nr;
    size_t call;
    uint64_t info;
  };
  std::vector<StopQuery> stop_q;
  for (auto& c : tasks_) {
    if (c->parent != t.pid || c->zombie || c->stop_signo == 0) continue;
    const size_t level = t.status.nstgid.size();
    if (level == 0 || level > c->status.nstgid.size()) {
      return absl::InternalError(absl::StrCat("task ", c->pid, ": no PID in its parent's namespace"));
    }
    StopQuery q{c.get(), c->status.nstgid[level - 1], 0, batch.Reserve(sizeof(siginfo_t))};
    q.call = batch.Add(SYS_waitid, {P_PID, static_cast<uint64_t>(q.nr), q.info,
                                    WSTOPPED | WNOWAIT | WNOHANG | __WALL, 0},
                       task::kMayFail);
    stop_q.push_back(q);
  }
  {
    Phase p("dump: injected queries");
    RETURN_IF_ERROR(leader.injector->Run(batch));
  }
  ASSIGN_OR_RETURN(
      t.signals,
      task::ReadSignalsQuery(batch, signals_q, MonotonicNs() - start_ns_,
                             [this](pid_t tid) -> absl::StatusOr<uint32_t> {
                               ASSIGN_OR_RETURN(uint32_t ref,
                                                objects_.Lookup(objhash::ObjKind::kPid,
                                                                objhash::Identity::OfPid(tid)));
                               if (ref == 0) {
                                 return absl::UnimplementedError(absl::StrCat(
                                     "a POSIX timer notifies thread ", tid, ", outside the dump"));
                               }
                               return ref;
                             }));
  ASSIGN_OR_RETURN(t.signals.pending, task::PeekPending(t.pid, /*shared=*/true));
  t.mm.rec.brk = static_cast<uint64_t>(batch.ret(brk));
  ASSIGN_OR_RETURN(t.core, task::ReadCore(t.pid, t.status, batch, core_q));
  for (auto& [tid, th] : t.threads) {
    if (tid == t.pid) continue;
    th.state.creds = task::ThreadCredsIfOwn(th.status, t.core);
  }
  t.sighand = task::ReadSighand(batch, sig_q);
  task::ReadThreadQuery(batch, thread_q, &leader.state);
  for (const StopQuery& q : stop_q) {
    // A group stop still on its way (a thread not in it yet) has no
    // report: it is made when the stop completes, after the restore too.
    bool complete = true;
    for (const auto& [tid, th] : q.child->threads) complete &= th.trap_signal == q.child->stop_signo;
    if (!complete) {
      q.child->stop_reported = false;
      continue;
    }
    if (batch.ret(q.call) != 0) {
      return ErrnoError(static_cast<int>(-batch.ret(q.call)), "task ", t.pid,
                        ": waitid for its stopped child ", q.child->pid);
    }
    siginfo_t info;
    std::memcpy(&info, batch.Output(q.info), sizeof(info));
    q.child->stop_reported = info.si_pid != q.nr;
  }

  // Every other thread answers its own queries (sigaltstack, the tid
  // address) through the same trampoline, up to kWave of them at once,
  // each in its own slice of the call table and data area, so that their
  // round trips overlap. The batch is the thread's first resume: its mask
  // is read after it (first_resume_done), and nothing more is injected.
  std::optional<Phase> queries_phase(std::in_place, "dump: thread queries");
  {
    constexpr size_t kWave = 64;
    std::vector<std::pair<pid_t, ThreadDump*>> others;
    for (auto& [tid, th] : t.threads) {
      if (tid != t.pid) others.push_back({tid, &th});
    }
    uint64_t frame = 1;
    for (size_t w = 0; w < others.size(); w += kWave) {
      const size_t n = std::min(kWave, others.size() - w);
      std::vector<task::SyscallBatch> batches;
      std::vector<task::ThreadQuery> queries;
      batches.reserve(n);
      queries.reserve(n);
      absl::Status failed;
      for (size_t i = 0; i < n && failed.ok(); ++i) {
        auto [tid, th] = others[w + i];
        failed = begin(*th, tid);
        if (failed.ok()) {
          failed = th->injector->AdoptTrampoline(leader.injector->layout().Slice(i, kWave), frame++);
        }
        if (!failed.ok()) break;
        batches.push_back(th->injector->NewBatch());
        queries.push_back(task::QueueThreadQuery(batches.back()));
        failed = th->injector->Start(batches.back());
      }
      // Every batch started is waited for, even after a failure: no thread
      // is left running in the trampoline.
      for (size_t i = 0; i < batches.size(); ++i) {
        auto [tid, th] = others[w + i];
        absl::Status st = th->injector->Wait(batches[i]);
        if (st.ok()) {
          task::ReadThreadQuery(batches[i], queries[i], &th->state);
          st = first_resume_done(*th, tid);
        }
        if (failed.ok()) failed = st;
      }
      RETURN_IF_ERROR(failed);
    }
  }
  // Nothing more is injected: every thread goes back to its own registers
  // and mask now, and the trampoline goes away, before the long part of
  // the dump (writing) begins.
  queries_phase.reset();
  {
    Phase end("dump: end injection");
    RETURN_IF_ERROR(EndInjection(t));
  }

  Phase p("dump: collect fs and fds");
  ASSIGN_OR_RETURN(t.fs, fs::CollectFs(t.pid, objects_));
  uint32_t flags = 0;
  if (options_.shell_job) flags |= objhash::kDumpShellJob;
  if (options_.leave_running) flags |= objhash::kDumpLeaveRunning;
  // A table shared with the parent is written once, with the parent.
  if (!t.uses_others_files()) {
    ASSIGN_OR_RETURN(t.fds, fs::CollectFds(t.pid, objects_, flags));
  }
  return absl::OkStatus();
}

absl::Status Dumper::Cancelled() const {
  if (options_.cancel != nullptr && *options_.cancel) {
    return absl::CancelledError("the dump was cancelled");
  }
  return absl::OkStatus();
}

absl::Status Dumper::Write(ImageOutput& out) {
  ASSIGN_OR_RETURN(const objhash::HandlerTable* handlers, Handlers());
  OutputSink sink(out, options_.cancel);
  image::Writer w(&sink);
  if (options_.leave_running) header_.flags |= image::kImageLeftRunning;
  RETURN_IF_ERROR(w.WriteImageHeader(header_));

  RETURN_IF_ERROR(tree_.Write(w, TreeTasks(), options_.container));


  // Every shared object, once, each after the objects it needs, then
  // their links.
  objhash::ObjectWriter objects_out(*handlers, objects_);
  image::ckpt_objects objs{};
  objs.nr_objects = objects_out.nr_objects();
  objs.nr_links = objects_out.nr_links();
  for (const auto& t : tasks_) {
    for (const fs::FdEntry& f : t->fds) {
      objs.fd_limit = std::max(objs.fd_limit, static_cast<uint32_t>(f.fd) + 1);
    }
  }
  RETURN_IF_ERROR(w.AppendStruct(image::CKPT_HDR_OBJECTS, objs));
  objhash::CheckpointContext ctx{&w, &objects_, 0};
  RETURN_IF_ERROR(objects_out.Write(ctx));
  stats_->pages_written += ipc_pages_;

  // Each live task's own sections, in tree order, in the sections' order.
  SectionWriteContext sctx{&w, &objects_, stats_};
  for (const auto& t : tasks_) {
    if (t->zombie) continue;
    for (const TaskSectionOps& section : TaskSections()) {
      RETURN_IF_ERROR(section.write(*t, sctx));
    }
  }
  RETURN_IF_ERROR(w.Finish());
  stats_->image_bytes = w.bytes();
  return absl::OkStatus();
}

absl::Status Dumper::EndInjection(TaskDump& t) {
  absl::Status result;
  auto keep = [&](absl::Status st) {
    if (result.ok() && !st.ok()) result = st;
  };
  // Every thread but the leader first: they leave the trampoline the
  // leader then unmaps.
  // All let go first, then each waited for: their round trips overlap.
  std::vector<ThreadDump*> parking;
  for (auto& [tid, th] : t.threads) {
    if (tid == t.pid || !th.touched) continue;
    absl::Status st = th.injector->StartPark(th.state.regs, th.state.sigmask);
    keep(st);
    if (st.ok()) parking.push_back(&th);
    th.touched = false;
    th.signals_held = false;  // its own mask is back
  }
  for (ThreadDump* th : parking) keep(th->injector->WaitParked());
  auto it = t.threads.find(t.pid);
  if (it != t.threads.end() && it->second.touched) {
    ThreadDump& leader = it->second;
    keep(leader.injector->Finish(leader.state.regs, leader.state.sigmask));
    leader.touched = false;
    leader.signals_held = false;
  }
  return result;
}

absl::Status Dumper::ThawTask(TaskDump& t, bool kill) {
  if (t.threads.empty()) return absl::OkStatus();
  if (kill) {
    ::kill(t.pid, SIGKILL);
    // Wait until it is dead. When this process is also its parent, leave
    // the exit status for the caller to reap (WNOWAIT); otherwise take the
    // tracer's notification, which hands the task to its parent.
    // The leader is reported last: the kernel holds it back until every
    // other (traced) thread has been reaped.
    const bool own_child = t.status.ppid == getpid();
    std::vector<pid_t> order;
    for (auto& [tid, th] : t.threads) {
      if (tid != t.pid) order.push_back(tid);
    }
    order.push_back(t.pid);
    for (pid_t tid : order) {
      siginfo_t info;
      int options = WEXITED | __WALL | (own_child && tid == t.pid ? WNOWAIT : 0);
      while (waitid(P_PID, tid, &info, options) < 0 && errno == EINTR) {
      }
    }
    t.threads.clear();
    return absl::OkStatus();
  }
  absl::Status result = EndInjection(t);
  auto keep = [&](absl::Status st) {
    if (result.ok() && !st.ok()) result = st;
  };
  std::vector<int> held;
  bool signals_came = false;  // during the dump: an epoll wait keeps its EINTR for them
  for (auto& [tid, th] : t.threads) {
    if (th.injector != nullptr && !th.injector->held_signals().empty()) signals_came = true;
  }
  for (auto& [tid, th] : t.threads) {
    if (th.signals_held) {
      // Held but never given its mask back (the dump stopped before its
      // injection ended): the mask it had.
      keep(task::SetSigmask(tid, th.mask_before_hold));
      th.signals_held = false;
    }
    if (th.state.restart && !signals_came && !task::UnblockedSignalPending(tid)) {
      // An epoll wait the freeze interrupted waits on, with the time it
      // had left, rather than fail with EINTR (the others the kernel
      // restarts itself).
      absl::StatusOr<user_regs_struct> again = task::RestartedEpollWait(
          tid, th.state.regs, *th.state.restart, th.state.restart->remaining_ns - (MonotonicNs() - start_ns_));
      if (again.ok() && again->rip != th.state.regs.rip) keep(task::SetRegs(tid, *again));
    }
    keep(task::Detach(tid, 0));
    if (th.injector != nullptr) {
      for (int sig : th.injector->held_signals()) held.push_back(sig);
    }
  }
  // A thread let go from a group stop goes back into it by itself, but
  // only once it next runs: wait for that, so that the tree is stopped as
  // it was when the dump returns (its parent may look at once). A
  // SIGCONT from elsewhere meanwhile ends the wait at the deadline.
  const int64_t deadline = MonotonicNs() + 1'000'000'000;
  for (auto& [tid, th] : t.threads) {
    if (th.job_stopped) task::WaitForState(tid, 'T', deadline).IgnoreError();
  }
  for (int sig : held) syscall(SYS_tgkill, t.pid, t.pid, sig);
  t.threads.clear();
  return result;
}

absl::Status Dumper::Thaw(bool kill) {
  absl::Status result;
  // Children first, so that a parent never runs while its children are
  // still held.
  for (size_t i = tasks_.size(); i-- > 0;) {
    absl::Status st = ThawTask(*tasks_[i], kill);
    if (result.ok()) result = st;
  }
  return result;
}

absl::Status Dumper::Run(pid_t root, ImageOutput& out) {
  start_ns_ = MonotonicNs();
  const uint64_t start = static_cast<uint64_t>(start_ns_);
  header_ = image::DefaultImageHeader();
  {
    Phase p("dump: gate");
    RETURN_IF_ERROR(Gate(root));
  }
  absl::Status st;
  const int64_t freeze_start = MonotonicNs();
  {
    Phase p("dump: freeze");
    st = FreezeTree(root);
  }
  stats_->freeze_ns = static_cast<uint64_t>(MonotonicNs()) - start;
  if (st.ok()) st = Cancelled();
  if (st.ok()) {
    std::vector<pid_t> live;
    for (const auto& t : tasks_) {
      if (!t->zombie) live.push_back(t->pid);
    }
    vmas_ = std::make_unique<mm::VmaPrefetch>(std::move(live));
  }
  if (st.ok()) {
    Phase p("dump: frozen status");
    st = ReadFrozenStatus();
  }
  if (st.ok()) st = tree_.RegisterPids(TreeTasks(), objects_, options_.container);
  if (st.ok()) {
    // The IPC namespaces first: the tasks' attachments refer to their
    // segments.
    Phase p("dump: ipc");
    std::vector<pid_t> live;
    for (const auto& t : tasks_) {
      if (!t->zombie) live.push_back(t->pid);
    }
    absl::StatusOr<std::map<pid_t, uint32_t>> ns =
        ipc::CollectIpcNamespaces(live, objects_, &ipc_pages_);
    if (ns.ok()) {
      for (auto& t : tasks_) {
        if (!t->zombie) t->ipc_ns_ref = ns->at(t->pid);
      }
    } else {
      st = ns.status();
    }
  }
  for (auto& t : tasks_) {
    if (!st.ok()) break;
    if (t->zombie) continue;
    Phase p("dump: collect");
    st = Collect(*t);
    if (st.ok()) st = Cancelled();
  }
  vmas_.reset();
  if (st.ok()) {
    // Pipes shared with processes outside the tree: refused, or external.
    // Sockets the same, and the fds in flight in their queues that this
    // process holds now are not held outside.
    std::set<pid_t> tree;
    for (const auto& t : tasks_) tree.insert(t->pid);
    tree.insert(getpid());
    std::vector<std::string> pipe_names, unix_names, tty_names;
    for (const std::string& name : options_.external) {
      (fs::IsUnixName(name) ? unix_names : fs::IsTtyName(name) ? tty_names : pipe_names).push_back(name);
    }
    st = fs::ResolveExternalPipes(objects_, tree, pipe_names, pipe_check_.checked,
                                  pipe_check_.external);
    if (st.ok()) st = ResolveTerminals(tty_names);
    if (st.ok()) {
      Phase p("dump: sockets");
      st = fs::ResolveUnixSockets(objects_, tree, unix_names, options_.leave_running ? objhash::kDumpLeaveRunning : 0u);
      if (st.ok()) st = fs::ResolveInetSockets(objects_, tree, options_.leave_running ? objhash::kDumpLeaveRunning : 0u);
    }
  }
  if (st.ok()) st = PlanSiblingFiles();
  if (st.ok()) {
    Phase p("dump: shared pages");
    st = PlanInheritedMemory();
  }
  if (st.ok()) {
    Phase p("dump: write");
    st = Write(out);
  }
  // Durable before destructive: the tree is killed only once the image is
  // complete, synced and in place. A tree left running need not wait for
  // the sync.
  if (st.ok()) st = Cancelled();
  if (st.ok() && options_.leave_running) {
    Phase p("dump: thaw");
    st = Thaw(false);
    // Its connections' network lock is lifted.
    absl::Status unlocked = fs::ReleaseInetSockets(objects_, /*killed=*/false);
    if (st.ok()) st = unlocked;
    if (st.ok()) {
      Phase c("dump: commit");
      st = out.Commit();
      if (!st.ok()) out.Abort();
    }
    stats_->total_ns = static_cast<uint64_t>(MonotonicNs()) - start;
    TraceSpan("dump: tree frozen", freeze_start, MonotonicNs());
    return st;
  }
  if (st.ok()) {
    Phase p("dump: commit");
    st = out.Commit();
  }
  if (!st.ok()) {
    // A failed dump leaves the tree as it was.
    out.Abort();
    bool frozen = false;
    for (const auto& t : tasks_) frozen |= !t->threads.empty();
    // Connections out of repair mode before the tree runs again.
    absl::Status unlocked = fs::ReleaseInetSockets(objects_, /*killed=*/false);
    absl::Status thaw = Thaw(false);
    if (thaw.ok()) thaw = unlocked;
    const std::string taken = fs::TakenBacklogs(objects_);
    std::string what = !thaw.ok() ? absl::StrCat(" (and resuming the tree failed: ", thaw.message(), ")")
                       : !taken.empty() ? absl::StrCat("; the tree was resumed, but ", taken)
                       : frozen   ? "; the tree was resumed as it was"
                                  : "";
    return WithMessage(st, absl::StrCat(st.message(), what));
  }
  {
    Phase p("dump: thaw");
    st = Thaw(!options_.leave_running);
    // The tree is gone: its connections' copies close in repair mode
    // (nothing is sent) and the network lock stays for the restore.
    fs::ReleaseInetSockets(objects_, /*killed=*/true).IgnoreError();  // nothing is lifted
  }
  stats_->total_ns = static_cast<uint64_t>(MonotonicNs()) - start;
  // From the first interrupt to the kill (or the resume).
  TraceSpan("dump: tree frozen", freeze_start, MonotonicNs());
  return st;
}

}  // namespace

absl::StatusOr<TreeReport> Checkpointer::Check(pid_t root) const { return Preflight(root, options_); }

absl::Status Checkpointer::Dump(pid_t root, int out_fd) {
  std::unique_ptr<ImageOutput> out = NewFdImageOutput(out_fd);
  return Dump(root, *out);
}

namespace {

// A write to a pipe or socket whose reader has gone raises SIGPIPE at the
// writing thread, and its default action ends the whole process: while a
// dump runs, SIGPIPE is blocked on the calling thread (the write fails with
// EPIPE instead), and one that became pending meanwhile is taken back
// before the caller's mask returns.
class SigpipeHeld {
 public:
  SigpipeHeld() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_mask_);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
  }
  ~SigpipeHeld() {
    if (!was_pending_) {
      const struct timespec zero = {0, 0};
      while (sigtimedwait(&pipe_, nullptr, &zero) == SIGPIPE) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
  }
  SigpipeHeld(const SigpipeHeld&) = delete;
  SigpipeHeld& operator=(const SigpipeHeld&) = delete;

 private:
  sigset_t pipe_, old_mask_;
  bool was_pending_ = false;
};

}  // namespace

absl::Status Checkpointer::Dump(pid_t root, ImageOutput& out) {
  SigpipeHeld sigpipe;
  stats_ = DumpStats{};
  Dumper dumper(options_, &stats_);
  return dumper.Run(root, out);
}

}  // namespace ckpt
