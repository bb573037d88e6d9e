#include "lib/image/checksum.h"

#include <xxhash.h>

namespace ckpt::image {

StreamChecksum::StreamChecksum() : state_(XXH3_createState()) {
  XXH3_64bits_reset(static_cast<XXH3_state_t*>(state_));
}

StreamChecksum::~StreamChecksum() { XXH3_freeState(static_cast<XXH3_state_t*>(state_)); }

void StreamChecksum::Update(const void* data, size_t len) {
  if (len > 0) XXH3_64bits_update(static_cast<XXH3_state_t*>(state_), data, len);
}

uint64_t StreamChecksum::Digest() const {
  return XXH3_64bits_digest(static_cast<const XXH3_state_t*>(state_));
}

}  // namespace ckpt::image
