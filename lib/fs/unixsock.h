// UNIX_SOCK objects: a unix socket (stream, dgram, seqpacket), saved once
// with its name, state, options and peer, however many fds refer to it;
// its queued messages (with fds in flight and credentials) and a
// listener's backlog are its link record (UNIX_QUEUE), written after every
// object, since they refer to other objects (fds in flight, the peer) and
// may go round.
//
// Dump: identity, peer, pending connections, queue lengths and shutdown
// state come from sock_diag (unixdiag.h); the queues are read with
// MSG_PEEK at an SO_PEEK_OFF offset, so that they stay as they were. The
// only exception is a listener's backlog holding data: the kernel shows
// it only to whoever accepts the connection, so the dump accepts those
// connections, which --leave-running refuses.
//
// Restore: the restorer makes every socket (connected pairs with
// socketpair, or through a listener for a name that belongs to one), binds
// it (a name whose file is gone is bound inside a private directory, so
// that nobody finds it by path), and holds it; the late pass refills the
// queues in order, from the right senders, connects what waits in a
// backlog, and shuts down what was shut down.

#ifndef LIBCKPT_LIB_FS_UNIXSOCK_H_
#define LIBCKPT_LIB_FS_UNIXSOCK_H_

#include <sys/types.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/fs/pipe.h"
#include "lib/objhash/objhash.h"

namespace ckpt::fs {

inline constexpr objhash::ObjKind kObjUnix{14};

// Whether `name` ("unix:[123]") names a unix socket for --external.
bool IsUnixName(const std::string& name);

// Pre-flight: of the unix sockets of the tree (by inode, where first met),
// the ones whose peer is outside the tree. Those named in `external` are
// fine; each other one is a problem naming the task, the fd, the socket,
// its peer and who holds the peer.
absl::StatusOr<std::vector<std::string>> UnixPeerProblems(const std::map<uint64_t, PipeEnd>& socks,
                                                           const std::set<pid_t>& tree,
                                                           const std::vector<std::string>& external);

// Dump, once every task's fds are collected: refuses sockets whose peer is
// outside the tree (unless named in `external`: those are marked external),
// finds which names are borrowed from a listener, which clients wait in a
// backlog, and reads the backlogs that hold data (accepting them; refused
// when `leave_running`). `tree`: PIDs as this process sees them.
absl::Status ResolveUnixSockets(objhash::ObjHash& objects, const std::set<pid_t>& tree,
                                const std::vector<std::string>& external, uint32_t dump_flags);

// For a dump that failed: the backlogs ResolveUnixSockets accepted to read
// them (lost to the listener), for the error; empty if none.
std::string TakenBacklogs(const objhash::ObjHash& objects);

}  // namespace ckpt::fs

#endif  // LIBCKPT_LIB_FS_UNIXSOCK_H_
