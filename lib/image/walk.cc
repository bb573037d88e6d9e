#include "lib/image/walk.h"

#include <cstring>
#include <vector>

#include "lib/base/status.h"

namespace ckpt::image {

absl::Status WalkImage(ByteSource* source, const RecordVisitor& visit) {
  Reader reader(source);
  ASSIGN_OR_RETURN(ckpt_image_header header, reader.ReadImageHeader());
  std::vector<uint8_t> payload(sizeof(header));
  std::memcpy(payload.data(), &header, sizeof(header));
  RETURN_IF_ERROR(visit(reader.current(), payload));
  for (;;) {
    ASSIGN_OR_RETURN(Record rec, reader.Next());
    if (rec.type == CKPT_HDR_TAIL) {
      payload.resize(sizeof(ckpt_tail));
      std::memcpy(payload.data(), &reader.tail(), sizeof(ckpt_tail));
    } else if (rec.type == CKPT_HDR_PAGE_DATA) {
      RETURN_IF_ERROR(reader.SkipPayload());
      payload.clear();
    } else {
      // rec.len was bounded by the record type's limit in Next().
      payload.resize(rec.len);
      RETURN_IF_ERROR(reader.ReadPayload(payload.data(), payload.size()));
    }
    RETURN_IF_ERROR(visit(rec, payload));
    if (rec.type == CKPT_HDR_TAIL) return absl::OkStatus();
  }
}

}  // namespace ckpt::image
