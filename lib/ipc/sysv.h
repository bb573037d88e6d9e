// SysV IPC namespaces: shared memory segments (with their contents),
// message queues (with their messages) and semaphore sets (with their
// values). Dump and restore side by side. Each IPC namespace a task of the
// tree is in is an object (IPC record, keyed by the inode of
// /proc/PID/ns/ipc), written once in the objects section and referred to
// by the task entries (ckpt_task_entry::ipc_ns_ref).
//
// Dump: CollectIpcNamespaces finds every namespace of the tree's tasks and
// reads its objects (entering it with setns(2) on a helper thread when it
// is not ours), attaches each segment read-only to copy its pages later,
// and registers each segment as a SHM object keyed by (namespace, id), so
// that the tasks' attachments refer to it by objref. A namespace of the
// tree's own gets every object of it saved, and its limits; the dumper's
// namespace gets only the segments its tasks attach (queues and semaphore
// sets of a shared namespace belong to no tree and stay where they are).
//
//   ASSIGN_OR_RETURN(auto refs, CollectIpcNamespaces(pids, objects, &pages));
//   ... collect the tasks (their /SYSV mappings look the segments up) ...
//   ... the objects section writes each namespace (IPC, SHM + pages, MSQ + MSGs, SEM) ...
//
// Restore: the IPC handler makes a fresh IPC namespace when asked (or
// when the namespace was the tree's own) and recreates every object there
// with its id (through /proc/sys/kernel/{shm,msg,sem}_next_id) and key,
// on a helper thread that enters it (the restorer's own threads never
// change namespace); it holds an fd on the namespace, which the tasks in it
// enter (setns) as they are created. A late step removes the segments
// that had been removed while attached, once the tasks have attached them
// again.

#ifndef LIBCKPT_LIB_IPC_SYSV_H_
#define LIBCKPT_LIB_IPC_SYSV_H_

#include <sys/types.h>

#include <functional>
#include <map>
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

// An IPC namespace object; its handler is registered by sysv.cc.
inline constexpr objhash::ObjKind kObjIpcNs{13};

// Every IPC namespace that the live, frozen tasks `tasks` are in, saved as
// above; returns each task's namespace objref and adds the pages the
// segments will write to `pages`.
absl::StatusOr<std::map<pid_t, uint32_t>> CollectIpcNamespaces(const std::vector<pid_t>& tasks,
                                                               objhash::ObjHash& objects,
                                                               uint64_t* pages);

class IpcDump {
 public:
  // The namespace of `tasks` (frozen), whose inode is `ns_ino`; `mine`:
  // it is the dumper's.
  static absl::StatusOr<std::unique_ptr<IpcDump>> Collect(const std::vector<pid_t>& tasks,
                                                          uint64_t ns_ino, bool mine,
                                                          objhash::ObjHash& objects);
  ~IpcDump();

  // IPC, then every SHM (and its page arrays), MSQ (and its MSGs) and SEM.
  absl::Status Write(image::Writer& writer, uint32_t objref);

  uint32_t nr_namespaces = 1;  // in the whole dump

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

  uint64_t ns_ino_ = 0;
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
  // Removes what it created (inside its namespace) unless committed.
  ~IpcRestore();
  IpcRestore(const IpcRestore&) = delete;
  IpcRestore& operator=(const IpcRestore&) = delete;

  // With the reader in the IPC record `ipc`: enters the namespace `choice`
  // names (on the calling thread), recreates the objects there and goes
  // back; SHM objects go into `objects` (id = shmid, data = the segment's
  // size as uint64_t).
  absl::Status Read(image::Reader& reader, const image::ckpt_ipc& ipc, NamespaceChoice choice,
                    objhash::RestoreTable& objects);
  // Once every task has attached its segments: removes those that had
  // been removed (IPC_RMID) while attached.
  absl::Status Finish();
  // The restore succeeded: what it made stays.
  void Commit() { committed_ = true; }

  // The namespace (fresh or the caller's), once Read succeeded.
  int ns_fd() const { return ns_.get(); }
  bool fresh_namespace() const { return fresh_; }

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
  // Runs `fn` in the namespace: here if it is the caller's, else on a
  // thread that enters it.
  absl::Status InNamespace(const std::function<absl::Status()>& fn);

  struct Created {
    char kind;  // 's' shm, 'q' msg, 'm' sem
    int id;
    bool remove_at_finish;
  };
  std::vector<Created> created_;
  std::vector<void*> attached_;  // this process's attachments, until Finish()
  bool rmid_forced_ = false;     // kernel.shm_rmid_forced to set at Finish()
  UniqueFd ns_;                  // the namespace the objects are in
  uint32_t ns_ref_ = 0;          // its objref
  bool fresh_ = false;
  bool committed_ = false;
};

}  // namespace ckpt::ipc

#endif  // LIBCKPT_LIB_IPC_SYSV_H_
