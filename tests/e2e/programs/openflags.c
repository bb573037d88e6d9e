/*
 * Open flags the kernel reports come back as they were: a file made with
 * O_TMPFILE (written to), one opened O_RDONLY|O_NOATIME|O_DSYNC|O_SYNC
 * with an explicit O_LARGEFILE, one O_WRONLY|O_APPEND|O_NONBLOCK, and a
 * directory opened O_DIRECTORY|O_NOFOLLOW. After SIGUSR1 each reads back
 * the same F_GETFL (O_TMPFILE aside: the restored file is an unlinked
 * regular file, as that one had become) and the tmpfile its bytes.
 * argv[1] is a directory.
 */
#define _GNU_SOURCE
#include <fcntl.h>

#include "subject.h"

#define TMPFILE_BITS (020000000 | O_DIRECTORY)

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "/tmp";
  char path[4200];
  int fds[4], flags[4];
  fds[0] = open(dir, O_TMPFILE | O_RDWR, 0600);
  if (fds[0] < 0 || write(fds[0], "tmpfile", 7) != 7) {
    printf("FAIL: O_TMPFILE: %s\n", strerror(errno));
    return 1;
  }
  snprintf(path, sizeof(path), "%s/flags.dat", dir);
  close(open(path, O_CREAT | O_WRONLY, 0600));
  fds[1] = open(path, O_RDONLY | O_NOATIME | O_DSYNC | O_SYNC | O_LARGEFILE);
  fds[2] = open(path, O_WRONLY | O_APPEND | O_NONBLOCK);
  fds[3] = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  for (int i = 0; i < 4; i++) {
    if (fds[i] < 0) {
      printf("FAIL: open %d: %s\n", i, strerror(errno));
      return 1;
    }
    flags[i] = fcntl(fds[i], F_GETFL);
  }
  flags[0] &= ~TMPFILE_BITS;
  subject_ready();
  subject_wait();
  for (int i = 0; i < 4; i++) {
    int now = fcntl(fds[i], F_GETFL);
    if (i == 0) now &= ~TMPFILE_BITS;
    SUBJECT_CHECK(now == flags[i], "fd %d: flags 0%o, not 0%o", fds[i], now, flags[i]);
  }
  char buf[8] = {0};
  SUBJECT_CHECK(pread(fds[0], buf, 7, 0) == 7 && strcmp(buf, "tmpfile") == 0, "tmpfile: '%s'", buf);
  return subject_verdict();
}
