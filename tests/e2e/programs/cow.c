/*
 * Copy-on-write sharing after fork, as a prefork server has it: the parent
 * fills 32 MiB (or argv[1] pages) of private anonymous memory, a read-only region and heap
 * blocks, then forks four workers; worker 1 forks a grandchild. Worker 0
 * leads a group of its own, worker 2 a session of its own. After the
 * forks each worker writes 8 pages of its own, drops one page
 * (MADV_DONTNEED: zero for it, not for the others), worker 3 writes a page
 * of the read-only region; the parent then writes 16 pages (the workers
 * keep the old contents). Every page a task did not write must still be
 * the very page its parent has (same frame in /proc/PID/pagemap).
 *
 * READY <parent> <w0> <w1> <w2> <w3> <grandchild>. After SIGUSR1 (to the
 * parent, which passes it on), each task checks its contents and its
 * sharing, then writes a page it shared: the others must not see it.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "subject.h"

#define PAGE 4096
/* 32 MiB, or argv[1] pages (at least 512) */
static int NPAGES = 8192;
#define RO_PAGES 256
#define NHEAP 16
#define HEAP_BLOCK (100 * 1024)
#define PARENT_FIRST (NPAGES / 2 + 16) /* pages the parent writes after the forks */
#define PARENT_COUNT 16
#define DROPPED (NPAGES / 2 + 64)  /* worker w drops page DROPPED + w */
#define SHARED_WRITE (NPAGES - 8) /* a page each task writes after the restore */

static uint8_t *region, *ro;
static uint8_t *heap[NHEAP];

static uint32_t value(int page, int who) { return (uint32_t)page * 2654435761u + (uint32_t)who; }

static void fill_page(uint8_t *p, uint32_t v) {
  for (int i = 0; i < PAGE / 4; i++) ((uint32_t *)p)[i] = v + (uint32_t)i;
}

static int page_is(const uint8_t *p, uint32_t v) {
  for (int i = 0; i < PAGE / 4; i++) {
    if (((const uint32_t *)p)[i] != v + (uint32_t)i) return 0;
  }
  return 1;
}

static int page_is_zero(const uint8_t *p) {
  for (int i = 0; i < PAGE; i++) {
    if (p[i]) return 0;
  }
  return 1;
}

/* Worker w (0-3) writes pages [w * 64, w * 64 + 8); the grandchild (w = 4)
 * writes [300, 304). Each worker drops page DROPPED + w. */
static int writes(int who, int page) {
  if (who == 4) return page >= 300 && page < 304;
  return page >= who * 64 && page < who * 64 + 8;
}

static uint64_t frame(int fd, const void *addr) {
  uint64_t e = 0;
  if (pread(fd, &e, sizeof(e), (off_t)((uintptr_t)addr / PAGE * 8)) != sizeof(e)) return 0;
  if (!(e >> 63 & 1)) return 0;
  return e & ((1ull << 55) - 1);
}

/* The pages of `region` that `who` and its ancestors never wrote since
 * they forked: the same frames as its parent's. Returns the percentage. */
static int shared_percent(int who, pid_t parent, int *candidates) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/pagemap", parent);
  int pfd = open(path, O_RDONLY), sfd = open("/proc/self/pagemap", O_RDONLY);
  int same = 0, total = 0;
  for (int i = 0; i < NPAGES; i++) {
    if (writes(who, i) || (i >= PARENT_FIRST && i < PARENT_FIRST + PARENT_COUNT) ||
        (i >= DROPPED && i < DROPPED + 5) || i == SHARED_WRITE || (who == 4 && writes(1, i))) {
      continue;
    }
    total++;
    uint64_t mine = frame(sfd, region + (size_t)i * PAGE), theirs = frame(pfd, region + (size_t)i * PAGE);
    if (mine != 0 && mine == theirs) same++;
  }
  close(pfd);
  close(sfd);
  *candidates = total;
  return total ? same * 100 / total : 0;
}

/* What `who` sees: -1 the parent, 0-3 the workers, 4 the grandchild
 * (which has worker 1's pages). */
static void check_contents(int who, int after_restore) {
  for (int i = 0; i < NPAGES; i++) {
    const uint8_t *p = region + (size_t)i * PAGE;
    int writer = -1;  /* whose value the page has: -1 the parent's original */
    if (who >= 0 && writes(who, i)) writer = who;
    if (who == 4 && writes(1, i)) writer = 1;
    if (who == -1 && i >= PARENT_FIRST && i < PARENT_FIRST + PARENT_COUNT) writer = 100;
    /* The grandchild has the page worker 1 dropped before its fork. */
    int dropped = who == 4 ? i == DROPPED + 1 : who >= 0 && i == DROPPED + who;
    if (dropped) {
      if (!page_is_zero(p)) {
        subject_fail("task %d: dropped page %d is not zero", who, i);
        return;
      }
      continue;
    }
    if (!page_is(p, value(i, writer))) {
      subject_fail("task %d (%s): page %d does not hold writer %d's contents", who,
                   after_restore ? "restored" : "before", i, writer);
      return;
    }
  }
  for (int i = 0; i < RO_PAGES; i++) {
    int writer = who == 3 && i == 7 ? 3 : -1;
    if (!page_is(ro + (size_t)i * PAGE, value(i + 50000, writer))) {
      subject_fail("task %d: read-only page %d is wrong", who, i);
      return;
    }
  }
  for (int b = 0; b < NHEAP; b++) {
    for (int i = 0; i < HEAP_BLOCK; i += 512) {
      if (heap[b][i] != (uint8_t)(b * 7 + i / 512)) {
        subject_fail("task %d: heap block %d is wrong at %d", who, b, i);
        return;
      }
    }
  }
}

static void check_sharing(int who, pid_t parent, const char *when) {
  int candidates = 0;
  int pct = shared_percent(who, parent, &candidates);
  if (pct < 95) {
    subject_fail("task %d (%s): only %d%% of %d untouched pages are still its parent's", who, when,
                 pct, candidates);
  }
}

/* A worker, or the grandchild (who = 4), after the forks. */
static int run_child(int who, int ready_fd, pid_t grandchild) {
  for (int i = 0; i < NPAGES; i++) {
    if (writes(who, i)) fill_page(region + (size_t)i * PAGE, value(i, who));
  }
  if (who != 4) madvise(region + (size_t)(DROPPED + who) * PAGE, PAGE, MADV_DONTNEED);
  if (who == 3) {
    mprotect(ro, (size_t)RO_PAGES * PAGE, PROT_READ | PROT_WRITE);
    fill_page(ro + 7 * PAGE, value(7 + 50000, 3));
    mprotect(ro, (size_t)RO_PAGES * PAGE, PROT_READ);
  }
  /* Sharing as the kernel made it (and frame numbers visible at all). */
  check_sharing(who, getppid(), "before the dump");
  char c = subject_failures ? 'f' : 'r';
  if (write(ready_fd, &c, 1) != 1) _exit(2);
  subject_wait();
  if (grandchild > 0) kill(grandchild, SIGUSR1);
  check_contents(who, 1);
  check_sharing(who, getppid(), "restored");
  /* Its own copy now: nobody else sees this. */
  fill_page(region + (size_t)SHARED_WRITE * PAGE, value(SHARED_WRITE, 200 + who));
  if (grandchild > 0) {
    int status = 0;
    while (waitpid(grandchild, &status, 0) < 0 && errno == EINTR) {
    }
    SUBJECT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the grandchild failed (0x%x)",
                  status);
  }
  return subject_failures ? 1 : 0;
}

int main(int argc, char **argv) {
  subject_install();
  if (argc > 1 && atoi(argv[1]) >= 512) NPAGES = atoi(argv[1]);
  region = mmap(NULL, (size_t)NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                -1, 0);
  ro = mmap(NULL, (size_t)RO_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
            0);
  if (region == MAP_FAILED || ro == MAP_FAILED) {
    printf("FAIL: mmap\n");
    return 1;
  }
  /* No huge pages: a child's write would split them, and the sharing
   * would be counted in other units. */
  madvise(region, (size_t)NPAGES * PAGE, MADV_NOHUGEPAGE);
  for (int i = 0; i < NPAGES; i++) fill_page(region + (size_t)i * PAGE, value(i, -1));
  for (int i = 0; i < RO_PAGES; i++) fill_page(ro + (size_t)i * PAGE, value(i + 50000, -1));
  mprotect(ro, (size_t)RO_PAGES * PAGE, PROT_READ);
  for (int b = 0; b < NHEAP; b++) {
    heap[b] = malloc(HEAP_BLOCK);
    for (int i = 0; i < HEAP_BLOCK; i++) heap[b][i] = (uint8_t)(b * 7 + i / 512);
  }
  int ready[2];
  if (pipe(ready) != 0) return 1;
  pid_t workers[4], grandchild = 0;
  fflush(stdout);
  for (int w = 0; w < 4; w++) {
    workers[w] = fork();
    if (workers[w] == 0) {
      close(ready[0]);
      if (w == 0) setpgid(0, 0);
      if (w == 2) setsid();
      pid_t g = 0;
      if (w == 1) {
        /* Worker 1's own pages and its dropped page come before the
         * grandchild's fork: it has them. */
        for (int i = 0; i < NPAGES; i++) {
          if (writes(1, i)) fill_page(region + (size_t)i * PAGE, value(i, 1));
        }
        madvise(region + (size_t)(DROPPED + 1) * PAGE, PAGE, MADV_DONTNEED);
        g = fork();
        if (g == 0) _exit(run_child(4, ready[1], 0));
        /* Tell the parent the grandchild's PID. */
        char msg[1 + sizeof(g)] = {'g'};
        memcpy(msg + 1, &g, sizeof(g));
        if (write(ready[1], msg, sizeof(msg)) != sizeof(msg)) _exit(2);
      }
      _exit(run_child(w, ready[1], g));
    }
  }
  close(ready[1]);
  /* Four workers and the grandchild say 'r' (or 'f'); worker 1 sends 'g'
   * and the grandchild's PID. */
  int got = 0;
  while (got < 5) {
    char buf[16];
    ssize_t n = read(ready[0], buf, 1);
    if (n != 1) {
      printf("FAIL: a worker did not start\n");
      return 1;
    }
    if (buf[0] == 'r') {
      got++;
    } else if (buf[0] == 'f') {
      printf("FAIL: a worker's pages were not shared before the dump\n");
      return 1;
    } else if (buf[0] == 'g') {
      /* The grandchild's PID follows (one write: nothing comes between). */
      if (read(ready[0], &grandchild, sizeof(grandchild)) != sizeof(grandchild)) return 1;
    }
  }
  for (int i = PARENT_FIRST; i < PARENT_FIRST + PARENT_COUNT; i++) {
    fill_page(region + (size_t)i * PAGE, value(i, 100));
  }
  check_contents(-1, 0);
  if (subject_failures) return 1;
  printf("READY %d %d %d %d %d %d\n", getpid(), workers[0], workers[1], workers[2], workers[3],
         grandchild);
  fflush(stdout);
  subject_wait();
  for (int w = 0; w < 4; w++) kill(workers[w], SIGUSR1);
  check_contents(-1, 1);
  int failed = 0;
  for (int w = 0; w < 4; w++) {
    int status = 0;
    while (waitpid(workers[w], &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed++;
  }
  SUBJECT_CHECK(failed == 0, "%d workers failed", failed);
  /* The workers' writes to the page they shared stayed theirs. */
  SUBJECT_CHECK(page_is(region + (size_t)SHARED_WRITE * PAGE, value(SHARED_WRITE, -1)),
                "a worker's write after the restore shows in the parent");
  return subject_verdict();
}
