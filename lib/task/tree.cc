#include "lib/task/tree.h"

#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <csignal>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "lib/base/status.h"
#include "lib/task/jobstop.h"

namespace ckpt::task {

// ------------------------------------------------------------------ dump

absl::StatusOr<uint32_t> TreeDump::PidRef(objhash::ObjHash& objects, pid_t nr,
                                          const std::vector<pid_t>& levels) {
  ASSIGN_OR_RETURN(objhash::ObjHash::Found f,
                   objects.LookupAdd(objhash::ObjKind::kPid, objhash::Identity::OfPid(nr)));
  if (f.first) pid_levels_[f.objref] = levels;
  return f.objref;
}

absl::StatusOr<std::vector<pid_t>> TreeTask::ThreadNsPid(pid_t tid) const {
  ASSIGN_OR_RETURN(ProcStatus st, ReadProcStatus(tid));  // /proc/TID/status works for threads
  return st.nspid;
}

// Pid objects for every task and thread, and for the groups and sessions
// that belong to the dump (see DumpOptions::container for the rule).
absl::Status TreeDump::RegisterPids(const std::vector<TreeTask*>& tasks,
                                    objhash::ObjHash& objects, bool container) {
  auto find = [&](pid_t pid) -> TreeTask* {
    for (TreeTask* t : tasks) {
      if (t->pid == pid) return t;
    }
    return nullptr;
  };
  std::set<pid_t> in_tree;
  for (const TreeTask* t : tasks) in_tree.insert(t->pid);
  for (TreeTask* t : tasks) {
    std::vector<pid_t> levels = t->status.nspid;
    if (levels.empty() || levels.front() != t->pid) levels = {t->pid};
    ASSIGN_OR_RETURN(t->pid_ref, PidRef(objects, t->pid, levels));
    for (pid_t tid : t->Tids()) {
      if (tid == t->pid) continue;
      ASSIGN_OR_RETURN(std::vector<pid_t> nspid, t->ThreadNsPid(tid));
      ASSIGN_OR_RETURN(uint32_t ref,
                       PidRef(objects, tid, nspid.empty() ? std::vector<pid_t>{tid} : nspid));
      (void)ref;
    }
  }
  for (TreeTask* t : tasks) {
    if (t->parent != 0) {
      TreeTask* p = find(t->parent);
      t->parent_ref = p != nullptr ? p->pid_ref : 0;
      // A task in a deeper pid namespace than its parent is that
      // namespace's init; anything else cannot be recreated.
      size_t mine = std::max<size_t>(1, t->status.nspid.size());
      size_t theirs = std::max<size_t>(1, p->status.nspid.size());
      if (mine != theirs && !(mine == theirs + 1 && t->status.nspid.back() == 1)) {
        return absl::UnimplementedError(absl::StrCat(
            "task ", t->pid, " is pid ", t->status.nspid.back(),
            " of a pid namespace whose init is not its parent: not supported"));
      }
    } else if (t->status.nspid.size() > 1 && t->status.nspid.back() != 1) {
      return absl::UnimplementedError(absl::StrCat(
          "task ", t->pid, " is pid ", t->status.nspid.back(),
          " of a pid namespace whose init is outside the dump: dump the init"));
    }
  }
  // Sessions: saved when their leader is in the tree.
  for (TreeTask* t : tasks) {
    pid_t sid = t->stat.session;
    if (in_tree.count(sid)) {
      std::vector<pid_t> levels = t->status.nssid;
      if (levels.empty() || levels.front() != sid) levels = {sid};
      ASSIGN_OR_RETURN(t->session_ref, PidRef(objects, sid, levels));
    } else if (container) {
      return absl::FailedPreconditionError(absl::StrCat(
          "task ", t->pid, " is in session ", sid, ", whose leader is outside the tree "
          "(container mode requires every pid inside it)"));
    }
  }
  // Groups: saved when their leader is in the tree, or when the leader has
  // exited and the group's session is saved (the restore recreates such a
  // group with a helper task).
  for (TreeTask* t : tasks) {
    pid_t pgrp = t->stat.pgrp;
    bool leader_alive = in_tree.count(pgrp) || kill(pgrp, 0) == 0 || errno != ESRCH;
    bool saved = in_tree.count(pgrp) || (!leader_alive && t->session_ref != 0);
    if (saved) {
      std::vector<pid_t> levels = t->status.nspgid;
      if (levels.empty() || levels.front() != pgrp) levels = {pgrp};
      ASSIGN_OR_RETURN(t->pgrp_ref, PidRef(objects, pgrp, levels));
    } else if (container || t->session_ref != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "task ", t->pid, " is in process group ", pgrp,
          container ? ", whose leader is outside the tree (container mode requires "
                               "every pid inside it)"
                             : ", whose leader lives outside the tree but in its session"));
    }
  }
  return absl::OkStatus();
}

absl::Status TreeDump::Write(image::Writer& w, const std::vector<TreeTask*>& tasks,
                             bool container) const {
  image::ckpt_tree tree{};
  tree.nr_tasks = static_cast<uint32_t>(tasks.size());
  tree.nr_pids = static_cast<uint32_t>(pid_levels_.size());
  if (container) tree.flags |= image::kTreeContainer;
  RETURN_IF_ERROR(w.AppendStruct(image::CKPT_HDR_TREE, tree));
  for (const auto& [objref, levels] : pid_levels_) {
    image::ckpt_pid pid{};
    pid.objref = objref;
    pid.nr_levels = static_cast<uint32_t>(std::min<size_t>(levels.size(), image::kMaxPidLevels));
    for (uint32_t i = 0; i < pid.nr_levels; ++i) pid.nr[i] = levels[i];
    RETURN_IF_ERROR(w.AppendStruct(image::CKPT_HDR_PID, pid));
  }
  for (const TreeTask* t : tasks) {
    image::ckpt_task_entry e{};
    e.pid_ref = t->pid_ref;
    e.parent_ref = t->parent_ref;
    e.pgrp_ref = t->pgrp_ref;
    e.session_ref = t->session_ref;
    e.state = t->zombie ? image::kTaskZombie : image::kTaskAlive;
    e.exit_code = t->zombie ? t->exit_code : 0;
    e.nr_threads = static_cast<uint32_t>(t->Tids().size());
    e.free_area = t->zombie ? 0 : t->FreeArea();
    e.ipc_ns_ref = t->zombie ? 0 : t->ipc_ns_ref;
    if (t->shares_parent_files) e.flags |= image::kTaskSharesParentFiles;
    if (t->inherits_memory && !t->zombie) e.flags |= image::kTaskInheritsMemory;
    if (t->files_head && !t->zombie) e.flags |= image::kTaskSiblingFilesHead;
    if (t->files_sibling != 0 && !t->zombie) e.flags |= image::kTaskSharesSiblingFiles;
    if (t->files_grandparent && !t->zombie) e.flags |= image::kTaskSharesGrandparentFiles;
    if (!t->zombie && t->stop_signo != 0) {
      e.stop_signo = static_cast<uint32_t>(t->stop_signo);
      if (t->stop_reported) e.flags |= image::kTaskStopReported;
    }
    RETURN_IF_ERROR(w.AppendStruct(image::CKPT_HDR_TASK_ENTRY, e));
  }
  return absl::OkStatus();
}

// --------------------------------------------------------------- restore

TreeNode& TreeRestore::Add() {
  TreeNode& t = make_();
  nodes_.push_back(&t);
  return t;
}

pid_t TreeRestore::PidIn(uint32_t ref, const TreeNode& t) const {
  const std::vector<pid_t>& levels = pids_.at(ref);
  size_t depth = t.pids.size() - 1;
  return depth < levels.size() ? levels[depth] : levels.back();
}

absl::Status TreeRestore::Read(image::Reader& r, bool new_pidns, uint64_t free_area_limit) {
  ASSIGN_OR_RETURN(image::ckpt_tree tree, r.Expect<image::ckpt_tree>(image::CKPT_HDR_TREE));
  if (tree.nr_tasks == 0) return r.FieldError("nr_tasks", "the image has no task");
  if (tree.nr_tasks > (1u << 20) || tree.nr_pids > (1u << 22)) {
    return r.FieldError("nr_tasks", tree.nr_tasks, " tasks and ", tree.nr_pids,
                        " pids are more than a tree can hold");
  }
  if (tree.flags & ~static_cast<uint32_t>(image::kTreeContainer)) {
    return r.FieldError("flags", tree.flags, " has unknown bits");
  }
  std::map<pid_t, uint32_t> outer_pids;  // number in the outermost namespace -> objref
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
      if (nr <= 0 || nr > (1 << 22)) return r.FieldError("nr", nr, " is not a PID");
    }
    // Every pid is in the outermost namespace: its number there is its own.
    auto [other, fresh] = outer_pids.emplace(nrs.front(), pid.objref);
    if (!fresh) {
      return r.FieldError("nr", nrs.front(), " is the number of two pids (objrefs ", other->second,
                          " and ", pid.objref, ")");
    }
    pids_[pid.objref] = nrs;
  }
  for (uint32_t i = 0; i < tree.nr_tasks; ++i) {
    TreeNode* t = &Add();
    ASSIGN_OR_RETURN(t->entry, r.Expect<image::ckpt_task_entry>(image::CKPT_HDR_TASK_ENTRY));
    const image::ckpt_task_entry& e = t->entry;
    auto it = pids_.find(e.pid_ref);
    if (it == pids_.end()) return r.FieldError("pid_ref", e.pid_ref, " names no PID record");
    if (by_ref_.count(e.pid_ref)) return r.FieldError("pid_ref", e.pid_ref, " is repeated");
    t->pids = it->second;
    if (e.parent_ref == 0) {
      if (i != 0) return r.FieldError("parent_ref", "only the first task is the root");
    } else {
      auto p = by_ref_.find(e.parent_ref);
      if (p == by_ref_.end()) {
        return r.FieldError("parent_ref", e.parent_ref, " names no earlier task");
      }
      t->parent = p->second;
      const TreeNode& parent = *nodes_[p->second];
      if (parent.zombie) return r.FieldError("parent_ref", "a zombie has no children");
      size_t mine = t->pids.size(), theirs = parent.pids.size();
      if (mine != theirs && !(mine == theirs + 1 && t->pids.back() == 1)) {
        return r.FieldError("pid_ref", "task ", t->pids.front(),
                            " is neither in its parent's pid namespace nor the init of a new one");
      }
    }
    for (uint32_t ref : {e.pgrp_ref, e.session_ref}) {
      if (ref != 0 && !pids_.count(ref)) return r.FieldError("pgrp_ref", ref, " names no PID");
    }
    if (e.stop_signo != 0) {
      if (!IsStopSignal(static_cast<int>(e.stop_signo))) {
        return r.FieldError("stop_signo", e.stop_signo, " is not a stop signal");
      }
      if (e.state != image::kTaskAlive) {
        return r.FieldError("stop_signo", "only a live task is stopped");
      }
      t->stop_signo = static_cast<int>(e.stop_signo);
    }
    if ((e.flags & image::kTaskStopReported) && (e.stop_signo == 0 || e.parent_ref == 0)) {
      return r.FieldError("flags", "a stop is reported, but the task is not stopped or has no parent in the image");
    }
    t->stop_reported = (e.flags & image::kTaskStopReported) != 0;
    if (e.state != image::kTaskZombie && e.state != image::kTaskAlive) {
      return r.FieldError("state", e.state, " is not a task state");
    }
    if ((e.ipc_ns_ref == 0) != (e.state == image::kTaskZombie)) {
      return r.FieldError("ipc_ns_ref", e.ipc_ns_ref,
                          e.ipc_ns_ref == 0 ? ": a live task is in an IPC namespace" : ": a zombie is in none");
    }
    if (e.flags & ~static_cast<uint32_t>(image::kTaskSharesParentFiles | image::kTaskStopReported |
                                         image::kTaskInheritsMemory | image::kTaskSharesSiblingFiles |
                                         image::kTaskSiblingFilesHead |
                                         image::kTaskSharesGrandparentFiles)) {
      return r.FieldError("flags", e.flags, " has unknown bits");
    }
    if (e.flags & image::kTaskSharesGrandparentFiles) {
      // The parent carries its own parent's table to it and gives it up.
      TreeNode* p = t->parent >= 0 ? nodes_[t->parent] : nullptr;
      TreeNode* g = p != nullptr && p->parent >= 0 ? nodes_[p->parent] : nullptr;
      const uint32_t others = image::kTaskSharesParentFiles | image::kTaskSharesSiblingFiles |
                              image::kTaskSiblingFilesHead | image::kTaskInheritsMemory;
      if (g == nullptr || p->zombie || g->zombie || e.state != image::kTaskAlive ||
          (e.flags & others) || p->shares_files || p->files_head || p->files_of >= 0 ||
          p->inherits_memory) {
        return r.FieldError("flags", "a task sharing its grandparent's fd table is live, has a "
                            "live parent and grandparent, and its parent has a table of its own");
      }
      for (const TreeNode* n : nodes_) {
        if (n->parent == t->parent && n->files_head) {
          return r.FieldError("flags", "its parent carries its grandparent's fd table and gives "
                              "another one up to siblings");
        }
      }
      p->carries_files = true;
      p->carry_last = static_cast<int>(nodes_.size()) - 1;
      t->files_of = p->parent;
      g->closes_objects = false;  // this task (or a later sharer) closes the restorer's fds
    }
    if (e.flags & (image::kTaskSharesSiblingFiles | image::kTaskSiblingFilesHead)) {
      // A table the parent gave up: the parent keeps no table of its own
      // parent's (it unshares), and the task is made plainly.
      const uint32_t table_flags = image::kTaskSharesParentFiles | image::kTaskSharesSiblingFiles |
                                   image::kTaskSiblingFilesHead;
      if (t->parent < 0 || nodes_[t->parent]->zombie || e.state != image::kTaskAlive ||
          std::popcount(e.flags & table_flags) != 1 || (e.flags & image::kTaskInheritsMemory) ||
          nodes_[t->parent]->shares_files || nodes_[t->parent]->files_head ||
          nodes_[t->parent]->files_of >= 0 || nodes_[t->parent]->carries_files) {
        return r.FieldError("flags", "an fd table shared with siblings is for a live task of a "
                            "live parent that has a table of its own, made plainly");
      }
      if (e.flags & image::kTaskSiblingFilesHead) {
        t->files_head = true;
        t->files_last = static_cast<int>(nodes_.size()) - 1;
        t->closes_objects = true;
      } else {
        int head = -1;
        for (int j = static_cast<int>(nodes_.size()) - 2; j >= 0 && head < 0; --j) {
          if (nodes_[j]->parent == t->parent && nodes_[j]->files_head) head = j;
        }
        if (head < 0) {
          return r.FieldError("flags", "it shares a sibling's fd table, but no earlier sibling "
                              "is the first of one");
        }
        t->files_of = head;
        nodes_[nodes_[head]->files_last]->closes_objects = false;
        nodes_[head]->files_last = static_cast<int>(nodes_.size()) - 1;
      }
    }
    if (e.flags & image::kTaskInheritsMemory) {
      // Forked by its parent after the parent's memory: in its parent's
      // namespaces, group and session, or leading its own.
      const TreeNode* parent = t->parent >= 0 ? nodes_[t->parent] : nullptr;
      const char* why = nullptr;
      if (parent == nullptr || parent->zombie || e.state != image::kTaskAlive) {
        why = "only a live task with a live parent inherits its memory";
      } else if (e.flags & image::kTaskSharesParentFiles) {
        why = "a task that shares its parent's fd table does not inherit its memory";
      } else if (t->pids.size() != parent->pids.size()) {
        why = "a task that inherits its parent's memory is in its parent's pid namespace";
      } else if (e.free_area != parent->entry.free_area) {
        why = "a task that inherits its parent's memory has its parent's free area";
      } else if (e.ipc_ns_ref != parent->entry.ipc_ns_ref) {
        why = "a task that inherits its parent's memory is in its parent's IPC namespace";
      } else if (e.session_ref != parent->entry.session_ref &&
                 !(e.session_ref == e.pid_ref && e.pgrp_ref == e.pid_ref)) {
        why = "a task that inherits its parent's memory is in its parent's session or leads its own";
      } else if (e.pgrp_ref != parent->entry.pgrp_ref && e.pgrp_ref != e.pid_ref) {
        why = "a task that inherits its parent's memory is in its parent's group or leads its own";
      }
      if (why != nullptr) return r.FieldError("flags", why);
      t->inherits_memory = true;
    } else if (t->parent >= 0 && nodes_[t->parent]->inherits_memory) {
      return r.FieldError("flags", "the parent inherits its memory, so its children must too");
    }
    if (e.flags & image::kTaskSharesParentFiles) {
      if (t->parent < 0 || nodes_[t->parent]->zombie || e.state != image::kTaskAlive) {
        return r.FieldError("flags", "only a live task with a live parent can share its fd table");
      }
      t->shares_files = true;
      nodes_[t->parent]->closes_objects = false;  // this task (or a later sharer) will
    }
    if (e.state == image::kTaskZombie) {
      t->zombie = true;
      if (e.nr_threads != 0 && e.nr_threads != 1) {
        return r.FieldError("nr_threads", "a zombie has no threads");
      }
      // A wait status: an exit code (0-255) << 8, or a signal (1-64) with
      // perhaps the core-dump bit.
      const int code = e.exit_code;
      const bool exited = (code & 0x7f) == 0 && (code & ~0xff00) == 0;
      const bool signaled = (code & 0x7f) >= 1 && (code & 0x7f) <= 64 && (code & ~0xff) == 0 &&
                            (code & 0x7f) != 0x7f;
      if (!exited && !signaled) {
        return r.FieldError("exit_code", code, " is not a wait status");
      }
      if (e.free_area != 0) return r.FieldError("free_area", "a zombie has no memory");
    } else if (e.state == image::kTaskAlive) {
      if (e.nr_threads == 0 || e.nr_threads > 65536) {
        return r.FieldError("nr_threads", e.nr_threads, " is out of range");
      }
      if (e.free_area % 4096 || e.free_area == 0 ||
          e.free_area > free_area_limit) {
        return r.FieldError("free_area", absl::Hex(e.free_area), " is not a usable address");
      }
    } else {
      return r.FieldError("state", e.state, " is not a task state");
    }
    by_ref_[e.pid_ref] = static_cast<int>(nodes_.size()) - 1;
  }
  if (nodes_.front()->zombie) return absl::InvalidArgumentError("the image's root is a zombie");
  size_t depth = nodes_.front()->pids.size();
  if (depth > 1 && nodes_.front()->pids.back() != 1) {
    return absl::InvalidArgumentError("the image's root is in a pid namespace without its init");
  }
  if (new_pidns) {
    // The tree goes into a fresh pid namespace that plays the part of its
    // root's: the dumper's level of every PID is dropped, and the kernel
    // picks the tasks' PIDs in this process's namespace.
    const TreeNode& root = *nodes_.front();
    if (root.pids.size() != 2 || root.pids.back() != 1) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--new-pidns restores a tree whose root was pid 1 of its own pid namespace; task ",
          root.pids.front(), " was pid ", root.pids.back(), " at level ", root.pids.size() - 1));
    }
    for (auto& [ref, levels] : pids_) {
      if (levels.size() < 2) {
        return absl::InvalidArgumentError(absl::StrCat(
            "PID ", levels.front(), " is outside the root's pid namespace"));
      }
      levels.erase(levels.begin());
    }
    for (TreeNode* t : nodes_) t->pids.erase(t->pids.begin());
  }
  return absl::OkStatus();
}

// Sessions: see the header.
absl::Status TreeRestore::PlanSessions() {
  std::vector<uint32_t> before(nodes_.size(), 0), after(nodes_.size(), 0);
  for (size_t i = 0; i < nodes_.size(); ++i) {
    TreeNode& t = *nodes_[i];
    const image::ckpt_task_entry& e = t.entry;
    bool set_sid = e.session_ref == e.pid_ref;  // a zombie too: it leads its session again
    uint32_t inherited = 0;  // 0: the restorer's session
    if (t.parent >= 0) {
      const TreeNode& p = *nodes_[t.parent];
      bool parent_sets_sid = p.entry.session_ref == p.entry.pid_ref;
      // Forked before the parent's setsid when it belongs elsewhere.
      bool early = parent_sets_sid && e.session_ref != p.entry.pid_ref && !set_sid;
      t.early = early;
      if (early && (t.files_head || t.files_of >= 0)) {
        return absl::UnimplementedError(absl::StrCat(
            "task ", t.pids.front(), ": it shares an fd table with its siblings and stays in the "
            "session its parent left: not supported"));
      }
      inherited = early ? before[t.parent] : after[t.parent];
    }
    before[i] = inherited;
    after[i] = set_sid ? e.pid_ref : inherited;
    if (!t.zombie && after[i] != e.session_ref) {
      return absl::UnimplementedError(absl::StrCat(
          "task ", t.pids.front(), ": its session (",
          e.session_ref ? pids_[e.session_ref].front() : 0,
          ") cannot be recreated from the tree (its leader is not an ancestor)"));
    }
  }
  // A child sharing its parent's table that is made before the parent's
  // setsid would be made before the parent gives a sibling table up.
  for (const TreeNode* t : nodes_) {
    if (!t->shares_files || !t->early) continue;
    for (const TreeNode* s : nodes_) {
      if (s->parent == t->parent && s->files_head) {
        return absl::InvalidArgumentError(absl::StrCat(
            "image record TASK_ENTRY of task ", t->pids.front(), ": field 'flags': it shares its "
            "parent's fd table from before the parent's setsid, and siblings share one the parent "
            "gave up"));
      }
    }
  }
  // A task forked late (inherits_memory) makes its group or session then:
  // only its own descendants, forked after it, can be in them.
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const TreeNode& t = *nodes_[i];
    for (uint32_t ref : {t.entry.pgrp_ref, t.entry.session_ref}) {
      auto leader = by_ref_.find(ref);
      if (ref == 0 || leader == by_ref_.end() || !nodes_[leader->second]->inherits_memory) continue;
      int a = static_cast<int>(i);
      while (a >= 0 && a != leader->second) a = nodes_[a]->parent;
      if (a < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "image record TASK_ENTRY of task ", t.pids.front(), ": its group or session is led by ",
            "task ", nodes_[leader->second]->pids.front(), ", which inherits its parent's memory, "
            "but it is not that task's descendant"));
      }
    }
  }
  // Helpers for groups whose leader is not a task of the image.
  std::map<uint32_t, int> helpers;
  size_t nr_tasks = nodes_.size();
  for (size_t i = 0; i < nr_tasks; ++i) {
    TreeNode& t = *nodes_[i];
    uint32_t g = t.entry.pgrp_ref;
    // A zombie's group too: its parent makes the helper, and the zombie
    // joins the group before it exits.
    if (g == 0 || by_ref_.count(g) || helpers.count(g) || (t.zombie && t.parent < 0)) continue;
    const int maker = t.zombie ? t.parent : static_cast<int>(i);
    TreeNode* h = &Add();
    h->helper = true;
    h->group_ref = g;
    h->pids = pids_[g];
    if (h->pids.size() != t.pids.size()) {
      return absl::InvalidArgumentError(absl::StrCat("process group ", h->pids.front(),
                                                     " is not in its members' pid namespace"));
    }
    if (nodes_[maker]->inherits_memory) {
      return absl::InvalidArgumentError(absl::StrCat(
          "image record TASK_ENTRY of task ", t.pids.front(), ": field 'flags': a task that "
          "inherits its parent's memory is the first of a group whose leader is not in the image"));
    }
    h->parent = maker;
    h->entry.free_area = nodes_[maker]->entry.free_area;
    h->entry.session_ref = t.entry.session_ref;
    helpers[g] = static_cast<int>(nodes_.size()) - 1;
  }
  return absl::OkStatus();
}

bool TreeRestore::ZombieCanJoin(uint32_t group_ref) const {
  for (const TreeNode* t : nodes_) {
    if (t->helper && t->group_ref == group_ref) return true;
    // A live leader makes its group; a zombie leader made it before it
    // exited (and stays in it).
    if (!t->helper && t->entry.pid_ref == group_ref && t->entry.pgrp_ref == group_ref) return true;
  }
  return false;
}

std::vector<SpawnNode> TreeRestore::SpawnPlan(bool new_pidns) {
  std::vector<SpawnNode> plan;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    TreeNode* t = nodes_[i];
    SpawnNode n;
    n.pids = t->pids;
    n.parent = t->parent >= 0 ? nodes_[t->parent]->node : -1;
    n.early = t->early;
    n.share_files = t->shares_files || t->files_head || t->files_of >= 0 || t->carries_files;
    n.files_group = t->files_head || t->files_of >= 0;
    const TreeNode* head = t->files_head ? t : t->files_of >= 0 ? nodes_[t->files_of] : nullptr;
    n.unshare_after = (head != nullptr && head->files_last == static_cast<int>(i)) ||
                      (t->parent >= 0 && nodes_[t->parent]->carry_last == static_cast<int>(i));
    n.set_sid = !t->helper && t->entry.session_ref == t->entry.pid_ref;
    size_t parent_depth = t->parent >= 0 ? nodes_[t->parent]->pids.size() : (new_pidns ? 0 : 1);
    n.new_pidns = t->pids.size() > parent_depth;
    n.zombie_status = t->zombie ? t->entry.exit_code : -1;
    // A zombie that led its group makes it before it exits: the group then
    // lives on with it, as it did.
    n.set_pgid = t->zombie && t->entry.pgrp_ref == t->entry.pid_ref && !n.set_sid;
    // A zombie of a group that another task of the image (or a helper)
    // makes: it joins the group once the groups exist, then exits.
    const uint32_t g = t->entry.pgrp_ref;
    if (t->zombie && g != 0 && g != t->entry.pid_ref && ZombieCanJoin(g)) {
      n.join_pgid = PidIn(g, *t);
    }
    t->join_pgid = n.join_pgid;
    n.trampoline = t->entry.free_area;
    n.deferred = t->inherits_memory;
    t->node = static_cast<int>(plan.size());
    plan.push_back(std::move(n));
  }
  return plan;
}

absl::Status TreeRestore::SetUpGroups(bool new_pidns, const RunIn& run,
                                      const std::function<void(TreeNode& helper)>& end_helper,
                                      const std::function<absl::Status()>& release_zombies) {
  const pid_t own_group = getpgrp();
  for (TreeNode* t : nodes_) {
    // A task forked late makes its own group when it is made.
    if (t->zombie || t->inherits_memory) continue;
    bool makes_group = t->helper || (t->entry.pgrp_ref == t->entry.pid_ref &&
                                     t->entry.session_ref != t->entry.pid_ref);
    if (makes_group) {
      absl::Status st = run(*t, SYS_setpgid, {0, 0});
      if (!st.ok()) return Annotate(st, absl::StrCat("task ", t->pid, ": making its process group"));
    }
  }
  for (TreeNode* t : nodes_) {
    if (t->zombie || t->helper || t->inherits_memory) continue;
    uint32_t g = t->entry.pgrp_ref;
    if (g == t->entry.pid_ref) continue;
    if (g == 0) {
      // A group outside the dump: the task stays in (or joins) the
      // restorer's, which it inherited unless its parent made another.
      if (new_pidns || t->entry.session_ref != 0) continue;
      absl::StatusOr<task::ProcStat> stat = ReadProcStat(t->pid);
      if (stat.ok() && stat->pgrp == own_group) continue;
    }
    pid_t target = g != 0 ? PidIn(g, *t) : own_group;
    absl::Status st = run(*t, SYS_setpgid, {0, static_cast<uint64_t>(target)});
    if (!st.ok()) {
      return Annotate(st, absl::StrCat("task ", t->pid, ": joining process group ", target));
    }
  }
  // Every group exists: the zombies that belong to one join it and exit.
  if (release_zombies) RETURN_IF_ERROR(release_zombies());
  for (TreeNode* h : nodes_) {
    if (!h->helper) continue;
    end_helper(*h);
    TreeNode& parent = *nodes_[h->parent];
    absl::Status st = run(parent, SYS_wait4, {static_cast<uint64_t>(h->pids.back()), 0,
                                                  static_cast<uint64_t>(__WALL), 0});
    if (!st.ok()) return Annotate(st, absl::StrCat("task ", parent.pid, ": reaping its helper"));
    h->pid = 0;
    h->zombie = true;  // gone: nothing more to do with it
  }
  return absl::OkStatus();
}

}  // namespace ckpt::task
