// What the kernel says of unix sockets, through sock_diag (NETLINK_SOCK_DIAG,
// UNIX_DIAG): identity, peer, pending connections, queue lengths and
// shutdown state. Never guessed from /proc/net/unix text.
//
//   ASSIGN_OR_RETURN(UnixDiag d, QueryUnixSocket(ino));     // one socket
//   ASSIGN_OR_RETURN(auto all, DumpUnixSockets());          // every one in this netns

#ifndef LIBCKPT_LIB_FS_UNIXDIAG_H_
#define LIBCKPT_LIB_FS_UNIXDIAG_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ckpt::fs {

struct UnixDiag {
  uint64_t ino = 0;
  uint32_t type = 0;      // SOCK_STREAM, ...
  uint32_t state = 0;     // TCP_ESTABLISHED (1), TCP_CLOSE (7), TCP_LISTEN (10)
  std::string name;       // sun_path bytes: a path, or NUL + abstract name; empty: unnamed
  bool has_vfs = false;   // bound to a path: the socket file's device and inode
  uint64_t vfs_dev = 0;
  uint64_t vfs_ino = 0;
  uint64_t peer = 0;      // the peer's inode; 0: none (or an embryo, or closed)
  std::vector<uint64_t> icons;  // a listener: its pending clients' inodes, in order
  uint32_t rqueue = 0;    // a listener: connections pending; else bytes queued to read
  uint32_t wqueue = 0;    // a listener: its backlog; else bytes sent not yet read
  uint32_t shutdown = 0;  // bit 0 receive, bit 1 send
  uint32_t uid = 0;
};

inline constexpr uint32_t kTcpEstablished = 1;
inline constexpr uint32_t kTcpClose = 7;
inline constexpr uint32_t kTcpListen = 10;

// The unix socket with inode `ino` in this process's network namespace;
// NotFound if there is none (another family, or another namespace).
absl::StatusOr<UnixDiag> QueryUnixSocket(uint64_t ino);
// Every unix socket of this network namespace, by inode.
absl::StatusOr<std::map<uint64_t, UnixDiag>> DumpUnixSockets();

// "unix:[123]"
std::string UnixName(uint64_t ino);
// A socket's name for humans: the path, "@abstract", or "unnamed".
std::string PrintableUnixName(const std::string& name);

}  // namespace ckpt::fs

#endif  // LIBCKPT_LIB_FS_UNIXDIAG_H_
