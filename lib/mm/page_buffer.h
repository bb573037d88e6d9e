// The restorer's and dumper's staging buffer for page contents: mapped
// anonymously, kept out of forked children (MADV_DONTFORK: the restore
// forks tasks while it holds one), grown on demand and reused, so that its
// pages are touched once per process rather than once per page array.

#ifndef LIBCKPT_LIB_MM_PAGE_BUFFER_H_
#define LIBCKPT_LIB_MM_PAGE_BUFFER_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"

namespace ckpt::mm {

class PageBuffer {
 public:
  PageBuffer() = default;
  ~PageBuffer();
  PageBuffer(const PageBuffer&) = delete;
  PageBuffer& operator=(const PageBuffer&) = delete;

  // At least `len` bytes (rounded up to pages).
  absl::StatusOr<uint8_t*> Get(size_t len);

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace ckpt::mm

#endif  // LIBCKPT_LIB_MM_PAGE_BUFFER_H_
