// Raw, ping (ICMP SOCK_DGRAM) and packet sockets, and iputils' ping on a
// raw socket and on a ping socket: dumped, killed and restored, or dumped
// left running and then restored; refused with packets queued or a ring
// mapped (the tree runs on); images naming an interface that is not here,
// or an option libckpt does not set, refused by name.
//
// The whole test runs in a network namespace of its own, made before the
// first test: nothing else sends on its lo (a packet socket that receives
// every protocol sees only the test's packets), ping sockets are allowed
// there (net.ipv4.ping_group_range), and nothing of the host's is touched.

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/image/format.h"
#include "tests/e2e/expect.h"
#include "tests/e2e/harness.h"
#include "tests/e2e/image_edit.h"
#include "tests/e2e/subject_tree.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;

bool SetPingRange(const char* range) {
  std::ofstream f("/proc/sys/net/ipv4/ping_group_range");
  f << range;
  f.close();
  return f.good();
}

class OwnNetworkNamespace : public ::testing::Environment {
 public:
  void SetUp() override {
    ASSERT_EQ(unshare(CLONE_NEWNET), 0) << "unshare(CLONE_NEWNET): " << strerror(errno);
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(s, 0);
    struct ifreq r {};
    strcpy(r.ifr_name, "lo");
    ASSERT_EQ(ioctl(s, SIOCGIFFLAGS, &r), 0);
    r.ifr_flags |= IFF_UP;
    ASSERT_EQ(ioctl(s, SIOCSIFFLAGS, &r), 0) << "bringing lo up: " << strerror(errno);
    close(s);
    ASSERT_TRUE(SetPingRange("0 2147483647"));
    prctl(PR_SET_CHILD_SUBREAPER, 1);
  }
};

[[maybe_unused]] ::testing::Environment* const kNetns =
    ::testing::AddGlobalTestEnvironment(new OwnNetworkNamespace);

bool Gone(pid_t pid) {
  struct stat st;
  return stat(absl::StrCat("/proc/", pid).c_str(), &st) != 0;
}

// The dump is refused naming `what`; the subject, resumed, passes its
// checks without a restore.
void RefusedAndRunsOn(const std::string& program, const std::string& mode, const std::string& what) {
  absl::StatusOr<Subject> s = StartSubject(program, {mode});
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "READY"));
  absl::Status st = DumpToFile(s->pid, TempPath(program + "-" + mode + ".img"));
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr(what)) << st;
  ExpectNthPass(*s, 1);
}

TEST(RawSocketTest, RawSocketsTheirFiltersAndOptionsComeBack) { DumpKillRestorePasses("inet_raw", {}, 1); }

TEST(RawSocketTest, RawSocketsLeftRunningThenRestored) { LeaveRunningPassesThenRestoresAndPasses("inet_raw", {}); }

TEST(RawSocketTest, ARawSocketWithAPacketToReadIsRefusedAndRunsOn) {
  RefusedAndRunsOn("inet_raw", "queued", "(raw 127.0.0.1 protocol 253 -> 127.0.0.1): packets wait to be read on it");
}

TEST(RawSocketTest, PingSocketsKeepTheirIdentifiersAndPeers) { DumpKillRestorePasses("inet_ping", {}, 1); }

TEST(RawSocketTest, PingSocketsLeftRunningThenRestored) { LeaveRunningPassesThenRestoresAndPasses("inet_ping", {}); }

TEST(RawSocketTest, APingSocketWithAReplyToReadIsRefusedAndRunsOn) {
  RefusedAndRunsOn("inet_ping", "queued", "ping 0.0.0.0 id 4321): packets wait to be read on it");
}

TEST(RawSocketTest, PacketSocketsKeepBindingsMembershipsFanoutAndFilters) {
  DumpKillRestorePasses("packet_socket", {}, 1);
}

TEST(RawSocketTest, PacketSocketsLeftRunningThenRestored) {
  LeaveRunningPassesThenRestoresAndPasses("packet_socket", {});
}

TEST(RawSocketTest, APacketSocketWithPacketsToReadIsRefusedAndRunsOn) {
  RefusedAndRunsOn("packet_socket", "queued", "packets wait to be read on the packet socket");
}

TEST(RawSocketTest, APacketSocketRingIsRefusedAndRunsOn) {
  RefusedAndRunsOn("packet_socket", "ring", "PACKET_RX_RING");
}

// iputils' ping, 16 echoes 0.2 s apart, dumped after its third reply,
// killed and restored: it goes on to the end and counts every reply. A
// dump that catches a reply not yet read is refused; it is tried again.
void PingGoesOn(const char* range, const char* socket_kind) {
  ASSERT_TRUE(SetPingRange(range));
  absl::StatusOr<Subject> s = StartProgram("/usr/bin/ping", {"-c", "16", "-i", "0.2", "127.0.0.1"});
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "icmp_seq=3 "));
  ASSERT_TRUE(SetPingRange("0 2147483647"));  // once ping has made its sockets
  const std::string image = TempPath(absl::StrCat("ping-", socket_kind, ".img"));
  absl::Status st;
  for (int tries = 0; tries < 5; tries++) {
    st = DumpToFile(s->pid, image);
    if (st.ok() || st.message().find("wait to be read") == std::string::npos) break;
  }
  ASSERT_OK(st);
  // What the image holds is the kind the range made ping use.
  std::string shown;
  {
    int out[2];
    ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
    pid_t show = Spawn({CkptPath(), "show", "--image", image}, -1, out[1], -1);
    close(out[1]);
    shown = ReadToEof(out[0]);
    close(out[0]);
    ASSERT_EQ(*WaitExit(show), 0);
  }
  EXPECT_THAT(shown, HasSubstr(socket_kind)) << shown;
  KillAndReapAll({s->pid});
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_EQ(*pid, s->pid);
  absl::StatusOr<int> code = WaitExit(s->pid, 30000);
  ASSERT_TRUE(code.ok()) << code.status();
  const std::string out = ReadOutput(*s);
  EXPECT_EQ(*code, 0) << out;
  EXPECT_THAT(out, HasSubstr("icmp_seq=16 ")) << out;
  EXPECT_THAT(out, HasSubstr("16 packets transmitted, 16 received, 0% packet loss")) << out;
}

TEST(RawSocketTest, IputilsPingOnARawSocketGoesOnToTheEnd) {
  PingGoesOn("1 0", "type=3 protocol=1 ");  // SOCK_RAW IPPROTO_ICMP
}

TEST(RawSocketTest, IputilsPingOnAPingSocketGoesOnToTheEnd) {
  PingGoesOn("0 2147483647", "type=2 protocol=1 ");  // SOCK_DGRAM IPPROTO_ICMP
}

// An image whose packet socket is bound to an interface this host does
// not have: refused naming it, and nothing of the tree is left.
TEST(RawSocketTest, APacketSocketOnAnInterfaceNotHereIsRefusedByName) {
  absl::StatusOr<Subject> s = StartSubject("packet_socket");
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "READY"));
  const std::string image = TempPath("packet-elsewhere.img"), bad = TempPath("packet-elsewhere-bad.img");
  ASSERT_OK(DumpToFile(s->pid, image));
  KillAndReapAll({s->pid});
  ASSERT_OK(RewriteImage(image, bad, [](uint32_t type, std::string* payload) {
    if (type != image::CKPT_HDR_PACKET_SOCK) return;
    image::ckpt_packet_sock r;
    memcpy(&r, payload->data(), sizeof(r));
    if (r.ifname[0] == '\0') return;
    memset(r.ifname, 0, sizeof(r.ifname));
    strcpy(r.ifname, "ckptnone0");
    memcpy(payload->data(), &r, sizeof(r));
  }));
  absl::StatusOr<pid_t> pid = RestoreFromFile(bad);
  ASSERT_FALSE(pid.ok());
  EXPECT_THAT(pid.status().message(), HasSubstr("the interface ckptnone0 (index 1 when dumped) is not on this host"))
      << pid.status();
  EXPECT_TRUE(Gone(s->pid));
  // The image itself is untouched, and restores.
  pid = RestoreFromFile(image);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ExpectNthPass(*s, 1);
}

// An INET_OPTS record naming an option libckpt does not set (a hostile
// image asking for something else) is refused, naming the record and the
// field.
TEST(RawSocketTest, AnOptionLibckptDoesNotSetIsRefused) {
  absl::StatusOr<Subject> s = StartSubject("inet_raw");
  ASSERT_TRUE(s.ok()) << s.status();
  TreeGuard guard(*s);
  ASSERT_OK(WaitForOutput(*s, "READY"));
  const std::string image = TempPath("raw-opts.img"), bad = TempPath("raw-opts-bad.img");
  ASSERT_OK(DumpToFile(s->pid, image));
  KillAndReapAll({s->pid});
  bool edited = false;
  ASSERT_OK(RewriteImage(image, bad, [&](uint32_t type, std::string* payload) {
    if (type != image::CKPT_HDR_INET_OPTS || edited) return;
    edited = true;
    image::ckpt_sockopt o;
    memcpy(&o, payload->data() + sizeof(image::ckpt_inet_opts), sizeof(o));
    o.level = SOL_SOCKET;
    o.name = SO_DEBUG;
    memcpy(payload->data() + sizeof(image::ckpt_inet_opts), &o, sizeof(o));
  }));
  ASSERT_TRUE(edited);
  absl::StatusOr<pid_t> pid = RestoreFromFile(bad);
  ASSERT_FALSE(pid.ok());
  EXPECT_THAT(pid.status().message(), HasSubstr("INET_OPTS")) << pid.status();
  EXPECT_THAT(pid.status().message(), HasSubstr("is not an option libckpt sets")) << pid.status();
  EXPECT_TRUE(Gone(s->pid));
}

}  // namespace
}  // namespace ckpt::testing
