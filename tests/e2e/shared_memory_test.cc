// Shared memory without a name (MAP_SHARED|MAP_ANONYMOUS, memfd) shared by
// a parent and two children: still shared after restore, saved once.
// Built twice: in Bazel's sandbox (no /proc/PID/map_files: contents are
// read through the memfd's fd or the tasks' mappings) and outside it.

#include <signal.h>
#include <sys/prctl.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/expect.h"
#include "tests/e2e/harness.h"

namespace ckpt::testing {
namespace {

constexpr uint64_t kMiB = 1 << 20;

TEST(SharedMemoryTest, AnonymousAndMemfdStaySharedAndAreSavedOnce) {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  absl::StatusOr<Subject> s = StartSubject("sharedanon");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(WaitForCount(*s, "READY", 3).ok()) << ReadOutput(*s);
  std::string image = TempPath("sharedanon.img");
  DumpStats stats;
  absl::Status st = DumpToFile(s->pid, image, {}, &stats);
  ASSERT_TRUE(st.ok()) << st;
  // 6 MiB of the anonymous region and 2 MiB of the memfd are written,
  // mapped by three processes: once is ~8 MiB, three times 24.
  EXPECT_GT(stats.image_bytes, 8 * kMiB);
  EXPECT_LT(stats.image_bytes, 10 * kMiB) << "shared contents saved more than once?";
  // The dump killed the tree; the children come to this process (a
  // subreaper) to be reaped.
  KillAndReapAll(ReadyPids(*s));
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_TRUE(pid.ok()) << pid.status();
  kill(*pid, SIGUSR1);
  absl::StatusOr<int> code = WaitExit(*pid);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << ReadOutput(*s);
  EXPECT_THAT(ReadOutput(*s), ::testing::HasSubstr("PASS"));
  EXPECT_THAT(ReadOutput(*s), ::testing::HasSubstr("child 1 ok"));
  EXPECT_THAT(ReadOutput(*s), ::testing::HasSubstr("child 2 ok"));
}

// memfds as programs use them: open and never mapped (a size that is
// not a multiple of pages, mode, offset, O_APPEND), sealed, sealable or
// not, MFD_NOEXEC_SEAL, mapped privately, opened again by a child through
// /proc/PID/fd; and a private mapping of /dev/zero.
TEST(SharedMemoryTest, MemfdsKeepContentsSealsModeAndOffsets) {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  absl::StatusOr<Subject> s = StartSubject("memfd");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(WaitForOutput(*s, "READY").ok()) << ReadOutput(*s);
  std::vector<pid_t> pids = LinePids(*s, "READY");
  ASSERT_EQ(pids.size(), 2u) << ReadOutput(*s);
  ASSERT_NO_FATAL_FAILURE(DumpKillRestore(*s, pids, TempPath("memfd.img")));
  ExpectPass(*s);
}

}  // namespace
}  // namespace ckpt::testing
