/*
 * Unix socket pairs of each type (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET)
 * between a parent and its forked child, with 100 messages queued each way
 * on each pair and none read before the dump. Message i is i + 1 bytes long
 * (the datagram pair's message 50 is a zero-length datagram) and every byte
 * is derived from (type, direction, index, position), so a lost, repeated,
 * merged or split message shows.
 *
 * Options set before the dump, and every socket's options read back with
 * getsockopt/fcntl then, are compared with what the restored sockets say:
 *  - the parent's stream end: SO_SNDBUF, SO_RCVBUF (the kernel doubles what
 *    was asked), SO_PASSCRED on, SO_RCVTIMEO 1.5 s, SO_SNDTIMEO 2.25 s (the
 *    kernel keeps timeouts in jiffies, rounded up: 2.252 s at HZ=250; the
 *    value read back before the dump is the one compared), SO_RCVLOWAT 3;
 *    and a 2-instruction socket filter (SO_ATTACH_FILTER);
 *  - the parent's seqpacket end: O_NONBLOCK;
 *  - the parent's and the child's datagram ends: F_SETOWN to their own pid;
 *  - the child's datagram end: another SO_SNDBUF (120000, read back 240000);
 *  - the child's stream end: SO_PEEK_OFF 5;
 *  - every end: SO_TYPE, SO_DOMAIN, SO_PROTOCOL, SO_PASSCRED (off where not
 *    set), SO_PEEK_OFF (-1 where not set), F_GETFL, F_GETOWN, and unnamed
 *    getsockname/getpeername.
 *
 * After SIGUSR1 (the parent passes it on to the child) each side reads the
 * 100 messages of each type: each datagram or seqpacket recv gives exactly
 * one message of the expected length and bytes, the stream gives their
 * concatenation (on the parent's end, with SO_PASSCRED, every piece with
 * the child's pid, uid and gid); then a new message each way on each pair (they are still
 * connected), and nothing more is queued. The child exits 0 only if all its
 * checks passed; the parent folds its status into the verdict.
 */
#define _GNU_SOURCE
#include <linux/filter.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "subject.h"

#define NMSG 100
#define NTYPES 3

static const int types[NTYPES] = {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET};
static const char *names[NTYPES] = {"stream", "dgram", "seqpacket"};
static const char *who = "parent";
static pid_t peer_pid; /* the other side's */

/* Message i of pair t sent in direction dir (0: parent to child). */
static size_t msg_len(int t, int i) {
  return (types[t] == SOCK_DGRAM && i == 50) ? 0 : (size_t)i + 1;
}
static unsigned char msg_byte(int t, int dir, int i, size_t j) {
  return (unsigned char)(i * 131 + j * 7 + dir * 53 + t * 17 + (j >> 3) + 1);
}
static void fill(unsigned char *buf, int t, int dir, int i) {
  for (size_t j = 0; j < msg_len(t, i); j++) buf[j] = msg_byte(t, dir, i, j);
}

/* recv that waits for data on a non-blocking socket and past SO_RCVTIMEO. */
static ssize_t recv_wait(int fd, void *buf, size_t len, int flags) {
  for (;;) {
    ssize_t r = recv(fd, buf, len, flags);
    if (r >= 0) return r;
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return r;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    poll(&p, 1, -1);
  }
}

/* Sends all of buf (a stream may take it in pieces). */
static int send_all(int fd, const void *buf, size_t len) {
  size_t at = 0;
  while (at < len) {
    ssize_t w = send(fd, (const char *)buf + at, len - at, MSG_NOSIGNAL);
    if (w < 0 && (errno == EINTR || errno == EAGAIN)) {
      struct pollfd p = {.fd = fd, .events = POLLOUT};
      poll(&p, 1, -1);
      continue;
    }
    if (w < 0) return 0;
    at += (size_t)w;
  }
  return 1;
}

/* Reads len bytes; with `queued`, bytes that must all be there already
 * (sent before the dump): a missing one fails rather than waits forever. */
static int read_all(int fd, unsigned char *buf, size_t len, int queued) {
  size_t at = 0;
  while (at < len) {
    ssize_t r = queued ? recv(fd, buf + at, len - at, MSG_DONTWAIT) : recv_wait(fd, buf + at, len - at, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return 0;
    at += (size_t)r;
  }
  return 1;
}

struct sockstate {
  int type, domain, protocol, sndbuf, rcvbuf, passcred, lowat, peek_off, flags, owner, filter_len, filter_k;
  struct timeval rcvtimeo, sndtimeo;
  socklen_t namelen, peerlen;
  struct sockaddr_un name, peer;
};

static int intopt(int fd, int opt) {
  int v = -1;
  socklen_t len = sizeof(v);
  if (getsockopt(fd, SOL_SOCKET, opt, &v, &len) != 0) return -1000 - errno;
  return v;
}

static void snapshot(int fd, struct sockstate *s) {
  memset(s, 0, sizeof(*s));
  s->type = intopt(fd, SO_TYPE);
  s->domain = intopt(fd, SO_DOMAIN);
  s->protocol = intopt(fd, SO_PROTOCOL);
  s->sndbuf = intopt(fd, SO_SNDBUF);
  s->rcvbuf = intopt(fd, SO_RCVBUF);
  s->passcred = intopt(fd, SO_PASSCRED);
  s->lowat = intopt(fd, SO_RCVLOWAT);
  s->peek_off = intopt(fd, SO_PEEK_OFF);
  s->flags = fcntl(fd, F_GETFL);
  s->owner = fcntl(fd, F_GETOWN);
  struct sock_filter insns[8];
  socklen_t n = 8;
  if (getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, insns, &n) != 0) n = 0;
  s->filter_len = (int)n;
  s->filter_k = n > 1 ? (int)insns[1].k : -1;
  socklen_t len = sizeof(s->rcvtimeo);
  getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &s->rcvtimeo, &len);
  len = sizeof(s->sndtimeo);
  getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &s->sndtimeo, &len);
  s->namelen = sizeof(s->name);
  if (getsockname(fd, (struct sockaddr *)&s->name, &s->namelen) != 0) s->namelen = 9999;
  s->peerlen = sizeof(s->peer);
  if (getpeername(fd, (struct sockaddr *)&s->peer, &s->peerlen) != 0) s->peerlen = 9999;
}

#define SAME_INT(field) \
  SUBJECT_CHECK(a->field == b->field, "%s %s end: " #field " is %d, was %d before the dump", \
                who, names[t], b->field, a->field)

static void compare(int t, const struct sockstate *a, const struct sockstate *b) {
  SAME_INT(type);
  SAME_INT(domain);
  SAME_INT(protocol);
  SAME_INT(sndbuf);
  SAME_INT(rcvbuf);
  SAME_INT(passcred);
  SAME_INT(lowat);
  SAME_INT(peek_off);
  SAME_INT(flags);
  SAME_INT(owner);
  SAME_INT(filter_len);
  SAME_INT(filter_k);
  SUBJECT_CHECK(a->rcvtimeo.tv_sec == b->rcvtimeo.tv_sec && a->rcvtimeo.tv_usec == b->rcvtimeo.tv_usec,
                "%s %s end: SO_RCVTIMEO %ld.%06ld, was %ld.%06ld", who, names[t],
                (long)b->rcvtimeo.tv_sec, (long)b->rcvtimeo.tv_usec, (long)a->rcvtimeo.tv_sec,
                (long)a->rcvtimeo.tv_usec);
  SUBJECT_CHECK(a->sndtimeo.tv_sec == b->sndtimeo.tv_sec && a->sndtimeo.tv_usec == b->sndtimeo.tv_usec,
                "%s %s end: SO_SNDTIMEO %ld.%06ld, was %ld.%06ld", who, names[t],
                (long)b->sndtimeo.tv_sec, (long)b->sndtimeo.tv_usec, (long)a->sndtimeo.tv_sec,
                (long)a->sndtimeo.tv_usec);
  SUBJECT_CHECK(a->namelen == b->namelen && memcmp(&a->name, &b->name, a->namelen < sizeof(a->name) ? a->namelen : 0) == 0,
                "%s %s end: getsockname length %u, was %u", who, names[t], b->namelen, a->namelen);
  SUBJECT_CHECK(a->peerlen == b->peerlen && memcmp(&a->peer, &b->peer, a->peerlen < sizeof(a->peer) ? a->peerlen : 0) == 0,
                "%s %s end: getpeername length %u, was %u", who, names[t], b->peerlen, a->peerlen);
}

/* Queues the 100 messages of every pair in direction dir. */
static int send_messages(const int *fds, int dir) {
  unsigned char buf[256];
  for (int t = 0; t < NTYPES; t++) {
    for (int i = 0; i < NMSG; i++) {
      fill(buf, t, dir, i);
      size_t len = msg_len(t, i);
      if (types[t] == SOCK_STREAM) {
        if (!send_all(fds[t], buf, len)) return 0;
      } else if (send(fds[t], buf, len, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)len) {
        subject_fail("setup: %s %s message %d: %s", who, names[t], i, strerror(errno));
        return 0;
      }
    }
  }
  return 1;
}

/* read_all for bytes queued before the dump on a socket with SO_PASSCRED:
 * every piece comes with its sender's credentials, the peer's. */
static int read_with_creds(int fd, unsigned char *buf, size_t len) {
  size_t at = 0;
  while (at < len) {
    union {
      char buf[CMSG_SPACE(sizeof(struct ucred))];
      struct cmsghdr align;
    } u;
    struct iovec iov = {.iov_base = buf + at, .iov_len = len - at};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
    ssize_t r = recvmsg(fd, &mh, MSG_DONTWAIT);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return 0;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    struct ucred cred = {0, 0, 0};
    if (cm != NULL && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_CREDENTIALS) {
      memcpy(&cred, CMSG_DATA(cm), sizeof(cred));
    }
    if (cred.pid != peer_pid || cred.uid != getuid() || cred.gid != getgid()) {
      subject_fail("%s stream: bytes %zu..%zu came with credentials pid %d uid %d gid %d, want %d %d %d", who, at,
                   at + (size_t)r, cred.pid, cred.uid, cred.gid, peer_pid, getuid(), getgid());
      errno = 0;
      return 0;
    }
    at += (size_t)r;
  }
  return 1;
}

/* Reads and checks the 100 messages of pair t that came in direction dir. */
static void check_messages(int fd, int t, int dir) {
  unsigned char want[256], got[512];
  if (types[t] == SOCK_STREAM) {
    static unsigned char all[NMSG * NMSG], expect[NMSG * NMSG];
    size_t total = 0;
    for (int i = 0; i < NMSG; i++) {
      fill(expect + total, t, dir, i);
      total += msg_len(t, i);
    }
    int creds = intopt(fd, SO_PASSCRED) == 1;
    if (!(creds ? read_with_creds(fd, all, total) : read_all(fd, all, total, 1))) {
      subject_fail("%s stream: fewer than the %zu bytes queued (%s)", who, total, strerror(errno));
      return;
    }
    for (size_t j = 0; j < total; j++) {
      if (all[j] != expect[j]) {
        subject_fail("%s stream: byte %zu is %u, want %u", who, j, all[j], expect[j]);
        return;
      }
    }
    return;
  }
  for (int i = 0; i < NMSG; i++) {
    fill(want, t, dir, i);
    size_t len = msg_len(t, i);
    struct iovec iov = {.iov_base = got, .iov_len = sizeof(got)};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    ssize_t r;
    do {
      r = recvmsg(fd, &mh, MSG_DONTWAIT); /* queued before the dump: there now */
    } while (r < 0 && errno == EINTR);
    if (r != (ssize_t)len || (mh.msg_flags & MSG_TRUNC)) {
      subject_fail("%s %s message %d: %zd bytes (flags 0x%x%s%s), want %zu", who, names[t], i, r,
                   mh.msg_flags, r < 0 ? ", " : "", r < 0 ? strerror(errno) : "", len);
      return;
    }
    if (memcmp(got, want, len) != 0) {
      subject_fail("%s %s message %d: other bytes than were sent", who, names[t], i);
      return;
    }
  }
}

/* Nothing queued: EAGAIN, or (stream, seqpacket) the end of the stream once
 * the peer has passed its own checks and exited. A datagram pair has no end
 * of stream, and a 0 there is a zero-length datagram. */
static void nothing_more(int fd, int t) {
  char c;
  ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
  SUBJECT_CHECK((r < 0 && errno == EAGAIN) || (r == 0 && types[t] != SOCK_DGRAM), "%s %s: more queued than was sent (recv %zd, %s)", who,
                names[t], r, r < 0 ? strerror(errno) : "data");
}

/* The side's checks after the restore: fds[t] is its end of pair t. */
static void after_restore(const int *fds, int dir_in, const struct sockstate *before) {
  for (int t = 0; t < NTYPES; t++) {
    struct sockstate now;
    snapshot(fds[t], &now);
    compare(t, &before[t], &now);
  }
  for (int t = 0; t < NTYPES; t++) check_messages(fds[t], t, dir_in);
  /* Still connected: one new message each way. */
  char out[64], in[64];
  for (int t = 0; t < NTYPES; t++) {
    int n = snprintf(out, sizeof(out), "after restore %s from %d", names[t], 1 - dir_in);
    SUBJECT_CHECK(send_all(fds[t], out, (size_t)n), "%s %s: send after restore: %s", who,
                  names[t], strerror(errno));
  }
  for (int t = 0; t < NTYPES; t++) {
    int n = snprintf(out, sizeof(out), "after restore %s from %d", names[t], dir_in);
    memset(in, 0, sizeof(in));
    int ok = types[t] == SOCK_STREAM ? read_all(fds[t], (unsigned char *)in, (size_t)n, 0)
                                     : recv_wait(fds[t], in, sizeof(in), 0) == n;
    SUBJECT_CHECK(ok && memcmp(in, out, (size_t)n) == 0, "%s %s: the message after restore is '%s'",
                  who, names[t], in);
    nothing_more(fds[t], t);
  }
}

int main(void) {
  int pairs[NTYPES][2], sync[2];
  for (int t = 0; t < NTYPES; t++) {
    if (socketpair(AF_UNIX, types[t], 0, pairs[t])) return 2;
  }
  if (pipe(sync)) return 2;
  int parent_fds[NTYPES] = {pairs[0][0], pairs[1][0], pairs[2][0]};
  int child_fds[NTYPES] = {pairs[0][1], pairs[1][1], pairs[2][1]};

  /* The parent's stream end carries the socket options. */
  int s = parent_fds[0], v;
  v = 150000;
  setsockopt(s, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
  v = 100000;
  setsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
  v = 1;
  setsockopt(s, SOL_SOCKET, SO_PASSCRED, &v, sizeof(v));
  v = 3;
  setsockopt(s, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof(v));
  struct timeval rcv = {1, 500000}, snd = {2, 250000};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &rcv, sizeof(rcv));
  setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &snd, sizeof(snd));
  fcntl(parent_fds[2], F_SETFL, fcntl(parent_fds[2], F_GETFL) | O_NONBLOCK);
  fcntl(parent_fds[1], F_SETOWN, getpid());
  /* And a classic BPF filter that lets everything through (0x7fffffff). */
  struct sock_filter accept_all[2] = {BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0), BPF_STMT(BPF_RET | BPF_K, 0x7fffffff)};
  struct sock_fprog prog = {2, accept_all};
  if (setsockopt(s, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog))) return 2;

  subject_install();
  fflush(stdout);
  pid_t child = fork();
  if (child < 0) return 2;
  if (child == 0) {
    who = "child";
    peer_pid = getppid();
    close(sync[0]);
    for (int t = 0; t < NTYPES; t++) close(parent_fds[t]);
    v = 120000;
    setsockopt(child_fds[1], SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
    fcntl(child_fds[1], F_SETOWN, getpid());
    v = 5;
    setsockopt(child_fds[0], SOL_SOCKET, SO_PEEK_OFF, &v, sizeof(v));
    struct sockstate before[NTYPES];
    for (int t = 0; t < NTYPES; t++) snapshot(child_fds[t], &before[t]);
    if (before[1].sndbuf != 240000 || before[1].owner != getpid() || before[0].peek_off != 5) {
      subject_fail("child setup: sndbuf %d owner %d", before[1].sndbuf, before[1].owner);
      _exit(2);
    }
    if (!send_messages(child_fds, 1)) _exit(2);
    if (write(sync[1], "c", 1) != 1) _exit(2);
    close(sync[1]);
    subject_wait();
    after_restore(child_fds, 0, before);
    fflush(stdout);
    _exit(subject_failures ? 1 : 0);
  }
  close(sync[1]);
  peer_pid = child;
  for (int t = 0; t < NTYPES; t++) close(child_fds[t]);
  struct sockstate before[NTYPES];
  for (int t = 0; t < NTYPES; t++) snapshot(parent_fds[t], &before[t]);
  if (before[0].sndbuf != 300000 || before[0].rcvbuf != 200000 || before[0].passcred != 1 ||
      before[0].lowat != 3 || before[0].rcvtimeo.tv_sec != 1 || before[0].rcvtimeo.tv_usec != 500000 ||
      before[0].sndtimeo.tv_sec != 2 || before[0].sndtimeo.tv_usec < 250000 ||
      !(before[2].flags & O_NONBLOCK) || before[1].owner != getpid() || before[1].passcred != 0) {
    printf("FAIL: setup: the options did not take\n");
    return 2;
  }
  if (!send_messages(parent_fds, 0)) return 2;
  char c;
  if (read(sync[0], &c, 1) != 1) return 2; /* the child's messages are queued */
  close(sync[0]);
  printf("CHILDREN %d\n", child);
  subject_ready();
  subject_wait();
  kill(child, SIGUSR1);
  after_restore(parent_fds, 1, before);
  int status = 0;
  SUBJECT_CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "the child did not pass (status 0x%x)", status);
  return subject_verdict();
}
