// GHOST objects: a file deleted while a task still had it open or mapped.
// Its contents go into the image; at restore it is recreated next to its
// old path, opened, and deleted again, so the restored descriptions and
// mappings are on a deleted file with the same contents, as before.

#ifndef LIBCKPT_LIB_FS_GHOST_H_
#define LIBCKPT_LIB_FS_GHOST_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/base/fd.h"
#include "lib/objhash/handlers.h"
#include "lib/objhash/objhash.h"

namespace ckpt::fs {

// Registers the deleted file that `source` (a /proc/PID/fd/N or
// /proc/PID/map_files/... link) opens; `path` is the path it had.
absl::StatusOr<uint32_t> RegisterGhost(objhash::ObjHash& objects, const std::string& source,
                                       const std::string& path, const struct stat& st);

// For a deleted file a task has mapped: finds an fd of the task on the same
// inode, or its map_files link, and registers the ghost.
absl::StatusOr<uint32_t> RegisterMappedGhost(objhash::ObjHash& objects, pid_t pid,
                                             uint64_t start, uint64_t end,
                                             const std::string& path, dev_t dev, uint64_t ino);

// Makes an object that has no name, like one a task had open after it was
// unlinked or removed: `create(name)` makes it under a fresh name next to
// `path` (0, or -1 with errno; EEXIST tries another name), it is opened
// with `open_flags` (never following a symlink, and checked to be what was
// just made: of type `type`, owned by this process), given `mode`, and its
// name removed. `what` names it in errors ("the deleted FIFO").
absl::StatusOr<UniqueFd> RecreateUnnamed(const std::string& path, absl::string_view what,
                                         const std::function<int(const char* name)>& create,
                                         int open_flags, mode_t type, mode_t mode);

absl::Status CheckpointGhost(objhash::CheckpointContext& ctx,
                             const objhash::ObjHash::Entry& entry);
absl::StatusOr<objhash::RestoredObject> RestoreGhost(objhash::RestoreContext& ctx,
                                                     const image::Record& rec);

}  // namespace ckpt::fs

#endif  // LIBCKPT_LIB_FS_GHOST_H_
