// What the kinds of anonymous-inode files (eventfd, signalfd, epoll,
// inotify, pidfd) share: their /proc/PID/fdinfo, read as lines of
// "key: value", and the FILE that is one more descriptor of the object
// the restorer made (one open description: a dup, whose O_NONBLOCK is
// the description's).

#ifndef LIBCKPT_LIB_FS_ANONFD_H_
#define LIBCKPT_LIB_FS_ANONFD_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/base/fd.h"

namespace ckpt::fs {

// /proc/PID/fdinfo/FD as (key, value) pairs, values stripped, in order.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ReadFdInfoLines(pid_t pid, int fd);

// The value of `key` in those lines, or an error naming the task, the fd
// and `what` (the kind, for the message).
absl::StatusOr<std::string> FdInfoValue(const std::vector<std::pair<std::string, std::string>>& lines,
                                        absl::string_view key, pid_t pid, int fd, absl::string_view what);

// A dev_t as fdinfo prints it (the kernel's own encoding, major << 20 |
// minor) as stat(2) reports it.
uint64_t KernelDevToUser(uint64_t sdev);

// A dup of the restorer's `fd`, with O_NONBLOCK as `flags` (a FILE
// record's) say: the FILE of an object that is its own description.
absl::StatusOr<UniqueFd> DupWithNonblock(int fd, uint32_t flags, absl::string_view what);

// The path, in this process's view, of the inode (dev, ino) whose file
// handle fdinfo shows as `hex` (`bytes` bytes of type `type`), checked to
// name that inode; an error saying why not (no mount of it visible,
// deleted, or another inode at that path). Opening a handle needs
// CAP_DAC_READ_SEARCH in the initial user namespace: without it, the inode
// is looked for near the paths task `pid` uses (its open files, cwd,
// root, executable and absolute arguments: each, its ancestors, and the
// entries of each directory among them).
absl::StatusOr<std::string> PathOfHandle(pid_t pid, uint64_t dev, uint64_t ino, unsigned bytes, int type,
                                         absl::string_view hex);

// Runs fn(arg) in a helper process that shares this process's memory (it
// must make plain system calls only) but has a copy of its fd table and
// its own limits, with every signal blocked (no handler of this process's
// runs in it), and waits for it: its wait status. `extra_flags` are more
// clone flags (CLONE_PIDFD: its pidfd in *pidfd).
absl::StatusOr<int> RunInHelper(int (*fn)(void*), void* arg, unsigned long extra_flags = 0,
                                int* pidfd = nullptr);

// The mount point of mount `mnt_id` (/proc/self/mountinfo); NotFound if
// this process does not see it.
absl::StatusOr<std::string> MountPointOf(int mnt_id);

// A mount point of the filesystem `dev` in this process's view.
absl::StatusOr<std::string> MountPointOfDev(uint64_t dev);

}  // namespace ckpt::fs

#endif  // LIBCKPT_LIB_FS_ANONFD_H_
