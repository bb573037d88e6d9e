// /proc/PID/maps and /proc/PID/smaps, parsed into VMAs.
//
//   ASSIGN_OR_RETURN(std::vector<Vma> vmas, ReadVmas(pid));
//   for (const Vma& v : vmas) if (v.vm_flags & kVmGrowsDown) ...

#ifndef LIBCKPT_LIB_MM_MAPS_H_
#define LIBCKPT_LIB_MM_MAPS_H_

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ckpt::mm {

// The VmFlags of smaps that libckpt cares about.
enum VmFlag : uint64_t {
  kVmGrowsDown = 1u << 0,    // gd
  kVmHugepage = 1u << 1,     // hg
  kVmNoHugepage = 1u << 2,   // nh
  kVmDontDump = 1u << 3,     // dd
  kVmDontCopy = 1u << 4,     // dc (MADV_DONTFORK)
  kVmWipeOnFork = 1u << 5,   // wf
  kVmMergeable = 1u << 6,    // mg
  kVmLocked = 1u << 7,       // lo
  kVmSeqRead = 1u << 8,      // sr
  kVmRandRead = 1u << 9,     // rr
  kVmIo = 1u << 10,          // io
  kVmPfnMap = 1u << 11,      // pf
  kVmUffd = 1u << 12,        // um, uw
  kVmShadowStack = 1u << 13, // ss
  kVmSealed = 1u << 14,      // sl
  kVmMayWrite = 1u << 15,    // mw
  kVmHugetlb = 1u << 16,     // ht
  kVmNoReserve = 1u << 17,   // nr (MAP_NORESERVE: no swap space reserved)
  kVmLockOnFault = 1u << 18, // lf (mlock2 MLOCK_ONFAULT)
  kVmDroppable = 1u << 19,   // dp (MAP_DROPPABLE)
};

struct Vma {
  uint64_t start = 0;
  uint64_t end = 0;
  uint32_t prot = 0;  // PROT_*
  bool shared = false;
  uint64_t offset = 0;
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  uint64_t ino = 0;
  std::string name;      // path, "[heap]", "[stack]", "[vdso]", ..., or "" if anonymous
  bool deleted = false;  // the path ended in " (deleted)", now stripped
  uint64_t vm_flags = 0; // VmFlag, from smaps
  bool has_vm_flags = false;

  uint64_t size() const { return end - start; }
  bool is_file() const { return !name.empty() && name[0] == '/'; }
};

absl::StatusOr<std::vector<Vma>> ParseMaps(absl::string_view text);
// smaps: the same lines, each followed by fields, VmFlags among them.
absl::StatusOr<std::vector<Vma>> ParseSmaps(absl::string_view text);
// Reads /proc/PID/smaps.
absl::StatusOr<std::vector<Vma>> ReadVmas(pid_t pid);

// Reads the smaps of `pids`, in that order, on a thread of its own, a few
// tasks ahead of the caller, who meanwhile does other work on a stopped
// tree (smaps formats every field of every VMA: a few ms for a task of
// 200 VMAs). The tasks must not change their mappings until taken.
class VmaPrefetch {
 public:
  explicit VmaPrefetch(std::vector<pid_t> pids);
  ~VmaPrefetch();
  VmaPrefetch(const VmaPrefetch&) = delete;
  VmaPrefetch& operator=(const VmaPrefetch&) = delete;

  // The VMAs of `pid`, read ahead (waiting for them) or now if `pid` is
  // not in the list or was taken already. Tasks before it in the list not
  // taken yet are dropped.
  absl::StatusOr<std::vector<Vma>> Take(pid_t pid);

 private:
  static constexpr size_t kAhead = 4;
  void Work();

  std::vector<pid_t> pids_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<size_t, absl::StatusOr<std::vector<Vma>>> ready_;  // by index in pids_
  size_t next_take_ = 0;  // index of the first not yet taken or dropped
  size_t done_ = 0;       // how many the worker has read
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace ckpt::mm

#endif  // LIBCKPT_LIB_MM_MAPS_H_
