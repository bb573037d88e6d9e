/*
 * Half-closed and peer-closed unix stream pairs, with unread bytes.
 *
 *  P: A (the child's) wrote 10 KiB, then shutdown(SHUT_WR); B (the
 *     parent's) has read nothing.
 *  Q: one end wrote 3000 bytes and was then closed (no task holds it);
 *     the survivor (the parent's) has read nothing.
 *  R: the parent's end wrote "before-shut-rd"; the child's end then did
 *     shutdown(SHUT_RD) without reading it.
 *
 * After SIGUSR1 (passed on to the child):
 *  P: B reads exactly the 10 KiB, then end of stream (at once, not
 *     EAGAIN); B still writes to A, and A reads it; A's own writes fail
 *     with EPIPE, and A sees no end of stream (B did not shut down).
 *  Q: the survivor reads exactly the 3000 bytes, then end of stream; its
 *     writes fail with EPIPE.
 *  R: the child's end reads "before-shut-rd", then end of stream; it can
 *     still write and the parent reads it; the parent's writes fail with
 *     EPIPE.
 */
#define _GNU_SOURCE
#include <sys/socket.h>
#include <sys/wait.h>

#include "subject.h"

#define P_BYTES (10 * 1024)
#define Q_BYTES 3000

static const char *who = "parent";

static unsigned char byte_at(int pair, size_t i) { return (unsigned char)(i * 29 + pair * 101 + (i >> 8)); }

static int send_pattern(int fd, int pair, size_t n) {
  static unsigned char buf[P_BYTES];
  for (size_t i = 0; i < n; i++) buf[i] = byte_at(pair, i);
  size_t at = 0;
  while (at < n) {
    ssize_t w = send(fd, buf + at, n - at, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return 0;
    at += (size_t)w;
  }
  return 1;
}

/* Reads n bytes; with `queued`, bytes that must all be there already
 * (sent before the dump): a missing one fails rather than waits forever. */
static int read_all(int fd, void *buf, size_t n, int queued) {
  size_t at = 0;
  while (at < n) {
    ssize_t r = recv(fd, (char *)buf + at, n - at, queued ? MSG_DONTWAIT : 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return 0;
    at += (size_t)r;
  }
  return 1;
}

static void expect_pattern(int fd, int pair, size_t n, const char *what) {
  static unsigned char buf[P_BYTES];
  if (!read_all(fd, buf, n, 1)) {
    subject_fail("%s: %s: fewer than %zu bytes queued (%s)", who, what, n, strerror(errno));
    return;
  }
  for (size_t i = 0; i < n; i++) {
    if (buf[i] != byte_at(pair, i)) {
      subject_fail("%s: %s: byte %zu is %u, want %u", who, what, i, buf[i], byte_at(pair, i));
      return;
    }
  }
}

static void expect_text(int fd, const char *want, const char *what, int queued) {
  char buf[64] = {0};
  size_t n = strlen(want);
  int ok = read_all(fd, buf, n, queued);
  SUBJECT_CHECK(ok && memcmp(buf, want, n) == 0, "%s: %s: got '%s', want '%s'", who, what, buf, want);
}

/* The end of the stream must be there now: a read gives 0 at once. */
static void expect_eof(int fd, const char *what) {
  char c;
  ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
  SUBJECT_CHECK(r == 0, "%s: %s: no end of stream (recv %zd, %s)", who, what, r,
                r < 0 ? strerror(errno) : "data");
}

static void expect_no_eof(int fd, const char *what) {
  char c;
  ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
  SUBJECT_CHECK(r < 0 && errno == EAGAIN, "%s: %s: recv %zd (%s), want EAGAIN", who, what, r,
                r < 0 ? strerror(errno) : r == 0 ? "end of stream" : "data");
}

static void expect_epipe(int fd, const char *what) {
  ssize_t w = send(fd, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
  SUBJECT_CHECK(w < 0 && errno == EPIPE, "%s: %s: send %zd (%s), want EPIPE", who, what, w,
                w < 0 ? strerror(errno) : "sent");
}

int main(void) {
  int p[2], q[2], r[2], sync[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, p) || socketpair(AF_UNIX, SOCK_STREAM, 0, q) ||
      socketpair(AF_UNIX, SOCK_STREAM, 0, r) || pipe(sync)) {
    return 2;
  }
  /* Q: written, then closed. */
  if (!send_pattern(q[0], 2, Q_BYTES)) return 2;
  close(q[0]);
  /* R: written by the parent's end before the child's end shuts reading. */
  if (send(r[1], "before-shut-rd", 14, 0) != 14) return 2;

  subject_install();
  fflush(stdout);
  pid_t child = fork();
  if (child < 0) return 2;
  if (child == 0) {
    who = "child";
    close(p[1]);
    close(q[1]);
    close(r[1]);
    close(sync[0]);
    int a = p[0];
    if (!send_pattern(a, 1, P_BYTES) || shutdown(a, SHUT_WR) || shutdown(r[0], SHUT_RD)) _exit(2);
    if (write(sync[1], "c", 1) != 1) _exit(2);
    close(sync[1]);
    subject_wait();
    expect_text(a, "b-to-a", "A's bytes from B", 0);
    expect_no_eof(a, "A");
    expect_epipe(a, "A, shut down for writing");
    expect_text(r[0], "before-shut-rd", "R's bytes before SHUT_RD", 1);
    expect_eof(r[0], "R, shut down for reading");
    SUBJECT_CHECK(send(r[0], "r0-to-r1", 8, MSG_NOSIGNAL) == 8, "child: R cannot write: %s", strerror(errno));
    fflush(stdout);
    _exit(subject_failures ? 1 : 0);
  }
  close(p[0]);
  close(r[0]);
  close(sync[1]);
  char c;
  if (read(sync[0], &c, 1) != 1) return 2;
  close(sync[0]);
  printf("CHILDREN %d\n", child);
  subject_ready();
  subject_wait();
  kill(child, SIGUSR1);

  int b = p[1];
  expect_pattern(b, 1, P_BYTES, "B's 10 KiB");
  expect_eof(b, "B after A's SHUT_WR");
  SUBJECT_CHECK(send(b, "b-to-a", 6, MSG_NOSIGNAL) == 6, "B cannot write to A: %s", strerror(errno));
  expect_pattern(q[1], 2, Q_BYTES, "the survivor's 3000 bytes");
  expect_eof(q[1], "the survivor");
  expect_epipe(q[1], "the survivor");
  expect_epipe(r[1], "R's end whose peer shut reading");
  expect_text(r[1], "r0-to-r1", "R's bytes from the child", 0);
  int status = 0;
  SUBJECT_CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "the child did not pass (status 0x%x)", status);
  return subject_verdict();
}
