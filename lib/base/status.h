// Status helpers shared by every layer: errno conversion and the two
// propagation macros Abseil does not ship publicly.
//
//   RETURN_IF_ERROR(writer.Append(...));
//   ASSIGN_OR_RETURN(auto maps, ReadFile("/proc/1/maps"));
//   return ErrnoError(errno, "ptrace(SEIZE) of task ", pid);

#ifndef LIBCKPT_LIB_BASE_STATUS_H_
#define LIBCKPT_LIB_BASE_STATUS_H_

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace ckpt {

// The payload type URL under which a Status carries the errno it came
// from, as decimal text ("32" for EPIPE). The canonical code alone cannot
// say which errno it was: EPIPE, EBUSY and ENOSPC all map to codes that
// other errnos share.
inline constexpr absl::string_view kErrnoPayloadUrl = "type.libckpt/errno";

// A Status whose code follows errno (ENOENT -> NotFound, EPERM ->
// PermissionDenied, ...), whose message ends with strerror's text, so a
// CLI user sees "open /x: No such file or directory", and which carries
// `err` itself (kErrnoPayloadUrl) for StatusToErrno.
absl::Status ErrnoStatus(int err, absl::string_view message);

template <typename... Args>
absl::Status ErrnoError(int err, const Args&... what) {
  return ErrnoStatus(err, absl::StrCat(what...));
}

// `status` (any code) marked as having come from errno `err`: for a caller
// that picks its own code but wants the C ABI to return the real errno.
absl::Status WithErrno(absl::Status status, int err);

// Adds context in front of a Status's message, keeping its code and its
// payloads (the errno among them).
absl::Status Annotate(const absl::Status& status, absl::string_view context);

// `status` with its message replaced, keeping its code and its payloads.
// Rebuilding a Status as absl::Status(code, text) loses the errno.
absl::Status WithMessage(const absl::Status& status, absl::string_view message);

// The errno a Status came from: its kErrnoPayloadUrl payload when it has
// one, else the errno its code usually stands for (EIO when none does).
// The C ABI returns its negation.
int StatusToErrno(const absl::Status& status);

}  // namespace ckpt

#define CKPT_CONCAT_INNER_(a, b) a##b
#define CKPT_CONCAT_(a, b) CKPT_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                   \
  do {                                          \
    ::absl::Status ckpt_status_ = (expr);       \
    if (!ckpt_status_.ok()) return ckpt_status_; \
  } while (0)

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(CKPT_CONCAT_(ckpt_statusor_, __LINE__), lhs, expr)

#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return tmp.status();          \
  lhs = std::move(tmp).value()

#endif  // LIBCKPT_LIB_BASE_STATUS_H_
