// A failed restore kills exactly what it made, reaps it, and leaves the
// caller as it was: a PID that belongs to an unrelated process is never
// signalled, no zombie stays behind, and the same image restores at once
// when the obstacle is gone.

#include <dirent.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/base/fd.h"
#include "tests/e2e/expect.h"
#include "tests/e2e/harness.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;

class RestoreFailureTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { prctl(PR_SET_CHILD_SUBREAPER, 1); }
};

// The threads of `pid`, the leader first.
std::vector<pid_t> Threads(pid_t pid) {
  std::vector<pid_t> tids;
  DIR* d = opendir(absl::StrCat("/proc/", pid, "/task").c_str());
  if (d == nullptr) return tids;
  while (struct dirent* e = readdir(d)) {
    pid_t tid;
    if (absl::SimpleAtoi(e->d_name, &tid)) tids.push_back(tid);
  }
  closedir(d);
  return tids;
}

// This process's children (live or zombie), from /proc.
std::set<pid_t> Children() {
  std::set<pid_t> out;
  for (pid_t tid : Threads(getpid())) {
    absl::StatusOr<std::string> text =
        ReadFile(absl::StrCat("/proc/", getpid(), "/task/", tid, "/children"));
    if (!text.ok()) continue;
    for (absl::string_view w : absl::StrSplit(*text, ' ', absl::SkipEmpty())) {
      pid_t c;
      if (absl::SimpleAtoi(w, &c)) out.insert(c);
    }
  }
  return out;
}

// An unrelated process (it sleeps) made with exactly the PID `pid`.
pid_t SleeperWithPid(pid_t pid) {
  struct clone_args args;
  std::memset(&args, 0, sizeof(args));
  args.exit_signal = SIGCHLD;
  args.set_tid = reinterpret_cast<uint64_t>(&pid);
  args.set_tid_size = 1;
  long r = syscall(SYS_clone3, &args, sizeof(args));
  if (r == 0) {
    for (;;) pause();
  }
  // Asleep in pause() before the test goes on, so that its state tells
  // whether anything touched it.
  for (int i = 0; i < 5000 && r > 0 && TaskState(static_cast<pid_t>(r)) != 'S'; ++i) usleep(1000);
  return static_cast<pid_t>(r);
}

TEST_F(RestoreFailureTest, TakenThreadIdLeavesItsHolderAloneAndNothingBehind) {
  absl::StatusOr<Subject> s = StartSubject("threads");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::vector<pid_t> tids = Threads(s->pid);
  ASSERT_EQ(tids.size(), 8u);
  std::string image = TempPath("threads-taken.img");
  ASSERT_OK(DumpToFile(s->pid, image));
  KillAndReap(s->pid);

  // Someone else now has one of the threads' IDs.
  const pid_t taken = tids.back();
  pid_t other = SleeperWithPid(taken);
  ASSERT_EQ(other, taken);
  const std::set<pid_t> before = Children();

  for (int attempt = 0; attempt < 2; ++attempt) {
    absl::StatusOr<pid_t> pid = RestoreFromFile(image);
    ASSERT_FALSE(pid.ok());
    EXPECT_THAT(pid.status().message(), HasSubstr(absl::StrCat("thread ID ", taken, " is taken")));
    // The holder is untouched; every task and thread the restore made is
    // gone and reaped: no new child, not even a zombie.
    EXPECT_EQ(kill(other, 0), 0) << "the restore signalled a process it did not make";
    EXPECT_EQ(TaskState(other), 'S');
    EXPECT_EQ(Children(), before);
    for (pid_t tid : tids) {
      if (tid != taken) {
        EXPECT_EQ(TaskState(tid), '?') << "thread " << tid << " left behind";
      }
    }
  }

  // Once the holder is gone, the same image restores at once.
  KillAndReap(other);
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_EQ(Threads(*pid).size(), 8u);
  ExpectPass(*s);
}

TEST_F(RestoreFailureTest, TakenPidOfAChildLeavesItsHolderAloneAndNothingBehind) {
  absl::StatusOr<Subject> s = StartProgram(ProgramPath("tree"), {}, /*new_session=*/true);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForCount(*s, "READY", 5));
  std::vector<pid_t> pids = ReadyPids(*s);
  std::string image = TempPath("tree-taken.img");
  ASSERT_OK(DumpToFile(s->pid, image));
  KillAndReapAll(pids);
  const pid_t taken = pids.back();
  pid_t other = SleeperWithPid(taken);
  ASSERT_EQ(other, taken);
  const std::set<pid_t> before = Children();
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_FALSE(pid.ok());
  EXPECT_THAT(pid.status().message(), HasSubstr(absl::StrCat("PID ", taken, " is taken")));
  EXPECT_EQ(TaskState(other), 'S') << "the restore signalled a process it did not make";
  EXPECT_EQ(Children(), before);
  for (pid_t p : pids) {
    if (p != taken) {
      EXPECT_EQ(TaskState(p), '?') << "task " << p << " left behind";
    }
  }
  KillAndReap(other);
  pid = RestoreFromFile(image);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ExpectPass(*s);
}

}  // namespace
}  // namespace ckpt::testing
