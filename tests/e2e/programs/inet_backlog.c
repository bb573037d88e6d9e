/*
 * A listener (127.0.0.1, and a dual-stack [::] one) with connections from
 * the forked child waiting in its backlog, not accepted before the dump:
 * on the IPv4 one, c0 sent nothing, c1 sent "hello-1" (data that only
 * accepting the connection shows), c2 sent nothing; on the dual-stack one,
 * c3 connected over IPv4 and sent "hello-3". The child has read nothing.
 *
 * After SIGUSR1 (passed on to the child) the parent accepts the four
 * connections (in any order), reads what each one brought, and answers
 * "echo:" and that; each client must get exactly its own answer, with its
 * own address as the accepted side's peer. Prints PASS (exit 0) if all
 * did. argv[1] == "nodata": no client sends anything (a dump left running
 * can then save the backlog).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "subject.h"

#define NC 4

static int lis(int family, int *port) {
  int fd = socket(family, SOCK_STREAM, 0);
  int one = 1, zero = 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  socklen_t len;
  if (family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(*a);
  } else {
    setsockopt(fd, SOL_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    len = sizeof(*a);
  }
  if (bind(fd, (struct sockaddr *)&ss, len) || listen(fd, 8) || getsockname(fd, (struct sockaddr *)&ss, &len)) exit(2);
  *port = family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port) : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return fd;
}

int main(int argc, char **argv) {
  const int nodata = argc > 1 && strcmp(argv[1], "nodata") == 0;
  int p4, p6;
  int l4 = lis(AF_INET, &p4), l6 = lis(AF_INET6, &p6);
  int ready[2];
  if (pipe(ready)) return 2;
  subject_install();
  pid_t child = fork();
  if (child == 0) {
    int c[NC];
    for (int i = 0; i < NC; i++) {
      c[i] = socket(AF_INET, SOCK_STREAM, 0);
      struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
      a.sin_port = htons((uint16_t)(i == 3 ? p6 : p4));
      if (connect(c[i], (struct sockaddr *)&a, sizeof(a))) _exit(3);
      if (!nodata && (i == 1 || i == 3)) {
        char msg[24];
        snprintf(msg, sizeof(msg), "hello-%d", i);
        if (send(c[i], msg, strlen(msg), 0) != (ssize_t)strlen(msg)) _exit(3);
      }
    }
    if (write(ready[1], "x", 1) != 1) _exit(3);
    subject_wait();
    for (int i = 0; i < NC; i++) {
      char want[32], got[32] = {0};
      snprintf(want, sizeof(want), "echo:%s", (!nodata && (i == 1 || i == 3)) ? (i == 1 ? "hello-1" : "hello-3") : "");
      size_t n = 0;
      struct pollfd p = {.fd = c[i], .events = POLLIN};
      while (n < strlen(want) && poll(&p, 1, 10000) == 1) {
        ssize_t r = recv(c[i], got + n, sizeof(got) - 1 - n, 0);
        if (r <= 0) break;
        n += (size_t)r;
      }
      SUBJECT_CHECK(n == strlen(want) && memcmp(got, want, n) == 0, "child: client %d got '%s', not '%s'", i, got, want);
    }
    _exit(subject_failures ? 1 : 0);
  }
  char x;
  if (read(ready[0], &x, 1) != 1) return 2;
  usleep(50000); /* the data reaches the listener's side */
  printf("CHILDREN %d\n", child);
  subject_ready();
  subject_wait();
  kill(child, SIGUSR1);
  for (int i = 0; i < NC; i++) {
    int fd = accept(i < 3 ? l4 : l6, NULL, NULL);
    if (fd < 0) {
      subject_fail("accept: %s", strerror(errno));
      break;
    }
    char in[32] = {0};
    usleep(20000);
    ssize_t n = recv(fd, in, sizeof(in) - 1, MSG_DONTWAIT);
    if (n < 0) n = 0;
    char out[48];
    snprintf(out, sizeof(out), "echo:%s", in);
    SUBJECT_CHECK(send(fd, out, strlen(out), 0) == (ssize_t)strlen(out), "send on an accepted connection");
  }
  int status;
  waitpid(child, &status, 0);
  SUBJECT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed");
  return subject_verdict();
}
