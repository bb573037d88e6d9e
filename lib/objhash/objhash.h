// The object hash: one objref per shared kernel object.
//
// Checkpoint side, ObjHash: the first task that meets an object gets
// {objref, first = true} and the object is written once, in full; every
// later meeting gets the same objref and writes only that.
//
//   ASSIGN_OR_RETURN(ObjHash::Found f,
//                    objs.LookupAdd(ObjKind::kFile, Identity::OfFile(pid, fd, dev, ino)));
//   if (f.first) ... remember what the handler needs to dump it ...
//
// Restore side, RestoreTable: objref -> the restored thing (an fd in the
// restorer, a pid, a shm id).
//
// Objrefs are small positive integers in order of first encounter; 0 means
// "no object".

#ifndef LIBCKPT_LIB_OBJHASH_OBJHASH_H_
#define LIBCKPT_LIB_OBJHASH_OBJHASH_H_

#include <sys/types.h>

#include <any>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/objhash/identity.h"

namespace ckpt::objhash {

// The kind of an object. The drivers' own kinds are here; every other
// kind defines its value in its own file (ObjKind{N}, N from 100 up) and
// registers its name with its handler; a clash is an error at start-up.
enum class ObjKind : uint32_t {
  kFile = 1,        // an open file description
  kMappedFile = 2,  // a file that backs mappings, by inode
  kPid = 4,         // a pid
  kMm = 5,          // an address space (CLONE_VM)
  kFiles = 6,       // an fd table (CLONE_FILES)
  kFs = 7,          // cwd/root/umask (CLONE_FS)
  kSighand = 8,     // signal handlers (CLONE_SIGHAND)
  kShm = 9,         // a SysV shm segment, by inode
  kGhost = 10,      // a deleted file's inode, with its contents (fs and mm both use it)
};

// "FILE", "PIPE", ...: the name its handler registered, or "kind N".
std::string ObjKindName(ObjKind kind);
// Called by RegisterHandler.
void RegisterObjKindName(ObjKind kind, const char* name);

class ObjHash {
 public:
  struct Entry {
    ObjKind kind;
    uint32_t objref;
    Identity id;
    std::any data;  // what the kind's handler needs to checkpoint it
  };
  struct Found {
    uint32_t objref;
    bool first;
    Entry* entry;
  };

  // The objref of the object `id` of `kind`, adding it (with `data`) if it
  // is new. kcmp errors (a task vanished) come back as the Status.
  absl::StatusOr<Found> LookupAdd(ObjKind kind, const Identity& id, std::any data = {});
  // 0 if the object has not been met.
  absl::StatusOr<uint32_t> Lookup(ObjKind kind, const Identity& id) const;

  // nullptr for an unknown objref.
  const Entry* Get(uint32_t objref) const;
  Entry* GetMutable(uint32_t objref) {
    return const_cast<Entry*>(static_cast<const ObjHash*>(this)->Get(objref));
  }
  // In order of first encounter (objref 1 first).
  const std::vector<std::unique_ptr<Entry>>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }

 private:
  using BucketKey = std::tuple<uint32_t, uint64_t, uint64_t>;
  absl::StatusOr<Entry*> Find(ObjKind kind, const Identity& id) const;
  absl::StatusOr<std::pair<size_t, bool>> Position(const std::vector<Entry*>& bucket,
                                                   const Identity& id) const;

  std::vector<std::unique_ptr<Entry>> entries_;
  std::map<BucketKey, std::vector<Entry*>> buckets_;
};

// What an object became at restore.
struct RestoredObject {
  uint32_t objref = 0;  // as read from the object's record
  int fd = -1;      // an fd in the restorer (owned by the table)
  int fd2 = -1;     // a second one (a pipe's write end), owned too
  int64_t id = -1;  // a pid, a shm id, ...
  uint32_t owner_ref = 0;  // the object it lives in (a SysV segment: its IPC namespace)
  std::any data;
};

class RestoreTable {
 public:
  RestoreTable() = default;
  ~RestoreTable();
  RestoreTable(const RestoreTable&) = delete;
  RestoreTable& operator=(const RestoreTable&) = delete;

  // An error if objref is 0 or already present (a corrupt image).
  absl::Status Insert(uint32_t objref, ObjKind kind, RestoredObject obj);
  // An error naming the objref if it is unknown or of another kind.
  absl::StatusOr<const RestoredObject*> Get(uint32_t objref, ObjKind kind) const;
  bool Contains(uint32_t objref) const { return objects_.count(objref) != 0; }
  // Every fd the table owns, for closing them in restored tasks.
  std::vector<int> Fds() const;

 private:
  std::map<uint32_t, std::pair<ObjKind, RestoredObject>> objects_;
};

}  // namespace ckpt::objhash

#endif  // LIBCKPT_LIB_OBJHASH_OBJHASH_H_
