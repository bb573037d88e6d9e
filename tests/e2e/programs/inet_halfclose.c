/*
 * TCP connections one side has ended, both ends in this process:
 *  - A (IPv4): the client sent "xy" then shut down its side; the server
 *    has read nothing (CLOSE_WAIT, "xy" and end of file to read) and
 *    wrote "srv", which the client has not read (FIN_WAIT2);
 *  - B (IPv6): the server wrote "bye" and shut down its side (FIN_WAIT2);
 *    the client has read nothing (CLOSE_WAIT).
 * After SIGUSR1 each reads what was left for it, then end of file where
 * the other side ended; the sides still open can still send ("reply-a",
 * "back-b"), and the other side reads that, then end of file once it is
 * closed. Prints PASS (exit 0) if all of it held.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include "subject.h"

static void pair(int family, int *server, int *client) {
  int l = socket(family, SOCK_STREAM, 0);
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  socklen_t len;
  if (family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(*a);
  } else {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_loopback;
    len = sizeof(*a);
  }
  if (bind(l, (struct sockaddr *)&ss, len) || listen(l, 1) || getsockname(l, (struct sockaddr *)&ss, &len)) exit(2);
  *client = socket(family, SOCK_STREAM, 0);
  if (connect(*client, (struct sockaddr *)&ss, len)) exit(2);
  *server = accept(l, NULL, NULL);
  if (*server < 0) exit(2);
  close(l);
}

static int state_of(int fd) {
  struct tcp_info ti;
  socklen_t len = sizeof(ti);
  if (getsockopt(fd, SOL_TCP, TCP_INFO, &ti, &len)) return -1;
  return ti.tcpi_state;
}

/* Reads everything until end of file (5 s at most); it must be `want`. */
static void read_to_eof(int fd, const char *want, const char *what) {
  char buf[64] = {0};
  size_t n = 0;
  for (;;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 5000) != 1) {
      subject_fail("%s: no end of file after '%s'", what, buf);
      return;
    }
    ssize_t r = recv(fd, buf + n, sizeof(buf) - 1 - n, 0);
    if (r < 0) {
      subject_fail("%s: recv: %s", what, strerror(errno));
      return;
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  SUBJECT_CHECK(strcmp(buf, want) == 0, "%s: read '%s', not '%s'", what, buf, want);
}

int main(void) {
  int sa, ca, sb, cb;
  pair(AF_INET, &sa, &ca);
  pair(AF_INET6, &sb, &cb);
  if (send(ca, "xy", 2, 0) != 2 || shutdown(ca, SHUT_WR) || send(sa, "srv", 3, 0) != 3) return 2;
  if (send(sb, "bye", 3, 0) != 3 || shutdown(sb, SHUT_WR)) return 2;
  usleep(100000);
  int states[4] = {state_of(sa), state_of(ca), state_of(sb), state_of(cb)};
  if (states[0] != TCP_CLOSE_WAIT || states[1] != TCP_FIN_WAIT2 || states[2] != TCP_FIN_WAIT2 ||
      states[3] != TCP_CLOSE_WAIT) {
    printf("unexpected states %d %d %d %d\n", states[0], states[1], states[2], states[3]);
    return 2;
  }
  subject_ready();
  subject_wait();
  SUBJECT_CHECK(state_of(sa) == TCP_CLOSE_WAIT && state_of(ca) == TCP_FIN_WAIT2 && state_of(sb) == TCP_FIN_WAIT2 &&
                    state_of(cb) == TCP_CLOSE_WAIT,
                "the states are %d %d %d %d", state_of(sa), state_of(ca), state_of(sb), state_of(cb));
  read_to_eof(sa, "xy", "A's server");
  read_to_eof(cb, "bye", "B's client");
  SUBJECT_CHECK(send(sa, "reply-a", 7, MSG_NOSIGNAL) == 7, "A's server cannot send: %s", strerror(errno));
  SUBJECT_CHECK(send(cb, "back-b", 6, MSG_NOSIGNAL) == 6, "B's client cannot send: %s", strerror(errno));
  SUBJECT_CHECK(send(ca, "no", 2, MSG_NOSIGNAL) < 0 && errno == EPIPE, "A's client can send after its shutdown");
  close(sa);
  close(cb);
  read_to_eof(ca, "srvreply-a", "A's client");
  read_to_eof(sb, "back-b", "B's server");
  return subject_verdict();
}
