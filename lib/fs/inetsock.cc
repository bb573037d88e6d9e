#include "lib/fs/inetsock.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <map>
#include <set>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/fs/fdkind.h"
#include "lib/fs/holders.h"
#include "lib/fs/inetdiag.h"
#include "lib/fs/inetopts.h"
#include "lib/fs/netlock.h"
#include "lib/fs/sockopt.h"
#include "lib/image/format.h"
#include "lib/image/records.h"
#include "lib/objhash/handlers.h"

namespace ckpt::fs {
namespace {

// Debian's uapi headers name these; older libcs may not.
#ifndef TCP_REPAIR_WINDOW
#define TCP_REPAIR_WINDOW 29
#endif
#ifndef IPV6_FREEBIND
#define IPV6_FREEBIND 78
#endif
constexpr int kRepairOn = 1;
constexpr int kRepairOff = 0;       // and a window probe to the peer
constexpr int kRepairOffQuiet = -1;  // TCP_REPAIR_OFF_NO_WP: nothing sent
constexpr int kNoQueue = 0, kRecvQueue = 1, kSendQueue = 2;  // TCP_REPAIR_QUEUE

struct RepairWindow {  // struct tcp_repair_window
  uint32_t snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup;
};

// A dump-scoped kind with no handler (nothing is written for it): the
// dump's network lock, made when the first connection needs it.
constexpr objhash::ObjKind kObjNetLock{16};

constexpr image::FieldSpec kInetSockFields[] = {
    CKPT_FIELD(image::ckpt_inet_sock, objref, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, family, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, type, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, protocol, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, state, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, flags, kHex),
    CKPT_FIELD(image::ckpt_inet_sock, shutdown, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, src_addr, kHex),
    CKPT_FIELD(image::ckpt_inet_sock, dst_addr, kHex),
    CKPT_FIELD(image::ckpt_inet_sock, src_port, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, dst_port, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, backlog, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, sndbuf, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, rcvbuf, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, rcvlowat, kSigned),
    CKPT_FIELD(image::ckpt_inet_sock, linger, kSigned),
    CKPT_FIELD(image::ckpt_inet_sock, rcvtimeo_ns, kSigned),
    CKPT_FIELD(image::ckpt_inet_sock, sndtimeo_ns, kSigned),
    CKPT_FIELD(image::ckpt_inet_sock, mark, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, priority, kSigned),
    CKPT_FIELD(image::ckpt_inet_sock, tos, kSigned),
    CKPT_FIELD(image::ckpt_inet_sock, ttl, kSigned),
    CKPT_FIELD(image::ckpt_inet_sock, keepidle, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, keepintvl, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, keepcnt, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, user_timeout, kUnsigned),
    CKPT_CHARS(image::ckpt_inet_sock, congestion),
    CKPT_CHARS(image::ckpt_inet_sock, bind_dev),
    CKPT_FIELD(image::ckpt_inet_sock, snd_seq, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, rcv_seq, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, sent_len, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, unsent_len, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, recv_len, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, mss, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, tcp_options, kHex),
    CKPT_FIELD(image::ckpt_inet_sock, snd_wscale, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, rcv_wscale, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, timestamp, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, snd_wl1, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, snd_wnd, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, max_window, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, rcv_wnd, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, rcv_wup, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, nr_filter, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, lock_id, kHex),
    CKPT_FIELD(image::ckpt_inet_sock, ino, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, nr_dgrams, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_sock, peek_off, kSigned),
    CKPT_FIELD(image::ckpt_inet_sock, data_size, kUnsigned),
};
constexpr uint64_t kMaxDgramOverhead = sizeof(image::ckpt_inet_dgram) + 8;
CKPT_RECORD(image::CKPT_HDR_INET_SOCK, "INET_SOCK", image::ckpt_inet_sock, kInetSockFields,
            kMaxFilterInsns * sizeof(struct sock_filter) + image::kMaxInetQueueData +
                uint64_t{image::kMaxInetDgrams} * kMaxDgramOverhead,
            kRawBytes);

// The largest UDP payload (IPv4: 65535 less the headers).
constexpr size_t kMaxDgram = 65535;

std::string ProtoName(uint32_t protocol) {
  switch (protocol) {
    case IPPROTO_TCP: return "tcp";
    case IPPROTO_UDP: return "udp";
    case IPPROTO_UDPLITE: return "udplite";
    case IPPROTO_ICMP: return "icmp";
    case IPPROTO_ICMPV6: return "icmp";
    default: return absl::StrCat("protocol ", protocol);
  }
}

bool IsV4Mapped(const uint8_t* a) {
  static const uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return memcmp(a, kPrefix, 12) == 0;
}

bool IsAny(int family, const uint8_t* a) {
  static const uint8_t kZero[16] = {};
  return memcmp(a, kZero, family == AF_INET ? 4 : 16) == 0;
}

// An address of `family` from a sockaddr; false if it is of another one.
bool FromSockaddr(const struct sockaddr_storage& ss, int family, uint8_t* addr, uint16_t* port) {
  if (ss.ss_family != family) return false;
  if (family == AF_INET) {
    const auto& in = reinterpret_cast<const struct sockaddr_in&>(ss);
    memcpy(addr, &in.sin_addr, 4);
    *port = ntohs(in.sin_port);
    return true;
  }
  const auto& in6 = reinterpret_cast<const struct sockaddr_in6&>(ss);
  if (in6.sin6_scope_id != 0) return false;
  memcpy(addr, &in6.sin6_addr, 16);
  *port = ntohs(in6.sin6_port);
  return true;
}

socklen_t ToSockaddr(int family, const uint8_t* addr, uint16_t port, struct sockaddr_storage* ss) {
  memset(ss, 0, sizeof(*ss));
  if (family == AF_INET) {
    auto* in = reinterpret_cast<struct sockaddr_in*>(ss);
    in->sin_family = AF_INET;
    memcpy(&in->sin_addr, addr, 4);
    in->sin_port = htons(port);
    return sizeof(*in);
  }
  auto* in6 = reinterpret_cast<struct sockaddr_in6*>(ss);
  in6->sin6_family = AF_INET6;
  memcpy(&in6->sin6_addr, addr, 16);
  in6->sin6_port = htons(port);
  return sizeof(*in6);
}

// A ping socket (ICMP or ICMPv6, SOCK_DGRAM) or a raw one: neither has
// ports, nor a sock_diag table, nor datagrams that can be put back.
bool IsPing(int type, uint32_t protocol) {
  return type == SOCK_DGRAM && (protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6);
}
bool PortLess(int type, uint32_t protocol) { return type == SOCK_RAW || IsPing(type, protocol); }

// "tcp 127.0.0.1:80 -> 127.0.0.1:4242", "udp [::]:53", "raw 0.0.0.0
// protocol 1", "ping 127.0.0.1 id 42801".
std::string SockName(const image::ckpt_inet_sock& r) {
  if (PortLess(r.type, r.protocol)) {
    std::string out = absl::StrCat(r.type == SOCK_RAW ? "raw" : "ping", r.family == AF_INET6 ? "6 " : " ",
                                   InetAddrName(r.family, r.src_addr, 0));
    out.resize(out.size() - 2);  // ":0"
    absl::StrAppend(&out, r.type == SOCK_RAW ? " protocol " : " id ", r.src_port);
    if (r.state == image::kInetEstablished) {
      std::string peer = InetAddrName(r.family, r.dst_addr, 0);
      absl::StrAppend(&out, " -> ", peer.substr(0, peer.size() - 2));
    }
    return out;
  }
  std::string out = absl::StrCat(ProtoName(r.protocol), r.family == AF_INET6 ? "6 " : " ",
                                 InetAddrName(r.family, r.src_addr, r.src_port));
  if (r.state == image::kInetEstablished) {
    absl::StrAppend(&out, " -> ", InetAddrName(r.family, r.dst_addr, r.dst_port));
  }
  return out;
}

// The connection of `r` as the packets carry it (an IPv4 peer of a
// dual-stack socket is IPv4 on the wire).
LockedConn WireConn(const image::ckpt_inet_sock& r) {
  LockedConn c;
  c.sport = r.src_port;
  c.dport = r.dst_port;
  if (r.family == AF_INET6 && IsV4Mapped(r.src_addr) && IsV4Mapped(r.dst_addr)) {
    c.family = AF_INET;
    memcpy(c.src, r.src_addr + 12, 4);
    memcpy(c.dst, r.dst_addr + 12, 4);
  } else {
    c.family = r.family;
    memcpy(c.src, r.src_addr, 16);
    memcpy(c.dst, r.dst_addr, 16);
  }
  return c;
}

// What /proc/sys says of a default, or -1.
int SysctlInt(const char* path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  int v = -1;
  if (!text.ok() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &v)) return -1;
  return v;
}

// ------------------------------------------------------------------ dump

// The dumper's copy of a socket, kept until the dump ends; a connection's
// is in repair mode until then (unless the tree was left running).
// Leaves repair mode without a sound; the kernel clears SO_REUSEADDR
// then, which `reuse` puts back.
bool RepairOffQuietly(int fd, bool reuse) {
  if (setsockopt(fd, SOL_TCP, TCP_REPAIR, &kRepairOffQuiet, sizeof(kRepairOffQuiet)) != 0) return false;
  const int v = reuse ? 1 : 0;
  return setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &v, sizeof(v)) == 0;
}

struct Held {
  UniqueFd copy;
  bool repair = false;
  bool reuse = false;  // its SO_REUSEADDR
  bool killed = false;
  ~Held() {
    if (repair && !killed && copy.valid()) RepairOffQuietly(copy.get(), reuse);
  }
};

struct InetInfo {
  pid_t pid = 0;
  int fd = -1;
  image::ckpt_inet_sock rec{};
  SockFilter filter;
  std::string data;  // what follows the filter
  std::vector<image::ckpt_sockopt> opts;  // its INET_OPTS
  std::shared_ptr<Held> held;
  std::shared_ptr<NetLock> lock;
  uint32_t pending = 0;  // a listener: connections waiting in its backlog
  bool connection = false;  // an established TCP connection, read by ResolveInetSockets
  int tcp_state = 0;        // ... in this TCP state
  std::string who;
};

// What the dump keeps across its inet sockets: its network lock, and what
// sock_diag listed (by family and protocol, then inode), read once.
struct LockEntry {
  std::shared_ptr<NetLock> lock;
  std::shared_ptr<std::map<std::pair<int, int>, std::map<uint64_t, InetDiag>>> diag =
      std::make_shared<std::map<std::pair<int, int>, std::map<uint64_t, InetDiag>>>();
  std::shared_ptr<InetOptDefaults> defaults = std::make_shared<InetOptDefaults>();
};

LockEntry* DumpState(objhash::ObjHash& objects) {
  absl::StatusOr<objhash::ObjHash::Found> f =
      objects.LookupAdd(kObjNetLock, objhash::Identity::OfInode(0, 0), LockEntry{});
  if (!f.ok()) return nullptr;
  return &std::any_cast<LockEntry&>(f->entry->data);
}

// `st` with `who` in front, unless it names it already.
absl::Status WithWho(absl::Status st, const std::string& who) {
  if (st.ok() || absl::StartsWith(st.message(), who)) return st;
  return Annotate(st, who);
}

template <typename T>
absl::StatusOr<T> Named(absl::StatusOr<T> v, const std::string& who) {
  if (!v.ok()) return Annotate(v.status(), who);
  return v;
}

std::string Who(const FdProbe& p) {
  if (p.pid == getpid()) return absl::StrCat("socket:[", p.st.st_ino, "] (in flight)");
  return absl::StrCat("task ", p.pid, " fd ", p.fd, ": socket:[", p.st.st_ino, "]");
}

struct Kind {
  int family = 0, type = 0, protocol = 0;
};

absl::StatusOr<Kind> KindOf(int fd) {
  Kind k;
  ASSIGN_OR_RETURN(k.family, GetSockInt(fd, SOL_SOCKET, SO_DOMAIN, "SO_DOMAIN"));
  ASSIGN_OR_RETURN(k.type, GetSockInt(fd, SOL_SOCKET, SO_TYPE, "SO_TYPE"));
  ASSIGN_OR_RETURN(k.protocol, GetSockInt(fd, SOL_SOCKET, SO_PROTOCOL, "SO_PROTOCOL"));
  return k;
}

// The sock_diag entry of socket `ino` (the table is read once a dump: the
// tree is frozen, and new clients of its listeners are held off).
absl::StatusOr<InetDiag> DiagOf(objhash::ObjHash& objects, const Kind& k, uint64_t ino, const std::string& who) {
  LockEntry* state = DumpState(objects);
  if (state == nullptr) return absl::InternalError("no dump state");
  auto key = std::make_pair(k.family, k.protocol);
  auto it = state->diag->find(key);
  if (it == state->diag->end()) {
    ASSIGN_OR_RETURN(std::vector<InetDiag> all, DumpInetSockets(k.family, k.protocol));
    std::map<uint64_t, InetDiag> by_ino;
    for (const InetDiag& d : all) {
      if (d.ino != 0) by_ino[d.ino] = d;
    }
    it = state->diag->emplace(key, std::move(by_ino)).first;
  }
  auto found = it->second.find(ino);
  if (found != it->second.end()) return found->second;
  return absl::NotFoundError(absl::StrCat(who, ": sock_diag does not list it"));
}

absl::StatusOr<int> TcpState(int fd) {
  struct tcp_info ti {};
  socklen_t len = sizeof(ti);
  if (getsockopt(fd, SOL_TCP, TCP_INFO, &ti, &len) != 0) return ErrnoError(errno, "getsockopt TCP_INFO");
  return ti.tcpi_state;
}

// The states of a connection one side or both have ended, which repair
// mode can make again from an established one.
bool HalfClosed(int state) {
  return state == TCP_CLOSE_WAIT || state == TCP_FIN_WAIT1 || state == TCP_FIN_WAIT2 || state == TCP_LAST_ACK ||
         state == TCP_CLOSING;
}
bool FinCame(int state) { return state == TCP_CLOSE_WAIT || state == TCP_LAST_ACK || state == TCP_CLOSING; }
bool FinSent(int state) {
  return state == TCP_FIN_WAIT1 || state == TCP_FIN_WAIT2 || state == TCP_LAST_ACK || state == TCP_CLOSING;
}

// Whether the kind and state can be saved; the refusal names them.
absl::Status Supported(int fd, const Kind& k, const std::string& who) {
  if (k.family != AF_INET && k.family != AF_INET6) return absl::InternalError("not an inet socket");
  const std::string fam = k.family == AF_INET ? "IPv4" : "IPv6";
  if (k.type == SOCK_STREAM && k.protocol == IPPROTO_TCP) {
    ASSIGN_OR_RETURN(int state, TcpState(fd));
    if (state == TCP_CLOSE || state == TCP_LISTEN || state == TCP_ESTABLISHED || HalfClosed(state)) {
      return absl::OkStatus();
    }
    return absl::UnimplementedError(absl::StrCat(who, ": a ", fam, " TCP socket in state ", TcpStateName(state),
                                                 " is not supported yet (only not connected, listening, established "
                                                 "and half-closed connections are)"));
  }
  if (k.type == SOCK_DGRAM && (k.protocol == IPPROTO_UDP || k.protocol == IPPROTO_UDPLITE)) {
    return absl::OkStatus();
  }
  if (k.type == SOCK_RAW || IsPing(k.type, static_cast<uint32_t>(k.protocol))) {
    if (k.family == AF_INET && k.protocol == IPPROTO_ICMPV6) {
      return absl::UnimplementedError(absl::StrCat(who, ": an IPv4 socket of protocol ICMPv6 is not supported"));
    }
    return absl::OkStatus();
  }
  std::string what = k.protocol == IPPROTO_SCTP ? "an SCTP socket"
                     : k.protocol == 262        ? "an MPTCP socket"
                                                : absl::StrCat("a socket of type ", k.type, " protocol ", k.protocol);
  return absl::UnimplementedError(absl::StrCat(who, ": ", what, " (", fam, ") is not supported yet"));
}

// State of a socket that the image does not keep, refused: another
// network namespace, a pending error, an upper layer (kTLS), UDP offloads.
absl::Status Refusals(int c, const Kind& k, const std::string& who) {
  RETURN_IF_ERROR(RefuseOtherNetns(c, who, "a socket"));
  struct pollfd p = {c, POLLERR, 0};
  if (poll(&p, 1, 0) == 1 && (p.revents & POLLERR)) {
    return absl::UnimplementedError(absl::StrCat(
        who, ": an error waits on it (a reset, or an ICMP error), which the dump cannot read without taking it: "
             "not supported"));
  }
  if (k.protocol == IPPROTO_TCP) {
    char ulp[16] = {};
    socklen_t len = sizeof(ulp);
    if (getsockopt(c, SOL_TCP, TCP_ULP, ulp, &len) == 0 && ulp[0] != '\0') {
      return absl::UnimplementedError(absl::StrCat(who, ": a TCP socket with the upper layer \"",
                                                   std::string(ulp, strnlen(ulp, sizeof(ulp))),
                                                   "\" (TCP_ULP; kTLS) is not supported"));
    }
  } else if (k.protocol == IPPROTO_UDP || k.protocol == IPPROTO_UDPLITE) {
    for (auto [opt, name] : {std::pair{UDP_GRO, "UDP_GRO"}, std::pair{UDP_SEGMENT, "UDP_SEGMENT"},
                             std::pair{UDP_CORK, "UDP_CORK"}}) {
      absl::StatusOr<int> v = GetSockInt(c, SOL_UDP, opt, name);
      if (v.ok() && *v != 0) {
        return absl::UnimplementedError(absl::StrCat(who, ": a UDP socket with ", name, " set is not supported"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ReadOptions(int c, const Kind& k, image::ckpt_inet_sock& r) {
  auto flag = [&](int level, int opt, const char* what, uint32_t bit) -> absl::Status {
    ASSIGN_OR_RETURN(int v, GetSockInt(c, level, opt, what));
    if (v) r.flags |= bit;
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(flag(SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR", image::kInetReuseAddr));
  RETURN_IF_ERROR(flag(SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT", image::kInetReusePort));
  RETURN_IF_ERROR(flag(SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE", image::kInetKeepAlive));
  RETURN_IF_ERROR(flag(SOL_SOCKET, SO_OOBINLINE, "SO_OOBINLINE", image::kInetOobInline));
  RETURN_IF_ERROR(flag(SOL_SOCKET, SO_BROADCAST, "SO_BROADCAST", image::kInetBroadcast));
  struct linger lg {};
  socklen_t len = sizeof(lg);
  if (getsockopt(c, SOL_SOCKET, SO_LINGER, &lg, &len) != 0) return ErrnoError(errno, "getsockopt SO_LINGER");
  if (lg.l_onoff) {
    r.flags |= image::kInetLinger;
    r.linger = lg.l_linger;
  }
  ASSIGN_OR_RETURN(int sndbuf, GetSockInt(c, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF"));
  ASSIGN_OR_RETURN(int rcvbuf, GetSockInt(c, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF"));
  r.sndbuf = static_cast<uint32_t>(sndbuf);
  r.rcvbuf = static_cast<uint32_t>(rcvbuf);
  ASSIGN_OR_RETURN(r.rcvlowat, GetSockInt(c, SOL_SOCKET, SO_RCVLOWAT, "SO_RCVLOWAT"));
  {
    // TCP has SO_PEEK_OFF since Linux 6.10: before, none.
    int v = -1;
    socklen_t vl = sizeof(v);
    if (getsockopt(c, SOL_SOCKET, SO_PEEK_OFF, &v, &vl) != 0) {
      if (errno != EOPNOTSUPP) return ErrnoError(errno, "getsockopt SO_PEEK_OFF");
      v = -1;
    }
    r.peek_off = v;
  }
  ASSIGN_OR_RETURN(r.rcvtimeo_ns, GetSockTimeo(c, SO_RCVTIMEO, "SO_RCVTIMEO"));
  ASSIGN_OR_RETURN(r.sndtimeo_ns, GetSockTimeo(c, SO_SNDTIMEO, "SO_SNDTIMEO"));
  ASSIGN_OR_RETURN(int mark, GetSockInt(c, SOL_SOCKET, SO_MARK, "SO_MARK"));
  r.mark = static_cast<uint32_t>(mark);
  ASSIGN_OR_RETURN(r.priority, GetSockInt(c, SOL_SOCKET, SO_PRIORITY, "SO_PRIORITY"));
  len = sizeof(r.bind_dev);
  if (getsockopt(c, SOL_SOCKET, SO_BINDTODEVICE, r.bind_dev, &len) != 0) {
    return ErrnoError(errno, "getsockopt SO_BINDTODEVICE");
  }
  r.bind_dev[sizeof(r.bind_dev) - 1] = '\0';
  if (k.family == AF_INET) {
    ASSIGN_OR_RETURN(r.tos, GetSockInt(c, SOL_IP, IP_TOS, "IP_TOS"));
    ASSIGN_OR_RETURN(r.ttl, GetSockInt(c, SOL_IP, IP_TTL, "IP_TTL"));
    if (r.ttl == SysctlInt("/proc/sys/net/ipv4/ip_default_ttl")) r.ttl = -1;
    RETURN_IF_ERROR(flag(SOL_IP, IP_FREEBIND, "IP_FREEBIND", image::kInetFreebind));
  } else {
    ASSIGN_OR_RETURN(r.tos, GetSockInt(c, SOL_IPV6, IPV6_TCLASS, "IPV6_TCLASS"));
    ASSIGN_OR_RETURN(r.ttl, GetSockInt(c, SOL_IPV6, IPV6_UNICAST_HOPS, "IPV6_UNICAST_HOPS"));
    if (r.ttl == SysctlInt("/proc/sys/net/ipv6/conf/all/hop_limit")) r.ttl = -1;
    // A raw socket has no IPv4 side; it may read 1 (net.ipv6.bindv6only),
    // and the restored one reads what the sysctl says again.
    if (k.type != SOCK_RAW) RETURN_IF_ERROR(flag(SOL_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY", image::kInetV6Only));
    RETURN_IF_ERROR(flag(SOL_IPV6, IPV6_FREEBIND, "IPV6_FREEBIND", image::kInetFreebind));
  }
  if (k.protocol == IPPROTO_TCP) {
    RETURN_IF_ERROR(flag(SOL_TCP, TCP_NODELAY, "TCP_NODELAY", image::kInetNoDelay));
    RETURN_IF_ERROR(flag(SOL_TCP, TCP_CORK, "TCP_CORK", image::kInetCork));
    ASSIGN_OR_RETURN(int idle, GetSockInt(c, SOL_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE"));
    ASSIGN_OR_RETURN(int intvl, GetSockInt(c, SOL_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL"));
    ASSIGN_OR_RETURN(int cnt, GetSockInt(c, SOL_TCP, TCP_KEEPCNT, "TCP_KEEPCNT"));
    ASSIGN_OR_RETURN(int ut, GetSockInt(c, SOL_TCP, TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT"));
    r.keepidle = static_cast<uint32_t>(idle);
    r.keepintvl = static_cast<uint32_t>(intvl);
    r.keepcnt = static_cast<uint32_t>(cnt);
    r.user_timeout = static_cast<uint32_t>(ut);
    len = sizeof(r.congestion);
    if (getsockopt(c, SOL_TCP, TCP_CONGESTION, r.congestion, &len) != 0) {
      return ErrnoError(errno, "getsockopt TCP_CONGESTION");
    }
    r.congestion[sizeof(r.congestion) - 1] = '\0';
  }
  return absl::OkStatus();
}

// Exactly `want` bytes peeked from the queue selected on `fd`.
absl::StatusOr<std::string> PeekQueue(int fd, uint32_t want, const char* which) {
  std::string out(want, '\0');
  if (want == 0) return out;
  ssize_t n = recv(fd, out.data(), want, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0) return ErrnoError(errno, "peeking at the ", which, " queue");
  if (static_cast<uint32_t>(n) != want) {
    // A read stops at an urgent byte's mark (SO_OOBINLINE).
    return absl::UnimplementedError(absl::StrCat("the ", which, " queue gave ", n, " of its ", want,
                                                 " bytes: an urgent byte (MSG_OOB) in it stops a read at its mark, "
                                                 "which is not supported"));
  }
  return out;
}

std::shared_ptr<NetLock> DumpLock(objhash::ObjHash& objects) {
  LockEntry* e = DumpState(objects);
  if (e == nullptr) return nullptr;
  if (e->lock == nullptr) e->lock = std::make_shared<NetLock>();
  return e->lock;
}

// An established connection, in repair mode: its sequence numbers,
// queues, window and options. The lock is on first, so that nothing moves.
absl::Status ReadConnection(objhash::ObjHash& objects, InetInfo& s, const std::string& who, bool leave_running) {
  image::ckpt_inet_sock& r = s.rec;
  const int c = s.held->copy.get();
  // Locked already (ResolveInetSockets, all at once).
  s.lock = DumpLock(objects);
  if (s.lock == nullptr) return absl::InternalError("no network lock");
  // An urgent byte is kept apart from the queue; repair mode cannot put it
  // back. A peek shows it without taking it.
  char urgent;
  if (recv(c, &urgent, 1, MSG_OOB | MSG_PEEK | MSG_DONTWAIT) == 1) {
    return absl::UnimplementedError(absl::StrCat(who, ": an urgent byte (MSG_OOB) waits to be read: not supported"));
  }
  if (setsockopt(c, SOL_TCP, TCP_REPAIR, &kRepairOn, sizeof(kRepairOn)) != 0) {
    return ErrnoError(errno, who, ": TCP_REPAIR (needs CAP_NET_ADMIN in the socket's network namespace)");
  }
  s.held->repair = true;
  s.held->reuse = r.flags & image::kInetReuseAddr;
  ASSIGN_OR_RETURN(int state, TcpState(c));
  if (state != s.tcp_state) {
    return absl::AbortedError(absl::StrCat(who, ": the connection moved to ", TcpStateName(state),
                                           " while it was being read"));
  }
  auto select = [&](int q) -> absl::Status {
    return SetSockInt(c, SOL_TCP, TCP_REPAIR_QUEUE, q, "TCP_REPAIR_QUEUE");
  };
  uint32_t seq = 0;
  socklen_t len = sizeof(seq);
  int inq = 0, outq = 0, unsent = 0;
  RETURN_IF_ERROR(select(kRecvQueue));
  if (getsockopt(c, SOL_TCP, TCP_QUEUE_SEQ, &seq, &len) != 0) return ErrnoError(errno, "getsockopt TCP_QUEUE_SEQ");
  if (ioctl(c, SIOCINQ, &inq) != 0) return ErrnoError(errno, "SIOCINQ");
  // A peek starts at the program's SO_PEEK_OFF and moves it: none while
  // the queue is read, then its own back.
  if (r.peek_off != -1) RETURN_IF_ERROR(SetSockInt(c, SOL_SOCKET, SO_PEEK_OFF, -1, "SO_PEEK_OFF"));
  absl::StatusOr<std::string> peeked = PeekQueue(c, static_cast<uint32_t>(inq), "receive");
  if (r.peek_off != -1) RETURN_IF_ERROR(SetSockInt(c, SOL_SOCKET, SO_PEEK_OFF, r.peek_off, "SO_PEEK_OFF"));
  ASSIGN_OR_RETURN(std::string recvq, std::move(peeked));
  // rcv_nxt counts the peer's FIN, if it came, after the data.
  r.rcv_seq = seq - static_cast<uint32_t>(inq) - ((r.flags & image::kInetFinIn) ? 1 : 0);
  RETURN_IF_ERROR(select(kSendQueue));
  len = sizeof(seq);
  if (getsockopt(c, SOL_TCP, TCP_QUEUE_SEQ, &seq, &len) != 0) return ErrnoError(errno, "getsockopt TCP_QUEUE_SEQ");
  if (ioctl(c, SIOCOUTQ, &outq) != 0) return ErrnoError(errno, "SIOCOUTQ");
  if (ioctl(c, SIOCOUTQNSD, &unsent) != 0) return ErrnoError(errno, "SIOCOUTQNSD");
  if (unsent > outq) return absl::InternalError(absl::StrCat(who, ": more unsent bytes than queued ones"));
  if (r.flags & image::kInetFinOut) {
    // write_seq counts its FIN (and the queues, a FIN not acknowledged):
    // made again by a shutdown, after nothing else to send.
    const int fin_unacked = (state == TCP_FIN_WAIT1 || state == TCP_CLOSING || state == TCP_LAST_ACK) ? 1 : 0;
    if (outq != fin_unacked) {
      return absl::UnimplementedError(absl::StrCat(
          who, ": data not yet acknowledged waits before its end (FIN): not supported"));
    }
    outq = unsent = 0;
  }
  ASSIGN_OR_RETURN(std::string sendq, PeekQueue(c, static_cast<uint32_t>(outq), "send"));
  r.snd_seq = seq - static_cast<uint32_t>(outq) - ((r.flags & image::kInetFinOut) ? 1 : 0);
  RETURN_IF_ERROR(select(kNoQueue));
  r.sent_len = static_cast<uint32_t>(outq - unsent);
  r.unsent_len = static_cast<uint32_t>(unsent);
  r.recv_len = static_cast<uint32_t>(inq);
  if (uint64_t{r.sent_len} + r.unsent_len + r.recv_len > image::kMaxInetQueueData) {
    return absl::UnimplementedError(absl::StrCat(who, ": more queued data than an image holds"));
  }
  s.data = sendq + recvq;

  struct tcp_info ti {};
  len = sizeof(ti);
  if (getsockopt(c, SOL_TCP, TCP_INFO, &ti, &len) != 0) return ErrnoError(errno, "getsockopt TCP_INFO");
  if (ti.tcpi_options & TCPI_OPT_TIMESTAMPS) r.tcp_options |= image::kInetTcpTimestamps;
  if (ti.tcpi_options & TCPI_OPT_SACK) r.tcp_options |= image::kInetTcpSack;
  if (ti.tcpi_options & TCPI_OPT_WSCALE) {
    r.tcp_options |= image::kInetTcpWscale;
    r.snd_wscale = ti.tcpi_snd_wscale;
    r.rcv_wscale = ti.tcpi_rcv_wscale;
  }
  ASSIGN_OR_RETURN(int mss, GetSockInt(c, SOL_TCP, TCP_MAXSEG, "TCP_MAXSEG"));
  r.mss = static_cast<uint32_t>(mss);
  ASSIGN_OR_RETURN(int ts, GetSockInt(c, SOL_TCP, TCP_TIMESTAMP, "TCP_TIMESTAMP"));
  r.timestamp = static_cast<uint32_t>(ts);
  RepairWindow w{};
  len = sizeof(w);
  if (getsockopt(c, SOL_TCP, TCP_REPAIR_WINDOW, &w, &len) != 0) return ErrnoError(errno, "getsockopt TCP_REPAIR_WINDOW");
  r.snd_wl1 = w.snd_wl1;
  r.snd_wnd = w.snd_wnd;
  r.max_window = w.max_window;
  r.rcv_wnd = w.rcv_wnd;
  r.rcv_wup = w.rcv_wup;
  if (leave_running) {
    // The tree goes on with it: out of repair mode without a sound. The
    // lock holds until the dump ends.
    if (!RepairOffQuietly(c, r.flags & image::kInetReuseAddr)) return ErrnoError(errno, who, ": leaving TCP_REPAIR");
    s.held->repair = false;
  } else {
    r.lock_id = s.lock->id();
  }
  return absl::OkStatus();
}

// A UDP socket's queued datagrams, peeked at SO_PEEK_OFF offsets (one
// datagram a peek); the program's own offset is put back.
absl::Status ReadDatagrams(int c, InetInfo& s, const std::string& who) {
  const int saved = s.rec.peek_off;
  RETURN_IF_ERROR(SetSockInt(c, SOL_SOCKET, SO_PEEK_OFF, 0, "SO_PEEK_OFF"));
  std::vector<char> buf(kMaxDgram + 1);
  absl::Status st;
  for (;;) {
    struct sockaddr_storage from {};
    struct iovec iov = {buf.data(), buf.size()};
    struct msghdr mh {};
    mh.msg_name = &from;
    mh.msg_namelen = sizeof(from);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    ssize_t n = recvmsg(c, &mh, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n < 0) {
      st = ErrnoError(errno, who, ": peeking at a datagram");
      break;
    }
    if (mh.msg_flags & MSG_TRUNC) {
      st = absl::InternalError(absl::StrCat(who, ": a datagram longer than ", kMaxDgram, " bytes"));
      break;
    }
    image::ckpt_inet_dgram d{};
    d.len = static_cast<uint32_t>(n);
    d.family = from.ss_family;
    if (!FromSockaddr(from, from.ss_family, d.addr, &d.port)) {
      st = absl::UnimplementedError(absl::StrCat(who, ": a queued datagram's sender address (family ",
                                                 from.ss_family, ") is not supported"));
      break;
    }
    if (++s.rec.nr_dgrams > image::kMaxInetDgrams ||
        s.data.size() + sizeof(d) + n > image::kMaxInetQueueData) {
      st = absl::UnimplementedError(absl::StrCat(who, ": more queued datagrams than an image holds"));
      break;
    }
    s.data.append(reinterpret_cast<const char*>(&d), sizeof(d));
    s.data.append(buf.data(), static_cast<size_t>(n));
    s.data.resize((s.data.size() + 7) & ~size_t{7}, '\0');
  }
  absl::Status back = SetSockInt(c, SOL_SOCKET, SO_PEEK_OFF, saved, "SO_PEEK_OFF");
  RETURN_IF_ERROR(st);
  return back;
}

// A raw or ping socket: what getsockname did not say (a connected peer,
// queued packets) from /proc/net; shutdown from poll. Packets queued to
// read are refused: a raw socket's cannot be put back without every other
// raw socket of their protocol seeing them again, and a ping socket's
// cannot be peeked at past the first (no SO_PEEK_OFF).
absl::Status ReadPortLess(int c, const Kind& k, uint64_t ino, InetInfo& s, const std::string& who_in) {
  image::ckpt_inet_sock& r = s.rec;
  const bool ping = IsPing(k.type, static_cast<uint32_t>(k.protocol));
  // A ping socket not bound (explicitly, or by a first send) is not
  // hashed, and not listed: it receives nothing, and has no peer.
  // A raw socket is always hashed: not listed, something is wrong.
  absl::StatusOr<InetDiag> listed = ProcNetSocket(k.family, ping, ino);
  if (!listed.ok() && (!ping || !absl::IsNotFound(listed.status()))) return WithWho(listed.status(), who_in);
  InetDiag d;
  if (listed.ok()) d = *listed;
  // getsockname shows the protocol (raw) or the echo identifier (ping) as
  // its port; bound means an identifier for ping.
  if (!ping) r.flags |= image::kInetBound;
  if (d.state == TCP_ESTABLISHED) {
    r.state = image::kInetEstablished;
    memcpy(r.dst_addr, d.dst, 16);
    r.dst_port = 0;
  } else {
    r.state = image::kInetClosed;
  }
  const std::string who = absl::StrCat(who_in, " (", SockName(r), ")");
  if (d.rqueue != 0) {
    return absl::UnimplementedError(absl::StrCat(
        who, ": packets wait to be read on it (", d.rqueue, " bytes of buffers), which cannot be put back as they "
             "came: not supported (the dump may be tried again once the program has read them)"));
  }
  struct pollfd pr = {c, POLLRDHUP, 0};
  if (poll(&pr, 1, 0) == 1) {
    if (pr.revents & POLLHUP) {
      r.shutdown = 3;
    } else if (pr.revents & POLLRDHUP) {
      r.shutdown = 1;
    }
  }
  return absl::OkStatus();
}

// Options whose state is a counter the kernel does not show, refused:
// SO_TIMESTAMPING with OPT_ID (it numbers the timestamps) and
// SO_ZEROCOPY on a socket that may have sent (its completions are
// numbered; a listener's is only handed to the connections it accepts).
absl::Status RefuseCounters(const std::vector<image::ckpt_sockopt>& opts, const Kind& k, int tcp_state,
                            const std::string& who) {
  constexpr uint32_t kOptId = 1u << 7;
  for (const image::ckpt_sockopt& o : opts) {
    if (o.level != SOL_SOCKET || o.len < 4) continue;
    uint32_t v;
    memcpy(&v, o.value, 4);
    if ((o.name == 37 || o.name == 65) && (v & kOptId)) {
      return absl::UnimplementedError(absl::StrCat(
          who, ": SO_TIMESTAMPING with SOF_TIMESTAMPING_OPT_ID is not supported (its counter cannot be read back)"));
    }
    if (o.name == SO_ZEROCOPY && v != 0 && !(k.protocol == IPPROTO_TCP && tcp_state == TCP_LISTEN)) {
      return absl::UnimplementedError(absl::StrCat(
          who, ": SO_ZEROCOPY is not supported but on a listener (its completions' counter cannot be read back)"));
    }
  }
  return absl::OkStatus();
}

bool ClaimsInet(const FdProbe& p) {
  if (!S_ISSOCK(p.st.st_mode)) return false;
  absl::StatusOr<int> dom = SocketDomain(p.pid, p.fd);
  return dom.ok() && (*dom == AF_INET || *dom == AF_INET6);
}

absl::Status DescribeInet(const FdProbe& p, Description*) {
  const std::string who = Who(p);
  ASSIGN_OR_RETURN(UniqueFd copy, Named(CopyOfFd(p.pid, p.fd), who));
  ASSIGN_OR_RETURN(Kind k, Named(KindOf(copy.get()), who));
  return Supported(copy.get(), k, who);
}

absl::StatusOr<uint32_t> RegisterInetTarget(objhash::ObjHash& objects, const FdProbe& p, const Description&) {
  ASSIGN_OR_RETURN(objhash::ObjHash::Found f,
                   objects.LookupAdd(kObjInet, objhash::Identity::OfInode(p.st.st_dev, p.st.st_ino), InetInfo{}));
  if (!f.first) return f.objref;
  auto& s = std::any_cast<InetInfo&>(f.entry->data);
  s.pid = p.pid;
  s.fd = p.fd;
  s.held = std::make_shared<Held>();
  std::string who = Who(p);
  ASSIGN_OR_RETURN(s.held->copy, Named(CopyOfFd(p.pid, p.fd), who));
  const int c = s.held->copy.get();
  ASSIGN_OR_RETURN(Kind k, Named(KindOf(c), who));
  RETURN_IF_ERROR(Supported(c, k, who));
  image::ckpt_inet_sock& r = s.rec;
  r.objref = f.objref;
  r.family = static_cast<uint16_t>(k.family);
  r.type = static_cast<uint16_t>(k.type);
  r.protocol = static_cast<uint32_t>(k.protocol);
  r.ino = p.st.st_ino;
  r.linger = 0;
  struct sockaddr_storage ss {};
  socklen_t len = sizeof(ss);
  if (getsockname(c, reinterpret_cast<struct sockaddr*>(&ss), &len) != 0) return ErrnoError(errno, who, ": getsockname");
  if (!FromSockaddr(ss, k.family, r.src_addr, &r.src_port)) {
    return absl::UnimplementedError(absl::StrCat(who, ": an IPv6 address with a scope (link-local) is not supported"));
  }
  if (r.src_port != 0) r.flags |= image::kInetBound;
  bool connected = false;
  len = sizeof(ss);
  if (getpeername(c, reinterpret_cast<struct sockaddr*>(&ss), &len) == 0) {
    if (!FromSockaddr(ss, k.family, r.dst_addr, &r.dst_port)) {
      return absl::UnimplementedError(absl::StrCat(who, ": an IPv6 peer with a scope (link-local) is not supported"));
    }
    connected = true;
  } else if (errno != ENOTCONN) {
    return ErrnoError(errno, who, ": getpeername");
  }
  RETURN_IF_ERROR(Refusals(c, k, who));
  RETURN_IF_ERROR(Annotate(ReadOptions(c, k, r), who));
  {
    LockEntry* e = DumpState(objects);
    if (e == nullptr) return absl::InternalError("no dump state for inet sockets");
    s.opts = ReadInetOptions(c, k.family, k.type, k.protocol, *e->defaults);
    if (!s.opts.empty()) r.flags |= image::kInetMoreOptions;
  }
  ASSIGN_OR_RETURN(s.filter, GetSockFilter(c, who));
  r.nr_filter = static_cast<uint32_t>(s.filter.insns.size());
  if (s.filter.locked) r.flags |= image::kInetFilterLocked;
  const bool leave_running = p.dump_flags & objhash::kDumpLeaveRunning;
  int state = TCP_CLOSE;
  if (k.protocol == IPPROTO_TCP) {
    ASSIGN_OR_RETURN(state, TcpState(c));
  }
  RETURN_IF_ERROR(RefuseCounters(s.opts, k, state, who));
  if (state == TCP_LISTEN && !leave_running) {
    // From now until the restore, new clients' SYNs are dropped (they
    // resend them): a connection the kernel accepted after the dump read
    // the backlog would be lost with the tree.
    s.lock = DumpLock(objects);
    if (s.lock == nullptr) return absl::InternalError("no network lock");
    LockedConn l = WireConn(r);
    RETURN_IF_ERROR(Annotate(s.lock->AddListener(l.family, IsAny(r.family, r.src_addr) ? nullptr : l.src, r.src_port),
                             who));
  }
  if (PortLess(k.type, static_cast<uint32_t>(k.protocol))) {
    RETURN_IF_ERROR(ReadPortLess(c, k, p.st.st_ino, s, who));
    r.data_size = 0;
    return f.objref;
  }
  // A TCP socket not connected nor listening is in no table sock_diag
  // shows; nor is a UDP socket never bound.
  absl::StatusOr<InetDiag> found = DiagOf(objects, k, p.st.st_ino, who);
  if (!found.ok() && !absl::IsNotFound(found.status())) return found.status();
  InetDiag diag;
  if (found.ok()) diag = *found;
  r.shutdown = diag.shutdown & 3;
  if (k.protocol == IPPROTO_TCP) {
    if (state != TCP_CLOSE && !found.ok()) return found.status();
    if (state == TCP_LISTEN) {
      r.state = image::kInetListening;
      r.backlog = diag.wqueue;
      // Its backlog is looked at once every socket is collected (its
      // clients must be among them): ResolveInetSockets.
    } else if ((state == TCP_ESTABLISHED || HalfClosed(state)) && connected) {
      r.state = image::kInetEstablished;
      // Each end shows as shut down too: the FINs say it.
      if (FinCame(state)) {
        r.flags |= image::kInetFinIn;
        r.shutdown &= ~1u;
      }
      if (FinSent(state)) {
        r.flags |= image::kInetFinOut;
        r.shutdown &= ~2u;
      }
      if (r.shutdown & 2) return absl::InternalError(absl::StrCat(who, ": established but shut down for sending"));
      who = absl::StrCat(who, " (", SockName(r), ", ", TcpStateName(state), ")");
      s.tcp_state = state;
      // Read once no process outside the tree is found to hold it
      // (ResolveInetSockets): repair mode would stop that one's calls.
      s.connection = true;
      s.who = who;
    } else if (state == TCP_CLOSE) {
      r.state = image::kInetClosed;
      // A connection that ended (reset, timed out, closed both ways) is
      // CLOSE too, its port given back; its end shows as shut down.
      struct pollfd pr = {c, POLLRDHUP, 0};
      const bool ended = poll(&pr, 1, 0) == 1 && (pr.revents & POLLRDHUP);
      if (diag.shutdown != 0 || ended) {
        return absl::UnimplementedError(absl::StrCat(
            who, ": a TCP connection that has ended (reset or timed out) and whose end its program has not "
                 "read is not supported"));
      }
      r.shutdown = 0;
    } else {
      return Supported(c, k, who);
    }
  } else {
    r.state = connected ? image::kInetEstablished : image::kInetClosed;
    who = absl::StrCat(who, " (", SockName(r), ")");
    RETURN_IF_ERROR(WithWho(ReadDatagrams(c, s, who), who));
  }
  r.data_size = s.data.size();
  return f.objref;
}

absl::Status CheckpointInet(objhash::CheckpointContext& ctx, const objhash::ObjHash::Entry& entry) {
  const auto& s = std::any_cast<const InetInfo&>(entry.data);
  image::ckpt_inet_sock rec = s.rec;
  rec.data_size = s.data.size();
  // Every record of a dump that leaves its lock names it, so that a
  // restore that fails at any of them lifts it.
  if (rec.lock_id == 0 && !(ctx.flags & objhash::kDumpLeaveRunning)) {
    for (const auto& e : ctx.objects->entries()) {
      if (e->kind != kObjNetLock) continue;
      const auto& l = std::any_cast<const LockEntry&>(e->data);
      if (l.lock != nullptr) rec.lock_id = l.lock->id();
    }
  }
  struct iovec parts[3] = {{&rec, sizeof(rec)},
                           {const_cast<struct sock_filter*>(s.filter.insns.data()),
                            s.filter.insns.size() * sizeof(struct sock_filter)},
                           {const_cast<char*>(s.data.data()), s.data.size()}};
  RETURN_IF_ERROR(ctx.writer->AppendV(image::CKPT_HDR_INET_SOCK, parts, 3));
  if (s.opts.empty()) return absl::OkStatus();
  return WriteInetOptions(*ctx.writer, rec.objref, s.opts);
}

// --------------------------------------------------------------- restore

struct InetState {
  struct Repaired {
    int fd;
    image::ckpt_inet_sock rec;
    std::string what;
  };
  std::vector<Repaired> repaired;
  struct Pending {
    int fd;
    image::ckpt_inet_sock rec;
    std::string data;
    std::string what;
  };
  std::vector<Pending> pending;  // clients to connect again, in order
  std::set<uint64_t> locks;
  bool step_left = false;
  // A copy of each connection's socket, until the restore succeeds.
  std::vector<UniqueFd> guards;
  bool committed = false;
  // By family: the TCP connections open when the restore began.
  std::map<int, std::map<std::string, InetDiag>> open;
  ~InetState() {
    // A failed restore: the connections' sockets go back to repair mode,
    // so that they close without a sound (never a FIN after part of the
    // data); the peers then see a reset when they retransmit.
    if (!committed) {
      for (const UniqueFd& g : guards) setsockopt(g.get(), SOL_TCP, TCP_REPAIR, &kRepairOn, sizeof(kRepairOn));
    }
    guards.clear();
    for (uint64_t id : locks) NetLock::LiftById(id).IgnoreError();
  }
};

std::shared_ptr<InetState> StateOf(objhash::RestoreContext& ctx) {
  std::any& a = (*ctx.kind_state)["inet"];
  if (!a.has_value()) a = std::make_shared<InetState>();
  return std::any_cast<std::shared_ptr<InetState>>(a);
}

// Waits (5 s at most) for `fd` to be ready for `events`.
absl::Status WaitFor(int fd, short events, const std::string& what, const char* doing) {
  struct pollfd p = {fd, events, 0};
  for (;;) {
    int n = poll(&p, 1, 5000);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, what, ": poll");
    if (n == 0) return absl::DeadlineExceededError(absl::StrCat(what, ": ", doing, " took more than 5 s"));
    return absl::OkStatus();
  }
}

// A client whose connection waited in a backlog: connected to its
// listener (restored by now) for real, and its data sent again.
absl::Status ConnectAgain(const InetState::Pending& p) {
  const int flags = fcntl(p.fd, F_GETFL);
  if (flags < 0 || fcntl(p.fd, F_SETFL, flags | O_NONBLOCK) != 0) return ErrnoError(errno, p.what, ": F_SETFL");
  struct sockaddr_storage ss;
  socklen_t len = ToSockaddr(p.rec.family, p.rec.dst_addr, p.rec.dst_port, &ss);
  absl::Status st;
  if (connect(p.fd, reinterpret_cast<struct sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS) {
    st = ErrnoError(errno, p.what, ": connecting again to its listener");
  }
  if (st.ok()) st = WaitFor(p.fd, POLLOUT, p.what, "connecting again to its listener");
  if (st.ok()) {
    int err = 0;
    socklen_t el = sizeof(err);
    getsockopt(p.fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0) st = ErrnoError(err, p.what, ": connecting again to its listener");
  }
  for (size_t off = 0; st.ok() && off < p.data.size();) {
    ssize_t n = send(p.fd, p.data.data() + off, p.data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EAGAIN) {
      st = WaitFor(p.fd, POLLOUT, p.what, "sending its data again");
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      st = ErrnoError(errno, p.what, ": sending its data again");
      break;
    }
    off += static_cast<size_t>(n);
  }
  if (st.ok() && (p.rec.shutdown & 1) && shutdown(p.fd, SHUT_RD) != 0) st = ErrnoError(errno, p.what, ": shutdown");
  if (fcntl(p.fd, F_SETFL, flags) != 0 && st.ok()) st = ErrnoError(errno, p.what, ": F_SETFL");
  return st;
}

absl::Status InjectFin(const image::ckpt_inet_sock& r, const std::string& what);

// Once every object is made: the locks are lifted, then each connection
// leaves repair mode (with a window probe, so that its peer resends at
// once what it has not had acknowledged).
absl::Status FinishConnections(InetState& st) {
  for (uint64_t id : st.locks) RETURN_IF_ERROR(NetLock::LiftById(id));
  st.locks.clear();
  for (const InetState::Repaired& r : st.repaired) {
    if (setsockopt(r.fd, SOL_TCP, TCP_REPAIR, &kRepairOff, sizeof(kRepairOff)) != 0) {
      return ErrnoError(errno, r.what, ": leaving TCP_REPAIR");
    }
    // Leaving repair mode clears it.
    RETURN_IF_ERROR(SetSockInt(r.fd, SOL_SOCKET, SO_REUSEADDR, (r.rec.flags & image::kInetReuseAddr) ? 1 : 0,
                               "SO_REUSEADDR"));
    if (r.rec.flags & image::kInetFinIn) {
      RETURN_IF_ERROR(InjectFin(r.rec, r.what));
      // Taken (the peer will not send it again): CLOSE_WAIT, within 1 s.
      int state = 0;
      for (int i = 0; i < 100; i++) {
        ASSIGN_OR_RETURN(state, TcpState(r.fd));
        if (state == TCP_CLOSE_WAIT) break;
        poll(nullptr, 0, 10);
      }
      if (state != TCP_CLOSE_WAIT) {
        return absl::InternalError(absl::StrCat(r.what, ": its peer's end (FIN), sent again, was not taken (state ",
                                                TcpStateName(state), ")"));
      }
    }
    if ((r.rec.flags & image::kInetFinOut) && shutdown(r.fd, SHUT_WR) != 0) {
      return ErrnoError(errno, r.what, ": shutdown for sending");
    }
    if ((r.rec.shutdown & 1) && shutdown(r.fd, SHUT_RD) != 0) return ErrnoError(errno, r.what, ": shutdown");
  }
  st.repaired.clear();
  for (const InetState::Pending& p : st.pending) RETURN_IF_ERROR(ConnectAgain(p));
  st.pending.clear();
  return absl::OkStatus();
}

// Whether every TCP socket on `port` (of either family) is one no file
// refers to: a connection closing or in TIME_WAIT that the dumped
// program left behind, which its restored socket may push aside.
bool OnlyOrphansOn(uint16_t port) {
  for (int family : {AF_INET, AF_INET6}) {
    absl::StatusOr<std::vector<InetDiag>> all = DumpInetSockets(family, IPPROTO_TCP);
    if (!all.ok()) return false;
    for (const InetDiag& d : *all) {
      if (d.sport == port && (d.ino != 0 || d.state == TCP_LISTEN)) return false;
    }
  }
  return true;
}

// Binds `fd` to the record's address and, with `backlog` >= 0, listens.
absl::Status Bind(int fd, const image::ckpt_inet_sock& r, const std::string& what, int backlog = -1) {
  struct sockaddr_storage ss;
  socklen_t len = ToSockaddr(r.family, r.src_addr, r.src_port, &ss);
  auto bind_listen = [&]() {
    return bind(fd, reinterpret_cast<struct sockaddr*>(&ss), len) == 0 && (backlog < 0 || listen(fd, backlog) == 0);
  };
  if (bind_listen()) return absl::OkStatus();
  const bool orphans = errno == EADDRINUSE && r.protocol == IPPROTO_TCP && OnlyOrphansOn(r.src_port);
  if (orphans && backlog < 0) {
    // The program's own connections, closed before the restore, hold the
    // port in TIME_WAIT, which a socket without SO_REUSEADDR cannot pass:
    // bound in repair mode, which passes them. (Not a listener: listen()
    // checks the port again, and a listener cannot leave repair mode.)
    int on = kRepairOn;
    if (setsockopt(fd, SOL_TCP, TCP_REPAIR, &on, sizeof(on)) == 0) {
      const bool done = bind_listen();
      const int saved = errno;
      setsockopt(fd, SOL_TCP, TCP_REPAIR, &kRepairOffQuiet, sizeof(kRepairOffQuiet));
      if (done) return absl::OkStatus();
      errno = saved;
    }
  }
  if (errno == EADDRINUSE && orphans) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, ": the address ", InetAddrName(r.family, r.src_addr, r.src_port),
        " is held by closed connections (TIME_WAIT or closing, for a minute at most) that a listener cannot "
        "pass"));
  }
  if (errno == EADDRINUSE) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, ": the address ", InetAddrName(r.family, r.src_addr, r.src_port), " is taken by another socket now"));
  }
  if (errno == EADDRNOTAVAIL) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, ": the address ", InetAddrName(r.family, r.src_addr, r.src_port), " is not on this host now"));
  }
  return ErrnoError(errno, what, backlog < 0 ? ": bind" : ": bind and listen");
}

// An established connection with the same addresses, in another socket:
// the original still open (an image of a tree left running), or another
// one made since.
std::string ConnKey(int family, const uint8_t* src, uint16_t sport, const uint8_t* dst, uint16_t dport) {
  const size_t n = family == AF_INET ? 4 : 16;
  return absl::StrCat(family, "/", std::string(reinterpret_cast<const char*>(src), n), "/", sport, "/",
                      std::string(reinterpret_cast<const char*>(dst), n), "/", dport);
}

absl::Status CheckNoTwin(InetState& st, const image::ckpt_inet_sock& r, const std::string& what) {
  // The connections open when the restore began, listed once.
  auto it = st.open.find(r.family);
  if (it == st.open.end()) {
    ASSIGN_OR_RETURN(std::vector<InetDiag> all, DumpInetSockets(r.family, IPPROTO_TCP));
    std::map<std::string, InetDiag> open;
    for (const InetDiag& d : all) {
      // A socket no file refers to is a closing or TIME_WAIT remnant.
      if (d.ino == 0 || d.state == TCP_LISTEN || d.state == TCP_CLOSE) continue;
      open[ConnKey(d.family, d.src, d.sport, d.dst, d.dport)] = d;
    }
    it = st.open.emplace(r.family, std::move(open)).first;
  }
  auto twin = it->second.find(ConnKey(r.family, r.src_addr, r.src_port, r.dst_addr, r.dst_port));
  if (twin == it->second.end()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      what, ": that connection is open in another socket now (inode ", twin->second.ino, ", ",
      TcpStateName(twin->second.state), "): the process it was dumped from may still run"));
}

absl::Status SendQueue(int fd, int queue, const char* data, size_t len, const std::string& what) {
  if (len == 0) return absl::OkStatus();
  RETURN_IF_ERROR(SetSockInt(fd, SOL_TCP, TCP_REPAIR_QUEUE, queue, "TCP_REPAIR_QUEUE"));
  size_t off = 0;
  while (off < len) {
    ssize_t n = send(fd, data + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return ErrnoError(errno, what, ": filling its ", queue == kRecvQueue ? "receive" : "send", " queue (", off,
                        " of ", len, " bytes)");
    }
    off += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status MakeConnection(InetState& st, int fd, const image::ckpt_inet_sock& r, const std::string& data,
                            const std::string& what) {
  RETURN_IF_ERROR(CheckNoTwin(st, r, what));
  // Room for the queues while they are filled (nothing is acknowledged
  // meanwhile); the recorded sizes are set afterwards.
  const uint64_t room = 2 * (uint64_t{r.sent_len} + r.unsent_len + r.recv_len) + (1u << 20);
  const uint32_t big = static_cast<uint32_t>(std::min<uint64_t>(room, 1u << 30));
  RETURN_IF_ERROR(SetSockBuf(fd, true, std::max(big, r.sndbuf)));
  RETURN_IF_ERROR(SetSockBuf(fd, false, std::max(big, r.rcvbuf)));
  if (setsockopt(fd, SOL_TCP, TCP_REPAIR, &kRepairOn, sizeof(kRepairOn)) != 0) {
    return ErrnoError(errno, what, ": TCP_REPAIR (needs CAP_NET_ADMIN)");
  }
  RETURN_IF_ERROR(SetSockInt(fd, SOL_TCP, TCP_REPAIR_QUEUE, kSendQueue, "TCP_REPAIR_QUEUE"));
  RETURN_IF_ERROR(SetSockInt(fd, SOL_TCP, TCP_QUEUE_SEQ, static_cast<int>(r.snd_seq), "TCP_QUEUE_SEQ"));
  RETURN_IF_ERROR(SetSockInt(fd, SOL_TCP, TCP_REPAIR_QUEUE, kRecvQueue, "TCP_REPAIR_QUEUE"));
  RETURN_IF_ERROR(SetSockInt(fd, SOL_TCP, TCP_QUEUE_SEQ, static_cast<int>(r.rcv_seq), "TCP_QUEUE_SEQ"));
  // In repair mode a bind may share its port with the listener that
  // accepted the connection, and connect sends nothing.
  RETURN_IF_ERROR(Bind(fd, r, what));
  struct sockaddr_storage ss;
  socklen_t len = ToSockaddr(r.family, r.dst_addr, r.dst_port, &ss);
  if (connect(fd, reinterpret_cast<struct sockaddr*>(&ss), len) != 0) return ErrnoError(errno, what, ": connect");
  struct tcp_repair_opt opts[4];
  int n = 0;
  opts[n++] = {TCPOPT_MAXSEG, r.mss};
  if (r.tcp_options & image::kInetTcpWscale) opts[n++] = {TCPOPT_WINDOW, r.snd_wscale + (uint32_t{r.rcv_wscale} << 16)};
  if (r.tcp_options & image::kInetTcpSack) opts[n++] = {TCPOPT_SACK_PERMITTED, 0};
  if (r.tcp_options & image::kInetTcpTimestamps) opts[n++] = {TCPOPT_TIMESTAMP, 0};
  if (setsockopt(fd, SOL_TCP, TCP_REPAIR_OPTIONS, opts, static_cast<socklen_t>(n * sizeof(opts[0]))) != 0) {
    return ErrnoError(errno, what, ": TCP_REPAIR_OPTIONS");
  }
  if (r.tcp_options & image::kInetTcpTimestamps) {
    RETURN_IF_ERROR(SetSockInt(fd, SOL_TCP, TCP_TIMESTAMP, static_cast<int>(r.timestamp), "TCP_TIMESTAMP"));
  }
  const char* at = data.data();
  // Sent but not acknowledged: in repair mode, so that the stack knows it
  // went out (and resends it); never sent: out of repair mode, as new data.
  RETURN_IF_ERROR(SendQueue(fd, kSendQueue, at, r.sent_len, what));
  at += r.sent_len;
  if (r.unsent_len != 0) {
    RETURN_IF_ERROR(SetSockInt(fd, SOL_TCP, TCP_REPAIR, kRepairOffQuiet, "TCP_REPAIR"));
    size_t off = 0;
    while (off < r.unsent_len) {
      ssize_t k = send(fd, at + off, r.unsent_len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) return ErrnoError(errno, what, ": queueing its unsent data");
      off += static_cast<size_t>(k);
    }
    RETURN_IF_ERROR(SetSockInt(fd, SOL_TCP, TCP_REPAIR, kRepairOn, "TCP_REPAIR"));
    at += r.unsent_len;
  }
  RETURN_IF_ERROR(SendQueue(fd, kRecvQueue, at, r.recv_len, what));
  RETURN_IF_ERROR(SetSockInt(fd, SOL_TCP, TCP_REPAIR_QUEUE, kNoQueue, "TCP_REPAIR_QUEUE"));
  RepairWindow w{r.snd_wl1, r.snd_wnd, r.max_window, r.rcv_wnd, r.rcv_wup};
  if (r.flags & image::kInetFinIn) {
    // Its receive side stops short of the peer's FIN until the FIN is
    // sent again: the window may not reach past that yet.
    const uint32_t next = r.rcv_seq + r.recv_len;
    auto after = [](uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) > 0; };
    if (after(w.rcv_wup, next)) w.rcv_wup = next;
    if (after(w.snd_wl1, next + w.rcv_wnd)) w.snd_wl1 = next;
  }
  if (setsockopt(fd, SOL_TCP, TCP_REPAIR_WINDOW, &w, sizeof(w)) != 0) {
    return ErrnoError(errno, what, ": TCP_REPAIR_WINDOW");
  }
  RETURN_IF_ERROR(SetSockBuf(fd, true, r.sndbuf));
  return SetSockBuf(fd, false, r.rcvbuf);
}

uint16_t Checksum(const std::string& pseudo, const char* data, size_t len) {
  uint32_t sum = 0;
  auto add = [&](const unsigned char* p, size_t n) {
    for (size_t i = 0; i + 1 < n; i += 2) sum += (uint32_t{p[i]} << 8) | p[i + 1];
    if (n & 1) sum += uint32_t{p[n - 1]} << 8;
  };
  add(reinterpret_cast<const unsigned char*>(pseudo.data()), pseudo.size());
  add(reinterpret_cast<const unsigned char*>(data), len);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  uint16_t c = static_cast<uint16_t>(~sum);
  return c == 0 ? 0xffff : c;
}

// The datagrams go out on loopback only, whatever the address they are
// for (a multicast one, or one not on this host): never onto a network.
absl::Status OnLoopback(int raw, const std::string& what) {
  if (setsockopt(raw, SOL_SOCKET, SO_BINDTODEVICE, "lo", 2) != 0) {
    return ErrnoError(errno, what, ": binding a raw socket to lo");
  }
  return absl::OkStatus();
}

// Sends `l4` (a UDP or TCP header and its payload) from `from` to `to`,
// both of `family`, through a raw socket on loopback: as if `from` had
// sent it. The checksum at `csum_off` in `l4` is filled in.
absl::Status SendFrom(int family, uint8_t proto, const uint8_t* from, const uint8_t* to, std::string l4,
                      size_t csum_off, const char* doing) {
  if (family == AF_INET) {
    std::string pseudo(12, '\0');
    memcpy(pseudo.data(), from, 4);
    memcpy(pseudo.data() + 4, to, 4);
    pseudo[9] = static_cast<char>(proto);
    const uint16_t l = htons(static_cast<uint16_t>(l4.size()));
    memcpy(pseudo.data() + 10, &l, 2);
    l4[csum_off] = l4[csum_off + 1] = '\0';
    const uint16_t sum = htons(Checksum(pseudo, l4.data(), l4.size()));
    memcpy(l4.data() + csum_off, &sum, 2);
    struct iphdr ip {};
    ip.ihl = 5;
    ip.version = 4;
    ip.ttl = 64;
    ip.protocol = proto;
    memcpy(&ip.saddr, from, 4);
    memcpy(&ip.daddr, to, 4);
    std::string whole(reinterpret_cast<const char*>(&ip), sizeof(ip));
    whole += l4;
    UniqueFd raw(socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW));
    if (!raw.valid()) return ErrnoError(errno, doing, ": a raw socket (needs CAP_NET_RAW)");
    RETURN_IF_ERROR(OnLoopback(raw.get(), doing));
    struct sockaddr_storage ss;
    socklen_t len = ToSockaddr(AF_INET, to, 0, &ss);
    if (sendto(raw.get(), whole.data(), whole.size(), 0, reinterpret_cast<struct sockaddr*>(&ss), len) !=
        static_cast<ssize_t>(whole.size())) {
      return ErrnoError(errno, doing);
    }
    return absl::OkStatus();
  }
  UniqueFd raw(socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, proto));
  if (!raw.valid()) return ErrnoError(errno, doing, ": a raw socket (needs CAP_NET_RAW)");
  RETURN_IF_ERROR(OnLoopback(raw.get(), doing));
  // The kernel fills the checksum in, pseudo-header and all.
  RETURN_IF_ERROR(SetSockInt(raw.get(), SOL_IPV6, IPV6_CHECKSUM, static_cast<int>(csum_off), "IPV6_CHECKSUM"));
  RETURN_IF_ERROR(SetSockInt(raw.get(), SOL_IPV6, IPV6_FREEBIND, 1, "IPV6_FREEBIND"));
  struct sockaddr_storage ss;
  socklen_t len = ToSockaddr(AF_INET6, from, 0, &ss);
  if (bind(raw.get(), reinterpret_cast<struct sockaddr*>(&ss), len) != 0) {
    return ErrnoError(errno, doing, ": binding a raw socket to the sender's address");
  }
  len = ToSockaddr(AF_INET6, to, 0, &ss);
  if (sendto(raw.get(), l4.data(), l4.size(), 0, reinterpret_cast<struct sockaddr*>(&ss), len) !=
      static_cast<ssize_t>(l4.size())) {
    return ErrnoError(errno, doing);
  }
  return absl::OkStatus();
}

// A connection whose peer had ended its side (CLOSE_WAIT, LAST_ACK): the
// peer's FIN, made again and sent to it from the peer's address, at the
// sequence number it had, once the connection is out of repair mode.
absl::Status InjectFin(const image::ckpt_inet_sock& r, const std::string& what) {
  const LockedConn c = WireConn(r);  // as the wire carries it
  std::string tcp(sizeof(struct tcphdr), '\0');
  struct tcphdr th {};
  th.source = htons(r.dst_port);
  th.dest = htons(r.src_port);
  th.seq = htonl(r.rcv_seq + r.recv_len);
  th.ack_seq = htonl(r.snd_seq);  // what it has not had acknowledged: a duplicate ack at most
  th.doff = sizeof(struct tcphdr) / 4;
  th.fin = 1;
  th.ack = 1;
  th.window = htons(static_cast<uint16_t>(std::min<uint32_t>(r.snd_wnd >> r.snd_wscale, 65535)));
  memcpy(tcp.data(), &th, sizeof(th));
  return WithWho(SendFrom(c.family, IPPROTO_TCP, c.dst, c.src, std::move(tcp), offsetof(struct tcphdr, check),
                          "sending its peer's end (FIN) again"),
                 what);
}

// Sends one datagram to the restored socket as its sender sent it: from
// the sender's address and port, through a raw socket.
absl::Status Redeliver(const image::ckpt_inet_sock& r, const image::ckpt_inet_dgram& d, const char* data,
                       const uint8_t* to_addr, int to_family, const std::string& what) {
  const uint8_t proto = static_cast<uint8_t>(r.protocol);
  uint8_t from[16] = {};
  int family = d.family;
  memcpy(from, d.addr, 16);
  if (family == AF_INET6 && IsV4Mapped(from) && to_family == AF_INET) {
    family = AF_INET;
    memmove(from, from + 12, 4);
  }
  if (family != to_family) {
    return absl::InternalError(absl::StrCat(what, ": a queued datagram's sender is of another family"));
  }
  std::string pkt(sizeof(struct udphdr) + d.len, '\0');
  struct udphdr uh {};
  uh.source = htons(d.port);
  uh.dest = htons(r.src_port);
  uh.len = proto == IPPROTO_UDPLITE ? 0 : htons(static_cast<uint16_t>(pkt.size()));  // UDP-Lite: coverage, 0 = all
  memcpy(pkt.data(), &uh, sizeof(uh));
  memcpy(pkt.data() + sizeof(uh), data, d.len);
  return WithWho(SendFrom(family, proto, from, to_addr, std::move(pkt), offsetof(struct udphdr, check),
                          "queueing a datagram again"),
                 what);
}

// How many datagrams `fd` holds (peeked, one a peek).
absl::StatusOr<uint32_t> CountDatagrams(int fd) {
  RETURN_IF_ERROR(SetSockInt(fd, SOL_SOCKET, SO_PEEK_OFF, 0, "SO_PEEK_OFF"));
  std::vector<char> buf(kMaxDgram + 1);
  uint32_t n = 0;
  while (recv(fd, buf.data(), buf.size(), MSG_PEEK | MSG_DONTWAIT) >= 0) n++;
  RETURN_IF_ERROR(SetSockInt(fd, SOL_SOCKET, SO_PEEK_OFF, -1, "SO_PEEK_OFF"));
  return n;
}

absl::Status RefillDatagrams(int fd, const image::ckpt_inet_sock& r, const std::string& data,
                             const std::string& what) {
  if (r.nr_dgrams == 0) return absl::OkStatus();
  // Where they go: the address it is bound to, or loopback.
  struct sockaddr_storage ss {};
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&ss), &len) != 0) return ErrnoError(errno, "getsockname");
  uint8_t bound[16] = {};
  uint16_t port = 0;
  FromSockaddr(ss, r.family, bound, &port);
  size_t off = 0;
  for (uint32_t i = 0; i < r.nr_dgrams; i++) {
    image::ckpt_inet_dgram d;
    memcpy(&d, data.data() + off, sizeof(d));
    const char* bytes = data.data() + off + sizeof(d);
    off += (sizeof(d) + d.len + 7) & ~size_t{7};
    uint8_t to[16] = {};
    int to_family = r.family;
    const bool v4_sender = d.family == AF_INET || (d.family == AF_INET6 && IsV4Mapped(d.addr) && r.family == AF_INET6 &&
                                                   !(r.flags & image::kInetV6Only));
    if (r.family == AF_INET6 && v4_sender && (IsAny(AF_INET6, bound) || IsV4Mapped(bound))) {
      to_family = AF_INET;
      if (IsV4Mapped(bound)) {
        memcpy(to, bound + 12, 4);
      } else {
        to[0] = 127, to[3] = 1;
      }
    } else if (IsAny(r.family, bound)) {
      if (r.family == AF_INET) {
        to[0] = 127, to[3] = 1;
      } else {
        to[15] = 1;
      }
    } else {
      memcpy(to, bound, 16);
    }
    RETURN_IF_ERROR(Redeliver(r, d, bytes, to, to_family, what));
  }
  // Loopback delivers within the send, nearly always; wait a little for
  // the rest.
  for (int tries = 0;; tries++) {
    ASSIGN_OR_RETURN(uint32_t have, CountDatagrams(fd));
    if (have == r.nr_dgrams) return absl::OkStatus();
    if (have > r.nr_dgrams || tries == 100) {
      return absl::InternalError(absl::StrCat(what, ": ", have, " of its ", r.nr_dgrams,
                                              " datagrams arrived when queued again"));
    }
    poll(nullptr, 0, 10);
  }
}

absl::Status SetOptions(int fd, const image::ckpt_inet_sock& r) {
  const bool tcp = r.protocol == IPPROTO_TCP;
  if (r.flags & image::kInetKeepAlive) RETURN_IF_ERROR(SetSockInt(fd, SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE"));
  if (r.flags & image::kInetOobInline) RETURN_IF_ERROR(SetSockInt(fd, SOL_SOCKET, SO_OOBINLINE, 1, "SO_OOBINLINE"));
  if (r.flags & image::kInetBroadcast) RETURN_IF_ERROR(SetSockInt(fd, SOL_SOCKET, SO_BROADCAST, 1, "SO_BROADCAST"));
  if (r.flags & image::kInetLinger) {
    struct linger lg = {1, r.linger};
    if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) != 0) return ErrnoError(errno, "setsockopt SO_LINGER");
  }
  if (r.rcvlowat != 1) RETURN_IF_ERROR(SetSockInt(fd, SOL_SOCKET, SO_RCVLOWAT, r.rcvlowat, "SO_RCVLOWAT"));
  RETURN_IF_ERROR(SetSockTimeo(fd, SO_RCVTIMEO, r.rcvtimeo_ns, "SO_RCVTIMEO"));
  RETURN_IF_ERROR(SetSockTimeo(fd, SO_SNDTIMEO, r.sndtimeo_ns, "SO_SNDTIMEO"));
  if (r.family == AF_INET) {
    if (r.tos != 0) RETURN_IF_ERROR(SetSockInt(fd, SOL_IP, IP_TOS, r.tos, "IP_TOS"));
    if (r.ttl != -1) RETURN_IF_ERROR(SetSockInt(fd, SOL_IP, IP_TTL, r.ttl, "IP_TTL"));
  } else {
    if (r.tos != 0) RETURN_IF_ERROR(SetSockInt(fd, SOL_IPV6, IPV6_TCLASS, r.tos, "IPV6_TCLASS"));
    if (r.ttl != -1) RETURN_IF_ERROR(SetSockInt(fd, SOL_IPV6, IPV6_UNICAST_HOPS, r.ttl, "IPV6_UNICAST_HOPS"));
  }
  // After IP_TOS, which sets a priority of its own.
  if (r.priority != 0) RETURN_IF_ERROR(SetSockInt(fd, SOL_SOCKET, SO_PRIORITY, r.priority, "SO_PRIORITY"));
  if (!tcp) return absl::OkStatus();
  if (r.flags & image::kInetNoDelay) RETURN_IF_ERROR(SetSockInt(fd, SOL_TCP, TCP_NODELAY, 1, "TCP_NODELAY"));
  if (r.flags & image::kInetCork) RETURN_IF_ERROR(SetSockInt(fd, SOL_TCP, TCP_CORK, 1, "TCP_CORK"));
  if (r.keepidle) RETURN_IF_ERROR(SetSockInt(fd, SOL_TCP, TCP_KEEPIDLE, static_cast<int>(r.keepidle), "TCP_KEEPIDLE"));
  if (r.keepintvl) RETURN_IF_ERROR(SetSockInt(fd, SOL_TCP, TCP_KEEPINTVL, static_cast<int>(r.keepintvl), "TCP_KEEPINTVL"));
  if (r.keepcnt) RETURN_IF_ERROR(SetSockInt(fd, SOL_TCP, TCP_KEEPCNT, static_cast<int>(r.keepcnt), "TCP_KEEPCNT"));
  RETURN_IF_ERROR(SetSockInt(fd, SOL_TCP, TCP_USER_TIMEOUT, static_cast<int>(r.user_timeout), "TCP_USER_TIMEOUT"));
  char now[16] = {};
  socklen_t len = sizeof(now);
  if (r.congestion[0] != '\0' && getsockopt(fd, SOL_TCP, TCP_CONGESTION, now, &len) == 0 &&
      strncmp(now, r.congestion, sizeof(now)) != 0 &&
      setsockopt(fd, SOL_TCP, TCP_CONGESTION, r.congestion, static_cast<socklen_t>(strlen(r.congestion))) != 0) {
    return ErrnoError(errno, "setsockopt TCP_CONGESTION ", r.congestion);
  }
  return absl::OkStatus();
}

absl::Status CheckRecord(const image::Reader& rd, const image::ckpt_inet_sock& r) {
  if (r.family != AF_INET && r.family != AF_INET6) return rd.FieldError("family", r.family, " is not AF_INET or AF_INET6");
  const bool tcp = r.type == SOCK_STREAM && r.protocol == IPPROTO_TCP;
  const bool udp = r.type == SOCK_DGRAM && (r.protocol == IPPROTO_UDP || r.protocol == IPPROTO_UDPLITE);
  const bool portless = PortLess(r.type, r.protocol);
  if (!tcp && !udp && !portless) {
    return rd.FieldError("protocol", r.protocol, " with type ", r.type, " is not TCP, UDP, ICMP (ping) or raw");
  }
  if (r.type == SOCK_RAW && (r.protocol == 0 || r.protocol > 255)) return rd.FieldError("protocol", r.protocol);
  if (portless && r.family == AF_INET && r.protocol == IPPROTO_ICMPV6) {
    return rd.FieldError("protocol", r.protocol, ": ICMPv6 on IPv4");
  }
  if (portless && (r.nr_dgrams != 0 || r.data_size != 0)) {
    return rd.FieldError("nr_dgrams", r.nr_dgrams, ": a raw or ping socket keeps no queued packets");
  }
  if (r.type == SOCK_RAW && (!(r.flags & image::kInetBound) || r.src_port != r.protocol)) {
    return rd.FieldError("src_port", r.src_port, ": a raw socket's is its protocol");
  }
  if (r.state > image::kInetEstablished) return rd.FieldError("state", r.state, " is not a socket state");
  if (!tcp && r.state == image::kInetListening) return rd.FieldError("state", r.state, ": only TCP listens");
  if (r.flags & ~image::kInetKnownFlags) return rd.FieldError("flags", r.flags, " has unknown bits");
  if (r.shutdown & ~3u) return rd.FieldError("shutdown", r.shutdown, " has unknown bits");
  if (tcp && (r.shutdown & 2)) return rd.FieldError("shutdown", r.shutdown, ": a TCP socket shut down for sending");
  if (tcp && r.state != image::kInetEstablished && r.shutdown) {
    return rd.FieldError("shutdown", r.shutdown, " does not fit the socket's state");
  }
  if (r.family == AF_INET && (r.flags & image::kInetV6Only)) return rd.FieldError("flags", r.flags, ": IPV6_V6ONLY on IPv4");
  if (r.type == SOCK_RAW && (r.flags & image::kInetV6Only)) return rd.FieldError("flags", r.flags, ": IPV6_V6ONLY on a raw socket");
  if (r.family == AF_INET) {
    static const uint8_t kZero[12] = {};
    if (memcmp(r.src_addr + 4, kZero, 12) != 0 || memcmp(r.dst_addr + 4, kZero, 12) != 0) {
      return rd.FieldError("src_addr", "an IPv4 address is 4 bytes");
    }
  }
  if (((r.flags & image::kInetBound) != 0) != (r.src_port != 0)) {
    return rd.FieldError("src_port", r.src_port, " does not fit flags ", r.flags);
  }
  const bool connected = r.state == image::kInetEstablished;
  if (portless ? r.dst_port != 0
               : (connected != (r.dst_port != 0) || (connected && !(r.flags & image::kInetBound)))) {
    return rd.FieldError("dst_port", r.dst_port, " does not fit the socket's state");
  }
  if (r.state == image::kInetListening && (r.src_port == 0 || r.backlog > 65535)) {
    return rd.FieldError("backlog", r.backlog, " does not fit a listening socket");
  }
  if (r.state != image::kInetListening && r.backlog != 0) return rd.FieldError("backlog", r.backlog, " is not zero");
  if (r.rcvtimeo_ns < 0 || r.rcvtimeo_ns > image::kMaxDurationNs) return rd.FieldError("rcvtimeo_ns", r.rcvtimeo_ns);
  if (r.sndtimeo_ns < 0 || r.sndtimeo_ns > image::kMaxDurationNs) return rd.FieldError("sndtimeo_ns", r.sndtimeo_ns);
  if (r.rcvlowat < 1) return rd.FieldError("rcvlowat", r.rcvlowat);
  if (r.linger < 0 || (!(r.flags & image::kInetLinger) && r.linger != 0)) return rd.FieldError("linger", r.linger);
  if (r.ttl < -1 || r.ttl > 255) return rd.FieldError("ttl", r.ttl);
  if (r.tos < 0 || r.tos > 255) return rd.FieldError("tos", r.tos);
  if (memchr(r.congestion, '\0', sizeof(r.congestion)) == nullptr) return rd.FieldError("congestion", "is not terminated");
  if (memchr(r.bind_dev, '\0', sizeof(r.bind_dev)) == nullptr) return rd.FieldError("bind_dev", "is not terminated");
  if (r.nr_filter > kMaxFilterInsns) return rd.FieldError("nr_filter", r.nr_filter, " is more than a filter holds");
  if (((r.flags & image::kInetFilterLocked) != 0) && r.nr_filter == 0) {
    return rd.FieldError("flags", r.flags, ": a locked filter without a filter");
  }
  const bool pending = r.flags & image::kInetPending;
  if (pending && !(tcp && connected)) return rd.FieldError("flags", r.flags, ": only a TCP connection waits in a backlog");
  const bool repaired = tcp && connected && !pending;
  if ((r.flags & (image::kInetFinIn | image::kInetFinOut)) && !repaired) {
    return rd.FieldError("flags", r.flags, ": only a TCP connection has ended sides");
  }
  if ((r.flags & image::kInetFinOut) && (r.sent_len || r.unsent_len || (r.shutdown & 2))) {
    return rd.FieldError("flags", r.flags, ": a connection that ended its side has nothing left to send");
  }
  if (pending && (r.sent_len || r.recv_len || r.unsent_len != r.data_size)) {
    return rd.FieldError("unsent_len", r.unsent_len, ": a connection waiting in a backlog has only data to send");
  }
  if (!repaired && (r.snd_seq || r.rcv_seq || r.sent_len || r.recv_len || r.mss || r.tcp_options ||
                    r.snd_wscale || r.rcv_wscale || r.timestamp || r.snd_wl1 || r.snd_wnd ||
                    r.max_window || r.rcv_wnd || r.rcv_wup || (r.unsent_len && !pending))) {
    return rd.FieldError("snd_seq", r.snd_seq, ": only an established TCP connection has a TCP state");
  }
  if (repaired) {
    if (r.tcp_options & ~7u) return rd.FieldError("tcp_options", r.tcp_options, " has unknown bits");
    if (r.mss == 0 || r.mss > 65535) return rd.FieldError("mss", r.mss);
    if (r.snd_wscale > 14 || r.rcv_wscale > 14 ||
        (!(r.tcp_options & image::kInetTcpWscale) && (r.snd_wscale || r.rcv_wscale))) {
      return rd.FieldError("snd_wscale", r.snd_wscale, " does not fit tcp_options ", r.tcp_options);
    }
    if (uint64_t{r.sent_len} + r.unsent_len + r.recv_len != r.data_size) {
      return rd.FieldError("data_size", r.data_size, " is not the sum of its queues");
    }
  }
  if (tcp && r.nr_dgrams != 0) return rd.FieldError("nr_dgrams", r.nr_dgrams, ": a TCP socket has no datagrams");
  if (tcp && !repaired && !pending && r.data_size != 0) return rd.FieldError("data_size", r.data_size, " is not zero");
  if (udp && r.nr_dgrams > image::kMaxInetDgrams) return rd.FieldError("nr_dgrams", r.nr_dgrams);
  if (r.data_size > image::kMaxInetQueueData + uint64_t{r.nr_dgrams} * kMaxDgramOverhead) {
    return rd.FieldError("data_size", r.data_size, " is more than an image holds");
  }
  if (uint64_t{r.nr_filter} * sizeof(struct sock_filter) + r.data_size != rd.payload_remaining()) {
    return rd.FieldError("data_size", r.data_size, " does not fit the record (", rd.payload_remaining(),
                         " bytes left)");
  }
  if (r.peek_off < -1) return rd.FieldError("peek_off", r.peek_off);
  // What getsockopt gives is twice what was asked; the sysctl limits are
  // far below this.
  constexpr uint32_t kMaxBuf = 1u << 28;
  if (r.sndbuf > kMaxBuf) return rd.FieldError("sndbuf", r.sndbuf, " is out of range");
  if (r.rcvbuf > kMaxBuf) return rd.FieldError("rcvbuf", r.rcvbuf, " is out of range");
  for (const char* c = r.congestion; *c != '\0'; c++) {
    // The kernel loads module tcp_<name> for a name it does not know.
    if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_')) {
      return rd.FieldError("congestion", "'", r.congestion, "' is not a congestion control's name");
    }
  }
  return absl::OkStatus();
}

// The datagrams of a UDP record are whole and fit it.
absl::Status CheckDatagrams(const image::Reader& rd, const image::ckpt_inet_sock& r, const std::string& data) {
  size_t off = 0;
  for (uint32_t i = 0; i < r.nr_dgrams; i++) {
    if (data.size() - off < sizeof(image::ckpt_inet_dgram)) {
      return rd.FieldError("nr_dgrams", r.nr_dgrams, " is more than the record holds");
    }
    image::ckpt_inet_dgram d;
    memcpy(&d, data.data() + off, sizeof(d));
    if (d.len > kMaxDgram - sizeof(struct udphdr) || d.len > data.size() - off - sizeof(d)) {
      return rd.FieldError("len", d.len, " of datagram ", i, " does not fit the record");
    }
    if (d.family != AF_INET && d.family != AF_INET6) return rd.FieldError("family", d.family, " of datagram ", i);
    if (d.family != r.family) {
      return rd.FieldError("family", d.family, " of datagram ", i, " is not the socket's");
    }
    off += (sizeof(d) + d.len + 7) & ~size_t{7};
    if (off > data.size()) return rd.FieldError("len", d.len, " of datagram ", i, " does not fit the record");
  }
  if (off != data.size()) return rd.FieldError("data_size", r.data_size, " does not match its datagrams");
  return absl::OkStatus();
}

// A restore that failed before this record: its network lock is lifted
// all the same (once), so that the peers and new clients see what they
// would have without the dump (resets, refusals), not silence.
void AbandonInet(image::Reader& rd, const image::Record&, std::any& state) {
  image::ckpt_inet_sock r;
  if (!rd.ReadStruct(&r, sizeof(r)).ok() || r.lock_id == 0) return;
  if (!state.has_value()) state = std::set<uint64_t>();
  auto& lifted = std::any_cast<std::set<uint64_t>&>(state);
  if (lifted.insert(r.lock_id).second) NetLock::LiftById(r.lock_id).IgnoreError();
}

absl::StatusOr<objhash::RestoredObject> RestoreInet(objhash::RestoreContext& ctx, const image::Record&) {
  image::Reader& rd = *ctx.reader;
  image::ckpt_inet_sock r;
  RETURN_IF_ERROR(rd.ReadStruct(&r, sizeof(r)));
  std::shared_ptr<InetState> st = StateOf(ctx);
  // Lifted at the end, whatever happens from here.
  if (r.lock_id != 0) st->locks.insert(r.lock_id);
  RETURN_IF_ERROR(CheckRecord(rd, r));
  SockFilter filter;
  filter.insns.resize(r.nr_filter);
  RETURN_IF_ERROR(rd.ReadPayload(filter.insns.data(), filter.insns.size() * sizeof(struct sock_filter)));
  filter.locked = r.flags & image::kInetFilterLocked;
  std::string data(r.data_size, '\0');
  RETURN_IF_ERROR(rd.ReadPayload(data.data(), data.size()));
  if (r.protocol != IPPROTO_TCP) RETURN_IF_ERROR(CheckDatagrams(rd, r, data));
  std::vector<image::ckpt_sockopt> opts;
  if (r.flags & image::kInetMoreOptions) {
    ASSIGN_OR_RETURN(opts, ReadInetOptionsRecord(rd, r.objref, r.family, r.type, static_cast<int>(r.protocol)));
  }
  if (r.protocol == IPPROTO_TCP && r.state == image::kInetEstablished) {
    // These bear on a connect() only, and would make the connection's own
    // (in repair mode, or again for real) defer its handshake.
    std::erase_if(opts, [](const image::ckpt_sockopt& o) {
      return o.level == SOL_TCP && (o.name == 30 || o.name == 34);  // TCP_FASTOPEN_CONNECT, _NO_COOKIE
    });
  }
  const std::string what = absl::StrCat(SockName(r), " (socket:[", r.ino, "])");

  UniqueFd sock(socket(r.family, r.type | SOCK_CLOEXEC, static_cast<int>(r.protocol)));
  if (!sock.valid()) return ErrnoError(errno, what, ": socket");
  const int fd = sock.get();
  // What binding depends on, first.
  // (Not for a raw socket, which refuses it: it has no IPv4 side.)
  if (r.family == AF_INET6 && r.type != SOCK_RAW) {
    RETURN_IF_ERROR(SetSockInt(fd, SOL_IPV6, IPV6_V6ONLY, (r.flags & image::kInetV6Only) ? 1 : 0, "IPV6_V6ONLY"));
  }
  if (r.flags & image::kInetReusePort) RETURN_IF_ERROR(SetSockInt(fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT"));
  // Some of these (IP_TRANSPARENT, IP_BIND_ADDRESS_NO_PORT) bear on the bind.
  RETURN_IF_ERROR(Annotate(SetInetOptions(fd, opts), what));
  if (r.flags & image::kInetFreebind) {
    RETURN_IF_ERROR(r.family == AF_INET ? SetSockInt(fd, SOL_IP, IP_FREEBIND, 1, "IP_FREEBIND")
                                        : SetSockInt(fd, SOL_IPV6, IPV6_FREEBIND, 1, "IPV6_FREEBIND"));
  }
  if (r.bind_dev[0] != '\0' &&
      setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, r.bind_dev, static_cast<socklen_t>(strlen(r.bind_dev))) != 0) {
    return ErrnoError(errno, what, ": SO_BINDTODEVICE ", r.bind_dev);
  }
  if (r.mark != 0) RETURN_IF_ERROR(SetSockInt(fd, SOL_SOCKET, SO_MARK, static_cast<int>(r.mark), "SO_MARK"));
  RETURN_IF_ERROR(SetSockBuf(fd, false, r.rcvbuf));
  RETURN_IF_ERROR(SetSockBuf(fd, true, r.sndbuf));
  const bool repaired = r.protocol == IPPROTO_TCP && r.state == image::kInetEstablished;
  const bool pending = r.flags & image::kInetPending;
  if (repaired && !pending) {
    int guard = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (guard < 0) return ErrnoError(errno, what, ": dup");
    st->guards.emplace_back(guard);
    if (st->guards.size() == 1) {
      RETURN_IF_ERROR(ctx.AtCommit([st] { st->committed = true; }));
    }
    RETURN_IF_ERROR(WithWho(MakeConnection(*st, fd, r, data, what), what));
  } else if (r.flags & image::kInetBound) {
    // Connections of a listener that was killed may linger in TIME_WAIT:
    // SO_REUSEADDR lets the bind pass them (a live socket on the address
    // still fails it), then takes the value it had.
    RETURN_IF_ERROR(SetSockInt(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR"));
    RETURN_IF_ERROR(Bind(fd, r, what, r.state == image::kInetListening ? static_cast<int>(r.backlog) : -1));
  }
  RETURN_IF_ERROR(SetSockInt(fd, SOL_SOCKET, SO_REUSEADDR, (r.flags & image::kInetReuseAddr) ? 1 : 0, "SO_REUSEADDR"));
  if (r.protocol != IPPROTO_TCP) {
    RETURN_IF_ERROR(WithWho(RefillDatagrams(fd, r, data, what), what));
    if (r.state == image::kInetEstablished) {
      struct sockaddr_storage ss;
      socklen_t len = ToSockaddr(r.family, r.dst_addr, r.dst_port, &ss);
      if (connect(fd, reinterpret_cast<struct sockaddr*>(&ss), len) != 0) return ErrnoError(errno, what, ": connect");
    }
    const int how = r.shutdown == 3 ? SHUT_RDWR : r.shutdown == 2 ? SHUT_WR : SHUT_RD;
    // An unconnected one says ENOTCONN, and is shut down all the same.
    if (r.shutdown != 0 && shutdown(fd, how) != 0 && errno != ENOTCONN) return ErrnoError(errno, what, ": shutdown");
  }
  RETURN_IF_ERROR(Annotate(SetOptions(fd, r), what));
  RETURN_IF_ERROR(Annotate(SetSockFilter(fd, filter), what));
  if (r.peek_off != -1) RETURN_IF_ERROR(Annotate(SetSockInt(fd, SOL_SOCKET, SO_PEEK_OFF, r.peek_off, "SO_PEEK_OFF"), what));
  ASSIGN_OR_RETURN(objhash::RestoredObject obj, objhash::HoldAt(ctx, r.objref, fd, what));
  if (pending) {
    st->pending.push_back({obj.fd, r, std::move(data), what});
  } else if (repaired) {
    st->repaired.push_back({obj.fd, r, what});
  }
  // The late step lifts the network lock once every object is made,
  // before the tree runs: a listener's too (a lazy restore runs for long
  // before it ends, and new clients must get in).
  if (repaired || r.lock_id != 0) {
    if (!st->step_left) {
      st->step_left = true;
      RETURN_IF_ERROR(ctx.Later([st](objhash::LateContext&) { return FinishConnections(*st); }));
    }
  }
  return obj;
}

// ------------------------------------------------------- the inet fd kind

absl::StatusOr<UniqueFd> OpenInet(objhash::RestoreContext&, const image::ckpt_file& rec, const std::string& path,
                                  const objhash::RestoredObject* sock) {
  int fd = fcntl(sock->fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return ErrnoError(errno, "dup of ", path);
  UniqueFd out(fd);
  constexpr int kStatusFlags = O_NONBLOCK | O_APPEND;
  if (fcntl(fd, F_SETFL, static_cast<int>(rec.flags) & kStatusFlags) != 0) return ErrnoError(errno, "F_SETFL on ", path);
  return out;
}

absl::Status CheckInet(objhash::RestoreContext&, const image::ckpt_file& rec, const std::string& path, int,
                       const struct stat& st) {
  return CheckFileType(rec, path, st);
}

const FdKindOps kInetKind = {
    .name = "inet socket",
    .file_kind = image::kFileInetSocket,
    .order = 24,
    .file_type = S_IFSOCK,
    .seekable = false,
    .by_path = false,
    .has_target = true,
    .target_kind = kObjInet,
    .claims = ClaimsInet,
    .describe = DescribeInet,
    .register_target = RegisterInetTarget,
    .open = OpenInet,
    .check = CheckInet,
};

[[maybe_unused]] const bool kRegistered =
    RegisterFdKind(&kInetKind) &&
    objhash::RegisterHandler({kObjInet, "INET_SOCK", image::CKPT_HDR_INET_SOCK, CheckpointInet, RestoreInet,
                              {}, AbandonInet});

}  // namespace

namespace {

bool SameAddr(int family, const uint8_t* a, const uint8_t* b) { return memcmp(a, b, family == AF_INET ? 4 : 16) == 0; }

// The connection `d` waiting in `listener`'s backlog, by its client's end
// among the tree's sockets; null if its client is not one of them.
// An address as the wire carries it: an IPv4-mapped one as IPv4.
std::string Canon(int family, const uint8_t* a) {
  if (family == AF_INET6 && IsV4Mapped(a)) return std::string(reinterpret_cast<const char*>(a) + 12, 4);
  return std::string(reinterpret_cast<const char*>(a), family == AF_INET ? 4 : 16);
}

InetInfo* ClientOf(objhash::ObjHash& objects, const InetDiag& d) {
  for (const auto& e : objects.entries()) {
    if (e->kind != kObjInet) continue;
    auto& c = std::any_cast<InetInfo&>(e->data);
    const image::ckpt_inet_sock& r = c.rec;
    if (r.protocol == IPPROTO_TCP && r.state == image::kInetEstablished && !(r.flags & image::kInetPending) &&
        r.src_port == d.dport && r.dst_port == d.sport && Canon(r.family, r.src_addr) == Canon(d.family, d.dst) &&
        Canon(r.family, r.dst_addr) == Canon(d.family, d.src)) {
      return &c;
    }
  }
  return nullptr;
}

// Reads the bytes waiting on a connection that `listener` has not
// accepted yet: only by accepting them all. Each accepted one is put in
// repair mode and closed, which sends nothing (the lock holds its client
// meanwhile). Returns the bytes by (client port, client address).
absl::Status TakeBacklog(InetInfo& listener, uint32_t n, std::map<std::string, std::string>* data,
                         const std::string& who) {
  const int l = listener.held->copy.get();
  for (uint32_t i = 0; i < n; i++) {
    struct sockaddr_storage ss {};
    socklen_t len = sizeof(ss);
    UniqueFd c(accept4(l, reinterpret_cast<struct sockaddr*>(&ss), &len, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!c.valid()) return ErrnoError(errno, who, ": accepting a connection of its backlog to read it");
    if (setsockopt(c.get(), SOL_TCP, TCP_REPAIR, &kRepairOn, sizeof(kRepairOn)) != 0) {
      return ErrnoError(errno, who, ": TCP_REPAIR on a connection of its backlog");
    }
    uint8_t addr[16] = {};
    uint16_t port = 0;
    FromSockaddr(ss, listener.rec.family, addr, &port);
    const std::string key = Canon(listener.rec.family, addr) + std::to_string(port);
    int inq = 0;
    if (ioctl(c.get(), SIOCINQ, &inq) != 0) return ErrnoError(errno, "SIOCINQ");
    RETURN_IF_ERROR(SetSockInt(c.get(), SOL_TCP, TCP_REPAIR_QUEUE, kRecvQueue, "TCP_REPAIR_QUEUE"));
    ASSIGN_OR_RETURN((*data)[key], PeekQueue(c.get(), static_cast<uint32_t>(inq), "receive"));
  }
  return absl::OkStatus();
}

}  // namespace

namespace {

// "task 12 fd 3 (tcp 127.0.0.1:80)", or the socket's name for one in flight.
std::string Label(const InetInfo& s) {
  if (s.pid == getpid()) return absl::StrCat("socket:[", s.rec.ino, "] (in flight, ", SockName(s.rec), ")");
  return absl::StrCat("task ", s.pid, " fd ", s.fd, " (", SockName(s.rec), ")");
}

// Of the sockets `who` names by inode, those a process outside `tree` also
// holds: a problem each.
std::vector<std::string> HeldOutside(const std::map<uint64_t, std::string>& who, const std::set<pid_t>& tree) {
  std::set<uint64_t> inos;
  for (const auto& [ino, name] : who) inos.insert(ino);
  std::vector<std::string> problems;
  for (const auto& [ino, holders] : FdHolders("socket", inos, tree)) {
    const auto& [pid, fd] = holders.front();
    problems.push_back(absl::StrCat(who.at(ino), " is also held by process ", pid, " (", ProcComm(pid), ") fd ", fd,
                                    ", outside the tree: a TCP or UDP socket shared with a process outside the "
                                    "tree is not supported yet"));
  }
  return problems;
}

}  // namespace

std::vector<std::string> InetPreflightProblems(const std::map<uint64_t, PipeEnd>& socks, const std::set<pid_t>& tree) {
  std::vector<std::string> problems;
  std::map<uint64_t, std::string> inet;
  for (const auto& [ino, end] : socks) {
    absl::StatusOr<UniqueFd> copy = CopyOfFd(end.pid, end.fd);
    if (!copy.ok()) continue;
    absl::StatusOr<Kind> k = KindOf(copy->get());
    if (!k.ok() || (k->family != AF_INET && k->family != AF_INET6)) continue;
    const std::string who = absl::StrCat("task ", end.pid, " fd ", end.fd, ": socket:[", ino, "]");
    inet[ino] = who;
    char urgent;
    absl::StatusOr<int> state = k->protocol == IPPROTO_TCP ? TcpState(copy->get()) : absl::StatusOr<int>(0);
    if (state.ok() && (*state == TCP_ESTABLISHED || HalfClosed(*state)) &&
        recv(copy->get(), &urgent, 1, MSG_OOB | MSG_PEEK | MSG_DONTWAIT) == 1) {
      problems.push_back(absl::StrCat(who, ": an urgent byte (MSG_OOB) waits to be read: not supported"));
    }
  }
  for (std::string& p : HeldOutside(inet, tree)) problems.push_back(std::move(p));
  return problems;
}

absl::Status ResolveInetSockets(objhash::ObjHash& objects, const std::set<pid_t>& tree, uint32_t dump_flags) {
  // Sockets held outside the tree too: refused before any is touched.
  std::map<uint64_t, std::string> socks;
  for (const auto& e : objects.entries()) {
    if (e->kind == kObjInet) {
      const auto& s = std::any_cast<const InetInfo&>(e->data);
      socks[s.rec.ino] = Label(s);
    }
  }
  std::vector<std::string> problems = HeldOutside(socks, tree);
  if (!problems.empty()) return absl::UnimplementedError(absl::StrJoin(problems, "; "));
  // Connections, under the lock and in repair mode. (Reading the first
  // adds the lock to `objects`: the list is taken first.)
  std::vector<InetInfo*> connections;
  for (const auto& e : objects.entries()) {
    if (e->kind == kObjInet && std::any_cast<InetInfo&>(e->data).connection) {
      connections.push_back(&std::any_cast<InetInfo&>(e->data));
    }
  }
  if (!connections.empty()) {
    std::shared_ptr<NetLock> lock = DumpLock(objects);
    if (lock == nullptr) return absl::InternalError("no network lock");
    std::vector<LockedConn> conns;
    for (InetInfo* c : connections) conns.push_back(WireConn(c->rec));
    RETURN_IF_ERROR(lock->Add(conns));
  }
  for (InetInfo* c : connections) {
    RETURN_IF_ERROR(WithWho(ReadConnection(objects, *c, c->who, dump_flags & objhash::kDumpLeaveRunning), c->who));
  }
  // Backlogs: each connection waiting in one is made again by its client
  // (a socket of the tree) once the listener is back.
  for (const auto& e : objects.entries()) {
    if (e->kind != kObjInet) continue;
    auto& l = std::any_cast<InetInfo&>(e->data);
    // Looked at afresh (its SYNs are held off by now), whatever the
    // listing at its registration said.
    if (l.rec.protocol != IPPROTO_TCP || l.rec.state != image::kInetListening) continue;
    const std::string who = Label(l);
    ASSIGN_OR_RETURN(std::vector<InetDiag> all, DumpInetSockets(l.rec.family, IPPROTO_TCP));
    std::vector<std::pair<InetDiag, InetInfo*>> waiting;
    bool data = false;
    uint32_t seen = 0, queued = 0;
    for (const InetDiag& d : all) {
      if (d.ino == l.rec.ino && d.state == TCP_LISTEN) queued = d.rqueue;
    }
    for (const InetDiag& d : all) {
      if (d.ino != 0 || (d.state != TCP_ESTABLISHED && d.state != TCP_CLOSE_WAIT) || d.sport != l.rec.src_port ||
          (!IsAny(l.rec.family, l.rec.src_addr) && !SameAddr(l.rec.family, l.rec.src_addr, d.src))) {
        continue;
      }
      InetInfo* client = ClientOf(objects, d);
      // Left running, a client from outside is the original's to accept:
      // the image, a copy, has no part in it.
      seen++;
      if (client == nullptr && (dump_flags & objhash::kDumpLeaveRunning)) continue;
      if (client == nullptr) {
        return absl::UnimplementedError(absl::StrCat(
            who, ": the connection from ", InetAddrName(d.family, d.dst, d.dport),
            " waits in its backlog, not accepted yet, and its client is not in the tree: not supported yet"));
      }
      if (d.state != TCP_ESTABLISHED || (client->rec.flags & (image::kInetFinIn | image::kInetFinOut))) {
        return absl::UnimplementedError(absl::StrCat(
            who, ": the connection from ", InetAddrName(d.family, d.dst, d.dport),
            " waits in its backlog, not accepted yet, and one of its sides has ended: not supported yet"));
      }
      if (client->rec.recv_len != 0) {
        return absl::InternalError(absl::StrCat(who, ": a client waiting in its backlog has data to read"));
      }
      data |= d.rqueue != 0;
      waiting.push_back({d, client});
    }
    // Held off by the lock, the backlog cannot grow now: what was found is
    // all of it (in a dump left running, new clients may come meanwhile).
    if (!(dump_flags & objhash::kDumpLeaveRunning) && seen != queued) {
      return absl::AbortedError(absl::StrCat(who, ": ", queued, " connections wait in its backlog, but ", seen,
                                             " were found; the dump may be tried again"));
    }
    l.pending = static_cast<uint32_t>(waiting.size());
    if (waiting.empty()) continue;
    std::map<std::string, std::string> taken;
    if (data) {
      if (dump_flags & objhash::kDumpLeaveRunning) {
        return absl::UnimplementedError(absl::StrCat(
            who, ": data waits on connections in its backlog, not accepted yet, which only accepting them would "
                 "read: not supported with --leave-running"));
      }
      RETURN_IF_ERROR(TakeBacklog(l, l.pending, &taken, who));
    }
    for (auto& [d, client] : waiting) {
      image::ckpt_inet_sock& r = client->rec;
      const std::string key = Canon(d.family, d.dst) + std::to_string(d.dport);
      // What the listener's side received, then what the client had not
      // had acknowledged: sent again on the new connection.
      client->data = taken[key] + client->data;
      r.flags |= image::kInetPending;
      r.unsent_len = static_cast<uint32_t>(client->data.size());
      r.sent_len = r.recv_len = 0;
      r.snd_seq = r.rcv_seq = r.mss = r.tcp_options = r.timestamp = 0;
      r.snd_wscale = r.rcv_wscale = 0;
      r.snd_wl1 = r.snd_wnd = r.max_window = r.rcv_wnd = r.rcv_wup = 0;
      r.data_size = client->data.size();
    }
  }

  return absl::OkStatus();
}

absl::Status ReleaseInetSockets(objhash::ObjHash& objects, bool killed) {
  absl::Status result;
  for (const auto& e : objects.entries()) {
    if (e->kind == kObjInet) {
      auto& s = std::any_cast<InetInfo&>(e->data);
      s.lock.reset();
      if (s.held == nullptr) continue;
      s.held->killed = killed;
      s.held.reset();  // closes the copy: in repair mode, silently
    }
  }
  for (const auto& e : objects.entries()) {
    if (e->kind != kObjNetLock) continue;
    auto& l = std::any_cast<LockEntry&>(e->data);
    if (l.lock == nullptr) continue;
    if (killed) {
      l.lock->Keep();
    } else {
      result = l.lock->Lift();
    }
    l.lock.reset();
  }
  return result;
}

}  // namespace ckpt::fs
