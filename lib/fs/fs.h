// Files: the FILE object (an open file description of a regular file, a
// directory or a character device), a task's fd table (FD records) and its
// cwd and root (FS). Dump and restore side by side.
//
// At restore, every FILE object is opened once by the restorer and moved
// to a high fd number; each task inherits those, dup3()s them to its own
// fd numbers (so descriptions shared by dup or fork are shared again), and
// closes the high ones last.

#ifndef LIBCKPT_LIB_FS_FS_H_
#define LIBCKPT_LIB_FS_FS_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/fs/fdkind.h"
#include "lib/fs/file.h"
#include "lib/image/format.h"
#include "lib/image/reader.h"
#include "lib/image/writer.h"
#include "lib/objhash/handlers.h"
#include "lib/objhash/objhash.h"
#include "lib/task/inject.h"

namespace ckpt::fs {

struct FdEntry {
  int fd = -1;
  uint32_t fd_flags = 0;  // FD_CLOEXEC
  uint32_t file_ref = 0;
};

struct FsState {
  std::string cwd;
  std::string root;
  uint32_t cwd_ref = 0;   // the GHOST of a removed working directory
  uint32_t root_ref = 0;  // ... and of a removed root directory
};

// The fd numbers of a task, ascending.
absl::StatusOr<std::vector<int>> ListFds(pid_t pid);

// What /proc says of one fd: the description, and the kind that claimed
// it (lib/fs/fdkind.h). Refuses, naming the task, the fd and its kind,
// what cannot be dumped yet. Reads only: the task may be running (the
// dump's pre-flight).
struct ClassifiedFd {
  int fd = -1;
  bool cloexec = false;
  FdProbe probe;
  Description file;
  const FdKindOps* kind = nullptr;
};
absl::StatusOr<ClassifiedFd> ClassifyFd(pid_t pid, int fd, uint32_t dump_flags);

// Lists the task's fds and registers their descriptions as FILE objects.
// Refuses, naming the fd and its kind, what cannot be dumped yet.
absl::StatusOr<std::vector<FdEntry>> CollectFds(pid_t pid, objhash::ObjHash& objects,
                                                uint32_t dump_flags);
absl::StatusOr<FsState> CollectFs(pid_t pid, objhash::ObjHash& objects);
// Registers the description at fd `fd` of task `pid` (`pidfd` its pidfd)
// as a FILE object, and the object it is on; returns its objref, and
// whether the fd is close-on-exec. A kind whose objects hold other
// descriptions (a socket's queue: fds in flight) calls it for those, on
// fds of this process.
absl::StatusOr<uint32_t> RegisterDescription(pid_t pid, int fd, int pidfd, objhash::ObjHash& objects,
                                             uint32_t dump_flags, bool* cloexec);

absl::Status WriteFs(const FsState& fs, image::Writer& writer);
absl::Status WriteFds(const std::vector<FdEntry>& fds, image::Writer& writer);

absl::StatusOr<FsState> ReadFsRecord(image::Reader& reader);
absl::StatusOr<std::vector<FdEntry>> ReadFdRecords(image::Reader& reader, uint32_t nr_fds,
                                                   int high_fd_base);

absl::Status QueueFsRestore(task::SyscallQueue& queue, const FsState& fs,
                            const objhash::RestoreTable& objects);
// Closes every fd the task inherited below `high_fd_base`, then puts the
// task's fds in place from the restorer's objects.
absl::Status QueueFdRestore(task::SyscallQueue& queue, const std::vector<FdEntry>& fds,
                            const objhash::RestoreTable& objects, int high_fd_base);
// Closes the restorer's objects (everything from `high_fd_base` up) but
// the fds in `keep` (a lazy restore's userfaultfd, ascending).
absl::Status QueueCloseObjects(task::SyscallQueue& queue, int high_fd_base,
                               const std::vector<int>& keep = {});

}  // namespace ckpt::fs

#endif  // LIBCKPT_LIB_FS_FS_H_
