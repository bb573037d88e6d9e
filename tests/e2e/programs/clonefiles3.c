/*
 * One fd table over three generations: the root makes a child with
 * clone(CLONE_FILES), and that child makes a grandchild the same way.
 * After SIGUSR1 (passed down) the grandchild opens a file; its fd shows
 * in the child's and the root's table; the child closes fd 4 and the
 * others see it gone. argv[1] is a directory.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "subject.h"

static char path[4200];

static int wait_fd(int fd, int open_wanted) {
  for (int i = 0; i < 2000; i++) {
    int open_now = fcntl(fd, F_GETFD) >= 0;
    if (open_now == open_wanted) return 1;
    usleep(1000);
  }
  return 0;
}

static int grandchild_main(void) {
  subject_wait();
  if (open(path, O_RDWR) != 6) return 3; /* the lowest free number: fds 0-5 are taken */
  return wait_fd(4, 0) ? 0 : 4;        /* the child closes 4 */
}

static int child_main(void) {
  pid_t g = (pid_t)syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
  if (g == 0) _exit(grandchild_main());
  printf("GRAND %d\n", g);
  fflush(stdout);
  subject_wait();
  kill(g, SIGUSR1);
  if (!wait_fd(6, 1)) return 5;
  close(4);
  int status;
  if (waitpid(g, &status, 0) != g || !WIFEXITED(status)) return 6;
  return WEXITSTATUS(status);
}

int main(int argc, char **argv) {
  snprintf(path, sizeof(path), "%s/shared-table3", argc > 1 ? argv[1] : "/tmp");
  for (int fd = 3; fd <= 5; fd++) {
    if (open(path, O_RDWR | O_CREAT, 0644) != fd) return 2; /* fds 3..5 */
  }
  subject_install();
  pid_t child = (pid_t)syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
  if (child == 0) _exit(child_main());
  printf("CHILD %d\n", child);
  fflush(stdout);
  for (int i = 0; i < 2000; i++) usleep(100);
  subject_ready();
  subject_wait();
  kill(child, SIGUSR1);
  SUBJECT_CHECK(wait_fd(6, 1), "the grandchild's new fd 6 does not show in the root's table");
  SUBJECT_CHECK(wait_fd(4, 0), "the child's close of fd 4 does not show in the root's table");
  int status;
  SUBJECT_CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && !WEXITSTATUS(status),
                "the child or grandchild saw no shared table (status 0x%x)", status);
  return subject_verdict();
}
