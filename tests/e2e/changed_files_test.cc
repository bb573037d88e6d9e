// Files that changed between dump and restore. Clean pages of a private
// file mapping are not in the image: they come from the file as it is at
// restore, so a file rewritten in place (same size) would silently give
// the process other code or data. The restore checks size, mtime and, for
// ELF files, the build-id; it refuses a difference, naming the path, the
// field and both values, unless told to allow it.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/base/fd.h"
#include "lib/mm/mapped_file.h"
#include "tests/e2e/expect.h"
#include "tests/e2e/harness.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;

bool PidExists(pid_t pid) { return kill(pid, 0) == 0; }

// Starts mapself on a copy of its own executable (an ELF file with a
// build-id), dumps it and kills it. Returns the copy's path.
std::string DumpMapself(const std::string& tag, Subject* s, std::string* image) {
  const std::string copy = TempPath(tag + ".elf");
  std::filesystem::copy_file(ProgramPath("mapself"), copy,
                             std::filesystem::copy_options::overwrite_existing);
  absl::StatusOr<Subject> started = StartSubject("mapself", {copy});
  EXPECT_TRUE(started.ok()) << started.status();
  *s = *started;
  EXPECT_TRUE(WaitForOutput(*s, "READY").ok());
  *image = TempPath(tag + ".img");
  EXPECT_TRUE(DumpToFile(s->pid, *image).ok());
  KillAndReap(s->pid);
  return copy;
}

// Rewrites byte `at` of `path` in place (same size), then puts its mtime
// back when `keep_mtime`.
void RewriteByte(const std::string& path, off_t at, bool keep_mtime) {
  struct stat before;
  ASSERT_EQ(stat(path.c_str(), &before), 0);
  UniqueFd fd(open(path.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  char c;
  ASSERT_EQ(pread(fd.get(), &c, 1, at), 1);
  c = static_cast<char>(c ^ 0x5a);
  ASSERT_EQ(pwrite(fd.get(), &c, 1, at), 1);
  fd.reset();
  if (keep_mtime) {
    struct timespec times[2] = {before.st_atim, before.st_mtim};
    ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
  }
}

TEST(ChangedFilesTest, PrivateMappingOfAFileRewrittenInPlaceIsRefusedNamingTheMtime) {
  Subject s;
  std::string image;
  const std::string copy = DumpMapself("rewritten", &s, &image);
  RewriteByte(copy, 100, /*keep_mtime=*/false);
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_FALSE(pid.ok()) << "a rewritten mapped file was restored silently";
  EXPECT_THAT(pid.status().message(), HasSubstr(copy));
  EXPECT_THAT(pid.status().message(), HasSubstr("changed since the dump: its mtime was"));
  EXPECT_THAT(pid.status().message(), HasSubstr("--allow-changed-files"));
  EXPECT_FALSE(PidExists(s.pid));

  // Allowed: it restores, and the process sees the file as it is now (its
  // own check fails: that is the risk --allow-changed-files takes).
  RestoreOptions allow;
  allow.allow_changed_files = true;
  pid = RestoreFromFile(image, allow);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_EQ(kill(*pid, SIGUSR1), 0);
  absl::StatusOr<int> code = WaitExit(*pid);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 1);
  EXPECT_THAT(ReadOutput(s), HasSubstr("FAIL: the mapped file's contents changed"));
}

TEST(ChangedFilesTest, ElfWithAnotherBuildIdIsRefusedEvenWithTheSameSizeAndMtime) {
  Subject s;
  std::string image;
  const std::string copy = DumpMapself("rebuilt", &s, &image);
  // Find the build-id's bytes in the file and change one, keeping size and
  // mtime: only the build-id tells.
  UniqueFd fd(open(copy.c_str(), O_RDONLY | O_CLOEXEC));
  const std::string id = mm::ReadBuildId(fd.get());
  fd.reset();
  ASSERT_FALSE(id.empty()) << "the test program has no build-id";
  std::ifstream f(copy, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t at = bytes.find(id);
  ASSERT_NE(at, std::string::npos);
  RewriteByte(copy, static_cast<off_t>(at), /*keep_mtime=*/true);
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_FALSE(pid.ok()) << "a mapped ELF file with another build-id was restored silently";
  EXPECT_THAT(pid.status().message(), HasSubstr(copy));
  EXPECT_THAT(pid.status().message(), HasSubstr("ELF build-id was"));
  EXPECT_FALSE(PidExists(s.pid));
}

TEST(ChangedFilesTest, UnchangedFilesRestoreAndPass) {
  Subject s;
  std::string image;
  DumpMapself("unchanged", &s, &image);
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ExpectPass(s);
}

}  // namespace
}  // namespace ckpt::testing
