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

#include <sys/types.h>

#include <any>
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <span>
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
  kRestoreIpcNew = 1u << 2,      // every IPC namespace into a fresh one
  kRestoreIpcCurrent = 1u << 3,  // every IPC object into the caller's namespace
};

class HandlerTable;
class ObjectWriter;
struct LateContext;
// A step of the late pass (below).
using LateStep = std::function<absl::Status(LateContext&)>;
// A step of the late pass (below).

struct CheckpointContext {
  image::Writer* writer = nullptr;
  ObjHash* objects = nullptr;
  uint32_t flags = 0;  // DumpFlags
  ObjectWriter* object_writer = nullptr;  // set while the objects section is written

  // Makes sure the object `objref` is in the image before the record the
  // caller is about to write: a handler calls it for every object its
  // record names that the restore must have made first (a pipe end's
  // pipe, a memfd's memory). Order then follows from references, not from
  // the order objects were met. Two objects that each need the other
  // first are an error naming both; references that may form cycles (two
  // sockets, each other's peer) are links instead (ObjectOps::links).
  absl::Status Ensure(uint32_t objref);
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
  // Steps for the late pass, in the order they were left.
  std::vector<LateStep>* late = nullptr;
  absl::Status Later(LateStep step);
  // Run once the restore has succeeded and let the tasks go (never after
  // a failed one): what a handler must undo on failure until then.
  std::vector<std::function<void()>>* commits = nullptr;
  absl::Status AtCommit(std::function<void()> fn);
  // State a kind keeps across its objects within one restore, by kind
  // name (e.g. counting its records against a total).
  std::map<std::string, std::any>* kind_state = nullptr;
  // Controlling terminals: the pid objref of a session's leader -> the
  // restorer's fd on its terminal, which the leader makes its controlling
  // terminal as it is made (before its children).
  std::map<uint32_t, int>* session_ttys = nullptr;
};

// References between objects that may form cycles: written after every
// object of the image, one record per object of the kind, so that the
// restore has made both ends before it joins them.
struct LinkOps {
  uint32_t record_type = 0;  // 0: the kind has no links
  // Writes exactly one record of `record_type` for `entry`.
  absl::Status (*checkpoint)(CheckpointContext& ctx, const ObjHash::Entry& entry) = nullptr;
  // Called with the reader positioned in the link record `rec`; every
  // object of the image is in ctx.objects by then.
  absl::Status (*restore)(RestoreContext& ctx, const image::Record& rec) = nullptr;
};

struct ObjectOps {
  ObjKind kind;
  const char* name;
  uint32_t record_type;  // the record that carries one object of this kind
  // Writes the object's record(s); called once per object, after the
  // objects it Ensure()d.
  absl::Status (*checkpoint)(CheckpointContext& ctx, const ObjHash::Entry& entry);
  // Called with the reader positioned in the object's record `rec`;
  // recreates the object in the restorer.
  absl::StatusOr<RestoredObject> (*restore)(RestoreContext& ctx, const image::Record& rec);
  LinkOps links = {};
  // After a failed restore, for each record of this type the restore had
  // not reached (the rest of the stream is read for them): undoes what
  // the dump left for the restore to undo (a network lock). `state` is
  // the kind's own across those records. May be null.
  void (*abandoned)(image::Reader& r, const image::Record& rec, std::any& state) = nullptr;
};

// Writes the objects section: every object of `objects` whose kind has a
// handler, each after the objects it needs (CheckpointContext::Ensure),
// then the links of those that have them. `ctx` names the writer.
class ObjectWriter {
 public:
  ObjectWriter(const HandlerTable& handlers, const ObjHash& objects)
      : handlers_(handlers), objects_(objects) {}
  // How many objects and link records Write() will write (for the
  // section's header, written first).
  uint32_t nr_objects() const;
  uint32_t nr_links() const;
  absl::Status Write(CheckpointContext& ctx);
  absl::Status Ensure(CheckpointContext& ctx, uint32_t objref);

 private:
  enum class State : uint8_t { kPending, kWriting, kWritten };
  const HandlerTable& handlers_;
  const ObjHash& objects_;
  std::map<uint32_t, State> state_;
  std::vector<uint32_t> writing_;  // the chain of Ensure()s, for the cycle message
};

// Reads what ObjectWriter wrote: `nr_objects` object records into
// ctx.objects, then `nr_links` link records.
absl::Status ReadObjects(RestoreContext& ctx, const HandlerTable& handlers, uint32_t nr_objects,
                         uint32_t nr_links);

// ----------------------------------------------------------- late pass
//
// Some links can only be made inside a task, with its own fd numbers
// (epoll_ctl on its epoll fd, connect, putting fds into a queue): a
// restore handler leaves them as late steps (RestoreContext::Later). They
// run once every task of the tree has its fds at their numbers (and the
// restorer's objects are still open in it), before credentials are
// dropped and before any task runs.
class LateTask {
 public:
  virtual ~LateTask() = default;
  virtual pid_t pid() const = 0;
  // The fd number at which this task holds the object `objref` (a FILE),
  // or -1.
  virtual int FdOf(uint32_t objref) const = 0;
  // Every fd number at which it holds `objref`, with its close-on-exec
  // flag, ascending.
  virtual std::vector<std::pair<int, bool>> FdsOf(uint32_t objref) const = 0;
  // Runs syscall `nr` inside the task; `data` is copied into it first and
  // its address replaces args[data_arg] (data_arg < 0: no data). Returns
  // what the syscall returned (a negative errno too).
  virtual absl::StatusOr<int64_t> Syscall(long nr, std::array<uint64_t, 6> args,
                                          std::span<const uint8_t> data = {},
                                          int data_arg = -1) = 0;
  // The number of the pid object `pid_ref` in this task's pid namespace;
  // 0 if the image has no such pid.
  virtual pid_t PidOf(uint32_t pid_ref) const = 0;
};

struct LateContext {
  std::vector<LateTask*> tasks;  // every live restored task, parents first
  const RestoreTable* objects = nullptr;
  // The PID, as the restorer sees it, of the task (a zombie too) or the
  // TID of the thread whose pid object is `pid_ref`; 0 if none has it.
  std::function<pid_t(uint32_t pid_ref)> pid_here;
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
  // The kind whose links are records of `record_type`.
  const ObjectOps* ForLinkRecord(uint32_t record_type) const;
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
