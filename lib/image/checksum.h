// The image checksum: XXH3-64 (seed 0) of every byte before the tail
// record, computed incrementally as the stream goes by.

#ifndef LIBCKPT_LIB_IMAGE_CHECKSUM_H_
#define LIBCKPT_LIB_IMAGE_CHECKSUM_H_

#include <cstddef>
#include <cstdint>

namespace ckpt::image {

class StreamChecksum {
 public:
  StreamChecksum();
  ~StreamChecksum();
  StreamChecksum(const StreamChecksum&) = delete;
  StreamChecksum& operator=(const StreamChecksum&) = delete;

  void Update(const void* data, size_t len);
  uint64_t Digest() const;

 private:
  void* state_;  // XXH3_state_t, kept out of this header
};

}  // namespace ckpt::image

#endif  // LIBCKPT_LIB_IMAGE_CHECKSUM_H_
