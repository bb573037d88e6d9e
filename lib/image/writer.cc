#include "lib/image/writer.h"

#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "lib/base/status.h"

namespace ckpt::image {
namespace {

// Parts at least this large bypass the buffer.
constexpr size_t kDirectWrite = 64 * 1024;
constexpr char kZeros[kAlign] = {};

uint64_t ClockNs(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

ckpt_image_header DefaultImageHeader() {
  ckpt_image_header h{};
  std::memcpy(h.magic, kMagic, sizeof(h.magic));
  h.major = kFormatMajor;
  h.minor = kFormatMinor;
  h.arch = kArchX86_64;
  h.page_size = static_cast<uint32_t>(sysconf(_SC_PAGESIZE));
  h.created_realtime_ns = ClockNs(CLOCK_REALTIME);
  h.created_boottime_ns = ClockNs(CLOCK_BOOTTIME);
  struct utsname u;
  if (uname(&u) == 0) {
    std::strncpy(h.kernel_release, u.release, sizeof(h.kernel_release) - 1);
  }
  return h;
}

Writer::Writer(ByteSink* sink, size_t buffer_size) : sink_(sink), buffer_(buffer_size) {}


Writer::~Writer() = default;

absl::Status Writer::WriteImageHeader(const ckpt_image_header& header) {
  if (header_written_) {
    return absl::FailedPreconditionError("image header written twice");
  }
  header_written_ = true;
  return Append(CKPT_HDR_IMAGE, &header, sizeof(header));
}

absl::Status Writer::Append(uint32_t type, const void* data, size_t len, uint32_t flags) {
  struct iovec part = {const_cast<void*>(data), len};
  return AppendV(type, &part, len ? 1 : 0, flags);
}

absl::Status Writer::AppendV(uint32_t type, const struct iovec* parts, int nr_parts,
                             uint32_t flags) {
  if (!error_.ok()) return error_;
  if (finished_) return absl::FailedPreconditionError("image already finished");
  if (!header_written_ && type != CKPT_HDR_IMAGE) {
    return absl::FailedPreconditionError("the image header must be the first record");
  }
  uint64_t len = 0;
  for (int i = 0; i < nr_parts; ++i) len += parts[i].iov_len;
  if (len > kMaxRecordLen) {
    return absl::InvalidArgumentError(
        absl::StrCat("record type ", type, ": payload of ", len, " bytes exceeds the ",
                     kMaxRecordLen, "-byte limit"));
  }
  ckpt_hdr hdr{type, flags, len};
  RETURN_IF_ERROR(BufferBytes(&hdr, sizeof(hdr)));
  for (int i = 0; i < nr_parts; ++i) {
    if (parts[i].iov_len >= kDirectWrite) {
      RETURN_IF_ERROR(FlushWith(&parts[i], 1));
    } else {
      RETURN_IF_ERROR(BufferBytes(parts[i].iov_base, parts[i].iov_len));
    }
  }
  RETURN_IF_ERROR(BufferBytes(kZeros, AlignUp(len) - len));
  ++records_;
  return absl::OkStatus();
}

absl::Status Writer::Finish() {
  if (!error_.ok()) return error_;
  if (finished_) return absl::OkStatus();
  ckpt_tail tail{};
  tail.nr_records = records_;
  tail.checksum_algo = kChecksumXxh3;
  // The checksum covers everything before the tail's own header.
  RETURN_IF_ERROR(Flush());
  tail.checksum = checksum_.Digest();
  ckpt_hdr hdr{CKPT_HDR_TAIL, 0, sizeof(tail)};
  RETURN_IF_ERROR(BufferBytes(&hdr, sizeof(hdr)));
  RETURN_IF_ERROR(BufferBytes(&tail, sizeof(tail)));
  RETURN_IF_ERROR(Flush());
  finished_ = true;
  return absl::OkStatus();
}

absl::Status Writer::Flush() { return FlushWith(nullptr, 0); }

absl::Status Writer::BufferBytes(const void* data, size_t len) {
  const char* p = static_cast<const char*>(data);
  while (len > 0) {
    if (buffer_.data() == nullptr) {
      return absl::ResourceExhaustedError("the image writer has no buffer");
    }
    if (used_ == buffer_.size()) RETURN_IF_ERROR(Flush());
    size_t n = std::min(len, buffer_.size() - used_);
    std::memcpy(buffer_.data() + used_, p, n);
    used_ += n;
    p += n;
    len -= n;
  }
  return absl::OkStatus();
}

absl::Status Writer::FlushWith(const struct iovec* extra, int nr_extra) {
  struct iovec iov[2];
  int n = 0;
  if (used_ > 0) iov[n++] = {buffer_.data(), used_};
  for (int i = 0; i < nr_extra && n < 2; ++i) iov[n++] = extra[i];
  if (n == 0) return absl::OkStatus();
  for (int i = 0; i < n; ++i) checksum_.Update(iov[i].iov_base, iov[i].iov_len);
  absl::Status st = Emit(iov, n);
  used_ = 0;
  if (!st.ok()) error_ = st;
  return st;
}

absl::Status Writer::Emit(const struct iovec* iov_in, int iovcnt) {
  struct iovec iov[2];
  std::copy(iov_in, iov_in + iovcnt, iov);
  int first = 0;
  while (first < iovcnt) {
    ASSIGN_OR_RETURN(size_t n, sink_->WriteV(iov + first, iovcnt - first));
    if (n == 0) return absl::DataLossError("writing the image: the sink accepted no bytes");
    bytes_ += n;
    while (n > 0 && first < iovcnt) {
      size_t take = std::min(n, iov[first].iov_len);
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + take;
      iov[first].iov_len -= take;
      n -= take;
      if (iov[first].iov_len == 0) ++first;
    }
  }
  return absl::OkStatus();
}

}  // namespace ckpt::image
