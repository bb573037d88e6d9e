/*
 * A symlink open O_PATH|O_NOFOLLOW, then unlinked: after SIGUSR1 the fd
 * is still that symlink (S_IFLNK, its text, its owner), and its path is
 * gone. argv[1] is a directory.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>

#include "subject.h"

int main(int argc, char **argv) {
  char link[4200];
  snprintf(link, sizeof(link), "%s/delsymlink-%d", argc > 1 ? argv[1] : "/tmp", getpid());
  const char *text = "../some/where/it-pointed";
  unlink(link);
  if (symlink(text, link) != 0) return 1;
  int fd = open(link, O_PATH | O_NOFOLLOW);
  if (fd < 0 || unlink(link) != 0) return 1;
  struct stat before;
  if (fstatat(fd, "", &before, AT_EMPTY_PATH) != 0) return 1;
  subject_ready();
  subject_wait();
  struct stat st;
  char buf[256] = {0};
  SUBJECT_CHECK(fstatat(fd, "", &st, AT_EMPTY_PATH) == 0 && S_ISLNK(st.st_mode),
                "fd %d is not a symlink", fd);
  SUBJECT_CHECK(st.st_uid == before.st_uid && st.st_gid == before.st_gid, "its owner changed");
  SUBJECT_CHECK(readlinkat(fd, "", buf, sizeof(buf) - 1) == (ssize_t)strlen(text) &&
                    strcmp(buf, text) == 0,
                "its text is '%s'", buf);
  SUBJECT_CHECK((fcntl(fd, F_GETFL) & O_PATH) != 0, "it is not O_PATH");
  SUBJECT_CHECK(st.st_nlink == 0, "it has %ld links", (long)st.st_nlink);
  struct stat gone;
  SUBJECT_CHECK(lstat(link, &gone) != 0 && errno == ENOENT, "%s exists again", link);
  return subject_verdict();
}
