// End to end, TCP and UDP sockets: listeners, established connections
// with data queued both ways (both ends in the tree, or one end outside:
// this test, as the client of an echo server), bound and unbound sockets,
// UDP and UDP-Lite with queued datagrams and their senders, options; a
// port taken before the restore; a connection waiting in a backlog.
//
// Each subject (tests/e2e/programs/inet_*.c) builds its sockets, says
// READY, and after SIGUSR1 checks every byte, address and option itself.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <chrono>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/base/fd.h"
#include "lib/image/format.h"
#include "tests/e2e/expect.h"
#include "tests/e2e/harness.h"
#include "tests/e2e/image_edit.h"
#include "tests/e2e/subject_tree.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class InetSocketTest : public ::testing::Test {
 protected:
  // Killed trees leave orphans: this process adopts and reaps them, so
  // that their PIDs are free for the restore.
  static void SetUpTestSuite() { prctl(PR_SET_CHILD_SUBREAPER, 1); }
};

// Listeners, connections over IPv4, IPv6 and IPv4-mapped with a MiB queued
// each way, bound and unbound sockets, options and a filter.
TEST_F(InetSocketTest, TcpListenersAndConnectionsKeepTheirQueuesBothWaysAndOptions) {
  DumpKillRestorePasses("inet_tcp", {}, 2);
}

// Left running, nothing moves: the original sees every byte; the image,
// restored once the original is gone, too.
TEST_F(InetSocketTest, TcpLeaveRunningThenRestore) { LeaveRunningPassesThenRestoresAndPasses("inet_tcp", {}); }

TEST_F(InetSocketTest, UdpKeepsQueuedDatagramsWithTheirSendersAndOptions) { DumpKillRestorePasses("inet_udp", {}, 1); }

TEST_F(InetSocketTest, UdpLeaveRunningThenRestore) { LeaveRunningPassesThenRestoresAndPasses("inet_udp", {}); }

// Connections waiting in backlogs (one with data, one over IPv4 to a
// dual-stack listener), their clients in the tree: still acceptable after
// the restore, each with its data.
TEST_F(InetSocketTest, ConnectionsWaitingInABacklogAreStillAcceptableWithTheirData) {
  DumpKillRestorePasses("inet_backlog", {}, 2);
}

// Without data on them, a dump left running saves the backlog untouched.
TEST_F(InetSocketTest, BacklogWithoutDataLeaveRunningThenRestore) {
  LeaveRunningPassesThenRestoresAndPasses("inet_backlog", {"nodata"});
}

// With data on them, only accepting would read it, which a dump left
// running must not do: refused, and the tree runs on intact.
TEST_F(InetSocketTest, BacklogWithDataRefusesLeaveRunningAndStaysIntact) {
  absl::StatusOr<Subject> s = StartSubject("inet_backlog");
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "READY"));
  DumpOptions leave;
  leave.leave_running = true;
  absl::Status st = DumpToFile(s->pid, TempPath("inet_backlog-refused.img"), leave);
  ASSERT_FALSE(st.ok()) << "a leave-running dump took the backlog's data";
  EXPECT_THAT(st.message(), HasSubstr("backlog")) << st;
  EXPECT_THAT(st.message(), HasSubstr("leave-running")) << st;
  ExpectNthPass(*s, 1);
}

// States the dump cannot save faithfully are refused, naming the socket
// and why, and the process runs on with them.
void RefusedAndIntact(const std::string& mode, const std::string& why) {
  absl::StatusOr<Subject> s = StartSubject("inet_edges", {mode});
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "READY"));
  absl::Status st = DumpToFile(s->pid, TempPath("inet_edges-" + mode + ".img"));
  ASSERT_FALSE(st.ok()) << mode << " was dumped";
  EXPECT_THAT(st.message(), HasSubstr(absl::StrCat("task ", s->pid, " fd "))) << st;
  EXPECT_THAT(st.message(), HasSubstr(why)) << st;
  ExpectNthPass(*s, 1);
}

TEST_F(InetSocketTest, AnUrgentByteIsRefused) { RefusedAndIntact("oob", "urgent byte"); }

// The pre-flight (`ckpt check`) names it too, before anything is frozen.
TEST_F(InetSocketTest, ThePreflightNamesAnUrgentByte) {
  absl::StatusOr<Subject> s = StartSubject("inet_edges", {"oob"});
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "READY"));
  absl::StatusOr<TreeReport> report = Checkpointer().Check(s->pid);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->problems.size(), 1u);
  EXPECT_THAT(report->problems[0].message(), HasSubstr("urgent byte")) << report->problems[0];
  EXPECT_THAT(report->problems[0].message(), HasSubstr(absl::StrCat("task ", s->pid, " fd "))) << report->problems[0];
  ExpectNthPass(*s, 1);
}
TEST_F(InetSocketTest, AnUrgentByteInlineIsRefused) { RefusedAndIntact("oobinline", "urgent byte"); }
// Connections one side ended (CLOSE_WAIT and FIN_WAIT2, both ends in the
// tree): each side reads what was left, then end of file; the open sides
// still send.
TEST_F(InetSocketTest, HalfClosedConnectionsKeepTheirEnds) { DumpKillRestorePasses("inet_halfclose", {}, 1); }
TEST_F(InetSocketTest, HalfClosedConnectionsLeaveRunningThenRestore) {
  LeaveRunningPassesThenRestoresAndPasses("inet_halfclose", {});
}

// Data not yet acknowledged before a side's end: refused for now.
TEST_F(InetSocketTest, DataBeforeAnUnacknowledgedEndIsRefused) { RefusedAndIntact("finwait", "before its end"); }
TEST_F(InetSocketTest, APendingUdpErrorIsRefused) { RefusedAndIntact("udperr", "an error waits"); }

// ----------------------------------------------- a client outside the tree

unsigned char Pattern(size_t off) { return static_cast<unsigned char>(off * 7 + (off >> 9) + 3); }

// The client's side of the echo: what it sent, what came back.
struct Client {
  int fd;
  size_t sent = 0;
  size_t echoed = 0;
  std::string error;

  // Sends `n` more bytes of the pattern (non-blocking: what the socket
  // takes now; the rest when Pump is called again).
  bool Send(size_t n) {
    std::string buf(n, '\0');
    for (size_t i = 0; i < n; i++) buf[i] = static_cast<char>(Pattern(sent + i));
    size_t off = 0;
    while (off < n) {
      ssize_t w = send(fd, buf.data() + off, n - off, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && errno == EAGAIN) {
        struct pollfd p = {fd, POLLOUT | POLLIN, 0};
        poll(&p, 1, 100);
        if (p.revents & POLLIN) {
          if (!Read(0)) return false;
        }
        continue;
      }
      if (w <= 0) {
        error = absl::StrCat("send: ", strerror(errno));
        return false;
      }
      off += static_cast<size_t>(w);
      sent += static_cast<size_t>(w);
    }
    return true;
  }
  // Reads what the echo gives within `timeout_ms` (0: what is there).
  bool Read(int timeout_ms) {
    char buf[65536];
    for (;;) {
      struct pollfd p = {fd, POLLIN, 0};
      int r = poll(&p, 1, timeout_ms);
      if (r <= 0) return true;
      ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) {
        error = n == 0 ? "the server ended the connection" : absl::StrCat("recv: ", strerror(errno));
        return false;
      }
      for (ssize_t i = 0; i < n; i++) {
        if (static_cast<unsigned char>(buf[i]) != Pattern(echoed + static_cast<size_t>(i))) {
          error = absl::StrCat("echoed byte ", echoed + static_cast<size_t>(i), " is wrong");
          return false;
        }
      }
      echoed += static_cast<size_t>(n);
      if (timeout_ms == 0) continue;
      if (echoed == sent) return true;
    }
  }
  // Reads until everything sent came back, or `timeout_ms` passed.
  bool ReadAll(int timeout_ms) {
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (echoed < sent && std::chrono::steady_clock::now() < until) {
      if (!Read(100)) return false;
    }
    if (echoed != sent) error = absl::StrCat("echoed ", echoed, " of ", sent, " bytes");
    return echoed == sent;
  }
};

// The server's end of a connection to this process is dumped (the tree
// killed, the lock on), and restored: the client sees no reset, and every
// byte it sent, before, during and after, comes back once, in order.
TEST_F(InetSocketTest, ConnectionToAClientOutsideTheTreeSurvivesWithoutAReset) {
  constexpr size_t kTotal = 350000;
  absl::StatusOr<Subject> s = StartSubject("inet_echo", {"serve", absl::StrCat(kTotal)});
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "READY"));
  UniqueFd fd = ConnectTo(PortOf(*s));
  ASSERT_TRUE(fd.valid()) << strerror(errno);
  Client c{fd.get()};
  ASSERT_TRUE(c.Send(100000) && c.ReadAll(10000)) << c.error;
  // Queued both ways when the dump comes: the server has not read the
  // last of it, and this side has not read the echo.
  ASSERT_TRUE(c.Send(150000)) << c.error;
  const auto start = std::chrono::steady_clock::now();
  std::string image = TempPath("inet_echo.img");
  ASSERT_OK(DumpToFile(s->pid, image));
  int status;
  waitpid(s->pid, &status, 0);
  // While the server is gone: these wait in this side's send queue, and
  // the retransmissions are dropped by the lock, not answered by a reset.
  ASSERT_TRUE(c.Send(50000)) << c.error;
  ASSERT_TRUE(c.Read(300)) << c.error;
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_EQ(*pid, s->pid);
  const size_t before = c.echoed;
  while (c.echoed == before && std::chrono::steady_clock::now() - start < std::chrono::seconds(20)) {
    ASSERT_TRUE(c.Read(10)) << c.error;
  }
  const double downtime =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::cerr << "downtime (dump start to the first byte echoed after restore): " << downtime << " ms\n";
  ASSERT_TRUE(c.ReadAll(20000)) << c.error;
  ASSERT_TRUE(c.Send(50000) && c.ReadAll(10000)) << c.error;
  EXPECT_EQ(c.sent, kTotal);
  shutdown(fd.get(), SHUT_WR);
  ExpectNthPass(*s, 1, /*signal=*/false);
}

// Left running, the connection goes on while the dump runs: every byte
// comes back once.
TEST_F(InetSocketTest, ConnectionToAClientOutsideTheTreeLeftRunningGoesOn) {
  constexpr size_t kTotal = 2000000;
  absl::StatusOr<Subject> s = StartSubject("inet_echo", {"serve", absl::StrCat(kTotal)});
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "READY"));
  UniqueFd fd = ConnectTo(PortOf(*s));
  ASSERT_TRUE(fd.valid()) << strerror(errno);
  std::atomic<bool> ok{true};
  std::string error;
  std::thread talker([&] {
    Client c{fd.get()};
    while (c.sent < kTotal) {
      if (!c.Send(std::min<size_t>(10000, kTotal - c.sent)) || !c.Read(0)) break;
      usleep(500);
    }
    if (!c.ReadAll(20000)) {
      ok = false;
      error = c.error;
    }
  });
  usleep(20000);
  DumpOptions leave;
  leave.leave_running = true;
  absl::Status dumped = DumpToFile(s->pid, TempPath("inet_echo-leave.img"), leave);
  talker.join();
  ASSERT_OK(dumped);
  ASSERT_TRUE(ok) << error;
  shutdown(fd.get(), SHUT_WR);
  ExpectNthPass(*s, 1, /*signal=*/false);
}

// A restore whose listening port another process took meanwhile fails,
// naming the address and the port, and leaves nothing behind; once the
// port is free again, the same image restores.
TEST_F(InetSocketTest, RestoreRefusesAPortTakenSinceAndLeavesNothing) {
  absl::StatusOr<Subject> s = StartSubject("inet_echo", {"serve", "1000"});
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "READY"));
  const int port = PortOf(*s);
  ASSERT_NE(port, 0);
  std::string image = TempPath("inet_taken.img");
  ASSERT_OK(DumpToFile(s->pid, image));
  int status;
  waitpid(s->pid, &status, 0);
  {
    UniqueFd taker(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    int one = 1;
    setsockopt(taker.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    ASSERT_EQ(bind(taker.get(), reinterpret_cast<struct sockaddr*>(&a), sizeof(a)), 0) << strerror(errno);
    ASSERT_EQ(listen(taker.get(), 1), 0);
    absl::StatusOr<pid_t> pid = RestoreFromFile(image);
    ASSERT_FALSE(pid.ok()) << "restored onto a port another socket holds";
    EXPECT_THAT(pid.status().message(), HasSubstr(absl::StrCat("127.0.0.1:", port))) << pid.status();
    EXPECT_THAT(pid.status().message(), HasSubstr("taken")) << pid.status();
    EXPECT_NE(kill(s->pid, 0), 0) << "the failed restore left a task behind";
  }
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_TRUE(pid.ok()) << pid.status();
  UniqueFd fd = ConnectTo(port);
  ASSERT_TRUE(fd.valid()) << strerror(errno);
  Client c{fd.get()};
  ASSERT_TRUE(c.Send(1000) && c.ReadAll(10000)) << c.error;
  shutdown(fd.get(), SHUT_WR);
  ExpectNthPass(*s, 1, /*signal=*/false);  // the original was killed before it said anything
}

// The whole answer of an HTTP/1.0 server to `request` on `fd` (it ends
// the connection), within 10 s.
std::string HttpExchange(int fd, const std::string& request) {
  if (!request.empty() && send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
    return "send failed";
  }
  std::string out;
  char buf[4096];
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 10000) != 1) return out + " (timed out)";
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return n == 0 ? out : out + " (" + strerror(errno) + ")";
    out.append(buf, static_cast<size_t>(n));
  }
}

// Python's http.server (threaded): one client has sent half a request
// when the server is dumped and killed; after the restore its thread
// reads the rest and answers, and new clients are served.
TEST_F(InetSocketTest, PythonHttpServerAnswersAHalfSentRequestAndNewOnes) {
  ASSERT_EQ(access("/usr/bin/python3", X_OK), 0) << "no /usr/bin/python3 (./run installs it)";
  const std::string dir = TempPath("www");
  mkdir(dir.c_str(), 0755);
  {
    UniqueFd f(open((dir + "/index.txt").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    ASSERT_TRUE(f.valid());
    ASSERT_EQ(write(f.get(), "served by http.server\n", 22), 22);
  }
  absl::StatusOr<Subject> s = StartProgram(
      "/usr/bin/python3", {"-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory", dir, "0"});
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "Serving HTTP on 127.0.0.1 port "));
  std::string out = ReadOutput(*s);
  int port = 0;
  const size_t at = out.find(" port ") + 6;
  ASSERT_TRUE(absl::SimpleAtoi(out.substr(at, out.find(' ', at) - at), &port)) << out;
  UniqueFd held = ConnectTo(port);
  ASSERT_TRUE(held.valid()) << strerror(errno);
  const std::string first = "GET /index.txt HTTP/1.0\r\n";
  ASSERT_EQ(send(held.get(), first.data(), first.size(), 0), static_cast<ssize_t>(first.size()));
  usleep(200000);  // its thread is reading the request
  ASSERT_NO_FATAL_FAILURE(DumpKillRestore(*s, {s->pid}, TempPath("http.img")));
  std::string answer = HttpExchange(held.get(), "Host: x\r\n\r\n");
  EXPECT_THAT(answer, HasSubstr("200 OK")) << answer;
  EXPECT_THAT(answer, HasSubstr("served by http.server")) << answer;
  UniqueFd fresh = ConnectTo(port);
  ASSERT_TRUE(fresh.valid()) << strerror(errno);
  answer = HttpExchange(fresh.get(), "GET /index.txt HTTP/1.0\r\n\r\n");
  EXPECT_THAT(answer, HasSubstr("served by http.server")) << answer;
}

// A free TCP port on 127.0.0.1 (bound once and let go).
int FreePort() {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_in a {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (!fd.valid() || bind(fd.get(), reinterpret_cast<struct sockaddr*>(&a), sizeof(a)) != 0 ||
      getsockname(fd.get(), reinterpret_cast<struct sockaddr*>(&a), &len) != 0) {
    return 0;
  }
  return ntohs(a.sin_port);
}

// Sends `request` and reads until `until` has come (or 10 s).
std::string Exchange(int fd, const std::string& request, const std::string& until) {
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
    return "send failed";
  }
  std::string out;
  char buf[4096];
  while (out.find(until) == std::string::npos) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 10000) != 1) return out + " (timed out)";
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return out + (n == 0 ? " (closed)" : " (recv failed)");
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// The children of `pid` (its main thread's), from /proc.
std::vector<pid_t> ChildrenOf(pid_t pid) {
  std::vector<pid_t> out;
  absl::StatusOr<std::string> text = ReadFile(absl::StrCat("/proc/", pid, "/task/", pid, "/children"));
  if (!text.ok()) return out;
  for (absl::string_view w : absl::StrSplit(*text, ' ', absl::SkipEmpty())) {
    pid_t c;
    if (absl::SimpleAtoi(w, &c)) out.push_back(c);
  }
  return out;
}

// Debian's redis-server (epoll, an eventfd-less event loop, background
// threads): keys and a list set by a client that stays connected across
// the dump; after the restore that same connection reads them back and
// new clients read and write.
TEST_F(InetSocketTest, RedisKeepsItsDataAndItsConnectedClient) {
  ASSERT_EQ(access("/usr/bin/redis-server", X_OK), 0) << "no redis-server (./run installs it)";
  const int port = FreePort();
  ASSERT_NE(port, 0);
  absl::StatusOr<Subject> s = StartProgram(
      "/usr/bin/redis-server", {"--port", absl::StrCat(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--daemonize", "no", "--dir", TempPath("")});
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "Ready to accept connections"));
  UniqueFd held = ConnectTo(port);
  ASSERT_TRUE(held.valid()) << strerror(errno);
  EXPECT_EQ(Exchange(held.get(), "SET answer 42\r\n", "\r\n"), "+OK\r\n");
  EXPECT_EQ(Exchange(held.get(), "RPUSH queue a b c\r\n", "\r\n"), ":3\r\n");
  ASSERT_NO_FATAL_FAILURE(DumpKillRestore(*s, {s->pid}, TempPath("redis.img")));
  EXPECT_EQ(Exchange(held.get(), "GET answer\r\n", "42\r\n"), "$2\r\n42\r\n");
  EXPECT_EQ(Exchange(held.get(), "LRANGE queue 0 -1\r\n", "c\r\n"), "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n");
  UniqueFd fresh = ConnectTo(port);
  ASSERT_TRUE(fresh.valid()) << strerror(errno);
  EXPECT_EQ(Exchange(fresh.get(), "INCR answer\r\n", "\r\n"), ":43\r\n");
  EXPECT_EQ(Exchange(held.get(), "GET answer\r\n", "43\r\n"), "$2\r\n43\r\n");
}

// Debian's nginx (light): a master and two workers sharing the listener
// (EPOLLEXCLUSIVE in each worker's epoll, an eventfd each). A keep-alive
// client connected before the dump asks again on the same connection
// after the restore; new clients are served by the workers.
TEST_F(InetSocketTest, NginxMasterAndWorkersServeAfterTheRestore) {
  ASSERT_EQ(access("/usr/sbin/nginx", X_OK), 0) << "no nginx (./run installs nginx-light)";
  const int port = FreePort();
  ASSERT_NE(port, 0);
  const std::string dir = TempPath("nginx");
  mkdir(dir.c_str(), 0755);
  mkdir((dir + "/html").c_str(), 0755);
  mkdir((dir + "/logs").c_str(), 0755);
  auto put = [](const std::string& path, const std::string& text) {
    UniqueFd f(open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    return f.valid() && write(f.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size());
  };
  ASSERT_TRUE(put(dir + "/html/index.html", "served by nginx\n"));
  ASSERT_TRUE(put(dir + "/nginx.conf",
                  absl::StrCat("user root root;\nworker_processes 2;\ndaemon off;\nmaster_process on;\npid ", dir,
                               "/nginx.pid;\nerror_log ", dir, "/logs/error.log;\n",
                               "events { worker_connections 64; }\n",
                               "http { access_log off; keepalive_timeout 60s;\n",
                               "  client_body_temp_path ", dir, "/t1; proxy_temp_path ", dir, "/t2;\n",
                               "  fastcgi_temp_path ", dir, "/t3; uwsgi_temp_path ", dir, "/t4; scgi_temp_path ", dir, "/t5;\n",
                               "  server { listen 127.0.0.1:", port, "; root ", dir, "/html; } }\n")));
  absl::StatusOr<Subject> s = StartProgram("/usr/sbin/nginx", {"-p", dir, "-c", dir + "/nginx.conf"});
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  std::vector<pid_t> workers;
  for (int i = 0; i < 200 && workers.size() < 2; ++i) {
    usleep(20000);
    workers = ChildrenOf(s->pid);
  }
  ASSERT_EQ(workers.size(), 2u);
  struct Reap {
    std::vector<pid_t>* pids;
    ~Reap() { KillAndReapAll(*pids); }
  } reap{&workers};
  UniqueFd held;
  for (int i = 0; i < 100 && !held.valid(); ++i) {
    held = ConnectTo(port);
    if (!held.valid()) usleep(20000);
  }
  ASSERT_TRUE(held.valid()) << strerror(errno);
  const std::string get = "GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n";
  EXPECT_THAT(Exchange(held.get(), get, "served by nginx\n"), HasSubstr("200 OK"));
  std::vector<pid_t> tree = {s->pid};
  tree.insert(tree.end(), workers.begin(), workers.end());
  ASSERT_NO_FATAL_FAILURE(DumpKillRestore(*s, tree, TempPath("nginx.img")));
  EXPECT_EQ(ChildrenOf(s->pid), workers);
  EXPECT_THAT(Exchange(held.get(), get, "served by nginx\n"), HasSubstr("200 OK"));
  for (int i = 0; i < 4; ++i) {
    UniqueFd fresh = ConnectTo(port);
    ASSERT_TRUE(fresh.valid()) << strerror(errno);
    EXPECT_THAT(Exchange(fresh.get(), get, "served by nginx\n"), HasSubstr("served by nginx")) << i;
  }
}

// Debian's memcached (libevent: an epoll and a notification pipe per
// worker thread, four workers): a value stored by a client that stays
// connected is read back on that connection after the restore, and new
// clients store and read.
TEST_F(InetSocketTest, MemcachedKeepsItsItemsAndItsConnectedClient) {
  ASSERT_EQ(access("/usr/bin/memcached", X_OK), 0) << "no memcached (./run installs it)";
  const int port = FreePort();
  ASSERT_NE(port, 0);
  absl::StatusOr<Subject> s = StartProgram(
      "/usr/bin/memcached", {"-u", "root", "-l", "127.0.0.1", "-p", absl::StrCat(port), "-U", "0", "-t", "4"});
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  UniqueFd held;
  for (int i = 0; i < 200 && !held.valid(); ++i) {
    held = ConnectTo(port);
    if (!held.valid()) usleep(20000);
  }
  ASSERT_TRUE(held.valid()) << strerror(errno);
  EXPECT_EQ(Exchange(held.get(), "set greeting 5 0 11\r\nhello world\r\n", "\r\n"), "STORED\r\n");
  EXPECT_EQ(Exchange(held.get(), "incr counter 1\r\n", "\r\n"), "NOT_FOUND\r\n");
  EXPECT_EQ(Exchange(held.get(), "set counter 0 0 2\r\n41\r\n", "\r\n"), "STORED\r\n");
  ASSERT_NO_FATAL_FAILURE(DumpKillRestore(*s, {s->pid}, TempPath("memcached.img")));
  EXPECT_EQ(Exchange(held.get(), "get greeting\r\n", "END\r\n"), "VALUE greeting 5 11\r\nhello world\r\nEND\r\n");
  for (int i = 0; i < 4; ++i) {  // every worker thread, round robin
    UniqueFd fresh = ConnectTo(port);
    ASSERT_TRUE(fresh.valid()) << strerror(errno);
    EXPECT_EQ(Exchange(fresh.get(), "incr counter 1\r\n", "\r\n"), absl::StrCat(42 + i, "\r\n")) << i;
  }
}

// asyncio (Python's event loop: an epoll, a self-pipe socket pair, a
// signal wakeup fd): a client connected across the dump goes on talking
// to the restored server, whose state counts every line.
TEST_F(InetSocketTest, PythonAsyncioServerGoesOnWithItsClient) {
  ASSERT_EQ(access("/usr/bin/python3", X_OK), 0) << "no /usr/bin/python3 (./run installs it)";
  const std::string script = TempPath("asyncio_server.py");
  {
    UniqueFd f(open(script.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    const std::string code =
        "import asyncio\n"
        "count = 0\n"
        "async def handle(r, w):\n"
        "    global count\n"
        "    while line := await r.readline():\n"
        "        count += 1\n"
        "        w.write(b'%d %s' % (count, line))\n"
        "        await w.drain()\n"
        "async def main():\n"
        "    srv = await asyncio.start_server(handle, '127.0.0.1', 0)\n"
        "    print('PORT', srv.sockets[0].getsockname()[1], flush=True)\n"
        "    async with srv:\n"
        "        await srv.serve_forever()\n"
        "asyncio.run(main())\n";
    ASSERT_TRUE(f.valid() && write(f.get(), code.data(), code.size()) == static_cast<ssize_t>(code.size()));
  }
  absl::StatusOr<Subject> s = StartProgram("/usr/bin/python3", {"-u", script});
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "PORT "));
  const int port = PortOf(*s);
  UniqueFd held = ConnectTo(port);
  ASSERT_TRUE(held.valid()) << strerror(errno);
  EXPECT_EQ(Exchange(held.get(), "one\n", "\n"), "1 one\n");
  ASSERT_NO_FATAL_FAILURE(DumpKillRestore(*s, {s->pid}, TempPath("asyncio.img")));
  EXPECT_EQ(Exchange(held.get(), "two\n", "\n"), "2 two\n");
  UniqueFd fresh = ConnectTo(port);
  ASSERT_TRUE(fresh.valid()) << strerror(errno);
  EXPECT_EQ(Exchange(fresh.get(), "three\n", "\n"), "3 three\n");
  EXPECT_EQ(Exchange(held.get(), "four\n", "\n"), "4 four\n");
}

// A restore that fails before it reaches the sockets (a FILE record it
// refuses, ahead of them) still lifts the dump's network lock: a client then gets
// a refusal at once, as from any port nobody listens on, instead of its
// SYNs vanishing.
TEST_F(InetSocketTest, ARestoreThatFailsBeforeTheSocketsLiftsTheNetworkLock) {
  absl::StatusOr<Subject> s = StartSubject("inet_echo", {"pending", "1000"});
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "READY"));
  const int port = PortOf(*s);
  ASSERT_NE(port, 0);
  const std::string image = TempPath("inet_early_failure.img");
  ASSERT_OK(DumpToFile(s->pid, image));
  KillAndReapAll({s->pid});
  const std::string bad = TempPath("inet_early_failure-bad.img");
  bool first = true;
  ASSERT_OK(RewriteImage(image, bad, [&](uint32_t type, std::string* payload) {
    if (type != image::CKPT_HDR_FILE || !first) return;
    first = false;
    uint32_t kind = 9999;  // ckpt_file.kind
    std::memcpy(payload->data() + offsetof(image::ckpt_file, kind), &kind, sizeof(kind));
  }));
  absl::StatusOr<pid_t> pid = RestoreFromFile(bad);
  ASSERT_FALSE(pid.ok());
  EXPECT_THAT(pid.status().message(), HasSubstr("is not a known file kind")) << pid.status();
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(fd.valid());
  struct sockaddr_in a {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  int rc = connect(fd.get(), reinterpret_cast<struct sockaddr*>(&a), sizeof(a));
  int err = rc == 0 ? 0 : errno;
  if (err == EINPROGRESS) {
    struct pollfd p = {fd.get(), POLLOUT, 0};
    ASSERT_EQ(poll(&p, 1, 2000), 1) << "no answer to the SYN in 2 s: the lock is still there";
    socklen_t len = sizeof(err);
    ASSERT_EQ(getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len), 0);
  }
  EXPECT_EQ(err, ECONNREFUSED) << strerror(err);
}

// A connection waiting in a listener's backlog is refused for now, naming
// the listener; the tree runs on and serves it.
TEST_F(InetSocketTest, ConnectionWaitingInABacklogIsRefusedAndTheTreeRunsOn) {
  absl::StatusOr<Subject> s = StartSubject("inet_echo", {"pending", "1000"});
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "READY"));
  const int port = PortOf(*s);
  UniqueFd fd = ConnectTo(port);
  ASSERT_TRUE(fd.valid()) << strerror(errno);
  absl::Status st = DumpToFile(s->pid, TempPath("inet_pending.img"));
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr(absl::StrCat("127.0.0.1:", port))) << st;
  EXPECT_THAT(st.message(), HasSubstr("backlog")) << st;
  ASSERT_EQ(kill(s->pid, SIGUSR1), 0);
  Client c{fd.get()};
  ASSERT_TRUE(c.Send(1000) && c.ReadAll(10000)) << c.error;
  shutdown(fd.get(), SHUT_WR);
  ExpectNthPass(*s, 1, /*signal=*/false);
}

// Left running, a client from outside waiting in the backlog is the
// original's: the dump leaves it there, and the original serves it.
TEST_F(InetSocketTest, ConnectionWaitingInABacklogLeftRunningStaysTheOriginals) {
  absl::StatusOr<Subject> s = StartSubject("inet_echo", {"pending", "1000"});
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "READY"));
  UniqueFd fd = ConnectTo(PortOf(*s));
  ASSERT_TRUE(fd.valid()) << strerror(errno);
  Client c{fd.get()};
  ASSERT_TRUE(c.Send(500)) << c.error;
  DumpOptions leave;
  leave.leave_running = true;
  ASSERT_OK(DumpToFile(s->pid, TempPath("inet_pending-leave.img"), leave));
  ASSERT_EQ(kill(s->pid, SIGUSR1), 0);
  ASSERT_TRUE(c.Send(500) && c.ReadAll(10000)) << c.error;
  shutdown(fd.get(), SHUT_WR);
  ExpectNthPass(*s, 1, /*signal=*/false);
}

}  // namespace
}  // namespace ckpt::testing
