// For tests whose subjects are trees that say "CHILDREN a b ..." and
// check themselves after SIGUSR1 (the socket tests): the tree's PIDs,
// killing and reaping what is left of it, and the two standard runs (dump,
// kill, restore; and a dump left running, then its image restored).
//
// The test process must be a child subreaper (prctl PR_SET_CHILD_SUBREAPER)
// so that the killed tree's orphans are its to reap.

#ifndef LIBCKPT_TESTS_E2E_SUBJECT_TREE_H_
#define LIBCKPT_TESTS_E2E_SUBJECT_TREE_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <cerrno>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/expect.h"
#include "lib/base/fd.h"
#include "tests/e2e/harness.h"

namespace ckpt::testing {

// The subject's PID and its children's (its "CHILDREN a b ..." line).
inline std::vector<pid_t> TreePids(const Subject& s) {
  std::vector<pid_t> pids = {s.pid};
  for (pid_t pid : LinePids(s, "CHILDREN")) pids.push_back(pid);
  return pids;
}

// Kills and reaps whatever of the tree is still this process's own child
// (the root first; its children are then this subreaper's): a PID that was
// already reaped may belong to someone else by now and is left alone.
inline void KillOwnTree(const std::vector<pid_t>& pids) {
  for (pid_t pid : pids) {
    int status;
    if (waitpid(pid, &status, WNOHANG) == 0) {
      kill(pid, SIGKILL);
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    }
  }
}

// Whatever a test leaves running (it stopped at a failed assertion) is
// killed at the end of the test.
class TreeGuard {
 public:
  explicit TreeGuard(const Subject& s) : s_(s) {}
  ~TreeGuard() { KillOwnTree(TreePids(s_)); }

 private:
  const Subject& s_;
};

inline size_t CountOf(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Waits for the subject to exit 0 having said PASS for the `passes`th
// time, and never FAIL; `signal`: SIGUSR1 to it first.
inline void ExpectNthPass(const Subject& s, size_t passes, bool signal = true) {
  if (signal) {
    ASSERT_EQ(kill(s.pid, SIGUSR1), 0);
  }
  absl::StatusOr<int> code = WaitExit(s.pid);
  ASSERT_TRUE(code.ok()) << code.status();
  std::string out = ReadOutput(s);
  EXPECT_EQ(*code, 0) << out;
  EXPECT_EQ(CountOf(out, "PASS\n"), passes) << out;
  EXPECT_THAT(out, ::testing::Not(::testing::HasSubstr("FAIL"))) << out;
}

// Dumped, killed and restored, the subject (`tasks` of them) finds its
// state as it was.
inline void DumpKillRestorePasses(const std::string& name, const std::vector<std::string>& args, uint64_t tasks) {
  absl::StatusOr<Subject> s = StartSubject(name, args);
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "READY"));
  DumpStats stats;
  ASSERT_NO_FATAL_FAILURE(DumpKillRestore(*s, TreePids(*s), TempPath(name + ".img"), &stats));
  EXPECT_EQ(stats.tasks, tasks);
  ExpectNthPass(*s, 1);
}

// Dumped with leave_running, the original still sees everything; then,
// once it is gone, the image restores and the copy sees it too.
inline void LeaveRunningPassesThenRestoresAndPasses(const std::string& name, const std::vector<std::string>& args) {
  absl::StatusOr<Subject> s = StartSubject(name, args);
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::vector<pid_t> pids = TreePids(*s);
  std::string image = TempPath(name + "-leave.img");
  DumpOptions leave;
  leave.leave_running = true;
  ASSERT_OK(DumpToFile(s->pid, image, leave));
  ASSERT_NO_FATAL_FAILURE(ExpectNthPass(*s, 1));  // the original
  KillOwnTree(pids);
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_EQ(*pid, s->pid);
  ExpectNthPass(*s, 2);  // and the copy
}

// A TCP connection to 127.0.0.1:`port`; invalid if it failed.
inline UniqueFd ConnectTo(int port) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_in a {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (!fd.valid() || connect(fd.get(), reinterpret_cast<struct sockaddr*>(&a), sizeof(a)) != 0) return UniqueFd();
  return fd;
}

// The port of a subject's "PORT n" line; 0 if it has none.
inline int PortOf(const Subject& s) {
  std::string out = ReadOutput(s);
  size_t at = out.find("PORT ");
  int port = 0;
  if (at == std::string::npos) return 0;
  absl::SimpleAtoi(out.substr(at + 5, out.find('\n', at) - at - 5), &port);
  return port;
}

}  // namespace ckpt::testing

#endif  // LIBCKPT_TESTS_E2E_SUBJECT_TREE_H_
