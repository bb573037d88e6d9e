#include "lib/image/io.h"

#include <sys/stat.h>
#include <unistd.h>

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

absl::StatusOr<bool> FdSource::Skip(uint64_t len) {
  struct stat st;
  if (fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) return false;
  if (lseek(fd_, static_cast<off_t>(len), SEEK_CUR) < 0) return ErrnoError(errno, "skipping in the image");
  return true;
}

}  // namespace ckpt::image
