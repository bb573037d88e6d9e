#include "lib/fs/unixsock.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <sched.h>
#include <linux/capability.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstring>
#include <functional>
#include <memory>
#include <system_error>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/fs/fdkind.h"
#include "lib/fs/fs.h"
#include "lib/fs/holders.h"
#include "lib/fs/sockopt.h"
#include "lib/fs/unixdiag.h"
#include "lib/image/format.h"
#include "lib/image/records.h"
#include "lib/objhash/handlers.h"

namespace ckpt::fs {
namespace {

constexpr image::FieldSpec kUnixSockFields[] = {
    CKPT_FIELD(image::ckpt_unix_sock, objref, kUnsigned),
    CKPT_FIELD(image::ckpt_unix_sock, type, kUnsigned),
    CKPT_FIELD(image::ckpt_unix_sock, state, kUnsigned),
    CKPT_FIELD(image::ckpt_unix_sock, flags, kHex),
    CKPT_FIELD(image::ckpt_unix_sock, shutdown, kUnsigned),
    CKPT_FIELD(image::ckpt_unix_sock, backlog, kUnsigned),
    CKPT_FIELD(image::ckpt_unix_sock, sndbuf, kUnsigned),
    CKPT_FIELD(image::ckpt_unix_sock, rcvbuf, kUnsigned),
    CKPT_FIELD(image::ckpt_unix_sock, peek_off, kSigned),
    CKPT_FIELD(image::ckpt_unix_sock, rcvlowat, kSigned),
    CKPT_FIELD(image::ckpt_unix_sock, rcvtimeo_ns, kSigned),
    CKPT_FIELD(image::ckpt_unix_sock, sndtimeo_ns, kSigned),
    CKPT_FIELD(image::ckpt_unix_sock, peer_ref, kUnsigned),
    CKPT_FIELD(image::ckpt_unix_sock, name_len, kUnsigned),
    CKPT_FIELD(image::ckpt_unix_sock, dir_len, kUnsigned),
    CKPT_FIELD(image::ckpt_unix_sock, mode, kOctal),
    CKPT_FIELD(image::ckpt_unix_sock, uid, kUnsigned),
    CKPT_FIELD(image::ckpt_unix_sock, gid, kUnsigned),
    CKPT_FIELD(image::ckpt_unix_sock, peer_name_len, kUnsigned),
    CKPT_FIELD(image::ckpt_unix_sock, cred_uid, kUnsigned),
    CKPT_FIELD(image::ckpt_unix_sock, ino, kUnsigned),
    CKPT_FIELD(image::ckpt_unix_sock, cred_gid, kUnsigned),
    CKPT_FIELD(image::ckpt_unix_sock, pair_cred_uid, kUnsigned),
    CKPT_FIELD(image::ckpt_unix_sock, pair_cred_gid, kUnsigned),
    CKPT_FIELD(image::ckpt_unix_sock, nr_filter, kUnsigned),
};
constexpr uint32_t kMaxSunPath = sizeof(((struct sockaddr_un*)nullptr)->sun_path);
CKPT_RECORD(image::CKPT_HDR_UNIX_SOCK, "UNIX_SOCK", image::ckpt_unix_sock, kUnixSockFields,
            2 * kMaxSunPath + image::kMaxPathLen + kMaxFilterInsns * sizeof(struct sock_filter), kPaths);

constexpr image::FieldSpec kUnixQueueFields[] = {
    CKPT_FIELD(image::ckpt_unix_queue, objref, kUnsigned),
    CKPT_FIELD(image::ckpt_unix_queue, nr_msgs, kUnsigned),
    CKPT_FIELD(image::ckpt_unix_queue, nr_pending, kUnsigned),
    CKPT_FIELD(image::ckpt_unix_queue, data_size, kUnsigned),
};
// Each message costs its header, an address and its fds beyond its data.
constexpr uint64_t kMaxQueueTail =
    image::kMaxUnixQueueData + 4096ull * (sizeof(image::ckpt_unix_msg) + kMaxSunPath) +
    image::kMaxUnixPending * sizeof(image::ckpt_unix_pending);
CKPT_RECORD(image::CKPT_HDR_UNIX_QUEUE, "UNIX_QUEUE", image::ckpt_unix_queue, kUnixQueueFields,
            kMaxQueueTail, kRawBytes);

// Most messages one socket's queue (or one pending connection) may carry
// in an image; a real queue is bounded by the socket's buffers, far below.
constexpr uint32_t kMaxMsgsPerQueue = 4096;

std::string TypeName(uint32_t type) {
  switch (type) {
    case SOCK_STREAM: return "stream";
    case SOCK_DGRAM: return "dgram";
    case SOCK_SEQPACKET: return "seqpacket";
    default: return absl::StrCat("type ", type);
  }
}

// A kernel dev_t (sock_diag's) as stat(2) gives it.
dev_t UserDev(uint64_t kdev) {
  return makedev(static_cast<unsigned>(kdev >> 20), static_cast<unsigned>(kdev & 0xfffff));
}

bool IsAbstract(const std::string& name) { return !name.empty() && name[0] == '\0'; }
bool IsPath(const std::string& name) { return !name.empty() && name[0] != '\0'; }

// sockaddr_un for `name` (sun_path bytes); its length.
socklen_t MakeAddr(const std::string& name, struct sockaddr_un* addr) {
  memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  memcpy(addr->sun_path, name.data(), std::min<size_t>(name.size(), sizeof(addr->sun_path)));
  return static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + name.size());
}


// ------------------------------------------------------------------ dump

struct Msg {
  std::string data;
  std::string addr;            // the sender's sun_path bytes; empty: unnamed
  std::vector<uint32_t> fds;   // FILE objrefs in flight with it
  std::vector<int> raw_fds;    // ... as received here, until registered
  std::vector<int> held_fds;   // ... then: the same, now held by SockInfo::held
  bool fds_start_unknown = false;  // a stream's: which of its bytes the fds came with
  bool creds = false;
  pid_t pid = 0;
  uint32_t uid = 0, gid = 0;
};

struct Pending {
  uint64_t client_ino = 0;
  std::vector<Msg> msgs;
};

struct SockInfo {
  pid_t pid = 0;  // where it was met: a task's fd, or one of ours (in flight)
  int fd = -1;
  dev_t sock_dev = 0;
  UnixDiag diag;
  uint32_t sndbuf = 0, rcvbuf = 0;
  int peek_off = -1, rcvlowat = 1;
  int64_t rcvtimeo_ns = 0, sndtimeo_ns = 0;
  bool passcred = false;
  SockFilter filter;
  std::vector<Msg> queue;
  std::vector<Pending> pending;  // a listener's backlog, in order
  std::string dir;               // a relative path name: where it is bound
  bool hidden = false, borrowed = false, external = false;
  uint64_t pending_on = 0;       // a client waiting in this listener's backlog
  bool peer_gone = false;
  std::string peer_name;         // dgram connected outside the tree: connect by name
  uint32_t mode = 0, uid = 0, gid = 0;
  uint32_t cred_uid = image::kUnixNoCred, cred_gid = image::kUnixNoCred;  // SO_PEERCRED
  bool written = false;
  bool backlog_taken = false;  // its backlog was accepted here, to be read
  // The fds this process holds for the socket: a copy of it, fds in
  // flight it received, connections it accepted. Kept until the dump ends
  // (the objects refer to them by number).
  std::shared_ptr<std::vector<UniqueFd>> held = std::make_shared<std::vector<UniqueFd>>();
  int copy = -1;  // the copy, among `held`
};

absl::Status SetPeekOff(int fd, int off) {
  if (setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof(off)) != 0) {
    return ErrnoError(errno, "setsockopt SO_PEEK_OFF");
  }
  return absl::OkStatus();
}

absl::Status SetLowat(int fd, int v) {
  if (setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof(v)) != 0) {
    return ErrnoError(errno, "setsockopt SO_RCVLOWAT");
  }
  return absl::OkStatus();
}

struct Peeked {
  ssize_t n = 0;
  bool truncated = false;
  std::string addr;
  std::vector<int> fds;
  bool creds = false;
  struct ucred cred {};
};

// One recvmsg(MSG_PEEK) at offset `off` into `buf`.
absl::StatusOr<Peeked> PeekAt(int fd, int off, std::vector<char>& buf, size_t want) {
  RETURN_IF_ERROR(SetPeekOff(fd, off));
  Peeked p;
  struct sockaddr_un from {};
  struct iovec iov = {buf.data(), want};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * image::kMaxUnixMsgFds) +
                                       CMSG_SPACE(sizeof(struct ucred)) + 64];
  struct msghdr m {};
  m.msg_name = &from;
  m.msg_namelen = sizeof(from);
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof(control);
  const int flags = MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC;
  ssize_t n;
  do {
    n = recvmsg(fd, &m, flags);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    p.n = -errno;
    return p;
  }
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET) continue;
    if (c->cmsg_type == SCM_RIGHTS) {
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; i++) {
        int got;
        memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        p.fds.push_back(got);
      }
    } else if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
      p.creds = true;
      memcpy(&p.cred, CMSG_DATA(c), sizeof(p.cred));
    }
  }
  if (m.msg_flags & MSG_CTRUNC) {
    for (int f : p.fds) close(f);
    return absl::UnimplementedError("a queued message carries more ancillary data than libckpt reads");
  }
  p.n = n;
  p.truncated = static_cast<size_t>(n) > want;
  if (m.msg_namelen > offsetof(struct sockaddr_un, sun_path)) {
    p.addr.assign(from.sun_path, m.msg_namelen - offsetof(struct sockaddr_un, sun_path));
  }
  return p;
}

// The messages queued on socket `fd` (`d` as sock_diag says), read without
// taking them (MSG_PEEK at SO_PEEK_OFF offsets; the socket's own offset is
// put back). Fds in flight come back as fds of this process, in
// Msg::raw_fds.
absl::StatusOr<std::vector<Msg>> ReadQueue(int fd, const UnixDiag& d, const std::string& who) {
  const uint32_t type = d.type;
  const bool shut_rd = d.shutdown & 1;
  // A stream's (or seqpacket's) queue holds d.rqueue bytes: reading stops
  // there, since a read past the end would take a pending error (the
  // ECONNRESET of a peer that closed with data unread) with it.
  const bool counted = type == SOCK_STREAM;
  if (type != SOCK_STREAM) {
    // A datagram-style read takes a pending error before any message, even
    // a peek: an error waiting (SO_ERROR) is seen without clearing it.
    struct pollfd pfd = {fd, 0, 0};
    if (poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLERR)) {
      return absl::UnimplementedError(
          absl::StrCat(who, ": an error is pending on it (SO_ERROR): not supported yet"));
    }
  }
  ASSIGN_OR_RETURN(int saved_off, GetSockInt(fd, SOL_SOCKET, SO_PEEK_OFF, "SO_PEEK_OFF"));
  // A stream read waits for SO_RCVLOWAT bytes: 1 while the queue is read.
  ASSIGN_OR_RETURN(int saved_lowat, GetSockInt(fd, SOL_SOCKET, SO_RCVLOWAT, "SO_RCVLOWAT"));
  if (saved_lowat != 1) RETURN_IF_ERROR(SetLowat(fd, 1));
  {
    // An out-of-band byte (MSG_OOB) waiting: a peek would give it inline.
    char oob;
    if (type == SOCK_STREAM && recv(fd, &oob, 1, MSG_OOB | MSG_PEEK | MSG_DONTWAIT) == 1) {
      return absl::UnimplementedError(absl::StrCat(
          who, ": an out-of-band byte (MSG_OOB) is waiting to be read: not supported yet"));
    }
  }
  std::vector<Msg> out;
  std::vector<char> buf(256 * 1024);
  uint64_t off = 0, total = 0;
  absl::Status st;
  auto fail = [&](absl::Status s) { if (st.ok()) st = std::move(s); };
  const bool stream = type == SOCK_STREAM;
  while (st.ok()) {
    if (counted && total >= d.rqueue) break;
    if (out.size() >= kMaxMsgsPerQueue) {
      fail(absl::UnimplementedError(absl::StrCat(who, ": more than ", kMaxMsgsPerQueue,
                                                 " queued messages is more than libckpt saves")));
      break;
    }
    if (off > static_cast<uint64_t>(INT32_MAX)) {
      fail(absl::UnimplementedError(absl::StrCat(who, ": its queue is too large")));
      break;
    }
    absl::StatusOr<Peeked> p = PeekAt(fd, static_cast<int>(off), buf, buf.size());
    if (!p.ok()) {
      fail(Annotate(p.status(), who));
      break;
    }
    if (p->n == -EAGAIN) break;
    if (p->n < 0) {
      fail(ErrnoError(static_cast<int>(-p->n), who, ": reading its queue"));
      break;
    }
    // 0: the end of a shut down stream; for a datagram socket a message
    // of no bytes, unless the socket is shut down (then no more follow
    // that can be told apart from the end).
    if (p->n == 0 && p->fds.empty() && (stream || shut_rd)) break;
    if (p->truncated) {
      for (int f : p->fds) close(f);
      if (stream || static_cast<size_t>(p->n) > image::kMaxUnixQueueData) {
        fail(absl::UnimplementedError(absl::StrCat(who, ": a queued message of ", p->n,
                                                   " bytes is more than libckpt saves")));
        break;
      }
      buf.resize(static_cast<size_t>(p->n));
      continue;  // again, whole
    }
    Msg msg;
    size_t n = static_cast<size_t>(p->n);
    msg.data.assign(buf.data(), n);
    // A stream read glues messages without fds to the one with fds after
    // them, and a peek brings that one's fds with any byte before it: where
    // they start is seen only by taking the bytes (SplitAtFds).
    msg.fds_start_unknown = stream && !p->fds.empty() && n > 1;
    msg.addr = stream ? std::string() : p->addr;
    msg.raw_fds = std::move(p->fds);
    msg.creds = p->creds;
    msg.pid = p->cred.pid;
    msg.uid = p->cred.uid;
    msg.gid = p->cred.gid;
    total += n;
    off += n;
    out.push_back(std::move(msg));
    if (total > image::kMaxUnixQueueData) {
      fail(absl::UnimplementedError(absl::StrCat(who, ": more than ", image::kMaxUnixQueueData,
                                                 " queued bytes is more than libckpt saves")));
    }
  }
  absl::Status back = SetPeekOff(fd, saved_off);
  if (!back.ok()) fail(back);
  if (saved_lowat != 1) {
    absl::Status lowat = SetLowat(fd, saved_lowat);
    if (!lowat.ok()) fail(lowat);
  }
  if (!st.ok()) {
    for (Msg& m : out) {
      for (int f : m.raw_fds) close(f);
    }
    return st;
  }
  return out;
}

// Registers the fds in flight of `msgs` (fds of this process) as FILE
// objects; they stay open in `held`.
absl::Status RegisterInFlight(objhash::ObjHash& objects, std::vector<Msg>& msgs, uint32_t dump_flags,
                              std::vector<UniqueFd>& held) {
  // Held first, all of them: an error below leaves none behind.
  std::vector<std::vector<int>> fds(msgs.size());
  for (size_t i = 0; i < msgs.size(); i++) {
    for (int raw : msgs[i].raw_fds) {
      held.emplace_back(raw);
      fds[i].push_back(raw);
    }
    msgs[i].raw_fds.clear();
  }
  UniqueFd self(static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0)));
  if (!self.valid()) return ErrnoError(errno, "pidfd_open of this process");
  for (size_t i = 0; i < msgs.size(); i++) {
    for (int fd : fds[i]) {
      ASSIGN_OR_RETURN(uint32_t ref,
                       RegisterDescription(getpid(), fd, self.get(), objects, dump_flags, nullptr));
      msgs[i].fds.push_back(ref);
      msgs[i].held_fds.push_back(fd);
    }
  }
  return absl::OkStatus();
}

// Takes every message of `msgs` out of stream socket `fd` (whose queue
// they are, as peeked), and splits each whose fds came with an unknown one
// of its bytes where they do come: at the first byte read with them.
// Reading takes the bytes one at a time there (and in one read elsewhere).
absl::Status SplitAtFds(int fd, std::vector<Msg>& msgs, const std::string& who) {
  std::vector<Msg> out;
  std::vector<char> buf;
  constexpr size_t kUnknown = ~size_t{0};
  for (Msg& m : msgs) {
    const size_t n = m.data.size();
    size_t fds_at = m.fds.empty() ? n : m.fds_start_unknown ? kUnknown : 0;
    size_t at = 0;
    while (at < n) {
      const size_t want = fds_at == kUnknown ? 1 : n - at;
      buf.resize(want);
      alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * image::kMaxUnixMsgFds) +
                                           CMSG_SPACE(sizeof(struct ucred))];
      struct iovec iov = {buf.data(), want};
      struct msghdr h {};
      h.msg_iov = &iov;
      h.msg_iovlen = 1;
      h.msg_control = control;
      h.msg_controllen = sizeof(control);
      ssize_t got;
      do {
        got = recvmsg(fd, &h, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
      } while (got < 0 && errno == EINTR);
      if (got <= 0) return ErrnoError(got < 0 ? errno : EIO, who, ": taking its queue to find where fds come");
      bool with_fds = false;
      for (struct cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(&h, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        with_fds = true;
        for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
          int f;
          memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          close(f);  // the peeked copies stand for them
        }
      }
      if (with_fds && fds_at == kUnknown) fds_at = at;
      if (memcmp(buf.data(), m.data.data() + at, static_cast<size_t>(got)) != 0) {
        return absl::InternalError(absl::StrCat(who, ": its queue changed while it was read"));
      }
      at += static_cast<size_t>(got);
    }
    if (fds_at == kUnknown) return absl::InternalError(absl::StrCat(who, ": queued fds were not found again"));
    m.fds_start_unknown = false;
    if (fds_at > 0 && fds_at < n) {
      Msg before = m;
      before.data.resize(fds_at);
      before.fds.clear();
      before.held_fds.clear();
      m.data.erase(0, fds_at);
      out.push_back(std::move(before));
    }
    out.push_back(std::move(m));
  }
  msgs = std::move(out);
  return absl::OkStatus();
}

// Whether this process may send as others (SCM_CREDENTIALS of another
// process).
bool CanSendAsOthers() {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2] = {};
  if (syscall(SYS_capget, &h, d) != 0) return false;
  auto has = [&](int cap) { return (d[cap / 32].effective >> (cap % 32)) & 1; };
  return has(CAP_SYS_ADMIN) && has(CAP_SETUID) && has(CAP_SETGID);
}

// Sets SO_SNDBUF back to `value` as getsockopt gave it (the kernel doubles
// what it is told).
void RestoreSndbuf(int fd, uint32_t value) {
  const int half = static_cast<int>(value / 2);
  if (half <= 0) return;
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &half, sizeof(half)) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &half, sizeof(half));
  }
}

// Puts `msgs` back into the queue they were taken from, from its peer `from`
// (with `from_sndbuf`, as getsockopt gave it).
absl::Status Resend(int from, uint32_t from_sndbuf, const std::vector<Msg>& msgs, const std::string& who) {
  for (const Msg& m : msgs) {
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * image::kMaxUnixMsgFds) +
                                         CMSG_SPACE(sizeof(struct ucred))];
    memset(control, 0, sizeof(control));
    struct iovec iov = {const_cast<char*>(m.data.data()), m.data.size()};
    struct msghdr h {};
    h.msg_iov = &iov;
    h.msg_iovlen = 1;
    size_t clen = 0;
    auto* c = reinterpret_cast<struct cmsghdr*>(control);
    if (!m.held_fds.empty()) {
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * m.held_fds.size());
      memcpy(CMSG_DATA(c), m.held_fds.data(), sizeof(int) * m.held_fds.size());
      clen += CMSG_SPACE(sizeof(int) * m.held_fds.size());
      c = reinterpret_cast<struct cmsghdr*>(control + clen);
    }
    if (m.creds) {
      struct ucred cred = {m.pid, m.uid, m.gid};
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_CREDENTIALS;
      c->cmsg_len = CMSG_LEN(sizeof(cred));
      memcpy(CMSG_DATA(c), &cred, sizeof(cred));
      clen += CMSG_SPACE(sizeof(cred));
    }
    if (clen != 0) {
      h.msg_control = control;
      h.msg_controllen = clen;
    }
    ssize_t n;
    do {
      n = sendmsg(from, &h, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n != static_cast<ssize_t>(m.data.size())) {
      return ErrnoError(n < 0 ? errno : EIO, who, ": putting its queue back (its data is lost)");
    }
  }
  RestoreSndbuf(from, from_sndbuf);
  return absl::OkStatus();
}

// Where a path name is bound, and whether its file is still the socket's.
absl::Status LocateName(pid_t pid, SockInfo& s, const std::string& who) {
  const std::string& name = s.diag.name;
  if (!IsPath(name)) return absl::OkStatus();
  const std::string path(name.c_str());  // sun_path may carry a NUL and more
  if (pid != getpid()) {
    // A path is bound again in the restorer's root: a task in another root
    // bound it in its own.
    absl::StatusOr<std::string> root = ReadLink(absl::StrCat("/proc/", pid, "/root"));
    if (!root.ok() || *root != "/") {
      return absl::UnimplementedError(absl::StrCat(
          who, ": a unix socket bound to a path (", path, ") by a task with another root "
          "directory is not supported yet"));
    }
  }
  std::string full = path;
  if (path[0] != '/') {
    // Bound relative to the working directory of then: found only if it is
    // still the task's.
    absl::StatusOr<std::string> cwd = ReadLink(absl::StrCat("/proc/", pid, "/cwd"));
    full = absl::StrCat("/proc/", pid, "/cwd/", path);
    struct stat st;
    if (pid == getpid() || !cwd.ok() || !s.diag.has_vfs || lstat(full.c_str(), &st) != 0 ||
        st.st_ino != s.diag.vfs_ino || st.st_dev != UserDev(s.diag.vfs_dev)) {
      return absl::UnimplementedError(absl::StrCat(
          who, ": a unix socket bound to the relative name ", path,
          " whose file is not found from its task's working directory is not supported"));
    }
    s.dir = *cwd;
  }
  struct stat st;
  if (!s.diag.has_vfs || lstat(full.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode) ||
      st.st_ino != s.diag.vfs_ino || st.st_dev != UserDev(s.diag.vfs_dev)) {
    s.hidden = true;  // removed, or another file is there now
    s.dir.clear();
    return absl::OkStatus();
  }
  s.mode = st.st_mode & 07777;
  s.uid = st.st_uid;
  s.gid = st.st_gid;
  return absl::OkStatus();
}

std::string Who(pid_t pid, int fd, uint64_t ino) {
  if (pid == getpid()) return absl::StrCat(UnixName(ino), " (in flight)");
  return absl::StrCat("task ", pid, " fd ", fd, ": ", UnixName(ino));
}

absl::Status DescribeUnix(const FdProbe& p, Description*) {
  absl::StatusOr<UnixDiag> d = QueryUnixSocket(p.st.st_ino);
  if (d.ok()) {
    if (d->type != SOCK_STREAM && d->type != SOCK_DGRAM && d->type != SOCK_SEQPACKET) {
      return absl::UnimplementedError(absl::StrCat("task ", p.pid, " fd ", p.fd, ": a unix socket of ",
                                                   TypeName(d->type), " is not supported yet"));
    }
    return absl::OkStatus();
  }
  if (!absl::IsNotFound(d.status())) return Annotate(d.status(), absl::StrCat("task ", p.pid, " fd ", p.fd));
  // Another family (or a unix socket of another network namespace).
  std::string family = "another family";
  absl::StatusOr<int> dom = SocketDomain(p.pid, p.fd);
  if (dom.ok()) {
    family = *dom == AF_INET      ? "family inet"
             : *dom == AF_INET6   ? "family inet6"
             : *dom == AF_NETLINK ? "family netlink"
             : *dom == AF_PACKET  ? "family packet"
             : *dom == AF_UNIX    ? "family unix in another network namespace"
                                  : absl::StrCat("family ", *dom);
  }
  return absl::UnimplementedError(absl::StrCat("task ", p.pid, " fd ", p.fd, ": a socket of ", family,
                                               " (", p.target, ") is not supported yet"));
}

absl::StatusOr<uint32_t> RegisterUnixTarget(objhash::ObjHash& objects, const FdProbe& p,
                                            const Description&) {
  // Registered before its queue is read: a queue holding the socket's own
  // fd (or its peer's, holding this one's) finds it.
  ASSIGN_OR_RETURN(objhash::ObjHash::Found f,
                   objects.LookupAdd(kObjUnix, objhash::Identity::OfInode(p.st.st_dev, p.st.st_ino),
                                     SockInfo{}));
  if (!f.first) return f.objref;
  auto& s = std::any_cast<SockInfo&>(f.entry->data);
  s.pid = p.pid;
  s.fd = p.fd;
  s.sock_dev = p.st.st_dev;
  const std::string who = Who(p.pid, p.fd, p.st.st_ino);
  absl::StatusOr<UnixDiag> d = QueryUnixSocket(p.st.st_ino);
  if (!d.ok()) return Annotate(d.status(), who);
  s.diag = std::move(*d);
  ASSIGN_OR_RETURN(UniqueFd copy, CopyOfFd(p.pid, p.fd));
  const int c = copy.get();
  ASSIGN_OR_RETURN(int sndbuf, GetSockInt(c, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF"));
  ASSIGN_OR_RETURN(int rcvbuf, GetSockInt(c, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF"));
  s.sndbuf = static_cast<uint32_t>(sndbuf);
  s.rcvbuf = static_cast<uint32_t>(rcvbuf);
  ASSIGN_OR_RETURN(s.peek_off, GetSockInt(c, SOL_SOCKET, SO_PEEK_OFF, "SO_PEEK_OFF"));
  ASSIGN_OR_RETURN(s.rcvlowat, GetSockInt(c, SOL_SOCKET, SO_RCVLOWAT, "SO_RCVLOWAT"));
  ASSIGN_OR_RETURN(int passcred, GetSockInt(c, SOL_SOCKET, SO_PASSCRED, "SO_PASSCRED"));
  s.passcred = passcred != 0;
  ASSIGN_OR_RETURN(s.rcvtimeo_ns, GetSockTimeo(c, SO_RCVTIMEO, "SO_RCVTIMEO"));
  {
    struct ucred peer {};
    socklen_t len = sizeof(peer);
    if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &peer, &len) == 0 && peer.pid != 0) {
      s.cred_uid = peer.uid;
      s.cred_gid = peer.gid;
    }
  }
  ASSIGN_OR_RETURN(s.sndtimeo_ns, GetSockTimeo(c, SO_SNDTIMEO, "SO_SNDTIMEO"));
  ASSIGN_OR_RETURN(s.filter, GetSockFilter(c, who));
  RETURN_IF_ERROR(LocateName(p.pid, s, who));
  if (s.diag.state != kTcpListen) {
    ASSIGN_OR_RETURN(s.queue, ReadQueue(c, s.diag, who));
    for (const Msg& m : s.queue) {
      // A pid the restore cannot name again: the kernel refuses credentials
      // of a process that is gone.
      if (m.creds && (m.pid == 0 || (kill(m.pid, 0) != 0 && errno == ESRCH))) {
        for (const Msg& n : s.queue) {
          for (int f : n.raw_fds) close(f);
        }
        return absl::UnimplementedError(absl::StrCat(
            who, ": a queued message carries the credentials of process ", m.pid,
            ", which is gone or that this one cannot see: not supported"));
      }
    }
    RETURN_IF_ERROR(RegisterInFlight(objects, s.queue, p.dump_flags, *s.held));
  }
  s.copy = c;
  s.held->push_back(std::move(copy));
  return f.objref;
}

// Whose fds hold socket `ino`, outside `skip`.
std::vector<std::pair<pid_t, int>> Holders(uint64_t ino, const std::set<pid_t>& skip) {
  auto all = FdHolders("socket", {ino}, skip);
  return all.empty() ? std::vector<std::pair<pid_t, int>>{} : all.begin()->second;
}

std::string Describe(const std::map<uint64_t, UnixDiag>& all, uint64_t ino, const std::set<pid_t>& skip) {
  auto it = all.find(ino);
  std::string text = UnixName(ino);
  if (it != all.end()) absl::StrAppend(&text, " (", PrintableUnixName(it->second.name), ")");
  std::vector<std::string> who;
  for (const auto& [pid, fd] : Holders(ino, skip)) {
    who.push_back(absl::StrCat("process ", pid, " (", ProcComm(pid), ") fd ", fd));
  }
  if (!who.empty()) absl::StrAppend(&text, " held by ", absl::StrJoin(who, ", "));
  return text;
}

// Whether the dgram peer `d` can be found again by its name: abstract, or
// a path whose file is still its own.
bool ReachableByName(const UnixDiag& d) {
  if (IsAbstract(d.name)) return true;
  if (!IsPath(d.name) || d.name[0] != '/' || !d.has_vfs) return false;
  struct stat st;
  const std::string path(d.name.c_str());
  return lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == d.vfs_ino &&
         st.st_dev == UserDev(d.vfs_dev);
}

struct PeerCheck {
  std::vector<std::string> problems;
  std::set<uint64_t> external;              // tree sockets named by --external
  std::map<uint64_t, uint64_t> pending_on;  // client -> its listener (both in the tree)
  std::map<uint64_t, std::string> by_name;  // dgram -> the outside peer's name
  std::set<uint64_t> borrowed;
  std::set<uint64_t> peer_gone;
};

// The checks shared by pre-flight and dump: `socks` are the tree's unix
// sockets (inode -> where met).
absl::StatusOr<PeerCheck> CheckPeers(const std::map<uint64_t, PipeEnd>& socks,
                                     const std::set<pid_t>& tree, const std::vector<std::string>& external,
                                     bool preflight) {
  PeerCheck out;
  std::set<uint64_t> named;
  for (const std::string& name : external) {
    absl::string_view v = name;
    uint64_t ino;
    if (!absl::ConsumePrefix(&v, "unix:[") || !absl::ConsumeSuffix(&v, "]") || !absl::SimpleAtoi(v, &ino)) {
      return absl::InvalidArgumentError(
          absl::StrCat("external object '", name, "' is not a unix socket name such as unix:[12345]"));
    }
    if (!socks.count(ino) && !preflight) {
      return absl::InvalidArgumentError(absl::StrCat("external object ", name, " is not a unix socket of the tree"));
    }
    named.insert(ino);
  }
  if (socks.empty()) return out;
  ASSIGN_OR_RETURN(auto all, DumpUnixSockets());
  // Clients waiting in a listener's backlog: their own peer is an embryo
  // that sock_diag cannot name.
  std::map<uint64_t, uint64_t> waiting;  // client -> listener
  for (const auto& [ino, d] : all) {
    for (uint64_t c : d.icons) {
      if (c != 0) waiting[c] = ino;
    }
  }
  std::set<pid_t> skip = tree;
  skip.insert(getpid());
  // `ino` of the tree has `other` outside it. At pre-flight a socket no
  // process holds is not known to be outside: it may be in flight in a
  // queue of the tree, which only the dump reads.
  auto outside = [&](uint64_t ino, uint64_t other, const char* what) {
    if (named.count(ino)) {
      out.external.insert(ino);
      return;
    }
    if (preflight && Holders(other, skip).empty()) return;
    const PipeEnd& at = socks.at(ino);
    const std::string where = at.pid == getpid() ? absl::StrCat(UnixName(ino), " (in flight)")
                                                 : absl::StrCat("task ", at.pid, " fd ", at.fd, ": ", UnixName(ino));
    out.problems.push_back(absl::StrCat(where, " ", what, Describe(all, other, skip),
                                        ", outside the tree; dump it with --external ",
                                        UnixName(ino), " and restore with --inherit-fd FD:", UnixName(ino)));
  };
  for (const auto& [ino, at] : socks) {
    auto it = all.find(ino);
    if (it == all.end()) continue;  // gone meanwhile: the dump finds out
    const UnixDiag& d = it->second;
    if (d.state == kTcpListen) {
      for (uint64_t c : d.icons) {
        if (c != 0 && !socks.count(c)) {
          outside(ino, c, "has a connection not yet accepted from ");
          break;
        }
      }
      continue;
    }
    const bool named_sock = !d.name.empty();
    if (named_sock) {
      for (const auto& [other, od] : all) {
        if (other == ino || od.name != d.name) continue;
        if (IsPath(d.name) && (!d.has_vfs || !od.has_vfs || od.vfs_ino != d.vfs_ino || od.vfs_dev != d.vfs_dev)) continue;
        if (d.type == SOCK_DGRAM) continue;
        out.borrowed.insert(ino);
        break;
      }
    }
    if (d.type == SOCK_DGRAM) {
      if (d.peer != 0 && !socks.count(d.peer)) {
        auto p = all.find(d.peer);
        if (p != all.end() && ReachableByName(p->second)) {
          out.by_name[ino] = p->second.name;
        } else {
          outside(ino, d.peer, "is connected to ");
        }
      }
      continue;
    }
    if (d.peer != 0) {
      if (!socks.count(d.peer)) outside(ino, d.peer, "is connected to ");
      continue;
    }
    auto w = waiting.find(ino);
    if (w != waiting.end()) {
      if (socks.count(w->second)) {
        out.pending_on[ino] = w->second;
      } else {
        outside(ino, w->second, "waits to be accepted by ");
      }
      continue;
    }
    if (d.state == kTcpEstablished) out.peer_gone.insert(ino);
  }
  // Sockets outside the tree connected to one of the tree's (a dgram
  // client of a server in the tree): they would lose it.
  for (const auto& [ino, d] : all) {
    if (socks.count(ino) || d.peer == 0 || !socks.count(d.peer)) continue;
    if (d.type != SOCK_DGRAM) continue;  // stream peers are seen from the tree's side
    if (out.external.count(d.peer)) continue;
    outside(d.peer, ino, "has a client connected to it: ");
  }
  return out;
}

}  // namespace

bool IsUnixName(const std::string& name) { return absl::StartsWith(name, "unix:["); }

absl::StatusOr<std::vector<std::string>> UnixPeerProblems(const std::map<uint64_t, PipeEnd>& socks,
                                                           const std::set<pid_t>& tree,
                                                           const std::vector<std::string>& external) {
  ASSIGN_OR_RETURN(PeerCheck check, CheckPeers(socks, tree, external, /*preflight=*/true));
  return check.problems;
}

absl::Status ResolveUnixSockets(objhash::ObjHash& objects, const std::set<pid_t>& tree,
                                const std::vector<std::string>& external, uint32_t dump_flags) {
  std::map<uint64_t, PipeEnd> socks;
  std::map<uint64_t, SockInfo*> infos;
  for (const auto& e : objects.entries()) {
    if (e->kind != kObjUnix) continue;
    auto* s = std::any_cast<SockInfo>(&e->data);
    if (s == nullptr) continue;
    socks[s->diag.ino] = {s->pid, s->fd};
    infos[s->diag.ino] = s;
  }
  ASSIGN_OR_RETURN(PeerCheck check, CheckPeers(socks, tree, external, /*preflight=*/false));
  if (!check.problems.empty()) {
    return absl::FailedPreconditionError(absl::StrJoin(check.problems, "; "));
  }
  for (uint64_t ino : check.external) infos[ino]->external = true;
  for (uint64_t ino : check.borrowed) infos[ino]->borrowed = true;
  for (uint64_t ino : check.peer_gone) infos[ino]->peer_gone = true;
  for (const auto& [ino, name] : check.by_name) infos[ino]->peer_name = name;
  for (const auto& [client, listener] : check.pending_on) infos[client]->pending_on = listener;
  // Stream queues whose fds came with a byte a peek cannot tell: taken
  // out to see it, and put back from the peer. Refused where the peer
  // cannot send them again (the fds would come with other bytes).
  for (auto& [ino, s] : infos) {
    if (s->diag.type != SOCK_STREAM || s->external) continue;
    bool unknown = false, creds_gone = false, creds = false;
    for (const Msg& m : s->queue) {
      unknown |= m.fds_start_unknown;
      creds |= m.creds;
      creds_gone |= m.creds && kill(m.pid, 0) != 0 && errno != EPERM;
    }
    if (!unknown) continue;
    const std::string who = Who(s->pid, s->fd, ino);
    auto peer = s->diag.peer != 0 ? infos.find(s->diag.peer) : infos.end();
    std::string why;
    if (peer == infos.end() || peer->second->copy < 0 || peer->second->external) {
      why = "its peer is gone";
    } else if ((s->diag.shutdown & 1) || (peer->second->diag.shutdown & 2)) {
      why = "it is shut down";
    } else if (creds_gone) {
      why = "a process whose credentials the queue carries is gone";
    } else if (creds && !CanSendAsOthers()) {
      why = "this process lacks CAP_SYS_ADMIN, CAP_SETUID or CAP_SETGID to send the credentials again";
    }
    if (!why.empty()) {
      return absl::UnimplementedError(absl::StrCat(
          who, ": a queued message carries fds after bytes sent without them; which byte the fds "
          "come with shows only to a read that takes the bytes, which libckpt then sends again "
          "from the peer, but ", why));
    }
    {
      // Room for the whole queue in the peer's send buffer, or no taking:
      // SO_SNDBUFFORCE where allowed, else as much as SO_SNDBUF gives.
      const int big = 64 << 20;
      const int pc = peer->second->copy;
      if (setsockopt(pc, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big)) != 0) {
        setsockopt(pc, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
        uint64_t need = 0;
        for (const Msg& m : s->queue) need += m.data.size() + 1024;  // and each skb's overhead
        absl::StatusOr<int> got = GetSockInt(pc, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF");
        if (!got.ok() || static_cast<uint64_t>(*got) < need) {
          RestoreSndbuf(pc, peer->second->sndbuf);
          return absl::UnimplementedError(absl::StrCat(
              who, ": its queue (", need, " bytes to send again) does not fit its peer's send "
              "buffer, and SO_SNDBUFFORCE is not allowed here"));
        }
      }
    }
    ASSIGN_OR_RETURN(int peek_off, GetSockInt(s->copy, SOL_SOCKET, SO_PEEK_OFF, "SO_PEEK_OFF"));
    absl::Status moved = SplitAtFds(s->copy, s->queue, who);
    if (moved.ok()) moved = Resend(peer->second->copy, peer->second->sndbuf, s->queue, who);
    absl::Status back = SetPeekOff(s->copy, peek_off);
    if (!moved.ok()) {
      return WithMessage(moved, absl::StrCat(moved.message(), " (its queued data may be lost)"));
    }
    RETURN_IF_ERROR(back);
  }
  // Backlogs: the connections waiting in each listener. Their data (if
  // any) is seen only by accepting them.
  std::vector<SockInfo*> to_accept;
  for (auto& [ino, s] : infos) {
    if (s->diag.state != kTcpListen || s->external) continue;
    bool data = false;
    for (uint64_t c : s->diag.icons) {
      Pending p;
      p.client_ino = c;
      if (c == 0) {
        data = true;  // its client closed: what it sent is unknown without accepting
      } else {
        absl::StatusOr<UnixDiag> cd = QueryUnixSocket(c);
        if (!cd.ok()) return Annotate(cd.status(), Who(s->pid, s->fd, ino));
        if (cd->wqueue > 0) data = true;  // its bytes wait in the connection
      }
      s->pending.push_back(std::move(p));
    }
    if (data) to_accept.push_back(s);
  }
  for (SockInfo* s : to_accept) {
    const std::string who = Who(s->pid, s->fd, s->diag.ino);
    if (dump_flags & objhash::kDumpLeaveRunning) {
      return absl::UnimplementedError(absl::StrCat(
          who, " (", PrintableUnixName(s->diag.name), ") has ", s->pending.size(),
          " connections not yet accepted, with data sent on them: the kernel shows that data only "
          "to whoever accepts them, so libckpt cannot dump it with --leave-running"));
    }
  }
  for (SockInfo* s : to_accept) {
    const std::string who = Who(s->pid, s->fd, s->diag.ino);
    s->backlog_taken = true;
    for (Pending& p : s->pending) {
      UniqueFd conn(accept4(s->copy, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
      if (!conn.valid()) return ErrnoError(errno, who, ": accepting a pending connection to read it");
      struct stat cst;
      if (fstat(conn.get(), &cst) != 0) return ErrnoError(errno, who, ": stat of an accepted connection");
      absl::StatusOr<UnixDiag> cd = QueryUnixSocket(cst.st_ino);
      if (!cd.ok()) return Annotate(cd.status(), who);
      if (p.client_ino != 0 && cd->peer != p.client_ino) {
        return absl::InternalError(absl::StrCat(who, ": an accepted connection is not from ",
                                                UnixName(p.client_ino), " as its backlog said"));
      }
      ASSIGN_OR_RETURN(p.msgs, ReadQueue(conn.get(), *cd, who));
      const int taken = conn.get();
      s->held->push_back(std::move(conn));
      RETURN_IF_ERROR(RegisterInFlight(objects, p.msgs, dump_flags, *s->held));
      if (s->diag.type == SOCK_STREAM) RETURN_IF_ERROR(SplitAtFds(taken, p.msgs, who));
    }
  }
  size_t now = 0;
  for (const auto& e : objects.entries()) now += e->kind == kObjUnix;
  if (now != infos.size()) {
    return absl::UnimplementedError(
        "a unix socket in flight on a connection not yet accepted is not supported yet");
  }
  return absl::OkStatus();
}

std::string TakenBacklogs(const objhash::ObjHash& objects) {
  std::vector<std::string> taken;
  for (const auto& e : objects.entries()) {
    if (e->kind != kObjUnix) continue;
    const auto* s = std::any_cast<SockInfo>(&e->data);
    if (s != nullptr && s->backlog_taken) {
      taken.push_back(absl::StrCat(s->pending.size(), " connections not yet accepted by ",
                                   Who(s->pid, s->fd, s->diag.ino), " (",
                                   PrintableUnixName(s->diag.name), ")"));
    }
  }
  if (taken.empty()) return "";
  return absl::StrCat(absl::StrJoin(taken, ", "),
                      " were read by accepting them, and are closed: their clients see them end");
}

namespace {

absl::StatusOr<uint32_t> PeerRef(const objhash::ObjHash& objects, const SockInfo& s, uint64_t ino) {
  ASSIGN_OR_RETURN(uint32_t ref, objects.Lookup(kObjUnix, objhash::Identity::OfInode(s.sock_dev, ino)));
  if (ref == 0) {
    return absl::InternalError(absl::StrCat(UnixName(s.diag.ino), ": its peer ", UnixName(ino), " was not collected"));
  }
  return ref;
}

absl::Status CheckpointUnix(objhash::CheckpointContext& ctx, const objhash::ObjHash::Entry& entry) {
  auto& s = std::any_cast<SockInfo&>(ctx.objects->GetMutable(entry.objref)->data);
  s.written = true;
  image::ckpt_unix_sock rec{};
  rec.objref = entry.objref;
  rec.type = s.diag.type;
  rec.ino = s.diag.ino;
  rec.cred_uid = rec.pair_cred_uid = image::kUnixNoCred;
  rec.cred_gid = rec.pair_cred_gid = image::kUnixNoCred;
  std::string name, dir, peer_name;
  if (s.external) {
    rec.flags = image::kUnixExternal;
    name = UnixName(s.diag.ino);
  } else {
    const UnixDiag& d = s.diag;
    name = d.name;
    dir = s.dir;
    rec.shutdown = d.shutdown & 3;
    rec.sndbuf = s.sndbuf;
    rec.rcvbuf = s.rcvbuf;
    rec.peek_off = s.peek_off;
    rec.rcvlowat = s.rcvlowat;
    rec.rcvtimeo_ns = s.rcvtimeo_ns;
    rec.sndtimeo_ns = s.sndtimeo_ns;
    if (s.passcred) rec.flags |= image::kUnixPassCred;
    if (s.hidden) rec.flags |= image::kUnixNameHidden;
    if (s.borrowed) rec.flags |= image::kUnixNameBorrowed;
    if (!s.hidden && IsPath(name)) {
      rec.mode = s.mode;
      rec.uid = s.uid;
      rec.gid = s.gid;
    }
    if (d.type != SOCK_DGRAM) {
      rec.cred_uid = s.cred_uid;
      rec.cred_gid = s.cred_gid;
    }
    if (d.state == kTcpListen) {
      rec.state = image::kUnixListening;
      rec.backlog = d.wqueue;
    } else if (s.pending_on != 0) {
      rec.state = image::kUnixConnected;
      rec.flags |= image::kUnixPending;
      ASSIGN_OR_RETURN(rec.peer_ref, PeerRef(*ctx.objects, s, s.pending_on));
      // What the listener's side will see: the ids of the task that
      // connected it (as far as one can tell: the one that holds it).
      if (s.pid != getpid()) {
        absl::StatusOr<std::string> status = ReadFile(absl::StrCat("/proc/", s.pid, "/status"));
        for (absl::string_view line : absl::StrSplit(status.ok() ? *status : "", '\n')) {
          uint32_t* to = absl::ConsumePrefix(&line, "Uid:") ? &rec.pair_cred_uid
                         : absl::ConsumePrefix(&line, "Gid:") ? &rec.pair_cred_gid
                                                              : nullptr;
          std::vector<absl::string_view> ids = absl::StrSplit(line, '\t', absl::SkipWhitespace());
          if (to != nullptr && ids.size() >= 2) absl::SimpleAtoi(ids[1], to);  // effective
        }
      }
    } else if (s.peer_gone && d.type != SOCK_DGRAM) {
      rec.state = image::kUnixConnected;
      rec.flags |= image::kUnixPeerGone;
    } else if (d.peer != 0 && !s.peer_name.empty()) {
      rec.state = image::kUnixConnected;
      rec.flags |= image::kUnixPeerByName;
      peer_name = s.peer_name;
    } else if (d.peer != 0) {
      rec.state = image::kUnixConnected;
      if (d.peer == d.ino) {
        return absl::UnimplementedError(absl::StrCat(Who(s.pid, s.fd, d.ino),
                                                     ": a dgram socket connected to itself is not supported"));
      }
      ASSIGN_OR_RETURN(rec.peer_ref, PeerRef(*ctx.objects, s, d.peer));
      const auto& peer = std::any_cast<const SockInfo&>(ctx.objects->Get(rec.peer_ref)->data);
      const bool mutual = peer.diag.peer == d.ino;
      if (peer.external) {
        return absl::UnimplementedError(absl::StrCat(
            Who(s.pid, s.fd, d.ino), ": its peer ", UnixName(peer.diag.ino),
            " is external: a socket connected to an external socket is not supported"));
      }
      const bool paired = d.type != SOCK_DGRAM || (mutual && d.name.empty() && peer.diag.name.empty());
      if (paired) {
        if (!mutual) {
          return absl::InternalError(absl::StrCat(Who(s.pid, s.fd, d.ino), ": its peer ",
                                                  UnixName(peer.diag.ino), " is connected elsewhere"));
        }
        if (s.borrowed && peer.borrowed) {
          return absl::UnimplementedError(absl::StrCat(
              Who(s.pid, s.fd, d.ino), ": both ends of a connection borrow a listener's name"));
        }
        if (peer.written) {
          rec.flags |= image::kUnixPairTaker;
        } else {
          rec.flags |= image::kUnixPairMaker;
          if (d.type != SOCK_DGRAM) {
            rec.pair_cred_uid = peer.cred_uid;
            rec.pair_cred_gid = peer.cred_gid;
          }
          if (peer.borrowed) {
            rec.flags |= image::kUnixPeerBorrowed;
            peer_name = peer.diag.name;
          }
        }
      } else if (peer.diag.name.empty()) {
        return absl::UnimplementedError(absl::StrCat(
            Who(s.pid, s.fd, d.ino), ": a dgram socket connected to ", UnixName(peer.diag.ino),
            ", which has no name and is not connected back to it, is not supported"));
      }
    }
  }
  rec.name_len = static_cast<uint32_t>(name.size());
  rec.dir_len = static_cast<uint32_t>(dir.size());
  rec.peer_name_len = static_cast<uint32_t>(peer_name.size());
  const std::vector<struct sock_filter> none;
  const std::vector<struct sock_filter>& filter = s.external ? none : s.filter.insns;
  rec.nr_filter = static_cast<uint32_t>(filter.size());
  if (!s.external && s.filter.locked) rec.flags |= image::kUnixFilterLocked;
  struct iovec parts[5] = {{&rec, sizeof(rec)},
                           {name.data(), name.size()},
                           {dir.data(), dir.size()},
                           {peer_name.data(), peer_name.size()},
                           {const_cast<struct sock_filter*>(filter.data()), filter.size() * sizeof(struct sock_filter)}};
  return ctx.writer->AppendV(image::CKPT_HDR_UNIX_SOCK, parts, 5);
}

void AppendMsgs(objhash::CheckpointContext& ctx, const std::vector<Msg>& msgs, std::string* out,
                uint64_t* data_size) {
  for (const Msg& m : msgs) {
    image::ckpt_unix_msg h{};
    h.len = static_cast<uint32_t>(m.data.size());
    h.addr_len = static_cast<uint32_t>(m.addr.size());
    h.nr_fds = static_cast<uint32_t>(m.fds.size());
    if (m.creds) {
      h.flags = image::kUnixMsgCreds;
      h.pid = m.pid;
      h.uid = m.uid;
      h.gid = m.gid;
      absl::StatusOr<uint32_t> ref = ctx.objects->Lookup(objhash::ObjKind::kPid, objhash::Identity::OfPid(m.pid));
      h.pid_ref = ref.ok() ? *ref : 0;
    }
    out->append(reinterpret_cast<const char*>(&h), sizeof(h));
    out->append(m.addr);
    for (uint32_t f : m.fds) out->append(reinterpret_cast<const char*>(&f), sizeof(f));
    out->append(m.data);
    *data_size += m.data.size();
  }
}

absl::Status CheckpointUnixQueue(objhash::CheckpointContext& ctx, const objhash::ObjHash::Entry& entry) {
  const auto& s = std::any_cast<const SockInfo&>(entry.data);
  image::ckpt_unix_queue rec{};
  rec.objref = entry.objref;
  std::string tail;
  if (!s.external) {
    rec.nr_msgs = static_cast<uint32_t>(s.queue.size());
    AppendMsgs(ctx, s.queue, &tail, &rec.data_size);
    rec.nr_pending = static_cast<uint32_t>(s.pending.size());
    for (const Pending& p : s.pending) {
      image::ckpt_unix_pending h{};
      if (p.client_ino != 0) {
        ASSIGN_OR_RETURN(h.client_ref, PeerRef(*ctx.objects, s, p.client_ino));
      }
      h.nr_msgs = static_cast<uint32_t>(p.msgs.size());
      tail.append(reinterpret_cast<const char*>(&h), sizeof(h));
      AppendMsgs(ctx, p.msgs, &tail, &rec.data_size);
    }
  }
  if (tail.size() > kMaxQueueTail) {
    return absl::UnimplementedError(absl::StrCat(Who(s.pid, s.fd, s.diag.ino),
                                                 ": its queues are larger than libckpt saves"));
  }
  return ctx.writer->AppendStructWith(image::CKPT_HDR_UNIX_QUEUE, rec, tail.data(), tail.size());
}

// --------------------------------------------------------------- restore

// Runs `fn` on a thread of its own whose root and working directory are
// `root` and `cwd` (either may be empty: unchanged): a name bound or looked
// up there resolves inside, while every other thread keeps its own.
// The ids a connection is made with (SO_PEERCRED shows them to the other
// end); kUnixNoCred: the restorer's.
struct Ids {
  uint32_t uid = image::kUnixNoCred;
  uint32_t gid = image::kUnixNoCred;
  bool set() const { return uid != image::kUnixNoCred || gid != image::kUnixNoCred; }
};

absl::Status InDirAs(const std::string& root, const std::string& cwd, const Ids& as,
                     const std::function<absl::Status()>& fn) {
  if (root.empty() && cwd.empty() && !as.set()) return fn();
  absl::Status st;
  std::thread t;
  auto body = [&] {
    if (unshare(CLONE_FS) != 0) {
      st = ErrnoError(errno, "unshare(CLONE_FS)");
      return;
    }
    if (!root.empty() && (chroot(root.c_str()) != 0 || chdir("/") != 0)) {
      st = ErrnoError(errno, "chroot ", root);
      return;
    }
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) {
      st = ErrnoError(errno, "chdir ", cwd);
      return;
    }
    // This thread's own effective ids only (the raw syscalls: glibc's
    // would change every thread's); the thread ends after fn.
    if (as.gid != image::kUnixNoCred && syscall(SYS_setresgid, -1, as.gid, -1) != 0) {
      st = ErrnoError(errno, "setresgid to ", as.gid);
      return;
    }
    if (as.uid != image::kUnixNoCred && syscall(SYS_setresuid, -1, as.uid, -1) != 0) {
      st = ErrnoError(errno, "setresuid to ", as.uid);
      return;
    }
    st = fn();
  };
  try {
    t = std::thread(body);
  } catch (const std::system_error& e) {
    return absl::ResourceExhaustedError(absl::StrCat("starting a thread: ", e.what()));
  }
  t.join();
  return st;
}

absl::Status InDir(const std::string& root, const std::string& cwd, const std::function<absl::Status()>& fn) {
  return InDirAs(root, cwd, Ids{}, fn);
}

// What the restore keeps of one socket, for its link and the late pass.
struct Restored {
  uint32_t type = 0;
  uint32_t state = 0;
  uint32_t flags = 0;
  uint32_t shutdown = 0;
  uint32_t peer_ref = 0;
  uint32_t sndbuf = 0;
  std::string name;
  std::string root;  // the private directory a hidden name is bound in
  std::string dir;   // a relative name's directory
  std::string peer_name;
  Ids pair_ids;      // a client waiting in a backlog: the ids it connects with
  int fd = -1;       // the restorer's (owned by the restore table)
  uint64_t ino = 0;
  SockFilter filter;  // attached once its queue is full again (a filter drops what it refuses)
};

struct RemoveTree {
  std::string path;
  ~RemoveTree() {
    if (path.empty()) return;
    nftw(path.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return remove(p); }, 16,
         FTW_DEPTH | FTW_PHYS);
  }
};

struct UnixState {
  std::map<uint32_t, Restored> socks;
  std::map<uint32_t, UniqueFd> stash;  // ends made by their peer, for the taker
  std::map<uint32_t, UniqueFd> temps;  // the other end of a connection whose peer is gone
  std::map<std::string, int> listeners;  // abstract name -> a restored listener
  std::map<std::string, UniqueFd> senders;  // a sender's name -> a socket bound to it
  std::shared_ptr<RemoveTree> hidden = std::make_shared<RemoveTree>();
  int next_hidden = 0;
  int steps = 0, steps_done = 0;  // queue steps left for the late pass, and run
  bool have_bound = false;
  std::set<std::pair<uint64_t, uint64_t>> bound;  // (dev, ino) of socket files bound now
  std::set<uint32_t> queued;             // sockets whose UNIX_QUEUE was read
  std::set<uint32_t> pending_connected;  // pending clients connected again
};

std::shared_ptr<UnixState> StateOf(objhash::RestoreContext& ctx) {
  std::any& a = (*ctx.kind_state)["unix"];
  if (!a.has_value()) a = std::make_shared<UnixState>();
  return std::any_cast<std::shared_ptr<UnixState>>(a);
}

absl::StatusOr<std::string> NewHiddenRoot(UnixState& st, const std::string& name) {
  if (st.hidden->path.empty()) {
    char tmpl[] = "/tmp/ckpt-hidden-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return ErrnoError(errno, "mkdtemp ", tmpl);
    st.hidden->path = tmpl;
  }
  // Searchable inside (a connection may be made with another's ids); the
  // directory above is this process's only.
  std::string root = absl::StrCat(st.hidden->path, "/", st.next_hidden++);
  if (mkdir(root.c_str(), 0711) != 0) return ErrnoError(errno, "mkdir ", root);
  // The directories the name lies in, inside.
  const std::string path(name.c_str());
  if (absl::StrContains(absl::StrCat(path, "/"), "../")) {
    return absl::InvalidArgumentError(absl::StrCat("the socket name ", path, " has a '..' in it"));
  }
  const std::string rooted = path.empty() || path[0] == '/' ? path : "/" + path;
  size_t at = 0;
  while ((at = rooted.find('/', at + 1)) != std::string::npos) {
    std::string d = root + rooted.substr(0, at);
    if (mkdir(d.c_str(), 0711) != 0 && errno != EEXIST) return ErrnoError(errno, "mkdir ", d);
  }
  return root;
}

absl::Status BindIn(int fd, const std::string& name, const std::string& root, const std::string& dir) {
  return InDir(root, dir, [&]() -> absl::Status {
    struct sockaddr_un a;
    socklen_t len = MakeAddr(name, &a);
    if (bind(fd, reinterpret_cast<struct sockaddr*>(&a), len) != 0) {
      return ErrnoError(errno, "bind to ", PrintableUnixName(name));
    }
    return absl::OkStatus();
  });
}

absl::Status ConnectIn(int fd, const std::string& name, const std::string& root, const std::string& dir,
                       const Ids& as = {}) {
  return InDirAs(root, dir, as, [&]() -> absl::Status {
    struct sockaddr_un a;
    socklen_t len = MakeAddr(name, &a);
    int r;
    do {
      r = connect(fd, reinterpret_cast<struct sockaddr*>(&a), len);
    } while (r != 0 && errno == EINTR);
    if (r != 0) return ErrnoError(errno, "connect to ", PrintableUnixName(name));
    return absl::OkStatus();
  });
}

// Binds a path name where it was: a stale socket file there (one no live
// socket is bound to: the dumped process's) is replaced; anything else
// there is refused.
absl::Status BindPath(UnixState& st, int fd, const std::string& name, const std::string& dir,
                      const image::ckpt_unix_sock& rec) {
  const std::string path(name.c_str());
  const std::string full = path[0] == '/' ? path : absl::StrCat(dir, "/", path);
  struct stat old;
  if (lstat(full.c_str(), &old) == 0) {
    if (!S_ISSOCK(old.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the unix socket ", UnixName(rec.ino), " was bound to ", full, ", which is now not a socket"));
    }
    if (!st.have_bound) {
      ASSIGN_OR_RETURN(auto all, DumpUnixSockets());
      for (const auto& [ino, d] : all) {
        if (d.has_vfs) st.bound.insert({static_cast<uint64_t>(UserDev(d.vfs_dev)), d.vfs_ino});
      }
      st.have_bound = true;
    }
    if (st.bound.count({static_cast<uint64_t>(old.st_dev), static_cast<uint64_t>(old.st_ino)})) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the unix socket ", UnixName(rec.ino), " was bound to ", full,
          ", where another socket is bound now"));
    }
    if (unlink(full.c_str()) != 0) return ErrnoError(errno, "removing the stale socket file ", full);
  }
  RETURN_IF_ERROR(BindIn(fd, name, "", path[0] == '/' ? "" : dir));
  struct stat now;
  if (lstat(full.c_str(), &now) != 0 || !S_ISSOCK(now.st_mode)) return ErrnoError(errno, "stat ", full);
  if (st.have_bound) st.bound.insert({static_cast<uint64_t>(now.st_dev), static_cast<uint64_t>(now.st_ino)});
  if (fchmodat(AT_FDCWD, full.c_str(), rec.mode, 0) != 0) return ErrnoError(errno, "chmod ", full);
  if (fchownat(AT_FDCWD, full.c_str(), rec.uid, rec.gid, AT_SYMLINK_NOFOLLOW) != 0) {
    return ErrnoError(errno, "chown ", full);
  }
  return absl::OkStatus();
}

// Binds `fd` to its own name, as the record says.
absl::Status BindOwn(UnixState& st, int fd, const std::string& name, const std::string& dir,
                     const image::ckpt_unix_sock& rec, Restored& r) {
  if (name.empty() || (rec.flags & image::kUnixNameBorrowed)) return absl::OkStatus();
  if (IsAbstract(name)) return BindIn(fd, name, "", "");
  if (rec.flags & image::kUnixNameHidden) {
    ASSIGN_OR_RETURN(r.root, NewHiddenRoot(st, name));
    RETURN_IF_ERROR(BindIn(fd, name, r.root, ""));
    // Its clients in the tree connect with their own ids.
    const std::string file = r.root + (name[0] == '/' ? "" : "/") + std::string(name.c_str());
    if (chmod(file.c_str(), 0777) != 0) return ErrnoError(errno, "chmod ", file);
    return absl::OkStatus();
  }
  r.dir = dir;
  return BindPath(st, fd, name, dir, rec);
}

// A connected pair whose end `borrowed_first` (or the other) has a name
// borrowed from a listener: made through a listener of that name (the
// restored one, for an abstract name that one holds; else a temporary one,
// in a private directory for a path). Returns {the borrowing end, the other}.
// `client_sees` and `server_sees`: the ids each end is to see as its
// peer's (SO_PEERCRED): a temporary listener listens with the first, the
// client connects with the second.
absl::StatusOr<std::pair<UniqueFd, UniqueFd>> PairThroughListener(UnixState& st, uint32_t type,
                                                                   const std::string& name,
                                                                   const Ids& client_sees,
                                                                   const Ids& server_sees) {
  UniqueFd temp;
  int listener = -1;
  std::string root;
  if (IsAbstract(name) && st.listeners.count(name)) {
    listener = st.listeners[name];
  } else {
    temp.reset(socket(AF_UNIX, static_cast<int>(type) | SOCK_CLOEXEC, 0));
    if (!temp.valid()) return ErrnoError(errno, "socket");
    if (IsPath(name)) {
      ASSIGN_OR_RETURN(root, NewHiddenRoot(st, name));
    }
    RETURN_IF_ERROR(BindIn(temp.get(), name, root, ""));
    if (IsPath(name) && name[0] == '/') {
      // Reachable by the client's ids, inside its private directory.
      const std::string file = root + std::string(name.c_str());
      if (chmod(file.c_str(), 0777) != 0) return ErrnoError(errno, "chmod ", file);
    }
    RETURN_IF_ERROR(InDirAs("", "", client_sees, [&]() -> absl::Status {
      if (listen(temp.get(), 1) != 0) return ErrnoError(errno, "listen");
      return absl::OkStatus();
    }));
    listener = temp.get();
  }
  UniqueFd client(socket(AF_UNIX, static_cast<int>(type) | SOCK_CLOEXEC, 0));
  if (!client.valid()) return ErrnoError(errno, "socket");
  RETURN_IF_ERROR(ConnectIn(client.get(), name, root, "", server_sees));
  UniqueFd server(accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
  if (!server.valid()) return ErrnoError(errno, "accept on ", PrintableUnixName(name));
  return std::make_pair(std::move(server), std::move(client));
}

// A socket pair made with `as` (both ends see those ids as their peer's).
absl::StatusOr<std::pair<UniqueFd, UniqueFd>> MakePair(int type, const Ids& as) {
  std::pair<UniqueFd, UniqueFd> out;
  RETURN_IF_ERROR(InDirAs("", "", as, [&]() -> absl::Status {
    int sv[2];
    if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) != 0) return ErrnoError(errno, "socketpair");
    out.first.reset(sv[0]);
    out.second.reset(sv[1]);
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<objhash::RestoredObject> RestoreExternalUnix(objhash::RestoreContext& ctx,
                                                            const image::ckpt_unix_sock& u,
                                                            const std::string& name) {
  const bool given = ctx.inherited != nullptr && ctx.inherited->count(name) != 0;
  if (!given) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the image's ", name, " was connected to a process outside the tree when it was dumped: "
        "give the restore an fd in its place (--inherit-fd FD:", name, ")"));
  }
  if (ctx.inherited_used != nullptr) ctx.inherited_used->insert(name);
  const int fd = ctx.inherited->at(name);
  ASSIGN_OR_RETURN(objhash::RestoredObject obj,
                   objhash::HoldAt(ctx, u.objref, fd, absl::StrCat("--inherit-fd ", fd, ":", name)));
  Restored r;
  r.type = u.type;
  r.flags = u.flags;
  r.fd = obj.fd;
  r.ino = u.ino;
  StateOf(ctx)->socks[u.objref] = r;
  return obj;
}

absl::StatusOr<objhash::RestoredObject> RestoreUnix(objhash::RestoreContext& ctx, const image::Record&) {
  image::Reader& r = *ctx.reader;
  image::ckpt_unix_sock u;
  RETURN_IF_ERROR(r.ReadStruct(&u, sizeof(u)));
  if (u.type != SOCK_STREAM && u.type != SOCK_DGRAM && u.type != SOCK_SEQPACKET) {
    return r.FieldError("type", u.type, " is not a unix socket type");
  }
  if (u.flags & ~image::kUnixKnownFlags) return r.FieldError("flags", u.flags, " has unknown bits");
  if (u.state > image::kUnixConnected) return r.FieldError("state", u.state, " is not a socket state");
  if (u.shutdown & ~3u) return r.FieldError("shutdown", u.shutdown, " has unknown bits");
  if (u.name_len > kMaxSunPath) return r.FieldError("name_len", u.name_len, " is longer than a socket address");
  if (u.peer_name_len > kMaxSunPath) return r.FieldError("peer_name_len", u.peer_name_len, " is longer than a socket address");
  if (u.dir_len > image::kMaxPathLen) return r.FieldError("dir_len", u.dir_len, " is out of range");
  if (u.nr_filter > kMaxFilterInsns) return r.FieldError("nr_filter", u.nr_filter, " is more than a filter holds");
  if (uint64_t{u.name_len} + u.dir_len + u.peer_name_len + uint64_t{u.nr_filter} * sizeof(struct sock_filter) !=
      r.payload_remaining()) {
    return r.FieldError("name_len", u.name_len, " does not fit the record (", r.payload_remaining(),
                        " bytes left)");
  }
  // Names are bytes (an abstract one starts with a NUL); a directory is text.
  std::string name(u.name_len, '\0');
  RETURN_IF_ERROR(r.ReadPayload(name.data(), name.size()));
  ASSIGN_OR_RETURN(std::string dir, r.ReadString(u.dir_len, "dir"));
  std::string peer_name(u.peer_name_len, '\0');
  RETURN_IF_ERROR(r.ReadPayload(peer_name.data(), peer_name.size()));
  SockFilter filter;
  filter.insns.resize(u.nr_filter);
  RETURN_IF_ERROR(r.ReadPayload(filter.insns.data(), filter.insns.size() * sizeof(struct sock_filter)));
  filter.locked = u.flags & image::kUnixFilterLocked;
  if (filter.locked && u.nr_filter == 0) return r.FieldError("flags", u.flags, ": a locked filter without a filter");
  if (u.flags & image::kUnixExternal) {
    if (u.flags != image::kUnixExternal || name != UnixName(u.ino) || u.dir_len || u.peer_name_len || u.nr_filter) {
      return r.FieldError("flags", u.flags, " does not fit an external socket");
    }
    return RestoreExternalUnix(ctx, u, name);
  }
  // Which of the ways to make it the record asks for: each a state.
  const uint32_t how = u.flags & (image::kUnixPairMaker | image::kUnixPairTaker | image::kUnixPeerGone |
                                  image::kUnixPending | image::kUnixPeerByName);
  if (how & (how - 1)) return r.FieldError("flags", u.flags, " asks for two ways to connect");
  const bool connected_how = how != 0;
  if ((u.state == image::kUnixConnected) != (connected_how || u.peer_ref != 0)) {
    return r.FieldError("state", u.state, " does not fit flags ", u.flags);
  }
  const bool needs_peer = (u.flags & (image::kUnixPairMaker | image::kUnixPairTaker | image::kUnixPending)) ||
                          (u.state == image::kUnixConnected && how == 0);
  if (needs_peer != (u.peer_ref != 0) || u.peer_ref == u.objref) {
    return r.FieldError("peer_ref", u.peer_ref, " does not fit flags ", u.flags);
  }
  if (((u.flags & image::kUnixPeerByName) || (u.flags & image::kUnixPeerBorrowed)) != (u.peer_name_len != 0) ||
      ((u.flags & image::kUnixPeerBorrowed) && !(u.flags & image::kUnixPairMaker))) {
    return r.FieldError("peer_name_len", u.peer_name_len, " does not fit flags ", u.flags);
  }
  if (u.type == SOCK_DGRAM && (u.state == image::kUnixListening || (u.flags & (image::kUnixPending | image::kUnixPeerGone)))) {
    return r.FieldError("state", u.state, " does not fit a dgram socket");
  }
  if (u.type != SOCK_DGRAM && u.state == image::kUnixConnected &&
      (how == 0 || (u.flags & image::kUnixPeerByName))) {
    return r.FieldError("flags", u.flags, " does not say how to connect a ", TypeName(u.type), " socket");
  }
  if ((u.flags & image::kUnixPeerByName) && !IsAbstract(peer_name) && peer_name[0] != '/') {
    return r.FieldError("peer_name", "'", PrintableUnixName(peer_name), "' is neither absolute nor abstract");
  }
  if ((u.flags & image::kUnixNameBorrowed) && (name.empty() || u.state != image::kUnixConnected)) {
    return r.FieldError("flags", u.flags, ": a borrowed name needs a name and a connection");
  }
  if ((u.flags & image::kUnixNameHidden) && !IsPath(name)) {
    return r.FieldError("flags", u.flags, ": only a path name can be hidden");
  }
  if (u.dir_len != 0 && (!IsPath(name) || name[0] == '/' || dir[0] != '/' || (u.flags & image::kUnixNameHidden))) {
    return r.FieldError("dir", "'", dir, "' does not fit the name");
  }
  if (IsPath(name) && name[0] != '/' && u.dir_len == 0 && !(u.flags & (image::kUnixNameHidden | image::kUnixNameBorrowed))) {
    return r.FieldError("dir_len", u.dir_len, ": a relative name needs its directory");
  }
  if (u.mode & ~07777u) return r.FieldError("mode", u.mode, " has bits beyond the permissions");
  if (u.rcvtimeo_ns < 0 || u.rcvtimeo_ns > image::kMaxDurationNs) return r.FieldError("rcvtimeo_ns", u.rcvtimeo_ns);
  if (u.sndtimeo_ns < 0 || u.sndtimeo_ns > image::kMaxDurationNs) return r.FieldError("sndtimeo_ns", u.sndtimeo_ns);
  if (u.peek_off < -1) return r.FieldError("peek_off", u.peek_off);
  if (u.rcvlowat < 1) return r.FieldError("rcvlowat", u.rcvlowat);
  if ((u.state == image::kUnixListening && (u.backlog > 65535 || name.empty())) ||
      (u.state != image::kUnixListening && u.backlog != 0)) {
    return r.FieldError("backlog", u.backlog, " does not fit the socket's state");
  }

  const Ids me_ids{u.cred_uid, u.cred_gid}, pair_ids{u.pair_cred_uid, u.pair_cred_gid};
  std::shared_ptr<UnixState> st = StateOf(ctx);
  Restored res;
  res.pair_ids = pair_ids;
  res.type = u.type;
  res.state = u.state;
  res.flags = u.flags;
  res.shutdown = u.shutdown;
  res.peer_ref = u.peer_ref;
  res.sndbuf = u.sndbuf;
  res.name = name;
  res.peer_name = peer_name;
  res.ino = u.ino;
  res.filter = filter;
  const int type = static_cast<int>(u.type);
  UniqueFd sock;
  if (u.flags & image::kUnixPairTaker) {
    auto it = st->stash.find(u.objref);
    const auto peer = st->socks.find(u.peer_ref);
    if (it == st->stash.end() || peer == st->socks.end() || peer->second.peer_ref != u.objref ||
        peer->second.type != u.type) {
      return r.FieldError("peer_ref", u.peer_ref, " did not make this end of its connection");
    }
    const Restored& maker = peer->second;
    const bool borrowed_by_maker = maker.flags & image::kUnixPeerBorrowed;
    if (borrowed_by_maker != static_cast<bool>(u.flags & image::kUnixNameBorrowed) ||
        (borrowed_by_maker && maker.peer_name != name)) {
      return r.FieldError("flags", u.flags, ": its borrowed name does not match what its peer made");
    }
    sock = std::move(it->second);
    st->stash.erase(it);
  } else if (u.flags & image::kUnixPairMaker) {
    if (st->socks.count(u.peer_ref) || st->stash.count(u.peer_ref)) {
      return r.FieldError("peer_ref", u.peer_ref, " is made already");
    }
    UniqueFd other;
    if (u.flags & image::kUnixNameBorrowed) {
      ASSIGN_OR_RETURN(auto pair, PairThroughListener(*st, u.type, name, pair_ids, me_ids));
      sock = std::move(pair.first);
      other = std::move(pair.second);
    } else if (u.flags & image::kUnixPeerBorrowed) {
      ASSIGN_OR_RETURN(auto pair, PairThroughListener(*st, u.type, peer_name, me_ids, pair_ids));
      sock = std::move(pair.second);
      other = std::move(pair.first);
    } else {
      ASSIGN_OR_RETURN(std::tie(sock, other), MakePair(type, me_ids));
    }
    st->stash[u.peer_ref] = std::move(other);
  } else if (u.flags & image::kUnixPeerGone) {
    UniqueFd other;
    if (u.flags & image::kUnixNameBorrowed) {
      ASSIGN_OR_RETURN(auto pair, PairThroughListener(*st, u.type, name, Ids{}, me_ids));
      sock = std::move(pair.first);
      other = std::move(pair.second);
    } else {
      ASSIGN_OR_RETURN(std::tie(sock, other), MakePair(type, me_ids));
    }
    st->temps[u.objref] = std::move(other);
  } else {
    if (u.flags & image::kUnixNameBorrowed) {
      return r.FieldError("flags", u.flags, ": a borrowed name needs a connection made with it");
    }
    sock.reset(socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
    if (!sock.valid()) return ErrnoError(errno, "socket");
  }
  const int fd = sock.get();
  const std::string what = absl::StrCat("unix socket ", UnixName(u.ino));
  RETURN_IF_ERROR(Annotate(BindOwn(*st, fd, name, dir, u, res), what));
  if (u.state == image::kUnixListening) {
    // With the ids its clients are to see (SO_PEERCRED).
    RETURN_IF_ERROR(InDirAs("", "", me_ids, [&]() -> absl::Status {
      if (listen(fd, static_cast<int>(u.backlog)) != 0) return ErrnoError(errno, "listen on ", what);
      return absl::OkStatus();
    }));
  }
  if (u.flags & image::kUnixPassCred) RETURN_IF_ERROR(SetSockInt(fd, SOL_SOCKET, SO_PASSCRED, 1, "SO_PASSCRED"));
  RETURN_IF_ERROR(SetSockBuf(fd, false, u.rcvbuf));
  RETURN_IF_ERROR(SetSockBuf(fd, true, u.sndbuf));
  RETURN_IF_ERROR(SetSockTimeo(fd, SO_RCVTIMEO, u.rcvtimeo_ns, "SO_RCVTIMEO"));
  RETURN_IF_ERROR(SetSockTimeo(fd, SO_SNDTIMEO, u.sndtimeo_ns, "SO_SNDTIMEO"));
  if (u.rcvlowat != 1) RETURN_IF_ERROR(SetSockInt(fd, SOL_SOCKET, SO_RCVLOWAT, u.rcvlowat, "SO_RCVLOWAT"));
  if (u.peek_off != -1) RETURN_IF_ERROR(SetSockInt(fd, SOL_SOCKET, SO_PEEK_OFF, u.peek_off, "SO_PEEK_OFF"));
  ASSIGN_OR_RETURN(objhash::RestoredObject obj, objhash::HoldAt(ctx, u.objref, fd, what));
  res.fd = obj.fd;
  if (u.state == image::kUnixListening && IsAbstract(name)) st->listeners[name] = obj.fd;
  if (!name.empty() && !(u.flags & image::kUnixNameBorrowed) && u.type == SOCK_DGRAM) {
    // A sender of queued messages, found by its name.
    int copy = fcntl(obj.fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0) return ErrnoError(errno, "dup of ", what);
    st->senders[name] = UniqueFd(copy);
  }
  st->socks[u.objref] = std::move(res);
  return obj;
}

// Once every object exists: the socket's peer is what its flags say.
absl::Status CheckPeer(const image::Reader& r, const UnixState& st, uint32_t objref, const Restored& me) {
  if (me.peer_ref == 0 || (me.flags & image::kUnixExternal)) return absl::OkStatus();
  auto it = st.socks.find(me.peer_ref);
  if (it == st.socks.end()) return r.FieldError("peer_ref", me.peer_ref, " of ", objref, " is not a unix socket");
  const Restored& peer = it->second;
  bool ok = !(peer.flags & image::kUnixExternal) && peer.type == me.type;
  if (me.flags & (image::kUnixPairMaker | image::kUnixPairTaker)) {
    const uint32_t other = (me.flags & image::kUnixPairMaker) ? image::kUnixPairTaker : image::kUnixPairMaker;
    ok = ok && peer.peer_ref == objref && (peer.flags & other);
  } else if (me.flags & image::kUnixPending) {
    ok = ok && peer.state == image::kUnixListening;
  } else {
    ok = ok && me.type == SOCK_DGRAM && !peer.name.empty();
  }
  if (!ok) return r.FieldError("peer_ref", me.peer_ref, " of ", objref, " does not fit its flags");
  return absl::OkStatus();
}

struct ParsedMsg {
  image::ckpt_unix_msg h;
  std::string addr;
  std::vector<uint32_t> fds;
  std::string data;
};

absl::StatusOr<std::vector<ParsedMsg>> ReadMsgs(objhash::RestoreContext& ctx, uint32_t count,
                                                uint64_t* data_left) {
  image::Reader& r = *ctx.reader;
  if (count > kMaxMsgsPerQueue) return r.FieldError("nr_msgs", count, " is more than a queue holds");
  std::vector<ParsedMsg> out;
  for (uint32_t i = 0; i < count; i++) {
    ParsedMsg m;
    if (r.payload_remaining() < sizeof(m.h)) return r.FieldError("nr_msgs", count, " is more than the record holds");
    RETURN_IF_ERROR(r.ReadPayload(&m.h, sizeof(m.h)));
    if (m.h.addr_len > kMaxSunPath) return r.FieldError("addr_len", m.h.addr_len, " (message ", i, ")");
    if (m.h.nr_fds > image::kMaxUnixMsgFds) return r.FieldError("nr_fds", m.h.nr_fds, " (message ", i, ")");
    if (m.h.flags & ~static_cast<uint32_t>(image::kUnixMsgCreds)) return r.FieldError("flags", m.h.flags, " (message ", i, ")");
    if (m.h.len > *data_left) return r.FieldError("len", m.h.len, " (message ", i, ") is beyond data_size");
    const uint64_t need = uint64_t{m.h.addr_len} + 4ull * m.h.nr_fds + m.h.len;
    if (need > r.payload_remaining()) return r.FieldError("len", m.h.len, " (message ", i, ") is beyond the record");
    *data_left -= m.h.len;
    m.addr.resize(m.h.addr_len);
    RETURN_IF_ERROR(r.ReadPayload(m.addr.data(), m.addr.size()));
    m.fds.resize(m.h.nr_fds);
    RETURN_IF_ERROR(r.ReadPayload(m.fds.data(), m.fds.size() * 4));
    for (uint32_t f : m.fds) {
      absl::StatusOr<const objhash::RestoredObject*> file = ctx.objects->Get(f, objhash::ObjKind::kFile);
      if (!file.ok()) return r.FieldError("fds", f, " (message ", i, ") is not a file of the image");
    }
    m.data.resize(m.h.len);
    RETURN_IF_ERROR(r.ReadPayload(m.data.data(), m.data.size()));
    out.push_back(std::move(m));
  }
  return out;
}

// Sends `m` from `from` (to `to`, when the sender is not connected to the
// receiver: sun_path bytes, in `root`/`dir`).
absl::Status SendMsg(objhash::LateContext& lc, int from, const ParsedMsg& m, const std::string* to,
                     const std::string& root, const std::string& dir, const std::string& who) {
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * image::kMaxUnixMsgFds) +
                                       CMSG_SPACE(sizeof(struct ucred))];
  memset(control, 0, sizeof(control));
  struct msghdr h {};
  struct iovec iov = {const_cast<char*>(m.data.data()), m.data.size()};
  h.msg_iov = &iov;
  h.msg_iovlen = 1;
  size_t clen = 0;
  struct cmsghdr* c = reinterpret_cast<struct cmsghdr*>(control);
  if (!m.fds.empty()) {
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * m.fds.size());
    for (size_t i = 0; i < m.fds.size(); i++) {
      ASSIGN_OR_RETURN(const objhash::RestoredObject* file, lc.objects->Get(m.fds[i], objhash::ObjKind::kFile));
      memcpy(CMSG_DATA(c) + i * sizeof(int), &file->fd, sizeof(int));
    }
    clen += CMSG_SPACE(sizeof(int) * m.fds.size());
    c = reinterpret_cast<struct cmsghdr*>(control + clen);
  }
  if (m.h.flags & image::kUnixMsgCreds) {
    struct ucred cred {};
    cred.pid = m.h.pid_ref != 0 ? lc.pid_here(m.h.pid_ref) : m.h.pid;
    if (cred.pid == 0) cred.pid = m.h.pid;
    cred.uid = m.h.uid;
    cred.gid = m.h.gid;
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_CREDENTIALS;
    c->cmsg_len = CMSG_LEN(sizeof(cred));
    memcpy(CMSG_DATA(c), &cred, sizeof(cred));
    clen += CMSG_SPACE(sizeof(cred));
  }
  if (clen != 0) {
    h.msg_control = control;
    h.msg_controllen = clen;
  }
  return InDir(root, dir, [&]() -> absl::Status {
    struct sockaddr_un a;
    if (to != nullptr) {
      h.msg_namelen = MakeAddr(*to, &a);
      h.msg_name = &a;
    }
    ssize_t n;
    do {
      n = sendmsg(from, &h, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno == ESRCH && (m.h.flags & image::kUnixMsgCreds)) {
        return absl::FailedPreconditionError(absl::StrCat(
            who, ": a queued message carries the credentials of process ", m.h.pid, ", which is gone"));
      }
      return ErrnoError(errno, who, ": refilling its queue");
    }
    if (static_cast<size_t>(n) != m.data.size()) {
      return absl::InternalError(absl::StrCat(who, ": refilling its queue: sent ", n, " of ", m.data.size(), " bytes"));
    }
    return absl::OkStatus();
  });
}

// Sends `msgs` from `from`, which may have a smaller send buffer than the
// queue needs at this moment: raised while they go, then set back.
absl::Status SendAll(objhash::LateContext& lc, int from, uint32_t from_sndbuf, const std::vector<ParsedMsg>& msgs,
                     const std::string* to, const std::string& root, const std::string& dir,
                     const std::string& who) {
  if (msgs.empty()) return absl::OkStatus();
  const int big = 64 << 20;
  setsockopt(from, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big));
  absl::Status st;
  for (const ParsedMsg& m : msgs) {
    st = SendMsg(lc, from, m, to, root, dir, who);
    if (!st.ok()) break;
  }
  absl::Status back = from_sndbuf != 0 ? SetSockBuf(from, true, from_sndbuf) : absl::OkStatus();
  return st.ok() ? back : st;
}

absl::Status Shut(int fd, uint32_t bits, const std::string& who) {
  if (bits == 0) return absl::OkStatus();
  const int how = bits == 3 ? SHUT_RDWR : bits == 1 ? SHUT_RD : SHUT_WR;
  if (shutdown(fd, how) != 0 && errno != ENOTCONN) return ErrnoError(errno, who, ": shutdown");
  return absl::OkStatus();
}

struct QueueStep {
  uint32_t objref = 0;
  std::vector<ParsedMsg> msgs;
  struct PendingConn {
    image::ckpt_unix_pending h;
    std::vector<ParsedMsg> msgs;
  };
  std::vector<PendingConn> pending;
};

// The late pass for one socket: its backlog connected again, its queue
// refilled from the right senders, its shutdown.
absl::Status RunQueueStep(objhash::LateContext& lc, UnixState& st, const QueueStep& q) {
  Restored& me = st.socks.at(q.objref);
  if (me.flags & image::kUnixExternal) return absl::OkStatus();
  const std::string who = absl::StrCat("unix socket ", UnixName(me.ino));
  for (const QueueStep::PendingConn& p : q.pending) {
    UniqueFd temp;
    int client = -1;
    uint32_t sndbuf = 0;
    Ids as;
    if (p.h.client_ref != 0) {
      const Restored& c = st.socks.at(p.h.client_ref);
      client = c.fd;
      sndbuf = c.sndbuf;
      as = c.pair_ids;
    } else {
      temp.reset(socket(AF_UNIX, static_cast<int>(me.type) | SOCK_CLOEXEC, 0));
      if (!temp.valid()) return ErrnoError(errno, "socket");
      client = temp.get();
    }
    // Non-blocking: a full backlog fails rather than waits.
    const int fl = fcntl(client, F_GETFL);
    fcntl(client, F_SETFL, fl | O_NONBLOCK);
    absl::Status c = ConnectIn(client, me.name, me.root, me.dir, as);
    fcntl(client, F_SETFL, fl);
    RETURN_IF_ERROR(Annotate(c, absl::StrCat(who, ": a connection of its backlog")));
    if (p.h.client_ref != 0) st.pending_connected.insert(p.h.client_ref);
    RETURN_IF_ERROR(SendAll(lc, client, sndbuf, p.msgs, nullptr, "", "", who));
  }
  if (me.type != SOCK_DGRAM || (me.flags & (image::kUnixPairMaker | image::kUnixPairTaker))) {
    // A connection: from its peer (or the end left of a peer that closed).
    if (!q.msgs.empty()) {
      int from = -1;
      uint32_t sndbuf = 0;
      auto temp = st.temps.find(q.objref);
      if (temp != st.temps.end()) {
        from = temp->second.get();
      } else if (me.peer_ref != 0 && st.socks.count(me.peer_ref) &&
                 (me.flags & (image::kUnixPairMaker | image::kUnixPairTaker))) {
        from = st.socks.at(me.peer_ref).fd;
        sndbuf = st.socks.at(me.peer_ref).sndbuf;
      } else {
        return absl::FailedPreconditionError(absl::StrCat(who, ": has queued data but no peer to send it"));
      }
      RETURN_IF_ERROR(SendAll(lc, from, sndbuf, q.msgs, nullptr, "", "", who));
    }
    st.temps.erase(q.objref);  // a peer that closed: closed again
  } else {
    // A dgram socket: each message from a socket with its sender's name,
    // sent while this one is not connected yet; it connects after the
    // last message from another than its peer (those came before it
    // connected), so that its peer's messages after that are not bound by
    // the queue limit of unconnected senders.
    const Restored* peer = me.peer_ref != 0 && st.socks.count(me.peer_ref) ? &st.socks.at(me.peer_ref) : nullptr;
    bool connected = false;
    auto connect_me = [&]() -> absl::Status {
      if (connected) return absl::OkStatus();
      connected = true;
      if (peer != nullptr) return Annotate(ConnectIn(me.fd, peer->name, peer->root, peer->dir), who);
      if (me.flags & image::kUnixPeerByName) return Annotate(ConnectIn(me.fd, me.peer_name, "", ""), who);
      return absl::OkStatus();
    };
    const std::string peer_name = peer != nullptr ? peer->name : me.peer_name;
    // A peer outside the tree (connected by name): its messages come from
    // a stand-in bound to its name, which must send before the connect.
    size_t connect_at = peer == nullptr ? q.msgs.size() : 0;  // connect before message connect_at
    for (size_t i = 0; peer != nullptr && i < q.msgs.size(); i++) {
      if (q.msgs[i].addr != peer_name) connect_at = i + 1;
    }
    for (size_t i = 0; i < q.msgs.size(); i++) {
      const ParsedMsg& m = q.msgs[i];
      if (me.name.empty()) {
        return absl::UnimplementedError(absl::StrCat(
            who, ": a dgram socket without a name with messages queued from others than its peer"));
      }
      if (i == connect_at) RETURN_IF_ERROR(connect_me());
      int from = -1;
      auto s = st.senders.find(m.addr);
      UniqueFd unnamed;
      if (m.addr.empty()) {
        unnamed.reset(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        if (!unnamed.valid()) return ErrnoError(errno, "socket");
        from = unnamed.get();
      } else if (s != st.senders.end()) {
        from = s->second.get();
      } else {
        // A sender that is gone, or outside the tree: one bound to its
        // name, where no one finds it.
        UniqueFd temp(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        if (!temp.valid()) return ErrnoError(errno, "socket");
        std::string root;
        if (IsPath(m.addr)) {
          ASSIGN_OR_RETURN(root, NewHiddenRoot(st, m.addr));
        }
        RETURN_IF_ERROR(Annotate(BindIn(temp.get(), m.addr, root, ""),
                                 absl::StrCat(who, ": a sender of its queued messages")));
        from = temp.get();
        st.senders[m.addr] = std::move(temp);
      }
      RETURN_IF_ERROR(SendMsg(lc, from, m, &me.name, me.root, me.dir, who));
    }
    RETURN_IF_ERROR(connect_me());
  }
  return absl::OkStatus();
}

// Once every queue is full again: what was shut down is shut down (a
// shutdown earlier would stop the sends into its peer).
// The sockets made to send are closed then too (a name a gone sender had
// is free again before the tree runs).
absl::Status ShutDownAll(UnixState& st) {
  for (const auto& [objref, s] : st.socks) {
    if (s.flags & image::kUnixExternal) continue;
    if ((s.flags & image::kUnixPending) && !st.pending_connected.count(objref)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the image's unix socket ", UnixName(s.ino), " (objref ", objref,
          ") waits in a backlog that does not list it"));
    }
    RETURN_IF_ERROR(Shut(s.fd, s.shutdown, absl::StrCat("unix socket ", UnixName(s.ino))));
    RETURN_IF_ERROR(Annotate(SetSockFilter(s.fd, s.filter), absl::StrCat("unix socket ", UnixName(s.ino))));
  }
  st.senders.clear();
  st.temps.clear();
  return absl::OkStatus();
}

absl::Status RestoreUnixQueue(objhash::RestoreContext& ctx, const image::Record&) {
  image::Reader& r = *ctx.reader;
  image::ckpt_unix_queue q;
  RETURN_IF_ERROR(r.ReadStruct(&q, sizeof(q)));
  std::shared_ptr<UnixState> st = StateOf(ctx);
  auto me = st->socks.find(q.objref);
  if (me == st->socks.end()) return r.FieldError("objref", q.objref, " is not a unix socket of the image");
  if (!st->queued.insert(q.objref).second) return r.FieldError("objref", q.objref, " has a second queue");
  if (!st->stash.empty()) {
    return r.FieldError("objref", q.objref, ": the other end of the connection made by ",
                        st->stash.begin()->first, "'s peer was never restored");
  }
  RETURN_IF_ERROR(CheckPeer(r, *st, q.objref, me->second));
  if (q.data_size > image::kMaxUnixQueueData) return r.FieldError("data_size", q.data_size);
  if (q.nr_pending > image::kMaxUnixPending) return r.FieldError("nr_pending", q.nr_pending);
  const Restored& sock = me->second;
  if ((sock.flags & image::kUnixExternal) && (q.nr_msgs || q.nr_pending || q.data_size)) {
    return r.FieldError("nr_msgs", q.nr_msgs, ": an external socket has no queue in the image");
  }
  if (q.nr_pending != 0 && sock.state != image::kUnixListening) {
    return r.FieldError("nr_pending", q.nr_pending, ": only a listener has a backlog");
  }
  if (q.nr_msgs != 0 && sock.state == image::kUnixListening) {
    return r.FieldError("nr_msgs", q.nr_msgs, ": a listener has no data of its own");
  }
  auto step = std::make_shared<QueueStep>();
  step->objref = q.objref;
  uint64_t left = q.data_size;
  ASSIGN_OR_RETURN(step->msgs, ReadMsgs(ctx, q.nr_msgs, &left));
  for (const ParsedMsg& m : step->msgs) {
    if (sock.type != SOCK_DGRAM && !m.addr.empty()) return r.FieldError("addr_len", m.h.addr_len, ": a connection's data has no sender address");
  }
  std::set<uint32_t> clients;
  for (uint32_t i = 0; i < q.nr_pending; i++) {
    QueueStep::PendingConn p;
    if (r.payload_remaining() < sizeof(p.h)) return r.FieldError("nr_pending", q.nr_pending, " is more than the record holds");
    RETURN_IF_ERROR(r.ReadPayload(&p.h, sizeof(p.h)));
    if (p.h.reserved != 0 || p.h.reserved2 != 0) return r.FieldError("reserved", p.h.reserved, " is not zero");
    if (p.h.client_ref != 0) {
      auto c = st->socks.find(p.h.client_ref);
      if (c == st->socks.end() || !(c->second.flags & image::kUnixPending) || c->second.peer_ref != q.objref ||
          c->second.type != sock.type || !clients.insert(p.h.client_ref).second) {
        return r.FieldError("client_ref", p.h.client_ref, " is not a client waiting on this listener");
      }
    }
    ASSIGN_OR_RETURN(p.msgs, ReadMsgs(ctx, p.h.nr_msgs, &left));
    for (const ParsedMsg& m : p.msgs) {
      if (!m.addr.empty()) return r.FieldError("addr_len", m.h.addr_len, ": a connection's data has no sender address");
    }
    step->pending.push_back(std::move(p));
  }
  if (left != 0 || r.payload_remaining() != 0) {
    return r.FieldError("data_size", q.data_size, " does not match its messages");
  }
  st->steps++;
  return ctx.Later([st, step](objhash::LateContext& lc) -> absl::Status {
    RETURN_IF_ERROR(RunQueueStep(lc, *st, *step));
    if (++st->steps_done == st->steps) return ShutDownAll(*st);
    return absl::OkStatus();
  });
}

// ------------------------------------------------------- the unix fd kind

bool ClaimsUnix(const FdProbe& p) { return S_ISSOCK(p.st.st_mode); }

absl::StatusOr<UniqueFd> OpenUnix(objhash::RestoreContext& ctx, const image::ckpt_file& rec, const std::string& path,
                                  const objhash::RestoredObject* sock) {
  int fd = fcntl(sock->fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return ErrnoError(errno, "dup of ", path);
  UniqueFd out(fd);
  std::shared_ptr<UnixState> st = StateOf(ctx);
  auto it = st->socks.find(sock->objref);
  const bool external = it != st->socks.end() && (it->second.flags & image::kUnixExternal);
  // A socket has one description: its flags are set on it.
  constexpr int kStatusFlags = O_NONBLOCK | O_APPEND;
  if (!external && fcntl(fd, F_SETFL, static_cast<int>(rec.flags) & kStatusFlags) != 0) {
    return ErrnoError(errno, "F_SETFL on ", path);
  }
  return out;
}

absl::Status CheckUnix(objhash::RestoreContext& ctx, const image::ckpt_file& rec, const std::string& path, int,
                       const struct stat& st) {
  ASSIGN_OR_RETURN(const objhash::RestoredObject* sock, ctx.objects->Get(rec.target_ref, kObjUnix));
  std::shared_ptr<UnixState> state = StateOf(ctx);
  auto it = state->socks.find(sock->objref);
  if (it != state->socks.end() && (it->second.flags & image::kUnixExternal)) return absl::OkStatus();
  return CheckFileType(rec, path, st);
}

const FdKindOps kUnixKind = {
    .name = "unix socket",
    .file_kind = image::kFileUnixSocket,
    .order = 25,
    .file_type = S_IFSOCK,
    .seekable = false,
    .by_path = false,
    .has_target = true,
    .target_kind = kObjUnix,
    .claims = ClaimsUnix,
    .describe = DescribeUnix,
    .register_target = RegisterUnixTarget,
    .open = OpenUnix,
    .check = CheckUnix,
};

[[maybe_unused]] const bool kRegistered =
    RegisterFdKind(&kUnixKind) &&
    objhash::RegisterHandler({kObjUnix, "UNIX_SOCK", image::CKPT_HDR_UNIX_SOCK, CheckpointUnix, RestoreUnix,
                              {image::CKPT_HDR_UNIX_QUEUE, CheckpointUnixQueue, RestoreUnixQueue}});

}  // namespace
}  // namespace ckpt::fs
