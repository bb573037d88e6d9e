// Signals, timers and restart blocks end to end: sleeps interrupted by the
// checkpoint keep the time they had left; pending signals keep their
// payload; interval and POSIX timers keep firing.

#include <signal.h>
#include <sys/prctl.h>
#include <time.h>

#include <cstddef>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/base/clock.h"
#include "lib/image/format.h"
#include "tests/e2e/expect.h"
#include "tests/e2e/harness.h"
#include "tests/e2e/image_edit.h"

namespace ckpt::testing {
namespace {

TEST(SignalsTest, SleepsKeepTheTimeTheyHadLeft) {
  std::string times = TempPath("sleeps.times");
  absl::StatusOr<Subject> s = StartSubject("sleeps", {times});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(WaitForOutput(*s, "READY").ok()) << ReadOutput(*s);
  sleep(2);
  const int64_t dump_start = MonotonicNs();
  std::string image = TempPath("sleeps.img");
  absl::Status st = DumpToFile(s->pid, image);
  ASSERT_TRUE(st.ok()) << st;
  KillAndReap(s->pid);
  const int64_t restore_start = MonotonicNs();
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

// Job control: children stopped by SIGTSTP (waited for by their parent,
// with signals sent while stopped), by SIGSTOP through one thread, and in
// the middle of a sleep come back stopped, every thread, without running
// an instruction; their parent sees the same wait reports and no new
// SIGCHLD; SIGCONT resumes each with its pending signals and its sleep.
TEST(SignalsTest, JobControlStopsComeBackStopped) {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  absl::StatusOr<Subject> s = StartSubject("jobstop");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(WaitForOutput(*s, "READY").ok()) << ReadOutput(*s);
  std::vector<pid_t> pids = LinePids(*s, "READY");
  ASSERT_EQ(pids.size(), 5u) << ReadOutput(*s);
  ASSERT_NO_FATAL_FAILURE(DumpKillRestore(*s, pids, TempPath("jobstop.img")));
  ExpectPass(*s);
}

// A dump that leaves the tree running leaves stopped tasks stopped, and
// takes no wait report from their parent.
TEST(SignalsTest, JobControlStopsStayAfterADumpThatLeavesTheTreeRunning) {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  absl::StatusOr<Subject> s = StartSubject("jobstop");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(WaitForOutput(*s, "READY").ok()) << ReadOutput(*s);
  DumpOptions options;
  options.leave_running = true;
  ASSERT_OK(DumpToFile(s->pid, TempPath("jobstop-left.img"), options));
  ExpectPass(*s);
}

// Signal-driven I/O: O_ASYNC, F_SETOWN (a process, and one thread with
// F_SETOWN_EX) and F_SETSIG come back, and a write to the pipes signals
// their owners with the fd.
TEST(SignalsTest, SignalDrivenIoOwnersAndSignalsSurvive) {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  absl::StatusOr<Subject> s = StartSubject("sigio");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(WaitForOutput(*s, "READY").ok()) << ReadOutput(*s);
  std::vector<pid_t> pids = LinePids(*s, "READY");
  ASSERT_EQ(pids.size(), 2u) << ReadOutput(*s);
  ASSERT_NO_FATAL_FAILURE(DumpKillRestore(*s, pids, TempPath("sigio.img")));
  ExpectPass(*s);
}

// seccomp filters are installed again where the dump can read them
// (CAP_SYS_ADMIN in the initial user namespace: not in Bazel's sandbox);
// where it cannot, the dump refuses, saying why, and leaves the tree
// running: never a restore without the filters.
TEST(SignalsTest, SeccompFiltersAreRestoredOrTheDumpRefuses) {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  absl::StatusOr<Subject> s = StartSubject("seccomp");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(WaitForOutput(*s, "READY").ok()) << ReadOutput(*s);
  std::vector<pid_t> pids = LinePids(*s, "READY");
  ASSERT_EQ(pids.size(), 2u) << ReadOutput(*s);
  const std::string image = TempPath("seccomp.img");
  absl::Status st = DumpToFile(s->pid, image);
  if (!st.ok()) {
    EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("seccomp filters"));
    ExpectPass(*s);  // the original, untouched
    return;
  }
  KillAndReapAll(pids);
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ExpectPass(*s);
}

// Hostile signal records are refused, naming the record and the field,
// and nothing is left running.
TEST(SignalsTest, CorruptSignalRecordsAreRefusedByName) {
  absl::StatusOr<Subject> s = StartSubject("sigstate");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(WaitForOutput(*s, "READY").ok()) << ReadOutput(*s);
  std::string image = TempPath("sigstate-bad.img");
  absl::Status st = DumpToFile(s->pid, image);
  ASSERT_TRUE(st.ok()) << st;
  KillAndReap(s->pid);
  struct Case {
    uint32_t type;
    size_t offset;
    int32_t value;
    const char* record;
    const char* field;
  };
  const Case cases[] = {
      {image::CKPT_HDR_POSIX_TIMER, offsetof(image::ckpt_posix_timer, notify), 2, "POSIX_TIMER",
       "'notify'"},
      {image::CKPT_HDR_SIGINFO, 0, SIGKILL, "SIGINFO", "'signo'"},
      {image::CKPT_HDR_SIGNALS, offsetof(image::ckpt_signals, nr_timers), 1 << 30, "SIGNALS",
       "'nr_timers'"},
  };
  for (const Case& c : cases) {
    std::string bad = TempPath(absl::StrCat("sigstate-bad-", c.type, ".img"));
    ASSERT_TRUE(RewriteImage(image, bad, [&](uint32_t type, std::string* payload) {
                  if (type == c.type && payload->size() >= c.offset + 4) {
                    std::memcpy(payload->data() + c.offset, &c.value, 4);
                  }
                }).ok());
    absl::StatusOr<pid_t> pid = RestoreFromFile(bad);
    ASSERT_FALSE(pid.ok()) << c.record;
    EXPECT_THAT(pid.status().message(), ::testing::HasSubstr(c.record));
    EXPECT_THAT(pid.status().message(), ::testing::HasSubstr(c.field));
    EXPECT_NE(kill(s->pid, 0), 0) << "a failed restore left the task running";
  }
}

}  // namespace
}  // namespace ckpt::testing
