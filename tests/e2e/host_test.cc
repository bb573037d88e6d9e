// Checks that need the host's pid namespace (see the BUILD tag).

#include <dirent.h>

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

}  // namespace
}  // namespace ckpt::testing
