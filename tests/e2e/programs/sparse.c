/*
 * A deleted sparse file: 1 GiB long, a few bytes of data at its start, in
 * its middle and at its end, mode 0604, owner 1234:5678, written then
 * unlinked. After SIGUSR1: the same size, contents, mode and owner, data
 * and holes where they were (SEEK_DATA/SEEK_HOLE), and no more than a few
 * blocks allocated. argv[1] is a directory; without argv[2] "owner" a
 * user namespace that maps no uid 1234 (Bazel's sandbox) keeps the owner
 * it has.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>

#include "subject.h"

#define GiB (1L << 30)
#define MIDDLE (512L << 20)

static int at(int fd, off_t off, const char *want) {
  char buf[16] = {0};
  size_t n = strlen(want);
  return pread(fd, buf, n, off) == (ssize_t)n && memcmp(buf, want, n) == 0;
}

int main(int argc, char **argv) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/sparse.dat", argc > 1 ? argv[1] : "/tmp");
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || ftruncate(fd, GiB) != 0) return 1;
  if (pwrite(fd, "start", 5, 0) != 5 || pwrite(fd, "middle", 6, MIDDLE) != 6 ||
      pwrite(fd, "end", 3, GiB - 3) != 3) {
    return 1;
  }
  fchmod(fd, 0604);
  uid_t uid = 1234;
  gid_t gid = 5678;
  if (fchown(fd, uid, gid) != 0) {
    if (errno != EINVAL || (argc > 2 && strcmp(argv[2], "owner") == 0)) {
      printf("FAIL: fchown: %s\n", strerror(errno));
      return 1;
    }
    uid = getuid();
    gid = getgid();
  }
  unlink(path);
  subject_ready();
  subject_wait();

  struct stat st;
  SUBJECT_CHECK(fstat(fd, &st) == 0, "fstat: %s", strerror(errno));
  SUBJECT_CHECK(st.st_size == GiB, "size %lld", (long long)st.st_size);
  SUBJECT_CHECK((st.st_mode & 07777) == 0604, "mode %o", st.st_mode & 07777);
  SUBJECT_CHECK(st.st_uid == uid && st.st_gid == gid, "owner %d:%d", st.st_uid, st.st_gid);
  SUBJECT_CHECK(st.st_nlink == 0, "the file has %d links", (int)st.st_nlink);
  SUBJECT_CHECK(st.st_blocks < 1024, "%lld blocks allocated", (long long)st.st_blocks);
  SUBJECT_CHECK(at(fd, 0, "start") && at(fd, MIDDLE, "middle") && at(fd, GiB - 3, "end"),
                "contents");
  char zero[8] = {1};
  SUBJECT_CHECK(pread(fd, zero, 8, 100 << 20) == 8 && memcmp(zero, "\0\0\0\0\0\0\0\0", 8) == 0,
                "a hole reads other than zeros");
  off_t hole = lseek(fd, 0, SEEK_HOLE);
  SUBJECT_CHECK(hole > 0 && hole < MIDDLE, "first hole at %lld", (long long)hole);
  off_t data = lseek(fd, hole, SEEK_DATA);
  SUBJECT_CHECK(data > hole && data <= MIDDLE, "data again at %lld", (long long)data);
  off_t hole2 = lseek(fd, MIDDLE, SEEK_HOLE);
  SUBJECT_CHECK(hole2 > MIDDLE && hole2 < GiB - 4096 * 16, "second hole at %lld", (long long)hole2);
  return subject_verdict();
}
