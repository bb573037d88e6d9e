// The restore driver.

#include "ckpt/ckpt.hpp"
#include "lib/base/status.h"
#include "lib/image/reader.h"

namespace ckpt {

absl::StatusOr<pid_t> Restorer::Restore(int in_fd) {
  image::FdSource source(in_fd);
  image::Reader reader(&source);
  ASSIGN_OR_RETURN(image::ckpt_image_header header, reader.ReadImageHeader());
  (void)header;
  return absl::UnimplementedError("restore is not supported yet");
}

}  // namespace ckpt
