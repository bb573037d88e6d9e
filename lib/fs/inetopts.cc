#include "lib/fs/inetopts.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/image/records.h"

namespace ckpt::fs {
namespace {

#ifndef SOL_RAW
#define SOL_RAW 255
#endif
#ifndef SOL_ICMPV6
#define SOL_ICMPV6 58
#endif

// Which sockets an option is for.
enum Applies : uint32_t {
  kV4 = 1u << 0,
  kV6 = 1u << 1,
  kTcp = 1u << 2,
  kUdp = 1u << 3,   // UDP and UDP-Lite
  kPing = 1u << 4,  // SOCK_DGRAM ICMP / ICMPv6
  kRaw = 1u << 5,   // SOCK_RAW, any protocol but those below
  kRawIcmp = 1u << 6,   // SOCK_RAW IPPROTO_ICMP (v4)
  kRawIcmp6 = 1u << 7,  // SOCK_RAW IPPROTO_ICMPV6
  kBoth = kV4 | kV6,
  kDgram = kUdp | kPing | kRaw | kRawIcmp | kRawIcmp6,
  kAllRaw = kRaw | kRawIcmp | kRawIcmp6,
  kAll = kTcp | kDgram,
};

struct OptSpec {
  int level;
  int name;
  const char* text;
  uint32_t len;
  uint32_t applies;
};

// What the restore may set. Options whose getsockopt reports state rather
// than a setting (IP_MTU, IPV6_MTU, SO_INCOMING_CPU, TCP_WINDOW_CLAMP of a
// connection) are not here, nor those INET_SOCK's fields hold.
constexpr OptSpec kOpts[] = {
    {SOL_SOCKET, SO_DONTROUTE, "SO_DONTROUTE", 4, kBoth | kAll},
    {SOL_SOCKET, SO_NO_CHECK, "SO_NO_CHECK", 4, kBoth | kAll},
    {SOL_SOCKET, SO_PASSCRED, "SO_PASSCRED", 4, kBoth | kAll},
    {SOL_SOCKET, 29, "SO_TIMESTAMP_OLD", 4, kBoth | kAll},
    {SOL_SOCKET, 35, "SO_TIMESTAMPNS_OLD", 4, kBoth | kAll},
    {SOL_SOCKET, 37, "SO_TIMESTAMPING_OLD", 8, kBoth | kAll},
    {SOL_SOCKET, 63, "SO_TIMESTAMP_NEW", 4, kBoth | kAll},
    {SOL_SOCKET, 64, "SO_TIMESTAMPNS_NEW", 4, kBoth | kAll},
    {SOL_SOCKET, 65, "SO_TIMESTAMPING_NEW", 8, kBoth | kAll},
    {SOL_SOCKET, 40, "SO_RXQ_OVFL", 4, kBoth | kAll},
    {SOL_SOCKET, 41, "SO_WIFI_STATUS", 4, kBoth | kAll},
    {SOL_SOCKET, 45, "SO_SELECT_ERR_QUEUE", 4, kBoth | kAll},
    {SOL_SOCKET, 46, "SO_BUSY_POLL", 4, kBoth | kAll},
    {SOL_SOCKET, 69, "SO_PREFER_BUSY_POLL", 4, kBoth | kAll},
    {SOL_SOCKET, 70, "SO_BUSY_POLL_BUDGET", 4, kBoth | kAll},
    {SOL_SOCKET, 60, "SO_ZEROCOPY", 4, kBoth | kTcp | kUdp},
    {SOL_SOCKET, 74, "SO_TXREHASH", 4, kBoth | kAll},
    {SOL_SOCKET, 75, "SO_RCVMARK", 4, kBoth | kAll},

    {SOL_IP, IP_HDRINCL, "IP_HDRINCL", 4, kV4 | kAllRaw},
    {SOL_IP, IP_RECVOPTS, "IP_RECVOPTS", 4, kV4 | kAll},
    {SOL_IP, IP_RETOPTS, "IP_RETOPTS", 4, kV4 | kAll},
    {SOL_IP, IP_PKTINFO, "IP_PKTINFO", 4, kV4 | kAll},
    {SOL_IP, IP_MTU_DISCOVER, "IP_MTU_DISCOVER", 4, kV4 | kAll},
    {SOL_IP, IP_RECVERR, "IP_RECVERR", 4, kV4 | kAll},
    {SOL_IP, IP_RECVTTL, "IP_RECVTTL", 4, kV4 | kAll},
    {SOL_IP, IP_RECVTOS, "IP_RECVTOS", 4, kV4 | kAll},
    {SOL_IP, IP_PASSSEC, "IP_PASSSEC", 4, kV4 | kAll},
    {SOL_IP, IP_TRANSPARENT, "IP_TRANSPARENT", 4, kV4 | kAll},
    {SOL_IP, IP_RECVORIGDSTADDR, "IP_RECVORIGDSTADDR", 4, kV4 | kAll},
    {SOL_IP, IP_MINTTL, "IP_MINTTL", 4, kV4 | kAll},
    {SOL_IP, IP_NODEFRAG, "IP_NODEFRAG", 4, kV4 | kAllRaw},
    {SOL_IP, IP_CHECKSUM, "IP_CHECKSUM", 4, kV4 | kAll},
    {SOL_IP, IP_BIND_ADDRESS_NO_PORT, "IP_BIND_ADDRESS_NO_PORT", 4, kV4 | kTcp | kUdp},
    {SOL_IP, 25, "IP_RECVFRAGSIZE", 4, kV4 | kAll},
    {SOL_IP, 26, "IP_RECVERR_RFC4884", 4, kV4 | kAll},
    {SOL_IP, IP_MULTICAST_IF, "IP_MULTICAST_IF", 4, kV4 | kDgram},
    {SOL_IP, IP_MULTICAST_TTL, "IP_MULTICAST_TTL", 4, kV4 | kDgram},
    {SOL_IP, IP_MULTICAST_LOOP, "IP_MULTICAST_LOOP", 4, kV4 | kDgram},
    {SOL_IP, IP_MULTICAST_ALL, "IP_MULTICAST_ALL", 4, kV4 | kDgram},
    {SOL_IP, 50, "IP_UNICAST_IF", 4, kV4 | kAll},
    {SOL_IP, 51, "IP_LOCAL_PORT_RANGE", 4, kV4 | kTcp | kUdp},

    {SOL_IPV6, IPV6_CHECKSUM, "IPV6_CHECKSUM", 4, kV6 | kRaw},
    {SOL_IPV6, 36, "IPV6_HDRINCL", 4, kV6 | kAllRaw},
    {SOL_IPV6, IPV6_MULTICAST_IF, "IPV6_MULTICAST_IF", 4, kV6 | kDgram},
    {SOL_IPV6, IPV6_MULTICAST_HOPS, "IPV6_MULTICAST_HOPS", 4, kV6 | kDgram},
    {SOL_IPV6, IPV6_MULTICAST_LOOP, "IPV6_MULTICAST_LOOP", 4, kV6 | kDgram},
    {SOL_IPV6, 29, "IPV6_MULTICAST_ALL", 4, kV6 | kDgram},
    {SOL_IPV6, IPV6_MTU_DISCOVER, "IPV6_MTU_DISCOVER", 4, kV6 | kAll},
    {SOL_IPV6, IPV6_RECVERR, "IPV6_RECVERR", 4, kV6 | kAll},
    {SOL_IPV6, 31, "IPV6_RECVERR_RFC4884", 4, kV6 | kAll},
    {SOL_IPV6, IPV6_RECVPKTINFO, "IPV6_RECVPKTINFO", 4, kV6 | kAll},
    {SOL_IPV6, IPV6_RECVHOPLIMIT, "IPV6_RECVHOPLIMIT", 4, kV6 | kAll},
    {SOL_IPV6, IPV6_RECVHOPOPTS, "IPV6_RECVHOPOPTS", 4, kV6 | kAll},
    {SOL_IPV6, IPV6_RECVRTHDR, "IPV6_RECVRTHDR", 4, kV6 | kAll},
    {SOL_IPV6, IPV6_RECVDSTOPTS, "IPV6_RECVDSTOPTS", 4, kV6 | kAll},
    {SOL_IPV6, IPV6_RECVPATHMTU, "IPV6_RECVPATHMTU", 4, kV6 | kAll},
    {SOL_IPV6, IPV6_DONTFRAG, "IPV6_DONTFRAG", 4, kV6 | kAll},
    {SOL_IPV6, IPV6_RECVTCLASS, "IPV6_RECVTCLASS", 4, kV6 | kAll},
    {SOL_IPV6, 70, "IPV6_AUTOFLOWLABEL", 4, kV6 | kAll},
    {SOL_IPV6, 72, "IPV6_ADDR_PREFERENCES", 4, kV6 | kAll},
    {SOL_IPV6, 73, "IPV6_MINHOPCOUNT", 4, kV6 | kAll},
    {SOL_IPV6, 74, "IPV6_RECVORIGDSTADDR", 4, kV6 | kAll},
    {SOL_IPV6, 75, "IPV6_TRANSPARENT", 4, kV6 | kAll},
    {SOL_IPV6, 76, "IPV6_UNICAST_IF", 4, kV6 | kAll},
    {SOL_IPV6, 77, "IPV6_RECVFRAGSIZE", 4, kV6 | kAll},

    {SOL_TCP, TCP_SYNCNT, "TCP_SYNCNT", 4, kBoth | kTcp},
    {SOL_TCP, TCP_LINGER2, "TCP_LINGER2", 4, kBoth | kTcp},
    {SOL_TCP, TCP_DEFER_ACCEPT, "TCP_DEFER_ACCEPT", 4, kBoth | kTcp},
    {SOL_TCP, TCP_THIN_LINEAR_TIMEOUTS, "TCP_THIN_LINEAR_TIMEOUTS", 4, kBoth | kTcp},
    {SOL_TCP, TCP_FASTOPEN, "TCP_FASTOPEN", 4, kBoth | kTcp},
    {SOL_TCP, TCP_NOTSENT_LOWAT, "TCP_NOTSENT_LOWAT", 4, kBoth | kTcp},
    {SOL_TCP, 27, "TCP_SAVE_SYN", 4, kBoth | kTcp},
    {SOL_TCP, 30, "TCP_FASTOPEN_CONNECT", 4, kBoth | kTcp},
    {SOL_TCP, 34, "TCP_FASTOPEN_NO_COOKIE", 4, kBoth | kTcp},
    {SOL_TCP, 36, "TCP_INQ", 4, kBoth | kTcp},
    {SOL_TCP, 37, "TCP_TX_DELAY", 4, kBoth | kTcp},

    {SOL_UDP, 101, "UDP_NO_CHECK6_TX", 4, kV6 | kUdp},
    {SOL_UDP, 102, "UDP_NO_CHECK6_RX", 4, kV6 | kUdp},

    {SOL_RAW, 1, "ICMP_FILTER", 4, kV4 | kRawIcmp},
    {SOL_ICMPV6, 1, "ICMPV6_FILTER", 32, kV6 | kRawIcmp6},
};

uint32_t KindBits(int family, int type, int protocol) {
  uint32_t bits = family == AF_INET ? uint32_t{kV4} : family == AF_INET6 ? uint32_t{kV6} : 0u;
  if (type == SOCK_STREAM && protocol == IPPROTO_TCP) return bits | kTcp;
  if (type == SOCK_DGRAM && (protocol == IPPROTO_UDP || protocol == IPPROTO_UDPLITE)) return bits | kUdp;
  if (type == SOCK_DGRAM && (protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6)) return bits | kPing;
  if (type == SOCK_RAW) {
    if (family == AF_INET && protocol == IPPROTO_ICMP) return bits | kRawIcmp;
    if (family == AF_INET6 && protocol == IPPROTO_ICMPV6) return bits | kRawIcmp6;
    return bits | kRaw;
  }
  return 0;
}

bool For(const OptSpec& o, uint32_t kind) {
  return (o.applies & kind & kBoth) != 0 && (o.applies & kind & ~uint32_t{kBoth}) != 0;
}

const OptSpec* Find(int level, int name) {
  for (const OptSpec& o : kOpts) {
    if (o.level == level && o.name == name) return &o;
  }
  return nullptr;
}

// Every option of the list for the kind that getsockopt gives.
std::vector<image::ckpt_sockopt> ReadAll(int fd, uint32_t kind) {
  std::vector<image::ckpt_sockopt> out;
  for (const OptSpec& o : kOpts) {
    if (!For(o, kind)) continue;
    image::ckpt_sockopt v{};
    v.level = o.level;
    v.name = o.name;
    socklen_t len = o.len;
    // One a kernel does not have, or not for this socket: it has none to
    // save, and neither has a fresh one.
    if (getsockopt(fd, o.level, o.name, v.value, &len) != 0) continue;
    v.len = std::min<uint32_t>(len, sizeof(v.value));
    out.push_back(v);
  }
  return out;
}

bool Same(const image::ckpt_sockopt& a, const image::ckpt_sockopt& b) {
  return a.level == b.level && a.name == b.name && a.len == b.len && memcmp(a.value, b.value, a.len) == 0;
}

constexpr image::FieldSpec kInetOptsFields[] = {
    CKPT_FIELD(image::ckpt_inet_opts, objref, kUnsigned),
    CKPT_FIELD(image::ckpt_inet_opts, nr_opts, kUnsigned),
};
CKPT_RECORD(image::CKPT_HDR_INET_OPTS, "INET_OPTS", image::ckpt_inet_opts, kInetOptsFields,
            uint64_t{image::kMaxSockOpts} * sizeof(image::ckpt_sockopt), kRawBytes);

}  // namespace

const std::vector<image::ckpt_sockopt>& InetOptDefaults::For(int family, int type, int protocol) {
  auto key = std::make_tuple(family, type, protocol);
  auto it = by_kind_.find(key);
  if (it != by_kind_.end()) return it->second;
  std::vector<image::ckpt_sockopt> defaults;
  UniqueFd fresh(socket(family, type | SOCK_CLOEXEC, protocol));
  if (fresh.valid()) defaults = ReadAll(fresh.get(), KindBits(family, type, protocol));
  return by_kind_.emplace(key, std::move(defaults)).first->second;
}

std::vector<image::ckpt_sockopt> ReadInetOptions(int fd, int family, int type, int protocol,
                                                 InetOptDefaults& defaults) {
  const std::vector<image::ckpt_sockopt>& fresh = defaults.For(family, type, protocol);
  std::vector<image::ckpt_sockopt> out;
  for (const image::ckpt_sockopt& v : ReadAll(fd, KindBits(family, type, protocol))) {
    bool is_default = false;
    for (const image::ckpt_sockopt& d : fresh) is_default |= Same(v, d);
    if (!is_default) out.push_back(v);
  }
  return out;
}

absl::Status WriteInetOptions(image::Writer& writer, uint32_t objref, const std::vector<image::ckpt_sockopt>& opts) {
  image::ckpt_inet_opts h{objref, static_cast<uint32_t>(opts.size())};
  return writer.AppendStructWith(image::CKPT_HDR_INET_OPTS, h, opts.data(), opts.size() * sizeof(opts[0]));
}

absl::StatusOr<std::vector<image::ckpt_sockopt>> ReadInetOptionsRecord(image::Reader& reader, uint32_t objref,
                                                                       int family, int type, int protocol) {
  ASSIGN_OR_RETURN(image::ckpt_inet_opts h, reader.Expect<image::ckpt_inet_opts>(image::CKPT_HDR_INET_OPTS));
  if (h.objref != objref) return reader.FieldError("objref", h.objref, " is not its INET_SOCK's (", objref, ")");
  if (h.nr_opts == 0 || h.nr_opts > image::kMaxSockOpts) return reader.FieldError("nr_opts", h.nr_opts, " is out of range");
  if (uint64_t{h.nr_opts} * sizeof(image::ckpt_sockopt) != reader.payload_remaining()) {
    return reader.FieldError("nr_opts", h.nr_opts, " does not fit the record (", reader.payload_remaining(),
                             " bytes left)");
  }
  std::vector<image::ckpt_sockopt> opts(h.nr_opts);
  RETURN_IF_ERROR(reader.ReadPayload(opts.data(), opts.size() * sizeof(opts[0])));
  const uint32_t kind = KindBits(family, type, protocol);
  for (uint32_t i = 0; i < h.nr_opts; i++) {
    const image::ckpt_sockopt& v = opts[i];
    const OptSpec* o = Find(v.level, v.name);
    if (o == nullptr) {
      return reader.FieldError("name", v.name, " of option ", i, " (level ", v.level,
                               ") is not an option libckpt sets");
    }
    if (!For(*o, kind)) return reader.FieldError("name", o->text, " of option ", i, " is not for this kind of socket");
    if (v.len == 0 || v.len > o->len) return reader.FieldError("len", v.len, " of option ", i, " (", o->text, ")");
    if (v.reserved != 0) return reader.FieldError("reserved", v.reserved, " of option ", i, " is not zero");
    for (uint32_t j = 0; j < i; j++) {
      if (opts[j].level == v.level && opts[j].name == v.name) {
        return reader.FieldError("name", o->text, " of option ", i, " comes twice");
      }
    }
  }
  return opts;
}

absl::Status SetInetOptions(int fd, const std::vector<image::ckpt_sockopt>& opts) {
  for (const image::ckpt_sockopt& v : opts) {
    if (setsockopt(fd, v.level, v.name, v.value, v.len) != 0) {
      return ErrnoError(errno, "setsockopt ", InetOptionName(v.level, v.name));
    }
  }
  return absl::OkStatus();
}

std::string InetOptionName(int level, int name) {
  const OptSpec* o = Find(level, name);
  if (o != nullptr) return o->text;
  return absl::StrCat("option ", name, " of level ", level);
}

}  // namespace ckpt::fs
