// The tree's SysV IPC namespace: shared memory segments (with their
// contents), message queues (with their messages) and semaphore sets (with
// their values). Dump and restore side by side.
//
// Dump: IpcDump::Collect reads the objects of the tree's IPC namespace
// (entering it with setns(2) on a helper thread when it is not ours),
// attaches each segment read-only to copy its pages later, and registers
// each segment as a SHM object, so that the tasks' attachments refer to it
// by objref. A tree with an IPC namespace of its own gets every object of
// it saved, and the namespace's limits; a tree in the dumper's namespace
// gets only the segments its tasks attach (queues and semaphore sets of a
// shared namespace belong to no tree and stay where they are).
//
//   ASSIGN_OR_RETURN(std::unique_ptr<IpcDump> ipc, IpcDump::Collect(root, pids, objects));
//   ... collect the tasks (their /SYSV mappings look the segments up) ...
//   RETURN_IF_ERROR(ipc->Write(writer));
//
// Restore: IpcRestore::Read reads the IPC section, enters a fresh IPC
// namespace when asked (or when the tree had one of its own), and
// recreates every object with its id (through
// /proc/sys/kernel/{shm,msg,sem}_next_id) and key; the tasks created next
// inherit the namespace. Finish removes the segments that had been removed
// while attached, once the tasks have attached them again.

#ifndef LIBCKPT_LIB_IPC_SYSV_H_
#define LIBCKPT_LIB_IPC_SYSV_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/base/fd.h"
#include "lib/image/format.h"
#include "lib/image/reader.h"
#include "lib/image/writer.h"
#include "lib/objhash/objhash.h"

namespace ckpt::ipc {

class IpcDump {
 public:
  // `root` and every live task of the tree (`tasks`), frozen.
  static absl::StatusOr<std::unique_ptr<IpcDump>> Collect(pid_t root,
                                                          const std::vector<pid_t>& tasks,
                                                          objhash::ObjHash& objects);
  ~IpcDump();

  // The IPC section: IPC, then every SHM (and its page arrays), MSQ (and
  // its MSGs) and SEM.
  absl::Status Write(image::Writer& writer);

  bool own_namespace() const { return (header_.flags & image::kIpcOwnNamespace) != 0; }
  uint64_t pages() const;

  struct Segment;
  struct Queue;
  struct SemSet;

 private:
  IpcDump() = default;
  absl::Status CollectHere(const std::vector<int>* wanted_shm, objhash::ObjHash& objects);
  absl::Status CollectSegment(int id, bool swapped, objhash::ObjHash& objects);
  absl::Status CollectQueue(int id, uint64_t msgmax);
  absl::Status CollectSemSet(int id);

  image::ckpt_ipc header_{};
  std::vector<std::unique_ptr<Segment>> segments_;
  std::vector<std::unique_ptr<Queue>> queues_;
  std::vector<std::unique_ptr<SemSet>> sems_;
};

// Whether task `pid` is in the calling thread's IPC namespace.
absl::StatusOr<bool> SameIpcNamespace(pid_t pid);

enum class NamespaceChoice {
  kAsDumped,  // fresh if the tree had its own namespace, else the current one
  kNew,       // always a fresh one
  kCurrent,   // always the caller's
};

class IpcRestore {
 public:
  IpcRestore() = default;
  // Removes what it created unless Finish() succeeded, then puts the
  // calling thread back in its IPC namespace.
  ~IpcRestore();
  IpcRestore(const IpcRestore&) = delete;
  IpcRestore& operator=(const IpcRestore&) = delete;

  // Reads the IPC section, enters the namespace `choice` names (on the
  // calling thread, which must then create the tasks) and recreates the
  // objects there; SHM objects go into `objects` (id = shmid, data = the
  // segment's size as uint64_t).
  absl::Status Read(image::Reader& reader, NamespaceChoice choice,
                    objhash::RestoreTable& objects);
  // Once every task has attached its segments: removes those that had
  // been removed (IPC_RMID) while attached.
  absl::Status Finish();

  bool fresh_namespace() const { return saved_ns_.valid(); }

 private:
  absl::Status RestoreSegment(image::Reader& r, objhash::RestoreTable& objects);
  absl::Status RestoreQueue(image::Reader& r);
  absl::Status RestoreSemSet(image::Reader& r);
  absl::Status SetLimits(const image::ckpt_ipc& ipc);
  // Creates an object of `kind` through `create` (shmget, msgget, semget)
  // with the id `perm` names, set through /proc/sys/kernel/*_next_id; the
  // error says how to free a taken id or key.
  absl::StatusOr<int> CreateWithId(char kind, const image::ckpt_ipc_perm& perm,
                                   bool remove_at_finish, const std::function<int()>& create);

  struct Created {
    char kind;  // 's' shm, 'q' msg, 'm' sem
    int id;
    bool remove_at_finish;
  };
  std::vector<Created> created_;
  std::vector<void*> attached_;  // this process's attachments, until Finish()
  bool rmid_forced_ = false;     // kernel.shm_rmid_forced to set at Finish()
  UniqueFd saved_ns_;  // the caller's namespace, while in a fresh one
  bool finished_ = false;
};

}  // namespace ckpt::ipc

#endif  // LIBCKPT_LIB_IPC_SYSV_H_
