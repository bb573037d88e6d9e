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
 *   floors pipe MIB         write MIB MiB to stdout (a pipe, grown to
 *                           pipe-max-size as the dump grows its own) in
 *                           8 MiB write()s from a buffer filled
 *                           beforehand; the time goes to stderr
 *   floors read PID         copy the largest private writable mapping of
 *                           PID into one reused 8 MiB buffer with
 *                           process_vm_readv, 8 MiB at a time (what a dump
 *                           whose checksum covers every byte must do at
 *                           least)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
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
  if (argc == 3 && !strcmp(argv[1], "pipe")) {
    size_t len = strtoull(argv[2], NULL, 10) << 20;
    uint64_t *buf = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) return 2;
    for (size_t i = 0; i < CHUNK / 8; i++) buf[i] = i * 0x9E3779B97F4A7C15ull + 1;
    FILE *max = fopen("/proc/sys/fs/pipe-max-size", "r");
    int pipe_max = 0;
    if (max != NULL && fscanf(max, "%d", &pipe_max) == 1) fcntl(1, F_SETPIPE_SZ, pipe_max);
    if (max != NULL) fclose(max);
    double t0 = now();
    for (size_t done = 0; done < len;) {
      size_t n = len - done < CHUNK ? len - done : CHUNK;
      ssize_t w = write(1, buf, n);
      if (w <= 0) return 2;
      done += (size_t)w;
    }
    fprintf(stderr, "%.6f\n", now() - t0);
    return 0;
  }
  if (argc == 3 && !strcmp(argv[1], "read")) {
    pid_t pid = (pid_t)atoi(argv[2]);
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/%d/maps", pid);
    FILE *maps = fopen(path, "r");
    if (maps == NULL) return 2;
    uint64_t start = 0, end = 0;
    while (fgets(line, sizeof(line), maps) != NULL) {
      uint64_t s, e;
      char perms[8];
      if (sscanf(line, "%lx-%lx %7s", &s, &e, perms) == 3 && perms[0] == 'r' && perms[1] == 'w' &&
          perms[3] == 'p' && e - s > end - start) {
        start = s;
        end = e;
      }
    }
    fclose(maps);
    if (end == start) return 2;
    char *buf = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) return 2;
    memset(buf, 1, CHUNK);
    double t0 = now();
    for (uint64_t at = start; at < end;) {
      size_t n = end - at < CHUNK ? end - at : CHUNK;
      struct iovec local = {buf, n}, remote = {(void *)at, n};
      if (process_vm_readv(pid, &local, 1, &remote, 1, 0) != (ssize_t)n) return 2;
      at += n;
    }
    printf("%.6f\n", now() - t0);
    return 0;
  }
  fprintf(stderr, "usage: floors write FILE MIB | floors fill FILE | floors pipe MIB | floors read PID\n");
  return 2;
}
