/*
 * Files under /proc/PID of the tree's own tasks: the parent holds its own
 * /proc/self/stat (read 10 bytes in, and a dup with close-on-exec) and the
 * /proc/PID directory of its child; the child (named "procchild") holds
 * its parent's /proc/PID/status, then chroots into an empty directory
 * (argv[1]/procjail, which has no /proc). After SIGUSR1 each reads them
 * again: they name the same processes, at the same offsets.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "subject.h"

static int field_is(int fd, const char *key, long want) {
  char buf[4096];
  ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return 0;
  buf[n] = 0;
  char *p = strstr(buf, key);
  return p != NULL && strtol(p + strlen(key), NULL, 10) == want;
}

int main(int argc, char **argv) {
  char jail[4200];
  snprintf(jail, sizeof(jail), "%s/procjail", argc > 1 ? argv[1] : "/tmp");
  mkdir(jail, 0755);
  subject_install();
  pid_t parent = getpid();
  int ready[2];
  if (pipe(ready) != 0) return 1;
  pid_t child = fork();
  if (child == 0) {
    prctl(PR_SET_NAME, "procchild");
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", parent);
    int st = open(path, O_RDONLY);
    if (st < 0 || chroot(jail) != 0 || chdir("/") != 0 || write(ready[1], "r", 1) != 1) _exit(2);
    subject_wait();
    if (!field_is(st, "\nPid:\t", parent)) _exit(3);
    _exit(0);
  }
  char c;
  if (read(ready[0], &c, 1) != 1) return 1;
  int stat_fd = open("/proc/self/stat", O_RDONLY);
  char skip[10];
  if (stat_fd < 0 || read(stat_fd, skip, sizeof(skip)) != sizeof(skip)) return 1;
  int dup_fd = fcntl(stat_fd, F_DUPFD_CLOEXEC, 50);
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d", child);
  int dir = open(path, O_RDONLY | O_DIRECTORY);
  if (dup_fd < 0 || dir < 0) return 1;
  printf("READY %d %d\n", parent, child);
  fflush(stdout);
  subject_wait();

  char buf[256] = {0};
  SUBJECT_CHECK(pread(stat_fd, buf, sizeof(buf) - 1, 0) > 0 && atoi(buf) == getpid(),
                "/proc/self/stat names %d, not %d", atoi(buf), getpid());
  SUBJECT_CHECK(lseek(stat_fd, 0, SEEK_CUR) == 10, "its offset is %ld, not 10",
                (long)lseek(stat_fd, 0, SEEK_CUR));
  lseek(stat_fd, 3, SEEK_SET);
  SUBJECT_CHECK(lseek(dup_fd, 0, SEEK_CUR) == 3, "its dup does not share its offset");
  SUBJECT_CHECK(fcntl(dup_fd, F_GETFD) == FD_CLOEXEC && fcntl(stat_fd, F_GETFD) == 0,
                "close-on-exec flags changed");
  int comm = openat(dir, "comm", O_RDONLY);
  memset(buf, 0, sizeof(buf));
  SUBJECT_CHECK(comm >= 0 && read(comm, buf, sizeof(buf) - 1) > 0 && strcmp(buf, "procchild\n") == 0,
                "the child's /proc directory shows comm '%s'", buf);
  kill(child, SIGUSR1);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  SUBJECT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child: status 0x%x", status);
  return subject_verdict();
}
