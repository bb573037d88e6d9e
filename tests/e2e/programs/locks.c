/*
 * Advisory locks: flock(LOCK_EX) on "a"; flock(LOCK_SH) on "d", whose
 * description a child shares; POSIX locks on "b" (write [0,10), read
 * [100,EOF), also open on a dup); an OFD write lock on "c" [5,15).
 * After SIGUSR1 a process forked then (a stranger to the locks) opens the
 * files again and finds every lock held as it was, by the same owner,
 * and nothing more. argv[1] is a directory.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>

#include "subject.h"

static char dir[4096];

static int open_in(const char *name) {
  char path[4200];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  int fd = open(path, O_RDWR | O_CREAT, 0600);
  if (fd < 0) {
    printf("FAIL: open %s: %s\n", path, strerror(errno));
    exit(1);
  }
  return fd;
}

/* The lock F_GETLK (cmd) finds over [start, start+len) for `type`. */
static struct flock probe(int fd, int cmd, short type, off_t start, off_t len) {
  struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
  if (fcntl(fd, cmd, &fl) != 0) fl.l_type = -1;
  return fl;
}

static int check_as_stranger(pid_t owner) {
  int a = open_in("a"), b = open_in("b"), c = open_in("c"), d = open_in("d");
  SUBJECT_CHECK(flock(a, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK, "a: not locked");
  SUBJECT_CHECK(flock(d, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK, "d: not locked");
  SUBJECT_CHECK(flock(d, LOCK_SH | LOCK_NB) == 0, "d: locked exclusively: %s", strerror(errno));
  struct flock fl = probe(b, F_GETLK, F_WRLCK, 0, 10);
  SUBJECT_CHECK(fl.l_type == F_WRLCK && fl.l_pid == owner, "b [0,10): type %d pid %d", fl.l_type,
                fl.l_pid);
  fl = probe(b, F_GETLK, F_WRLCK, 20, 10);
  SUBJECT_CHECK(fl.l_type == F_UNLCK, "b [20,30): type %d pid %d", fl.l_type, fl.l_pid);
  fl = probe(b, F_GETLK, F_RDLCK, 100, 10);
  SUBJECT_CHECK(fl.l_type == F_UNLCK, "b [100,110) read: type %d", fl.l_type);
  fl = probe(b, F_GETLK, F_WRLCK, 1 << 20, 10);
  SUBJECT_CHECK(fl.l_type == F_RDLCK && fl.l_pid == owner && fl.l_len == 0,
                "b [1M,..) write: type %d pid %d len %lld", fl.l_type, fl.l_pid, (long long)fl.l_len);
  fl = probe(c, F_OFD_GETLK, F_WRLCK, 0, 100);
  SUBJECT_CHECK(fl.l_type == F_WRLCK && fl.l_start == 5 && fl.l_len == 10 && fl.l_pid == -1,
                "c: type %d [%lld,+%lld) pid %d", fl.l_type, (long long)fl.l_start,
                (long long)fl.l_len, fl.l_pid);
  return subject_failures ? 1 : 0;
}

int main(int argc, char **argv) {
  snprintf(dir, sizeof(dir), "%s", argc > 1 ? argv[1] : "/tmp");
  int a = open_in("a"), b = open_in("b"), c = open_in("c"), d = open_in("d");
  if (flock(a, LOCK_EX) != 0 || flock(d, LOCK_SH) != 0) return 1;
  struct flock w = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
  struct flock r = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 0};
  if (fcntl(b, F_SETLK, &w) != 0 || fcntl(b, F_SETLK, &r) != 0) return 1;
  int b2 = dup(b);
  struct flock o = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 5, .l_len = 10};
  if (fcntl(c, F_OFD_SETLK, &o) != 0) return 1;
  (void)b2;
  subject_install();
  pid_t child = fork();
  if (child == 0) { /* shares d's description, and its flock */
    subject_wait();
    _exit(0);
  }
  printf("READY %d %d\n", getpid(), child);
  fflush(stdout);
  subject_wait();

  pid_t stranger = fork();
  if (stranger == 0) _exit(check_as_stranger(getppid()));
  int status = 0;
  while (waitpid(stranger, &status, 0) < 0 && errno == EINTR) {
  }
  SUBJECT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the stranger saw other locks");
  kill(child, SIGUSR1);
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  return subject_verdict();
}
