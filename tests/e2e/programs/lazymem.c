/*
 * Subject for the lazy restore: argv[1] MiB of private anonymous memory,
 * every 8-byte word a value of its own, and a heap area of the same kind.
 * Prints READY, then waits for SIGUSR1 (restored lazily meanwhile). Then:
 * two threads read random pages and check them while the main thread
 * writes some, drops a range (MADV_DONTNEED: zeros), moves a range
 * (mremap) and forks a child that checks pages of its own copy; at the
 * end every page is checked once more. PASS or FAIL.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "subject.h"

#define PAGE 4096ul

static uint8_t *mem;
static size_t pages;

static uint64_t word_of(uint64_t page, uint64_t w) { return (page * 0x9E3779B97F4A7C15ull) ^ (w * 0x2545F4914F6CDD1Dull) ^ 0x77; }

static int page_ok(const uint8_t *p, uint64_t page) {
  const uint64_t *w = (const uint64_t *)p;
  for (uint64_t i = 0; i < PAGE / 8; i++) {
    if (w[i] != word_of(page, i)) return 0;
  }
  return 1;
}

struct toucher {
  unsigned seed;
  int bad;
};

/* Pages of the first half, but for those the main thread writes. */
static void *touch(void *arg) {
  struct toucher *t = arg;
  subject_block_usr1();
  for (int i = 0; i < 20000; i++) {
    uint64_t p = rand_r(&t->seed) % (pages / 2);
    if (p % 101 == 7) continue;
    if (!page_ok(mem + p * PAGE, p)) t->bad++;
  }
  return NULL;
}

int main(int argc, char **argv) {
  size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 256;
  pages = mib * 256;
  mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return 2;
  for (uint64_t p = 0; p < pages; p++) {
    uint64_t *w = (uint64_t *)(mem + p * PAGE);
    for (uint64_t i = 0; i < PAGE / 8; i++) w[i] = word_of(p, i);
  }
  /* The heap, too (brk): 4 MiB of its own pattern. */
  uint64_t *heap = malloc(4 << 20);
  for (size_t i = 0; i < (4u << 20) / 8; i++) heap[i] = i * 3 + 1;
  subject_ready();
  subject_wait();

  struct toucher t[2] = {{11, 0}, {23, 0}};
  pthread_t th[2];
  for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, touch, &t[i]);
  for (uint64_t p = 7; p < pages / 2; p += 101) mem[p * PAGE + 8] ^= 0xff;
  const uint64_t half = pages / 2;
  SUBJECT_CHECK(madvise(mem + (half + 10) * PAGE, 64 * PAGE, MADV_DONTNEED) == 0, "madvise");
  void *to = mmap(NULL, 128 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  uint8_t *moved = mremap(mem + (half + 200) * PAGE, 128 * PAGE, 128 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, to);
  SUBJECT_CHECK(moved == to, "mremap");
  pid_t c = fork();
  if (c == 0) {
    int bad = 0;
    for (uint64_t p = half + 400; p < half + 1400 && p < pages; p++) bad += !page_ok(mem + p * PAGE, p);
    for (uint64_t p = 0; p < 128; p++) bad += !page_ok(moved + p * PAGE, half + 200 + p);
    _exit(bad ? 1 : 0);
  }
  int status = 0;
  SUBJECT_CHECK(c > 0 && waitpid(c, &status, 0) == c && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "the forked child saw wrong pages (status %d)", status);
  for (int i = 0; i < 2; i++) {
    pthread_join(th[i], NULL);
    SUBJECT_CHECK(t[i].bad == 0, "toucher %d saw %d wrong pages", i, t[i].bad);
  }
  uint64_t wrong = 0, first = ~0ull;
  for (uint64_t p = 0; p < pages; p++) {
    const uint8_t *at = mem + p * PAGE;
    int ok;
    if (p >= half + 200 && p < half + 328) {
      at = moved + (p - half - 200) * PAGE;
    }
    if (p >= half + 10 && p < half + 74) {
      ok = 1;
      for (uint64_t i = 0; i < PAGE; i++) ok &= at[i] == 0;
    } else if (p < half && p % 101 == 7) {
      uint8_t copy[PAGE];
      memcpy(copy, at, PAGE);
      copy[8] ^= 0xff;
      ok = page_ok(copy, p);
    } else {
      ok = page_ok(at, p);
    }
    if (!ok) {
      wrong++;
      if (first == ~0ull) first = p;
    }
  }
  SUBJECT_CHECK(wrong == 0, "%llu wrong pages, the first %llu", (unsigned long long)wrong,
                (unsigned long long)first);
  for (size_t i = 0; i < (4u << 20) / 8; i++) {
    if (heap[i] != i * 3 + 1) {
      SUBJECT_CHECK(0, "heap word %zu", i);
      break;
    }
  }
  return subject_verdict();
}
