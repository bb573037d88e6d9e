// In-memory and faulty byte seams for tests of the stream.

#ifndef LIBCKPT_LIB_IMAGE_TESTING_H_
#define LIBCKPT_LIB_IMAGE_TESTING_H_

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "lib/base/status.h"
#include "lib/image/io.h"

namespace ckpt::image {

class MemorySink : public ByteSink {
 public:
  absl::StatusOr<size_t> WriteV(const struct iovec* iov, int iovcnt) override {
    size_t n = 0;
    for (int i = 0; i < iovcnt; ++i) {
      bytes.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
      n += iov[i].iov_len;
    }
    return n;
  }
  std::string bytes;
};

// Accepts `capacity` bytes, then fails like a full disk.
class FullDiskSink : public MemorySink {
 public:
  explicit FullDiskSink(size_t capacity) : capacity_(capacity) {}
  absl::StatusOr<size_t> WriteV(const struct iovec* iov, int iovcnt) override {
    if (bytes.size() >= capacity_) return ErrnoError(ENOSPC, "writing the image");
    size_t room = capacity_ - bytes.size();
    size_t n = 0;
    for (int i = 0; i < iovcnt && room > 0; ++i) {
      size_t take = std::min(room, iov[i].iov_len);
      bytes.append(static_cast<const char*>(iov[i].iov_base), take);
      room -= take;
      n += take;
    }
    return n;
  }

 private:
  size_t capacity_;
};

// Serves `data`, at most `chunk` bytes per call (a slow pipe).
class MemorySource : public ByteSource {
 public:
  explicit MemorySource(std::string data, size_t chunk = SIZE_MAX)
      : data_(std::move(data)), chunk_(chunk) {}
  absl::StatusOr<size_t> ReadV(const struct iovec* iov, int iovcnt) override {
    size_t n = 0;
    for (int i = 0; i < iovcnt; ++i) {
      size_t take = std::min({iov[i].iov_len, data_.size() - at_, chunk_ - n});
      std::memcpy(iov[i].iov_base, data_.data() + at_, take);
      at_ += take;
      n += take;
      if (take < iov[i].iov_len) break;
    }
    return n;
  }

 private:
  std::string data_;
  size_t chunk_;
  size_t at_ = 0;
};

}  // namespace ckpt::image

#endif  // LIBCKPT_LIB_IMAGE_TESTING_H_
