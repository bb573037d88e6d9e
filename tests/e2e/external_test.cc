// Objects shared with the outside: `subject | cat > out`. The pipe between
// them has its other end in a process outside the dumped tree, so the
// dump refuses it, naming it; dumped as --external and restored with
// --inherit-fd, the restored subject keeps writing into the caller's pipe
// and every line arrives, once, in order.

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

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

class ExternalTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { prctl(PR_SET_CHILD_SUBREAPER, 1); }
};

std::string PipeName(int fd) {
  struct stat st;
  fstat(fd, &st);
  return absl::StrCat("pipe:[", st.st_ino, "]");
}

// The lines of `path` are "line 1" ... "line N", then "END N".
void ExpectEveryLineOnce(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  long want = 1;
  bool end = false;
  while (std::getline(f, line)) {
    ASSERT_FALSE(end) << "after END: " << line;
    if (absl::StartsWith(line, "END ")) {
      long n = 0;
      ASSERT_TRUE(absl::SimpleAtoi(line.substr(4), &n)) << line;
      EXPECT_EQ(n, want - 1);
      end = true;
      continue;
    }
    ASSERT_EQ(line, absl::StrCat("line ", want)) << "line " << want << " lost or repeated";
    ++want;
  }
  EXPECT_TRUE(end) << "no END line after " << want - 1 << " lines";
  EXPECT_GT(want, 10);
}

TEST_F(ExternalTest, PipeToAProcessOutsideIsRefusedThenInheritedAndEveryLineArrives) {
  // subject | cat > out, with this test keeping a write end of the pipe so
  // that it can hand one to the restored subject.
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  const std::string out = TempPath("external.out");
  const std::string err = TempPath("external.err");
  UniqueFd out_fd(open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  UniqueFd err_fd(open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644));
  pid_t cat = Spawn({"cat"}, p[0], out_fd.get(), -1);
  pid_t subject = Spawn({ProgramPath("linewriter")}, -1, p[1], err_fd.get());
  close(p[0]);
  UniqueFd keep(p[1]);  // the caller's end, for --inherit-fd
  const std::string name = PipeName(keep.get());
  Subject s{subject, err};
  ASSERT_OK(WaitForOutput(s, "READY"));
  usleep(50000);

  // Refused, naming the pipe, the fd and the process outside.
  absl::Status st = DumpToFile(subject, TempPath("external.img"));
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr(name)) << st;
  EXPECT_THAT(st.message(), HasSubstr("fd 1")) << st;
  EXPECT_THAT(st.message(), HasSubstr("(cat)")) << st;
  EXPECT_THAT(st.message(), HasSubstr("--external")) << st;
  ASSERT_EQ(kill(subject, 0), 0) << "the refused dump harmed the subject";

  // Dumped as external, killed, restored with the caller's end in its place.
  DumpOptions ext;
  ext.external = {name};
  ASSERT_OK(DumpToFile(subject, TempPath("external.img"), ext));
  KillAndReap(subject);
  {
    // Without the fd it names, the restore is refused.
    absl::StatusOr<pid_t> refused = RestoreFromFile(TempPath("external.img"));
    ASSERT_FALSE(refused.ok());
    EXPECT_THAT(refused.status().message(), HasSubstr(name));
    EXPECT_THAT(refused.status().message(), HasSubstr("--inherit-fd"));
  }
  {
    // A name the image does not have is refused too.
    RestoreOptions wrong;
    wrong.inherit_fds = {{keep.get(), name}, {keep.get(), "pipe:[1]"}};
    absl::StatusOr<pid_t> refused = RestoreFromFile(TempPath("external.img"), wrong);
    ASSERT_FALSE(refused.ok());
    EXPECT_THAT(refused.status().message(), HasSubstr("pipe:[1]"));
  }
  RestoreOptions inherit;
  inherit.inherit_fds = {{keep.get(), name}};
  absl::StatusOr<pid_t> pid = RestoreFromFile(TempPath("external.img"), inherit);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_EQ(*pid, subject);
  // It writes on (into the same pipe, to the same cat) without SIGPIPE.
  usleep(100000);
  ASSERT_EQ(kill(subject, SIGUSR1), 0);
  absl::StatusOr<int> code = WaitExit(subject);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << ReadOutput(s);
  keep.reset();  // the last write end: cat sees EOF
  absl::StatusOr<int> cat_code = WaitExit(cat);
  ASSERT_TRUE(cat_code.ok());
  ExpectEveryLineOnce(out);
}

}  // namespace
}  // namespace ckpt::testing
