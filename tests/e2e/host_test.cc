// Checks that need the host's namespaces (see the BUILD tag).

#include <dirent.h>
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

}  // namespace
}  // namespace ckpt::testing
