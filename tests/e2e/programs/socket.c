/*
 * Holds a socket (not supported yet): the dump must refuse it before
 * writing anything, and leave the process running. On SIGUSR1 it checks
 * the socket still works.
 */
#include <sys/socket.h>

#include "subject.h"

int main(void) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return 2;
  subject_ready();
  subject_wait();
  char c = 0;
  SUBJECT_CHECK(write(sv[0], "x", 1) == 1 && read(sv[1], &c, 1) == 1 && c == 'x',
                "the socket pair stopped working");
  return subject_verdict();
}
