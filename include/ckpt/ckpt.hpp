// libckpt C++ API: checkpoint a live Linux process tree into one byte
// stream, and restore it into running processes again.
//
//   ckpt::Checkpointer dumper({.leave_running = true});
//   absl::Status st = dumper.Dump(pid, fd);
//
//   ckpt::Restorer restorer;
//   absl::StatusOr<pid_t> root = restorer.Restore(fd);
//
// Errors are absl::Status: InvalidArgument for a bad image field,
// FailedPrecondition for a task in a state that cannot be dumped,
// Unimplemented for an object kind not supported yet, NotFound for a
// missing task or file, AlreadyExists for a PID that is taken.

#ifndef LIBCKPT_INCLUDE_CKPT_CKPT_HPP_
#define LIBCKPT_INCLUDE_CKPT_CKPT_HPP_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ckpt {

struct DumpOptions {
  // Resume the tree after the dump; by default it is killed.
  bool leave_running = false;
  // The tree shares the caller's terminal; it is not saved.
  bool shell_job = false;
  // Container mode: every pid the tree uses (process groups, sessions)
  // must belong to the tree; a foreign one is an error naming it. By
  // default (subtree mode) groups and sessions led from outside the tree
  // are not saved, and the restored tasks join the restorer's.
  bool container = false;
};

struct DumpStats {
  uint64_t tasks = 0;
  uint64_t threads = 0;
  uint64_t vmas = 0;
  uint64_t pages_written = 0;
  uint64_t pages_skipped = 0;  // resident but not saved: clean file pages, zero page
  uint64_t image_bytes = 0;
  uint64_t freeze_ns = 0;
  uint64_t total_ns = 0;
};

class Checkpointer {
 public:
  explicit Checkpointer(DumpOptions options = {}) : options_(options) {}

  // Dumps the tree rooted at `root` into `out_fd` (written front to back).
  // On failure the tree is resumed as it was.
  absl::Status Dump(pid_t root, int out_fd);

  const DumpStats& stats() const { return stats_; }

 private:
  DumpOptions options_;
  DumpStats stats_;
};

// Where a restored tree's SysV IPC objects (and the tree) go.
enum class IpcNamespace {
  kAsDumped,  // a fresh IPC namespace if the tree had its own, else the caller's
  kNew,       // always a fresh one, holding exactly the image's objects
  kCurrent,   // always the caller's (the objects' ids and keys must be free)
};

struct RestoreOptions {
  // Give the restored tree the caller's terminal.
  bool shell_job = false;
  // Restore the tree inside a fresh pid namespace.
  bool new_pidns = false;
  IpcNamespace ipc_ns = IpcNamespace::kAsDumped;
};

struct RestoreStats {
  uint64_t tasks = 0;
  uint64_t pages_written = 0;
  uint64_t image_bytes = 0;
  uint64_t total_ns = 0;
};

class Restorer {
 public:
  explicit Restorer(RestoreOptions options = {}) : options_(options) {}

  // Restores the tree read from `in_fd` with its original PIDs and returns
  // the root's PID once every task runs. The root is the caller's child.
  // On failure every task created is killed and reaped.
  absl::StatusOr<pid_t> Restore(int in_fd);

  const RestoreStats& stats() const { return stats_; }

 private:
  RestoreOptions options_;
  RestoreStats stats_;
};

// One kernel interface libckpt uses, as probed on the running kernel.
struct KernelFeature {
  std::string name;    // "PAGEMAP_SCAN", "clone3 set_tid", ...
  bool present = false;
  bool required = false;  // dump or restore cannot work without it
  std::string detail;     // what it is for, or why it is missing
};

// Probes every interface DESIGN.md names (`ckpt check`).
std::vector<KernelFeature> ProbeKernelFeatures();

}  // namespace ckpt

#endif  // LIBCKPT_INCLUDE_CKPT_CKPT_HPP_
