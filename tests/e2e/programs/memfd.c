/*
 * memfds, and memory like them:
 *  - "plain": 100 bytes, never mapped, mode 0640, offset 37, O_APPEND;
 *  - "sealed": MFD_ALLOW_SEALING|MFD_CLOEXEC, 5000 bytes, sealed against shrinking and
 *    growing;
 *  - "unsealed": MFD_ALLOW_SEALING and no seal yet: still sealable;
 *  - "nosealing": made without MFD_ALLOW_SEALING: never sealable;
 *  - "noexec": MFD_NOEXEC_SEAL (mode 0666, F_SEAL_EXEC);
 *  - "private": two pages mapped MAP_PRIVATE, the first written through
 *    the mapping (the memfd keeps its own bytes);
 *  - "reopened": a child opens it again through /proc/PARENT/fd/N (a
 *    description of its own, at offset 10, while the parent's is at 3) and
 *    writes through it after the restore;
 *  - a private mapping of /dev/zero, three pages, the first written.
 * After SIGUSR1 each checks itself.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "subject.h"

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif

static void fill(int fd, size_t len, char seed) {
  for (size_t i = 0; i < len; i++) {
    char c = (char)(seed + i % 23);
    if (pwrite(fd, &c, 1, (off_t)i) != 1) exit(1);
  }
}

static int same(int fd, size_t len, char seed) {
  for (size_t i = 0; i < len; i++) {
    char c;
    if (pread(fd, &c, 1, (off_t)i) != 1 || c != (char)(seed + i % 23)) return 0;
  }
  return 1;
}

static int make(const char *name, unsigned flags) {
  int fd = memfd_create(name, flags);
  if (fd < 0) {
    printf("FAIL: memfd_create(%s): %s\n", name, strerror(errno));
    exit(1);
  }
  return fd;
}

static off_t size_of(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 ? st.st_size : -1;
}

int main(void) {
  long page = sysconf(_SC_PAGESIZE);
  int plain = make("plain", 0);
  fill(plain, 100, 'a');
  fchmod(plain, 0640);
  lseek(plain, 37, SEEK_SET);
  fcntl(plain, F_SETFL, O_APPEND);

  int sealed = make("sealed", MFD_ALLOW_SEALING | MFD_CLOEXEC);
  fill(sealed, 5000, 'b');
  if (fcntl(sealed, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) return 1;

  int unsealed = make("unsealed", MFD_ALLOW_SEALING);
  fill(unsealed, 10, 'c');
  int nosealing = make("nosealing", 0);
  int noexec = make("noexec", MFD_NOEXEC_SEAL);
  fill(noexec, 64, 'd');
  struct stat nst;
  fstat(noexec, &nst);
  const int noexec_seals = fcntl(noexec, F_GET_SEALS);

  int priv = make("private", 0);
  fill(priv, (size_t)(2 * page), 'e');
  char *pm = mmap(NULL, (size_t)(2 * page), PROT_READ | PROT_WRITE, MAP_PRIVATE, priv, 0);
  if (pm == MAP_FAILED) return 1;
  memset(pm, 'P', (size_t)page);

  int reopened = make("reopened", 0);
  fill(reopened, 200, 'f');
  lseek(reopened, 3, SEEK_SET);

  int zero = open("/dev/zero", O_RDWR);
  char *zm = mmap(NULL, (size_t)(3 * page), PROT_READ | PROT_WRITE, MAP_PRIVATE, zero, 0);
  if (zm == MAP_FAILED) return 1;
  close(zero);
  memset(zm, 'Z', (size_t)page);

  subject_install();
  int ready[2];
  if (pipe(ready) != 0) return 1;
  pid_t child = fork();
  if (child == 0) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd/%d", getppid(), reopened);
    int mine = open(path, O_RDWR);
    char buf[10];
    if (mine < 0 || read(mine, buf, 10) != 10) _exit(2);
    if (write(ready[1], "r", 1) != 1) _exit(2);
    subject_wait();
    int ok = lseek(mine, 0, SEEK_CUR) == 10 && lseek(reopened, 0, SEEK_CUR) == 3;
    if (pwrite(mine, "X", 1, 50) != 1) ok = 0;
    _exit(ok ? 0 : 3);
  }
  char c;
  if (read(ready[0], &c, 1) != 1) return 1;
  printf("READY %d %d\n", getpid(), child);
  fflush(stdout);
  subject_wait();

  SUBJECT_CHECK(same(plain, 100, 'a') && size_of(plain) == 100, "plain: contents or size");
  struct stat st;
  fstat(plain, &st);
  SUBJECT_CHECK((st.st_mode & 07777) == 0640, "plain: mode %o", st.st_mode & 07777);
  SUBJECT_CHECK(lseek(plain, 0, SEEK_CUR) == 37, "plain: offset %ld", (long)lseek(plain, 0, SEEK_CUR));
  SUBJECT_CHECK(fcntl(plain, F_GETFL) & O_APPEND, "plain: O_APPEND lost");
  SUBJECT_CHECK(same(sealed, 5000, 'b') && size_of(sealed) == 5000, "sealed: contents or size");
  SUBJECT_CHECK(fcntl(sealed, F_GETFD) == FD_CLOEXEC && fcntl(plain, F_GETFD) == 0,
                "MFD_CLOEXEC: %d and %d", fcntl(sealed, F_GETFD), fcntl(plain, F_GETFD));
  const struct { int fd; const char *name; } names[] = {{plain, "plain"}, {sealed, "sealed"}, {noexec, "noexec"}};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    char link[64], target[128], want[128];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", names[i].fd);
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    target[n > 0 ? n : 0] = 0;
    snprintf(want, sizeof(want), "/memfd:%s (deleted)", names[i].name);
    SUBJECT_CHECK(strcmp(target, want) == 0, "name: %s, not %s", target, want);
  }
  SUBJECT_CHECK(fcntl(sealed, F_GET_SEALS) == (F_SEAL_SHRINK | F_SEAL_GROW), "sealed: seals 0x%x",
                fcntl(sealed, F_GET_SEALS));
  SUBJECT_CHECK(ftruncate(sealed, 10) != 0 && errno == EPERM, "sealed: it shrank");
  SUBJECT_CHECK(fcntl(unsealed, F_GET_SEALS) == 0, "unsealed: seals 0x%x", fcntl(unsealed, F_GET_SEALS));
  SUBJECT_CHECK(fcntl(unsealed, F_ADD_SEALS, F_SEAL_WRITE) == 0, "unsealed: cannot be sealed: %s",
                strerror(errno));
  SUBJECT_CHECK(same(unsealed, 10, 'c'), "unsealed: contents");
  SUBJECT_CHECK(fcntl(nosealing, F_GET_SEALS) == F_SEAL_SEAL, "nosealing: seals 0x%x",
                fcntl(nosealing, F_GET_SEALS));
  SUBJECT_CHECK(size_of(nosealing) == 0, "nosealing: size");
  fstat(noexec, &st);
  SUBJECT_CHECK(fcntl(noexec, F_GET_SEALS) == noexec_seals && (noexec_seals & F_SEAL_EXEC),
                "noexec: seals 0x%x, not 0x%x", fcntl(noexec, F_GET_SEALS), noexec_seals);
  SUBJECT_CHECK((st.st_mode & 07777) == (nst.st_mode & 07777), "noexec: mode %o, not %o",
                st.st_mode & 07777, nst.st_mode & 07777);
  SUBJECT_CHECK(fchmod(noexec, 0777) != 0, "noexec: could be made executable");
  SUBJECT_CHECK(same(noexec, 64, 'd'), "noexec: contents");

  int pm_ok = 1;
  for (long i = 0; i < page; i++) pm_ok &= pm[i] == 'P' && pm[page + i] == (char)('e' + (page + i) % 23);
  SUBJECT_CHECK(pm_ok, "private: the mapping's bytes");
  SUBJECT_CHECK(same(priv, (size_t)(2 * page), 'e'), "private: the memfd took the mapping's writes");
  memset(pm + page, 'Q', 10);
  SUBJECT_CHECK(same(priv, (size_t)(2 * page), 'e'), "private: a new write reached the memfd");

  int zm_ok = 1;
  for (long i = 0; i < page; i++) zm_ok &= zm[i] == 'Z' && zm[page + i] == 0 && zm[2 * page + i] == 0;
  SUBJECT_CHECK(zm_ok, "/dev/zero: the mapping's bytes");

  kill(child, SIGUSR1);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  SUBJECT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "reopened: child status 0x%x", status);
  char x = 0;
  SUBJECT_CHECK(pread(reopened, &x, 1, 50) == 1 && x == 'X', "reopened: the child's write is not in it");
  SUBJECT_CHECK(lseek(reopened, 0, SEEK_CUR) == 3, "reopened: parent's offset");
  return subject_verdict();
}
