// MAPPED_FILE objects: a file that backs mappings, one object per inode,
// opened by the restorer (read-only, or read-write when a shared mapping
// may write) so that every restored task inherits it for its mmap calls
// and, for the executable, for PR_SET_MM_MAP's exe_fd.

#ifndef LIBCKPT_LIB_MM_MAPPED_FILE_H_
#define LIBCKPT_LIB_MM_MAPPED_FILE_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "lib/objhash/handlers.h"
#include "lib/objhash/objhash.h"

namespace ckpt::mm {

// Registers the file at `path`, which the task has mapped as inode `ino`
// of device `dev`, and returns its objref. A path that no longer names
// that inode is an error naming it.
// `ghost_ref`, when set, is the GHOST object of a deleted file: the
// restore maps that instead of a path.
absl::StatusOr<uint32_t> RegisterMappedFile(objhash::ObjHash& objects, const std::string& path,
                                            dev_t dev, uint64_t ino, bool writable,
                                            uint32_t ghost_ref = 0);

// The ELF build-id (NT_GNU_BUILD_ID) of the file open at `fd`; empty if it
// is no ELF file or has none.
std::string ReadBuildId(int fd);

// What the restore checks of a file the image depends on.
struct FileExpectation {
  bool size = true;      // st_size equals the image's
  bool grown_ok = false; // ... or is larger (a file appended to)
  bool mtime = true;     // st_mtime equals the image's
  bool build_id = false; // the ELF build-id equals the image's
};

// Checks the file open at `fd` (`path`) against what `rec` recorded; a
// difference is FailedPrecondition naming the path, the field, the
// image's value and the file's, unless the restore allows changed files
// (kRestoreAllowChangedFiles in `restore_flags`).
absl::Status CheckUnchanged(const image::ckpt_file& rec, const std::string& path, int fd,
                            const FileExpectation& expect, uint32_t restore_flags);

absl::Status CheckpointMappedFile(objhash::CheckpointContext& ctx,
                                  const objhash::ObjHash::Entry& entry);
absl::StatusOr<objhash::RestoredObject> RestoreMappedFile(objhash::RestoreContext& ctx,
                                                          const image::Record& rec);

}  // namespace ckpt::mm

#endif  // LIBCKPT_LIB_MM_MAPPED_FILE_H_
