// Kernel interfaces of lib/mm newer than Debian 12's 6.1 uapi headers,
// defined here from the kernel's include/uapi/linux/fs.h.

#ifndef LIBCKPT_LIB_MM_UAPI_H_
#define LIBCKPT_LIB_MM_UAPI_H_

#include <linux/ioctl.h>

#include <cstdint>

namespace ckpt::mm {

// PAGEMAP_SCAN (6.7): categories of pages, reported in page_region.
inline constexpr uint64_t kPageIsWpAllowed = 1u << 0;
inline constexpr uint64_t kPageIsWritten = 1u << 1;
inline constexpr uint64_t kPageIsFile = 1u << 2;
inline constexpr uint64_t kPageIsPresent = 1u << 3;
inline constexpr uint64_t kPageIsSwapped = 1u << 4;
inline constexpr uint64_t kPageIsPfnZero = 1u << 5;
inline constexpr uint64_t kPageIsHuge = 1u << 6;

struct page_region {
  uint64_t start;
  uint64_t end;  // exclusive
  uint64_t categories;
};

struct pm_scan_arg {
  uint64_t size;  // sizeof(pm_scan_arg)
  uint64_t flags;
  uint64_t start;
  uint64_t end;
  uint64_t walk_end;  // out: where the walk stopped
  uint64_t vec;       // page_region array
  uint64_t vec_len;
  uint64_t max_pages;
  uint64_t category_inverted;
  uint64_t category_mask;
  uint64_t category_anyof_mask;
  uint64_t return_mask;
};
static_assert(sizeof(pm_scan_arg) == 96);

inline constexpr unsigned long kPagemapScan = _IOWR('f', 16, struct pm_scan_arg);

// PROCMAP_QUERY (6.11): one VMA per ioctl on /proc/PID/maps.
struct procmap_query {
  uint64_t size;
  uint64_t query_flags;
  uint64_t query_addr;
  uint64_t vma_start;
  uint64_t vma_end;
  uint64_t vma_flags;
  uint64_t vma_page_size;
  uint64_t vma_offset;
  uint64_t inode;
  uint32_t dev_major;
  uint32_t dev_minor;
  uint32_t vma_name_size;
  uint32_t build_id_size;
  uint64_t vma_name_addr;
  uint64_t build_id_addr;
};
static_assert(sizeof(procmap_query) == 104);

inline constexpr unsigned long kProcmapQuery = _IOWR('f', 17, struct procmap_query);

}  // namespace ckpt::mm

#endif  // LIBCKPT_LIB_MM_UAPI_H_
