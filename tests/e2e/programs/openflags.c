/*
 * Open flags the kernel reports come back as they were: a file made with
 * O_TMPFILE (written to), one opened O_RDONLY|O_NOATIME|O_DSYNC|O_SYNC
 * with an explicit O_LARGEFILE, one O_WRONLY|O_APPEND|O_NONBLOCK, and a
 * directory opened O_DIRECTORY|O_NOFOLLOW. After SIGUSR1 each reads back
 * the same F_GETFL (O_TMPFILE aside: the restored file is an unlinked
 * regular file, as that one had become) and the tmpfile its bytes.
 * Also a symlink open O_PATH|O_NOFOLLOW (still the link, with its text)
 * and a /dev/null node made with mknod, opened and unlinked (still that
 * device, with no links). argv[1] is a directory; mknod needs CAP_MKNOD,
 * which a sandbox may lack: without argv[2] "mknod" the node is skipped
 * when mknod fails with EPERM.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

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
  char link[4200], node[4200];
  snprintf(link, sizeof(link), "%s/link", dir);
  snprintf(node, sizeof(node), "%s/null", dir);
  if (symlink("target-text", link) != 0) return 1;
  int lfd = open(link, O_PATH | O_NOFOLLOW);
  if (lfd < 0) return 1;
  const int lflags = fcntl(lfd, F_GETFL);
  int nfd = -1;
  if (mknod(node, S_IFCHR | 0620, makedev(1, 3)) == 0) {
    chmod(node, 0620);
    nfd = open(node, O_RDWR);
    if (nfd < 0 || unlink(node) != 0) return 1;
  } else if (errno != EPERM || (argc > 2 && strcmp(argv[2], "mknod") == 0)) {
    printf("FAIL: mknod: %s\n", strerror(errno));
    return 1;
  }
  subject_ready();
  subject_wait();
  struct stat st;
  char text[64] = {0};
  SUBJECT_CHECK(fstat(lfd, &st) == 0 && S_ISLNK(st.st_mode), "the O_PATH fd is not a symlink");
  SUBJECT_CHECK(readlinkat(lfd, "", text, sizeof(text) - 1) == 11 && strcmp(text, "target-text") == 0,
                "the symlink reads '%s'", text);
  SUBJECT_CHECK(fcntl(lfd, F_GETFL) == lflags, "symlink: flags 0%o, not 0%o", fcntl(lfd, F_GETFL), lflags);
  if (nfd >= 0) {
    SUBJECT_CHECK(fstat(nfd, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3),
                  "the unlinked node is not /dev/null's device");
    SUBJECT_CHECK(st.st_nlink == 0 && (st.st_mode & 07777) == 0620, "the node: %d links, mode %o",
                  (int)st.st_nlink, st.st_mode & 07777);
    SUBJECT_CHECK(write(nfd, "x", 1) == 1, "writing to the node: %s", strerror(errno));
  }
  for (int i = 0; i < 4; i++) {
    int now = fcntl(fds[i], F_GETFL);
    if (i == 0) now &= ~TMPFILE_BITS;
    SUBJECT_CHECK(now == flags[i], "fd %d: flags 0%o, not 0%o", fds[i], now, flags[i]);
  }
  char buf[8] = {0};
  SUBJECT_CHECK(pread(fds[0], buf, 7, 0) == 7 && strcmp(buf, "tmpfile") == 0, "tmpfile: '%s'", buf);
  return subject_verdict();
}
