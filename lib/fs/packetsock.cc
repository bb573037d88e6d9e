// PACKET_SOCK objects: a packet socket (AF_PACKET: SOCK_RAW, SOCK_DGRAM,
// or the old SOCK_PACKET), one per socket however many descriptors share
// it.
//
// Dump, through a copy of the socket (pidfd_getfd) and sock_diag
// (PACKET_DIAG): the protocol it receives and the interface it is bound
// to (by index, and by name to check it at restore), its memberships
// (multicast, promiscuous, all-multicast, unicast) with their counts, its
// fanout group, its PACKET_* and SO_* options and its classic filter.
// Refused: a socket of another network namespace; one with packets queued
// to read (they cannot be put back as they came); one with a ring
// (PACKET_RX_RING, PACKET_TX_RING: the kernel's position in a ring cannot
// be set again); a fanout group steered by a BPF program (which cannot be
// read back).
//
// Restore: socket() with no protocol (so that it receives nothing before
// it is ready), the options, bind() to the protocol and interface, the
// memberships, the fanout group, the filter.

#include <linux/filter.h>
#include <linux/if_packet.h>
#include <linux/packet_diag.h>
#include <linux/sock_diag.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/fs/anonfd.h"
#include "lib/fs/fdkind.h"
#include "lib/fs/sockdiag.h"
#include "lib/fs/sockopt.h"
#include "lib/image/format.h"
#include "lib/image/records.h"

#ifndef PACKET_VNET_HDR_SZ
#define PACKET_VNET_HDR_SZ 24
#endif
#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

namespace ckpt::fs {
namespace {

constexpr objhash::ObjKind kObjPacket{23};
// The most times one membership is saved as added, and the largest
// PACKET_RESERVE and buffer sizes: limits on what an image asks for.
constexpr uint32_t kMaxMcCount = 1024;
constexpr uint32_t kMaxReserve = 1u << 30;
constexpr uint32_t kMaxBuf = 1u << 28;

constexpr image::FieldSpec kPacketFields[] = {
    CKPT_FIELD(image::ckpt_packet_sock, objref, kUnsigned),
    CKPT_FIELD(image::ckpt_packet_sock, type, kUnsigned),
    CKPT_FIELD(image::ckpt_packet_sock, protocol, kHex),
    CKPT_FIELD(image::ckpt_packet_sock, flags, kHex),
    CKPT_FIELD(image::ckpt_packet_sock, ifindex, kSigned),
    CKPT_CHARS(image::ckpt_packet_sock, ifname),
    CKPT_FIELD(image::ckpt_packet_sock, version, kUnsigned),
    CKPT_FIELD(image::ckpt_packet_sock, reserve, kUnsigned),
    CKPT_FIELD(image::ckpt_packet_sock, copy_thresh, kUnsigned),
    CKPT_FIELD(image::ckpt_packet_sock, tstamp, kHex),
    CKPT_FIELD(image::ckpt_packet_sock, fanout, kHex),
    CKPT_FIELD(image::ckpt_packet_sock, vnet_hdr_sz, kUnsigned),
    CKPT_FIELD(image::ckpt_packet_sock, sndbuf, kUnsigned),
    CKPT_FIELD(image::ckpt_packet_sock, rcvbuf, kUnsigned),
    CKPT_FIELD(image::ckpt_packet_sock, mark, kUnsigned),
    CKPT_FIELD(image::ckpt_packet_sock, priority, kSigned),
    CKPT_FIELD(image::ckpt_packet_sock, rcvtimeo_ns, kSigned),
    CKPT_FIELD(image::ckpt_packet_sock, sndtimeo_ns, kSigned),
    CKPT_FIELD(image::ckpt_packet_sock, tsflags, kHex),
    CKPT_FIELD(image::ckpt_packet_sock, nr_mc, kUnsigned),
    CKPT_FIELD(image::ckpt_packet_sock, nr_filter, kUnsigned),
    CKPT_FIELD(image::ckpt_packet_sock, ino, kUnsigned),
};
CKPT_RECORD(image::CKPT_HDR_PACKET_SOCK, "PACKET_SOCK", image::ckpt_packet_sock, kPacketFields,
            uint64_t{image::kMaxPacketMc} * sizeof(image::ckpt_packet_mc) +
                uint64_t{kMaxFilterInsns} * sizeof(struct sock_filter),
            kRawBytes);

// Flags read and set with getsockopt/setsockopt (an int, 0 or 1).
struct FlagOpt {
  uint32_t flag;
  int level;
  int opt;
  const char* name;
};
constexpr FlagOpt kFlagOpts[] = {
    {image::kPacketAuxdata, SOL_PACKET, PACKET_AUXDATA, "PACKET_AUXDATA"},
    {image::kPacketOrigdev, SOL_PACKET, PACKET_ORIGDEV, "PACKET_ORIGDEV"},
    {image::kPacketVnetHdr, SOL_PACKET, PACKET_VNET_HDR, "PACKET_VNET_HDR"},
    {image::kPacketLoss, SOL_PACKET, PACKET_LOSS, "PACKET_LOSS"},
    {image::kPacketQdiscBypass, SOL_PACKET, PACKET_QDISC_BYPASS, "PACKET_QDISC_BYPASS"},
    {image::kPacketIgnoreOutgoing, SOL_PACKET, PACKET_IGNORE_OUTGOING, "PACKET_IGNORE_OUTGOING"},
    {image::kPacketTxHasOff, SOL_PACKET, PACKET_TX_HAS_OFF, "PACKET_TX_HAS_OFF"},
    {image::kPacketRxqOvfl, SOL_SOCKET, SO_RXQ_OVFL, "SO_RXQ_OVFL"},
};

// SO_TIMESTAMP and SO_TIMESTAMPNS in their old (32-bit time) and new
// forms: one of the four at most is on.
constexpr int kTimestampOld = 29, kTimestampNsOld = 35, kTimestampNew = 63, kTimestampNsNew = 64;
constexpr int kTimestampingOld = 37;

struct PacketDiag {
  bool found = false;
  uint16_t num = 0;  // protocol, host order (as PACKET_DIAG gives it)
  struct packet_diag_info info {};
  std::vector<struct packet_diag_mclist> mc;
  bool rx_ring = false, tx_ring = false;
  uint32_t rmem = 0;
};

absl::StatusOr<PacketDiag> DiagOf(uint64_t ino) {
  struct {
    struct nlmsghdr h;
    struct packet_diag_req r;
  } req{};
  req.h.nlmsg_len = sizeof(req);
  req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.r.sdiag_family = AF_PACKET;
  req.r.pdiag_ino = static_cast<uint32_t>(ino);
  req.r.pdiag_show = PACKET_SHOW_INFO | PACKET_SHOW_MCLIST | PACKET_SHOW_RING_CFG | PACKET_SHOW_MEMINFO;
  PacketDiag out;
  RETURN_IF_ERROR(AskSockDiag(&req, sizeof(req), "PACKET_DIAG", [&](const struct nlmsghdr* h) -> absl::StatusOr<bool> {
    if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct packet_diag_msg))) return true;
    const auto* m = static_cast<const struct packet_diag_msg*>(NLMSG_DATA(h));
    if (m->pdiag_ino != ino) return true;
    out.found = true;
    out.num = m->pdiag_num;
    ForEachDiagAttr(h, sizeof(*m), [&](uint16_t type, const char* body, size_t n) {
      switch (type) {
        case PACKET_DIAG_INFO:
          if (n >= sizeof(out.info)) memcpy(&out.info, body, sizeof(out.info));
          break;
        case PACKET_DIAG_MCLIST:
          for (size_t i = 0; i + sizeof(struct packet_diag_mclist) <= n; i += sizeof(struct packet_diag_mclist)) {
            struct packet_diag_mclist one;
            memcpy(&one, body + i, sizeof(one));
            out.mc.push_back(one);
          }
          break;
        case PACKET_DIAG_RX_RING: out.rx_ring = true; break;
        case PACKET_DIAG_TX_RING: out.tx_ring = true; break;
        case PACKET_DIAG_MEMINFO:
          if (n >= 4) memcpy(&out.rmem, body, 4);  // SK_MEMINFO_RMEM_ALLOC
          break;
        default: break;
      }
    });
    return false;
  }));
  return out;
}

struct PacketData {
  image::ckpt_packet_sock rec{};
  std::vector<image::ckpt_packet_mc> mc;
  SockFilter filter;
};

bool ClaimsPacket(const FdProbe& p) {
  if (!S_ISSOCK(p.st.st_mode)) return false;
  absl::StatusOr<int> dom = SocketDomain(p.pid, p.fd);
  return dom.ok() && *dom == AF_PACKET;
}

std::string IfName(int ifindex) {
  char name[IF_NAMESIZE] = {};
  if (ifindex <= 0 || if_indextoname(static_cast<unsigned>(ifindex), name) == nullptr) return "";
  return name;
}

absl::StatusOr<uint32_t> RegisterPacket(objhash::ObjHash& objects, const FdProbe& p, const Description&) {
  const std::string who = absl::StrCat("task ", p.pid, " fd ", p.fd, ": socket:[", p.st.st_ino, "]");
  absl::StatusOr<UniqueFd> copied = CopyOfFd(p.pid, p.fd);
  if (!copied.ok()) return Annotate(copied.status(), who);
  UniqueFd copy = std::move(*copied);
  const int c = copy.get();
  RETURN_IF_ERROR(RefuseOtherNetns(c, who, "a packet socket"));
  absl::StatusOr<PacketDiag> diag = DiagOf(p.st.st_ino);
  if (!diag.ok()) return Annotate(diag.status(), who);
  const PacketDiag& d = *diag;
  if (!d.found) return absl::InternalError(absl::StrCat(who, ": PACKET_DIAG does not list it"));
  if (d.rx_ring || d.tx_ring) {
    return absl::UnimplementedError(absl::StrCat(
        who, ": a packet socket with a ", d.rx_ring ? "PACKET_RX_RING" : "PACKET_TX_RING",
        " ring is not supported (the kernel's place in a ring cannot be set again)"));
  }
  if (d.rmem != 0) {
    return absl::UnimplementedError(absl::StrCat(
        who, ": packets wait to be read on the packet socket (", d.rmem,
        " bytes), which cannot be put back as they came: not supported (the dump may be tried again)"));
  }
  PacketData data;
  image::ckpt_packet_sock& r = data.rec;
  ASSIGN_OR_RETURN(int type, GetSockInt(c, SOL_SOCKET, SO_TYPE, "SO_TYPE"));
  r.type = static_cast<uint16_t>(type);
  r.protocol = d.num;  // PACKET_DIAG gives it in host order
  r.ino = p.st.st_ino;
  r.ifindex = static_cast<int32_t>(d.info.pdi_index);
  if (r.ifindex != 0) {
    r.flags |= image::kPacketBound;
    const std::string name = IfName(r.ifindex);
    if (name.empty()) return absl::FailedPreconditionError(absl::StrCat(who, ": its interface ", r.ifindex, " has no name"));
    memcpy(r.ifname, name.data(), std::min(name.size(), sizeof(r.ifname) - 1));
  }
  r.version = d.info.pdi_version;
  r.reserve = d.info.pdi_reserve;
  r.copy_thresh = d.info.pdi_copy_thresh;
  r.tstamp = d.info.pdi_tstamp;
  // PACKET_DIAG leaves the group's flags out; getsockopt has them, in
  // the form setsockopt takes.
  // (SOCK_PACKET has no options, and no fanout.)
  int fanout = 0;
  if (r.type != SOCK_PACKET) {
    ASSIGN_OR_RETURN(fanout, GetSockInt(c, SOL_PACKET, PACKET_FANOUT, "PACKET_FANOUT"));
  }
  if (fanout != 0) {
    const uint32_t ftype = (static_cast<uint32_t>(fanout) >> 16) & 0xff;
    if (ftype == PACKET_FANOUT_CBPF || ftype == PACKET_FANOUT_EBPF) {
      return absl::UnimplementedError(absl::StrCat(
          who, ": a fanout group steered by a BPF program (PACKET_FANOUT_", ftype == PACKET_FANOUT_CBPF ? "CBPF" : "EBPF",
          ") is not supported: the program cannot be read back"));
    }
    r.fanout = static_cast<uint32_t>(fanout);
  }
  for (const FlagOpt& f : kFlagOpts) {
    absl::StatusOr<int> v = GetSockInt(c, f.level, f.opt, f.name);
    if (v.ok() && *v) r.flags |= f.flag;
  }
  {
    absl::StatusOr<int> v = GetSockInt(c, SOL_PACKET, PACKET_VNET_HDR_SZ, "PACKET_VNET_HDR_SZ");
    // The size without PACKET_VNET_HDR is 0; with it, PACKET_VNET_HDR says it.
    if (v.ok() && *v != 0 && *v != 10) r.vnet_hdr_sz = static_cast<uint32_t>(*v);
  }
  auto on = [&](int opt) {
    absl::StatusOr<int> v = GetSockInt(c, SOL_SOCKET, opt, "SO_TIMESTAMP");
    return v.ok() && *v != 0;
  };
  if (on(kTimestampOld)) r.flags |= image::kPacketTimestamp;
  if (on(kTimestampNsOld)) r.flags |= image::kPacketTimestampNs;
  if (on(kTimestampNew)) r.flags |= image::kPacketTimestamp | image::kPacketTimestampNew;
  if (on(kTimestampNsNew)) r.flags |= image::kPacketTimestampNs | image::kPacketTimestampNew;
  {
    absl::StatusOr<int> v = GetSockInt(c, SOL_SOCKET, kTimestampingOld, "SO_TIMESTAMPING");
    if (v.ok()) r.tsflags = static_cast<uint32_t>(*v);
    // OPT_ID numbers the timestamps from a counter, BIND_PHC names a
    // clock: neither can be read back.
    constexpr uint32_t kOptId = 1u << 7, kBindPhc = 1u << 15;
    if (r.tsflags & (kOptId | kBindPhc)) {
      return absl::UnimplementedError(absl::StrCat(
          who, ": SO_TIMESTAMPING with ", (r.tsflags & kOptId) ? "SOF_TIMESTAMPING_OPT_ID" : "SOF_TIMESTAMPING_BIND_PHC",
          " is not supported (its counter or clock cannot be read back)"));
    }
  }
  ASSIGN_OR_RETURN(int snd, GetSockInt(c, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF"));
  ASSIGN_OR_RETURN(int rcv, GetSockInt(c, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF"));
  r.sndbuf = static_cast<uint32_t>(snd);
  r.rcvbuf = static_cast<uint32_t>(rcv);
  if (r.sndbuf > kMaxBuf || r.rcvbuf > kMaxBuf || r.reserve > kMaxReserve) {
    return absl::UnimplementedError(absl::StrCat(who, ": buffers or PACKET_RESERVE larger than an image holds"));
  }
  ASSIGN_OR_RETURN(int mark, GetSockInt(c, SOL_SOCKET, SO_MARK, "SO_MARK"));
  r.mark = static_cast<uint32_t>(mark);
  ASSIGN_OR_RETURN(r.priority, GetSockInt(c, SOL_SOCKET, SO_PRIORITY, "SO_PRIORITY"));
  ASSIGN_OR_RETURN(r.rcvtimeo_ns, GetSockTimeo(c, SO_RCVTIMEO, "SO_RCVTIMEO"));
  ASSIGN_OR_RETURN(r.sndtimeo_ns, GetSockTimeo(c, SO_SNDTIMEO, "SO_SNDTIMEO"));
  for (const struct packet_diag_mclist& m : d.mc) {
    if (m.pdmc_count > kMaxMcCount) {
      return absl::UnimplementedError(absl::StrCat(who, ": a membership added ", m.pdmc_count, " times (more than ",
                                                   kMaxMcCount, ")"));
    }
    if (m.pdmc_alen > sizeof(image::ckpt_packet_mc::addr)) {
      return absl::UnimplementedError(absl::StrCat(who, ": a membership with a ", m.pdmc_alen, "-byte address"));
    }
    image::ckpt_packet_mc mc{};
    mc.ifindex = static_cast<int32_t>(m.pdmc_index);
    mc.type = m.pdmc_type;
    mc.alen = m.pdmc_alen;
    mc.count = m.pdmc_count;
    memcpy(mc.addr, m.pdmc_addr, m.pdmc_alen);
    const std::string name = IfName(mc.ifindex);
    memcpy(mc.ifname, name.data(), std::min(name.size(), sizeof(mc.ifname) - 1));
    data.mc.push_back(mc);
  }
  if (data.mc.size() > image::kMaxPacketMc) {
    return absl::UnimplementedError(absl::StrCat(who, ": more memberships than an image holds"));
  }
  r.nr_mc = static_cast<uint32_t>(data.mc.size());
  ASSIGN_OR_RETURN(data.filter, GetSockFilter(c, who));
  r.nr_filter = static_cast<uint32_t>(data.filter.insns.size());
  if (data.filter.locked) r.flags |= image::kPacketFilterLocked;
  ASSIGN_OR_RETURN(objhash::ObjHash::Found f,
                   objects.LookupAdd(kObjPacket, objhash::Identity::OfInode(p.st.st_dev, p.st.st_ino), data));
  return f.objref;
}

absl::Status CheckpointPacket(objhash::CheckpointContext& ctx, const objhash::ObjHash::Entry& entry) {
  const auto& d = std::any_cast<const PacketData&>(entry.data);
  image::ckpt_packet_sock rec = d.rec;
  rec.objref = entry.objref;
  struct iovec parts[3] = {{&rec, sizeof(rec)},
                           {const_cast<image::ckpt_packet_mc*>(d.mc.data()), d.mc.size() * sizeof(d.mc[0])},
                           {const_cast<struct sock_filter*>(d.filter.insns.data()),
                            d.filter.insns.size() * sizeof(struct sock_filter)}};
  return ctx.writer->AppendV(image::CKPT_HDR_PACKET_SOCK, parts, 3);
}

// The interface `name` had index `ifindex` at the dump: the same here, or
// an error naming both.
absl::Status SameInterface(int32_t ifindex, const char* name, const std::string& what) {
  const unsigned now = if_nametoindex(name);
  if (now == 0) {
    return absl::FailedPreconditionError(absl::StrCat(what, ": the interface ", name, " (index ", ifindex,
                                                      " when dumped) is not on this host now"));
  }
  if (static_cast<int32_t>(now) != ifindex) {
    return absl::FailedPreconditionError(absl::StrCat(what, ": the interface ", name, " has index ", now,
                                                      " now, not ", ifindex, " as when dumped"));
  }
  return absl::OkStatus();
}

absl::Status CheckName(const image::Reader& rd, const char* field, const char* name, size_t size, int32_t ifindex) {
  if (memchr(name, '\0', size) == nullptr) return rd.FieldError(field, "is not terminated");
  if ((ifindex != 0) != (name[0] != '\0')) return rd.FieldError(field, "'", name, "' does not fit ifindex ", ifindex);
  if (ifindex < 0) return rd.FieldError("ifindex", ifindex);
  for (const char* c = name; *c != '\0'; c++) {
    if (*c == '/' || *c <= ' ') return rd.FieldError(field, "'", name, "' is not an interface name");
  }
  return absl::OkStatus();
}

absl::StatusOr<objhash::RestoredObject> RestorePacket(objhash::RestoreContext& ctx, const image::Record&) {
  image::Reader& rd = *ctx.reader;
  image::ckpt_packet_sock r;
  RETURN_IF_ERROR(rd.ReadStruct(&r, sizeof(r)));
  if (r.type != SOCK_RAW && r.type != SOCK_DGRAM && r.type != SOCK_PACKET) {
    return rd.FieldError("type", r.type, " is not SOCK_RAW, SOCK_DGRAM or SOCK_PACKET");
  }
  if (r.flags & ~image::kPacketKnownFlags) return rd.FieldError("flags", "0x", absl::Hex(r.flags), " has unknown bits");
  if (((r.flags & image::kPacketBound) != 0) != (r.ifindex != 0)) {
    return rd.FieldError("ifindex", r.ifindex, " does not fit flags 0x", absl::Hex(r.flags));
  }
  RETURN_IF_ERROR(CheckName(rd, "ifname", r.ifname, sizeof(r.ifname), r.ifindex));
  if (r.version > TPACKET_V3) return rd.FieldError("version", r.version, " is not a TPACKET version");
  if (r.reserve > kMaxReserve) return rd.FieldError("reserve", r.reserve, " is out of range");
  if (r.fanout != 0) {
    const uint32_t ftype = (r.fanout >> 16) & 0xff;
    if (ftype > PACKET_FANOUT_QM) return rd.FieldError("fanout", "0x", absl::Hex(r.fanout), ": not a fanout type libckpt sets");
    if (r.protocol == 0) return rd.FieldError("fanout", "0x", absl::Hex(r.fanout), ": a socket that receives nothing");
  }
  if ((r.flags & image::kPacketVnetHdr) && r.type != SOCK_RAW) return rd.FieldError("flags", "PACKET_VNET_HDR needs SOCK_RAW");
  if (r.rcvtimeo_ns < 0 || r.rcvtimeo_ns > image::kMaxDurationNs) return rd.FieldError("rcvtimeo_ns", r.rcvtimeo_ns);
  if (r.sndtimeo_ns < 0 || r.sndtimeo_ns > image::kMaxDurationNs) return rd.FieldError("sndtimeo_ns", r.sndtimeo_ns);
  if (r.sndbuf > kMaxBuf || r.rcvbuf > kMaxBuf) return rd.FieldError("sndbuf", r.sndbuf, " is out of range");
  if (r.nr_mc > image::kMaxPacketMc) return rd.FieldError("nr_mc", r.nr_mc, " is more than ", image::kMaxPacketMc);
  if (r.nr_filter > kMaxFilterInsns) return rd.FieldError("nr_filter", r.nr_filter, " is more than a filter holds");
  if ((r.flags & image::kPacketFilterLocked) && r.nr_filter == 0) {
    return rd.FieldError("flags", "a locked filter without a filter");
  }
  if (r.reserved != 0) return rd.FieldError("reserved", r.reserved, " is not zero");
  if (uint64_t{r.nr_mc} * sizeof(image::ckpt_packet_mc) + uint64_t{r.nr_filter} * sizeof(struct sock_filter) !=
      rd.payload_remaining()) {
    return rd.FieldError("nr_mc", r.nr_mc, " and nr_filter ", r.nr_filter, " do not fit the record (",
                         rd.payload_remaining(), " bytes left)");
  }
  std::vector<image::ckpt_packet_mc> mcs(r.nr_mc);
  RETURN_IF_ERROR(rd.ReadPayload(mcs.data(), mcs.size() * sizeof(mcs[0])));
  SockFilter filter;
  filter.insns.resize(r.nr_filter);
  RETURN_IF_ERROR(rd.ReadPayload(filter.insns.data(), filter.insns.size() * sizeof(struct sock_filter)));
  filter.locked = r.flags & image::kPacketFilterLocked;
  for (uint32_t i = 0; i < r.nr_mc; i++) {
    const image::ckpt_packet_mc& m = mcs[i];
    if (m.alen > sizeof(m.addr)) return rd.FieldError("alen", m.alen, " of membership ", i);
    if (m.count == 0 || m.count > kMaxMcCount) return rd.FieldError("count", m.count, " of membership ", i);
    if (m.type > PACKET_MR_UNICAST) return rd.FieldError("type", m.type, " of membership ", i);
    if (m.ifindex == 0) return rd.FieldError("ifindex", m.ifindex, " of membership ", i);
    RETURN_IF_ERROR(CheckName(rd, "ifname", m.ifname, sizeof(m.ifname), m.ifindex));
  }

  const std::string what = absl::StrCat("packet socket:[", r.ino, "] (protocol 0x", absl::Hex(r.protocol),
                                        r.ifname[0] ? absl::StrCat(" on ", r.ifname) : std::string(), ")");
  if (r.flags & image::kPacketBound) RETURN_IF_ERROR(SameInterface(r.ifindex, r.ifname, what));
  for (const image::ckpt_packet_mc& m : mcs) RETURN_IF_ERROR(SameInterface(m.ifindex, m.ifname, what));

  // SOCK_PACKET keeps the protocol of socket(); the others receive nothing
  // until bound.
  const int proto = r.type == SOCK_PACKET ? htons(r.protocol) : 0;
  int fd = socket(AF_PACKET, static_cast<int>(r.type) | SOCK_CLOEXEC, proto);
  if (fd < 0) return ErrnoError(errno, what, ": socket (needs CAP_NET_RAW)");
  UniqueFd owned(fd);
  auto set = [&](int level, int opt, int v, const char* name) { return Annotate(SetSockInt(fd, level, opt, v, name), what); };
  if (r.version != TPACKET_V1) RETURN_IF_ERROR(set(SOL_PACKET, PACKET_VERSION, static_cast<int>(r.version), "PACKET_VERSION"));
  if (r.reserve != 0) RETURN_IF_ERROR(set(SOL_PACKET, PACKET_RESERVE, static_cast<int>(r.reserve), "PACKET_RESERVE"));
  if (r.copy_thresh != 0) {
    RETURN_IF_ERROR(set(SOL_PACKET, PACKET_COPY_THRESH, static_cast<int>(r.copy_thresh), "PACKET_COPY_THRESH"));
  }
  if (r.tstamp != 0) RETURN_IF_ERROR(set(SOL_PACKET, PACKET_TIMESTAMP, static_cast<int>(r.tstamp), "PACKET_TIMESTAMP"));
  for (const FlagOpt& f : kFlagOpts) {
    if (r.flags & f.flag) RETURN_IF_ERROR(set(f.level, f.opt, 1, f.name));
  }
  if (r.vnet_hdr_sz != 0) {
    RETURN_IF_ERROR(set(SOL_PACKET, PACKET_VNET_HDR_SZ, static_cast<int>(r.vnet_hdr_sz), "PACKET_VNET_HDR_SZ"));
  }
  const bool fresh = r.flags & image::kPacketTimestampNew;
  if (r.flags & image::kPacketTimestamp) {
    RETURN_IF_ERROR(set(SOL_SOCKET, fresh ? kTimestampNew : kTimestampOld, 1, "SO_TIMESTAMP"));
  }
  if (r.flags & image::kPacketTimestampNs) {
    RETURN_IF_ERROR(set(SOL_SOCKET, fresh ? kTimestampNsNew : kTimestampNsOld, 1, "SO_TIMESTAMPNS"));
  }
  if (r.tsflags != 0) RETURN_IF_ERROR(set(SOL_SOCKET, kTimestampingOld, static_cast<int>(r.tsflags), "SO_TIMESTAMPING"));
  RETURN_IF_ERROR(Annotate(SetSockBuf(fd, true, r.sndbuf), what));
  RETURN_IF_ERROR(Annotate(SetSockBuf(fd, false, r.rcvbuf), what));
  if (r.mark != 0) RETURN_IF_ERROR(set(SOL_SOCKET, SO_MARK, static_cast<int>(r.mark), "SO_MARK"));
  if (r.priority != 0) RETURN_IF_ERROR(set(SOL_SOCKET, SO_PRIORITY, r.priority, "SO_PRIORITY"));
  RETURN_IF_ERROR(Annotate(SetSockTimeo(fd, SO_RCVTIMEO, r.rcvtimeo_ns, "SO_RCVTIMEO"), what));
  RETURN_IF_ERROR(Annotate(SetSockTimeo(fd, SO_SNDTIMEO, r.sndtimeo_ns, "SO_SNDTIMEO"), what));
  // The filter before the bind: nothing gets past it meanwhile.
  RETURN_IF_ERROR(Annotate(SetSockFilter(fd, filter), what));
  if (r.type == SOCK_PACKET) {
    if (r.flags & image::kPacketBound) {
      struct sockaddr_pkt a {};
      a.spkt_family = AF_PACKET;
      // The kernel reads the name from a struct sockaddr's 14 bytes.
      memcpy(a.spkt_device, r.ifname, std::min(sizeof(a.spkt_device), sizeof(r.ifname) - 1));
      if (bind(fd, reinterpret_cast<struct sockaddr*>(&a), sizeof(struct sockaddr)) != 0) {
        return ErrnoError(errno, what, ": bind");
      }
    }
    // It received from every interface since socket(), before its filter
    // and its binding: what came then was never the program's.
    char scrap[64];
    while (recv(fd, scrap, sizeof(scrap), MSG_DONTWAIT | MSG_TRUNC) >= 0) {
    }
  } else if (r.protocol != 0 || (r.flags & image::kPacketBound)) {
    struct sockaddr_ll a {};
    a.sll_family = AF_PACKET;
    a.sll_protocol = htons(r.protocol);
    a.sll_ifindex = r.ifindex;
    if (bind(fd, reinterpret_cast<struct sockaddr*>(&a), sizeof(a)) != 0) return ErrnoError(errno, what, ": bind");
  }
  // packet_mreq with room for the longest hardware address.
  struct {
    int mr_ifindex;
    unsigned short mr_type;
    unsigned short mr_alen;
    unsigned char mr_address[32];
  } mreq;
  for (const image::ckpt_packet_mc& m : mcs) {
    memset(&mreq, 0, sizeof(mreq));
    mreq.mr_ifindex = m.ifindex;
    mreq.mr_type = m.type;
    mreq.mr_alen = m.alen;
    memcpy(mreq.mr_address, m.addr, m.alen);
    for (uint32_t i = 0; i < m.count; i++) {
      if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq, sizeof(mreq)) != 0) {
        return ErrnoError(errno, what, ": PACKET_ADD_MEMBERSHIP type ", m.type, " on ", m.ifname);
      }
    }
  }
  if (r.fanout != 0) {
    // The group's id as the kernel gave it: asked for again as is.
    const uint32_t v = r.fanout & ~(uint32_t{PACKET_FANOUT_FLAG_UNIQUEID} << 16);
    if (setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &v, sizeof(v)) != 0) {
      return ErrnoError(errno, what, ": joining fanout group ", r.fanout & 0xffff);
    }
  }
  return objhash::HoldAt(ctx, r.objref, fd, what);
}

absl::StatusOr<UniqueFd> OpenPacket(objhash::RestoreContext&, const image::ckpt_file& rec, const std::string&,
                                    const objhash::RestoredObject* obj) {
  return DupWithNonblock(obj->fd, rec.flags, "a packet socket");
}

const FdKindOps kPacketKind = {
    .name = "packet socket",
    .file_kind = image::kFilePacketSocket,
    .order = 22,
    .file_type = S_IFSOCK,
    .seekable = false,
    .by_path = false,
    .has_target = true,
    .target_kind = kObjPacket,
    .claims = ClaimsPacket,
    .describe = nullptr,
    .register_target = RegisterPacket,
    .open = OpenPacket,
    .check = nullptr,
};

[[maybe_unused]] const bool kRegistered =
    RegisterFdKind(&kPacketKind) &&
    objhash::RegisterHandler({kObjPacket, "PACKET_SOCK", image::CKPT_HDR_PACKET_SOCK, CheckpointPacket,
                              RestorePacket});

}  // namespace
}  // namespace ckpt::fs
