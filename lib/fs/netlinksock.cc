// NETLINK_SOCK objects: a netlink socket (rtnetlink, generic netlink, the
// audit, uevent and other families), one per socket however many
// descriptors share it.
//
// Dump, through a copy of the socket (pidfd_getfd): its type and protocol,
// its address (port id and the groups of bind()), the address it is
// connected to, every multicast group it belongs to
// (NETLINK_LIST_MEMBERSHIPS), its options and buffers. Refused: a socket
// of another network namespace, one with messages queued (the kernel's
// answers or notifications, which cannot be put back) or in the middle of
// a dump (/proc/net/netlink).
//
// Restore: socket(), the options, bind() to the same port id (so that the
// kernel's answers to requests sent before still find it... none are
// pending, by the refusal above, but a peer that knows the port id does),
// the groups, connect().

#include <linux/netlink.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/fs/anonfd.h"
#include "lib/fs/fdkind.h"
#include "lib/fs/sockopt.h"
#include "lib/image/format.h"
#include "lib/image/records.h"

#ifndef NETLINK_GET_STRICT_CHK
#define NETLINK_GET_STRICT_CHK 12
#endif

namespace ckpt::fs {
namespace {

constexpr objhash::ObjKind kObjNetlink{22};

constexpr image::FieldSpec kNetlinkFields[] = {
    CKPT_FIELD(image::ckpt_netlink_sock, objref, kUnsigned),
    CKPT_FIELD(image::ckpt_netlink_sock, type, kUnsigned),
    CKPT_FIELD(image::ckpt_netlink_sock, protocol, kUnsigned),
    CKPT_FIELD(image::ckpt_netlink_sock, flags, kHex),
    CKPT_FIELD(image::ckpt_netlink_sock, portid, kUnsigned),
    CKPT_FIELD(image::ckpt_netlink_sock, dst_portid, kUnsigned),
    CKPT_FIELD(image::ckpt_netlink_sock, dst_groups, kHex),
    CKPT_FIELD(image::ckpt_netlink_sock, sndbuf, kUnsigned),
    CKPT_FIELD(image::ckpt_netlink_sock, rcvbuf, kUnsigned),
    CKPT_FIELD(image::ckpt_netlink_sock, nr_group_words, kUnsigned),
};
CKPT_RECORD(image::CKPT_HDR_NETLINK_SOCK, "NETLINK_SOCK", image::ckpt_netlink_sock, kNetlinkFields,
            image::kMaxNetlinkGroupWords * 4, kU32Array);

struct FlagOpt {
  uint32_t flag;
  int opt;
  const char* name;
};
constexpr FlagOpt kFlagOpts[] = {
    {image::kNetlinkPktinfo, NETLINK_PKTINFO, "NETLINK_PKTINFO"},
    {image::kNetlinkBroadcastError, NETLINK_BROADCAST_ERROR, "NETLINK_BROADCAST_ERROR"},
    {image::kNetlinkNoEnobufs, NETLINK_NO_ENOBUFS, "NETLINK_NO_ENOBUFS"},
    {image::kNetlinkListenAllNsid, NETLINK_LISTEN_ALL_NSID, "NETLINK_LISTEN_ALL_NSID"},
    {image::kNetlinkCapAck, NETLINK_CAP_ACK, "NETLINK_CAP_ACK"},
    {image::kNetlinkExtAck, NETLINK_EXT_ACK, "NETLINK_EXT_ACK"},
    {image::kNetlinkStrictChk, NETLINK_GET_STRICT_CHK, "NETLINK_GET_STRICT_CHK"},
};
constexpr uint32_t kKnownFlags = (1u << 7) - 1;

struct NetlinkData {
  image::ckpt_netlink_sock rec{};
  std::vector<uint32_t> groups;
};

bool ClaimsNetlink(const FdProbe& p) {
  if (!S_ISSOCK(p.st.st_mode)) return false;
  absl::StatusOr<int> dom = SocketDomain(p.pid, p.fd);
  return dom.ok() && *dom == AF_NETLINK;
}

// /proc/net/netlink's Rmem and Dump of the socket with inode `ino`.
absl::Status CheckQueue(uint64_t ino, const std::string& who) {
  ASSIGN_OR_RETURN(std::string text, ReadFile("/proc/net/netlink"));
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> w = absl::StrSplit(line, ' ', absl::SkipEmpty());
    uint64_t inode = 0, rmem = 0, dump = 0;
    if (w.size() < 10 || !absl::SimpleAtoi(w[9], &inode) || inode != ino) continue;
    if (!absl::SimpleAtoi(w[4], &rmem) || !absl::SimpleAtoi(w[6], &dump)) break;
    if (rmem != 0) {
      return absl::UnimplementedError(absl::StrCat(
          who, ": messages are queued on the netlink socket (", rmem,
          " bytes), which the dump cannot put back: not supported (read them first)"));
    }
    if (dump != 0) {
      return absl::UnimplementedError(absl::StrCat(who, ": the netlink socket is in the middle of a dump"));
    }
    return absl::OkStatus();
  }
  return absl::OkStatus();  // not listed (another namespace's /proc/net): checked below
}

absl::StatusOr<uint32_t> RegisterNetlink(objhash::ObjHash& objects, const FdProbe& p, const Description&) {
  const std::string who = absl::StrCat("task ", p.pid, " fd ", p.fd);
  ASSIGN_OR_RETURN(UniqueFd copy, CopyOfFd(p.pid, p.fd));
  const int c = copy.get();
  RETURN_IF_ERROR(RefuseOtherNetns(c, who, "a netlink socket"));
  RETURN_IF_ERROR(CheckQueue(p.st.st_ino, who));
  NetlinkData d;
  image::ckpt_netlink_sock& r = d.rec;
  ASSIGN_OR_RETURN(int type, GetSockInt(c, SOL_SOCKET, SO_TYPE, "SO_TYPE"));
  ASSIGN_OR_RETURN(int protocol, GetSockInt(c, SOL_SOCKET, SO_PROTOCOL, "SO_PROTOCOL"));
  r.type = static_cast<uint32_t>(type);
  r.protocol = static_cast<uint32_t>(protocol);
  struct sockaddr_nl a {};
  socklen_t len = sizeof(a);
  if (getsockname(c, reinterpret_cast<struct sockaddr*>(&a), &len) != 0) return ErrnoError(errno, who, ": getsockname");
  r.portid = a.nl_pid;
  a = {};
  len = sizeof(a);
  if (getpeername(c, reinterpret_cast<struct sockaddr*>(&a), &len) == 0) {
    r.dst_portid = a.nl_pid;
    r.dst_groups = a.nl_groups;
  }
  for (const FlagOpt& f : kFlagOpts) {
    absl::StatusOr<int> v = GetSockInt(c, SOL_NETLINK, f.opt, f.name);
    if (v.ok() && *v) r.flags |= f.flag;
  }
  ASSIGN_OR_RETURN(int snd, GetSockInt(c, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF"));
  ASSIGN_OR_RETURN(int rcv, GetSockInt(c, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF"));
  r.sndbuf = static_cast<uint32_t>(snd);
  r.rcvbuf = static_cast<uint32_t>(rcv);
  // The groups: NETLINK_LIST_MEMBERSHIPS says how many words it has.
  std::vector<uint32_t> words(32);
  for (;;) {
    socklen_t glen = static_cast<socklen_t>(words.size() * sizeof(uint32_t));
    if (getsockopt(c, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, words.data(), &glen) != 0) {
      return ErrnoError(errno, who, ": NETLINK_LIST_MEMBERSHIPS");
    }
    const size_t need = (glen + sizeof(uint32_t) - 1) / sizeof(uint32_t);
    if (need <= words.size()) {
      words.resize(need);
      break;
    }
    if (need > image::kMaxNetlinkGroupWords) {
      return absl::UnimplementedError(absl::StrCat(who, ": a netlink family with ", need * 32, " groups"));
    }
    words.resize(need);
  }
  while (!words.empty() && words.back() == 0) words.pop_back();
  d.groups = std::move(words);
  r.nr_group_words = static_cast<uint32_t>(d.groups.size());
  ASSIGN_OR_RETURN(objhash::ObjHash::Found f,
                   objects.LookupAdd(kObjNetlink, objhash::Identity::OfInode(p.st.st_dev, p.st.st_ino), d));
  return f.objref;
}

absl::Status CheckpointNetlink(objhash::CheckpointContext& ctx, const objhash::ObjHash::Entry& entry) {
  NetlinkData d = std::any_cast<NetlinkData>(entry.data);
  d.rec.objref = entry.objref;
  return ctx.writer->AppendStructWith(image::CKPT_HDR_NETLINK_SOCK, d.rec, d.groups.data(),
                                      d.groups.size() * sizeof(uint32_t));
}

absl::StatusOr<objhash::RestoredObject> RestoreNetlink(objhash::RestoreContext& ctx, const image::Record&) {
  image::Reader& rd = *ctx.reader;
  image::ckpt_netlink_sock r;
  RETURN_IF_ERROR(rd.ReadStruct(&r, sizeof(r)));
  if (r.type != SOCK_RAW && r.type != SOCK_DGRAM) return rd.FieldError("type", r.type, " is not SOCK_RAW or SOCK_DGRAM");
  if (r.protocol >= MAX_LINKS) return rd.FieldError("protocol", r.protocol, " is not a netlink family");
  if (r.flags & ~kKnownFlags) return rd.FieldError("flags", "0x", absl::Hex(r.flags), " has unknown bits");
  if (r.nr_group_words > image::kMaxNetlinkGroupWords) {
    return rd.FieldError("nr_group_words", r.nr_group_words, " is more than ", image::kMaxNetlinkGroupWords);
  }
  std::vector<uint32_t> groups(r.nr_group_words);
  RETURN_IF_ERROR(rd.ReadPayload(groups.data(), groups.size() * sizeof(uint32_t)));
  const std::string what = absl::StrCat("NETLINK_SOCK ", r.objref, " (family ", r.protocol, ")");
  int fd = socket(AF_NETLINK, static_cast<int>(r.type) | SOCK_CLOEXEC, static_cast<int>(r.protocol));
  if (fd < 0) return ErrnoError(errno, what, ": socket");
  UniqueFd owned(fd);
  for (const FlagOpt& f : kFlagOpts) {
    if (r.flags & f.flag) RETURN_IF_ERROR(Annotate(SetSockInt(fd, SOL_NETLINK, f.opt, 1, f.name), what));
  }
  RETURN_IF_ERROR(Annotate(SetSockBuf(fd, true, r.sndbuf), what));
  RETURN_IF_ERROR(Annotate(SetSockBuf(fd, false, r.rcvbuf), what));
  if (r.portid != 0) {
    struct sockaddr_nl a {};
    a.nl_family = AF_NETLINK;
    a.nl_pid = r.portid;
    if (bind(fd, reinterpret_cast<struct sockaddr*>(&a), sizeof(a)) != 0) {
      return ErrnoError(errno, what, ": binding to port id ", r.portid,
                        errno == EADDRINUSE ? " (taken by another socket now)" : "");
    }
  }
  for (size_t w = 0; w < groups.size(); ++w) {
    for (int b = 0; b < 32; ++b) {
      if (!((groups[w] >> b) & 1)) continue;
      int group = static_cast<int>(w * 32 + static_cast<size_t>(b) + 1);
      if (setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) != 0) {
        return ErrnoError(errno, what, ": joining group ", group);
      }
    }
  }
  if (r.dst_portid != 0 || r.dst_groups != 0) {
    struct sockaddr_nl a {};
    a.nl_family = AF_NETLINK;
    a.nl_pid = r.dst_portid;
    a.nl_groups = r.dst_groups;
    if (connect(fd, reinterpret_cast<struct sockaddr*>(&a), sizeof(a)) != 0) return ErrnoError(errno, what, ": connect");
  }
  return objhash::HoldAt(ctx, r.objref, fd, "a netlink socket");
}

absl::StatusOr<UniqueFd> OpenNetlink(objhash::RestoreContext&, const image::ckpt_file& rec, const std::string&,
                                     const objhash::RestoredObject* obj) {
  return DupWithNonblock(obj->fd, rec.flags, "a netlink socket");
}

const FdKindOps kNetlinkKind = {
    .name = "netlink socket",
    .file_kind = image::kFileNetlinkSocket,
    .order = 23,
    .file_type = S_IFSOCK,
    .seekable = false,
    .by_path = false,
    .has_target = true,
    .target_kind = kObjNetlink,
    .claims = ClaimsNetlink,
    .describe = nullptr,
    .register_target = RegisterNetlink,
    .open = OpenNetlink,
    .check = nullptr,
};

[[maybe_unused]] const bool kRegistered =
    RegisterFdKind(&kNetlinkKind) &&
    objhash::RegisterHandler({kObjNetlink, "NETLINK_SOCK", image::CKPT_HDR_NETLINK_SOCK, CheckpointNetlink,
                              RestoreNetlink});

}  // namespace
}  // namespace ckpt::fs
