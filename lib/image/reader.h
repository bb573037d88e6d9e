// Reader: reads the record stream front to back from any ByteSource and
// validates every type, length and count before it allocates or copies.
//
//   FdSource source(fd);
//   Reader reader(&source);
//   ASSIGN_OR_RETURN(ckpt_image_header header, reader.ReadImageHeader());
//   ASSIGN_OR_RETURN(ckpt_tree tree, reader.Expect<ckpt_tree>(CKPT_HDR_TREE));
//   ...
//   RETURN_IF_ERROR(reader.ExpectTail());  // record count and checksum
//
// Errors are InvalidArgument (a field or framing is wrong), DataLoss (the
// stream ends early or the checksum differs) or the source's own error; the
// message names the record (number, type, offset) and the field.

#ifndef LIBCKPT_LIB_IMAGE_READER_H_
#define LIBCKPT_LIB_IMAGE_READER_H_

#include <sys/uio.h>

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "lib/base/buffer.h"
#include "lib/image/checksum.h"
#include "lib/image/format.h"
#include "lib/image/io.h"
#include "lib/image/records.h"

namespace ckpt::image {

// The header of the record the Reader is positioned in.
struct Record {
  uint32_t type = 0;
  uint32_t flags = 0;
  uint64_t len = 0;     // payload bytes
  uint64_t index = 0;   // 0 is the image header
  uint64_t offset = 0;  // stream offset of the record header
  const RecordSpec* spec = nullptr;
};

class Reader {
 public:
  explicit Reader(ByteSource* source, size_t buffer_size = 256 * 1024);
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  // Reads and checks the first record: magic, major version, arch, page
  // size. Must come first.
  absl::StatusOr<ckpt_image_header> ReadImageHeader();

  // Positions the reader at the next record, skipping what is left of the
  // current payload and any unknown record flagged skippable. At the tail
  // record it checks the record count and the checksum and returns it.
  absl::StatusOr<Record> Next();

  // Next(), then requires `type` and reads its fixed struct. A payload
  // shorter than T is an error; bytes after T stay unread (a tail, or
  // fields of a later minor version).
  template <typename T>
  absl::StatusOr<T> Expect(uint32_t type) {
    absl::StatusOr<Record> rec = Next();
    if (!rec.ok()) return rec.status();
    if (rec->type != type) return WrongType(*rec, type);
    T value;
    absl::Status st = ReadStruct(&value, sizeof(T));
    if (!st.ok()) return st;
    return value;
  }

  // Requires the next record to be the tail (all its checks pass).
  absl::Status ExpectTail();

  // Reads the current record's fixed struct (`size` bytes from the start of
  // its payload); an error if the payload is shorter.
  absl::Status ReadStruct(void* dst, size_t size);
  // Reads the next `len` payload bytes; an error if fewer remain.
  absl::Status ReadPayload(void* dst, size_t len);
  // Same, scattered (page contents straight into their buffers).
  absl::Status ReadPayloadV(const struct iovec* iov, int iovcnt);
  // The next `len` payload bytes as a string; `field` names them in errors.
  absl::StatusOr<std::string> ReadString(size_t len, absl::string_view field);
  // Reads the rest of the payload as an array of `elem_size`-byte items;
  // at most `max_items`, and the remaining length must divide evenly.
  absl::StatusOr<std::vector<uint8_t>> ReadArray(size_t elem_size, uint64_t max_items,
                                                 absl::string_view field);
  absl::Status SkipPayload();
  // Skips the next `len` payload bytes without reading them where the
  // source can (a file; a lazy restore reads them later from there), and
  // without hashing them: the tail's checksum is then not checked here
  // (checksum_skipped), only its record count; VerifyImage checks it.
  // False where the source cannot skip (nothing was consumed then).
  absl::StatusOr<bool> SkipUnread(uint64_t len);
  bool checksum_skipped() const { return checksum_skipped_; }

  const Record& current() const { return current_; }
  uint64_t payload_remaining() const { return remaining_; }
  uint64_t offset() const { return offset_; }
  bool finished() const { return finished_; }
  // The tail, once Next() has returned it.
  const ckpt_tail& tail() const { return tail_; }

  // InvalidArgument naming the current record and `field`.
  template <typename... Args>
  absl::Status FieldError(absl::string_view field, const Args&... what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(current_), ": field '", field, "': ", what...));
  }

  // "image record #12 (VMA) at offset 4096"
  static std::string Where(const Record& rec);

 private:
  absl::Status WrongType(const Record& rec, uint32_t expected) const;
  absl::Status LeftOver() const;
  // Exactly `len` bytes from the stream, or DataLoss naming `what`.
  absl::Status Consume(void* dst, size_t len, bool hash, absl::string_view what);
  absl::Status ConsumeV(struct iovec* iov, int iovcnt, absl::string_view what);
  absl::Status Discard(uint64_t len, bool must_be_zero, absl::string_view what);
  absl::StatusOr<size_t> Fill();
  absl::Status CheckTail(const Record& rec);

  ByteSource* source_;
  Buffer buffer_;
  size_t pos_ = 0;
  size_t end_ = 0;
  uint64_t offset_ = 0;       // stream bytes consumed
  uint64_t records_ = 0;      // records seen, tail excluded
  uint64_t remaining_ = 0;    // payload bytes left in the current record
  uint64_t padding_ = 0;      // padding after the current payload
  Record current_;
  StreamChecksum checksum_;
  ckpt_tail tail_{};
  bool header_read_ = false;
  bool finished_ = false;
  bool eof_ = false;
  bool checksum_skipped_ = false;
};

// Reads the whole image at `fd` from `offset` with pread (the fd's own
// position is left alone), checking every record's framing, the record
// count and the checksum, as a restore would (a lazy restore, whose own
// reader skipped the page contents, checks them so).
absl::Status VerifyImage(int fd, uint64_t offset);

}  // namespace ckpt::image

#endif  // LIBCKPT_LIB_IMAGE_READER_H_
