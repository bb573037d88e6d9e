#include "lib/fs/unixdiag.h"

#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/fs/sockdiag.h"

namespace ckpt::fs {
namespace {

constexpr uint32_t kShow = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS |
                           UDIAG_SHOW_RQLEN | UDIAG_SHOW_UID;

absl::Status ParseOne(const struct nlmsghdr* h, UnixDiag* d) {
  if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct unix_diag_msg))) {
    return absl::DataLossError("sock_diag: a short UNIX_DIAG reply");
  }
  const auto* m = static_cast<const struct unix_diag_msg*>(NLMSG_DATA(h));
  d->ino = m->udiag_ino;
  d->type = m->udiag_type;
  d->state = m->udiag_state;
  ForEachDiagAttr(h, sizeof(*m), [&](uint16_t type, const char* data, size_t len) {
    switch (type) {
      case UNIX_DIAG_NAME:
        d->name.assign(data, len);
        break;
      case UNIX_DIAG_VFS:
        if (len >= sizeof(struct unix_diag_vfs)) {
          struct unix_diag_vfs v;
          memcpy(&v, data, sizeof(v));
          d->has_vfs = true;
          d->vfs_dev = v.udiag_vfs_dev;
          d->vfs_ino = v.udiag_vfs_ino;
        }
        break;
      case UNIX_DIAG_PEER:
        if (len >= 4) {
          uint32_t p;
          memcpy(&p, data, 4);
          d->peer = p;
        }
        break;
      case UNIX_DIAG_ICONS:
        for (size_t i = 0; i + 4 <= len; i += 4) {
          uint32_t c;
          memcpy(&c, data + i, 4);
          d->icons.push_back(c);
        }
        break;
      case UNIX_DIAG_RQLEN:
        if (len >= sizeof(struct unix_diag_rqlen)) {
          struct unix_diag_rqlen q;
          memcpy(&q, data, sizeof(q));
          d->rqueue = q.udiag_rqueue;
          d->wqueue = q.udiag_wqueue;
        }
        break;
      case UNIX_DIAG_SHUTDOWN:
        if (len >= 1) d->shutdown = static_cast<uint8_t>(data[0]);
        break;
      case UNIX_DIAG_UID:
        if (len >= 4) memcpy(&d->uid, data, 4);
        break;
      default:
        break;
    }
  });
  return absl::OkStatus();
}

// Sends one UNIX_DIAG request and collects the replies.
absl::StatusOr<std::vector<UnixDiag>> Ask(uint64_t ino, bool dump) {
  struct {
    struct nlmsghdr h;
    struct unix_diag_req r;
  } req{};
  req.h.nlmsg_len = sizeof(req);
  req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  req.h.nlmsg_flags = NLM_F_REQUEST | (dump ? NLM_F_DUMP : 0);
  req.h.nlmsg_seq = 1;
  req.r.sdiag_family = AF_UNIX;
  req.r.udiag_states = ~0u;
  req.r.udiag_ino = static_cast<uint32_t>(ino);
  req.r.udiag_show = kShow;
  req.r.udiag_cookie[0] = req.r.udiag_cookie[1] = ~0u;  // INET_DIAG_NOCOOKIE
  std::vector<UnixDiag> out;
  absl::Status st = AskSockDiag(&req, sizeof(req), "UNIX_DIAG", [&](const struct nlmsghdr* h) -> absl::StatusOr<bool> {
    UnixDiag d;
    RETURN_IF_ERROR(ParseOne(h, &d));
    out.push_back(std::move(d));
    return dump;
  });
  if (!dump && absl::IsNotFound(st)) return absl::NotFoundError(absl::StrCat("no unix socket has inode ", ino));
  RETURN_IF_ERROR(st);
  return out;
}

}  // namespace

absl::StatusOr<UnixDiag> QueryUnixSocket(uint64_t ino) {
  ASSIGN_OR_RETURN(std::vector<UnixDiag> found, Ask(ino, false));
  if (found.empty() || found[0].ino != ino) {
    return absl::NotFoundError(absl::StrCat("no unix socket has inode ", ino));
  }
  return std::move(found[0]);
}

absl::StatusOr<std::map<uint64_t, UnixDiag>> DumpUnixSockets() {
  ASSIGN_OR_RETURN(std::vector<UnixDiag> found, Ask(0, true));
  std::map<uint64_t, UnixDiag> all;
  for (UnixDiag& d : found) all[d.ino] = std::move(d);
  return all;
}

std::string UnixName(uint64_t ino) { return absl::StrCat("unix:[", ino, "]"); }

std::string PrintableUnixName(const std::string& name) {
  if (name.empty()) return "unnamed";
  if (name[0] != '\0') return name;
  std::string out = "@";
  for (size_t i = 1; i < name.size(); i++) {
    const unsigned char c = static_cast<unsigned char>(name[i]);
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

}  // namespace ckpt::fs
