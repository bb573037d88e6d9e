/*
 * The floors bench/cold.py compares libckpt with, timed inside this
 * process (CLOCK_MONOTONIC, printed in seconds):
 *
 *   floors write FILE MIB   write MIB MiB into FILE, created afresh (on
 *                           tmpfs: fresh page-cache pages), in 8 MiB
 *                           write()s from a buffer filled beforehand
 *   floors fill FILE        map fresh private anonymous memory of FILE's
 *                           size, MADV_POPULATE_WRITE it, read() FILE into
 *                           it in 8 MiB reads (what a restore must do at
 *                           least), then check the last word landed
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (8u << 20)

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc == 4 && !strcmp(argv[1], "write")) {
    size_t len = strtoull(argv[3], NULL, 10) << 20;
    uint64_t *buf = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) return 2;
    for (size_t i = 0; i < CHUNK / 8; i++) buf[i] = i * 0x9E3779B97F4A7C15ull + 1;
    double t0 = now();
    int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return 2;
    for (size_t done = 0; done < len;) {
      size_t n = len - done < CHUNK ? len - done : CHUNK;
      ssize_t w = write(fd, buf, n);
      if (w <= 0) return 2;
      done += (size_t)w;
    }
    close(fd);
    printf("%.6f\n", now() - t0);
    return 0;
  }
  if (argc == 3 && !strcmp(argv[1], "fill")) {
    double t0 = now();
    int fd = open(argv[2], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < 8) return 2;
    size_t len = (size_t)st.st_size;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 2;
    if (madvise(p, len, MADV_POPULATE_WRITE) != 0) return 2;
    for (size_t done = 0; done < len;) {
      size_t n = len - done < CHUNK ? len - done : CHUNK;
      ssize_t r = read(fd, p + done, n);
      if (r <= 0) return 2;
      done += (size_t)r;
    }
    double t = now() - t0;
    uint64_t last;
    if (pread(fd, &last, 8, st.st_size - 8) != 8 || memcmp(&last, p + len - 8, 8) != 0) return 3;
    printf("%.6f\n", t);
    return 0;
  }
  fprintf(stderr, "usage: floors write FILE MIB | floors fill FILE\n");
  return 2;
}
