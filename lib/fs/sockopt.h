// Socket helpers shared by the socket kinds (unixsock.cc, inetsock.cc):
// a copy of a task's socket fd, socket options as Status, and a socket's
// classic BPF filter (SO_GET_FILTER / SO_ATTACH_FILTER).

#ifndef LIBCKPT_LIB_FS_SOCKOPT_H_
#define LIBCKPT_LIB_FS_SOCKOPT_H_

#include <linux/filter.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/base/fd.h"

namespace ckpt::fs {

// The same open description as task `pid`'s fd `fd` (pidfd_getfd; a dup
// when `pid` is this process).
absl::StatusOr<UniqueFd> CopyOfFd(pid_t pid, int fd);

// The address family (SO_DOMAIN) of task `pid`'s socket `fd`; an error
// when it is not a socket or cannot be copied. For the socket kinds'
// claims.
absl::StatusOr<int> SocketDomain(pid_t pid, int fd);

absl::StatusOr<int> GetSockInt(int fd, int level, int opt, const char* what);
absl::Status SetSockInt(int fd, int level, int opt, int v, const char* what);
// SO_RCVTIMEO / SO_SNDTIMEO in nanoseconds (0: none).
absl::StatusOr<int64_t> GetSockTimeo(int fd, int opt, const char* what);
absl::Status SetSockTimeo(int fd, int opt, int64_t ns, const char* what);
// SO_SNDBUF/SO_RCVBUF as getsockopt gave them (the kernel doubles what it
// is told; the FORCE forms pass root's limits). 0: leave as it is.
absl::Status SetSockBuf(int fd, bool snd, uint32_t value);

// An error naming `who` and `kind` ("a netlink socket") when socket `fd`
// belongs to another network namespace than this process (SIOCGSKNS).
absl::Status RefuseOtherNetns(int fd, const std::string& who, const char* kind);

// The socket's classic BPF filter (empty: none); refuses an eBPF one.
// `locked`: SO_LOCK_FILTER.
struct SockFilter {
  std::vector<struct sock_filter> insns;
  bool locked = false;
};
absl::StatusOr<SockFilter> GetSockFilter(int fd, const std::string& who);
absl::Status SetSockFilter(int fd, const SockFilter& filter);
// Most instructions a classic filter has (BPF_MAXINSNS).
inline constexpr uint32_t kMaxFilterInsns = 4096;

}  // namespace ckpt::fs

#endif  // LIBCKPT_LIB_FS_SOCKOPT_H_
