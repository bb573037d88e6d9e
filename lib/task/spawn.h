// Creating the tasks of a restore: the whole tree, with its original PIDs
// (clone3 set_tid at every pid-namespace level), sessions made by the
// right task at the right moment, and zombies that exit at once with their
// recorded status. Every task is a copy of the restorer, prepares itself,
// reports ready and waits to be seized; its memory is replaced later, from
// outside.
//
//   std::vector<SpawnNode> plan = ...;   // parents before children
//   ASSIGN_OR_RETURN(std::vector<pid_t> pids, SpawnTree(plan));

#ifndef LIBCKPT_LIB_TASK_SPAWN_H_
#define LIBCKPT_LIB_TASK_SPAWN_H_

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/base/fd.h"

namespace ckpt::task {

// How long a PID (or TID) that no task holds any more may still be taken:
// the kernel tells a parent its child has exited (release_task notifies)
// a moment before it frees the child's and its threads' PIDs, so a restore
// that follows the reap at once can meet EEXIST for a PID nobody holds.
inline constexpr int64_t kPidReleaseWaitNs = 250 * 1000000LL;

struct SpawnNode {
  // The PID at each pid-namespace level, outermost (the restorer's) first.
  std::vector<pid_t> pids;
  int parent = -1;          // index of the parent node; -1: a child of the caller
  bool new_pidns = false;   // the task is the init of a new pid namespace
  bool share_files = false; // shares its parent's fd table (CLONE_FILES)
  // One of siblings that share a table their parent then gives up: the
  // parent makes these first, in order, and unshares its fd table after
  // the one with unshare_after.
  bool files_group = false;
  bool unshare_after = false;
  bool set_sid = false;     // becomes a session (and group) leader (a zombie too, before it exits)
  // Forked before the parent becomes a session leader, so that it stays
  // in the parent's previous session.
  bool early = false;
  int zombie_status = -1;   // >= 0: exits at once with this wait status
  bool set_pgid = false;    // a zombie: becomes a group leader before it exits
  // A zombie of another task's group: waits at the gate (SpawnedTree::
  // ReleaseZombies) until the groups exist, joins this one (its number in
  // its namespace), then exits.
  pid_t join_pgid = 0;
  uint64_t trampoline = 0;  // where a live task maps the trampoline
  // Not made by SpawnTree (the caller forks it later, and its children);
  // its pid and pidfd stay unset.
  bool deferred = false;
  // >= 0: an fd of the caller's on an IPC namespace that the task enters
  // (setns) before it makes its children.
  int ipc_ns_fd = -1;
  // >= 0: a session leader's fd of the caller's on its controlling
  // terminal, made so (TIOCSCTTY) right after its setsid, before it makes
  // its children (who inherit it).
  int ctty_fd = -1;
};

// What SpawnTree made: each node's PID as the caller sees it, and a pidfd
// that is known to refer to that very task (it was made by this process,
// or found as the child of a node known to be ours). Signals go through
// the pidfds only: a PID number can belong to another process by the time
// it is used.
struct SpawnedTree {
  std::vector<pid_t> pids;       // 0 for a node not (known to be) made
  std::vector<UniqueFd> pidfds;  // -1 likewise
  UniqueFd zombie_gate;          // a byte per waiting zombie lets one go
};

// Creates every node, waits until the live ones are ready, seizes them
// (PTRACE_O_EXITKILL: they die if the restorer does) and stops them.
// On failure, kills what it created, and only that. A PID that is taken is
// an AlreadyExists error naming it.
//
// With `caller_level` false, the nodes' `pids` start one level below the
// caller's pid namespace (the root is the init of a new one): the kernel
// picks their PIDs in the caller's namespace, and SpawnTree finds them.
absl::StatusOr<SpawnedTree> SpawnTree(const std::vector<SpawnNode>& plan,
                                      bool caller_level = true);

// The TID, as this process sees it, of the thread of `pid` whose TID is
// `inner` in its own pid namespace.
absl::StatusOr<pid_t> OuterTid(pid_t pid, pid_t inner);
// The innermost PID (NSpid's last number) of the task this process sees
// as `pid`.
absl::StatusOr<pid_t> InnerPid(pid_t pid);

// SIGKILL through the pidfds of `tree`, then reaps every node and every
// thread of `tids` (threads this process traces, which it must reap
// itself), children before parents; waits until none is left.
void KillTree(const SpawnedTree& tree, const std::vector<pid_t>& tids = {});

// SIGKILL to one task through its pidfd.
void KillByPidfd(int pidfd);

}  // namespace ckpt::task

#endif  // LIBCKPT_LIB_TASK_SPAWN_H_
