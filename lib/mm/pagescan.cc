#include "lib/mm/pagescan.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "lib/base/status.h"
#include "lib/mm/uapi.h"

namespace ckpt::mm {
namespace {

constexpr uint64_t kPage = 4096;
constexpr size_t kRegionsPerCall = 4096;
constexpr size_t kEntriesPerRead = 64 * 1024;

// /proc/PID/pagemap entry bits.
constexpr uint64_t kPmPresent = 1ull << 63;
constexpr uint64_t kPmSwapped = 1ull << 62;
constexpr uint64_t kPmFileOrShared = 1ull << 61;
constexpr uint64_t kPmPfnMask = (1ull << 55) - 1;

// The PFN of the shared zero page, as this process sees it (0 when PFNs are
// hidden, i.e. without CAP_SYS_ADMIN: then zero pages are saved as data).
uint64_t ZeroPfn() {
  static const uint64_t pfn = [] {
    void* p = mmap(nullptr, kPage, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return uint64_t{0};
    volatile char c = *static_cast<volatile char*>(p);
    (void)c;
    uint64_t entry = 0;
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      if (pread(fd, &entry, 8, static_cast<off_t>(reinterpret_cast<uint64_t>(p) / kPage * 8)) != 8) {
        entry = 0;
      }
      close(fd);
    }
    munmap(p, kPage);
    return (entry & kPmPresent) ? entry & kPmPfnMask : 0;
  }();
  return pfn;
}

bool HasPagemapScan(int fd) {
  static char probe;
  mm::pm_scan_arg arg{};
  arg.size = sizeof(arg);
  arg.start = reinterpret_cast<uint64_t>(&probe) & ~(kPage - 1);
  arg.end = arg.start + kPage;
  page_region r;
  arg.vec = reinterpret_cast<uint64_t>(&r);
  arg.vec_len = 1;
  arg.return_mask = kPageIsPresent;
  arg.category_anyof_mask = kPageIsPresent;
  // The pagemap fd of another task answers for that task's mm; probing it
  // at an address it may not have mapped is harmless.
  return ioctl(fd, kPagemapScan, &arg) >= 0 || errno != ENOTTY;
}

}  // namespace

void AppendRun(std::vector<image::ckpt_page_run>* runs, uint64_t addr, uint64_t nr_pages) {
  if (nr_pages == 0) return;
  if (!runs->empty() && runs->back().addr + runs->back().nr_pages * kPage == addr) {
    runs->back().nr_pages += nr_pages;
  } else {
    runs->push_back({addr, nr_pages});
  }
}

absl::StatusOr<PageScanner> PageScanner::Open(pid_t pid) {
  std::string path = absl::StrCat("/proc/", pid, "/pagemap");
  ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY));
  Method m = HasPagemapScan(fd.get()) ? Method::kPagemapScan : Method::kPagemapFile;
  return PageScanner(pid, std::move(fd), m);
}

absl::StatusOr<PageScanner> PageScanner::Open(pid_t pid, Method method) {
  ASSIGN_OR_RETURN(PageScanner s, Open(pid));
  if (method == Method::kPagemapScan && s.method_ != method) {
    return absl::UnimplementedError("this kernel has no PAGEMAP_SCAN ioctl");
  }
  s.method_ = method;
  return s;
}

absl::Status PageScanner::Scan(uint64_t start, uint64_t end, ScanResult* out) {
  if (start % kPage || end % kPage || end < start) {
    return absl::InvalidArgumentError(absl::StrFormat("scan of 0x%x-0x%x", start, end));
  }
  return method_ == Method::kPagemapScan ? ScanIoctl(start, end, false, out)
                                         : ScanFile(start, end, false, out);
}

absl::Status PageScanner::ScanShared(uint64_t start, uint64_t end, ScanResult* out) {
  if (start % kPage || end % kPage || end < start) {
    return absl::InvalidArgumentError(absl::StrFormat("scan of 0x%x-0x%x", start, end));
  }
  return method_ == Method::kPagemapScan ? ScanIoctl(start, end, true, out)
                                         : ScanFile(start, end, true, out);
}

absl::Status PageScanner::ScanIoctl(uint64_t start, uint64_t end, bool shared,
                                    ScanResult* out) {
  static_assert(sizeof(Region) == sizeof(page_region));
  if (regions_.empty()) regions_.resize(kRegionsPerCall);
  std::vector<Region>& regions = regions_;
  uint64_t at = start;
  while (at < end) {
    pm_scan_arg arg{};
    arg.size = sizeof(arg);
    arg.start = at;
    arg.end = end;
    arg.vec = reinterpret_cast<uint64_t>(regions.data());
    arg.vec_len = regions.size();
    arg.category_anyof_mask = kPageIsPresent | kPageIsSwapped;
    arg.return_mask = kPageIsPresent | kPageIsSwapped | kPageIsFile | kPageIsPfnZero;
    long n = ioctl(fd_.get(), kPagemapScan, &arg);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, absl::StrFormat("task %d: PAGEMAP_SCAN of 0x%x-0x%x", pid_, at, end));
    }
    for (long i = 0; i < n; ++i) {
      const Region& r = regions[i];
      uint64_t pages = (r.end - r.start) / kPage;
      // A clean page of a file mapping is read back from the file; the
      // zero page reads as zeros. Anything else (anonymous memory, and
      // the copy-on-write copies in a private file mapping) is saved.
      const uint64_t skip = shared ? kPageIsPfnZero : (kPageIsFile | kPageIsPfnZero);
      if (r.categories & skip) {
        out->skipped += pages;
      } else {
        AppendRun(&out->runs, r.start, pages);
        out->pages += pages;
      }
    }
    // A short vector means the walk is done; after a full one, walk_end
    // may lag, so continue after the last region returned.
    if (static_cast<size_t>(n) < regions.size()) break;
    at = regions[n - 1].end;
  }
  return absl::OkStatus();
}

absl::Status PageScanner::ScanFile(uint64_t start, uint64_t end, bool shared,
                                   ScanResult* out) {
  if (entries_.empty()) entries_.resize(kEntriesPerRead);
  std::vector<uint64_t>& entries = entries_;
  const uint64_t zero_pfn = ZeroPfn();
  for (uint64_t at = start; at < end;) {
    size_t n = std::min<uint64_t>(entries.size(), (end - at) / kPage);
    ssize_t got = pread(fd_.get(), entries.data(), n * 8, static_cast<off_t>(at / kPage * 8));
    if (got < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, absl::StrFormat("task %d: read pagemap at 0x%x", pid_, at));
    }
    if (got == 0 || got % 8 != 0) {
      return absl::DataLossError(absl::StrFormat("task %d: short pagemap read at 0x%x", pid_, at));
    }
    size_t count = static_cast<size_t>(got) / 8;
    for (size_t i = 0; i < count; ++i) {
      uint64_t e = entries[i];
      if (!(e & (kPmPresent | kPmSwapped))) continue;
      bool zero = (e & kPmPresent) && zero_pfn != 0 && (e & kPmPfnMask) == zero_pfn;
      if ((!shared && (e & kPmFileOrShared)) || zero) {
        ++out->skipped;
      } else {
        AppendRun(&out->runs, at + i * kPage, 1);
        ++out->pages;
      }
    }
    at += count * kPage;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<image::ckpt_page_run>> ReadPageRuns(image::Reader& r,
                                                               absl::string_view what) {
  ASSIGN_OR_RETURN(image::Record rec, r.Next());
  if (rec.type != image::CKPT_HDR_PAGE_RUNS) {
    return absl::InvalidArgumentError(
        absl::StrCat(image::Reader::Where(rec), ": expected the PAGE_RUNS of ", what));
  }
  ASSIGN_OR_RETURN(std::vector<uint8_t> raw,
                   r.ReadArray(sizeof(image::ckpt_page_run), image::kMaxPageRuns, "runs"));
  // Refused before the copy: memcpy is never given the null data() of an
  // empty vector.
  if (raw.empty()) return r.FieldError("runs", "a page array without pages");
  std::vector<image::ckpt_page_run> runs(raw.size() / sizeof(image::ckpt_page_run));
  std::memcpy(runs.data(), raw.data(), raw.size());
  return runs;
}

}  // namespace ckpt::mm
