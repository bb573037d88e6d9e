/*
 * A parent and a child made with clone(CLONE_FILES): one fd table. After
 * the restore the child opens a file and the parent sees the new fd; the
 * parent closes one and the child sees it gone. argv[1] is a directory.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "subject.h"

static char dir[4096];

static int child_main(void) {
  sigset_t none;
  sigemptyset(&none);
  while (!subject_go) sigsuspend(&none);
  char path[4200];
  snprintf(path, sizeof(path), "%s/from-child", dir);
  int fd = open(path, O_WRONLY | O_CREAT, 0644);
  if (fd != 7) return 3;  /* the lowest free number in the shared table */
  subject_go = 0;
  while (!subject_go) sigsuspend(&none);
  return fcntl(5, F_GETFD) == -1 && errno == EBADF ? 0 : 4;  /* the parent closed it */
}

int main(int argc, char **argv) {
  snprintf(dir, sizeof(dir), "%s", argc > 1 ? argv[1] : "/tmp");
  char path[4200];
  snprintf(path, sizeof(path), "%s/shared-table", dir);
  for (int fd = 3; fd <= 6; fd++) {
    if (open(path, O_RDWR | O_CREAT, 0644) != fd) return 2;  /* fds 3..6 */
  }
  subject_install();
  pid_t child = (pid_t)syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
  if (child == 0) _exit(child_main());
  printf("CHILD %d\n", child);
  subject_ready();
  subject_wait();
  kill(child, SIGUSR1);
  int ok = 0;
  for (int i = 0; i < 2000 && !ok; i++) {
    ok = fcntl(7, F_GETFD) >= 0;
    usleep(1000);
  }
  SUBJECT_CHECK(ok, "the child's new fd 7 does not show in the shared table");
  close(5);
  kill(child, SIGUSR1);
  int status;
  SUBJECT_CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && !WEXITSTATUS(status),
                "the child saw no shared table (status 0x%x)", status);
  return subject_verdict();
}
