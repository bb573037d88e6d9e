/*
 * A removed root directory: a child chroots into a directory (mode 0753),
 * goes to its "/", and its parent removes the directory. After SIGUSR1
 * the child's root and working directory are still that directory: "/"
 * has no links and mode 0753, "." is "/", nothing can be made in it, and
 * ".." stays inside. argv[1] is a directory.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "subject.h"

static int child_main(const char *dir, int ready) {
  if (chroot(dir) != 0 || chdir("/") != 0) return 2;
  struct stat before;
  if (stat("/", &before) != 0) return 3;
  char c = 'r';
  if (write(ready, &c, 1) != 1) return 4;
  subject_wait();
  struct stat root, dot, up;
  if (stat("/", &root) != 0 || stat(".", &dot) != 0 || stat("..", &up) != 0) return 10;
  if (!S_ISDIR(root.st_mode) || root.st_nlink != 0 || (root.st_mode & 07777) != 0753) return 11;
  if (dot.st_ino != root.st_ino || dot.st_dev != root.st_dev) return 12;
  if (up.st_ino != root.st_ino || up.st_dev != root.st_dev) return 13;
  if (open("/new", O_CREAT | O_WRONLY, 0600) >= 0 || errno != ENOENT) return 14;
  return 0;
}

int main(int argc, char **argv) {
  char dir[4200];
  snprintf(dir, sizeof(dir), "%s/root", argc > 1 ? argv[1] : "/tmp");
  if (mkdir(dir, 0753) != 0) return 1;
  chmod(dir, 0753);
  subject_install();
  int ready[2];
  if (pipe(ready) != 0) return 1;
  pid_t child = fork();
  if (child == 0) _exit(child_main(dir, ready[1]));
  char c;
  if (read(ready[0], &c, 1) != 1) {
    printf("FAIL: the child could not chroot\n");
    return 1;
  }
  if (rmdir(dir) != 0) return 1;
  printf("READY %d %d\n", getpid(), child);
  fflush(stdout);
  subject_wait();
  kill(child, SIGUSR1);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  SUBJECT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child: status 0x%x", status);
  return subject_verdict();
}
