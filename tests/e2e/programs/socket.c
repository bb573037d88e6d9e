/*
 * Holds a UDP socket (network sockets are not supported yet): the dump
 * must refuse it before writing anything, and leave the process running.
 * On SIGUSR1 it checks the socket still works.
 */
#include <netinet/in.h>
#include <sys/socket.h>

#include "subject.h"

int main(void) {
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  if (s < 0 || bind(s, (struct sockaddr*)&a, sizeof(a)) || getsockname(s, (struct sockaddr*)&a, &len)) return 2;
  subject_ready();
  subject_wait();
  char c = 0;
  SUBJECT_CHECK(sendto(s, "x", 1, 0, (struct sockaddr*)&a, sizeof(a)) == 1 && recv(s, &c, 1, 0) == 1 && c == 'x',
                "the socket stopped working");
  return subject_verdict();
}
