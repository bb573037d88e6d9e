// The dump's pre-flight: one try names every problem of the tree at once
// (each unsupported fd, in every task), before anything is frozen or
// written; `ckpt check --pid` prints the same report for a live tree and
// exits 0 only when it would dump.

#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/expect.h"
#include "tests/e2e/harness.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;

class PreflightTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { prctl(PR_SET_CHILD_SUBREAPER, 1); }
};

// Runs `command`, returns its exit status and puts its stdout in *out.
int RunCommand(const std::string& command, std::string* out) {
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out->append(buf, n);
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_F(PreflightTest, EveryProblemOfTheTreeIsNamedAtOnce) {
  absl::StatusOr<Subject> s = StartSubject("unsupported");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForCount(*s, "READY", 2));
  std::vector<pid_t> pids = ReadyPids(*s);
  ASSERT_EQ(pids.size(), 2u);
  const pid_t parent = s->pid;
  const pid_t child = pids[0] == parent ? pids[1] : pids[0];
  const std::vector<std::string> want = {
      absl::StrCat("task ", parent, " fd 3: a socket"),
      absl::StrCat("task ", parent, " fd 4: a socket"),
      absl::StrCat("task ", parent, " fd 5: userfaultfd (anon_inode:[userfaultfd])"),
      absl::StrCat("task ", child, " fd 3: userfaultfd (anon_inode:[userfaultfd])"),
  };

  absl::StatusOr<TreeReport> report = Checkpointer().Check(parent);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->tasks, 2u);
  ASSERT_EQ(report->problems.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_THAT(report->problems[i].message(), HasSubstr(want[i]));
  }

  // The dump refuses with all of them, before a byte is written.
  std::string image = TempPath("unsupported.img");
  absl::Status st = DumpToFile(parent, image);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("4 problems"));
  for (const std::string& w : want) EXPECT_THAT(st.message(), HasSubstr(w)) << st;
  struct stat img;
  ASSERT_EQ(stat(image.c_str(), &img), 0);
  EXPECT_EQ(img.st_size, 0) << "bytes were written before the refusal";

  // ckpt check --pid: one line per problem, exit 1.
  std::string out;
  EXPECT_EQ(RunCommand(absl::StrCat(CkptPath(), " check --pid ", parent, " 2>/dev/null"), &out), 1);
  for (const std::string& w : want) EXPECT_THAT(out, HasSubstr(w)) << out;
  ExpectPass(*s);
}

// A process whose main thread exited while another runs looks like a
// zombie in /proc: the dump refuses it, as a child or as the root, naming
// why, and leaves it running (its worker keeps counting).
TEST_F(PreflightTest, AProcessWhoseMainThreadExitedIsRefusedNotTakenForAZombie) {
  absl::StatusOr<Subject> s = StartSubject("leaderexit");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForCount(*s, "READY", 2));
  std::vector<pid_t> pids = ReadyPids(*s);
  ASSERT_EQ(pids.size(), 2u);
  const pid_t child = pids[0] == s->pid ? pids[1] : pids[0];
  for (pid_t root : {s->pid, child}) {
    absl::Status st = DumpToFile(root, TempPath(absl::StrCat("leaderexit-", root, ".img")));
    ASSERT_FALSE(st.ok()) << "dumped " << root;
    EXPECT_THAT(st.message(), HasSubstr(absl::StrCat("task ", child, ": its main thread has exited")))
        << st;
  }
  ExpectPass(*s);
}

TEST_F(PreflightTest, CheckOfADumpableTreeSaysSoAndExitsZero) {
  absl::StatusOr<Subject> s = StartSubject("threads");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::string out;
  EXPECT_EQ(RunCommand(absl::StrCat(CkptPath(), " check --pid ", s->pid), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("would dump: 1 tasks, 8 threads")) << out;
  // Nothing was frozen: it runs on and checks itself.
  ExpectPass(*s);
}

}  // namespace
}  // namespace ckpt::testing
