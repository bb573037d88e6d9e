#include "lib/base/status.h"

#include <cerrno>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"

namespace ckpt {
namespace {

// The kernel's MAX_ERRNO: a larger value is not an errno.
constexpr int kMaxErrno = 4095;

// The errno a canonical code usually stands for, for a Status that did not
// come from a system call (or lost its payload on the way).
int CodeToErrno(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 0;
    case absl::StatusCode::kInvalidArgument:
      return EINVAL;
    case absl::StatusCode::kNotFound:
      return ENOENT;
    case absl::StatusCode::kAlreadyExists:
      return EEXIST;
    case absl::StatusCode::kPermissionDenied:
      return EPERM;
    case absl::StatusCode::kResourceExhausted:
      return ENOSPC;
    case absl::StatusCode::kFailedPrecondition:
      return EBUSY;
    case absl::StatusCode::kAborted:
      return EAGAIN;
    case absl::StatusCode::kOutOfRange:
      return ERANGE;
    case absl::StatusCode::kUnimplemented:
      return EOPNOTSUPP;
    case absl::StatusCode::kUnavailable:
      return EAGAIN;
    case absl::StatusCode::kDataLoss:
      return EBADMSG;
    case absl::StatusCode::kDeadlineExceeded:
      return ETIMEDOUT;
    case absl::StatusCode::kCancelled:
      return ECANCELED;
    default:
      return EIO;
  }
}

// The errno payload of `status`, or 0 when it has none (or a malformed one).
int PayloadErrno(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kErrnoPayloadUrl);
  if (!payload.has_value()) return 0;
  int err = 0;
  if (!absl::SimpleAtoi(std::string(*payload), &err) || err <= 0 || err > kMaxErrno) return 0;
  return err;
}

}  // namespace

absl::Status ErrnoStatus(int err, absl::string_view message) {
  return WithErrno(absl::ErrnoToStatus(err, message), err);
}

absl::Status WithErrno(absl::Status status, int err) {
  if (!status.ok() && err > 0 && err <= kMaxErrno) {
    status.SetPayload(kErrnoPayloadUrl, absl::Cord(absl::StrCat(err)));
  }
  return status;
}

absl::Status WithMessage(const absl::Status& status, absl::string_view message) {
  if (status.ok()) return status;
  absl::Status out(status.code(), message);
  status.ForEachPayload([&out](absl::string_view url, const absl::Cord& payload) {
    out.SetPayload(url, payload);
  });
  return out;
}

absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  return WithMessage(status, absl::StrCat(context, ": ", status.message()));
}

int StatusToErrno(const absl::Status& status) {
  if (status.ok()) return 0;
  int err = PayloadErrno(status);
  return err != 0 ? err : CodeToErrno(status.code());
}

}  // namespace ckpt
