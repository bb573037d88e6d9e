// Copy-on-write sharing between a parent and a child it forked: which of
// the child's private pages are still the parent's (dump), so that the
// restore forks the child from the restored parent and keeps them.

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/mm/mm.h"
#include "lib/mm/pagescan.h"

namespace ckpt::mm {
namespace {

constexpr uint64_t kPage = 4096;
// /proc/PID/pagemap entry bits.
constexpr uint64_t kPmPresent = 1ull << 63;
constexpr uint64_t kPmSwapped = 1ull << 62;
constexpr uint64_t kPmExclusive = 1ull << 56;  // mapped by this process only
constexpr uint64_t kPmPfn = (1ull << 55) - 1;
// Pagemap entries read at a time.
constexpr uint64_t kChunk = 16 * 1024;

absl::Status ReadPagemap(int fd, pid_t pid, uint64_t addr, uint64_t n, uint64_t* out) {
  const uint64_t bytes = n * sizeof(uint64_t);
  uint64_t done = 0;
  while (done < bytes) {
    ssize_t r = pread(fd, reinterpret_cast<uint8_t*>(out) + done, bytes - done,
                      static_cast<off_t>(addr / kPage * sizeof(uint64_t) + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      return ErrnoError(r < 0 ? errno : EIO, "reading /proc/", pid, "/pagemap at 0x",
                        absl::Hex(addr));
    }
    done += static_cast<uint64_t>(r);
  }
  return absl::OkStatus();
}

}  // namespace

bool KeepableFromParent(const image::ckpt_vma& c, const image::ckpt_vma& p) {
  switch (c.kind) {
    case image::kVmaAnon:
    case image::kVmaHeap:
    case image::kVmaStack:
    case image::kVmaFile:
      break;
    default:
      return false;
  }
  constexpr uint64_t kNotForked = image::kAdvDontFork | image::kAdvWipeOnFork | image::kAdvSealed;
  // A fork does not pass memory locks on; the child takes its own.
  constexpr uint64_t kLocks = image::kAdvLocked | image::kAdvLockOnFault;
  return c.start == p.start && c.end == p.end && c.prot == p.prot && c.flags == p.flags &&
         (c.flags & 0x0f) == MAP_PRIVATE && c.kind == p.kind && c.file_ref == p.file_ref &&
         c.pgoff == p.pgoff && !((c.advice | p.advice) & kNotForked) &&
         (c.advice & ~kLocks) == (p.advice & ~kLocks);
}

absl::StatusOr<uint64_t> ShareWithParent(pid_t child, MmDump& child_mm, pid_t parent,
                                         const MmDump& parent_mm) {
  std::map<uint64_t, const VmaDump*> by_start;
  for (const VmaDump& v : parent_mm.vmas) by_start[v.rec.start] = &v;
  UniqueFd cfd, pfd;
  std::vector<uint64_t> centries(kChunk), pentries(kChunk);
  uint64_t moved = 0;
  for (VmaDump& cv : child_mm.vmas) {
    if (cv.runs.empty()) continue;
    auto it = by_start.find(cv.rec.start);
    if (it == by_start.end() || !KeepableFromParent(cv.rec, it->second->rec)) continue;
    // The parent's pages there: its own and those it keeps from its own
    // parent, in order.
    const image::ckpt_vma& pv = it->second->rec;
    std::vector<image::ckpt_page_run> pruns = it->second->runs;
    auto from = std::lower_bound(
        parent_mm.inherited.begin(), parent_mm.inherited.end(), pv.start,
        [](const image::ckpt_page_run& r, uint64_t a) { return r.addr < a; });
    for (; from != parent_mm.inherited.end() && from->addr < pv.end; ++from) pruns.push_back(*from);
    if (pruns.empty()) continue;
    std::sort(pruns.begin(), pruns.end(),
              [](const image::ckpt_page_run& a, const image::ckpt_page_run& b) { return a.addr < b.addr; });
    if (!cfd.valid()) {
      ASSIGN_OR_RETURN(cfd, OpenFile(absl::StrCat("/proc/", child, "/pagemap"), O_RDONLY));
      ASSIGN_OR_RETURN(pfd, OpenFile(absl::StrCat("/proc/", parent, "/pagemap"), O_RDONLY));
    }
    // Runs never span two VMAs: the restore keeps each VMA apart.
    std::vector<image::ckpt_page_run> own, kept;
    size_t pi = 0;  // the parent's run at or after the current address
    for (const image::ckpt_page_run& run : cv.runs) {
      for (uint64_t done = 0; done < run.nr_pages;) {
        const uint64_t n = std::min(kChunk, run.nr_pages - done);
        const uint64_t base = run.addr + done * kPage;
        RETURN_IF_ERROR(ReadPagemap(cfd.get(), child, base, n, centries.data()));
        RETURN_IF_ERROR(ReadPagemap(pfd.get(), parent, base, n, pentries.data()));
        for (uint64_t i = 0; i < n; ++i) {
          const uint64_t addr = base + i * kPage;
          while (pi < pruns.size() && pruns[pi].addr + pruns[pi].nr_pages * kPage <= addr) ++pi;
          const bool in_parent = pi < pruns.size() && pruns[pi].addr <= addr;
          const uint64_t c = centries[i], p = pentries[i];
          const bool shared = in_parent && (c & kPmPresent) && (p & kPmPresent) &&
                              !((c | p) & (kPmSwapped | kPmExclusive)) && (c & kPmPfn) != 0 &&
                              (c & kPmPfn) == (p & kPmPfn);
          if (shared && child_mm.inherited.size() + kept.size() < image::kMaxInheritedRuns) {
            AppendRun(&kept, addr, 1);
            ++moved;
          } else {
            AppendRun(&own, addr, 1);
          }
        }
        done += n;
      }
    }
    child_mm.inherited.insert(child_mm.inherited.end(), kept.begin(), kept.end());
    const uint64_t before = cv.rec.nr_pages;
    cv.runs = std::move(own);
    cv.rec.nr_pages = 0;
    for (const image::ckpt_page_run& r : cv.runs) cv.rec.nr_pages += r.nr_pages;
    child_mm.rec.nr_pages -= before - cv.rec.nr_pages;
  }
  return moved;
}

}  // namespace ckpt::mm
