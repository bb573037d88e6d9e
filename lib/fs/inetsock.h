// INET_SOCK objects: a TCP or UDP socket of IPv4 or IPv6, saved once with
// its addresses, state, options and queues, however many fds refer to it.
//
// TCP: not connected (unbound or bound), listening (address, backlog), or
// established. An established connection is read and made again in repair
// mode (TCP_REPAIR): sequence numbers, send and receive queues, window,
// MSS, window scale, SACK and timestamps, so that its peer, in the tree or
// outside it, sees nothing but a pause. Meanwhile a network lock
// (netlock.h) keeps the kernel from answering the peer with a reset; a
// dump that kills the tree leaves the lock for the restore to lift.
// Other TCP states are refused, naming the state.
//
// UDP and UDP-Lite: bound, connected, shut down, with the datagrams queued
// to read and their senders' addresses (put back through a raw socket,
// from those addresses).

#ifndef LIBCKPT_LIB_FS_INETSOCK_H_
#define LIBCKPT_LIB_FS_INETSOCK_H_

#include <sys/types.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lib/fs/pipe.h"
#include "lib/objhash/objhash.h"

namespace ckpt::fs {

inline constexpr objhash::ObjKind kObjInet{15};

// Pre-flight: of the tree's sockets (by inode, where first met), the inet
// ones a process outside `tree` also holds, and established connections
// with an urgent byte waiting: each a problem naming the task and the fd.
std::vector<std::string> InetPreflightProblems(const std::map<uint64_t, PipeEnd>& socks, const std::set<pid_t>& tree);

// Dump, once every task's fds are collected: finds the clients of the
// connections waiting in listeners' backlogs (refused when a client is
// not in the tree) and, when data waits on them, reads it by accepting
// them (refused with kDumpLeaveRunning in `dump_flags`); refuses inet
// sockets that a process outside `tree` (PIDs as this process sees them)
// also holds.
absl::Status ResolveInetSockets(objhash::ObjHash& objects, const std::set<pid_t>& tree, uint32_t dump_flags);

// Dump, at its end: `killed` (the tree is gone and the image complete):
// the connections' copies are closed in repair mode, so that nothing is
// sent, and the network lock stays for the restore. Otherwise (failed,
// or left running) repair mode is left without a sound and the lock is
// lifted. Call before a failed dump resumes the tree. An error: the lock
// could not be lifted (its connections stay blocked).
absl::Status ReleaseInetSockets(objhash::ObjHash& objects, bool killed);

}  // namespace ckpt::fs

#endif  // LIBCKPT_LIB_FS_INETSOCK_H_
