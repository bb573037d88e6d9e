// Checks that need the host's namespaces (see the BUILD tag).

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <signal.h>

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/numbers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/harness.h"

namespace ckpt::testing {
namespace {

// The first kernel thread listed in /proc (flag PF_KTHREAD in stat).
pid_t FindKernelThread() {
  DIR* dir = opendir("/proc");
  pid_t found = 0;
  while (struct dirent* e = readdir(dir)) {
    pid_t pid;
    if (!absl::SimpleAtoi(e->d_name, &pid)) continue;
    std::ifstream in("/proc/" + std::string(e->d_name) + "/stat");
    std::string line((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    std::string field;
    unsigned long flags = 0;
    for (int i = 3; i <= 9 && rest >> field; ++i) {
      if (i == 9) flags = std::stoul(field);
    }
    if (flags & 0x00200000) {
      found = pid;
      break;
    }
  }
  closedir(dir);
  return found;
}

TEST(HostTest, DumpOfAKernelThreadIsRefused) {
  pid_t kthread = FindKernelThread();
  ASSERT_NE(kthread, 0) << "no kernel thread visible in /proc";
  absl::Status st = DumpToFile(kthread, TempPath("kthread.img"));
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(st.message(), ::testing::HasSubstr("is a kernel thread"));
}

TEST(HostTest, CredentialsAndCapabilitiesSurvive) {
  absl::StatusOr<Subject> s = StartSubject("creds");
  ASSERT_TRUE(s.ok()) << s.status();
  absl::Status st = WaitForOutput(*s, "READY");
  ASSERT_TRUE(st.ok()) << st;
  std::string image = TempPath("creds.img");
  st = DumpToFile(s->pid, image);
  ASSERT_TRUE(st.ok()) << st;
  KillAndReap(s->pid);
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_EQ(*pid, s->pid);
  kill(s->pid, SIGUSR1);
  absl::StatusOr<int> code = WaitExit(s->pid);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << ReadOutput(*s);
  EXPECT_THAT(ReadOutput(*s), ::testing::HasSubstr("PASS"));
}

// map_files works outside the sandbox: a deleted file that is mapped but
// no longer open comes back too.
TEST(HostTest, DeletedFileMappedButNotOpenComesBack) {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  absl::StatusOr<Subject> s = StartSubject("deleted", {TempPath(""), "mapped-only"});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(WaitForOutput(*s, "READY").ok());
  std::string image = TempPath("deleted-mapped.img");
  absl::Status st = DumpToFile(s->pid, image);
  ASSERT_TRUE(st.ok()) << st;
  KillAndReap(s->pid);
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_TRUE(pid.ok()) << pid.status();
  kill(s->pid, SIGUSR1);
  absl::StatusOr<int> code = WaitExit(s->pid);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << ReadOutput(*s);
}

// A shell job: its terminal is refused without --shell-job; with it, the
// restored task gets the restorer's terminal (here the pty of `script`).
TEST(HostTest, ShellJobGetsTheRestorersTerminal) {
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  ASSERT_GE(master, 0);
  ASSERT_EQ(grantpt(master), 0);
  ASSERT_EQ(unlockpt(master), 0);
  std::string slave = ptsname(master);
  std::string log = TempPath("tty.log");
  std::string program = ProgramPath("ttyuser");
  pid_t pid = fork();
  if (pid == 0) {
    int tty = open(slave.c_str(), O_RDWR | O_NOCTTY);
    dup2(tty, 0);
    dup2(tty, 1);
    dup2(tty, 2);
    syscall(SYS_close_range, 3, ~0u, 0);
    execl(program.c_str(), program.c_str(), log.c_str(), nullptr);
    _exit(127);
  }
  Subject s{pid, log};
  ASSERT_TRUE(WaitForOutput(s, "START").ok());
  EXPECT_THAT(ReadOutput(s), ::testing::HasSubstr(" 111"));
  absl::Status st = DumpToFile(pid, TempPath("tty-refused.img"));
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(st.message(), ::testing::HasSubstr("--shell-job"));
  std::string image = TempPath("tty.img");
  DumpOptions shell;
  shell.shell_job = true;
  st = DumpToFile(pid, image, shell);
  ASSERT_TRUE(st.ok()) << st;
  KillAndReap(pid);
  close(master);
  // ckpt restore, in a pty of its own, waits for the task and exits with
  // its status; script passes that on.
  std::string ckpt = absl::StrCat(getenv("TEST_SRCDIR"), "/", getenv("TEST_WORKSPACE"),
                                  "/tools/ckpt/ckpt");
  std::string command = absl::StrCat(ckpt, " restore --shell-job --image ", image);
  pid_t script = fork();
  if (script == 0) {
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    syscall(SYS_close_range, 3, ~0u, 0);
    execlp("script", "script", "-q", "-e", "-c", command.c_str(), "/dev/null", nullptr);
    _exit(127);
  }
  // The task is back when its PID is alive again.
  for (int i = 0; i < 5000 && kill(pid, 0) != 0; ++i) usleep(1000);
  usleep(100000);
  ASSERT_EQ(kill(pid, SIGUSR1), 0) << "the task was not restored";
  absl::StatusOr<int> code = WaitExit(script);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << ReadOutput(s);
  EXPECT_THAT(ReadOutput(s), ::testing::HasSubstr("PASS 111"));
}

}  // namespace
}  // namespace ckpt::testing
