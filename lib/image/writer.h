// Writer: emits the record stream to any ByteSink, front to back, never
// seeking, so the image may go straight into a pipe or a socket.
//
//   FdSink sink(fd);
//   Writer writer(&sink);
//   RETURN_IF_ERROR(writer.WriteImageHeader(DefaultImageHeader()));
//   RETURN_IF_ERROR(writer.AppendStruct(CKPT_HDR_TREE, tree));
//   RETURN_IF_ERROR(writer.Finish());  // tail: record count and checksum
//
// Small payloads are gathered in a buffer; large ones (page contents) go to
// the sink straight from the caller's memory in one writev with whatever is
// buffered. The first error sticks: every later call returns it.

#ifndef LIBCKPT_LIB_IMAGE_WRITER_H_
#define LIBCKPT_LIB_IMAGE_WRITER_H_

#include <sys/uio.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "lib/base/buffer.h"
#include "lib/image/checksum.h"
#include "lib/image/format.h"
#include "lib/image/io.h"

namespace ckpt::image {

// An image header with magic, versions, arch, page size, kernel release
// and both clocks filled in for "now".
ckpt_image_header DefaultImageHeader();

class Writer {
 public:
  explicit Writer(ByteSink* sink, size_t buffer_size = 256 << 10);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // The first record of every image.
  absl::Status WriteImageHeader(const ckpt_image_header& header);

  // One record whose payload is the concatenation of `parts`.
  absl::Status AppendV(uint32_t type, const struct iovec* parts, int nr_parts,
                       uint32_t flags = 0);
  absl::Status Append(uint32_t type, const void* data, size_t len, uint32_t flags = 0);

  template <typename T>
  absl::Status AppendStruct(uint32_t type, const T& value) {
    return Append(type, &value, sizeof(T));
  }
  // A struct followed by a variable part (a path, an array).
  template <typename T>
  absl::Status AppendStructWith(uint32_t type, const T& value, const void* tail,
                                size_t tail_len) {
    struct iovec parts[2] = {{const_cast<T*>(&value), sizeof(T)},
                             {const_cast<void*>(tail), tail_len}};
    return AppendV(type, parts, tail_len ? 2 : 1);
  }

  // Writes the tail record (record count, checksum) and flushes.
  absl::Status Finish();

  absl::Status Flush();

  uint64_t records() const { return records_; }
  uint64_t bytes() const { return bytes_; }

 private:
  absl::Status Emit(const struct iovec* iov, int iovcnt);
  absl::Status BufferBytes(const void* data, size_t len);
  absl::Status FlushWith(const struct iovec* extra, int nr_extra);

  ByteSink* sink_;
  Buffer buffer_;
  size_t used_ = 0;
  uint64_t records_ = 0;
  uint64_t bytes_ = 0;
  StreamChecksum checksum_;
  absl::Status error_;
  bool header_written_ = false;
  bool finished_ = false;
};

}  // namespace ckpt::image

#endif  // LIBCKPT_LIB_IMAGE_WRITER_H_
