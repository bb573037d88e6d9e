// Rewrites an image record by record, letting a test change payloads and
// re-checksumming the result: for images that are valid streams but
// describe something this machine cannot restore (another vdso layout).

#ifndef LIBCKPT_TESTS_E2E_IMAGE_EDIT_H_
#define LIBCKPT_TESTS_E2E_IMAGE_EDIT_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"

namespace ckpt::testing {

// `edit` sees each record's type and payload (page contents included) and
// may change the payload in place.
using RecordEdit = std::function<void(uint32_t type, std::string* payload)>;

absl::Status RewriteImage(const std::string& in, const std::string& out, const RecordEdit& edit);

}  // namespace ckpt::testing

#endif  // LIBCKPT_TESTS_E2E_IMAGE_EDIT_H_
