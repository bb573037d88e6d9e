// FILE objects, used by the fd table code and registered as a handler.

#ifndef LIBCKPT_LIB_FS_FILE_H_
#define LIBCKPT_LIB_FS_FILE_H_

#include <sys/stat.h>

#include <string>

#include "absl/status/statusor.h"
#include "lib/objhash/handlers.h"

namespace ckpt::fs {

// What the dump knows of an open file description (ObjHash entry data).
struct Description {
  std::string path;
  uint32_t kind = 0;   // image::FileKind
  uint32_t flags = 0;  // open(2) flags, O_CLOEXEC removed
  uint64_t pos = 0;
  struct stat st {};
  uint32_t target_ref = 0;  // the PIPE or GHOST it is on
  // Its F_SETOWN_EX owner (image::FileOwnerType; the pid as this process
  // sees it) and F_SETSIG signal.
  uint32_t owner_type = 0;
  pid_t owner_pid = 0;
  uint32_t owner_sig = 0;
};

absl::Status CheckpointFile(objhash::CheckpointContext& ctx, const objhash::ObjHash::Entry& entry);
absl::StatusOr<objhash::RestoredObject> RestoreFile(objhash::RestoreContext& ctx,
                                                    const image::Record& rec);

}  // namespace ckpt::fs

#endif  // LIBCKPT_LIB_FS_FILE_H_
