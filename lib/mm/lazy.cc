#include "lib/mm/lazy.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <system_error>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "lib/base/clock.h"
#include "lib/base/status.h"
#include "lib/mm/maps.h"
#include "lib/mm/mm.h"

namespace ckpt::mm {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kFeatures = UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP |
                               UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP;

// What one UFFDIO_COPY or UFFDIO_ZEROPAGE did: bytes done, or -errno.
int64_t Copy(int uffd, uint64_t dst, const void* src, uint64_t len) {
  struct uffdio_copy c {};
  c.dst = dst;
  c.src = reinterpret_cast<uint64_t>(src);
  c.len = len;
  c.mode = 0;  // wakes whoever waits in the range (never DONTWAKE: FINDINGS Q6)
  if (ioctl(uffd, UFFDIO_COPY, &c) == 0) return c.copy;
  // A partial copy reports its bytes in `copy` with EAGAIN.
  if (errno == EAGAIN && c.copy > 0) return c.copy;
  return -errno;
}

int64_t ZeroPage(int uffd, uint64_t dst) {
  struct uffdio_zeropage z {};
  z.range.start = dst;
  z.range.len = kPage;
  z.mode = 0;
  if (ioctl(uffd, UFFDIO_ZEROPAGE, &z) == 0) return z.zeropage;
  return -errno;
}

void Wake(int uffd, uint64_t start, uint64_t len) {
  struct uffdio_range r {start, len};
  ioctl(uffd, UFFDIO_WAKE, &r);
}

}  // namespace

LazyFill::LazyFill(UniqueFd uffd, std::map<uint64_t, LazyRun> pending, Options options)
    : uffd_(std::move(uffd)), options_(std::move(options)), pending_(std::move(pending)) {
  for (const auto& [addr, run] : pending_) pending_pages_ += run.nr_pages;
}

absl::StatusOr<std::unique_ptr<LazyFill>> LazyFill::Start(
    UniqueFd uffd, std::vector<std::pair<uint64_t, uint64_t>> vmas, std::vector<LazyRun> runs,
    Options options) {
  if (!options.read) return absl::InvalidArgumentError("a lazy fill needs a way to read the image");
  if (options.fault_window_pages == 0) options.fault_window_pages = 1;
  if (options.fill_chunk_pages == 0) options.fill_chunk_pages = 1;
  // Every run inside one of the VMAs, runs and VMAs ascending and apart.
  std::sort(runs.begin(), runs.end(),
            [](const LazyRun& a, const LazyRun& b) { return a.addr < b.addr; });
  std::map<uint64_t, LazyRun> pending;
  uint64_t last_end = 0;
  size_t vi = 0;
  for (const LazyRun& run : runs) {
    if (run.nr_pages == 0) continue;
    const uint64_t end = run.addr + run.nr_pages * kPage;
    if (run.addr % kPage || run.nr_pages > (kUserSpaceEnd - run.addr) / kPage || run.addr < last_end) {
      return absl::InvalidArgumentError(
          absl::StrFormat("lazy run 0x%x+%u pages is not a page range after 0x%x", run.addr,
                          run.nr_pages, last_end));
    }
    while (vi < vmas.size() && vmas[vi].second <= run.addr) ++vi;
    if (vi == vmas.size() || vmas[vi].first > run.addr || vmas[vi].second < end) {
      return absl::InvalidArgumentError(
          absl::StrFormat("lazy run 0x%x+%u pages is not inside one registered VMA", run.addr,
                          run.nr_pages));
    }
    last_end = end;
    pending.emplace(run.addr, run);
  }

  // O_NONBLOCK is the file's: the task's own fd shares it.
  int fl = fcntl(uffd.get(), F_GETFL);
  if (fl < 0 || fcntl(uffd.get(), F_SETFL, fl | O_NONBLOCK) != 0) {
    return ErrnoError(errno, "userfaultfd: F_SETFL O_NONBLOCK");
  }
  struct uffdio_api api {};
  api.api = UFFD_API;
  api.features = kFeatures;
  if (ioctl(uffd.get(), UFFDIO_API, &api) != 0) {
    return ErrnoError(errno, "userfaultfd: UFFDIO_API with the fork, remap, remove and unmap events "
                             "(the fork event needs CAP_SYS_PTRACE)");
  }
  for (const auto& [start, end] : vmas) {
    struct uffdio_register reg {};
    reg.range.start = start;
    reg.range.len = end - start;
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (ioctl(uffd.get(), UFFDIO_REGISTER, &reg) != 0) {
      return ErrnoError(errno, absl::StrFormat("userfaultfd: registering 0x%x-0x%x", start, end));
    }
    if (!(reg.ioctls & (1ull << _UFFDIO_COPY)) || !(reg.ioctls & (1ull << _UFFDIO_ZEROPAGE))) {
      return absl::FailedPreconditionError(
          absl::StrFormat("userfaultfd: 0x%x-0x%x cannot be filled with UFFDIO_COPY", start, end));
    }
  }
  std::unique_ptr<LazyFill> fill(new LazyFill(std::move(uffd), std::move(pending), options));
  fill->vmas_ = std::move(vmas);
  RETURN_IF_ERROR(fill->Launch());
  return fill;
}

absl::Status LazyFill::Launch() {
  int stop = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop < 0) return ErrnoError(errno, "eventfd");
  stop_.reset(stop);
  try {
    fault_thread_ = std::thread([this] { FaultLoop(); });
    if (!options_.no_fill) fill_thread_ = std::thread([this] { FillLoop(); });
  } catch (const std::system_error& e) {
    stopping_ = true;
    if (fault_thread_.joinable()) {
      uint64_t one = 1;
      (void)!write(stop_.get(), &one, sizeof(one));
      fault_thread_.join();
    }
    return absl::ResourceExhaustedError(absl::StrCat("starting the lazy fill's threads: ", e.what()));
  }
  return absl::OkStatus();
}

LazyFill::~LazyFill() { Stop(); }

void LazyFill::Abort() {
  stopping_ = true;
  if (stop_.get() >= 0) {
    uint64_t one = 1;
    (void)!write(stop_.get(), &one, sizeof(one));
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& c : children_) c->Abort();
}

void LazyFill::Fail(absl::Status st) {
  std::lock_guard<std::mutex> lock(mu_);
  FailLocked(std::move(st));
}

void LazyFill::FailLocked(absl::Status st) {
  if (error_.ok()) error_ = std::move(st);
}

bool LazyFill::Finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_pages_ == 0 || gone_ || !error_.ok();
}

bool LazyFill::HasChildren() const {
  std::lock_guard<std::mutex> lock(mu_);
  return !children_.empty();
}

// A forked child's fill that has every page in (or whose task is gone)
// is ended, and its fd closed: the kernel's release of that userfaultfd
// (no one else holds it) unregisters what is left of the child's memory.
// A fork-heavy program so keeps no thread nor fd per child it made.
void LazyFill::RetireChildren() {
  std::vector<std::unique_ptr<LazyFill>> done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = children_.begin(); it != children_.end();) {
      LazyFill* c = it->get();
      bool retire;
      {
        std::lock_guard<std::mutex> child_lock(c->mu_);
        retire = c->children_.empty() && c->error_.ok() && (c->pending_pages_ == 0 || c->gone_);
        if (retire) {
          const LazyStats& k = c->stats_;
          retired_.faults += k.faults;
          retired_.fault_pages += k.fault_pages;
          retired_.fill_pages += k.fill_pages;
          retired_.zero_pages += k.zero_pages;
          retired_.events += k.events;
          retired_.fault_ns_total += k.fault_ns_total;
          retired_.fault_ns_max = std::max(retired_.fault_ns_max, k.fault_ns_max);
        }
      }
      if (retire) {
        done.push_back(std::move(*it));
        it = children_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& c : done) {
    c->Wait().IgnoreError();
    c->Stop();
  }
}

LazyStats LazyFill::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  LazyStats s = stats_;
  s.faults += retired_.faults;
  s.fault_pages += retired_.fault_pages;
  s.fill_pages += retired_.fill_pages;
  s.zero_pages += retired_.zero_pages;
  s.events += retired_.events;
  s.fault_ns_total += retired_.fault_ns_total;
  s.fault_ns_max = std::max(s.fault_ns_max, retired_.fault_ns_max);
  for (const auto& c : children_) {
    LazyStats k = c->stats();
    s.faults += k.faults;
    s.fault_pages += k.fault_pages;
    s.fill_pages += k.fill_pages;
    s.zero_pages += k.zero_pages;
    s.events += k.events;
    s.fault_ns_total += k.fault_ns_total;
    s.fault_ns_max = std::max(s.fault_ns_max, k.fault_ns_max);
  }
  return s;
}

uint64_t LazyFill::pending_pages() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_pages_;
}

uint64_t LazyFill::pending_pages_all() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t n = gone_ ? 0 : pending_pages_;
  for (const auto& c : children_) n += c->pending_pages_all();
  return n;
}

absl::Status LazyFill::error() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!error_.ok()) return error_;
  for (const auto& c : children_) {
    absl::Status st = c->error();
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

// Takes [lo, hi) out of the pending runs (splitting those it cuts).
void LazyFill::DropLocked(uint64_t lo, uint64_t hi) {
  if (lo >= hi) return;
  auto it = pending_.upper_bound(lo);
  if (it != pending_.begin()) --it;
  while (it != pending_.end() && it->first < hi) {
    LazyRun run = it->second;
    const uint64_t end = run.addr + run.nr_pages * kPage;
    if (end <= lo) {
      ++it;
      continue;
    }
    it = pending_.erase(it);
    if (run.addr < lo) {
      LazyRun head = run;
      head.nr_pages = (lo - run.addr) / kPage;
      pending_.emplace(head.addr, head);
    }
    if (end > hi) {
      LazyRun tail = run;
      tail.addr = hi;
      tail.offset = run.offset + (hi - run.addr);
      tail.nr_pages = (end - hi) / kPage;
      it = pending_.emplace(tail.addr, tail).first;
      ++it;
    }
    const uint64_t cut_lo = std::max(lo, run.addr), cut_hi = std::min(hi, end);
    pending_pages_ -= (cut_hi - cut_lo) / kPage;
  }
}

absl::StatusOr<uint64_t> LazyFill::CopyLocked(uint64_t addr, uint64_t pages, const uint8_t* data,
                                              uint64_t data_addr, uint64_t data_offset,
                                              uint64_t* stat) {
  const uint64_t hi = addr + pages * kPage;
  uint64_t done = 0;
  uint64_t at = addr;
  while (at < hi) {
    // The first pending page at or after `at`, and how far it runs.
    auto it = pending_.upper_bound(at);
    if (it != pending_.begin()) {
      auto prev = std::prev(it);
      if (prev->first + prev->second.nr_pages * kPage > at) it = prev;
    }
    if (it == pending_.end() || it->first >= hi) break;
    const uint64_t lo = std::max(at, it->first);
    const uint64_t end = std::min(hi, it->first + it->second.nr_pages * kPage);
    if (it->second.offset + (lo - it->first) != data_offset + (lo - data_addr)) {
      // Pages moved here (REMAP) after `data` was read for this address:
      // theirs are elsewhere in the image. Left pending, for a later copy.
      at = end;
      continue;
    }
    uint64_t len = end - lo;
    int64_t r = Copy(uffd_.get(), lo, data + (lo - data_addr), len);
    // One copy stays inside one VMA: across a split the task made after
    // the registration (mprotect, mlock of a part) the kernel refuses the
    // whole range with ENOENT. Shorter, down to the page.
    while (r == -ENOENT && len > kPage) {
      len = std::max(kPage, (len / 2) & ~(kPage - 1));
      r = Copy(uffd_.get(), lo, data + (lo - data_addr), len);
    }
    if (r > 0) {
      const uint64_t copied = static_cast<uint64_t>(r) & ~(kPage - 1);
      DropLocked(lo, lo + copied);
      done += copied / kPage;
      *stat += copied / kPage;
      at = lo + copied;
      continue;
    }
    if (r == -EEXIST) {
      // Present already (a fault message read after the fill copied it):
      // nothing to copy there, and whoever waited is woken.
      DropLocked(lo, lo + kPage);
      Wake(uffd_.get(), lo, kPage);
      at = lo + kPage;
      continue;
    }
    if (r == -ENOENT) {
      // This page is in no registered mapping any more (unmapped without
      // an event the kernel would have sent): nothing to fill there, and
      // whoever waited there is woken.
      DropLocked(lo, lo + kPage);
      Wake(uffd_.get(), lo, kPage);
      at = lo + kPage;
      continue;
    }
    if (r == -ESRCH) {
      gone_ = true;
      return absl::AbortedError("the task's memory is gone");
    }
    if (r == -EAGAIN) return absl::UnavailableError("an event waits to be read");
    return ErrnoError(static_cast<int>(-r), absl::StrFormat("UFFDIO_COPY at 0x%x", lo));
  }
  return done;
}

absl::Status LazyFill::HandleEvent(const void* raw) {
  // mu_ is held from the read of the event on: once read, the kernel lets
  // copies go again, and one between the read and this would act on the
  // mappings as they were before the event (a dropped page filled again).
  const auto* msg = static_cast<const uffd_msg*>(raw);
  ++stats_.events;
  switch (msg->event) {
    case UFFD_EVENT_FORK: {
      // The child has the parent's mappings and their registration, with
      // the pages the parent had then: those still pending are pending
      // in the child too, from the same image.
      UniqueFd child_fd(static_cast<int>(msg->arg.fork.ufd));
      Options child_options = options_;
      child_options.pid = 0;  // not known here
      std::unique_ptr<LazyFill> child(new LazyFill(std::move(child_fd), pending_, child_options));
      child->vmas_ = vmas_;
      child->running_ = running_.load();
      if (options_.pid > 0 && !pending_.empty()) {
        // The parent waits in its fork until this event is read: its map
        // is the one the child got. What the child did not get its
        // parent's pages for: wipe-on-fork mappings (fresh zeros in the
        // child) and dont-fork ones (not in the child at all).
        ASSIGN_OR_RETURN(std::vector<Vma> vmas, ReadVmas(options_.pid));
        for (const Vma& v : vmas) {
          if (v.vm_flags & (kVmWipeOnFork | kVmDontCopy)) child->DropLocked(v.start, v.end);
        }
      }
      RETURN_IF_ERROR(child->Launch());
      children_.push_back(std::move(child));
      return absl::OkStatus();
    }
    case UFFD_EVENT_REMAP: {
      // Pages move with their mapping; the UNMAP of the old range that
      // follows then finds none of them there.
      const uint64_t from = msg->arg.remap.from, to = msg->arg.remap.to, len = msg->arg.remap.len;
      std::vector<LazyRun> moved;
      auto it = pending_.upper_bound(from);
      if (it != pending_.begin()) --it;
      for (; it != pending_.end() && it->first < from + len; ++it) {
        const LazyRun& run = it->second;
        const uint64_t end = run.addr + run.nr_pages * kPage;
        const uint64_t lo = std::max(from, run.addr), hi = std::min(from + len, end);
        if (lo >= hi) continue;
        moved.push_back({lo - from + to, (hi - lo) / kPage, run.offset + (lo - run.addr)});
      }
      DropLocked(from, from + len);
      // The registration moves with the mapping: unregistered from there
      // at the end too.
      vmas_.emplace_back(to, to + len);
      for (const LazyRun& m : moved) {
        DropLocked(m.addr, m.addr + m.nr_pages * kPage);  // nothing pending is ever there
        pending_.emplace(m.addr, m);
        pending_pages_ += m.nr_pages;
      }
      return absl::OkStatus();
    }
    case UFFD_EVENT_REMOVE:
      // MADV_DONTNEED or MADV_FREE: the task dropped these pages; they
      // read as zeros from now on, never as the image's.
      DropLocked(msg->arg.remove.start, msg->arg.remove.end);
      return absl::OkStatus();
    case UFFD_EVENT_UNMAP:
      DropLocked(msg->arg.remove.start, msg->arg.remove.end);
      return absl::OkStatus();
    default:
      return absl::InternalError(absl::StrCat("userfaultfd: unknown event ", msg->event));
  }
}

void LazyFill::FaultLoop() {
  std::vector<uint8_t> buf(options_.fault_window_pages * kPage);
  std::vector<uffd_msg> retry;
  uffd_msg msgs[32];
  while (!stopping_) {
    struct pollfd fds[2] = {{uffd_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    // Faults that met an unread event are tried again once it is read;
    // forked children's fills are looked at now and then.
    int n = poll(fds, 2, !retry.empty() ? 0 : HasChildren() ? 20 : -1);
    RetireChildren();
    if (n < 0 && errno != EINTR) {
      Fail(ErrnoError(errno, "poll on the userfaultfd"));
      return;
    }
    if (fds[1].revents) {
      uint64_t n;
      (void)!read(stop_.get(), &n, sizeof(n));
      if (stopping_) return;
    }
    std::vector<uffd_msg> batch;
    batch.swap(retry);
    std::unique_lock<std::mutex> events_lock(mu_);
    if (fds[0].revents & POLLIN) {
      ssize_t got = read(uffd_.get(), msgs, sizeof(msgs));
      if (got < 0 && errno != EAGAIN && errno != EINTR) {
        FailLocked(ErrnoError(errno, "reading the userfaultfd"));
        return;
      }
      for (ssize_t i = 0; got > 0 && i < got / static_cast<ssize_t>(sizeof(uffd_msg)); ++i) {
        batch.push_back(msgs[i]);
      }
    }
    // Events first, in order: a fault waiting in the same batch is
    // answered with the mappings as they are after them.
    for (const uffd_msg& m : batch) {
      if (m.event == UFFD_EVENT_PAGEFAULT) continue;
      // A failed one is the fill's error (the restorer kills the tree);
      // the others are still read, so that no task waits on one.
      absl::Status st = HandleEvent(&m);
      if (!st.ok()) FailLocked(st);
    }
    events_lock.unlock();
    for (const uffd_msg& m : batch) {
      if (m.event != UFFD_EVENT_PAGEFAULT) continue;
      const int64_t t0 = MonotonicNs();
      const uint64_t page = m.arg.pagefault.address & ~(kPage - 1);
      std::unique_lock<std::mutex> lock(mu_);
      ++stats_.faults;
      auto it = pending_.upper_bound(page);
      bool pending = false;
      if (it != pending_.begin()) {
        --it;
        pending = it->first + it->second.nr_pages * kPage > page;
      }
      absl::Status st;
      if (pending && !error_.ok()) {
        // The fill has failed and the tree is being killed. Before it
        // runs, no code of its own can see the page: zeros, so that the
        // restorer's own accesses (and calls injected for it) end. Once
        // it runs the fault waits until the kill ends it.
        if (!running_) {
          const int64_t r = ZeroPage(uffd_.get(), page);
          if (r <= 0) Wake(uffd_.get(), page, kPage);
        }
      } else if (pending) {
        const LazyRun& run = it->second;
        const uint64_t end = std::min(run.addr + run.nr_pages * kPage,
                                      page + options_.fault_window_pages * kPage);
        const uint64_t off = run.offset + (page - run.addr);
        st = options_.read(off, buf.data(), end - page);
        if (st.ok()) {
          absl::StatusOr<uint64_t> copied =
              CopyLocked(page, (end - page) / kPage, buf.data(), page, off, &stats_.fault_pages);
          if (!copied.ok()) st = copied.status();
        }
      } else {
        // Not pending: dropped by the task (zeros), or copied meanwhile.
        const int64_t r = ZeroPage(uffd_.get(), page);
        if (r > 0) {
          ++stats_.zero_pages;
        } else if (r == -EEXIST || r == -ENOENT) {
          Wake(uffd_.get(), page, kPage);
        } else if (r == -EAGAIN) {
          st = absl::UnavailableError("an event waits to be read");
        } else if (r == -ESRCH) {
          gone_ = true;
          st = absl::AbortedError("the task's memory is gone");
        } else {
          st = ErrnoError(static_cast<int>(-r), absl::StrFormat("UFFDIO_ZEROPAGE at 0x%x", page));
        }
      }
      const int64_t ns = MonotonicNs() - t0;
      stats_.fault_ns_total += ns;
      stats_.fault_ns_max = std::max(stats_.fault_ns_max, ns);
      lock.unlock();
      if (absl::IsUnavailable(st)) {
        retry.push_back(m);
        continue;
      }
      if (absl::IsAborted(st)) return;  // gone: nothing more to serve
      if (!st.ok()) Fail(Annotate(st, "serving a page fault"));
    }
  }
}

void LazyFill::FillLoop() {
  std::vector<uint8_t> buf(options_.fill_chunk_pages * kPage);
  uint64_t cursor = 0;
  while (!stopping_) {
    uint64_t addr = 0, pages = 0, off = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (pending_.empty() || gone_ || !error_.ok()) break;
      auto it = pending_.upper_bound(cursor);
      if (it != pending_.begin()) {
        auto prev = std::prev(it);
        if (prev->first + prev->second.nr_pages * kPage > cursor) it = prev;
      }
      if (it == pending_.end()) it = pending_.begin();  // round again from the bottom
      const LazyRun& run = it->second;
      addr = std::max(run.addr, cursor);
      if (addr >= run.addr + run.nr_pages * kPage) addr = run.addr;
      pages = std::min((run.addr + run.nr_pages * kPage - addr) / kPage, options_.fill_chunk_pages);
      off = run.offset + (addr - run.addr);
    }
    // Read outside the lock: the fault path does not wait for the image.
    absl::Status st = options_.read(off, buf.data(), pages * kPage);
    if (!st.ok()) {
      Fail(Annotate(st, "reading the image for the background fill"));
      break;
    }
    absl::StatusOr<uint64_t> copied;
    {
      std::lock_guard<std::mutex> lock(mu_);
      copied = CopyLocked(addr, pages, buf.data(), addr, off, &stats_.fill_pages);
    }
    if (absl::IsUnavailable(copied.status())) {
      // The fault loop reads the event; then the same chunk again.
      std::this_thread::yield();
      continue;
    }
    if (absl::IsAborted(copied.status())) break;
    if (!copied.ok()) {
      Fail(copied.status());
      break;
    }
    cursor = addr + pages * kPage;
  }
}

absl::Status LazyFill::Wait() {
  if (fill_thread_.joinable()) fill_thread_.join();
  // With no background fill, until the fault path has served every page.
  while (!stopping_ && !Finished()) usleep(1000);
  absl::Status result;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  {
    std::lock_guard<std::mutex> lock(mu_);
    result = error_;
    if (result.ok() && !gone_ && pending_pages_ != 0) {
      result = absl::AbortedError(absl::StrCat("the lazy fill stopped with ", pending_pages_,
                                               " pages not filled"));
    }
    ranges = vmas_;
  }
  // Every page is in: the mappings back to plain memory. What this misses
  // (a mapping mremap grew) goes once the last fd of the userfaultfd is
  // closed (the kernel's release unregisters the whole mm); until then
  // the fault thread answers what comes.
  if (result.ok() && !gone_) {
    for (const auto& [lo, hi] : ranges) UnregisterRange(lo, hi);
    if (options_.pid > 0) {
      // The task's own map shows what is still registered (um).
      absl::StatusOr<std::vector<Vma>> vmas = ReadVmas(options_.pid);
      if (vmas.ok()) {
        for (const Vma& v : *vmas) {
          if (v.vm_flags & kVmUffd) UnregisterRange(v.start, v.end);
        }
      }
    }
  }
  // Children known by now; the fault thread may still add some (a fork
  // racing with the end), which Stop ends.
  for (size_t i = 0;; ++i) {
    LazyFill* child;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (i >= children_.size()) break;
      child = children_[i].get();
    }
    absl::Status st = child->Wait();
    if (result.ok() && !st.ok()) result = Annotate(st, "a child forked during the lazy fill");
  }
  return result;
}

// UFFDIO_UNREGISTER refuses (EINVAL) a range holding a mapping it could
// not have registered (the task mapped a file there meanwhile): halves,
// down to the page, around those.
void LazyFill::UnregisterRange(uint64_t lo, uint64_t hi) {
  if (lo >= hi) return;
  struct uffdio_range r {lo, hi - lo};
  if (ioctl(uffd_.get(), UFFDIO_UNREGISTER, &r) == 0 || errno != EINVAL || hi - lo <= kPage) return;
  const uint64_t mid = lo + (((hi - lo) / 2) & ~(kPage - 1));
  UnregisterRange(lo, mid);
  UnregisterRange(mid, hi);
}

void LazyFill::Stop() {
  stopping_ = true;
  if (stop_.get() >= 0) {
    uint64_t one = 1;
    (void)!write(stop_.get(), &one, sizeof(one));
  }
  if (fill_thread_.joinable()) fill_thread_.join();
  if (fault_thread_.joinable()) fault_thread_.join();
  // No fork can be reported any more: the children are all known.
  for (auto& c : children_) c->Stop();
}

void LazyFill::SetRunning() {
  running_ = true;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& c : children_) c->SetRunning();
}

}  // namespace ckpt::mm
