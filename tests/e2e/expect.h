// GoogleTest steps the end-to-end tests share: checkpoint, kill and
// restore a subject, then let it check itself.
//
//   ASSERT_NO_FATAL_FAILURE(DumpKillRestore(s, {s.pid}, image));
//   ExpectPass(s);

#ifndef LIBCKPT_TESTS_E2E_EXPECT_H_
#define LIBCKPT_TESTS_E2E_EXPECT_H_

#include <signal.h>

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/harness.h"

#define ASSERT_OK(expr)           \
  do {                            \
    absl::Status st_ = (expr);    \
    ASSERT_TRUE(st_.ok()) << st_; \
  } while (0)

namespace ckpt::testing {

// Dumps the tree of `s`, kills every task in `pids` and reaps them,
// restores, and checks that the root came back with its PID.
inline void DumpKillRestore(const Subject& s, const std::vector<pid_t>& pids,
                            const std::string& image, DumpStats* stats = nullptr,
                            const DumpOptions& options = {}) {
  ASSERT_OK(DumpToFile(s.pid, image, options, stats));
  KillAndReapAll(pids);
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_EQ(*pid, s.pid);
}

// Signals the restored subject (SIGUSR1) and expects its PASS, exit 0
// and no FAIL line.
inline void ExpectPass(const Subject& s) {
  ASSERT_EQ(kill(s.pid, SIGUSR1), 0);
  absl::StatusOr<int> code = WaitExit(s.pid);
  ASSERT_TRUE(code.ok()) << code.status();
  std::string out = ReadOutput(s);
  EXPECT_EQ(*code, 0) << out;
  EXPECT_THAT(out, ::testing::HasSubstr("PASS")) << out;
  EXPECT_THAT(out, ::testing::Not(::testing::HasSubstr("FAIL"))) << out;
}

}  // namespace ckpt::testing

#endif  // LIBCKPT_TESTS_E2E_EXPECT_H_
