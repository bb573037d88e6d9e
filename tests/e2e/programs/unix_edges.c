/*
 * Unix socket states at the edges, one per mode (argv[1]); each says
 * READY, and after SIGUSR1 checks what it sees and says PASS or FAIL.
 *   oob      a stream pair with an out-of-band byte (MSG_OOB) waiting:
 *            the dump must refuse it (a peek would give the byte inline);
 *            the tree then still reads "ab", the byte, "cd".
 *   relative a listener bound to a relative name, whose task then changed
 *            directory: the dump must refuse it (where the name was bound
 *            is not known); the tree still accepts by the real path.
 *   gonefd   a stream whose peer sent "HDR1", then "PAY" with an fd, and
 *            closed: the dump must refuse it (which byte the fd comes
 *            with shows only to a read that takes the bytes, and nothing
 *            can send them again); the tree still reads HDR1 without fds.
 *   seqpend  a seqpacket listener whose one pending connection carries
 *            "hi" from a client that closed: after the restore it is
 *            accepted, reads "hi", then end of file.
 *   dgorder  a dgram socket that got messages from S, P, S and then
 *            connected to P: after the restore they come in that order,
 *            and P can still send to it.
 *   peekoff  a stream pair with SO_PEEK_OFF 2 on the reader, "HDR1" and
 *            "PAY" with an fd queued: a dump that leaves it running keeps
 *            the offset and the messages (fd with PAY only).
 *   peercred a child running as uid 1234, gid 2345 holds a socket pair it
 *            made, a connection to its parent's listener, and a listener
 *            of its own with a connection from the parent waiting; the
 *            parent holds the accepted end. After the restore every
 *            SO_PEERCRED uid and gid is what it was (the listener's side
 *            of the waiting connection sees the parent's once accepted).
 *            Needs a user namespace that maps those ids.
 * argv[2]: a directory for the relative name (mode relative only).
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "subject.h"

static int send_fd(int s, const char *data, int fd) {
  char ctl[CMSG_SPACE(sizeof(int))];
  memset(ctl, 0, sizeof(ctl));
  struct iovec iov = {(void *)data, strlen(data)};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof(int));
  return sendmsg(s, &m, 0) == (ssize_t)strlen(data);
}

/* Reads up to n bytes without waiting; *nfds: the fds that came (closed). */
static ssize_t recv_n(int s, char *buf, size_t n, int *nfds) {
  char ctl[256];
  struct iovec iov = {buf, n};
  struct msghdr h = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
  ssize_t r = recvmsg(s, &h, MSG_DONTWAIT);
  *nfds = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&h); r >= 0 && c != NULL; c = CMSG_NXTHDR(&h, c)) {
    if (c->cmsg_type != SCM_RIGHTS) continue;
    int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    for (int i = 0; i < count; i++) {
      int f;
      memcpy(&f, CMSG_DATA(c) + (size_t)i * sizeof(int), sizeof(int));
      close(f);
    }
    *nfds += count;
  }
  return r;
}

static socklen_t abstract(struct sockaddr_un *a, const char *name) {
  memset(a, 0, sizeof(*a));
  a->sun_family = AF_UNIX;
  int n = snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "%s-%d", name, getpid());
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/* Reads "HDR1" (no fds) then "PAY" (one fd) from `s`. */
static void check_hdr_pay(int s) {
  char buf[16];
  int nf;
  ssize_t n = recv_n(s, buf, 4, &nf);
  SUBJECT_CHECK(n == 4 && memcmp(buf, "HDR1", 4) == 0 && nf == 0, "HDR1: %zd bytes, %d fds", n, nf);
  n = recv_n(s, buf, 3, &nf);
  SUBJECT_CHECK(n == 3 && memcmp(buf, "PAY", 3) == 0 && nf == 1, "PAY: %zd bytes, %d fds", n, nf);
}

/* SO_PEERCRED of `s` is uid/gid. */
static void check_peer(int s, uid_t uid, gid_t gid, const char *what) {
  struct ucred c = {0};
  socklen_t l = sizeof(c);
  SUBJECT_CHECK(getsockopt(s, SOL_SOCKET, SO_PEERCRED, &c, &l) == 0 && c.uid == uid && c.gid == gid,
                "%s: SO_PEERCRED uid %u gid %u, want %u %u", what, c.uid, c.gid, uid, gid);
}

static int peercred_main(void) {
  struct sockaddr_un la, ca;
  socklen_t ll = abstract(&la, "libckpt-peercred-parent"), cl = abstract(&ca, "libckpt-peercred-child");
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  if (l < 0 || bind(l, (struct sockaddr *)&la, ll) || listen(l, 4)) return 2;
  int sync[2];
  if (pipe(sync)) return 2;
  subject_install();
  pid_t child = fork();
  if (child == 0) {
    close(sync[0]);
    int sp[2], c = socket(AF_UNIX, SOCK_STREAM, 0), cl_sock = socket(AF_UNIX, SOCK_STREAM, 0);
    if (setresgid(2345, 2345, 2345) || setresuid(1234, 1234, 1234)) {
      printf("FAIL: setresuid: %s\n", strerror(errno));
      fflush(stdout);
      _exit(3);
    }
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) || connect(c, (struct sockaddr *)&la, ll) ||
        bind(cl_sock, (struct sockaddr *)&ca, cl) || listen(cl_sock, 4))
      _exit(2);
    check_peer(sp[0], 1234, 2345, "child's pair, before");
    check_peer(c, 0, 0, "child's client, before");
    if (write(sync[1], "r", 1) != 1) _exit(2);
    subject_wait();
    check_peer(sp[0], 1234, 2345, "child's pair");
    check_peer(sp[1], 1234, 2345, "child's pair, other end");
    check_peer(c, 0, 0, "child's client (sees its parent's listener)");
    check_peer(cl_sock, 1234, 2345, "child's listener");
    int a = accept4(cl_sock, NULL, NULL, SOCK_NONBLOCK);
    SUBJECT_CHECK(a >= 0, "accept the parent's waiting connection: %s", strerror(errno));
    if (a >= 0) check_peer(a, 0, 0, "the parent's connection, accepted");
    fflush(stdout);
    _exit(subject_failures ? 1 : 0);
  }
  close(sync[1]);
  char r;
  if (read(sync[0], &r, 1) != 1) return 2;
  int s = accept(l, NULL, NULL), w = socket(AF_UNIX, SOCK_STREAM, 0);
  if (s < 0 || w < 0 || connect(w, (struct sockaddr *)&ca, cl)) return 2;
  check_peer(s, 1234, 2345, "parent's accepted end, before");
  printf("CHILDREN %d\n", child);
  subject_ready();
  subject_wait();
  check_peer(s, 1234, 2345, "parent's accepted end");
  check_peer(w, 1234, 2345, "parent's waiting client (sees the child's listener)");
  check_peer(l, 0, 0, "parent's listener");
  kill(child, SIGUSR1);
  int status;
  waitpid(child, &status, 0);
  SUBJECT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed");
  return subject_verdict();
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  const char *mode = argv[1];
  char buf[64];
  if (strcmp(mode, "oob") == 0) {
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) || send(sp[0], "ab", 2, 0) != 2 ||
        send(sp[0], "X", 1, MSG_OOB) != 1 || send(sp[0], "cd", 2, 0) != 2)
      return 2;
    subject_ready();
    subject_wait();
    char c = 0;
    SUBJECT_CHECK(recv(sp[1], &c, 1, MSG_OOB | MSG_DONTWAIT) == 1 && c == 'X', "the out-of-band byte is gone");
    ssize_t n = recv(sp[1], buf, sizeof(buf), MSG_DONTWAIT);
    SUBJECT_CHECK(n == 2 && memcmp(buf, "ab", 2) == 0, "first read: %zd bytes", n);
    n = recv(sp[1], buf, sizeof(buf), MSG_DONTWAIT);
    SUBJECT_CHECK(n == 2 && memcmp(buf, "cd", 2) == 0, "second read: %zd bytes", n);
  } else if (strcmp(mode, "relative") == 0) {
    if (argc < 3 || chdir(argv[2])) return 2;
    unlink("rel.sock");
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, "rel.sock");
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 4) || chdir("/")) return 2;
    subject_ready();
    subject_wait();
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    snprintf(a.sun_path, sizeof(a.sun_path), "%s/rel.sock", argv[2]);
    SUBJECT_CHECK(connect(c, (struct sockaddr *)&a, sizeof(a)) == 0, "connect to %s: %s", a.sun_path, strerror(errno));
    unlink(a.sun_path);
  } else if (strcmp(mode, "gonefd") == 0) {
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) || send(sp[0], "HDR1", 4, 0) != 4 || !send_fd(sp[0], "PAY", 1))
      return 2;
    close(sp[0]);
    subject_ready();
    subject_wait();
    check_hdr_pay(sp[1]);
    int nf;
    SUBJECT_CHECK(recv_n(sp[1], buf, sizeof(buf), &nf) == 0, "no end of file after PAY");
  } else if (strcmp(mode, "seqpend") == 0) {
    struct sockaddr_un a;
    socklen_t len = abstract(&a, "libckpt-seqpend");
    int l = socket(AF_UNIX, SOCK_SEQPACKET, 0), c = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    if (l < 0 || c < 0 || bind(l, (struct sockaddr *)&a, len) || listen(l, 4) ||
        connect(c, (struct sockaddr *)&a, len) || send(c, "hi", 2, 0) != 2)
      return 2;
    close(c);
    subject_ready();
    subject_wait();
    int s = accept4(l, NULL, NULL, SOCK_NONBLOCK);
    SUBJECT_CHECK(s >= 0, "accept: %s", strerror(errno));
    if (s >= 0) {
      ssize_t n = recv(s, buf, sizeof(buf), 0);
      SUBJECT_CHECK(n == 2 && memcmp(buf, "hi", 2) == 0, "the pending message: %zd bytes", n);
      n = recv(s, buf, sizeof(buf), 0);
      SUBJECT_CHECK(n == 0, "no end of file after it: %zd", n);
    }
  } else if (strcmp(mode, "dgorder") == 0) {
    struct sockaddr_un d_a, s_a, p_a;
    socklen_t dl = abstract(&d_a, "libckpt-dgorder-d"), sl = abstract(&s_a, "libckpt-dgorder-s"),
              pl = abstract(&p_a, "libckpt-dgorder-p");
    int d = socket(AF_UNIX, SOCK_DGRAM, 0), s = socket(AF_UNIX, SOCK_DGRAM, 0), p = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (bind(d, (struct sockaddr *)&d_a, dl) || bind(s, (struct sockaddr *)&s_a, sl) ||
        bind(p, (struct sockaddr *)&p_a, pl) || sendto(s, "s1", 2, 0, (struct sockaddr *)&d_a, dl) != 2 ||
        sendto(p, "p1", 2, 0, (struct sockaddr *)&d_a, dl) != 2 ||
        sendto(s, "s2", 2, 0, (struct sockaddr *)&d_a, dl) != 2 || connect(d, (struct sockaddr *)&p_a, pl))
      return 2;
    subject_ready();
    subject_wait();
    const char *want[3] = {"s1", "p1", "s2"};
    for (int i = 0; i < 3; i++) {
      ssize_t n = recv(d, buf, sizeof(buf), MSG_DONTWAIT);
      SUBJECT_CHECK(n == 2 && memcmp(buf, want[i], 2) == 0, "message %d: %zd bytes '%.*s'", i, n, n > 0 ? (int)n : 0, buf);
    }
    SUBJECT_CHECK(sendto(p, "p2", 2, 0, (struct sockaddr *)&d_a, dl) == 2 && recv(d, buf, sizeof(buf), MSG_DONTWAIT) == 2,
                  "its peer cannot send to it");
    SUBJECT_CHECK(sendto(s, "s3", 2, 0, (struct sockaddr *)&d_a, dl) < 0, "another than its peer can send to it");
  } else if (strcmp(mode, "peercred") == 0) {
    return peercred_main();
  } else if (strcmp(mode, "peekoff") == 0) {
    int sp[2], two = 2, zero = 0;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) || setsockopt(sp[1], SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof(zero)) ||
        send(sp[0], "HDR1", 4, 0) != 4 || !send_fd(sp[0], "PAY", 1) || recv(sp[1], buf, 2, MSG_PEEK) != 2)
      return 2;
    subject_ready();
    subject_wait();
    int off = -1;
    socklen_t l = sizeof(off);
    SUBJECT_CHECK(getsockopt(sp[1], SOL_SOCKET, SO_PEEK_OFF, &off, &l) == 0 && off == two, "SO_PEEK_OFF is %d, not 2", off);
    setsockopt(sp[1], SOL_SOCKET, SO_PEEK_OFF, &(int){-1}, sizeof(int));
    check_hdr_pay(sp[1]);
  } else {
    return 2;
  }
  return subject_verdict();
}
