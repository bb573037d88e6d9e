// Finding the pages of a VMA worth saving: present or swapped out, and not
// a clean page of a file mapping nor the shared zero page.
//
// The PAGEMAP_SCAN ioctl (6.7+) answers with runs of pages in one call per
// few thousand runs; where it is missing, /proc/PID/pagemap is read, one
// 8-byte entry per page.
//
//   ASSIGN_OR_RETURN(PageScanner scanner, PageScanner::Open(pid));
//   ScanResult r;
//   RETURN_IF_ERROR(scanner.Scan(vma.start, vma.end, &r));

#ifndef LIBCKPT_LIB_MM_PAGESCAN_H_
#define LIBCKPT_LIB_MM_PAGESCAN_H_

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/base/fd.h"
#include "lib/image/format.h"
#include "lib/image/reader.h"

namespace ckpt::mm {

struct ScanResult {
  std::vector<image::ckpt_page_run> runs;  // pages to save, ascending
  uint64_t pages = 0;                      // pages in `runs`
  uint64_t skipped = 0;  // resident but not worth saving (file page cache, zero page)
};

class PageScanner {
 public:
  enum class Method { kPagemapScan, kPagemapFile };

  // `method` forces one way (benchmarks, tests); by default PAGEMAP_SCAN
  // when the kernel has it.
  static absl::StatusOr<PageScanner> Open(pid_t pid);
  static absl::StatusOr<PageScanner> Open(pid_t pid, Method method);

  // Appends the pages of [start, end) worth saving to `out`.
  absl::Status Scan(uint64_t start, uint64_t end, ScanResult* out);
  // Appends every page of [start, end) that is present or swapped out,
  // file pages included: the pages of a shared memory mapping.
  absl::Status ScanShared(uint64_t start, uint64_t end, ScanResult* out);

  Method method() const { return method_; }

 private:
  PageScanner(pid_t pid, UniqueFd fd, Method method)
      : pid_(pid), fd_(std::move(fd)), method_(method) {}
  struct Region {
    uint64_t start, end, categories;
  };
  absl::Status ScanIoctl(uint64_t start, uint64_t end, bool shared, ScanResult* out);
  absl::Status ScanFile(uint64_t start, uint64_t end, bool shared, ScanResult* out);

  pid_t pid_;
  UniqueFd fd_;
  Method method_;
  std::vector<Region> regions_;     // PAGEMAP_SCAN output, reused
  std::vector<uint64_t> entries_;   // pagemap entries, reused
};

// Appends [addr, addr + n pages) to runs, merging with the last run.
void AppendRun(std::vector<image::ckpt_page_run>* runs, uint64_t addr, uint64_t nr_pages);

// Reads the next record, which must be the PAGE_RUNS of a page array of
// `what`, and returns its runs (at least one); the caller checks them
// against what they address.
absl::StatusOr<std::vector<image::ckpt_page_run>> ReadPageRuns(image::Reader& r,
                                                               absl::string_view what);

}  // namespace ckpt::mm

#endif  // LIBCKPT_LIB_MM_PAGESCAN_H_
