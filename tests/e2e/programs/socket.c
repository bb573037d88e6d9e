/*
 * Holds a vsock socket (not supported yet): the dump must refuse it
 * before writing anything, and leave the process running. On SIGUSR1 it
 * checks the socket is still its own (its type and family).
 */
#include <sys/socket.h>

#include "subject.h"

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

int main(void) {
  int s = socket(AF_VSOCK, SOCK_STREAM, 0);
  if (s != 3) return 2;
  subject_ready();
  subject_wait();
  int type = 0, domain = 0;
  socklen_t len = sizeof(type);
  SUBJECT_CHECK(getsockopt(s, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM, "SO_TYPE %d", type);
  len = sizeof(domain);
  SUBJECT_CHECK(getsockopt(s, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain == AF_VSOCK, "SO_DOMAIN %d",
                domain);
  return subject_verdict();
}
