// One request to the kernel's sock_diag (NETLINK_SOCK_DIAG) and its
// replies, for the families' own parsers (unixdiag.cc, inetdiag.cc).

#ifndef LIBCKPT_LIB_FS_SOCKDIAG_H_
#define LIBCKPT_LIB_FS_SOCKDIAG_H_

#include <linux/netlink.h>

#include <cstddef>
#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ckpt::fs {

// Sends `req` (`len` bytes, a struct nlmsghdr first) and hands each
// SOCK_DIAG_BY_FAMILY reply to `each`, until the kernel says it is done or
// `each` returns false. The kernel's error comes back as an errno Status
// (ENOENT: NotFound) naming `what` ("UNIX_DIAG").
absl::Status AskSockDiag(const void* req, size_t len, const char* what,
                         const std::function<absl::StatusOr<bool>(const struct nlmsghdr*)>& each);

// Each attribute of reply `h` after its family's fixed message (`head`
// bytes, the struct NLMSG_DATA points at): its type (NLA_TYPE_MASK
// applied), its payload and the payload's length. A malformed attribute,
// or a reply shorter than `head`, ends the walk.
void ForEachDiagAttr(const struct nlmsghdr* h, size_t head,
                     const std::function<void(uint16_t type, const char* data, size_t len)>& each);

}  // namespace ckpt::fs

#endif  // LIBCKPT_LIB_FS_SOCKDIAG_H_
