// A dump that is cut short never harms the tree: the dumper killed at any
// moment (SIGKILL, SIGTERM, SIGINT), the image's reader gone, every write
// and fsync of the output failing in turn, a full filesystem. Each time the
// subject (programs/intact.c) must be running again on its own, untraced,
// with the same mappings, and at the end it checks its memory, registers,
// signal state and threads itself.

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/base/clock.h"
#include "lib/base/fd.h"
#include "lib/task/ptrace.h"
#include "tests/e2e/expect.h"
#include "tests/e2e/harness.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;

// Starts `ckpt ARGS` with stdout on `out_fd` (-1: /dev/null) and stderr
// into `err_path`.
pid_t StartCkpt(const std::vector<std::string>& args, int out_fd, const std::string& err_path) {
  std::vector<std::string> argv = {CkptPath()};
  argv.insert(argv.end(), args.begin(), args.end());
  UniqueFd err(open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  return Spawn(argv, -1, out_fd, err.get());
}

int WaitStatus(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

// Every thread of `pid` untraced and not stopped; waits up to 5 s (a
// tracer's death detaches its tracees at once; a dumper that cleans up
// takes a few ms).
absl::Status WaitOnItsOwn(pid_t pid) {
  const int64_t deadline = MonotonicNs() + 5'000'000'000;
  std::string last;
  for (;;) {
    bool ok = true;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/task"), ec)) {
      absl::StatusOr<std::string> st = ReadFile(e.path().string() + "/status");
      if (!st.ok()) continue;
      bool traced = !absl::StrContains(*st, "TracerPid:\t0\n");
      bool stopped = absl::StrContains(*st, "State:\tt") || absl::StrContains(*st, "State:\tT");
      if (traced || stopped) {
        ok = false;
        last = absl::StrCat(e.path().string(), (traced ? " traced" : ""), (stopped ? " stopped" : ""));
      }
    }
    if (ec) return absl::NotFoundError(absl::StrCat("task ", pid, " is gone"));
    if (ok) return absl::OkStatus();
    if (MonotonicNs() > deadline) return absl::DeadlineExceededError(last);
    usleep(1000);
  }
}

std::string Maps(pid_t pid) {
  absl::StatusOr<std::string> maps = ReadFile(absl::StrCat("/proc/", pid, "/maps"));
  return maps.ok() ? *maps : "";
}

// Files left in `dir` (a dump may leave nothing partial there).
std::vector<std::string> Leftovers(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    names.push_back(e.path().filename().string());
  }
  return names;
}

std::string FreshDir(const std::string& name) {
  std::string dir = TempPath(name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

struct Intact {
  Subject s;
  std::string maps;  // as before any dump
};

Intact StartIntact(int mib) {
  Intact in;
  absl::StatusOr<Subject> s = StartSubject("intact", {absl::StrCat(mib)});
  EXPECT_TRUE(s.ok()) << s.status();
  if (!s.ok()) return in;
  in.s = *s;
  EXPECT_TRUE(WaitForOutput(in.s, "READY").ok()) << ReadOutput(in.s);
  usleep(50000);  // every thread in its loop
  in.maps = Maps(in.s.pid);
  return in;
}

// How long one whole --leave-running dump of `pid` takes through the CLI.
int64_t TimeOneDump(pid_t pid, const std::string& dir) {
  const int64_t t0 = MonotonicNs();
  pid_t c = StartCkpt({"dump", "--pid", absl::StrCat(pid), "--image", dir + "/timed.img",
                       "--leave-running"},
                      -1, dir + "/timed.err");
  int status = WaitStatus(c);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << *ReadFile(dir + "/timed.err");
  std::filesystem::remove(dir + "/timed.img");
  std::filesystem::remove(dir + "/timed.err");
  return MonotonicNs() - t0;
}

// Kills `ckpt dump --leave-running` with `sig` after a sweep of delays
// over one dump's duration; after each, the subject must be on its own
// again. With `same_maps`, its mappings must be exactly as before (a
// dumper that could clean up left no trampoline).
void SweepKills(int sig, bool same_maps) {
  Intact in = StartIntact(32);
  ASSERT_GT(in.s.pid, 0);
  const std::string dir = FreshDir(absl::StrCat("sweep", sig));
  // The median of three: one dump slowed by a busy machine would put most
  // of the sweep after the dump's end.
  int64_t timed[3];
  for (int64_t& t : timed) t = TimeOneDump(in.s.pid, dir);
  std::sort(timed, timed + 3);
  // The machine's speed drifts during the sweep (other tests start and
  // end beside it), so every completed dump's own time pulls the estimate
  // towards the present; a sweep that still cut too few goes round again
  // (at most twice more) over the updated estimate.
  int64_t full = timed[1];
  const int64_t calibrated = full;
  constexpr int kSteps = 80;
  std::mt19937 rng(sig);
  int cut = 0, completed = 0;
  for (int i = 0; i < 3 * kSteps && (i < kSteps || cut <= kSteps / 4); ++i) {
    const int64_t delay_ns = full * (i % kSteps) / kSteps + static_cast<int64_t>(rng() % 200000);
    const std::string err = dir + "/err";
    const int64_t started = MonotonicNs();
    pid_t c = StartCkpt({"dump", "--pid", absl::StrCat(in.s.pid), "--image", dir + "/sweep.img",
                         "--leave-running"},
                        -1, err);
    // Sleeps until the delay or the dumper's end, whichever comes first,
    // so that a completed dump's own duration is known.
    struct timespec ts = {static_cast<time_t>(delay_ns / 1000000000), static_cast<long>(delay_ns % 1000000000)};
    const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, c, 0));
    ASSERT_GE(pidfd, 0) << strerror(errno);
    struct pollfd pfd = {pidfd, POLLIN, 0};
    const bool ended = ppoll(&pfd, 1, &ts, nullptr) == 1;
    const int64_t ran = MonotonicNs() - started;
    close(pidfd);
    kill(c, sig);
    int status = WaitStatus(c);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      ++completed;
      if (ended) full = (3 * full + ran) / 4;
    } else {
      ++cut;
      // Killed by the signal itself only before ckpt had installed its
      // handlers, so before it touched the tree.
      if (sig != SIGKILL && !WIFSIGNALED(status)) {
        // Caught: one line, naming the signal; the tree resumed.
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << "status " << status;
        absl::StatusOr<std::string> text = ReadFile(err);
        ASSERT_TRUE(text.ok());
        if (WIFEXITED(status)) {
          EXPECT_THAT(*text, HasSubstr(absl::StrCat("interrupted by SIG", sigabbrev_np(sig))))
              << *text;
        }
      }
    }
    absl::Status st = WaitOnItsOwn(in.s.pid);
    ASSERT_TRUE(st.ok()) << "after a kill at " << delay_ns / 1000 << " us: " << st;
    if (same_maps) {
      ASSERT_EQ(Maps(in.s.pid), in.maps) << "after a kill at " << delay_ns / 1000 << " us";
    }
    std::filesystem::remove(dir + "/sweep.img");
    std::filesystem::remove(err);
    for (const std::string& name : Leftovers(dir)) ADD_FAILURE() << "left behind: " << name;
  }
  std::printf("SIG%s sweep over %.1f ms (%.1f ms at the end): %d dumps cut short, %d completed\n",
              sigabbrev_np(sig), calibrated / 1e6, full / 1e6, cut, completed);
  EXPECT_GT(cut, kSteps / 4) << "the sweep did not cut dumps short";
  ExpectPass(in.s);
}

TEST(SafetyTest, DumperKilledWithSigkillAtAnyMomentLeavesTheSubjectIntact) {
  SweepKills(SIGKILL, /*same_maps=*/false);
}

TEST(SafetyTest, DumperInterruptedBySigtermResumesTheSubjectUntouched) {
  SweepKills(SIGTERM, /*same_maps=*/true);
}

TEST(SafetyTest, DumperInterruptedBySigintResumesTheSubjectUntouched) {
  SweepKills(SIGINT, /*same_maps=*/true);
}

int g_die_at = 0;     // the ptrace request at which the dumping child dies
int g_requests = 0;   // requests so far

void DieAtRequest(long) {
  if (++g_requests == g_die_at) raise(SIGKILL);
}

// The dumper dies just before each of the ptrace requests that change a
// tracee, one after the other (SIGKILL at the first, then the second, ...):
// every state a tracee can be left in, each one a recovery to check.
// Dumps with --leave-running through the library, in a child of this
// process; the subject is a sibling, multi-threaded.
TEST(SafetyTest, DumperDyingBeforeEachPtraceRequestLeavesTheSubjectIntact) {
  Intact in = StartIntact(4);
  ASSERT_GT(in.s.pid, 0);
  int requests = 0;
  for (int die_at = 1;; ++die_at) {
    pid_t c = fork();
    if (c == 0) {
      g_die_at = die_at;
      task::SetPtraceHookForTesting(DieAtRequest);
      int null = open("/dev/null", O_WRONLY);
      DumpOptions leave;
      leave.leave_running = true;
      Checkpointer dumper(leave);
      absl::Status st = dumper.Dump(in.s.pid, null);
      _exit(st.ok() ? 0 : 3);
    }
    int status = WaitStatus(c);
    absl::Status st = WaitOnItsOwn(in.s.pid);
    ASSERT_TRUE(st.ok()) << "the dumper died before ptrace request " << die_at << ": " << st;
    if (WIFEXITED(status)) {
      ASSERT_EQ(WEXITSTATUS(status), 0) << "the dump failed";
      requests = die_at - 1;
      break;
    }
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    ASSERT_LT(die_at, 10000);
  }
  std::printf("the dumper died before each of its %d ptrace requests in turn\n", requests);
  EXPECT_GT(requests, 20);
  ExpectPass(in.s);
}

// `ckpt dump --image -` into a pipe whose reader reads `n` bytes and goes
// away: the dump fails (the default mode would kill the tree), the subject
// runs on untouched.
TEST(SafetyTest, ReaderThatGoesAwayLeavesTheSubjectRunning) {
  Intact in = StartIntact(64);
  ASSERT_GT(in.s.pid, 0);
  const std::string dir = FreshDir("reader");
  for (size_t n : {size_t{0}, size_t{1}, size_t{4096}, size_t{1} << 20, size_t{40} << 20}) {
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    pid_t c = StartCkpt({"dump", "--pid", absl::StrCat(in.s.pid), "--image", "-"}, p[1],
                        dir + "/err");
    close(p[1]);
    std::vector<char> buf(1 << 16);
    size_t got = 0;
    while (got < n) {
      ssize_t r = read(p[0], buf.data(), std::min(buf.size(), n - got));
      if (r <= 0) break;
      got += static_cast<size_t>(r);
    }
    close(p[0]);
    int status = WaitStatus(c);
    ASSERT_EQ(got, n);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << "after " << n << " bytes";
    absl::StatusOr<std::string> text = ReadFile(dir + "/err");
    ASSERT_TRUE(text.ok());
    EXPECT_THAT(*text, HasSubstr("reader went away")) << *text;
    EXPECT_THAT(*text, HasSubstr("resumed")) << *text;
    absl::Status st = WaitOnItsOwn(in.s.pid);
    ASSERT_TRUE(st.ok()) << "after " << n << " bytes: " << st;
    ASSERT_EQ(Maps(in.s.pid), in.maps) << "after " << n << " bytes";
  }
  ExpectPass(in.s);
}

// The output seam: the Nth write (or an fsync) fails. The tree is killed
// only once the image is complete, synced and in place; before that, any
// failure resumes it and leaves nothing in the directory.
TEST(SafetyTest, EveryWriteAndFsyncFailingInTurnLeavesTheSubjectRunning) {
  Intact in = StartIntact(8);
  ASSERT_GT(in.s.pid, 0);
  const std::string dir = FreshDir("seam");
  const std::string path = dir + "/seam.img";
  int writes = 0;
  for (int fail_at = 1;; ++fail_at) {
    int calls = 0;
    OutputOps ops = SystemOutputOps();
    auto real_writev = ops.writev;
    // Short writes (at most 64 KiB a call) make many calls to fail at.
    ops.writev = [&](int fd, const struct iovec* iov, int iovcnt) -> ssize_t {
      if (++calls == fail_at) {
        errno = ENOSPC;
        return -1;
      }
      struct iovec first = iov[0];
      for (int i = 0; i < iovcnt && first.iov_len == 0; ++i) first = iov[i];
      first.iov_len = std::min<size_t>(first.iov_len, 64 << 10);
      return real_writev(fd, &first, 1);
    };
    absl::StatusOr<std::unique_ptr<ImageOutput>> out = NewFileImageOutput(path, ops);
    ASSERT_TRUE(out.ok()) << out.status();
    Checkpointer dumper;  // default mode: the tree dies if the dump succeeds
    absl::Status st = dumper.Dump(in.s.pid, **out);
    out->reset();
    if (st.ok()) {
      writes = fail_at - 1;  // every write of a whole image went through
      break;
    }
    EXPECT_THAT(st.message(), HasSubstr("No space left")) << st;
    ASSERT_TRUE(WaitOnItsOwn(in.s.pid).ok()) << "write " << fail_at;
    ASSERT_EQ(Maps(in.s.pid), in.maps) << "write " << fail_at;
    ASSERT_THAT(Leftovers(dir), ::testing::IsEmpty()) << "write " << fail_at;
    ASSERT_LT(fail_at, 100000);
  }
  std::printf("failed the dump at each of its %d writes\n", writes);
  EXPECT_GT(writes, 100);
  // The dump succeeded: the subject was killed, the image is in place.
  KillAndReap(in.s.pid);
  EXPECT_THAT(Leftovers(dir), ::testing::ElementsAre("seam.img"));

  // fsync of the image (call 1) and of the directory (call 2).
  for (int fail_at : {1, 2}) {
    Intact again = StartIntact(8);
    ASSERT_GT(again.s.pid, 0);
    std::filesystem::remove(path);
    int calls = 0;
    OutputOps ops = SystemOutputOps();
    ops.fsync = [&](int fd) -> int {
      if (++calls == fail_at) {
        errno = EIO;
        return -1;
      }
      return ::fsync(fd);
    };
    absl::StatusOr<std::unique_ptr<ImageOutput>> out = NewFileImageOutput(path, ops);
    ASSERT_TRUE(out.ok()) << out.status();
    Checkpointer dumper;
    absl::Status st = dumper.Dump(again.s.pid, **out);
    out->reset();
    ASSERT_FALSE(st.ok()) << "fsync " << fail_at;
    EXPECT_THAT(st.message(), HasSubstr("fsync")) << st;
    EXPECT_THAT(st.message(), HasSubstr("resumed")) << st;
    ASSERT_TRUE(WaitOnItsOwn(again.s.pid).ok());
    ASSERT_EQ(Maps(again.s.pid), again.maps);
    if (fail_at == 1) {
      EXPECT_THAT(Leftovers(dir), ::testing::IsEmpty());
    }
    ExpectPass(again.s);
  }
}

// A dump into a filesystem that fills up.
TEST(SafetyTest, DumpIntoAFullFilesystemFailsAndLeavesTheSubjectRunning) {
  Intact in = StartIntact(64);
  ASSERT_GT(in.s.pid, 0);
  const std::string dir = FreshDir("full");
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  pid_t c = fork();
  if (c == 0) {
    // A mount namespace of its own, with a 4 MiB tmpfs on `dir`.
    std::string msg;
    if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=4m") != 0) {
      msg = absl::StrCat("SETUP ", strerror(errno));
    } else {
      absl::StatusOr<std::unique_ptr<ImageOutput>> out = NewFileImageOutput(dir + "/full.img");
      Checkpointer dumper;
      absl::Status st = out.ok() ? dumper.Dump(in.s.pid, **out) : out.status();
      msg = st.ok() ? "OK" : std::string(st.message());
    }
    (void)!write(p[1], msg.data(), msg.size());
    _exit(0);
  }
  close(p[1]);
  std::string msg = ReadToEof(p[0]);
  close(p[0]);
  WaitStatus(c);
  if (msg == absl::StrCat("SETUP ", strerror(EINVAL))) {
    // In a chroot, "/" is not a mount point: it cannot be made private,
    // and a tmpfs mounted without that would show up outside too. The
    // test below (an image fd on /dev/full) still runs there.
    GTEST_SKIP() << "'/' is not a mount point here (a chroot): no private tmpfs can be made";
  }
  ASSERT_FALSE(absl::StartsWith(msg, "SETUP")) << msg;
  EXPECT_THAT(msg, HasSubstr("No space left")) << msg;
  EXPECT_THAT(msg, HasSubstr("resumed")) << msg;
  ASSERT_TRUE(WaitOnItsOwn(in.s.pid).ok());
  ASSERT_EQ(Maps(in.s.pid), in.maps);
  ExpectPass(in.s);
}

// The same through an image fd whose every write fails with ENOSPC, as a
// pipe to a full disk would (/dev/full): runs anywhere, in a chroot too.
TEST(SafetyTest, DumpToAnFdThatIsFullFailsAndLeavesTheSubjectRunning) {
  Intact in = StartIntact(64);
  ASSERT_GT(in.s.pid, 0);
  int full = open("/dev/full", O_WRONLY | O_CLOEXEC);
  ASSERT_GE(full, 0) << strerror(errno);
  Checkpointer dumper;
  absl::Status st = dumper.Dump(in.s.pid, full);
  close(full);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("No space left")) << st;
  EXPECT_THAT(st.message(), HasSubstr("resumed")) << st;
  ASSERT_TRUE(WaitOnItsOwn(in.s.pid).ok());
  ASSERT_EQ(Maps(in.s.pid), in.maps);
  ExpectPass(in.s);
}

}  // namespace
}  // namespace ckpt::testing
