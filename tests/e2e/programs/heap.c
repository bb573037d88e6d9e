/*
 * A heap of distinct pseudo-random pages (argv[1] MiB, default 256):
 * checksummed before and after; malloc/free and brk growth must work
 * after the restore.
 */
#include <stdint.h>

#include "subject.h"

static uint64_t page_word(uint64_t page, uint64_t i) {
  uint64_t x = page * 0x9E3779B97F4A7C15ull + i * 0xBF58476D1CE4E5B9ull + 1;
  x ^= x >> 31;
  x *= 0x94D049BB133111EBull;
  return x ^ (x >> 29);
}

int main(int argc, char **argv) {
  size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 256;
  size_t bytes = mib << 20;
  uint64_t *heap = malloc(bytes);
  if (heap == NULL) return 2;
  size_t words = bytes / 8;
  for (size_t w = 0; w < words; w++) heap[w] = page_word(w / 512, w % 512);
  /* Small blocks too, so that malloc's own state is in play. */
  char *small[64];
  for (int i = 0; i < 64; i++) {
    small[i] = malloc(100 + i * 37);
    memset(small[i], i, 100 + i * 37);
  }
  void *brk_before = sbrk(0);

  subject_ready();
  subject_wait();

  size_t bad = 0;
  for (size_t w = 0; w < words; w++) {
    if (heap[w] != page_word(w / 512, w % 512)) bad++;
  }
  SUBJECT_CHECK(bad == 0, "%zu heap words differ", bad);
  for (int i = 0; i < 64; i++) {
    for (int j = 0; j < 100 + i * 37; j++) {
      if (small[i][j] != (char)i) {
        subject_fail("small block %d byte %d", i, j);
        break;
      }
    }
    free(small[i]);
  }
  SUBJECT_CHECK(sbrk(0) == brk_before, "brk moved: %p vs %p", sbrk(0), brk_before);
  /* malloc, free and brk growth after the restore. */
  for (int round = 0; round < 1000; round++) {
    char *p = malloc(1000 + round);
    memset(p, round, 1000 + round);
    free(p);
  }
  char *grown = sbrk(8 << 20);
  SUBJECT_CHECK(grown != (void *)-1, "sbrk(8 MiB) failed: %s", strerror(errno));
  if (grown != (void *)-1) {
    memset(grown, 0x5a, 8 << 20);
    SUBJECT_CHECK(grown[(8 << 20) - 1] == 0x5a, "grown brk area does not hold data");
  }
  free(heap);
  return subject_verdict();
}
