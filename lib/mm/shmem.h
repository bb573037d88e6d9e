// SHMEM objects: memory shared without a file name, a memfd or shared
// anonymous memory (MAP_SHARED|MAP_ANONYMOUS), saved once with its
// contents however many tasks map or open it. The restorer recreates it as
// a memfd (shared anonymous memory then shows as "/memfd:..." in maps:
// there is no other way to hand one object to several existing tasks) and
// every task maps or reopens that.
//
// Contents are read through an fd on the object when a task has one
// (holes skipped with SEEK_DATA), else through /proc/PID/map_files, else
// through a task's mapping with process_vm_readv (zero pages skipped).

#ifndef LIBCKPT_LIB_MM_SHMEM_H_
#define LIBCKPT_LIB_MM_SHMEM_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/image/reader.h"
#include "lib/image/writer.h"
#include "lib/objhash/handlers.h"
#include "lib/objhash/objhash.h"

namespace ckpt::mm {

inline constexpr objhash::ObjKind kObjShmem{11};


// A task's fd on a memfd: registers the memfd (name as its link shows it,
// without "/memfd:" and " (deleted)").
absl::StatusOr<uint32_t> RegisterShmemFd(objhash::ObjHash& objects, pid_t pid, int fd,
                                         const std::string& name, dev_t dev, uint64_t ino);
// A task's mapping [start, end) at `pgoff` of a memfd (`memfd`) or of
// shared anonymous memory.
absl::StatusOr<uint32_t> RegisterShmemMapping(objhash::ObjHash& objects, pid_t pid,
                                              uint64_t start, uint64_t end, uint64_t pgoff,
                                              bool shared, bool memfd, const std::string& name, dev_t dev,
                                              uint64_t ino);

// Object contents as page arrays whose runs are offsets in the object;
// shared by SHMEM objects and SysV shm segments.
//
// The allocated page ranges of a shmem fd of `size` bytes (holes, which
// read as zeros, skipped; swapped-out pages count as data).
absl::StatusOr<std::vector<image::ckpt_page_run>> DataRuns(int fd, uint64_t size,
                                                           uint64_t* pages);
using ReadRangeFn = std::function<absl::Status(uint64_t offset, uint64_t len, uint8_t* buf)>;
// PAGE_RUNS + PAGE_DATA pairs of at most kMaxPageDataLen bytes for `runs`
// (`pages` pages in all); `read` fetches each run's bytes.
absl::Status WriteObjectPages(image::Writer& writer, const std::vector<image::ckpt_page_run>& runs,
                              uint64_t pages, const ReadRangeFn& read);
using FillRangeFn =
    std::function<absl::Status(uint64_t offset, const uint8_t* data, uint64_t len)>;
// Reads the page arrays of `nr_pages` pages of an object of `size` bytes,
// checking every run against the object; `fill` stores each run (its last
// page cut at `size`). `what` names the object in errors.
absl::Status ReadObjectPages(image::Reader& r, uint64_t nr_pages, uint64_t size,
                             absl::string_view what, const FillRangeFn& fill);

absl::Status CheckpointShmem(objhash::CheckpointContext& ctx,
                             const objhash::ObjHash::Entry& entry);
absl::StatusOr<objhash::RestoredObject> RestoreShmem(objhash::RestoreContext& ctx,
                                                     const image::Record& rec);

}  // namespace ckpt::mm

#endif  // LIBCKPT_LIB_MM_SHMEM_H_
