// Advisory file locks a task holds: flock(), POSIX (fcntl F_SETLK) and
// OFD (F_OFD_SETLK) locks, read from /proc/PID/fdinfo ("lock:" lines, the
// locks set through that description by this task's table or on the
// description itself) and taken again at restore through the restored
// task's own fds, non-blocking: a lock someone else holds now fails the
// restore, naming it. Leases and delegations are refused.
//
//   ASSIGN_OR_RETURN(std::vector<image::ckpt_lock> locks, CollectLocks(pid, fds));  // dump
//   RETURN_IF_ERROR(WriteLocks(locks, writer));
//   ASSIGN_OR_RETURN(locks, ReadLocks(reader, fd_of_task));                            // restore
//   RETURN_IF_ERROR(TakeLocks(injector, pid, locks));

#ifndef LIBCKPT_LIB_FS_LOCKS_H_
#define LIBCKPT_LIB_FS_LOCKS_H_

#include <sys/types.h>

#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/fs/fs.h"
#include "lib/image/format.h"
#include "lib/image/reader.h"
#include "lib/image/writer.h"
#include "lib/task/inject.h"

namespace ckpt::fs {

// One "lock:" line of fdinfo, as a record for `fd`; false for a line
// that is not a lock libckpt knows (the caller refuses it).
absl::StatusOr<image::ckpt_lock> ParseLockLine(absl::string_view line, int fd);

// The locks of `pid` held through `fds`, each once.
absl::StatusOr<std::vector<image::ckpt_lock>> CollectLocks(pid_t pid,
                                                           const std::vector<FdEntry>& fds);

absl::Status WriteLocks(const std::vector<image::ckpt_lock>& locks, image::Writer& writer);
// `has_fd` says whether the task's table has an fd.
absl::StatusOr<std::vector<image::ckpt_lock>> ReadLocks(image::Reader& reader,
                                                        const std::function<bool(int)>& has_fd);
// Takes each lock in the task through `inj` (which has a trampoline).
absl::Status TakeLocks(task::Injector& inj, pid_t pid, const std::vector<image::ckpt_lock>& locks);

}  // namespace ckpt::fs

#endif  // LIBCKPT_LIB_FS_LOCKS_H_
