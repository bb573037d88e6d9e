// Terminals: pseudo-terminal pairs of the tree (queues, termios, modes),
// sessions with a controlling terminal and job control, a tmux server, a
// terminal whose master is outside the tree (external), and --shell-job
// with and without a terminal on the restorer.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "tests/e2e/expect.h"
#include "tests/e2e/harness.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;

class TtyTest : public ::testing::Test {
 protected:
  void SetUp() override { prctl(PR_SET_CHILD_SUBREAPER, 1); }
};

void RunPair(const std::string& mode, bool leave_running) {
  absl::StatusOr<Subject> s = StartSubject("pty_pair", {mode});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  const std::string image = TempPath(absl::StrCat("pty-", mode, leave_running ? "-left" : "", ".img"));
  if (leave_running) {
    DumpOptions options;
    options.leave_running = true;
    ASSERT_OK(DumpToFile(s->pid, image, options));
  } else {
    ASSERT_NO_FATAL_FAILURE(DumpKillRestore(*s, {s->pid}, image));
  }
  ExpectPass(*s);
}

// Raw mode with odd control characters and speeds, a window size, packet
// mode, exclusive mode and the lock, 100 bytes typed and 60 written, none
// read: all of it is there after the restore, at the same /dev/pts index.
TEST_F(TtyTest, PairInRawModeKeepsItsQueuesAndModes) { RunPair("raw", false); }

// Canonical mode with echo: a whole line and an unfinished one typed, the
// echo and a line written by the slave unread by the master; a canonical
// read gives the whole line only, and the unfinished one goes on.
TEST_F(TtyTest, PairInCanonicalModeKeepsItsLines) { RunPair("canon", false); }

// Every slave closed: the master reads what was queued, then EIO; the
// slave opened again reads what was typed.
TEST_F(TtyTest, PairWhoseSlaveWasClosedStaysSo) { RunPair("closed", false); }

// A dump that leaves the tree running puts every queued byte back as it
// was, and the modes.
TEST_F(TtyTest, DumpLeavingTheTreeRunningLeavesThePairAsItWas) {
  ASSERT_NO_FATAL_FAILURE(RunPair("raw", true));
  ASSERT_NO_FATAL_FAILURE(RunPair("canon", true));
  ASSERT_NO_FATAL_FAILURE(RunPair("quiet", true));
  RunPair("closed", true);
}

// A session leader with the slave as its controlling terminal, a
// foreground and a background job: the foreground group and the session
// come back; ^Z typed on the master stops the foreground job (SIGTSTP),
// the background job reading is stopped (SIGTTIN), `fg` resumes the job,
// which writes through its old /dev/tty fd and through a new /dev/tty.
TEST_F(TtyTest, JobControlWorksOnTheRestoredTerminal) {
  absl::StatusOr<Subject> s = StartSubject("pty_jobs");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::vector<pid_t> pids = LinePids(*s, "READY");
  ASSERT_EQ(pids.size(), 4u) << ReadOutput(*s);
  ASSERT_NO_FATAL_FAILURE(DumpKillRestore(*s, pids, TempPath("pty-jobs.img")));
  ExpectPass(*s);
  KillAndReapAll({pids[1], pids[2], pids[3]});
}

// A pty pair of this test's: the subject gets the slave on its stdin and
// stdout, this test keeps the master (outside the tree).
struct OutsidePty {
  UniqueFd master;
  std::string slave;
  static OutsidePty Open() {
    OutsidePty p;
    p.master.reset(posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (p.master.valid() && grantpt(p.master.get()) == 0 && unlockpt(p.master.get()) == 0) {
      p.slave = ptsname(p.master.get());
    }
    return p;
  }
  std::string Name() const {
    struct stat st;
    if (stat(slave.c_str(), &st) != 0) return "";
    return absl::StrCat("tty:[", major(st.st_rdev), ":", minor(st.st_rdev), "]");
  }
};

// Starts pty_user with `mode` on the slave of `pty` (stdin, stdout), its
// stderr the output file.
absl::StatusOr<Subject> StartOnPty(const OutsidePty& pty, const std::string& mode, const std::string& tag) {
  UniqueFd tty(open(pty.slave.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!tty.valid()) return absl::InternalError("open " + pty.slave);
  const std::string err = TempPath(tag + ".out");
  UniqueFd err_fd(open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644));
  pid_t pid = Spawn({ProgramPath("pty_user"), mode}, tty.get(), tty.get(), err_fd.get());
  Subject s{pid, err};
  RETURN_IF_ERROR(WaitForOutput(s, "READY"));
  return s;
}

// What `master` gives within `ms` of quiet.
std::string ReadMaster(int master, int ms = 500) {
  std::string out;
  char buf[1024];
  for (;;) {
    struct pollfd p = {master, POLLIN, 0};
    if (poll(&p, 1, ms) <= 0 || !(p.revents & POLLIN)) return out;
    ssize_t n = read(master, buf, sizeof(buf));
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

// A terminal whose master is outside the tree (a supervisor's, an
// sshd's): refused, naming it and both ways out; dumped as external, then
// restored onto a new terminal given with --inherit-fd. The subject leads
// a session with it as its controlling terminal: the new terminal becomes
// that, with the subject's group in the foreground, and carries its
// output.
TEST_F(TtyTest, TerminalWithItsMasterOutsideIsExternalAndInherited) {
  OutsidePty old_pty = OutsidePty::Open();
  ASSERT_FALSE(old_pty.slave.empty());
  absl::StatusOr<Subject> s = StartOnPty(old_pty, "session", "pty-external");
  ASSERT_TRUE(s.ok()) << s.status();
  const std::string name = old_pty.Name();
  const std::string image = TempPath("pty-external.img");
  // ckpt check --pid says what the dump would: refused, then fine with
  // the terminal named external.
  for (bool named : {false, true}) {
    std::vector<std::string> args = {CkptPath(), "check", "--pid", std::to_string(s->pid)};
    if (named) args.insert(args.end(), {"--external", name});
    absl::StatusOr<int> check = WaitExit(Spawn(args, -1, -1, -1), 10000);
    ASSERT_TRUE(check.ok());
    EXPECT_EQ(*check, named ? 0 : 1) << (named ? "with --external " : "without --external ") << name;
  }
  absl::Status st = DumpToFile(s->pid, image);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr(old_pty.slave)) << st;
  EXPECT_THAT(st.message(), HasSubstr("--shell-job")) << st;
  EXPECT_THAT(st.message(), HasSubstr("--external " + name)) << st;
  ASSERT_EQ(kill(s->pid, 0), 0);
  DumpOptions wrong;
  wrong.external = {"tty:[136:999]"};
  st = DumpToFile(s->pid, image, wrong);
  EXPECT_THAT(st.message(), HasSubstr("tty:[136:999] is not a terminal the tree uses")) << st;
  DumpOptions ext;
  ext.external = {name};
  ASSERT_OK(DumpToFile(s->pid, image, ext));
  KillAndReap(s->pid);
  old_pty.master.reset();

  OutsidePty new_pty = OutsidePty::Open();
  ASSERT_FALSE(new_pty.slave.empty());
  UniqueFd given(open(new_pty.slave.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC));
  ASSERT_TRUE(given.valid());
  {
    absl::StatusOr<pid_t> refused = RestoreFromFile(image);
    ASSERT_FALSE(refused.ok());
    EXPECT_THAT(refused.status().message(), HasSubstr("--inherit-fd FD:" + name));
  }
  RestoreOptions inherit;
  inherit.inherit_fds = {{given.get(), name}};
  absl::StatusOr<pid_t> pid = RestoreFromFile(image, inherit);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_EQ(*pid, s->pid);
  pid_t sid = -1;
  ASSERT_EQ(ioctl(new_pty.master.get(), TIOCGSID, &sid), 0);
  EXPECT_EQ(sid, s->pid);
  EXPECT_EQ(tcgetpgrp(new_pty.master.get()), s->pid);
  ASSERT_EQ(kill(s->pid, SIGUSR1), 0);
  absl::StatusOr<int> code = WaitExit(s->pid);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << ReadOutput(*s);
  EXPECT_THAT(ReadMaster(new_pty.master.get()), HasSubstr(absl::StrCat("hello ", s->pid)));
}

// Runs `fn` in a child without a controlling terminal (a session of its
// own); returns what it wrote.
template <typename Fn>
std::string InSessionWithoutTerminal(Fn fn) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return "pipe";
  pid_t child = fork();
  if (child == 0) {
    close(p[0]);
    setsid();
    std::string said = fn();
    if (write(p[1], said.data(), said.size()) < 0) _exit(2);
    _exit(0);
  }
  close(p[1]);
  std::string said = ReadToEof(p[0]);
  close(p[0]);
  waitpid(child, nullptr, 0);
  return said;
}

// Restores `image` with --shell-job: "restored PID", or the error.
std::string RestoreShellJob(const std::string& image) {
  RestoreOptions options;
  options.shell_job = true;
  absl::StatusOr<pid_t> pid = RestoreFromFile(image, options);
  return pid.ok() ? absl::StrCat("restored ", *pid) : std::string(pid.status().message());
}

// --shell-job is about the caller's terminal only: a tree that uses no
// terminal dumps and restores with it, from a restorer without a
// terminal; a tree that uses the terminal it was dumped from is refused
// there, saying that the restore has no terminal to give it.
TEST_F(TtyTest, ShellJobNeedsATerminalOnlyWhenTheTreeUsesOne) {
  {
    absl::StatusOr<Subject> s = StartSubject("counter");
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_OK(WaitForOutput(*s, "READY"));
    DumpOptions shell;
    shell.shell_job = true;
    const std::string image = TempPath("no-tty.img");
    ASSERT_OK(DumpToFile(s->pid, image, shell));
    KillAndReap(s->pid);
    // The restored subject is the child's: this test reaps it as the
    // subreaper once the child has gone.
    std::string said = InSessionWithoutTerminal([&]() -> std::string {
      if (open("/dev/tty", O_RDWR) >= 0) return "the child has a terminal";
      return RestoreShellJob(image);
    });
    ASSERT_EQ(said, absl::StrCat("restored ", s->pid));
    usleep(300000);  // it counts on for a while
    ExpectPass(*s);
  }
  OutsidePty pty = OutsidePty::Open();
  ASSERT_FALSE(pty.slave.empty());
  absl::StatusOr<Subject> s = StartOnPty(pty, "tty", "pty-shell-job");
  ASSERT_TRUE(s.ok()) << s.status();
  DumpOptions shell;
  shell.shell_job = true;
  const std::string image = TempPath("shell-job.img");
  ASSERT_OK(DumpToFile(s->pid, image, shell));
  KillAndReap(s->pid);
  std::string said = InSessionWithoutTerminal([&]() { return RestoreShellJob(image); });
  EXPECT_THAT(said, HasSubstr("has no terminal to give them"));
  EXPECT_THAT(said, HasSubstr(pty.slave));
  EXPECT_NE(kill(s->pid, 0), 0) << "a failed restore left the task";
  // From a restorer that has one (the test's pty as its terminal), the
  // task gets it; the restorer waits for it (as ckpt restore does) and
  // exits with its status.
  int master = pty.master.get();
  pid_t child = fork();
  if (child == 0) {
    setsid();
    int tty = open(pty.slave.c_str(), O_RDWR);  // the child's controlling terminal
    if (tty < 0) _exit(3);
    RestoreOptions options;
    options.shell_job = true;
    absl::StatusOr<pid_t> pid = RestoreFromFile(image, options);
    if (!pid.ok()) _exit(4);
    int status = 0;
    if (waitpid(*pid, &status, 0) != *pid) _exit(5);
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 6);
  }
  for (int i = 0; i < 5000 && kill(s->pid, 0) != 0; ++i) usleep(1000);
  usleep(100000);
  ASSERT_EQ(kill(s->pid, SIGUSR1), 0);
  absl::StatusOr<int> code = WaitExit(child);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 0) << ReadOutput(*s);
  EXPECT_THAT(ReadOutput(*s), HasSubstr("PASS"));
  EXPECT_THAT(ReadMaster(master), HasSubstr(absl::StrCat("hello ", s->pid)));
}


// Runs tmux with `args` on the server at `sock`; its stdout, and its exit
// status in *code.
std::string Tmux(const std::string& sock, std::vector<std::string> args, int* code = nullptr) {
  args.insert(args.begin(), {"tmux", "-S", sock, "-f", "/dev/null"});
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return "";
  pid_t pid = Spawn(args, -1, p[1], -1);
  close(p[1]);
  std::string out = ReadToEof(p[0]);
  close(p[0]);
  absl::StatusOr<int> st = WaitExit(pid, 10000);
  if (code != nullptr) *code = st.ok() ? *st : -1;
  return out;
}

// Polls the pane until it shows `text` (5 s at most); what it showed.
std::string WaitForPane(const std::string& sock, const std::string& text) {
  std::string shown;
  for (int i = 0; i < 100; ++i) {
    shown = Tmux(sock, {"capture-pane", "-p", "-t", "t", "-S", "-"});
    if (shown.find(text) != std::string::npos) break;
    usleep(50000);
  }
  return shown;
}

// A detached tmux server (Debian's) with a shell in a pane: after the
// restore, send-keys reaches the shell through the restored pair, and
// capture-pane shows the scrollback from before and the output of a new
// command (an external one: the shell makes it the foreground job).
TEST_F(TtyTest, TmuxServerKeepsItsScrollbackAndRunsNewCommands) {
  char dir[] = "/tmp/ckpt-tmux-XXXXXX";  // short: a unix socket path has 108 bytes
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string sock = absl::StrCat(dir, "/s");
  int code = -1;
  Tmux(sock, {"new-session", "-d", "-s", "t", "-x", "80", "-y", "24", "bash --norc --noprofile"}, &code);
  ASSERT_EQ(code, 0);
  std::vector<pid_t> pids;
  for (const char* what : {"#{pid}", "#{pane_pid}"}) {
    pids.push_back(atoi(Tmux(sock, {"display-message", "-p", "-t", "t", what}).c_str()));
    ASSERT_GT(pids.back(), 0);
  }
  Tmux(sock, {"send-keys", "-t", "t", "echo before-$((6*7))", "Enter"});
  ASSERT_THAT(WaitForPane(sock, "before-42"), HasSubstr("before-42"));
  usleep(200000);  // the last client's connection gone from the server
  const std::string image = TempPath("tmux.img");
  ASSERT_OK(DumpToFile(pids[0], image));
  KillAndReapAll(pids);
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_EQ(*pid, pids[0]);
  Tmux(sock, {"send-keys", "-t", "t", "/bin/echo after-$((7*8)); sleep 0.2; echo done-$((8*9))", "Enter"});
  std::string shown = WaitForPane(sock, "done-72");
  EXPECT_THAT(shown, HasSubstr("before-42"));
  EXPECT_THAT(shown, HasSubstr("after-56"));
  EXPECT_THAT(shown, HasSubstr("done-72"));
  EXPECT_EQ(Tmux(sock, {"display-message", "-p", "-t", "t", "#{pane_pid}"}), absl::StrCat(pids[1], "\n"));
  Tmux(sock, {"kill-server"}, &code);
  EXPECT_EQ(code, 0);
  for (pid_t p : pids) WaitExit(p, 5000).IgnoreError();
  KillAndReapAll(pids);
  unlink(sock.c_str());
  rmdir(dir);
}

}  // namespace
}  // namespace ckpt::testing
