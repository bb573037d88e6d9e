// The stream: round trips, truncation at every offset, random corruption,
// checksums, versions, unknown records and faulty I/O.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "lib/image/format.h"
#include "lib/image/reader.h"
#include "lib/image/records.h"
#include "lib/image/testing.h"
#include "lib/image/walk.h"
#include "lib/image/writer.h"

namespace ckpt::image {
namespace {

// A small image that uses every kind of tail: text, struct, paths, arrays,
// page runs and page contents.
absl::Status WriteSample(ByteSink* sink, size_t pages = 3) {
  Writer w(sink, 4096);
  RETURN_IF_ERROR(w.WriteImageHeader(DefaultImageHeader()));
  const char note[] = "hello, stream";
  RETURN_IF_ERROR(w.Append(CKPT_HDR_NOTE, note, sizeof(note) - 1, kHdrSkippable));
  ckpt_tree tree{1, 1, 0, 0};
  RETURN_IF_ERROR(w.AppendStruct(CKPT_HDR_TREE, tree));
  ckpt_pid pid{};
  pid.objref = 1;
  pid.nr_levels = 2;
  pid.nr[0] = 1234;
  pid.nr[1] = 1;
  RETURN_IF_ERROR(w.AppendStruct(CKPT_HDR_PID, pid));
  ckpt_file file{};
  file.objref = 2;
  file.kind = kFileRegular;
  const std::string path = "/etc/hostname";
  file.path_len = static_cast<uint32_t>(path.size());
  RETURN_IF_ERROR(w.AppendStructWith(CKPT_HDR_FILE, file, path.data(), path.size()));
  ckpt_mm mm{};
  mm.nr_auxv = 4;
  uint64_t auxv[4] = {6, 4096, 0, 0};
  RETURN_IF_ERROR(w.AppendStructWith(CKPT_HDR_MM, mm, auxv, sizeof(auxv)));
  ckpt_page_run run{0x7f0000000000, pages};
  RETURN_IF_ERROR(w.Append(CKPT_HDR_PAGE_RUNS, &run, sizeof(run)));
  std::vector<char> contents(pages * 4096);
  for (size_t i = 0; i < contents.size(); ++i) contents[i] = static_cast<char>(i * 7 + i / 4096);
  RETURN_IF_ERROR(w.Append(CKPT_HDR_PAGE_DATA, contents.data(), contents.size()));
  return w.Finish();
}

std::string SampleImage(size_t pages = 3) {
  MemorySink sink;
  EXPECT_TRUE(WriteSample(&sink, pages).ok());
  return sink.bytes;
}

// Reads every record the way the restorer does and checks what it wrote.
absl::Status ReadSample(ByteSource* source, size_t pages = 3) {
  Reader r(source, 4096);
  ASSIGN_OR_RETURN(ckpt_image_header h, r.ReadImageHeader());
  if (h.major != kFormatMajor) return absl::InternalError("major");
  ASSIGN_OR_RETURN(Record note, r.Next());
  ASSIGN_OR_RETURN(std::string text, r.ReadString(note.len, "text"));
  if (text != "hello, stream") return absl::InternalError("note");
  ASSIGN_OR_RETURN(ckpt_tree tree, r.Expect<ckpt_tree>(CKPT_HDR_TREE));
  if (tree.nr_pids != 1) return absl::InternalError("tree");
  ASSIGN_OR_RETURN(ckpt_pid pid, r.Expect<ckpt_pid>(CKPT_HDR_PID));
  if (pid.nr[0] != 1234 || pid.nr[1] != 1) return absl::InternalError("pid");
  ASSIGN_OR_RETURN(ckpt_file file, r.Expect<ckpt_file>(CKPT_HDR_FILE));
  ASSIGN_OR_RETURN(std::string path, r.ReadString(file.path_len, "path"));
  if (path != "/etc/hostname") return absl::InternalError("path");
  ASSIGN_OR_RETURN(ckpt_mm mm, r.Expect<ckpt_mm>(CKPT_HDR_MM));
  ASSIGN_OR_RETURN(std::vector<uint8_t> auxv, r.ReadArray(8, mm.nr_auxv, "auxv"));
  if (auxv.size() != 32) return absl::InternalError("auxv");
  ASSIGN_OR_RETURN(Record runs, r.Next());
  ASSIGN_OR_RETURN(std::vector<uint8_t> run_bytes, r.ReadArray(16, kMaxPageRuns, "runs"));
  (void)runs;
  ASSIGN_OR_RETURN(Record data, r.Next());
  if (data.type != CKPT_HDR_PAGE_DATA || data.len != pages * 4096) {
    return absl::InternalError("data");
  }
  std::vector<char> contents(data.len);
  RETURN_IF_ERROR(r.ReadPayload(contents.data(), contents.size()));
  for (size_t i = 0; i < contents.size(); ++i) {
    if (contents[i] != static_cast<char>(i * 7 + i / 4096)) return absl::InternalError("bytes");
  }
  return r.ExpectTail();
}

TEST(ImageTest, RoundTripInMemory) {
  MemorySource source(SampleImage());
  EXPECT_TRUE(ReadSample(&source).ok());
}

TEST(ImageTest, RoundTripWithOneByteReads) {
  MemorySource source(SampleImage(), 1);
  absl::Status st = ReadSample(&source);
  EXPECT_TRUE(st.ok()) << st;
}

TEST(ImageTest, RoundTripThroughAFile) {
  std::string path = std::string(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp") +
                     "/roundtrip.img";
  int fd = open(path.c_str(), O_CREAT | O_TRUNC | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  FdSink sink(fd);
  ASSERT_TRUE(WriteSample(&sink, 300).ok());
  ASSERT_EQ(lseek(fd, 0, SEEK_SET), 0);
  FdSource source(fd);
  absl::Status st = ReadSample(&source, 300);
  EXPECT_TRUE(st.ok()) << st;
  close(fd);
}

TEST(ImageTest, RoundTripThroughAPipe) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  // 300 pages: more than a pipe holds, so writer and reader interleave.
  std::thread writer([&] {
    FdSink sink(p[1]);
    EXPECT_TRUE(WriteSample(&sink, 300).ok());
    close(p[1]);
  });
  FdSource source(p[0]);
  absl::Status st = ReadSample(&source, 300);
  writer.join();
  close(p[0]);
  EXPECT_TRUE(st.ok()) << st;
}

absl::Status WalkAll(const std::string& bytes) {
  MemorySource source(bytes);
  return WalkImage(&source, [](const Record&, std::span<const uint8_t>) {
    return absl::OkStatus();
  });
}

TEST(ImageTest, WalkAcceptsTheSample) { EXPECT_TRUE(WalkAll(SampleImage()).ok()); }

TEST(ImageTest, TruncationAtEveryOffsetIsAnError) {
  std::string image = SampleImage();
  for (size_t len = 0; len < image.size(); ++len) {
    absl::Status st = WalkAll(image.substr(0, len));
    ASSERT_FALSE(st.ok()) << "truncated to " << len << " bytes was accepted";
    MemorySource source(image.substr(0, len));
    ASSERT_FALSE(ReadSample(&source).ok()) << len;
  }
}

TEST(ImageTest, RandomCorruptionsAreAllErrors) {
  std::string image = SampleImage();
  std::mt19937_64 rng(20261122);
  for (int i = 0; i < 10000; ++i) {
    std::string bad = image;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      size_t at = rng() % bad.size();
      char was = bad[at];
      do {
        bad[at] = static_cast<char>(rng());
      } while (bad[at] == was);
    }
    ASSERT_FALSE(WalkAll(bad).ok()) << "corruption " << i << " was accepted";
    MemorySource source(bad);
    ASSERT_FALSE(ReadSample(&source).ok()) << "corruption " << i;
  }
}

TEST(ImageTest, ChecksumMismatchIsReported) {
  std::string image = SampleImage();
  size_t at = image.find("hello, stream");
  ASSERT_NE(at, std::string::npos);
  image[at] = 'H';
  absl::Status st = WalkAll(image);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(st.message().find("checksum mismatch"), std::string::npos) << st;
}

TEST(ImageTest, OtherMajorVersionIsRefusedNamingBoth) {
  std::string image = SampleImage();
  uint16_t major = 7;
  std::memcpy(&image[sizeof(ckpt_hdr) + offsetof(ckpt_image_header, major)], &major, 2);
  absl::Status st = WalkAll(image);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find(absl::StrCat("image format 7.", kFormatMinor)), std::string::npos)
      << st;
  EXPECT_NE(st.message().find(absl::StrCat("reads format ", kFormatMajor, ".x")), std::string::npos)
      << st;
}

TEST(ImageTest, NotAnImage) {
  absl::Status st = WalkAll(std::string(200, 'x'));
  EXPECT_NE(st.message().find("not a libckpt image"), std::string::npos) << st;
  EXPECT_FALSE(WalkAll("").ok());
}

std::string ImageWith(uint32_t type, uint32_t flags, const std::string& payload) {
  MemorySink sink;
  Writer w(&sink);
  EXPECT_TRUE(w.WriteImageHeader(DefaultImageHeader()).ok());
  EXPECT_TRUE(w.Append(type, payload.data(), payload.size(), flags).ok());
  EXPECT_TRUE(w.Finish().ok());
  return sink.bytes;
}

TEST(ImageTest, UnknownSkippableRecordIsSkipped) {
  std::vector<uint32_t> seen;
  MemorySource source(ImageWith(999, kHdrSkippable, "future"));
  absl::Status st = WalkImage(&source, [&](const Record& rec, std::span<const uint8_t>) {
    seen.push_back(rec.type);
    return absl::OkStatus();
  });
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_EQ(seen, (std::vector<uint32_t>{CKPT_HDR_IMAGE, CKPT_HDR_TAIL}));
}

TEST(ImageTest, UnknownMandatoryRecordIsAnError) {
  absl::Status st = WalkAll(ImageWith(999, 0, "future"));
  EXPECT_NE(st.message().find("unknown record type 999"), std::string::npos) << st;
}

TEST(ImageTest, RecordShorterThanItsStructIsAnError) {
  absl::Status st = WalkAll(ImageWith(CKPT_HDR_VMA, 0, std::string(10, '\0')));
  EXPECT_NE(st.message().find("shorter than its struct"), std::string::npos) << st;
  EXPECT_NE(st.message().find("(VMA)"), std::string::npos) << st;
}

TEST(ImageTest, HugeLengthClaimIsRefusedWithoutAllocating) {
  std::string image = ImageWith(CKPT_HDR_NOTE, kHdrSkippable, "x");
  // The NOTE header follows the image header record.
  size_t at = sizeof(ckpt_hdr) + sizeof(ckpt_image_header);
  uint64_t len = 4ull << 30;
  std::memcpy(&image[at + offsetof(ckpt_hdr, len)], &len, 8);
  absl::Status st = WalkAll(image);
  EXPECT_NE(st.message().find("exceeds"), std::string::npos) << st;
}

TEST(ImageTest, OverLongFixedRecordIsRefused) {
  absl::Status st = WalkAll(ImageWith(CKPT_HDR_FD, 0, std::string(64 * 1024, '\0')));
  EXPECT_NE(st.message().find("-byte limit of this record type"), std::string::npos) << st;
}

TEST(ImageTest, FullDiskFailsAndSticks) {
  for (size_t cap : {0, 10, 200, 5000}) {
    FullDiskSink sink(cap);
    Writer w(&sink, 4096);
    absl::Status st = w.WriteImageHeader(DefaultImageHeader());
    std::vector<char> page(64 * 1024, 'p');
    if (st.ok()) st = w.Append(CKPT_HDR_PAGE_DATA, page.data(), page.size());
    if (st.ok()) st = w.Finish();
    EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << cap << ": " << st;
    EXPECT_FALSE(w.Finish().ok());
  }
}

TEST(ImageTest, PayloadReadsCannotOverrun) {
  MemorySource source(ImageWith(CKPT_HDR_FD, 0, std::string(sizeof(ckpt_fd), '\0')));
  Reader r(&source);
  ASSERT_TRUE(r.ReadImageHeader().ok());
  ASSERT_TRUE(r.Next().ok());
  char big[64];
  EXPECT_FALSE(r.ReadPayload(big, sizeof(big)).ok());
  EXPECT_FALSE(r.ReadString(100, "path").ok());
  EXPECT_FALSE(r.ReadArray(3, 100, "items").ok());
}

}  // namespace
}  // namespace ckpt::image
