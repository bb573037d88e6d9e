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

// A Status whose code follows errno (ENOENT -> NotFound, EPERM ->
// PermissionDenied, ...) and whose message ends with strerror's text, so a
// CLI user sees "open /x: No such file or directory".
template <typename... Args>
absl::Status ErrnoError(int err, const Args&... what) {
  return absl::ErrnoToStatus(err, absl::StrCat(what...));
}

// Adds context in front of a Status's message, keeping its code.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

// The errno a Status came from, or EIO when it did not come from one. The C
// ABI returns its negation.
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
