// End to end, whole trees: several processes, sessions and groups,
// threads, zombies; each subject checks itself after the restore.

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/base/fd.h"
#include "tests/e2e/expect.h"
#include "tests/e2e/harness.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Killed trees leave orphans: this process adopts and reaps them, so that
// their PIDs are free for the restore.
class TreeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { prctl(PR_SET_CHILD_SUBREAPER, 1); }
};

TEST_F(TreeTest, ThreeLevelsTwoSessionsThreeGroupsKeepTheirIds) {
  absl::StatusOr<Subject> s = StartProgram(ProgramPath("tree"), {}, /*new_session=*/true);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForCount(*s, "READY", 5));
  std::vector<pid_t> pids = ReadyPids(*s);
  DumpStats stats;
  DumpKillRestore(*s, pids, TempPath("tree.img"), &stats);
  EXPECT_EQ(stats.tasks, 5u);
  for (pid_t pid : pids) EXPECT_EQ(kill(pid, 0), 0) << "task " << pid << " was not restored";
  ExpectPass(*s);
  std::string out = ReadOutput(*s);
  for (const char* name : {"root ok", "a ok", "a1 ok", "a2 ok", "b ok"}) {
    EXPECT_THAT(out, HasSubstr(name)) << out;
  }
}

TEST_F(TreeTest, EightThreadsResumeTheirWork) {
  absl::StatusOr<Subject> s = StartSubject("threads");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  DumpStats stats;
  DumpKillRestore(*s, {s->pid}, TempPath("threads.img"), &stats);
  EXPECT_EQ(stats.threads, 8u);
  // Every thread is back, with its TID.
  std::string tasks;
  absl::StatusOr<std::string> dir = ReadFile(absl::StrCat("/proc/", s->pid, "/status"));
  ASSERT_TRUE(dir.ok());
  EXPECT_THAT(*dir, HasSubstr("Threads:\t8"));
  ExpectPass(*s);
}

// A zombie in another task's process group is still in it, and its
// parent's waitpid(-pgid) reaps it; a zombie that led a session leads it.
TEST_F(TreeTest, AZombieKeepsItsProcessGroupAndSession) {
  absl::StatusOr<Subject> s = StartSubject("zombiegroup");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::vector<pid_t> pids = LinePids(*s, "READY");
  ASSERT_EQ(pids.size(), 4u) << ReadOutput(*s);
  DumpKillRestore(*s, pids, TempPath("zombiegroup.img"));
  ExpectPass(*s);
}

// A zombie alone in a group whose leader has exited keeps that group
// (a helper task makes it again, and the zombie joins it before it exits).
TEST_F(TreeTest, AZombieAloneInAGroupKeepsIt) {
  absl::StatusOr<Subject> s =
      StartProgram(ProgramPath("zombieorphangroup"), {}, /*new_session=*/true);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::vector<pid_t> pids = LinePids(*s, "READY");
  ASSERT_EQ(pids.size(), 2u) << ReadOutput(*s);
  DumpKillRestore(*s, pids, TempPath("zombieorphangroup.img"));
  ExpectPass(*s);
}

TEST_F(TreeTest, ZombieChildrenKeepTheirExitStatus) {
  absl::StatusOr<Subject> s = StartSubject("zombie");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  // The zombies' PIDs, adopted by this process when their parent dies.
  std::string out = ReadOutput(*s);
  std::istringstream zombies(out.substr(out.find("ZOMBIES ") + 8));
  pid_t z1 = 0, z2 = 0;
  zombies >> z1 >> z2;
  ASSERT_GT(z1, 0);
  ASSERT_GT(z2, 0);
  DumpStats stats;
  DumpKillRestore(*s, {s->pid, z1, z2}, TempPath("zombie.img"), &stats);
  EXPECT_EQ(stats.tasks, 1u);  // zombies have no section
  ExpectPass(*s);
}

TEST_F(TreeTest, GroupWhoseLeaderExitedIsRecreated) {
  absl::StatusOr<Subject> s = StartProgram(ProgramPath("orphan_group"), {}, /*new_session=*/true);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForCount(*s, "READY", 2));
  std::vector<pid_t> pids = ReadyPids(*s);
  DumpKillRestore(*s, pids, TempPath("orphan_group.img"));
  ExpectPass(*s);
  EXPECT_THAT(ReadOutput(*s), HasSubstr(" ok"));
}

// Reaps every child that has exited (orphans adopted by this process).
void ReapExited() {
  int status;
  while (waitpid(-1, &status, WNOHANG) > 0) {
  }
}

TEST_F(TreeTest, TreeThatKeepsForkingAndMakingThreadsIsDumpedCleanly) {
  absl::StatusOr<Subject> s = StartSubject("churn");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  usleep(50000);
  DumpOptions leave;
  leave.leave_running = true;
  std::string last_good;
  for (int i = 0; i < 5; ++i) {
    // Either a consistent image or a clear "keeps changing" error; the
    // tree runs on either way.
    std::string image = TempPath(absl::StrCat("churn", i, ".img"));
    absl::Status st = DumpToFile(s->pid, image, leave);
    if (st.ok()) {
      last_good = image;
    } else {
      EXPECT_EQ(st.code(), absl::StatusCode::kAborted) << st;
    }
    EXPECT_EQ(kill(s->pid, 0), 0);
  }
  ASSERT_FALSE(last_good.empty()) << "no dump of the churning tree succeeded";
  // The original is untouched: it checks itself.
  ExpectPass(*s);
  ReapExited();
  // The last image restores, with whatever transient children it caught,
  // and churns on.
  absl::StatusOr<pid_t> pid = RestoreFromFile(last_good);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ExpectPass(*s);
  ReapExited();
}

TEST_F(TreeTest, ContainerModeRefusesASessionFromOutside) {
  absl::StatusOr<Subject> s = StartSubject("counter");  // in this test's session
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "COUNT 2"));
  DumpOptions container;
  container.container = true;
  absl::Status st = DumpToFile(s->pid, TempPath("container.img"), container);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(st.message(), HasSubstr(absl::StrCat("task ", s->pid, " is in session ")));
  EXPECT_THAT(st.message(), HasSubstr("container mode"));
  ExpectPass(*s);  // untouched, it still counts and checks itself
}

TEST_F(TreeTest, ContainerModeDumpsASelfContainedTree) {
  absl::StatusOr<Subject> s = StartProgram(ProgramPath("tree"), {}, /*new_session=*/true);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForCount(*s, "READY", 5));
  DumpOptions container;
  container.container = true;
  ASSERT_OK(DumpToFile(s->pid, TempPath("container-tree.img"), container));
  KillAndReapAll(ReadyPids(*s));
  absl::StatusOr<pid_t> pid = RestoreFromFile(TempPath("container-tree.img"));
  ASSERT_TRUE(pid.ok()) << pid.status();
  ExpectPass(*s);
}

// Starts the pidns subject and returns the outer PID of its namespace's
// init, the root to dump.
pid_t StartNamespaces(Subject* s) {
  absl::StatusOr<Subject> started = StartSubject("pidns");
  EXPECT_TRUE(started.ok()) << started.status();
  if (!started.ok()) return 0;
  *s = *started;
  // Four tasks up, and the outer process's report of the root (it may come
  // after the tasks' own lines).
  absl::Status st = WaitForCount(*s, "UP ", 4);
  EXPECT_TRUE(st.ok()) << st;
  st = WaitForOutput(*s, "ROOT ");
  EXPECT_TRUE(st.ok()) << st;
  if (!st.ok()) return 0;
  std::string out = ReadOutput(*s);
  return static_cast<pid_t>(strtol(out.c_str() + out.find("ROOT ") + 5, nullptr, 10));
}

// Kills the namespace's init (which takes the namespace with it) and
// reaps the outer process, which waits for it.
void KillNamespaces(const Subject& s, pid_t root) {
  kill(root, SIGKILL);
  absl::StatusOr<int> code = WaitExit(s.pid);
  EXPECT_TRUE(code.ok()) << code.status();
}

void ExpectNamespacesPass(const Subject& s, pid_t restored) {
  ASSERT_EQ(kill(restored, SIGUSR1), 0);
  absl::StatusOr<int> code = WaitExit(restored);
  ASSERT_TRUE(code.ok()) << code.status();
  std::string out = ReadOutput(s);
  EXPECT_EQ(*code, 0) << out;
  EXPECT_THAT(out, HasSubstr("PASS")) << out;
  EXPECT_THAT(out, Not(HasSubstr("FAIL"))) << out;
  for (const char* name : {"i1 ok", "c1 ok", "t ok", "c2 ok"}) EXPECT_THAT(out, HasSubstr(name));
}

TEST_F(TreeTest, NestedPidNamespacesKeepEveryLevel) {
  Subject s;
  pid_t root = StartNamespaces(&s);
  ASSERT_GT(root, 0);
  std::string image = TempPath("pidns.img");
  DumpStats stats;
  ASSERT_OK(DumpToFile(root, image, {}, &stats));
  EXPECT_EQ(stats.tasks, 4u);
  KillNamespaces(s, root);
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_EQ(*pid, root);
  ExpectNamespacesPass(s, *pid);
}

TEST_F(TreeTest, RestoresIntoAFreshPidNamespace) {
  Subject s;
  pid_t root = StartNamespaces(&s);
  ASSERT_GT(root, 0);
  std::string image = TempPath("pidns-new.img");
  // The original keeps running and holds its PIDs: a fresh namespace does
  // not need them.
  DumpOptions leave;
  leave.leave_running = true;
  ASSERT_OK(DumpToFile(root, image, leave));
  RestoreOptions options;
  options.new_pidns = true;
  absl::StatusOr<pid_t> pid = RestoreFromFile(image, options);
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_NE(*pid, root);
  EXPECT_EQ(kill(root, 0), 0) << "the original is gone";
  ExpectNamespacesPass(s, *pid);
  KillNamespaces(s, root);
}

}  // namespace
}  // namespace ckpt::testing
