/*
 * A TCP echo server on 127.0.0.1 (an ephemeral port, or argv[2]) for a
 * client outside the tree (the test). Prints "PORT p" and READY.
 *
 *   inet_echo serve    accepts one connection and echoes every byte until
 *                      the client ends it; the bytes must follow the
 *                      pattern (offset * 7 + (offset >> 9) + 3): PASS if
 *                      every one did and `argv[2]` bytes came (exit 0).
 *   inet_echo pending  waits for SIGUSR1 before it accepts (a connection
 *                      made meanwhile waits in the backlog), then serves.
 *
 * The echo loop blocks in poll, read and write as a plain server does.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include "subject.h"

static unsigned char pattern(size_t off) { return (unsigned char)(off * 7 + (off >> 9) + 3); }

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  const int pending = strcmp(argv[1], "pending") == 0;
  const size_t want = (size_t)strtoull(argv[2], NULL, 10);
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  int one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 16) || getsockname(l, (struct sockaddr *)&a, &len)) {
    return 2;
  }
  printf("PORT %d\n", ntohs(a.sin_port));
  subject_ready();
  if (pending) subject_wait();
  int c = accept(l, NULL, NULL);
  if (c < 0) {
    printf("FAIL: accept: %s\n", strerror(errno));
    return 1;
  }
  static unsigned char buf[65536];
  size_t got = 0;
  for (;;) {
    struct pollfd p = {.fd = c, .events = POLLIN};
    if (poll(&p, 1, -1) < 0) {
      if (errno == EINTR) continue;
      subject_fail("poll: %s", strerror(errno));
      break;
    }
    ssize_t n = read(c, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      subject_fail("read after %zu bytes: %s", got, strerror(errno));
      break;
    }
    if (n == 0) break;
    for (ssize_t i = 0; i < n; i++) {
      if (buf[i] != pattern(got + (size_t)i)) {
        subject_fail("byte %zu is wrong", got + (size_t)i);
        return subject_verdict();
      }
    }
    got += (size_t)n;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(c, buf + off, (size_t)(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        subject_fail("write: %s", strerror(errno));
        return subject_verdict();
      }
      off += w;
    }
  }
  SUBJECT_CHECK(got == want, "got %zu bytes, not %zu", got, want);
  return subject_verdict();
}
