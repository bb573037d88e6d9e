// `ckpt show`: prints an image record by record.

#ifndef LIBCKPT_TOOLS_CKPT_SHOW_H_
#define LIBCKPT_TOOLS_CKPT_SHOW_H_

#include <cstdio>

#include "absl/status/status.h"

namespace ckpt::cli {

// Decodes the image read from `fd` to `out`, as text or as one JSON
// document. Stops at the first invalid record with its error.
absl::Status ShowImage(int fd, bool json, FILE* out);

}  // namespace ckpt::cli

#endif  // LIBCKPT_TOOLS_CKPT_SHOW_H_
