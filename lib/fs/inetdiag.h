// What the kernel says of TCP and UDP sockets, through sock_diag
// (NETLINK_SOCK_DIAG, INET_DIAG): state, addresses, queue lengths (a
// listener's: connections waiting and its backlog), shutdown state and
// inode. An inode of 0 is a socket no file refers to: a connection in a
// listener's accept queue, or one the program closed.
//
//   ASSIGN_OR_RETURN(auto all, DumpInetSockets(AF_INET, IPPROTO_TCP));

#ifndef LIBCKPT_LIB_FS_INETDIAG_H_
#define LIBCKPT_LIB_FS_INETDIAG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ckpt::fs {

struct InetDiag {
  uint8_t family = 0;    // AF_INET, AF_INET6
  uint8_t state = 0;     // TCP_ESTABLISHED, ... (UDP: TCP_CLOSE or TCP_ESTABLISHED)
  uint8_t src[16] = {};  // network order; IPv4 in the first 4 bytes
  uint8_t dst[16] = {};
  uint16_t sport = 0;    // host order
  uint16_t dport = 0;
  uint64_t ino = 0;
  uint32_t rqueue = 0;   // a listener: connections waiting; else bytes queued to read
  uint32_t wqueue = 0;   // a listener: its backlog; else bytes not yet acknowledged
  uint32_t shutdown = 0;  // bit 0 receive, bit 1 send
  uint32_t uid = 0;
};

// Every socket of `protocol` (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE)
// and `family` in this network namespace.
absl::StatusOr<std::vector<InetDiag>> DumpInetSockets(int family, int protocol);

// The raw or ping (ICMP SOCK_DGRAM) socket `ino` of `family`, as
// /proc/net/{raw,raw6,icmp,icmp6} of this process's network namespace
// lists it (sock_diag has no ping sockets): addresses, state (connected:
// TCP_ESTABLISHED), and rqueue, the bytes of packets queued to read.
// NotFound if it is not listed.
absl::StatusOr<InetDiag> ProcNetSocket(int family, bool ping, uint64_t ino);

// A TCP state's name ("CLOSE_WAIT").
std::string TcpStateName(uint32_t state);
// "127.0.0.1:80", "[::1]:80".
std::string InetAddrName(int family, const uint8_t* addr, uint16_t port);

}  // namespace ckpt::fs

#endif  // LIBCKPT_LIB_FS_INETDIAG_H_
