/*
 * Maps the file argv[1] privately (read-only, as a program maps its code)
 * and keeps a copy of its first 64 KiB. On SIGUSR1 compares the mapping
 * with the copy: PASS when the file the restore mapped is the one it had.
 */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "subject.h"

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  int fd = open(argv[1], O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) return 2;
  size_t len = (size_t)st.st_size < 65536 ? (size_t)st.st_size : 65536;
  const char *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) return 2;
  close(fd);
  char *copy = malloc(len);
  memcpy(copy, map, len);
  subject_ready();
  subject_wait();
  SUBJECT_CHECK(memcmp(copy, map, len) == 0, "the mapped file's contents changed");
  return subject_verdict();
}
