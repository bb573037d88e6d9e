// End to end, unix sockets: pairs of each type with queued messages and
// their options, listeners with connections not yet accepted, descriptors
// and credentials in flight, unconnected datagrams and their senders'
// addresses, half-closed and peer-closed streams, unlinked and chmod'ed
// socket paths, and a socket connected to a process outside the tree.
//
// Each subject (tests/e2e/programs/unix_*.c) builds its sockets, says
// READY, and after SIGUSR1 checks every byte, boundary and address itself.
// Each is dumped, killed and restored; and dumped with leave_running, when
// the original must still see everything, and that image restored too.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/base/fd.h"
#include "tests/e2e/expect.h"
#include "tests/e2e/harness.h"
#include "tests/e2e/subject_tree.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Killed trees leave orphans: this process adopts and reaps them, so that
// their PIDs are free for the restore.
class UnixSocketTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { prctl(PR_SET_CHILD_SUBREAPER, 1); }
};

// A short directory for socket paths (sun_path holds 108 bytes, and
// TEST_TMPDIR may be longer), removed with all it holds at the end.
class SocketDir {
 public:
  SocketDir() {
    for (std::string tmpl : {std::string("/tmp/ckpt-unix-XXXXXX"), TempPath("unix-XXXXXX")}) {
      if (tmpl.size() < 80 && mkdtemp(tmpl.data()) != nullptr) {
        path_ = tmpl;
        return;
      }
    }
  }
  ~SocketDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Whether this process may give a file to uid 1234: not in a user
// namespace that maps no such uid (Bazel's sandbox).
bool CanChownTo1234(const std::string& dir) {
  std::string path = dir + "/chown-probe";
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  bool ok = fd.valid() && fchown(fd.get(), 1234, 1234) == 0;
  unlink(path.c_str());
  if (!ok) std::cerr << "no uid 1234 here (" << strerror(errno) << "): the socket file's owner is not checked\n";
  return ok;
}

// Socket pairs of each type, 100 messages queued each way, options set.
TEST_F(UnixSocketTest, PairsOfEachTypeKeepEveryQueuedMessageAndTheirOptions) {
  DumpKillRestorePasses("unix_pairs", {}, 2);
}

TEST_F(UnixSocketTest, PairsLeaveRunningThenRestore) {
  LeaveRunningPassesThenRestoresAndPasses("unix_pairs", {});
}

// A listener on a path with three connections not yet accepted, and an
// abstract listener with one accepted and one pending.
TEST_F(UnixSocketTest, ListenersKeepPendingConnectionsTheirDataAndNames) {
  SocketDir dir;
  ASSERT_FALSE(dir.path().empty());
  DumpKillRestorePasses("unix_listen", {dir.path()}, 2);
}

// The data sent on a connection not yet accepted shows only to whoever
// accepts it, which a dump that leaves the tree running must not do: such
// a dump is refused, naming the listener, and the tree runs on intact.
TEST_F(UnixSocketTest, ListenersWithDataNotYetAcceptedRefuseLeaveRunningAndStayIntact) {
  SocketDir dir;
  ASSERT_FALSE(dir.path().empty());
  absl::StatusOr<Subject> s = StartSubject("unix_listen", {dir.path()});
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "READY"));
  DumpOptions leave;
  leave.leave_running = true;
  absl::Status st = DumpToFile(s->pid, TempPath("unix_listen-refused.img"), leave);
  ASSERT_FALSE(st.ok()) << "a leave-running dump took the pending connections' data";
  EXPECT_THAT(st.message(), HasSubstr(dir.path() + "/listen.sock")) << st;
  EXPECT_THAT(st.message(), HasSubstr("leave-running")) << st;
  ExpectNthPass(*s, 1);
}

// Connections not yet accepted but with no data on them yet (the clients
// send after the restore) leave running, and restore.
TEST_F(UnixSocketTest, ListenersLeaveRunningThenRestore) {
  SocketDir dir;
  ASSERT_FALSE(dir.path().empty());
  LeaveRunningPassesThenRestoresAndPasses("unix_listen", {dir.path(), "late"});
}

// SCM_RIGHTS (a pipe, a socket, a file) and SCM_CREDENTIALS in flight.
TEST_F(UnixSocketTest, DescriptorsAndCredentialsInFlightArrive) {
  SocketDir dir;
  ASSERT_FALSE(dir.path().empty());
  DumpKillRestorePasses("unix_scm", {dir.path()}, 2);
}

TEST_F(UnixSocketTest, DescriptorsInFlightLeaveRunningThenRestore) {
  SocketDir dir;
  ASSERT_FALSE(dir.path().empty());
  LeaveRunningPassesThenRestoresAndPasses("unix_scm", {dir.path()});
}

// An unconnected datagram server with messages from a path-bound, an
// abstract, an unbound and an autobound sender.
TEST_F(UnixSocketTest, DatagramsKeepTheirSendersAddresses) {
  SocketDir dir;
  ASSERT_FALSE(dir.path().empty());
  DumpKillRestorePasses("unix_dgram", {dir.path()}, 2);
}

TEST_F(UnixSocketTest, DatagramsLeaveRunningThenRestore) {
  SocketDir dir;
  ASSERT_FALSE(dir.path().empty());
  LeaveRunningPassesThenRestoresAndPasses("unix_dgram", {dir.path()});
}

// SHUT_WR, SHUT_RD and a closed peer, with unread bytes.
TEST_F(UnixSocketTest, ShutdownAndClosedPeersGiveTheirBytesThenEndOfStream) {
  DumpKillRestorePasses("unix_shutdown", {}, 2);
}

TEST_F(UnixSocketTest, ShutdownLeaveRunningThenRestore) {
  LeaveRunningPassesThenRestoresAndPasses("unix_shutdown", {});
}

// A bound path unlinked, and a listener's path chmod'ed and chown'ed. The
// owner is checked wherever uid 1234 exists (unix_socket_host_test).
TEST_F(UnixSocketTest, DeletedPathStaysDeletedAndAChmodedPathKeepsModeAndOwner) {
  SocketDir dir;
  ASSERT_FALSE(dir.path().empty());
  std::vector<std::string> args = {dir.path()};
  if (CanChownTo1234(dir.path())) args.push_back("owner");
  DumpKillRestorePasses("unix_deleted", args, 1);
}

TEST_F(UnixSocketTest, DeletedPathLeaveRunningThenRestore) {
  SocketDir dir;
  ASSERT_FALSE(dir.path().empty());
  std::vector<std::string> args = {dir.path()};
  if (CanChownTo1234(dir.path())) args.push_back("owner");
  LeaveRunningPassesThenRestoresAndPasses("unix_deleted", args);
}

// The subject's socket is connected to this test's listener: refused,
// naming the socket, the task and the fd; dumped as external and restored
// with the caller's socket in its place, the subject talks to the caller.
TEST_F(UnixSocketTest, SocketToAProcessOutsideIsRefusedThenInherited) {
  SocketDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string path = dir.path() + "/outside.sock";
  UniqueFd listener(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(listener.valid());
  struct sockaddr_un sa = {};
  sa.sun_family = AF_UNIX;
  ASSERT_LT(path.size(), sizeof(sa.sun_path));
  memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<struct sockaddr*>(&sa),
                 offsetof(struct sockaddr_un, sun_path) + path.size() + 1),
            0)
      << strerror(errno);
  ASSERT_EQ(listen(listener.get(), 1), 0);

  absl::StatusOr<Subject> s = StartSubject("unix_external", {path});
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "READY"));
  UniqueFd conn(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(conn.valid()) << strerror(errno);
  {
    const std::string hello = "hello from the subject\n";
    std::string got(hello.size(), '\0');
    ASSERT_EQ(recv(conn.get(), got.data(), got.size(), MSG_WAITALL), static_cast<ssize_t>(got.size()));
    EXPECT_EQ(got, hello);
  }
  std::vector<pid_t> fds = LinePids(*s, "SOCKFD");
  ASSERT_EQ(fds.size(), 1u) << ReadOutput(*s);
  const int fd = fds[0];
  char link[64] = {};
  std::string proc_fd = absl::StrCat("/proc/", s->pid, "/fd/", fd);
  ASSERT_GT(readlink(proc_fd.c_str(), link, sizeof(link) - 1), 0) << strerror(errno);
  std::string target = link;
  ASSERT_TRUE(target.rfind("socket:[", 0) == 0) << target;
  struct stat st;
  ASSERT_EQ(stat(proc_fd.c_str(), &st), 0);
  ASSERT_EQ(target, absl::StrCat("socket:[", st.st_ino, "]"));
  const std::string name = absl::StrCat("unix:[", st.st_ino, "]");

  // Refused, naming the socket, the task, the fd and the way out.
  const std::string image = TempPath("unix-external.img");
  absl::Status refused = DumpToFile(s->pid, image);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.message(), HasSubstr(name)) << refused;
  EXPECT_THAT(refused.message(), HasSubstr(absl::StrCat(s->pid))) << refused;
  EXPECT_THAT(refused.message(), HasSubstr(absl::StrCat("fd ", fd))) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("--external")) << refused;
  ASSERT_EQ(kill(s->pid, 0), 0) << "the refused dump harmed the subject";

  // Dumped as external, killed, restored with the caller's socket.
  DumpOptions ext;
  ext.external = {name};
  ASSERT_OK(DumpToFile(s->pid, image, ext));
  KillAndReap(s->pid);
  {
    absl::StatusOr<pid_t> no_fd = RestoreFromFile(image);
    ASSERT_FALSE(no_fd.ok()) << "restored without a socket for " << name;
    EXPECT_THAT(no_fd.status().message(), HasSubstr(name));
  }
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd mine(pair[0]), given(pair[1]);
  RestoreOptions inherit;
  inherit.inherit_fds = {{given.get(), name}};
  absl::StatusOr<pid_t> pid = RestoreFromFile(image, inherit);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_EQ(*pid, s->pid);
  given.reset();
  ASSERT_EQ(kill(s->pid, SIGUSR1), 0);

  const std::string after = "after the restore\n";
  std::string got;
  while (got.size() < after.size()) {
    struct pollfd p = {mine.get(), POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 20000), 1) << "nothing from the restored subject: " << ReadOutput(*s);
    char buf[64];
    ssize_t n = recv(mine.get(), buf, std::min(sizeof(buf), after.size() - got.size()), 0);
    ASSERT_GT(n, 0) << "the restored subject's socket closed: " << ReadOutput(*s);
    got.append(buf, static_cast<size_t>(n));
  }
  EXPECT_EQ(got, after);
  const std::string reply = "reply from the test\n";
  ASSERT_EQ(send(mine.get(), reply.data(), reply.size(), MSG_NOSIGNAL), static_cast<ssize_t>(reply.size()));
  absl::StatusOr<int> code = WaitExit(s->pid);
  ASSERT_TRUE(code.ok()) << code.status();
  std::string out = ReadOutput(*s);
  EXPECT_EQ(*code, 0) << out;
  EXPECT_THAT(out, HasSubstr("PASS")) << out;
  EXPECT_THAT(out, Not(HasSubstr("FAIL"))) << out;
}

// A real program: Python's socketserver on a path, with a client in its
// tree in the middle of a conversation (a reply waiting unread, the
// server's handler thread blocked reading). After the restore the
// conversation goes on and a new client connects by path.
TEST_F(UnixSocketTest, PythonSocketServerKeepsItsClientsConversation) {
  ASSERT_EQ(access("/usr/bin/python3", X_OK), 0) << "no /usr/bin/python3 (./run installs it)";
  SocketDir dir;
  ASSERT_FALSE(dir.path().empty());
  absl::StatusOr<Subject> s =
      StartProgram("/usr/bin/python3", {ProgramPath("unix_pyserver.py"), dir.path() + "/py.sock"});
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForCount(*s, "READY", 2));
  ASSERT_OK(WaitForOutput(*s, "CHILDREN"));
  DumpStats stats;
  ASSERT_NO_FATAL_FAILURE(DumpKillRestore(*s, TreePids(*s), TempPath("pyserver.img"), &stats));
  EXPECT_EQ(stats.tasks, 2u);
  ExpectNthPass(*s, 1);
  EXPECT_THAT(ReadOutput(*s), HasSubstr("client done"));
}

// A real program: Python's multiprocessing Manager (a server process on a
// unix socket path, clients authenticated over their connections) shared
// by a worker, checkpointed between two uses of the managed objects.
TEST_F(UnixSocketTest, PythonMultiprocessingManagerKeepsServingItsClients) {
  ASSERT_EQ(access("/usr/bin/python3", X_OK), 0) << "no /usr/bin/python3 (./run installs it)";
  absl::StatusOr<Subject> s = StartProgram("/usr/bin/python3", {ProgramPath("unix_pymanager.py")});
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "CHILDREN"));
  DumpStats stats;
  ASSERT_NO_FATAL_FAILURE(DumpKillRestore(*s, TreePids(*s), TempPath("pymanager.img"), &stats));
  EXPECT_EQ(stats.tasks, 3u);
  ExpectNthPass(*s, 1);
}

// States the dump cannot save faithfully are refused, naming what, before
// anything is written, and the tree runs on as it was.
void RefusedAndIntact(const std::vector<std::string>& args, const std::string& why) {
  absl::StatusOr<Subject> s = StartSubject("unix_edges", args);
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "READY"));
  const std::string image = TempPath("unix_edges-" + args[0] + ".img");
  absl::Status st = DumpToFile(s->pid, image);
  ASSERT_FALSE(st.ok()) << args[0] << " was dumped";
  EXPECT_THAT(st.message(), HasSubstr(absl::StrCat("task ", s->pid, " fd "))) << st;
  EXPECT_THAT(st.message(), HasSubstr(why)) << st;
  struct stat img;
  EXPECT_TRUE(stat(image.c_str(), &img) != 0 || img.st_size == 0) << "bytes were written before the refusal";
  ExpectNthPass(*s, 1);
}

TEST_F(UnixSocketTest, AnOutOfBandByteIsRefused) { RefusedAndIntact({"oob"}, "out-of-band"); }

TEST_F(UnixSocketTest, ARelativeNameWhoseDirectoryIsNotKnownIsRefused) {
  SocketDir dir;
  ASSERT_FALSE(dir.path().empty());
  RefusedAndIntact({"relative", dir.path()}, "relative name rel.sock");
}

TEST_F(UnixSocketTest, FdsBehindPlainBytesWithThePeerGoneAreRefused) {
  RefusedAndIntact({"gonefd"}, "its peer is gone");
}

// A seqpacket connection not yet accepted whose client closed: accepted
// after the restore, its message, then end of file.
TEST_F(UnixSocketTest, APendingSeqpacketConnectionOfAClosedClient) {
  DumpKillRestorePasses("unix_edges", {"seqpend"}, 1);
}

// Datagrams from another sender after one from the peer it connected to
// later: refilled in that order.
TEST_F(UnixSocketTest, DatagramsFromOthersAroundThePeersBeforeItConnected) {
  DumpKillRestorePasses("unix_edges", {"dgorder"}, 1);
}

// The split of a stream message that carries fds (taken out and sent
// again) leaves SO_PEEK_OFF as it was.
TEST_F(UnixSocketTest, LeaveRunningKeepsThePeekOffsetAndWhereFdsCome) {
  LeaveRunningPassesThenRestoresAndPasses("unix_edges", {"peekoff"});
}

// SO_PEERCRED: pairs, connections, listeners and a waiting connection of a
// child running as another user keep the uid and gid each end sees (host
// only: the sandbox's user namespace maps no uid 1234).
TEST_F(UnixSocketTest, PeerCredentialsKeepTheirIds) {
  DumpKillRestorePasses("unix_edges", {"peercred"}, 2);
}

}  // namespace
}  // namespace ckpt::testing
