/*
 * Removed directories: "held" (mode 0750) is open as an fd, "cwd" (mode
 * 0751) is the working directory of this process and of its child; both
 * are removed. After SIGUSR1 the fd and the working directory are still
 * directories with no links and their modes, getcwd() fails with ENOENT,
 * nothing can be made in them, and the child sits in the same directory
 * as its parent. argv[1] is a directory.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "subject.h"

static void check_removed(const char *who, int dirfd, mode_t mode) {
  struct stat st;
  SUBJECT_CHECK(fstat(dirfd, &st) == 0 && S_ISDIR(st.st_mode), "%s: not a directory", who);
  SUBJECT_CHECK(st.st_nlink == 0, "%s: %d links", who, (int)st.st_nlink);
  SUBJECT_CHECK((st.st_mode & 07777) == mode, "%s: mode %o", who, st.st_mode & 07777);
  SUBJECT_CHECK(openat(dirfd, "new", O_CREAT | O_WRONLY, 0600) < 0 && errno == ENOENT,
                "%s: a file could be made in it", who);
}

int main(int argc, char **argv) {
  char held[4200], cwd[4200];
  snprintf(held, sizeof(held), "%s/held", argc > 1 ? argv[1] : "/tmp");
  snprintf(cwd, sizeof(cwd), "%s/cwd", argc > 1 ? argv[1] : "/tmp");
  if (mkdir(held, 0750) != 0 || mkdir(cwd, 0751) != 0) return 1;
  chmod(held, 0750);
  chmod(cwd, 0751);
  int fd = open(held, O_RDONLY | O_DIRECTORY);
  if (fd < 0 || chdir(cwd) != 0 || rmdir(held) != 0 || rmdir(cwd) != 0) return 1;
  struct stat before;
  if (stat(".", &before) != 0) return 1;
  subject_install();
  int to_parent[2];
  if (pipe(to_parent) != 0) return 1;
  pid_t child = fork();
  if (child == 0) {
    subject_wait();
    struct stat st;
    ino_t ino = stat(".", &st) == 0 ? st.st_ino : 0;
    if (write(to_parent[1], &ino, sizeof(ino)) != sizeof(ino)) _exit(1);
    _exit(getcwd(held, sizeof(held)) == NULL && errno == ENOENT ? 0 : 2);
  }
  printf("READY %d %d\n", getpid(), child);
  fflush(stdout);
  subject_wait();

  check_removed("held", fd, 0750);
  int here = open(".", O_RDONLY | O_DIRECTORY);
  SUBJECT_CHECK(here >= 0, "open(.): %s", strerror(errno));
  if (here >= 0) check_removed("cwd", here, 0751);
  char buf[256];
  SUBJECT_CHECK(getcwd(buf, sizeof(buf)) == NULL && errno == ENOENT, "getcwd works: %s", buf);
  struct stat mine;
  stat(".", &mine);
  kill(child, SIGUSR1);
  ino_t theirs = 0;
  SUBJECT_CHECK(read(to_parent[0], &theirs, sizeof(theirs)) == sizeof(theirs) && theirs == mine.st_ino,
                "the child is in another directory (%lu, not %lu)", (unsigned long)theirs,
                (unsigned long)mine.st_ino);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  SUBJECT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: status 0x%x", status);
  return subject_verdict();
}
