// Walks a whole image record by record, reading every payload (page
// contents are skipped, but still checksummed), and ends at the tail with
// its checks. `ckpt show` prints with it; tests validate images with it.
//
//   RETURN_IF_ERROR(WalkImage(&source, [](const Record& rec, auto payload) {
//     ...; return absl::OkStatus();
//   }));

#ifndef LIBCKPT_LIB_IMAGE_WALK_H_
#define LIBCKPT_LIB_IMAGE_WALK_H_

#include <cstdint>
#include <functional>
#include <span>

#include "absl/status/status.h"
#include "lib/image/io.h"
#include "lib/image/reader.h"

namespace ckpt::image {

// `payload` is empty for CKPT_HDR_PAGE_DATA records (their length is in
// rec.len). Called for the image header (index 0) and the tail too.
using RecordVisitor =
    std::function<absl::Status(const Record& rec, std::span<const uint8_t> payload)>;

absl::Status WalkImage(ByteSource* source, const RecordVisitor& visit);

}  // namespace ckpt::image

#endif  // LIBCKPT_LIB_IMAGE_WALK_H_
