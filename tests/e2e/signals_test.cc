// Signals, timers and restart blocks end to end: sleeps interrupted by the
// checkpoint keep the time they had left; pending signals keep their
// payload; interval and POSIX timers keep firing.

#include <signal.h>
#include <time.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/harness.h"

namespace ckpt::testing {
namespace {

int64_t NowMono() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

TEST(SignalsTest, SleepsKeepTheTimeTheyHadLeft) {
  std::string times = TempPath("sleeps.times");
  absl::StatusOr<Subject> s = StartSubject("sleeps", {times});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(WaitForOutput(*s, "READY").ok()) << ReadOutput(*s);
  sleep(2);
  const int64_t dump_start = NowMono();
  std::string image = TempPath("sleeps.img");
  absl::Status st = DumpToFile(s->pid, image);
  ASSERT_TRUE(st.ok()) << st;
  KillAndReap(s->pid);
  const int64_t restore_start = NowMono();
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_TRUE(pid.ok()) << pid.status();
  {
    std::ofstream out(times + ".tmp");
    out << dump_start << " " << restore_start << "\n";
  }
  ASSERT_EQ(rename((times + ".tmp").c_str(), times.c_str()), 0);
  absl::StatusOr<int> code = WaitExit(*pid, 30000);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << ReadOutput(*s);
  EXPECT_THAT(ReadOutput(*s), ::testing::HasSubstr("PASS"));
}

TEST(SignalsTest, PendingSignalsAndTimersSurvive) {
  absl::StatusOr<Subject> s = StartSubject("sigstate");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(WaitForOutput(*s, "READY").ok()) << ReadOutput(*s);
  usleep(300000);  // some ticks before the checkpoint
  std::string image = TempPath("sigstate.img");
  absl::Status st = DumpToFile(s->pid, image);
  ASSERT_TRUE(st.ok()) << st;
  KillAndReap(s->pid);
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_TRUE(pid.ok()) << pid.status();
  kill(*pid, SIGWINCH);
  absl::StatusOr<int> code = WaitExit(*pid, 30000);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << ReadOutput(*s);
  EXPECT_THAT(ReadOutput(*s), ::testing::HasSubstr("PASS"));
}

}  // namespace
}  // namespace ckpt::testing
