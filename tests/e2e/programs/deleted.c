/*
 * A deleted file still open and mapped (shared): its contents come back,
 * the mapping and the fd are on the same (deleted) inode, and a write
 * through one shows through the other. argv[1] is a directory; with
 * argv[2] "mapped-only" the fd is closed before the checkpoint, and only
 * the mapping is checked.
 */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "subject.h"

#define SIZE (3 * 4096 + 100)

int main(int argc, char **argv) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/deleted.dat", argc > 1 ? argv[1] : "/tmp");
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0640);
  for (int i = 0; i < SIZE; i++) {
    char c = (char)('A' + i % 26);
    if (write(fd, &c, 1) != 1) return 2;
  }
  char *map = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) return 2;
  map[5] = '!';
  unlink(path);
  if (argc > 2 && strcmp(argv[2], "mapped-only") == 0) {
    close(fd);
    subject_ready();
    subject_wait();
    for (int i = 0; i < SIZE; i++) {
      char want = i == 5 ? '!' : (char)('A' + i % 26);
      if (map[i] != want) {
        subject_fail("mapping byte %d: %c, want %c", i, map[i], want);
        break;
      }
    }
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[4096];
    int deleted = 0;
    while (fgets(line, sizeof(line), maps)) deleted |= strstr(line, "(deleted)") != NULL;
    fclose(maps);
    SUBJECT_CHECK(deleted, "no deleted file is mapped any more");
    return subject_verdict();
  }
  subject_ready();
  subject_wait();
  struct stat st;
  fstat(fd, &st);
  SUBJECT_CHECK(st.st_nlink == 0, "the file has %lu links, want 0 (deleted)", (unsigned long)st.st_nlink);
  SUBJECT_CHECK(st.st_size == SIZE, "the file has %ld bytes, want %d", (long)st.st_size, SIZE);
  SUBJECT_CHECK((st.st_mode & 0777) == 0640, "mode %o", st.st_mode & 0777);
  char buf[SIZE];
  SUBJECT_CHECK(pread(fd, buf, SIZE, 0) == SIZE, "read the deleted file");
  for (int i = 0; i < SIZE; i++) {
    char want = i == 5 ? '!' : (char)('A' + i % 26);
    if (buf[i] != want || map[i] != want) {
      subject_fail("byte %d: file %c, mapping %c, want %c", i, buf[i], map[i], want);
      break;
    }
  }
  map[100] = '#';
  msync(map, SIZE, MS_SYNC);
  SUBJECT_CHECK(pread(fd, buf, 1, 100) == 1 && buf[0] == '#', "the mapping and the fd diverged");
  SUBJECT_CHECK(access(path, F_OK) != 0, "the deleted file reappeared at %s", path);
  return subject_verdict();
}
