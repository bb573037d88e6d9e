#include "lib/fs/inetdiag.h"

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/fs/sockdiag.h"

namespace ckpt::fs {
namespace {

void ParseOne(const struct nlmsghdr* h, InetDiag* d) {
  const auto* m = static_cast<const struct inet_diag_msg*>(NLMSG_DATA(h));
  d->family = m->idiag_family;
  d->state = m->idiag_state;
  memcpy(d->src, m->id.idiag_src, 16);
  memcpy(d->dst, m->id.idiag_dst, 16);
  d->sport = ntohs(m->id.idiag_sport);
  d->dport = ntohs(m->id.idiag_dport);
  d->ino = m->idiag_inode;
  d->rqueue = m->idiag_rqueue;
  d->wqueue = m->idiag_wqueue;
  d->uid = m->idiag_uid;
  ForEachDiagAttr(h, sizeof(*m), [&](uint16_t type, const char* data, size_t len) {
    if (type == INET_DIAG_SHUTDOWN && len > 0) d->shutdown = static_cast<uint8_t>(data[0]);
  });
}

// "0100007F:0001" (the address's 32-bit words in hex, as the kernel holds
// them, then the port) into `addr` and `port`.
bool ParseProcAddr(absl::string_view text, int family, uint8_t* addr, uint16_t* port) {
  const size_t words = family == AF_INET ? 1 : 4;
  if (text.size() != words * 8 + 5 || text[words * 8] != ':') return false;
  for (size_t i = 0; i < words; i++) {
    uint32_t w = 0;
    if (!absl::SimpleHexAtoi(text.substr(i * 8, 8), &w)) return false;
    memcpy(addr + 4 * i, &w, 4);
  }
  uint32_t p = 0;
  if (!absl::SimpleHexAtoi(text.substr(words * 8 + 1), &p) || p > 0xffff) return false;
  *port = static_cast<uint16_t>(p);
  return true;
}

}  // namespace

absl::StatusOr<InetDiag> ProcNetSocket(int family, bool ping, uint64_t ino) {
  const std::string path = absl::StrCat("/proc/net/", ping ? "icmp" : "raw", family == AF_INET6 ? "6" : "");
  std::ifstream in(path);
  if (!in) return ErrnoError(errno, "open ", path);
  std::string line;
  std::getline(in, line);  // the heading
  while (std::getline(in, line)) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
    if (f.size() < 10) continue;
    uint64_t node = 0;
    if (!absl::SimpleAtoi(f[9], &node) || node != ino) continue;
    InetDiag d;
    d.family = static_cast<uint8_t>(family);
    d.ino = ino;
    uint32_t st = 0, rx = 0, uid = 0;
    std::vector<absl::string_view> q = absl::StrSplit(f[4], ':');
    if (!ParseProcAddr(f[1], family, d.src, &d.sport) || !ParseProcAddr(f[2], family, d.dst, &d.dport) ||
        !absl::SimpleHexAtoi(f[3], &st) || q.size() != 2 || !absl::SimpleHexAtoi(q[1], &rx) ||
        !absl::SimpleAtoi(f[7], &uid)) {
      return absl::InternalError(absl::StrCat(path, ": cannot parse \"", line, "\""));
    }
    d.state = static_cast<uint8_t>(st);
    d.rqueue = rx;
    d.uid = uid;
    return d;
  }
  return absl::NotFoundError(absl::StrCat(path, " does not list socket:[", ino, "]"));
}

absl::StatusOr<std::vector<InetDiag>> DumpInetSockets(int family, int protocol) {
  struct {
    struct nlmsghdr h;
    struct inet_diag_req_v2 r;
  } req{};
  req.h.nlmsg_len = sizeof(req);
  req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.h.nlmsg_seq = 1;
  req.r.sdiag_family = static_cast<uint8_t>(family);
  req.r.sdiag_protocol = static_cast<uint8_t>(protocol);
  req.r.idiag_states = ~0u;
  std::vector<InetDiag> out;
  RETURN_IF_ERROR(AskSockDiag(&req, sizeof(req), "INET_DIAG", [&](const struct nlmsghdr* h) -> absl::StatusOr<bool> {
    if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg))) {
      return absl::DataLossError("sock_diag: a short INET_DIAG reply");
    }
    InetDiag d;
    ParseOne(h, &d);
    out.push_back(d);
    return true;
  }));
  return out;
}

std::string TcpStateName(uint32_t state) {
  static const char* const kNames[] = {"?", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
                                       "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING",
                                       "NEW_SYN_RECV", "BOUND_INACTIVE"};
  if (state < sizeof(kNames) / sizeof(kNames[0])) return kNames[state];
  return absl::StrCat("state ", state);
}

std::string InetAddrName(int family, const uint8_t* addr, uint16_t port) {
  char text[INET6_ADDRSTRLEN] = "?";
  inet_ntop(family, addr, text, sizeof(text));
  if (family == AF_INET6) return absl::StrCat("[", text, "]:", port);
  return absl::StrCat(text, ":", port);
}

}  // namespace ckpt::fs
