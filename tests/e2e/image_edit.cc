#include "tests/e2e/image_edit.h"

#include <fcntl.h>

#include <cstring>

#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/image/reader.h"
#include "lib/image/writer.h"

namespace ckpt::testing {

absl::Status RewriteImage(const std::string& in, const std::string& out, const RecordEdit& edit) {
  ASSIGN_OR_RETURN(UniqueFd ifd, OpenFile(in, O_RDONLY));
  ASSIGN_OR_RETURN(UniqueFd ofd, OpenFile(out, O_WRONLY | O_CREAT | O_TRUNC, 0600));
  image::FdSource source(ifd.get());
  image::FdSink sink(ofd.get());
  image::Reader r(&source);
  image::Writer w(&sink);
  ASSIGN_OR_RETURN(image::ckpt_image_header header, r.ReadImageHeader());
  std::string payload(reinterpret_cast<char*>(&header), sizeof(header));
  edit(image::CKPT_HDR_IMAGE, &payload);
  std::memcpy(&header, payload.data(), sizeof(header));
  RETURN_IF_ERROR(w.WriteImageHeader(header));
  for (;;) {
    ASSIGN_OR_RETURN(image::Record rec, r.Next());
    if (rec.type == image::CKPT_HDR_TAIL) break;
    payload.resize(rec.len);
    RETURN_IF_ERROR(r.ReadPayload(payload.data(), payload.size()));
    edit(rec.type, &payload);
    RETURN_IF_ERROR(w.Append(rec.type, payload.data(), payload.size(), rec.flags));
  }
  return w.Finish();
}

}  // namespace ckpt::testing
