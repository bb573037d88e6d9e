// The object handler table: one entry per object kind, registered once,
// looked up by the drivers. Drivers never switch on kinds.
//
//   HandlerTable table;
//   RETURN_IF_ERROR(table.Register({ObjKind::kFile, "file", CKPT_HDR_FILE,
//                                   CheckpointFile, RestoreFile}));
//   ...
//   const ObjectOps* ops = table.ForKind(entry.kind);
//   RETURN_IF_ERROR(ops->checkpoint(ctx, entry));

#ifndef LIBCKPT_LIB_OBJHASH_HANDLERS_H_
#define LIBCKPT_LIB_OBJHASH_HANDLERS_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/image/reader.h"
#include "lib/image/writer.h"
#include "lib/objhash/objhash.h"

namespace ckpt::objhash {

// Dump options a handler may need to look at.
enum DumpFlags : uint32_t {
  kDumpShellJob = 1u << 0,     // terminals belong to the caller; do not refuse them
  kDumpLeaveRunning = 1u << 1, // the tree keeps running; read state without consuming it
};

// Restore options a handler may need to look at.
enum RestoreFlags : uint32_t {
  kRestoreShellJob = 1u << 0,
  kRestoreAllowChangedFiles = 1u << 1,  // files that changed since the dump are used as they are
};

struct CheckpointContext {
  image::Writer* writer = nullptr;
  ObjHash* objects = nullptr;
  uint32_t flags = 0;  // DumpFlags
};

struct RestoreContext {
  image::Reader* reader = nullptr;
  RestoreTable* objects = nullptr;
  // Restored fds are moved to this number or above in the restorer, out of
  // the way of every fd number a task uses.
  int high_fd_base = 0;
  uint32_t flags = 0;  // RestoreFlags
  int64_t start_mono_ns = 0;  // CLOCK_MONOTONIC at the restore's start
  // The caller's fds that take the place of the image's external objects,
  // by name ("pipe:[12345]"); a handler that uses one adds its name to
  // `inherited_used`.
  const std::map<std::string, int>* inherited = nullptr;
  std::set<std::string>* inherited_used = nullptr;
};

struct ObjectOps {
  ObjKind kind;
  const char* name;
  uint32_t record_type;  // the record that carries one object of this kind
  // Writes the object's record(s); called once per object, objref first.
  absl::Status (*checkpoint)(CheckpointContext& ctx, const ObjHash::Entry& entry);
  // Called with the reader positioned in the object's record `rec`;
  // recreates the object in the restorer.
  absl::StatusOr<RestoredObject> (*restore)(RestoreContext& ctx, const image::Record& rec);
};

// Copies `fd` (the caller still owns it) to ctx.high_fd_base or above,
// close-on-exec; `what` names the file in errors.
absl::StatusOr<int> MoveHigh(const RestoreContext& ctx, int fd, absl::string_view what);
// The object `objref`, held by the restorer at a high copy of `fd`.
absl::StatusOr<RestoredObject> HoldAt(const RestoreContext& ctx, uint32_t objref, int fd,
                                      absl::string_view what);

class HandlerTable {
 public:
  // An error if the kind or the record type already has a handler.
  absl::Status Register(const ObjectOps& ops);
  const ObjectOps* ForKind(ObjKind kind) const;
  const ObjectOps* ForRecord(uint32_t record_type) const;
  const std::vector<ObjectOps>& all() const { return ops_; }

 private:
  std::vector<ObjectOps> ops_;
};

// The one table of the process: every object kind registers its handler
// from its own file, at static initialisation,
//
//   const bool kRegistered = objhash::RegisterHandler({kObjPipe, "pipe", ...});
//
// (the library that holds such a file is linked whole: alwayslink). A
// clash (two handlers for one kind or record type) is kept and reported
// by GlobalHandlers().
bool RegisterHandler(const ObjectOps& ops);
absl::StatusOr<const HandlerTable*> GlobalHandlers();

}  // namespace ckpt::objhash

#endif  // LIBCKPT_LIB_OBJHASH_HANDLERS_H_
