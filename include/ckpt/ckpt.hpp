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

#include <signal.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ckpt {

// Where a dump's image goes: the seam under the output, as SQLite's VFS is
// under its files. A dump writes the whole image through WriteV, then
// calls Commit; only once Commit has succeeded is the tree killed (unless
// leave_running). If anything fails before, the tree is resumed untouched
// and Abort is called. Tests give a dump an output that fails at will.
class ImageOutput {
 public:
  virtual ~ImageOutput() = default;
  // Writes the start of `iov`; returns how many bytes it wrote (fewer than
  // asked is fine), 0 when a signal interrupted it before any byte, or an
  // error.
  virtual absl::StatusOr<size_t> WriteV(const struct iovec* iov, int iovcnt) = 0;
  // Makes what was written durable and puts it in place (fsync, link).
  virtual absl::Status Commit() = 0;
  // The dump failed: leave nothing of it behind.
  virtual void Abort() {}
};

// The system calls the outputs below make, replaceable to make them fail.
struct OutputOps {
  std::function<ssize_t(int fd, const struct iovec* iov, int iovcnt)> writev;
  std::function<int(int fd)> fsync;
};
// The real ones.
OutputOps SystemOutputOps();

// An image written to an open fd (file, pipe, socket): Commit fsyncs it
// when it is a regular file.
std::unique_ptr<ImageOutput> NewFdImageOutput(int fd, OutputOps ops = SystemOutputOps());
// An image written to `path`: into an unnamed file in its directory
// (O_TMPFILE; where the filesystem has none, a hidden temporary name that
// every error removes), fsync'd and linked in under `path` by Commit, the
// directory fsync'd. A path that exists and is not a regular file (a FIFO,
// a device) is written in place. Nothing partial is ever left under `path`.
absl::StatusOr<std::unique_ptr<ImageOutput>> NewFileImageOutput(
    const std::string& path, OutputOps ops = SystemOutputOps());

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
  // Objects the tree shares with processes outside it, by name as /proc
  // shows them ("pipe:[12345]"; a unix socket connected outside, as
  // "unix:[12345]" for its socket:[12345]; a terminal whose master is
  // outside, as "tty:[136:3]" for /dev/pts/3): recorded in the image as external
  // instead of refused; the restore must be given a replacement for each
  // (RestoreOptions::inherit_fds).
  std::vector<std::string> external;
  // When set, polled during the dump: once it is non-zero the dump stops,
  // resumes the tree untouched and fails with kCancelled. A signal handler
  // may set it (a write blocked on a full pipe is interrupted by the
  // signal when its handler was installed without SA_RESTART).
  const volatile sig_atomic_t* cancel = nullptr;
};

struct DumpStats {
  uint64_t tasks = 0;
  uint64_t threads = 0;
  uint64_t vmas = 0;
  uint64_t pages_written = 0;
  uint64_t pages_skipped = 0;  // resident but not saved: clean file pages, zero page
  // Left out of a child's pages because it shares them with its parent
  // (copy-on-write since a fork): the restore forks it from the parent.
  uint64_t pages_shared = 0;
  uint64_t image_bytes = 0;
  uint64_t freeze_ns = 0;
  uint64_t total_ns = 0;
};

// What a dump of a tree would meet, found while it runs (nothing is
// frozen): its size, and every problem that would make the dump refuse,
// each naming the task and the object (fd, mapping, pipe).
struct TreeReport {
  uint64_t tasks = 0;
  uint64_t threads = 0;
  std::vector<absl::Status> problems;  // empty: the tree would dump
};

class Checkpointer {
 public:
  explicit Checkpointer(DumpOptions options = {}) : options_(options) {}

  // The pre-flight check that every dump runs first (`ckpt check --pid`):
  // an error only when the tree cannot be looked at.
  absl::StatusOr<TreeReport> Check(pid_t root) const;

  // Dumps the tree rooted at `root` into `out_fd` (written front to back;
  // fsync'd before the tree is killed when it is a regular file). On
  // failure the tree is resumed as it was.
  absl::Status Dump(pid_t root, int out_fd);
  // The same into any output: the tree is killed only after
  // `out.Commit()` succeeded.
  absl::Status Dump(pid_t root, ImageOutput& out);

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

// An fd of the caller that takes the place of an external object of the
// image (DumpOptions::external), at every fd number that held it.
struct InheritFd {
  int fd = -1;
  std::string name;  // "pipe:[12345]", as the dump recorded it
};

struct RestoreOptions {
  // Give the restored tree the caller's terminal.
  bool shell_job = false;
  // Restore the tree inside a fresh pid namespace.
  bool new_pidns = false;
  IpcNamespace ipc_ns = IpcNamespace::kAsDumped;
  // Replacements for the image's external objects; an image with an
  // external object that has none is refused, naming it.
  std::vector<InheritFd> inherit_fds;
  // Restore even when a file the image depends on (opened, mapped, the
  // executable) has changed since the dump: a different size, mtime or
  // ELF build-id. The tree then sees the file as it is now, which for a
  // mapped file means code or data other than it had.
  bool allow_changed_files = false;
  // Lazy (post-copy) restore, from an image in a file: the tree runs as soon
  // as everything but its private anonymous memory is in place; those pages
  // are filled on first touch and, meanwhile, in the background. The call
  // returns once every page is in (see README).
  bool lazy = false;
  // Called once the tree runs, with its root's PID (a lazy restore returns
  // only once every page is in).
  std::function<void(pid_t root)> on_running;
};

struct RestoreStats {
  uint64_t tasks = 0;
  uint64_t pages_written = 0;
  uint64_t image_bytes = 0;
  uint64_t total_ns = 0;
  uint64_t running_ns = 0;  // from the start until the tree ran
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
