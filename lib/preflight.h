// The dump's pre-flight: everything a dump of a tree would refuse, found
// from /proc (and kcmp) while the tree runs, before anything is frozen, so
// that one try tells the user every problem at once: each unsupported fd
// and mapping, each task state the dump cannot take, each pipe shared with
// a process outside the tree. `ckpt check --pid` prints it.
//
//   ASSIGN_OR_RETURN(TreeReport report, Preflight(root, options));
//   for (const absl::Status& p : report.problems) ...

#ifndef LIBCKPT_LIB_PREFLIGHT_H_
#define LIBCKPT_LIB_PREFLIGHT_H_

#include <sys/types.h>

#include <functional>

#include <set>
#include <vector>

#include "absl/status/statusor.h"
#include "ckpt/ckpt.hpp"
#include "lib/objhash/objhash.h"
#include "lib/task/proc.h"

namespace ckpt {

// Kernel objects the task `pid` shares with another task of the tree that
// this version cannot recreate shared (an address space, cwd and root, or
// an fd table with a task other than its parent), found through kcmp.
// `objects` collects the tree's resources as tasks are checked, parents
// first; `parent_alive` says whether `parent` is a live task of the tree.
// Sets *shares_parent_files when the fd table is its parent's (restored
// shared), and *files_sibling to the earlier sibling whose fd table it
// shares when their parent gave that table up (unshare), 0 otherwise,
// and *files_grandparent when it shares its grandparent's table, which its
// parent had and gave up; `parent_of` gives the parent of an earlier task
// of the tree.
absl::Status CheckSharedResources(objhash::ObjHash& objects, pid_t pid, pid_t parent,
                                  bool parent_alive, bool* shares_parent_files,
                                  pid_t* files_sibling, bool* files_grandparent,
                                  const std::function<pid_t(pid_t)>& parent_of);

// What the dump refuses of one task whatever the rest of the tree is (a
// kernel thread, a task stopped by job control or traced, the dumper).
absl::Status CheckTaskState(pid_t pid, const task::ProcStatus& st, const task::ProcStat& stat);

// How far the pre-flight looks at mappings: kThorough reads each task's
// smaps (its VmFlags tell userfaultfd, device and hugetlb mappings);
// kQuick reads /proc/PID/maps, a third of the cost, and leaves what only
// VmFlags tell to the dump itself (which then refuses one at a time).
enum class PreflightDepth { kQuick, kThorough };

// The pipes of the tree that processes outside it hold, as the pre-flight
// found them: the dump then looks again only at pipes made since.
struct PipeCheck {
  std::set<uint64_t> checked;   // inodes looked at
  std::set<uint64_t> external;  // of those, the ones named external and held outside
};

// The pre-flight report of the tree rooted at `root`. An error only when
// the tree cannot be looked at (the root does not exist, is a thread).
absl::StatusOr<TreeReport> Preflight(pid_t root, const DumpOptions& options,
                                     PreflightDepth depth = PreflightDepth::kThorough,
                                     PipeCheck* pipes = nullptr);

}  // namespace ckpt

#endif  // LIBCKPT_LIB_PREFLIGHT_H_
