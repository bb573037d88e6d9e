// The tree: pid objects (every number of every pid at every pid-namespace
// level), task entries, sessions and process groups. Dump and restore side
// by side.
//
// Dump: the driver's tasks derive from TreeTask; once they are frozen,
// TreeDump::RegisterPids gives every task, thread, group and session that
// belongs to the dump its pid object, and Write writes the TREE, PID and
// TASK_ENTRY records.
//
//   TreeDump tree;
//   RETURN_IF_ERROR(tree.RegisterPids(tasks, objects, container));
//   ...
//   RETURN_IF_ERROR(tree.Write(writer, tasks, container));
//
// Restore: the driver's tasks derive from TreeNode; TreeRestore::Read
// checks every field and count of the tree, PlanSessions decides who forks
// whom before which setsid (and adds helper tasks for groups whose leader
// had exited), SpawnPlan says how SpawnTree creates them, and SetUpGroups
// makes the groups once they exist.

#ifndef LIBCKPT_LIB_TASK_TREE_H_
#define LIBCKPT_LIB_TASK_TREE_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <vector>

#include "absl/status/status.h"
#include "lib/image/format.h"
#include "lib/image/reader.h"
#include "lib/image/writer.h"
#include "lib/objhash/objhash.h"
#include "lib/task/proc.h"
#include "lib/task/spawn.h"

namespace ckpt::task {

// ------------------------------------------------------------------ dump

struct TreeTask {
  virtual ~TreeTask() = default;
  // Its threads (the leader's TID included) and where its restore maps
  // the trampoline; asked for when they are known.
  virtual std::vector<pid_t> Tids() const = 0;
  virtual uint64_t FreeArea() const = 0;
  // A thread's pid in each pid namespace, outermost first (/proc status
  // NSpid); a task that read it already answers from what it read.
  virtual absl::StatusOr<std::vector<pid_t>> ThreadNsPid(pid_t tid) const;

  pid_t pid = 0;
  pid_t parent = 0;  // the parent task's pid; 0 for the root
  bool zombie = false;
  int exit_code = 0;
  bool shares_parent_files = false;  // CLONE_FILES with its parent
  // Shares the fd table of an earlier sibling, which its parent gave up
  // (image::kTaskSharesSiblingFiles): that sibling's pid; the sibling is
  // then files_head (image::kTaskSiblingFilesHead).
  pid_t files_sibling = 0;
  bool files_head = false;
  // Shares its grandparent's fd table, which its parent (carries_files)
  // had and gave up (image::kTaskSharesGrandparentFiles).
  bool files_grandparent = false;
  bool carries_files = false;
  // Its fd table is another task's (saved with that task).
  bool uses_others_files() const {
    return shares_parent_files || files_sibling != 0 || files_grandparent;
  }
  // Forked from its parent at restore, keeping the pages they share
  // (image::kTaskInheritsMemory).
  bool inherits_memory = false;
  // Stopped by job control: the signal that stopped it, and whether its
  // parent has already waited for the stop.
  int stop_signo = 0;
  bool stop_reported = false;
  ProcStatus status;
  ProcStat stat;
  // Filled by TreeDump::RegisterPids.
  uint32_t pid_ref = 0, parent_ref = 0, pgrp_ref = 0, session_ref = 0;
  uint32_t ipc_ns_ref = 0;  // its IPC namespace object (a live task)
};

class TreeDump {
 public:
  // Pid objects for every task and thread of `tasks` (parents first), and
  // for the groups and sessions that belong to the dump: a session whose
  // leader is in the tree; a group whose leader is, or whose leader has
  // exited inside a saved session. With `container`, every session and
  // group must belong. Refuses a pid namespace whose init is not dumped or
  // not its tasks' parent.
  absl::Status RegisterPids(const std::vector<TreeTask*>& tasks, objhash::ObjHash& objects,
                            bool container);
  absl::Status Write(image::Writer& w, const std::vector<TreeTask*>& tasks, bool container) const;

 private:
  absl::StatusOr<uint32_t> PidRef(objhash::ObjHash& objects, pid_t nr,
                                  const std::vector<pid_t>& levels);
  std::map<uint32_t, std::vector<pid_t>> pid_levels_;  // pid objref -> numbers
};

// --------------------------------------------------------------- restore

// A task being restored: one TASK_ENTRY, or a helper that recreates the
// process group of a leader that had exited.
struct TreeNode {
  virtual ~TreeNode() = default;
  image::ckpt_task_entry entry{};
  std::vector<pid_t> pids;  // at every pid-namespace level, outermost first
  int parent = -1;          // index in the tree's nodes, -1 for the root
  bool zombie = false;
  bool helper = false;
  uint32_t group_ref = 0;   // for a helper: the group it makes
  bool early = false;       // forked before its parent becomes a session leader
  bool shares_files = false;    // its fd table is its parent's
  bool closes_objects = true;   // the last task of its fd table closes the restorer's fds
  // A table its parent made its children share and then gave up: the
  // first of them restores it (files_head), the others use it (files_of:
  // the first's index); all are made with CLONE_FILES, and the parent
  // unshares after the last (files_last: its index, in the first).
  bool files_head = false;
  int files_of = -1;
  int files_last = -1;
  // A parent that is made with CLONE_FILES (its parent's table) only to
  // make children that keep it, and then unshares (after carry_last).
  bool carries_files = false;
  int carry_last = -1;
  // Not spawned with the tree: forked from its parent (an injected clone3)
  // once the parent's memory is restored (image::kTaskInheritsMemory); it
  // makes its own group or session then.
  bool inherits_memory = false;
  pid_t join_pgid = 0;          // a zombie that joins this group once it exists (SpawnPlan)
  int stop_signo = 0;           // stopped by job control (entry.stop_signo)
  bool stop_reported = false;   // ... and its parent has waited for the stop
  int node = -1;            // index in the spawn plan
  pid_t pid = 0;            // as this process sees it, once created
};

class TreeRestore {
 public:
  // Makes a node (the caller keeps it, in the order made) and returns it.
  using MakeNode = std::function<TreeNode&()>;
  explicit TreeRestore(MakeNode make) : make_(std::move(make)) {}

  // Reads TREE, PID* and TASK_ENTRY*, checking every count, reference and
  // state; a live task's free area must lie below `free_area_limit`. With
  // `new_pidns`, the dumper's level of every PID is dropped (the tree goes
  // into a fresh pid namespace that plays its root's).
  absl::Status Read(image::Reader& r, bool new_pidns, uint64_t free_area_limit);
  // Sessions can only be entered by forking inside them: a child whose
  // session is not its parent's new one is forked before the parent calls
  // setsid. Groups whose leader had exited get a helper node that makes
  // them. Refuses what cannot be recreated.
  absl::Status PlanSessions();
  // How SpawnTree creates the nodes (each node's `node` is set).
  std::vector<SpawnNode> SpawnPlan(bool new_pidns);
  // Once created: leaders (and helpers) make their groups, members join,
  // the zombies waiting to join a group are let go (`release_zombies`),
  // then helpers end (`end_helper`) and their parents reap them. `run`
  // runs one syscall inside a node.
  using RunIn = std::function<absl::Status(TreeNode& t, long nr, std::initializer_list<uint64_t> args)>;
  absl::Status SetUpGroups(bool new_pidns, const RunIn& run,
                           const std::function<void(TreeNode& helper)>& end_helper,
                           const std::function<absl::Status()>& release_zombies = nullptr);

  // The number of pid object `ref` in the pid namespace of `t`.
  pid_t PidIn(uint32_t ref, const TreeNode& t) const;
  // pid objref -> its numbers, outermost first.
  const std::map<uint32_t, std::vector<pid_t>>& pids() const { return pids_; }
  const std::vector<TreeNode*>& nodes() const { return nodes_; }

 private:
  TreeNode& Add();
  // Whether the group `group_ref` will exist when zombies are let go.
  bool ZombieCanJoin(uint32_t group_ref) const;
  MakeNode make_;
  std::vector<TreeNode*> nodes_;
  std::map<uint32_t, std::vector<pid_t>> pids_;
  std::map<uint32_t, int> by_ref_;  // pid_ref -> index in nodes_
};

}  // namespace ckpt::task

#endif  // LIBCKPT_LIB_TASK_TREE_H_
