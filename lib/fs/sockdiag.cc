#include "lib/fs/sockdiag.h"

#include <linux/sock_diag.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"

namespace ckpt::fs {

void ForEachDiagAttr(const struct nlmsghdr* h, size_t head,
                     const std::function<void(uint16_t type, const char* data, size_t len)>& each) {
  if (h->nlmsg_len < NLMSG_LENGTH(head)) return;
  const char* at = static_cast<const char*>(NLMSG_DATA(h)) + head;
  size_t left = h->nlmsg_len - NLMSG_LENGTH(head);
  while (left >= sizeof(struct nlattr)) {
    const auto* a = reinterpret_cast<const struct nlattr*>(at);
    if (a->nla_len < sizeof(*a) || a->nla_len > left) break;
    each(static_cast<uint16_t>(a->nla_type & NLA_TYPE_MASK), at + NLA_HDRLEN, a->nla_len - NLA_HDRLEN);
    const size_t step = NLA_ALIGN(a->nla_len);
    if (step >= left) break;
    at += step;
    left -= step;
  }
}

absl::Status AskSockDiag(const void* req, size_t len, const char* what,
                         const std::function<absl::StatusOr<bool>(const struct nlmsghdr*)>& each) {
  UniqueFd nl(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!nl.valid()) return ErrnoError(errno, "sock_diag: socket(NETLINK_SOCK_DIAG)");
  struct sockaddr_nl kernel {};
  kernel.nl_family = AF_NETLINK;
  if (sendto(nl.get(), req, len, 0, reinterpret_cast<struct sockaddr*>(&kernel), sizeof(kernel)) !=
      static_cast<ssize_t>(len)) {
    return ErrnoError(errno, "sock_diag: sending a ", what, " request");
  }
  std::vector<char> buf(64 * 1024);
  for (;;) {
    ssize_t n = recv(nl.get(), buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, "sock_diag: reading ", what, " replies");
    if (n == 0) return absl::DataLossError("sock_diag: the reply ended early");
    size_t left = static_cast<size_t>(n);
    for (auto* h = reinterpret_cast<struct nlmsghdr*>(buf.data()); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type == NLMSG_DONE) return absl::OkStatus();
      if (h->nlmsg_type == NLMSG_ERROR) {
        const auto* e = static_cast<const struct nlmsgerr*>(NLMSG_DATA(h));
        if (e->error == 0) return absl::OkStatus();
        return ErrnoError(-e->error, "sock_diag: ", what);
      }
      if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
      ASSIGN_OR_RETURN(bool more, each(h));
      if (!more) return absl::OkStatus();
    }
  }
}

}  // namespace ckpt::fs
