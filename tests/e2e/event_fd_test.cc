// End to end, the kernel's event objects (issue 15): an event loop's
// epoll over pipes, sockets, eventfds, timerfds and signalfds, with
// level- and edge-triggered watches, a oneshot that already fired and a
// watch under a closed fd number; threads blocked in epoll waits with a
// timeout; eventfds in semaphore mode and with a reader blocked on one;
// signalfds with pending signals and their payload; inotify watches with
// their watch descriptors; pidfds of a live and of a reaped child; and a
// server whose worker threads each wait in an epoll of their own.
//
// Each subject (tests/e2e/programs/event_*.c) builds its objects, says
// READY, and after its signal checks every value, tag and number itself.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/base/fd.h"
#include "tests/e2e/expect.h"
#include "tests/e2e/harness.h"
#include "tests/e2e/subject_tree.h"

namespace ckpt::testing {
namespace {

// Killed trees leave orphans: this process adopts and reaps them, so that
// their PIDs are free for the restore.
class EventFdTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { prctl(PR_SET_CHILD_SUBREAPER, 1); }
};

// A fresh directory under the test's temporary directory, removed with
// all it holds at the end.
class TempDir {
 public:
  explicit TempDir(const std::string& name) : path_(TempPath(name + "-XXXXXX")) {
    if (mkdtemp(path_.data()) == nullptr) path_.clear();
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// -------------------------------------------------------------------- epoll

// Pipe, unix socket, eventfd, timerfd and signalfd, all with something to
// read, in a level-triggered epoll: one epoll_wait reports exactly them
// with their tags; a oneshot that fired stays disarmed; an edge that came
// after the last wait fires once; a target watched under a number closed
// since is still reported; MOD and DEL then work on the restored watches.
TEST_F(EventFdTest, EpollKeepsEveryWatchWithItsTagAndWhatIsReady) { DumpKillRestorePasses("event_loop", {}, 1); }

// Left running, the dump takes nothing from any target and arms nothing:
// the original sees the same; the image, restored once it is gone, too.
TEST_F(EventFdTest, EpollLeaveRunningThenRestore) { LeaveRunningPassesThenRestoresAndPasses("event_loop", {}); }

// Checkpointed about 2 s into 5 s waits and restored at once: the waits
// time out (0, not EINTR) about 5 s after they began, by the subject's own
// monotonic clock.
void TimedWaitsEndOnTime(const std::vector<std::string>& waits) {
  absl::StatusOr<Subject> s = StartSubject("event_timeout", waits);
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "READY"));
  sleep(2);
  ASSERT_NO_FATAL_FAILURE(DumpKillRestore(*s, {s->pid}, TempPath(absl::StrCat("event_timeout-", waits[0], ".img"))));
  ExpectNthPass(*s, 1, /*signal=*/false);
}

TEST_F(EventFdTest, EpollWaitAndEpollPwaitKeepTheirTimeout) { TimedWaitsEndOnTime({"epoll_wait", "epoll_pwait"}); }

// epoll_pwait2 (a timespec the kernel does not write back), as systemd's
// sd-event waits.
TEST_F(EventFdTest, EpollPwait2KeepsItsTimeout) { TimedWaitsEndOnTime({"epoll_pwait2"}); }

// ------------------------------------------------------------------ eventfd

// A semaphore eventfd gives its count one by one, then EAGAIN; a count
// above 32 bits comes back whole; a reader blocked in read() is blocked
// again and wakes with what is written after the restore.
TEST_F(EventFdTest, EventfdsKeepCountModeAndBlockedReader) { DumpKillRestorePasses("event_eventfd", {}, 1); }

TEST_F(EventFdTest, EventfdsLeaveRunningThenRestore) { LeaveRunningPassesThenRestoresAndPasses("event_eventfd", {}); }

// ----------------------------------------------------------------- signalfd

// The signalfd subject holds SIGUSR1 pending (it is the state under test)
// and waits for SIGWINCH instead; the standard runs with that signal.
void SignalfdDumpKillRestorePasses() {
  absl::StatusOr<Subject> s = StartSubject("event_signalfd");
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "READY"));
  ASSERT_NO_FATAL_FAILURE(DumpKillRestore(*s, {s->pid}, TempPath("event_signalfd.img")));
  ASSERT_EQ(kill(s->pid, SIGWINCH), 0);
  ExpectNthPass(*s, 1, /*signal=*/false);
}

TEST_F(EventFdTest, SignalfdReadsPendingSignalsWithTheirPayload) { SignalfdDumpKillRestorePasses(); }

TEST_F(EventFdTest, SignalfdLeaveRunningThenRestore) {
  absl::StatusOr<Subject> s = StartSubject("event_signalfd");
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::string image = TempPath("event_signalfd-leave.img");
  DumpOptions leave;
  leave.leave_running = true;
  ASSERT_OK(DumpToFile(s->pid, image, leave));
  ASSERT_EQ(kill(s->pid, SIGWINCH), 0);
  ASSERT_NO_FATAL_FAILURE(ExpectNthPass(*s, 1, /*signal=*/false));  // the original
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_EQ(*pid, s->pid);
  ASSERT_EQ(kill(s->pid, SIGWINCH), 0);
  ExpectNthPass(*s, 2, /*signal=*/false);  // and the copy
}

// ------------------------------------------------------------------ inotify

// Watches on a directory (IN_CREATE) and a file in it (IN_MODIFY), with
// watch descriptors 3 and 5: after the restore the same wds and masks,
// nothing queued, and new events carry the original wds. Outside the
// sandbox (event_fd_host_test): the dump opens each watched inode by its
// file handle (fdinfo's fhandle), which open_by_handle_at allows only with
// CAP_DAC_READ_SEARCH in the initial user namespace.
TEST_F(EventFdTest, InotifyWatchesKeepTheirDescriptorsAndMasks) {
  TempDir dir("inotify");
  ASSERT_FALSE(dir.path().empty());
  DumpKillRestorePasses("event_inotify", {dir.path()}, 1);
}

TEST_F(EventFdTest, InotifyLeaveRunningThenRestore) {
  TempDir dir("inotify-leave");
  ASSERT_FALSE(dir.path().empty());
  LeaveRunningPassesThenRestoresAndPasses("event_inotify", {dir.path()});
}

// fanotify marks on a directory, a file (with an ignore mask on another)
// and a filesystem: the same marks and flags, and their events, after the
// restore. Outside the sandbox: fanotify_init needs CAP_SYS_ADMIN.
TEST_F(EventFdTest, FanotifyMarksOfEveryKindComeBack) {
  TempDir dir("fanotify");
  ASSERT_FALSE(dir.path().empty());
  DumpKillRestorePasses("event_fanotify", {dir.path()}, 1);
}

TEST_F(EventFdTest, FanotifyLeaveRunningThenRestore) {
  TempDir dir("fanotify-leave");
  ASSERT_FALSE(dir.path().empty());
  LeaveRunningPassesThenRestoresAndPasses("event_fanotify", {dir.path()});
}

// In Bazel's sandbox, whose user namespace may not open file handles
// (CAP_DAC_READ_SEARCH in the initial one): the watched inodes are found
// near the paths the task uses (here its argument), and come back.
TEST_F(EventFdTest, SandboxedInotifyWatchesAreFoundNearTheTasksPaths) {
  TempDir dir("inotify-sandbox");
  ASSERT_FALSE(dir.path().empty());
  DumpKillRestorePasses("event_inotify", {dir.path()}, 1);
}

// -------------------------------------------------------------------- pidfd

// A pidfd of a child that runs (non-blocking) and of one reaped before the
// checkpoint: the reaped one stays dead (ESRCH, POLLIN, ECHILD); the
// live one is not ready until its child exits, then reports its exit to
// waitid(P_PIDFD); pidfd_getfd takes a file from the child.
TEST_F(EventFdTest, PidfdsOfALiveAndAReapedChild) { DumpKillRestorePasses("event_pidfd", {}, 2); }

TEST_F(EventFdTest, PidfdsLeaveRunningThenRestore) { LeaveRunningPassesThenRestoresAndPasses("event_pidfd", {}); }

// poll() and ppoll() without a timeout (tail -f waits so) go on waiting
// after the restore, and return when their pipe is written.
TEST_F(EventFdTest, PollWithoutATimeoutWaitsOnAfterTheRestore) { DumpKillRestorePasses("poll_forever", {}, 1); }

TEST_F(EventFdTest, PollWithoutATimeoutLeaveRunningThenRestore) {
  LeaveRunningPassesThenRestoresAndPasses("poll_forever", {});
}

// A pidfd of a thread (PIDFD_THREAD), also in an epoll: after the restore
// it refers to the restored thread, and reports its exit.
TEST_F(EventFdTest, ThreadPidfdRefersToTheRestoredThread) { DumpKillRestorePasses("event_threadpidfd", {}, 1); }

TEST_F(EventFdTest, ThreadPidfdLeaveRunningThenRestore) {
  LeaveRunningPassesThenRestoresAndPasses("event_threadpidfd", {});
}

// ----------------------------------------------- a server with epoll workers

// Sends `line` and returns the line that comes back (without its newline),
// or what went wrong. A connection restored from the outside waits for
// its own retransmission: up to 10 s.
std::string Exchange(const UniqueFd& fd, const std::string& line) {
  if (!fd.valid()) return "(not connected)";
  std::string out = line + "\n";
  if (send(fd.get(), out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size())) {
    return absl::StrCat("(send: ", strerror(errno), ")");
  }
  std::string got;
  while (got.find('\n') == std::string::npos) {
    struct pollfd p = {fd.get(), POLLIN, 0};
    if (poll(&p, 1, 10000) != 1) return absl::StrCat("(no answer; got '", got, "')");
    char buf[256];
    ssize_t n = recv(fd.get(), buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return absl::StrCat("(", n == 0 ? "end of stream" : strerror(errno), "; got '", got, "')");
    got.append(buf, static_cast<size_t>(n));
  }
  return got.substr(0, got.find('\n'));
}

// A client outside the tree exchanges a line; the server is dumped,
// killed and restored; the old connection, still in its worker's
// restored epoll, and new clients, handed to the workers through their
// restored eventfds in turn, get answers.
TEST_F(EventFdTest, ServerWithEpollWorkersAnswersOldAndNewClients) {
  absl::StatusOr<Subject> s = StartSubject("event_server", {"0", "4", "6"});
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "READY"));
  const int port = PortOf(*s);
  ASSERT_GT(port, 0) << ReadOutput(*s);
  UniqueFd c1 = ConnectTo(port);
  ASSERT_TRUE(c1.valid()) << strerror(errno);
  ASSERT_EQ(Exchange(c1, "c1 n1"), "worker 0: c1 n1");

  ASSERT_NO_FATAL_FAILURE(DumpKillRestore(*s, {s->pid}, TempPath("event_server.img")));

  UniqueFd c2 = ConnectTo(port);
  EXPECT_EQ(Exchange(c2, "c2 n1"), "worker 1: c2 n1");
  EXPECT_EQ(Exchange(c1, "c1 n2"), "worker 0: c1 n2") << "the connection made before the checkpoint";
  UniqueFd c3 = ConnectTo(port);
  EXPECT_EQ(Exchange(c3, "c3 n1"), "worker 2: c3 n1");
  UniqueFd c4 = ConnectTo(port);
  EXPECT_EQ(Exchange(c4, "c4 n1"), "worker 0: c4 n1") << "a new connection beside a restored one";
  EXPECT_EQ(Exchange(c1, "c1 n3"), "worker 0: c1 n3");
  ExpectNthPass(*s, 1);
}

}  // namespace
}  // namespace ckpt::testing
