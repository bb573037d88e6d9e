// The kernel identity of an object, as user space can see it: an inode by
// (dev, ino), a file description or a task resource (mm, fd table, fs,
// sighand) by kcmp(2) against a task that holds it.
//
//   Identity a = Identity::OfFile(pid, 3, st.st_dev, st.st_ino);
//   Identity b = Identity::OfFile(pid, 4, st.st_dev, st.st_ino);
//   ASSIGN_OR_RETURN(bool same, SameObject(a, b));  // true after dup(3)

#ifndef LIBCKPT_LIB_OBJHASH_IDENTITY_H_
#define LIBCKPT_LIB_OBJHASH_IDENTITY_H_

#include <sys/types.h>

#include <cstdint>

#include "absl/status/statusor.h"

namespace ckpt::objhash {

// kcmp(2) types (linux/kcmp.h).
enum KcmpType : int {
  kKcmpNone = -1,  // the key alone decides
  kKcmpFile = 0,
  kKcmpVm = 1,
  kKcmpFiles = 2,
  kKcmpFs = 3,
  kKcmpSighand = 4,
  kKcmpIo = 5,
  kKcmpSysvsem = 6,
};

struct Identity {
  // Cheap key: objects with different keys are different. For inodes it is
  // all there is; for kcmp identities it narrows the candidates.
  uint64_t key_hi = 0;
  uint64_t key_lo = 0;
  // How to tell two objects with equal keys apart.
  KcmpType kcmp = kKcmpNone;
  pid_t pid = 0;         // a task holding the object
  unsigned long idx = 0;  // KCMP_FILE: the fd in that task

  static Identity OfInode(uint64_t dev, uint64_t ino) { return {dev, ino, kKcmpNone, 0, 0}; }
  // An open file description: fd `fd` of task `pid`, whose inode is
  // (dev, ino).
  static Identity OfFile(pid_t pid, int fd, uint64_t dev, uint64_t ino) {
    return {dev, ino, kKcmpFile, pid, static_cast<unsigned long>(fd)};
  }
  // A per-task resource shared by CLONE_VM, CLONE_FILES, CLONE_FS or
  // CLONE_SIGHAND.
  static Identity OfTaskResource(KcmpType type, pid_t pid) {
    return {0, static_cast<uint64_t>(type), type, pid, 0};
  }
  // A pid number in the dumper's namespace.
  static Identity OfPid(pid_t nr) { return {0, static_cast<uint64_t>(nr), kKcmpNone, 0, 0}; }
  // A SysV IPC object by its IPC namespace (the inode of /proc/PID/ns/ipc)
  // and its id (a shm segment's inode number is its id).
  static Identity OfIpcId(uint64_t ns_ino, int id) {
    return {ns_ino, static_cast<uint64_t>(id), kKcmpNone, 0, 0};
  }
};

// Whether a and b name the same kernel object. Errors when kcmp fails (a
// task is gone, or may not be inspected).
absl::StatusOr<bool> SameObject(const Identity& a, const Identity& b);

// kcmp(2) itself: 0 equal, 1 less, 2 greater, 3 different but unordered.
absl::StatusOr<int> Kcmp(pid_t pid1, pid_t pid2, KcmpType type, unsigned long idx1,
                         unsigned long idx2);

}  // namespace ckpt::objhash

#endif  // LIBCKPT_LIB_OBJHASH_IDENTITY_H_
