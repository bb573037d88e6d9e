// Post-copy memory: the private pages of a running task, filled from the
// image on first touch (userfaultfd) and, meanwhile, in address order by a
// background fill, so that the fault path serves only what the task
// touches first (issue 18; docs/lazy-restore/FINDINGS.md has the kernel's
// rules this follows).
//
//   LazyFill::Options o;
//   o.read = [&](uint64_t off, void* buf, size_t len) { return PreadAll(image_fd, buf, len, off); };
//   ASSIGN_OR_RETURN(std::unique_ptr<LazyFill> fill, LazyFill::Start(std::move(uffd), runs, o));
//   ... the task runs ...
//   RETURN_IF_ERROR(fill->Wait());  // every page is in, or the task is gone
//
// `uffd` is a userfaultfd of the task's mm (made in the task, taken with
// pidfd_getfd), on which UFFDIO_API was not yet called: Start asks for the
// events that keep the pages right when the task changes its mappings
// (fork, mremap, munmap, MADV_DONTNEED/FREE) and registers every run's
// whole VMA (`vmas`) for missing-page faults.
//
// A page is copied at most once (the kernel refuses a second copy with
// EEXIST) and never after the task dropped it: a range the task zapped
// (the REMOVE event) is no longer filled, and a fault there gets a zero
// page, as it would have without the restore. Event handling and copies
// are serialised by one lock, and a copy started while an event waits
// fails with EAGAIN until the event is read.

#ifndef LIBCKPT_LIB_MM_LAZY_H_
#define LIBCKPT_LIB_MM_LAZY_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lib/base/fd.h"

namespace ckpt::mm {

// Pages [addr, addr + nr_pages * 4096) whose contents are at `offset` of
// the image, one page after the other.
struct LazyRun {
  uint64_t addr = 0;
  uint64_t nr_pages = 0;
  uint64_t offset = 0;
};

struct LazyStats {
  uint64_t faults = 0;         // missing-page faults read
  uint64_t fault_pages = 0;    // pages the fault path copied
  uint64_t fill_pages = 0;     // pages the background fill copied
  uint64_t zero_pages = 0;     // faults on dropped ranges answered with zeros
  uint64_t events = 0;         // fork, remap, remove and unmap events
  int64_t fault_ns_max = 0;    // the slowest fault, from read to answer
  int64_t fault_ns_total = 0;
};

class LazyFill {
 public:
  struct Options {
    // Reads `len` bytes of the image at `offset` (any thread may call it).
    std::function<absl::Status(uint64_t offset, void* buf, size_t len)> read;
    // Pages the fault path copies around a fault, at most (pending pages
    // of the same run after the one touched).
    uint64_t fault_window_pages = 16;
    // Pages one background copy moves at most. A fault on a page of the
    // copy in flight waits for its end (the kernel wakes waiters once the
    // whole ioctl is done): 2 MiB take 0.5-0.9 ms here, and fill 1 GiB at
    // 2.3 GB/s, against 1.8 GB/s with 256 KiB (bench/lazy_bench).
    uint64_t fill_chunk_pages = 512;
    // No background fill (tests of the fault path).
    bool no_fill = false;
    // The task (0: unknown): at the end, what its map still shows
    // registered is unregistered too (a mapping mremap grew, which the
    // REMAP event does not tell). A forked child's fill has none.
    pid_t pid = 0;
  };

  // `vmas` are [start, end) ranges to register, each one whole VMA of the
  // task, ascending; every run lies inside one of them.
  static absl::StatusOr<std::unique_ptr<LazyFill>> Start(
      UniqueFd uffd, std::vector<std::pair<uint64_t, uint64_t>> vmas, std::vector<LazyRun> runs,
      Options options);
  ~LazyFill();
  LazyFill(const LazyFill&) = delete;
  LazyFill& operator=(const LazyFill&) = delete;

  // Until every page is in (this task's and those of children it forked
  // meanwhile), the task has gone, or a copy failed; then the ranges are
  // unregistered. The fault thread goes on answering (events, faults on
  // pages the task dropped) until Stop: the task may still be in a fork
  // or an mremap whose event must be read. The first error, if any.
  absl::Status Wait();
  // Ends the fault service and the fill (the destructor too). Once the
  // task has closed its own fd of the userfaultfd, this one's close
  // releases it: the kernel then unregisters whatever is left.
  void Stop();
  // Stops the fill and the fault service at once (the task is being
  // killed): faults then wait until the task dies or the fd is closed.
  void Abort();
  // The tree runs from now on. Before, a fault on a pending page after a
  // failed fill is answered with zeros (only the restorer and its injected
  // calls can meet it, and the restore is being undone); from now on it
  // waits for the kill that follows a failure.
  void SetRunning();
  // This process's fd of the userfaultfd (for kcmp against the task's).
  int fd() const { return uffd_.get(); }

  LazyStats stats() const;
  uint64_t pending_pages() const;
  // Pending here and in the children forked meanwhile.
  uint64_t pending_pages_all() const;
  // The first error of this fill or a child's (OK while none).
  absl::Status error() const;

 private:
  LazyFill(UniqueFd uffd, std::map<uint64_t, LazyRun> pending, Options options);
  // Starts the fault and fill threads.
  absl::Status Launch();
  void FaultLoop();
  void FillLoop();
  // Copies pending pages [addr, addr + pages) that are still pending, from
  // the image; the lock is held. Returns pages copied, or an error.
  // `data` holds the image from `data_offset` on, for pages from
  // `data_addr` on: a pending page whose image offset is another (moved
  // there since the read) is left pending.
  absl::StatusOr<uint64_t> CopyLocked(uint64_t addr, uint64_t pages, const uint8_t* data,
                                      uint64_t data_addr, uint64_t data_offset, uint64_t* stat);
  void UnregisterRange(uint64_t lo, uint64_t hi);
  bool HasChildren() const;
  void RetireChildren();
  absl::Status HandleEvent(const void* msg);
  void DropLocked(uint64_t lo, uint64_t hi);
  void Fail(absl::Status st);
  void FailLocked(absl::Status st);  // mu_ held
  bool Finished() const;

  UniqueFd uffd_;
  UniqueFd stop_;  // an eventfd the fault loop polls besides the uffd
  Options options_;
  // Registered ranges: the VMAs, and where REMAP moved parts of them.
  std::vector<std::pair<uint64_t, uint64_t>> vmas_;
  mutable std::mutex mu_;
  std::map<uint64_t, LazyRun> pending_;  // by address, disjoint
  uint64_t pending_pages_ = 0;
  LazyStats stats_;
  LazyStats retired_;  // of children ended already
  absl::Status error_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> gone_{false};  // the task's mm went away
  std::atomic<bool> running_{false};
  std::vector<std::unique_ptr<LazyFill>> children_;  // forked while lazy
  std::thread fault_thread_;
  std::thread fill_thread_;
};

}  // namespace ckpt::mm

#endif  // LIBCKPT_LIB_MM_LAZY_H_
