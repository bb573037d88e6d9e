#include "lib/image/reader.h"

#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "lib/base/status.h"

namespace ckpt::image {

Reader::Reader(ByteSource* source, size_t buffer_size)
    : source_(source), buffer_(std::max<size_t>(buffer_size, 4096)) {}


std::string Reader::Where(const Record& rec) {
  return absl::StrCat("image record #", rec.index, " (", RecordName(rec.type), ") at offset ",
                      rec.offset);
}

absl::Status Reader::WrongType(const Record& rec, uint32_t expected) const {
  return absl::InvalidArgumentError(absl::StrCat(Where(rec), ": expected a ",
                                                 RecordName(expected), " record here"));
}

absl::StatusOr<size_t> Reader::Fill() {
  if (eof_) return 0;
  pos_ = end_ = 0;
  if (buffer_.data() == nullptr) return absl::ResourceExhaustedError("the image reader has no buffer");
  struct iovec iov = {buffer_.data(), buffer_.size()};
  ASSIGN_OR_RETURN(size_t n, source_->ReadV(&iov, 1));
  if (n == 0) eof_ = true;
  end_ = n;
  return n;
}

absl::Status Reader::Consume(void* dst, size_t len, bool hash, absl::string_view what) {
  struct iovec iov = {dst, len};
  if (!hash) {
    // Only the tail is read without hashing; it is small and buffered.
    char* p = static_cast<char*>(dst);
    while (len > 0) {
      if (pos_ == end_) {
        ASSIGN_OR_RETURN(size_t n, Fill());
        if (n == 0) {
          return absl::DataLossError(absl::StrCat("image truncated: ", what, " at offset ",
                                                  offset_, " needs ", len, " more bytes"));
        }
      }
      size_t n = std::min(len, end_ - pos_);
      std::memcpy(p, reinterpret_cast<char*>(buffer_.data()) + pos_, n);
      pos_ += n;
      p += n;
      len -= n;
      offset_ += n;
    }
    return absl::OkStatus();
  }
  return ConsumeV(&iov, 1, what);
}

absl::Status Reader::ConsumeV(struct iovec* iov, int iovcnt, absl::string_view what) {
  uint64_t total = 0;
  for (int i = 0; i < iovcnt; ++i) total += iov[i].iov_len;
  int first = 0;
  auto advance = [&](size_t n) {
    while (n > 0 && first < iovcnt) {
      size_t take = std::min(n, iov[first].iov_len);
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + take;
      iov[first].iov_len -= take;
      n -= take;
      if (iov[first].iov_len == 0) ++first;
    }
  };
  while (first < iovcnt && iov[first].iov_len == 0) ++first;
  while (first < iovcnt) {
    if (pos_ < end_) {
      size_t n = std::min(iov[first].iov_len, end_ - pos_);
      std::memcpy(iov[first].iov_base, buffer_.data() + pos_, n);
      checksum_.Update(buffer_.data() + pos_, n);
      pos_ += n;
      offset_ += n;
      total -= n;
      advance(n);
      continue;
    }
    if (total >= buffer_.size() / 2) {
      // Large payloads (page contents) go straight to their destination.
      if (eof_) break;
      ASSIGN_OR_RETURN(size_t n, source_->ReadV(iov + first, iovcnt - first));
      if (n == 0) {
        eof_ = true;
        break;
      }
      size_t left = n;
      for (int i = first; left > 0; ++i) {
        size_t take = std::min(left, iov[i].iov_len);
        checksum_.Update(iov[i].iov_base, take);
        left -= take;
      }
      offset_ += n;
      total -= n;
      advance(n);
      continue;
    }
    ASSIGN_OR_RETURN(size_t n, Fill());
    if (n == 0) break;
  }
  if (first < iovcnt) {
    return absl::DataLossError(absl::StrCat("image truncated: ", what, " at offset ", offset_,
                                            " needs ", total, " more bytes"));
  }
  return absl::OkStatus();
}

absl::Status Reader::Discard(uint64_t len, bool must_be_zero, absl::string_view what) {
  char scratch[4096];
  while (len > 0) {
    size_t n = std::min<uint64_t>(len, sizeof(scratch));
    RETURN_IF_ERROR(Consume(scratch, n, /*hash=*/!finished_, what));
    if (must_be_zero) {
      for (size_t i = 0; i < n; ++i) {
        if (scratch[i] != 0) {
          return absl::InvalidArgumentError(
              absl::StrCat(Where(current_), ": padding after the payload is not zero"));
        }
      }
    }
    len -= n;
  }
  return absl::OkStatus();
}

absl::StatusOr<ckpt_image_header> Reader::ReadImageHeader() {
  if (header_read_) return absl::FailedPreconditionError("image header already read");
  header_read_ = true;
  ckpt_hdr hdr;
  current_ = Record{};
  RETURN_IF_ERROR(Consume(&hdr, sizeof(hdr), true, "the image header"));
  current_ = Record{hdr.type, hdr.flags, hdr.len, 0, 0, FindRecordSpec(hdr.type)};
  constexpr size_t kIdent = offsetof(ckpt_image_header, page_size);
  if (hdr.type != CKPT_HDR_IMAGE || hdr.len < kIdent) {
    return absl::InvalidArgumentError(
        "not a libckpt image: the stream does not begin with an image header");
  }
  ckpt_image_header h{};
  RETURN_IF_ERROR(Consume(&h, kIdent, true, "the image header"));
  if (std::memcmp(h.magic, kMagic, sizeof(kMagic)) != 0) {
    return absl::InvalidArgumentError("not a libckpt image: bad magic");
  }
  if (h.major != kFormatMajor) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "image format %u.%u is not supported: this libckpt reads format %u.x (up to %u.%u)",
        h.major, h.minor, kFormatMajor, kFormatMajor, kFormatMinor));
  }
  if (hdr.flags & ~kKnownHdrFlags) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: unknown header flags 0x%x", Where(current_), hdr.flags));
  }
  if (hdr.len < sizeof(h) || hdr.len > current_.spec->max_len) {
    return absl::InvalidArgumentError(absl::StrCat(Where(current_), ": payload of ", hdr.len,
                                                   " bytes does not fit its struct (",
                                                   sizeof(h), " bytes)"));
  }
  RETURN_IF_ERROR(Consume(reinterpret_cast<char*>(&h) + kIdent, sizeof(h) - kIdent, true,
                          "the image header"));
  remaining_ = hdr.len - sizeof(h);
  padding_ = AlignUp(hdr.len) - hdr.len;
  ++records_;
  if (h.arch != kArchX86_64) {
    return FieldError("arch", h.arch, " is not x86_64 (", kArchX86_64, ")");
  }
  long page = sysconf(_SC_PAGESIZE);
  if (h.page_size != static_cast<uint64_t>(page)) {
    return FieldError("page_size", h.page_size, " differs from this machine's ", page);
  }
  return h;
}

namespace {

// The fields of `spec` that say how long its variable part is: the
// lengths of its strings (and a pipe's data_size), a message's size.
std::string LengthFields(const RecordSpec& spec) {
  std::string out;
  for (const FieldSpec& f : spec.fields) {
    absl::string_view n = f.name;
    bool length = spec.tail == TailKind::kPaths ? absl::EndsWith(n, "_len") || n == "data_size"
                                                : spec.tail == TailKind::kRawBytes && n == "size";
    if (length) absl::StrAppend(&out, out.empty() ? "" : "/", n);
  }
  return out.empty() ? "len" : out;
}

}  // namespace

absl::Status Reader::LeftOver() const {
  // A record with a variable part (a path, an array, contents) whose
  // reader stopped short of its end: a length field says less than the
  // payload holds. Fields a later minor version appends can only follow
  // structs that have no variable part, so this is corruption.
  return FieldError(LengthFields(*current_.spec), remaining_, " of the payload's ", current_.len,
                    " bytes are left over after the fields and what they describe");
}

absl::StatusOr<Record> Reader::Next() {
  if (!header_read_) return absl::FailedPreconditionError("read the image header first");
  if (finished_) return absl::FailedPreconditionError("read past the image tail");
  if (remaining_ > 0 && remaining_ < current_.len && current_.spec != nullptr &&
      current_.spec->tail != TailKind::kNone) {
    return LeftOver();
  }
  for (;;) {
    RETURN_IF_ERROR(Discard(remaining_, false, "a record's payload"));
    remaining_ = 0;
    RETURN_IF_ERROR(Discard(padding_, true, "a record's padding"));
    padding_ = 0;
    ckpt_hdr hdr;
    Record rec;
    rec.offset = offset_;
    rec.index = records_;
    RETURN_IF_ERROR(Consume(&hdr, sizeof(hdr), false, "a record header (the image ends before its tail)"));
    rec.type = hdr.type;
    rec.flags = hdr.flags;
    rec.len = hdr.len;
    rec.spec = FindRecordSpec(hdr.type);
    current_ = rec;
    if (hdr.type == CKPT_HDR_TAIL) {
      RETURN_IF_ERROR(CheckTail(rec));
      return rec;
    }
    checksum_.Update(&hdr, sizeof(hdr));
    if (hdr.flags & ~kKnownHdrFlags) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: unknown header flags 0x%x", Where(rec), hdr.flags));
    }
    if (hdr.len > kMaxRecordLen) {
      return absl::InvalidArgumentError(absl::StrCat(Where(rec), ": length ", hdr.len,
                                                     " exceeds the ", kMaxRecordLen,
                                                     "-byte record limit"));
    }
    remaining_ = hdr.len;
    padding_ = AlignUp(hdr.len) - hdr.len;
    ++records_;
    if (rec.spec == nullptr) {
      if (hdr.flags & kHdrSkippable) continue;
      return absl::InvalidArgumentError(absl::StrCat(
          Where(rec), ": unknown record type ", hdr.type,
          " is not marked skippable (was the image written by a newer libckpt?)"));
    }
    if (hdr.type == CKPT_HDR_IMAGE) {
      return absl::InvalidArgumentError(absl::StrCat(Where(rec), ": a second image header"));
    }
    if (hdr.len < rec.spec->struct_size) {
      return absl::InvalidArgumentError(absl::StrCat(Where(rec), ": payload of ", hdr.len,
                                                     " bytes is shorter than its struct (",
                                                     rec.spec->struct_size, " bytes)"));
    }
    if (hdr.len > rec.spec->max_len) {
      return absl::InvalidArgumentError(absl::StrCat(Where(rec), ": payload of ", hdr.len,
                                                     " bytes exceeds the ", rec.spec->max_len,
                                                     "-byte limit of this record type"));
    }
    return rec;
  }
}

absl::Status Reader::CheckTail(const Record& rec) {
  const uint64_t digest = checksum_.Digest();
  if (rec.flags != 0 || rec.len != sizeof(ckpt_tail)) {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(rec), ": malformed tail (length ", rec.len, ", flags ", rec.flags, ")"));
  }
  ckpt_tail tail;
  RETURN_IF_ERROR(Consume(&tail, sizeof(tail), false, "the image tail"));
  finished_ = true;
  tail_ = tail;
  if (tail.nr_records != records_) {
    return absl::DataLossError(absl::StrCat(Where(rec), ": field 'nr_records': the tail counts ",
                                            tail.nr_records, " records, the stream had ",
                                            records_));
  }
  if (tail.checksum_algo != kChecksumXxh3 || tail.reserved != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        Where(rec), ": field 'checksum_algo': unknown algorithm ", tail.checksum_algo,
        " (reserved ", tail.reserved, ")"));
  }
  if (!checksum_skipped_ && tail.checksum != digest) {
    return absl::DataLossError(absl::StrFormat(
        "%s: field 'checksum': image checksum mismatch (tail says %016x, contents hash to "
        "%016x): the image is corrupt",
        Where(rec), tail.checksum, digest));
  }
  return absl::OkStatus();
}

absl::Status Reader::ExpectTail() {
  ASSIGN_OR_RETURN(Record rec, Next());
  if (rec.type != CKPT_HDR_TAIL) {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(rec), ": expected the image tail, found more records"));
  }
  return absl::OkStatus();
}

absl::Status Reader::ReadStruct(void* dst, size_t size) {
  if (current_.len < size) {
    return absl::InvalidArgumentError(absl::StrCat(Where(current_), ": payload of ", current_.len,
                                                   " bytes is shorter than its struct (", size,
                                                   " bytes)"));
  }
  if (remaining_ != current_.len) {
    return absl::FailedPreconditionError(
        absl::StrCat(Where(current_), ": struct read after the payload was consumed"));
  }
  return ReadPayload(dst, size);
}

absl::Status Reader::ReadPayload(void* dst, size_t len) {
  struct iovec iov = {dst, len};
  return ReadPayloadV(&iov, 1);
}

absl::Status Reader::ReadPayloadV(const struct iovec* iov_in, int iovcnt) {
  uint64_t total = 0;
  for (int i = 0; i < iovcnt; ++i) total += iov_in[i].iov_len;
  if (total > remaining_) {
    return absl::InvalidArgumentError(absl::StrCat(Where(current_), ": needs ", total,
                                                   " more payload bytes, has ", remaining_));
  }
  std::vector<struct iovec> iov(iov_in, iov_in + iovcnt);
  RETURN_IF_ERROR(ConsumeV(iov.data(), iovcnt, Where(current_)));
  remaining_ -= total;
  return absl::OkStatus();
}

absl::StatusOr<std::string> Reader::ReadString(size_t len, absl::string_view field) {
  if (len > remaining_) {
    return FieldError(field, "length ", len, " runs past the payload (", remaining_,
                      " bytes left)");
  }
  std::string s(len, '\0');
  RETURN_IF_ERROR(ReadPayload(s.data(), len));
  if (s.find('\0') != std::string::npos) return FieldError(field, "contains a NUL byte");
  return s;
}

absl::StatusOr<std::vector<uint8_t>> Reader::ReadArray(size_t elem_size, uint64_t max_items,
                                                       absl::string_view field) {
  if (remaining_ % elem_size != 0) {
    return FieldError(field, remaining_, " bytes is not a whole number of ", elem_size,
                      "-byte items");
  }
  if (remaining_ / elem_size > max_items) {
    return FieldError(field, remaining_ / elem_size, " items exceed the limit of ", max_items);
  }
  std::vector<uint8_t> out(remaining_);
  RETURN_IF_ERROR(ReadPayload(out.data(), out.size()));
  return out;
}

absl::Status Reader::SkipPayload() {
  RETURN_IF_ERROR(Discard(remaining_, false, Where(current_)));
  remaining_ = 0;
  return absl::OkStatus();
}

absl::StatusOr<bool> Reader::SkipUnread(uint64_t len) {
  if (len > remaining_) {
    return absl::InvalidArgumentError(absl::StrCat(Where(current_), ": skipping ", len,
                                                   " bytes, the payload has ", remaining_, " left"));
  }
  const uint64_t buffered = std::min<uint64_t>(len, end_ - pos_);
  if (len > buffered) {
    ASSIGN_OR_RETURN(bool skipped, source_->Skip(len - buffered));
    if (!skipped) return false;
  }
  pos_ += buffered;
  offset_ += len;
  remaining_ -= len;
  checksum_skipped_ = true;
  return true;
}

namespace {

// The image from an offset of a file, read with pread.
class PreadSource : public ByteSource {
 public:
  PreadSource(int fd, uint64_t offset) : fd_(fd), offset_(offset) {}
  absl::StatusOr<size_t> ReadV(const struct iovec* iov, int iovcnt) override {
    for (;;) {
      ssize_t n = preadv(fd_, iov, iovcnt, static_cast<off_t>(offset_));
      if (n >= 0) {
        offset_ += static_cast<uint64_t>(n);
        return static_cast<size_t>(n);
      }
      if (errno != EINTR) return ErrnoError(errno, "reading the image");
    }
  }

 private:
  int fd_;
  uint64_t offset_;
};

}  // namespace

absl::Status VerifyImage(int fd, uint64_t offset) {
  PreadSource source(fd, offset);
  Reader r(&source, 1 << 20);
  RETURN_IF_ERROR(r.ReadImageHeader().status());
  for (;;) {
    RETURN_IF_ERROR(r.SkipPayload());
    ASSIGN_OR_RETURN(Record rec, r.Next());
    if (rec.type == CKPT_HDR_TAIL) return absl::OkStatus();
  }
}

}  // namespace ckpt::image
