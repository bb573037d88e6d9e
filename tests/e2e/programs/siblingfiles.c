/*
 * Two siblings that share an fd table their parent gave up: the parent
 * makes A and B with clone(CLONE_FILES), then unshare(CLONE_FILES), and
 * closes fd 4 in its own table. After SIGUSR1 (passed on): A opens a file,
 * which B sees at that number and the parent does not; B closes fd 5,
 * which A sees gone and the parent still has; the parent has no fd 4, A
 * and B do. argv[1] is a directory.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "subject.h"

static char path[4200];


static int sibling_main(int which) {
  subject_wait();
  if (!subject_fd_open(4)) return 10;  /* the parent's close is not ours */
  if (which == 0) {
    if (open(path, O_RDONLY) != 6) return 11; /* 0-5 taken (and 4) */
    return subject_wait_fd(5, 0) ? 0 : 12;              /* B closes 5 */
  }
  if (!subject_wait_fd(6, 1)) return 13;               /* A's new fd */
  close(5);
  return 0;
}

int main(int argc, char **argv) {
  snprintf(path, sizeof(path), "%s/sibling-table", argc > 1 ? argv[1] : "/tmp");
  for (int fd = 3; fd <= 5; fd++) {
    if (open(path, O_RDWR | O_CREAT, 0644) != fd) return 2; /* fds 3..5 */
  }
  subject_install();
  pid_t a = (pid_t)syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
  if (a == 0) _exit(sibling_main(0));
  pid_t b = (pid_t)syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
  if (b == 0) _exit(sibling_main(1));
  if (unshare(CLONE_FILES) != 0) return 3;
  close(4);
  printf("READY %d %d %d\n", getpid(), a, b);
  fflush(stdout);
  subject_wait();
  kill(a, SIGUSR1);
  kill(b, SIGUSR1);
  int sa = 0, sb = 0;
  SUBJECT_CHECK(waitpid(a, &sa, 0) == a && WIFEXITED(sa) && WEXITSTATUS(sa) == 0,
                "sibling A: status 0x%x", sa);
  SUBJECT_CHECK(waitpid(b, &sb, 0) == b && WIFEXITED(sb) && WEXITSTATUS(sb) == 0,
                "sibling B: status 0x%x", sb);
  SUBJECT_CHECK(!subject_fd_open(4) && subject_fd_open(5) && !subject_fd_open(6),
                "the parent's own table changed (4: %d, 5: %d, 6: %d)", subject_fd_open(4), subject_fd_open(5),
                subject_fd_open(6));
  return subject_verdict();
}
