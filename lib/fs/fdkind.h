// Kinds of fd: one table of operations, one file per kind holding its dump
// and its restore side by side (file.cc: regular files, directories and
// devices; ghost.cc: deleted files; pipe.cc: pipes and FIFOs; tty.cc: the
// caller's terminal; memfd.cc; timerfd.cc). The fd table code (CollectFds,
// the FILE handler) names no kind: it asks each kind, in its `order`,
// whether it claims an fd, and restores a FILE record by its kind's ops.
//
// A kind registers itself from its own file:
//
//   const FdKindOps kPipeKind = {.name = "pipe", .file_kind = image::kFilePipe, ...};
//   const bool kRegistered = RegisterFdKind(&kPipeKind);
//
// See docs/adding-a-kind.md.

#ifndef LIBCKPT_LIB_FS_FDKIND_H_
#define LIBCKPT_LIB_FS_FDKIND_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/base/fd.h"
#include "lib/fs/file.h"
#include "lib/image/format.h"
#include "lib/objhash/handlers.h"
#include "lib/objhash/objhash.h"

namespace ckpt::fs {

// What /proc says of one fd of a (possibly running) task.
struct FdProbe {
  pid_t pid = 0;
  int fd = -1;
  std::string link_path;  // /proc/PID/fd/N
  std::string target;     // what the link reads: a path, "pipe:[123]", "anon_inode:[timerfd]"
  struct stat st {};      // of the open file (stat through the link)
  uint32_t dump_flags = 0;  // objhash::DumpFlags
};

struct FdKindOps {
  const char* name;       // "pipe", for messages
  uint32_t file_kind;     // image::FileKind of its FILE records
  int order;              // kinds are asked in this order, lowest first
  mode_t file_type;       // S_IFREG, S_IFDIR, ... that its files have; 0: any
  bool seekable;          // the restore seeks a description to its recorded pos
  bool by_path;           // its FILE records' path is a path to open (else a name)
  bool has_target;        // its FILE records name the object it is on (target_ref)
  objhash::ObjKind target_kind;  // ... of this kind

  // Dump. Whether the fd is one of this kind.
  bool (*claims)(const FdProbe& probe);
  // Fills in what the description saves beyond the defaults (path, ...),
  // or refuses it, naming the task and the fd. May be null.
  absl::Status (*describe)(const FdProbe& probe, Description* file);
  // Registers the object the description is on; returns its objref.
  // Null when !has_target.
  absl::StatusOr<uint32_t> (*register_target)(objhash::ObjHash& objects, const FdProbe& probe,
                                              const Description& file);

  // Restore. A new description in the restorer for the FILE record `rec`
  // (`path` read from it, `target` its restored target or null).
  absl::StatusOr<UniqueFd> (*open)(objhash::RestoreContext& ctx, const image::ckpt_file& rec,
                                   const std::string& path, const objhash::RestoredObject* target);
  // Checks the opened file against the record (type, size, device); null
  // for none.
  absl::Status (*check)(objhash::RestoreContext& ctx, const image::ckpt_file& rec,
                        const std::string& path, int fd, const struct stat& st);
};

// Called once by each kind, from its own file at static initialisation.
bool RegisterFdKind(const FdKindOps* ops);
// Every kind, in claim order.
std::vector<const FdKindOps*> FdKinds();
// An internal error if two kinds registered the same file kind.
absl::Status FdKindsStatus();
// The kind whose FILE records have `file_kind`; null if none.
const FdKindOps* FdKindOfFile(uint32_t file_kind);

// Checks shared by kinds: the opened file is of the recorded type.
absl::Status CheckFileType(const image::ckpt_file& rec, const std::string& path,
                           const struct stat& st);

}  // namespace ckpt::fs

#endif  // LIBCKPT_LIB_FS_FDKIND_H_
