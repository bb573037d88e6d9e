// The byte seam under the image Writer and Reader: any fd (file, pipe,
// socket) in production, a faulty one in tests.
//
//   FdSink sink(out_fd);
//   Writer writer(&sink);

#ifndef LIBCKPT_LIB_IMAGE_IO_H_
#define LIBCKPT_LIB_IMAGE_IO_H_

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"

namespace ckpt::image {

// Where image bytes go. WriteV may write fewer bytes than asked; the caller
// loops. It never seeks.
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual absl::StatusOr<size_t> WriteV(const struct iovec* iov, int iovcnt) = 0;
};

// Where image bytes come from. ReadV may return fewer bytes than asked and
// returns 0 only at end of stream.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual absl::StatusOr<size_t> ReadV(const struct iovec* iov, int iovcnt) = 0;
  // Moves `len` bytes on without reading them, where the source can (a
  // file): false where it cannot (a pipe), and then nothing moved.
  virtual absl::StatusOr<bool> Skip(uint64_t len) {
    (void)len;
    return false;
  }
};

class FdSink : public ByteSink {
 public:
  explicit FdSink(int fd) : fd_(fd) {}
  absl::StatusOr<size_t> WriteV(const struct iovec* iov, int iovcnt) override;

 private:
  int fd_;
};

class FdSource : public ByteSource {
 public:
  explicit FdSource(int fd) : fd_(fd) {}
  absl::StatusOr<size_t> ReadV(const struct iovec* iov, int iovcnt) override;
  absl::StatusOr<bool> Skip(uint64_t len) override;

 private:
  int fd_;
};

}  // namespace ckpt::image

#endif  // LIBCKPT_LIB_IMAGE_IO_H_
