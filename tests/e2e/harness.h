// The end-to-end harness: starts a subject program (tests/e2e/programs),
// waits for its READY line, checkpoints it through the library, kills and
// reaps it, restores it (the restored root is this process's child), and
// collects its verdict.
//
//   Subject s = *StartSubject("heap", {"64"});
//   ASSERT_OK(WaitForOutput(s, "READY"));
//   ASSERT_OK(DumpToFile(s.pid, image));
//   KillAndReap(s.pid);
//   pid_t pid = *RestoreFromFile(image);
//   kill(pid, SIGUSR1);
//   EXPECT_EQ(*WaitExit(pid), 0);
//   EXPECT_THAT(ReadOutput(s), HasSubstr("PASS"));

#ifndef LIBCKPT_TESTS_E2E_HARNESS_H_
#define LIBCKPT_TESTS_E2E_HARNESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ckpt/ckpt.hpp"

namespace ckpt::testing {

struct Subject {
  pid_t pid = 0;
  std::string output;  // its stdout and stderr (a file opened O_APPEND)
};

// A path under the test's temporary directory.
std::string TempPath(const std::string& name);
// The path of a subject program (runfiles).
std::string ProgramPath(const std::string& name);

// Starts tests/e2e/programs/NAME with ARGS as a child of this process:
// stdin /dev/null, stdout and stderr a fresh output file, no other fd.
absl::StatusOr<Subject> StartSubject(const std::string& name,
                                     const std::vector<std::string>& args = {});
// The same for a program at `path`; with `new_session`, the subject calls
// setsid() (it leads a session and a process group).
absl::StatusOr<Subject> StartProgram(const std::string& path,
                                     const std::vector<std::string>& args = {},
                                     bool new_session = false);
std::string ReadOutput(const Subject& s);
// Waits until the output holds `text` (or the subject dies).
absl::Status WaitForOutput(const Subject& s, const std::string& text, int timeout_ms = 20000);
// Waits until the output holds `text` `count` times.
absl::Status WaitForCount(const Subject& s, const std::string& text, int count,
                          int timeout_ms = 20000);
// The PIDs of the "READY <pid>" lines, in order.
std::vector<pid_t> ReadyPids(const Subject& s);
// The PIDs on the subject's first "<tag> a b ..." line (none without one).
std::vector<pid_t> LinePids(const Subject& s, const std::string& tag);
// SIGKILL to every PID, then reaps each (the test must be their parent or
// a child subreaper): the PIDs are free again when this returns.
void KillAndReapAll(const std::vector<pid_t>& pids);

absl::Status DumpToFile(pid_t pid, const std::string& path, const DumpOptions& options = {},
                        DumpStats* stats = nullptr);
absl::StatusOr<pid_t> RestoreFromFile(const std::string& path, RestoreStats* stats = nullptr);
// The same with `options` (--shell-job, --inherit-fd, ...).
absl::StatusOr<pid_t> RestoreFromFile(const std::string& path, const RestoreOptions& options,
                                      RestoreStats* stats = nullptr);

// SIGKILL and waitpid: the PID is free again when this returns.
void KillAndReap(pid_t pid);
// Waits for a child to exit; its exit status, or 128+signal.
absl::StatusOr<int> WaitExit(pid_t pid, int timeout_ms = 60000);

// The ckpt CLI (runfiles; the test needs //tools/ckpt in its data).
std::string CkptPath();
// Forks and execs `args` (args[0] looked up in PATH) with stdin `in`,
// stdout `out` and stderr `err` (-1: /dev/null), default signal handling
// and no other fd open; returns its PID.
pid_t Spawn(const std::vector<std::string>& args, int in, int out, int err);
// Everything `fd` gives until EOF.
std::string ReadToEof(int fd);

// The task's state letter from /proc (R, S, T, Z...) or '?' if gone.
char TaskState(pid_t pid);
// The syscall number the task is blocked in (/proc/PID/syscall), -1 if
// running, -2 if unknown.
long BlockedSyscall(pid_t pid);

}  // namespace ckpt::testing

#endif  // LIBCKPT_TESTS_E2E_HARNESS_H_
