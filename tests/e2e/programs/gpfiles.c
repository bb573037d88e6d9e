/*
 * A grandchild that shares its grandparent's fd table, which its parent
 * gave up: the root makes P with clone(CLONE_FILES), P makes C the same
 * way, then unshares (CLONE_FILES) and closes fd 4 in its own table.
 * After SIGUSR1 (passed down): C opens a file, which the root sees at that
 * number and P does not; the root closes fd 5, which C sees gone and P
 * still has. argv[1] is a directory.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "subject.h"

static char path[4200];


static int grandchild_main(void) {
  subject_wait();
  if (!subject_fd_open(4)) return 20;
  if (open(path, O_RDONLY) != 6) return 21;
  return subject_wait_fd(5, 0) ? 0 : 22;
}

static int parent_main(int ready) {
  pid_t c = (pid_t)syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
  if (c == 0) _exit(grandchild_main());
  if (unshare(CLONE_FILES) != 0) return 30;
  close(4);
  char msg[1 + sizeof(c)] = {'c'};
  memcpy(msg + 1, &c, sizeof(c));
  if (write(ready, msg, sizeof(msg)) != sizeof(msg)) return 31;
  close(6); /* the pipe, in its own table now */
  close(7);
  subject_wait();
  kill(c, SIGUSR1);
  int status = 0;
  if (waitpid(c, &status, 0) != c || !WIFEXITED(status)) return 32;
  if (WEXITSTATUS(status) != 0) return WEXITSTATUS(status);
  /* Its own table: no 4, still 5 (the root closed its own), no 6. */
  return !subject_fd_open(4) && subject_fd_open(5) && !subject_fd_open(6) ? 0 : 33;
}

int main(int argc, char **argv) {
  snprintf(path, sizeof(path), "%s/gp-table", argc > 1 ? argv[1] : "/tmp");
  for (int fd = 3; fd <= 5; fd++) {
    if (open(path, O_RDWR | O_CREAT, 0644) != fd) return 2;
  }
  int ready[2];
  if (pipe(ready) != 0) return 1; /* fds 6 and 7, in the shared table */
  subject_install();
  pid_t p = (pid_t)syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
  if (p == 0) _exit(parent_main(ready[1]));
  char msg[1 + sizeof(pid_t)];
  if (read(ready[0], msg, sizeof(msg)) != sizeof(msg)) return 1;
  pid_t c;
  memcpy(&c, msg + 1, sizeof(c));
  close(ready[0]);
  close(ready[1]); /* 6 and 7 are free again, in the root's and C's table */
  printf("READY %d %d %d\n", getpid(), p, c);
  fflush(stdout);
  subject_wait();
  kill(p, SIGUSR1);
  SUBJECT_CHECK(subject_wait_fd(6, 1), "the grandchild's new fd 6 does not show in the root's table");
  close(5);
  int status = 0;
  SUBJECT_CHECK(waitpid(p, &status, 0) == p && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "the parent or grandchild saw the wrong table (status 0x%x)", status);
  SUBJECT_CHECK(subject_fd_open(4), "the root's fd 4 is gone");
  return subject_verdict();
}
