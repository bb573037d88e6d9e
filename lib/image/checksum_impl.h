// Two builds of XXH3 (checksum_xxh3.inc), one per instruction set; the
// checksum picks one at run time.

#ifndef LIBCKPT_LIB_IMAGE_CHECKSUM_IMPL_H_
#define LIBCKPT_LIB_IMAGE_CHECKSUM_IMPL_H_

#include <cstddef>
#include <cstdint>

namespace ckpt::image {

struct ChecksumImpl {
  void* (*create)();
  void (*destroy)(void* state);
  void (*reset)(void* state);
  void (*update)(void* state, const void* data, size_t len);
  uint64_t (*digest)(const void* state);
};

const ChecksumImpl& ChecksumSse2();
const ChecksumImpl& ChecksumAvx2();

}  // namespace ckpt::image

#endif  // LIBCKPT_LIB_IMAGE_CHECKSUM_IMPL_H_
