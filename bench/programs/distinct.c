/*
 * Benchmark subject for the cold runs (bench/cold.py): maps argv[1] MiB of
 * private anonymous memory and fills every 8-byte word of it with a value
 * of its own (no two pages alike, none zero), then prints "READY <pid>"
 * and sleeps. On SIGUSR1 it checks every word and writes "PASS <pages>" or
 * "FAIL page <n> word <w>" to the file argv[2] (created afresh), so that
 * a restored copy proves its memory came back whole.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile sig_atomic_t check_requested;

static void on_usr1(int sig) {
  (void)sig;
  check_requested = 1;
}

static uint64_t word_of(uint64_t i) { return (i * 0x9E3779B97F4A7C15ull) ^ 0x5bd1e995ull ^ (i >> 7); }

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  size_t len = strtoull(argv[1], NULL, 10) << 20;
  const char *result = argv[2];
  uint64_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return 2;
  madvise(p, len, MADV_POPULATE_WRITE);
  size_t words = len / 8;
  for (size_t i = 0; i < words; i++) p[i] = word_of(i) | 1;
  struct sigaction sa = {0};
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  printf("READY %d\n", getpid());
  fflush(stdout);
  for (;;) {
    while (!check_requested) pause();
    check_requested = 0;
    char line[128];
    int n = snprintf(line, sizeof(line), "PASS %zu\n", len / 4096);
    for (size_t i = 0; i < words; i++) {
      if (p[i] != (word_of(i) | 1)) {
        n = snprintf(line, sizeof(line), "FAIL page %zu word %zu\n", i / 512, i % 512);
        break;
      }
    }
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", result);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
      if (write(fd, line, n) != n) n = -1;
      close(fd);
      if (n > 0) rename(tmp, result);
    }
  }
}
