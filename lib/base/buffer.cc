#include "lib/base/buffer.h"

#include <sys/mman.h>

#include "lib/base/status.h"

namespace ckpt {

Buffer::~Buffer() {
  if (data_ != nullptr) munmap(data_, size_);
}

absl::StatusOr<uint8_t*> Buffer::Get(size_t len) {
  len = (len + 4095) & ~size_t{4095};
  if (len == 0) len = 4096;
  if (len <= size_) return data_;
  if (data_ != nullptr) munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return ErrnoError(errno, "mapping a ", len, "-byte buffer");
  madvise(p, len, MADV_DONTFORK);
  // Best effort: an old kernel without MADV_POPULATE_WRITE faults pages in
  // as they are used.
  madvise(p, len, MADV_POPULATE_WRITE);
  data_ = static_cast<uint8_t*>(p);
  size_ = len;
  return data_;
}

}  // namespace ckpt
