/*
 * TCP and UDP states the dump cannot save faithfully, each in one
 * process: the dump must refuse it, naming it, and leave the process
 * running as it was. After SIGUSR1 the process checks that the state is
 * still there and prints PASS (exit 0).
 *
 *   inet_edges oob        an urgent byte (MSG_OOB) waits behind "ab"
 *   inet_edges oobinline  the same with SO_OOBINLINE on the reader
 *   inet_edges finwait    this side shut down its side behind data its
 *                         peer's full buffer has not taken yet (FIN_WAIT1
 *                         with unsent data): the peer reads it all, then
 *                         end of file
 *   inet_edges udperr     a connected UDP socket holds ECONNREFUSED (an
 *                         ICMP port unreachable for what it sent)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include "subject.h"

static void pair(int *server, int *client) {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  if (bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) || getsockname(l, (struct sockaddr *)&a, &len)) exit(2);
  *client = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(*client, (struct sockaddr *)&a, sizeof(a))) exit(2);
  *server = accept(l, NULL, NULL);
  if (*server < 0) exit(2);
  close(l);
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  const char *mode = argv[1];
  int s = -1, c = -1;
  if (strcmp(mode, "oob") == 0 || strcmp(mode, "oobinline") == 0) {
    pair(&s, &c);
    int one = 1;
    if (strcmp(mode, "oobinline") == 0) setsockopt(s, SOL_SOCKET, SO_OOBINLINE, &one, sizeof(one));
    if (send(c, "ab", 2, 0) != 2 || send(c, "!", 1, MSG_OOB) != 1) return 2;
  } else if (strcmp(mode, "finwait") == 0) {
    pair(&s, &c);
    fcntl(c, F_SETFL, O_NONBLOCK);
    static char fill[65536];
    memset(fill, 'f', sizeof(fill));
    while (send(c, fill, sizeof(fill), 0) > 0) {
    }
    usleep(20000);
    while (send(c, fill, sizeof(fill), 0) > 0) {
    }
    if (shutdown(c, SHUT_WR)) return 2;
  } else if (strcmp(mode, "udperr") == 0) {
    int gone = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (bind(gone, (struct sockaddr *)&a, sizeof(a)) || getsockname(gone, (struct sockaddr *)&a, &len)) return 2;
    close(gone);  /* nobody holds the port now */
    s = socket(AF_INET, SOCK_DGRAM, 0);
    if (connect(s, (struct sockaddr *)&a, sizeof(a)) || send(s, "?", 1, 0) != 1) return 2;
  } else {
    return 2;
  }
  usleep(50000);
  subject_ready();
  subject_wait();
  char buf[8] = {0};
  if (strcmp(mode, "oob") == 0) {
    ssize_t n = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
    SUBJECT_CHECK(n == 2 && memcmp(buf, "ab", 2) == 0, "the bytes before the mark are gone (%zd)", n);
    SUBJECT_CHECK(recv(s, buf, 1, MSG_OOB) == 1 && buf[0] == '!', "the urgent byte is gone");
  } else if (strcmp(mode, "oobinline") == 0) {
    usleep(1000);
    ssize_t n = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
    ssize_t m = recv(s, buf + (n > 0 ? n : 0), sizeof(buf) - 4, MSG_DONTWAIT);
    SUBJECT_CHECK(n + (m > 0 ? m : 0) == 3 && memcmp(buf, "ab!", 3) == 0, "the data with its urgent byte is gone");
  } else if (strcmp(mode, "finwait") == 0) {
    static char in[65536];
    ssize_t n;
    size_t total = 0;
    int bad = 0;
    while ((n = recv(s, in, sizeof(in), 0)) > 0) {
      for (ssize_t i = 0; i < n; i++) bad |= in[i] != 'f';
      total += (size_t)n;
    }
    SUBJECT_CHECK(n == 0 && !bad && total > 0, "the data before the end is wrong (%zu bytes, %zd)", total, n);
  } else {
    ssize_t n = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
    SUBJECT_CHECK(n < 0 && errno == ECONNREFUSED, "the pending error is gone (%zd, %s)", n, strerror(errno));
  }
  return subject_verdict();
}
