#include "lib/image/io.h"

#include <cerrno>

#include "lib/base/status.h"

namespace ckpt::image {

absl::StatusOr<size_t> FdSink::WriteV(const struct iovec* iov, int iovcnt) {
  for (;;) {
    ssize_t n = ::writev(fd_, iov, iovcnt);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) return ErrnoError(errno, "writing the image");
  }
}

absl::StatusOr<size_t> FdSource::ReadV(const struct iovec* iov, int iovcnt) {
  for (;;) {
    ssize_t n = ::readv(fd_, iov, iovcnt);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) return ErrnoError(errno, "reading the image");
  }
}

}  // namespace ckpt::image
