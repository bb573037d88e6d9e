// `ckpt show`: prints an image record by record.

#ifndef LIBCKPT_TOOLS_CKPT_SHOW_H_
#define LIBCKPT_TOOLS_CKPT_SHOW_H_

#include <cstdio>

#include "absl/status/status.h"

namespace ckpt::cli {

// Decodes the image read from `fd` to `out`, as text or as one JSON
// document. Stops at the first invalid record with its error (the JSON
// document is still whole, and says so in its "error" member).
//
// Whatever bytes the image's strings (char arrays, paths, notes) hold, the
// output is plain printable ASCII and newlines. Text: one line a record,
// every byte outside 0x20-0x7e and every '\' as \xNN. JSON: every string
// is a byte string, each character (U+0000-U+00FF) one byte, the bytes
// outside printable ASCII written \u00NN; numbers are 64-bit integers in
// decimal. docs/image-format.md has what a reader needs.
absl::Status ShowImage(int fd, bool json, FILE* out);

}  // namespace ckpt::cli

#endif  // LIBCKPT_TOOLS_CKPT_SHOW_H_
