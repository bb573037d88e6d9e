// End to end, files: pipes and FIFOs with bytes in them, shared and
// duplicated descriptions, deleted files, and what is refused.

#include <fcntl.h>
#include <sys/file.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/expect.h"
#include "tests/e2e/harness.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class FilesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { prctl(PR_SET_CHILD_SUBREAPER, 1); }
};

// The subject's PID and the PIDs on its "<tag> a b ..." line.
std::vector<pid_t> TreePids(const Subject& s, const std::string& tag) {
  std::vector<pid_t> pids = {s.pid};
  for (pid_t pid : LinePids(s, tag)) pids.push_back(pid);
  return pids;
}

bool AllGone(const std::vector<pid_t>& pids) {
  for (pid_t pid : pids) {
    if (kill(pid, 0) == 0) return false;
  }
  return true;
}

TEST_F(FilesTest, PipeKeepsUnreadBytesAndABlockedWriterFinishes) {
  absl::StatusOr<Subject> s = StartSubject("pipes");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  DumpKillRestore(*s, TreePids(*s, "CHILDREN"), TempPath("pipes.img"));
  ExpectPass(*s);
}

TEST_F(FilesTest, LeaveRunningLeavesThePipeIntact) {
  absl::StatusOr<Subject> s = StartSubject("pipes");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::vector<pid_t> pids = TreePids(*s, "CHILDREN");
  std::string image = TempPath("pipes-leave.img");
  DumpOptions leave;
  leave.leave_running = true;
  ASSERT_OK(DumpToFile(s->pid, image, leave));
  ExpectPass(*s);  // the original reads every byte it had
  KillAndReapAll(pids);
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ExpectPass(*s);  // and so does the copy
}

TEST_F(FilesTest, SharedAndDuplicatedDescriptionsAppendCloexecAndGaps) {
  absl::StatusOr<Subject> s = StartSubject("fds", {TempPath("")});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  DumpKillRestore(*s, TreePids(*s, "CHILD"), TempPath("fds.img"));
  ExpectPass(*s);
}

// /proc/self/stat, a parent's /proc/PID/status held by its child, a
// child's /proc/PID directory: opened again for the restored processes.
TEST_F(FilesTest, ProcFilesOfTheTreesTasksNameTheRestoredTasks) {
  absl::StatusOr<Subject> s = StartSubject("procfiles", {TempPath("")});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::vector<pid_t> pids = LinePids(*s, "READY");
  ASSERT_EQ(pids.size(), 2u) << ReadOutput(*s);
  DumpKillRestore(*s, pids, TempPath("procfiles.img"));
  ExpectPass(*s);
}

TEST_F(FilesTest, DeletedFileOpenAndMappedComesBackWithItsContents) {
  absl::StatusOr<Subject> s = StartSubject("deleted", {TempPath("")});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  DumpKillRestore(*s, {s->pid}, TempPath("deleted.img"));
  ExpectPass(*s);
}

// A 1 GiB deleted sparse file with a few bytes in it: neither the image
// nor the restored file holds the gigabyte.
TEST_F(FilesTest, DeletedSparseFileKeepsItsHolesSizeModeAndOwner) {
  absl::StatusOr<Subject> s = StartSubject("sparse", {TempPath("")});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  DumpStats stats;
  DumpKillRestore(*s, {s->pid}, TempPath("sparse.img"), &stats);
  EXPECT_LT(stats.image_bytes, 16u << 20) << "the holes were saved";
  ExpectPass(*s);
}

// Every open flag the kernel reports (O_TMPFILE's among them) comes back:
// the restore never refuses an image libckpt wrote itself.
TEST_F(FilesTest, OpenFlagsTheKernelReportsRoundTrip) {
  absl::StatusOr<Subject> s = StartSubject("openflags", {TempPath("")});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  DumpKillRestore(*s, {s->pid}, TempPath("openflags.img"));
  ExpectPass(*s);
}

// A directory removed while held open, and one removed while it was the
// working directory of a parent and its child, come back removed.
TEST_F(FilesTest, RemovedDirectoriesHeldOpenOrAsWorkingDirectoryComeBack) {
  absl::StatusOr<Subject> s = StartSubject("rmdir", {TempPath("")});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::vector<pid_t> pids = LinePids(*s, "READY");
  ASSERT_EQ(pids.size(), 2u) << ReadOutput(*s);
  DumpKillRestore(*s, pids, TempPath("rmdir.img"));
  ExpectPass(*s);
}

// flock, POSIX and OFD locks are held again after the restore, by the
// same owners, and no more than them.
TEST_F(FilesTest, AdvisoryLocksAreHeldAgain) {
  absl::StatusOr<Subject> s = StartSubject("locks", {TempPath("")});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::vector<pid_t> pids = LinePids(*s, "READY");
  ASSERT_EQ(pids.size(), 2u) << ReadOutput(*s);
  DumpKillRestore(*s, pids, TempPath("locks.img"));
  ExpectPass(*s);
}

// A lock someone else took meanwhile fails the restore, naming the lock,
// and nothing of the restore stays; once it is free the restore works.
TEST_F(FilesTest, ALockTakenMeanwhileFailsTheRestoreByName) {
  absl::StatusOr<Subject> s = StartSubject("locks", {TempPath("")});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::vector<pid_t> pids = LinePids(*s, "READY");
  ASSERT_EQ(pids.size(), 2u) << ReadOutput(*s);
  const std::string image = TempPath("locks-taken.img");
  ASSERT_OK(DumpToFile(s->pid, image));
  KillAndReapAll(pids);
  int a = open(TempPath("a").c_str(), O_RDWR);
  ASSERT_GE(a, 0);
  ASSERT_EQ(flock(a, LOCK_SH), 0);
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_FALSE(pid.ok());
  EXPECT_THAT(std::string(pid.status().message()), ::testing::HasSubstr("flock write lock"));
  EXPECT_THAT(std::string(pid.status().message()), ::testing::HasSubstr("is held by another process"));
  for (pid_t p : pids) EXPECT_NE(kill(p, 0), 0) << "task " << p << " of the failed restore stays";
  close(a);
  pid = RestoreFromFile(image);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ExpectPass(*s);
}

// A FIFO unlinked while open keeps its bytes, its mode and its sharing.
TEST_F(FilesTest, DeletedFifoKeepsItsBytes) {
  absl::StatusOr<Subject> s = StartSubject("delfifo", {TempPath("")});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::vector<pid_t> pids = LinePids(*s, "READY");
  ASSERT_EQ(pids.size(), 2u) << ReadOutput(*s);
  DumpKillRestore(*s, pids, TempPath("delfifo.img"));
  ExpectPass(*s);
}

TEST_F(FilesTest, FifoWithBytesInFlight) {
  absl::StatusOr<Subject> s = StartSubject("fifo", {TempPath("")});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  DumpKillRestore(*s, TreePids(*s, "CHILD"), TempPath("fifo.img"));
  ExpectPass(*s);
}

TEST_F(FilesTest, FdTableSharedWithTheParentStaysShared) {
  absl::StatusOr<Subject> s = StartSubject("clonefiles", {TempPath("")});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  DumpKillRestore(*s, TreePids(*s, "CHILD"), TempPath("clonefiles.img"));
  ExpectPass(*s);
}

// A table a grandchild shares with its parent and its grandparent.
TEST_F(FilesTest, FdTableSharedOverThreeGenerationsStaysShared) {
  absl::StatusOr<Subject> s = StartSubject("clonefiles3", {TempPath("")});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::vector<pid_t> pids = TreePids(*s, "CHILD");
  for (pid_t p : LinePids(*s, "GRAND")) pids.push_back(p);
  ASSERT_EQ(pids.size(), 3u) << ReadOutput(*s);
  DumpKillRestore(*s, pids, TempPath("clonefiles3.img"));
  ExpectPass(*s);
}

TEST_F(FilesTest, DeletedSymlinkOpenOPathComesBackUnlinked) {
  absl::StatusOr<Subject> s = StartSubject("delsymlink", {TempPath("")});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  DumpKillRestore(*s, {s->pid}, TempPath("delsymlink.img"));
  ExpectPass(*s);
}

// Siblings that share a table their parent gave up (unshare) still share
// it, and the parent keeps its own.
TEST_F(FilesTest, FdTableSharedBySiblingsStaysTheirs) {
  absl::StatusOr<Subject> s = StartSubject("siblingfiles", {TempPath("")});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::vector<pid_t> pids = LinePids(*s, "READY");
  ASSERT_EQ(pids.size(), 3u) << ReadOutput(*s);
  DumpKillRestore(*s, pids, TempPath("siblingfiles.img"));
  ExpectPass(*s);
}

// A root directory removed while a chrooted task sits in it.
TEST_F(FilesTest, RemovedRootDirectoryStaysTheRoot) {
  absl::StatusOr<Subject> s = StartSubject("rmroot", {TempPath("")});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::vector<pid_t> pids = LinePids(*s, "READY");
  ASSERT_EQ(pids.size(), 2u) << ReadOutput(*s);
  DumpKillRestore(*s, pids, TempPath("rmroot.img"));
  ExpectPass(*s);
}

// A grandchild sharing its grandparent's table, which its parent gave up.
TEST_F(FilesTest, FdTableSharedWithAGrandparentStaysShared) {
  absl::StatusOr<Subject> s = StartSubject("gpfiles", {TempPath("")});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::vector<pid_t> pids = LinePids(*s, "READY");
  ASSERT_EQ(pids.size(), 3u) << ReadOutput(*s);
  DumpKillRestore(*s, pids, TempPath("gpfiles.img"));
  ExpectPass(*s);
}

TEST_F(FilesTest, TruncatedOrMovedFileIsNamedAndNothingStays) {
  absl::StatusOr<Subject> s = StartSubject("fds", {TempPath("")});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::vector<pid_t> pids = TreePids(*s, "CHILD");
  std::string image = TempPath("fds-bad.img");
  ASSERT_OK(DumpToFile(s->pid, image));
  KillAndReapAll(pids);
  struct stat before;
  ASSERT_EQ(stat(TempPath("shared.txt").c_str(), &before), 0);
  ASSERT_EQ(truncate(TempPath("shared.txt").c_str(), 3), 0);
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_FALSE(pid.ok());
  EXPECT_THAT(pid.status().message(),
              HasSubstr("shared.txt changed since the dump: its size was 10 bytes, it is now 3"));
  EXPECT_TRUE(AllGone(pids));
  // Its size back but not its mtime: still refused, naming the mtime.
  ASSERT_EQ(truncate(TempPath("shared.txt").c_str(), 10), 0);
  pid = RestoreFromFile(image);
  ASSERT_FALSE(pid.ok());
  EXPECT_THAT(pid.status().message(), HasSubstr("shared.txt changed since the dump: its mtime"));
  EXPECT_TRUE(AllGone(pids));
  struct timespec times[2] = {before.st_atim, before.st_mtim};
  ASSERT_EQ(utimensat(AT_FDCWD, TempPath("shared.txt").c_str(), times, 0), 0);
  ASSERT_EQ(rename(TempPath("append.log").c_str(), TempPath("moved.log").c_str()), 0);
  pid = RestoreFromFile(image);
  ASSERT_FALSE(pid.ok());
  EXPECT_THAT(pid.status().message(), HasSubstr("append.log"));
  EXPECT_THAT(pid.status().message(), HasSubstr("No such file"));
  EXPECT_TRUE(AllGone(pids));
}

// Netlink sockets (rtnetlink bound to a port id with groups and options,
// one unbound, a generic netlink one autobound): the same port ids,
// groups and options after the restore, and each still talks to the
// kernel.
TEST_F(FilesTest, NetlinkSocketsKeepTheirPortIdsGroupsAndOptions) {
  absl::StatusOr<Subject> s = StartSubject("netlink");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  ASSERT_NO_FATAL_FAILURE(DumpKillRestore(*s, {s->pid}, TempPath("netlink.img")));
  ExpectPass(*s);
}

TEST_F(FilesTest, NetlinkSocketsLeftRunningThenRestored) {
  absl::StatusOr<Subject> s = StartSubject("netlink");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  DumpOptions leave;
  leave.leave_running = true;
  const std::string image = TempPath("netlink-leave.img");
  ASSERT_OK(DumpToFile(s->pid, image, leave));
  ExpectPass(*s);
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_EQ(*pid, s->pid);
  ExpectPass(*s);
}

TEST_F(FilesTest, UnsupportedFdIsRefusedBeforeAnythingIsWritten) {
  absl::StatusOr<Subject> s = StartSubject("socket");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::string image = TempPath("socket.img");
  absl::Status st = DumpToFile(s->pid, image);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnimplemented) << st;
  EXPECT_THAT(st.message(), HasSubstr(absl::StrCat("task ", s->pid, " fd 3: a socket")));
  struct stat img;
  ASSERT_EQ(stat(image.c_str(), &img), 0);
  EXPECT_EQ(img.st_size, 0) << "bytes were written before the refusal";
  ExpectPass(*s);
}

}  // namespace
}  // namespace ckpt::testing
