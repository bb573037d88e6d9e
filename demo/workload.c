/*
 * The demo's sample workload: fills 64 MiB with a pattern, then every
 * 300 ms prints a tick, the time it has run and a checksum of its memory.
 * SIGUSR1 makes it check its memory once more and exit (0 if intact).
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

static uint64_t checksum(const uint64_t *p, size_t n) {
  uint64_t h = 0;
  for (size_t i = 0; i < n; i++) h = h * 31 + p[i];
  return h;
}

int main(void) {
  size_t n = (64u << 20) / 8;
  uint64_t *mem = malloc(n * 8);
  for (size_t i = 0; i < n; i++) mem[i] = i * 0x9E3779B97F4A7C15ull;
  const uint64_t expected = checksum(mem, n);
  signal(SIGUSR1, on_usr1);
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (long tick = 1; !stop; tick++) {
    clock_gettime(CLOCK_MONOTONIC, &now);
    double ran = (now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9;
    printf("workload pid %d: tick %3ld, running %5.1f s, memory checksum %016llx\n", getpid(),
           tick, ran, (unsigned long long)checksum(mem, n));
    fflush(stdout);
    usleep(300 * 1000);
  }
  int ok = checksum(mem, n) == expected;
  printf("workload pid %d: stopping, 64 MiB of memory %s\n", getpid(), ok ? "intact" : "CORRUPT");
  return ok ? 0 : 1;
}
