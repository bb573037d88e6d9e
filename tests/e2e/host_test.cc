// Checks that need the host's namespaces (see the BUILD tag).

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <grp.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/base/fd.h"
#include "tests/e2e/expect.h"
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

// Starts subject `name`, dumps, kills, restores it, and lets it check
// itself.
void DumpRestoreAndExpectPass(const std::string& name, const std::vector<std::string>& args = {}) {
  absl::StatusOr<Subject> s = StartSubject(name, args);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  DumpKillRestore(*s, {s->pid}, TempPath(name + ".img"));
  ExpectPass(*s);
}

TEST(HostTest, CredentialsAndCapabilitiesSurvive) { DumpRestoreAndExpectPass("creds"); }

// seccomp filters of each thread (and of a child) are installed again.
// Outside the sandbox: reading them (PTRACE_SECCOMP_GET_FILTER) needs
// CAP_SYS_ADMIN in the initial user namespace.
TEST(HostTest, SeccompFiltersOfEachThreadSurvive) {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  absl::StatusOr<Subject> s = StartSubject("seccomp");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::vector<pid_t> pids = LinePids(*s, "READY");
  ASSERT_EQ(pids.size(), 2u) << ReadOutput(*s);
  ASSERT_NO_FATAL_FAILURE(DumpKillRestore(*s, pids, TempPath("seccomp.img")));
  ExpectPass(*s);
}

// seccomp strict mode: the task comes back in it, blocked in its read(),
// and a forbidden call still kills it (outside the sandbox, as above: the
// injected calls pass by it only under PTRACE_O_SUSPEND_SECCOMP).
TEST(HostTest, SeccompStrictModeSurvives) {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  absl::StatusOr<Subject> s = StartSubject("strict");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::vector<pid_t> pids = LinePids(*s, "READY");
  ASSERT_EQ(pids.size(), 2u) << ReadOutput(*s);
  ASSERT_NO_FATAL_FAILURE(DumpKillRestore(*s, pids, TempPath("strict.img")));
  ExpectPass(*s);
}

// A thread whose credentials are its own (raw setresuid in that thread
// only) keeps them; the others keep the process's. Outside the sandbox,
// whose user namespace maps no uid 1000.
TEST(HostTest, AThreadsOwnCredentialsSurvive) { DumpRestoreAndExpectPass("threadcreds"); }

// A device node made, opened and unlinked comes back (outside the
// sandbox: mknod needs CAP_MKNOD), and with it every open flag.
TEST(HostTest, UnlinkedDeviceNodeAndOpenFlagsComeBack) {
  DumpRestoreAndExpectPass("openflags", {TempPath(""), "mknod"});
}

// A deleted sparse file keeps its owner (1234:5678): outside the sandbox,
// whose user namespace maps no such uid.
TEST(HostTest, DeletedSparseFileKeepsItsOwner) {
  DumpRestoreAndExpectPass("sparse", {TempPath(""), "owner"});
}

// Each thread's scheduling policy, priority, nice and CPU affinity, and
// the process's oom_score_adj (tests/e2e/programs/schedattr.c). Outside
// the sandbox: SCHED_FIFO needs CAP_SYS_NICE in the initial user
// namespace.
TEST(HostTest, SchedulingPolicyNiceAffinityAndOomScoreSurvive) { DumpRestoreAndExpectPass("schedattr"); }

// The trust model: an image never grants more than its restorer has. A
// restorer that may checkpoint and restore (CAP_CHECKPOINT_RESTORE,
// CAP_SYS_PTRACE) but runs as nobody, restoring an image of a root
// process, is refused, naming what it lacks, and no task of it ever runs
// as root. Outside the sandbox: its user namespace maps no uid but root.
TEST(HostTest, RestorerWithoutRootCannotGainTheImagesCredentials) {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  // The subject runs from a world-readable directory, so that nobody can
  // open what the image names.
  char dir_template[] = "/tmp/libckpt-trust.XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  ASSERT_EQ(chmod(dir.c_str(), 0755), 0);
  const std::string prog = dir + "/counter";
  {
    std::ifstream in(ProgramPath("counter"), std::ios::binary);
    std::ofstream out(prog, std::ios::binary);
    out << in.rdbuf();
  }
  ASSERT_EQ(chmod(prog.c_str(), 0755), 0);
  pid_t subject = fork();
  if (subject == 0) {
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    syscall(SYS_close_range, 3, ~0u, 0);
    if (chdir(dir.c_str()) != 0) _exit(127);
    execl(prog.c_str(), prog.c_str(), nullptr);
    _exit(127);
  }
  usleep(200000);
  const std::string image = dir + "/root.img";
  ASSERT_TRUE(DumpToFile(subject, image).ok());
  KillAndReap(subject);

  int p[2];
  ASSERT_EQ(pipe(p), 0);
  pid_t restorer = fork();
  if (restorer == 0) {
    // nobody, keeping only what checkpoint/restore needs; the image (0600,
    // root's) is opened first and handed over as an fd.
    int image_fd = open(image.c_str(), O_RDONLY | O_CLOEXEC);
    prctl(PR_SET_KEEPCAPS, 1);
    std::string msg;
    if (setgroups(0, nullptr) != 0 || setresgid(65534, 65534, 65534) != 0 ||
        setresuid(65534, 65534, 65534) != 0) {
      msg = "SETUP setresuid";
    } else {
      struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
      const uint64_t keep = (1ull << CAP_SYS_PTRACE) | (1ull << 40 /* CAP_CHECKPOINT_RESTORE */);
      struct __user_cap_data_struct data[2] = {
          {static_cast<uint32_t>(keep), static_cast<uint32_t>(keep), 0},
          {static_cast<uint32_t>(keep >> 32), static_cast<uint32_t>(keep >> 32), 0}};
      if (syscall(SYS_capset, &hdr, data) != 0) {
        msg = "SETUP capset";
      } else {
        Restorer restorer;
        absl::StatusOr<pid_t> pid = restorer.Restore(image_fd);
        if (pid.ok()) {
          absl::StatusOr<std::string> st = ReadFile(absl::StrCat("/proc/", *pid, "/status"));
          msg = absl::StrCat("RESTORED ", st.ok() ? *st : "");
          kill(*pid, SIGKILL);
        } else {
          msg = std::string(pid.status().message());
        }
      }
    }
    (void)!write(p[1], msg.data(), msg.size());
    _exit(0);
  }
  close(p[1]);
  std::string msg = ReadToEof(p[0]);
  close(p[0]);
  int status;
  waitpid(restorer, &status, 0);
  ASSERT_FALSE(absl::StartsWith(msg, "SETUP")) << msg;
  ASSERT_FALSE(absl::StartsWith(msg, "RESTORED")) << "restored with the image's credentials: " << msg;
  EXPECT_THAT(msg, ::testing::HasSubstr("cannot give it")) << msg;
  EXPECT_THAT(msg, ::testing::HasSubstr("CAP_SETUID")) << msg;
  EXPECT_THAT(msg, ::testing::HasSubstr("an image never grants more than its restorer has")) << msg;
  // Nothing of it runs: its PID is free again once reaped.
  for (int i = 0; i < 2000 && kill(subject, 0) == 0; ++i) usleep(1000);
  EXPECT_NE(kill(subject, 0), 0) << "a restored task was left behind";
  std::filesystem::remove_all(dir);
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
  std::string ckpt = CkptPath();
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

// Proportional resident memory (Pss) of the tasks, in KiB.
uint64_t PssKiB(const std::vector<pid_t>& pids) {
  uint64_t total = 0;
  for (pid_t pid : pids) {
    absl::StatusOr<std::string> text = ReadFile(absl::StrCat("/proc/", pid, "/smaps_rollup"));
    if (!text.ok()) continue;
    size_t at = text->find("\nPss:");
    if (at != std::string::npos) total += strtoull(text->c_str() + at + 5, nullptr, 10);
  }
  return total;
}

// A prefork tree: the pages the workers still share with their parent
// (and a grandchild with its parent) stay one physical page each after
// the restore; a write by one shows in no other (the subject checks both,
// frame by frame); the tree's memory is what it was.
TEST(HostTest, PagesSharedSinceAForkStaySharedAfterRestore) {
  absl::StatusOr<Subject> s = StartSubject("cow");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::vector<pid_t> pids = LinePids(*s, "READY");
  ASSERT_EQ(pids.size(), 6u) << ReadOutput(*s);
  const uint64_t before = PssKiB(pids);
  DumpStats stats;
  DumpKillRestore(*s, pids, TempPath("cow.img"), &stats);
  const uint64_t after = PssKiB(pids);
  // 32 MiB shared by six tasks (the grandchild's through worker 1): five
  // copies of it would be 160 MiB more.
  EXPECT_GT(stats.pages_shared, 5u * 7000u);
  EXPECT_LT(after, before + 8 * 1024) << "Pss before " << before << " KiB, after " << after;
  ExpectPass(*s);
}

}  // namespace
}  // namespace ckpt::testing
