// Object identity on real processes: dup, fork, two opens, a pipe's ends.

#include "lib/objhash/objhash.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gtest/gtest.h"
#include "lib/objhash/handlers.h"

namespace ckpt::objhash {
namespace {

// A kind of the test's own, as kinds outside objhash define theirs.
constexpr ObjKind kTestPipe{103};
const bool kNamed = (RegisterObjKindName(kTestPipe, "PIPE"), RegisterObjKindName(ObjKind::kFile, "FILE"), true);

Identity FileId(pid_t pid, int fd) {
  struct stat st;
  EXPECT_EQ(fstat(fd, &st), 0);
  return Identity::OfFile(pid, fd, st.st_dev, st.st_ino);
}

Identity InodeOf(int fd) {
  struct stat st;
  EXPECT_EQ(fstat(fd, &st), 0);
  return Identity::OfInode(st.st_dev, st.st_ino);
}

TEST(ObjHashTest, DupSharesOneObjref) {
  ObjHash objs;
  int a = open("/proc/self/exe", O_RDONLY);
  int b = dup(a);
  auto first = objs.LookupAdd(ObjKind::kFile, FileId(getpid(), a));
  auto second = objs.LookupAdd(ObjKind::kFile, FileId(getpid(), b));
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_TRUE(first->first);
  EXPECT_FALSE(second->first);
  EXPECT_EQ(first->objref, 1u);
  EXPECT_EQ(second->objref, 1u);
  close(a);
  close(b);
}

TEST(ObjHashTest, SamePathOpenedTwiceIsTwoObjects) {
  ObjHash objs;
  int a = open("/proc/self/exe", O_RDONLY);
  int b = open("/proc/self/exe", O_RDONLY);
  auto first = objs.LookupAdd(ObjKind::kFile, FileId(getpid(), a));
  auto second = objs.LookupAdd(ObjKind::kFile, FileId(getpid(), b));
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_TRUE(second->first);
  EXPECT_EQ(first->objref, 1u);
  EXPECT_EQ(second->objref, 2u);
  // Yet both are the same inode.
  auto ia = objs.LookupAdd(ObjKind::kMappedFile, InodeOf(a));
  auto ib = objs.LookupAdd(ObjKind::kMappedFile, InodeOf(b));
  EXPECT_EQ(ia->objref, ib->objref);
  close(a);
  close(b);
}

TEST(ObjHashTest, FdInheritedAcrossForkSharesTheParentsObjref) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  int a = open("/proc/self/exe", O_RDONLY);
  pid_t child = fork();
  if (child == 0) {
    close(p[1]);
    char c;
    (void)!read(p[0], &c, 1);  // wait until the test is done
    _exit(0);
  }
  ObjHash objs;
  auto mine = objs.LookupAdd(ObjKind::kFile, FileId(getpid(), a));
  auto theirs = objs.LookupAdd(ObjKind::kFile, FileId(child, a));
  ASSERT_TRUE(mine.ok() && theirs.ok()) << theirs.status();
  EXPECT_EQ(mine->objref, theirs->objref);
  EXPECT_FALSE(theirs->first);
  // Each process has its own mm and fd table.
  auto mm1 = objs.LookupAdd(ObjKind::kMm, Identity::OfTaskResource(kKcmpVm, getpid()));
  auto mm2 = objs.LookupAdd(ObjKind::kMm, Identity::OfTaskResource(kKcmpVm, child));
  ASSERT_TRUE(mm1.ok() && mm2.ok());
  EXPECT_NE(mm1->objref, mm2->objref);
  close(p[1]);
  int status;
  waitpid(child, &status, 0);
  close(p[0]);
  close(a);
}

TEST(ObjHashTest, PipeEndsShareTheInodeNotTheFile) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  ObjHash objs;
  auto in_r = objs.LookupAdd(kTestPipe, InodeOf(p[0]));
  auto in_w = objs.LookupAdd(kTestPipe, InodeOf(p[1]));
  auto f_r = objs.LookupAdd(ObjKind::kFile, FileId(getpid(), p[0]));
  auto f_w = objs.LookupAdd(ObjKind::kFile, FileId(getpid(), p[1]));
  ASSERT_TRUE(in_r.ok() && in_w.ok() && f_r.ok() && f_w.ok());
  EXPECT_EQ(in_r->objref, in_w->objref);
  EXPECT_NE(f_r->objref, f_w->objref);
  close(p[0]);
  close(p[1]);
}

TEST(ObjHashTest, KcmpOfAVanishedTaskIsAnError) {
  pid_t child = fork();
  if (child == 0) _exit(0);
  int status;
  waitpid(child, &status, 0);
  ObjHash objs;
  ASSERT_TRUE(objs.LookupAdd(ObjKind::kMm, Identity::OfTaskResource(kKcmpVm, getpid())).ok());
  EXPECT_FALSE(objs.LookupAdd(ObjKind::kMm, Identity::OfTaskResource(kKcmpVm, child)).ok());
}

TEST(ObjHashTest, LookupDoesNotAdd) {
  ObjHash objs;
  auto none = objs.Lookup(ObjKind::kPid, Identity::OfPid(42));
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, 0u);
  ASSERT_TRUE(objs.LookupAdd(ObjKind::kPid, Identity::OfPid(42)).ok());
  EXPECT_EQ(*objs.Lookup(ObjKind::kPid, Identity::OfPid(42)), 1u);
  // The same number as another kind is another object.
  EXPECT_EQ(*objs.Lookup(ObjKind::kFile, Identity::OfPid(42)), 0u);
  EXPECT_EQ(objs.Get(1)->kind, ObjKind::kPid);
  EXPECT_EQ(objs.Get(2), nullptr);
}

TEST(RestoreTableTest, RefusesDuplicatesAndWrongKinds) {
  RestoreTable table;
  EXPECT_TRUE(table.Insert(3, ObjKind::kFile, {.fd = dup(0)}).ok());
  EXPECT_FALSE(table.Insert(3, ObjKind::kFile, {.fd = dup(0)}).ok());
  EXPECT_FALSE(table.Insert(0, ObjKind::kFile, {}).ok());
  EXPECT_TRUE(table.Get(3, ObjKind::kFile).ok());
  auto wrong = table.Get(3, kTestPipe);
  EXPECT_NE(wrong.status().message().find("is a FILE, not a PIPE"), std::string::npos);
  EXPECT_FALSE(table.Get(4, ObjKind::kFile).ok());
  EXPECT_EQ(table.Fds().size(), 1u);
}

absl::Status NoCheckpoint(CheckpointContext&, const ObjHash::Entry&) { return absl::OkStatus(); }
absl::StatusOr<RestoredObject> NoRestore(RestoreContext&, const image::Record&) {
  return RestoredObject{};
}

TEST(HandlerTableTest, OneHandlerPerKindAndRecord) {
  HandlerTable table;
  EXPECT_TRUE(table.Register({ObjKind::kFile, "file", 31, NoCheckpoint, NoRestore}).ok());
  EXPECT_FALSE(table.Register({ObjKind::kFile, "again", 99, NoCheckpoint, NoRestore}).ok());
  EXPECT_FALSE(table.Register({kTestPipe, "pipe", 31, NoCheckpoint, NoRestore}).ok());
  EXPECT_EQ(table.ForKind(ObjKind::kFile)->record_type, 31u);
  EXPECT_EQ(table.ForRecord(31)->kind, ObjKind::kFile);
  EXPECT_EQ(table.ForKind(kTestPipe), nullptr);
}

}  // namespace
}  // namespace ckpt::objhash
