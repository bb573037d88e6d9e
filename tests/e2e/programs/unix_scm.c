/*
 * Descriptors and credentials in flight: sent over unix sockets, not yet
 * received at the dump, held by no task but by the kernel's queues.
 *
 * The child (the sender) has, before the dump, sent to the parent (the
 * receiver) over a stream socket pair:
 *   1. "hello"                    no descriptor
 *   2. "rights-pipe"              SCM_RIGHTS: a pipe's read end; the pipe
 *                                 holds "pipe-data", the child keeps only
 *                                 its write end
 *   3. "rights-file"              SCM_RIGHTS: a regular file open O_RDWR at
 *                                 offset 7, and the same pipe read end again
 *   4. "tail"                     no descriptor
 * and over a datagram socket pair whose receiving end has SO_PASSCRED:
 *   5. "plain-dgram"              no descriptor
 *   6. "rights-sock"              SCM_RIGHTS: one end of another stream pair,
 *                                 "queued-in-sent" queued in it; the child
 *                                 keeps the other end
 *   7. "creds"                    SCM_CREDENTIALS: the child's pid, uid, gid
 * The sender closed every descriptor it sent.
 *
 * After SIGUSR1 the parent receives them in order: each recvmsg gives one
 * message, its bytes, and exactly its descriptors (none with 1, 4 and 5);
 * every datagram carries the child's credentials (SO_PASSCRED). Then: the
 * pipe reads "pipe-data", both received read ends are one open file
 * description (O_NONBLOCK set through one shows through the other), and
 * after the parent passes SIGUSR1 on, the child's new write to the pipe is
 * read, and once the child has exited the pipe is at its end (no other
 * writer was made); the file is at offset 7 with its bytes; the received
 * socket reads "queued-in-sent" and then talks with the end the child
 * kept. argv[1], if given, is a directory for the file (left there; else
 * one is made under /tmp and removed at the end).
 */
#define _GNU_SOURCE
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "subject.h"

static const char content[] = "0123456789abcdefghijklmnopqrstuvwxyz";

static int send_with(int sock, const char *text, const int *fds, int nfds, const struct ucred *cred) {
  union {
    char buf[CMSG_SPACE(sizeof(int) * 4) + CMSG_SPACE(sizeof(struct ucred))];
    struct cmsghdr align;
  } u;
  memset(&u, 0, sizeof(u));
  struct iovec iov = {.iov_base = (void *)text, .iov_len = strlen(text)};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
  size_t clen = 0;
  struct cmsghdr *cm = (struct cmsghdr *)u.buf;
  if (nfds > 0) {
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
    memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfds);
    clen += CMSG_SPACE(sizeof(int) * (size_t)nfds);
    cm = (struct cmsghdr *)(u.buf + clen);
  }
  if (cred != NULL) {
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_CREDENTIALS;
    cm->cmsg_len = CMSG_LEN(sizeof(*cred));
    memcpy(CMSG_DATA(cm), cred, sizeof(*cred));
    clen += CMSG_SPACE(sizeof(*cred));
  }
  if (clen) {
    mh.msg_control = u.buf;
    mh.msg_controllen = clen;
  }
  return sendmsg(sock, &mh, MSG_NOSIGNAL) == (ssize_t)iov.iov_len;
}

struct received {
  ssize_t len;
  char text[64];
  int fds[8];
  int nfds;
  int has_cred;
  struct ucred cred;
  int flags;
};

static struct received recv_one(int sock, size_t want_len) {
  struct received r;
  memset(&r, 0, sizeof(r));
  union {
    char buf[CMSG_SPACE(sizeof(int) * 8) + CMSG_SPACE(sizeof(struct ucred))];
    struct cmsghdr align;
  } u;
  struct iovec iov = {.iov_base = r.text, .iov_len = want_len};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                      .msg_controllen = sizeof(u.buf)};
  do {
    r.len = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT); /* sent before the dump: there */
  } while (r.len < 0 && errno == EINTR);
  r.flags = mh.msg_flags;
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
      int n = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
      for (int i = 0; i < n && r.nfds < 8; i++) memcpy(&r.fds[r.nfds++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
    } else if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_CREDENTIALS) {
      r.has_cred = 1;
      memcpy(&r.cred, CMSG_DATA(cm), sizeof(r.cred));
    }
  }
  return r;
}

/* Receives the next message; it must be `text` with `nfds` descriptors
 * (and, on the datagram pair, the sender's credentials). */
static struct received expect_msg(int sock, const char *text, int nfds, const struct ucred *cred) {
  /* On the stream, ask for exactly the message's bytes: a descriptor comes
   * with the read of the first byte it was sent with. On the datagrams, ask
   * for more, and the datagram's own length must come back. */
  int stream = cred == NULL;
  size_t n = strlen(text);
  struct received r = recv_one(sock, stream ? n : sizeof(r.text) - 1);
  SUBJECT_CHECK(r.len == (ssize_t)n && memcmp(r.text, text, n) == 0, "message '%s': got %zd bytes '%.*s'%s",
                text, r.len, r.len > 0 ? (int)r.len : 0, r.text, r.len < 0 ? strerror(errno) : "");
  SUBJECT_CHECK(!(r.flags & (MSG_TRUNC | MSG_CTRUNC)), "message '%s': flags 0x%x", text, r.flags);
  SUBJECT_CHECK(r.nfds == nfds, "message '%s' came with %d descriptors, want %d", text, r.nfds, nfds);
  if (cred != NULL) {
    SUBJECT_CHECK(r.has_cred && r.cred.pid == cred->pid && r.cred.uid == cred->uid && r.cred.gid == cred->gid,
                  "message '%s': credentials %s pid %d uid %d gid %d, want %d %d %d", text,
                  r.has_cred ? "" : "(none)", r.cred.pid, r.cred.uid, r.cred.gid, cred->pid, cred->uid,
                  cred->gid);
  } else {
    SUBJECT_CHECK(!r.has_cred, "message '%s' on the stream came with credentials (pid %d)", text, r.cred.pid);
  }
  return r;
}

/* Reads `want`; with `queued`, bytes written before the dump, which must
 * be there already: one missing fails rather than waits forever. */
static int read_text(int fd, const char *want, int queued) {
  char buf[64] = {0};
  size_t n = strlen(want), at = 0;
  while (at < n) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (queued && poll(&p, 1, 0) != 1) {
      errno = EAGAIN;
      break;
    }
    ssize_t r = read(fd, buf + at, n - at);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    at += (size_t)r;
  }
  if (at == n && memcmp(buf, want, n) == 0) return 1;
  subject_fail("read '%s', want '%s' (%s)", buf, want, at < n ? strerror(errno) : "");
  return 0;
}

static int write_text(int fd, const char *text) {
  return write(fd, text, strlen(text)) == (ssize_t)strlen(text);
}

/* The sender: sends everything, then on SIGUSR1 writes to the pipe and
 * talks over the socket end it kept. */
static int child_main(int st, int dg, const char *file, int sync) {
  int pp[2], xs[2];
  if (pipe(pp) || socketpair(AF_UNIX, SOCK_STREAM, 0, xs)) return 2;
  if (!write_text(pp[1], "pipe-data") || !write_text(xs[0], "queued-in-sent")) return 2;
  int f = open(file, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (f < 0 || !write_text(f, content) || lseek(f, 7, SEEK_SET) != 7) return 2;
  int both[2] = {f, pp[0]};
  struct ucred me = {.pid = getpid(), .uid = getuid(), .gid = getgid()};
  if (!send_with(st, "hello", NULL, 0, NULL) || !send_with(st, "rights-pipe", &pp[0], 1, NULL) ||
      !send_with(st, "rights-file", both, 2, NULL) || !send_with(st, "tail", NULL, 0, NULL) ||
      !send_with(dg, "plain-dgram", NULL, 0, NULL) || !send_with(dg, "rights-sock", &xs[1], 1, NULL) ||
      !send_with(dg, "creds", NULL, 0, &me)) {
    printf("FAIL: child: sendmsg: %s\n", strerror(errno));
    fflush(stdout);
    return 2;
  }
  close(pp[0]);
  close(xs[1]);
  close(f);
  if (write(sync, "c", 1) != 1) return 2;
  close(sync);
  subject_wait();
  SUBJECT_CHECK(write_text(pp[1], "pipe-more"), "child: write to the pipe: %s", strerror(errno));
  read_text(xs[0], "to-kept", 0);
  SUBJECT_CHECK(write_text(xs[0], "from-kept"), "child: write to the kept end: %s", strerror(errno));
  fflush(stdout);
  return subject_failures ? 1 : 0;
}

static void remove_own(int own_dir, const char *dir, const char *file) {
  if (!own_dir) return;
  unlink(file);
  rmdir(dir);
}

int main(int argc, char **argv) {
  char dir[256], file[512];
  int own_dir = argc < 2;
  if (own_dir) {
    snprintf(dir, sizeof(dir), "/tmp/libckpt-scm-XXXXXX");
    if (mkdtemp(dir) == NULL) return 2;
  } else {
    snprintf(dir, sizeof(dir), "%s", argv[1]);
  }
  snprintf(file, sizeof(file), "%s/scm.file", dir);
  int st[2], dg[2], sync[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, st) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) || pipe(sync)) return 2;
  int one = 1;
  if (setsockopt(dg[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one))) return 2;
  subject_install();
  fflush(stdout);
  pid_t child = fork();
  if (child < 0) return 2;
  if (child == 0) {
    close(st[0]);
    close(dg[0]);
    close(sync[0]);
    _exit(child_main(st[1], dg[1], file, sync[1]));
  }
  close(st[1]);
  close(dg[1]);
  close(sync[1]);
  char c;
  if (read(sync[0], &c, 1) != 1) {
    printf("FAIL: setup: the child did not send\n");
    return 2;
  }
  close(sync[0]);
  printf("CHILDREN %d\n", child);
  subject_ready();
  subject_wait();

  struct ucred sender = {.pid = child, .uid = getuid(), .gid = getgid()};
  expect_msg(st[0], "hello", 0, NULL);
  struct received rp = expect_msg(st[0], "rights-pipe", 1, NULL);
  struct received rf = expect_msg(st[0], "rights-file", 2, NULL);
  expect_msg(st[0], "tail", 0, NULL);
  char extra;
  ssize_t r = recv(st[0], &extra, 1, MSG_DONTWAIT);
  SUBJECT_CHECK(r < 0 && errno == EAGAIN, "the stream holds more than was sent (recv %zd)", r);
  expect_msg(dg[0], "plain-dgram", 0, &sender);
  struct received rs = expect_msg(dg[0], "rights-sock", 1, &sender);
  expect_msg(dg[0], "creds", 0, &sender);
  r = recv(dg[0], &extra, 1, MSG_DONTWAIT);
  SUBJECT_CHECK(r < 0 && errno == EAGAIN, "the datagram pair holds more than was sent (recv %zd)", r);
  if (rp.nfds != 1 || rf.nfds != 2 || rs.nfds != 1) {
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    remove_own(own_dir, dir, file);
    return subject_verdict();
  }
  int pipe_a = rp.fds[0], file_fd = rf.fds[0], pipe_b = rf.fds[1], sock = rs.fds[0];

  /* The pipe: its bytes, and both read ends are one description. */
  struct stat sa, sb;
  SUBJECT_CHECK(fstat(pipe_a, &sa) == 0 && S_ISFIFO(sa.st_mode), "the first descriptor is not a pipe");
  SUBJECT_CHECK(fstat(pipe_b, &sb) == 0 && sb.st_ino == sa.st_ino, "the two pipe read ends are other pipes");
  SUBJECT_CHECK((fcntl(pipe_a, F_GETFL) & O_ACCMODE) == O_RDONLY, "the pipe end is not the read end");
  fcntl(pipe_a, F_SETFL, fcntl(pipe_a, F_GETFL) | O_NONBLOCK);
  SUBJECT_CHECK(fcntl(pipe_b, F_GETFL) & O_NONBLOCK, "the two pipe read ends are two descriptions");
  read_text(pipe_a, "pipe-data", 1);
  r = read(pipe_b, &extra, 1);
  SUBJECT_CHECK(r < 0 && errno == EAGAIN, "the pipe holds more than 'pipe-data' (read %zd)", r);
  fcntl(pipe_a, F_SETFL, fcntl(pipe_a, F_GETFL) & ~O_NONBLOCK);

  /* The file: its offset, access mode and bytes. */
  SUBJECT_CHECK(fstat(file_fd, &sa) == 0 && S_ISREG(sa.st_mode) && sa.st_size == (off_t)strlen(content),
                "the file descriptor is not the file");
  off_t off = lseek(file_fd, 0, SEEK_CUR);
  SUBJECT_CHECK(off == 7, "the file is at offset %lld, want 7", (long long)off);
  SUBJECT_CHECK((fcntl(file_fd, F_GETFL) & O_ACCMODE) == O_RDWR, "the file is not open O_RDWR");
  read_text(file_fd, "789abcdef", 1);

  /* The socket: its queued bytes. */
  int type = 0;
  socklen_t tl = sizeof(type);
  SUBJECT_CHECK(getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_STREAM,
                "the received socket is of type %d", type);
  read_text(sock, "queued-in-sent", 1);

  /* Now the child writes to the pipe and talks over the socket. */
  kill(child, SIGUSR1);
  read_text(pipe_b, "pipe-more", 0);
  SUBJECT_CHECK(write_text(sock, "to-kept"), "write to the received socket: %s", strerror(errno));
  read_text(sock, "from-kept", 0);
  int status = 0;
  SUBJECT_CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "the child did not pass (status 0x%x)", status);
  /* The child held the only write end. */
  fcntl(pipe_a, F_SETFL, fcntl(pipe_a, F_GETFL) | O_NONBLOCK);
  r = read(pipe_a, &extra, 1);
  SUBJECT_CHECK(r == 0, "the pipe has another writer, or bytes, after the child exited (read %zd, %s)", r,
                r < 0 ? strerror(errno) : "");
  r = recv(sock, &extra, 1, MSG_DONTWAIT);
  SUBJECT_CHECK(r == 0, "the received socket's peer is still open after the child exited (recv %zd)", r);
  remove_own(own_dir, dir, file);
  return subject_verdict();
}
