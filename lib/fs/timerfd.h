// TIMERFD objects: a timerfd with its clock, its timer and the expirations
// not yet read, saved once however many descriptors share it.
//
// Dump: /proc/PID/fdinfo shows all of it (clockid, ticks, settime flags,
// it_value as time left, it_interval). Restore: the restorer makes the
// timerfd, arms it with the time left counted from the restore's start,
// puts the unread expirations back (TFD_IOC_SET_TICKS) and holds it; each
// FILE of kind timerfd is a dup of it (one open description).

#ifndef LIBCKPT_LIB_FS_TIMERFD_H_
#define LIBCKPT_LIB_FS_TIMERFD_H_

#include <sys/stat.h>
#include <sys/types.h>

#include "absl/status/statusor.h"
#include "lib/objhash/handlers.h"
#include "lib/objhash/objhash.h"

namespace ckpt::fs {

inline constexpr objhash::ObjKind kObjTimerfd{12};

// Registers the timerfd behind fd `fd` of task `pid`. Returns its objref.
absl::StatusOr<uint32_t> RegisterTimerfd(objhash::ObjHash& objects, pid_t pid, int fd,
                                         const struct stat& st);

absl::Status CheckpointTimerfd(objhash::CheckpointContext& ctx,
                               const objhash::ObjHash::Entry& entry);
absl::StatusOr<objhash::RestoredObject> RestoreTimerfd(objhash::RestoreContext& ctx,
                                                       const image::Record& rec);

}  // namespace ckpt::fs

#endif  // LIBCKPT_LIB_FS_TIMERFD_H_
