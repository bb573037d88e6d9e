/*
 * A tree with several things the dump does not support yet, in two
 * tasks: two vsock sockets and a userfaultfd in the parent, another
 * userfaultfd in its child. The pre-flight must name every one of them at once. Prints
 * "READY <pid>" for both; on SIGUSR1 both exit 0.
 */
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "subject.h"

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

int main(void) {
  int sv[2] = {socket(AF_VSOCK, SOCK_STREAM, 0), socket(AF_VSOCK, SOCK_SEQPACKET, 0)};
  if (sv[0] < 0 || sv[1] < 0) return 2;
  /* UFFD_USER_MODE_ONLY: allowed without privilege. */
  int efd = (int)syscall(SYS_userfaultfd, 1);
  if (efd < 0) return 2;
  subject_install();
  pid_t child = fork();
  if (child == 0) {
    close(sv[0]);
    close(sv[1]);
    close(efd);
    if (syscall(SYS_userfaultfd, 1) < 0) _exit(2);
    printf("READY %d\n", getpid());
    fflush(stdout);
    subject_wait();
    _exit(0);
  }
  printf("READY %d\n", getpid());
  fflush(stdout);
  subject_wait();
  kill(child, SIGUSR1);
  int status;
  waitpid(child, &status, 0);
  SUBJECT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed");
  return subject_verdict();
}
