/*
 * Memory advice and flags: regions with MADV_DONTFORK, MADV_DONTDUMP,
 * MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_MERGEABLE, MADV_WIPEONFORK,
 * mlock, mlock2(MLOCK_ONFAULT), MAP_LOCKED, MAP_NORESERVE, MAP_DROPPABLE
 * and mseal, each written. Before READY each
 * region's VmFlags line of /proc/self/smaps is noted; after SIGUSR1 it must
 * read the same, the data must be there, and a fork must still wipe the
 * WIPEONFORK region and leave the DONTFORK one out.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "subject.h"

#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif

#ifndef MAP_DROPPABLE
#define MAP_DROPPABLE 0x08
#endif
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 1
#endif
#define SYS_MSEAL 462

#define PAGES 4

struct region {
  const char *name;
  int advice;  /* -1: none */
  int flags;   /* extra mmap flags */
  int lock;  /* 1: mlock, 2: mlock2(MLOCK_ONFAULT), 3: mseal */
  char *addr;
  char vmflags[256];
};

static struct region regions[] = {
    {"dontfork", MADV_DONTFORK, 0, 0, NULL, ""},
    {"dontdump", MADV_DONTDUMP, 0, 0, NULL, ""},
    {"hugepage", MADV_HUGEPAGE, 0, 0, NULL, ""},
    {"nohugepage", MADV_NOHUGEPAGE, 0, 0, NULL, ""},
    {"mergeable", MADV_MERGEABLE, 0, 0, NULL, ""},
    {"wipeonfork", MADV_WIPEONFORK, 0, 0, NULL, ""},
    {"mlock", -1, 0, 1, NULL, ""},
    {"map_locked", -1, MAP_LOCKED, 0, NULL, ""},
    {"noreserve", -1, MAP_NORESERVE, 0, NULL, ""},
    {"lockonfault", -1, 0, 2, NULL, ""},
    {"droppable", -1, MAP_DROPPABLE, 0, NULL, ""},
    {"sealed", -1, 0, 3, NULL, ""},
};
#define NR (sizeof(regions) / sizeof(regions[0]))

static void read_vmflags(struct region *r, char *out, size_t len) {
  FILE *f = fopen("/proc/self/smaps", "r");
  char line[512];
  int in = 0;
  out[0] = 0;
  while (f && fgets(line, sizeof(line), f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      in = lo <= (unsigned long)r->addr && (unsigned long)r->addr < hi;
      continue;
    }
    if (in && strncmp(line, "VmFlags:", 8) == 0) {
      snprintf(out, len, "%s", line + 8);
      char *nl = strchr(out, '\n');
      if (nl) *nl = 0;
      break;
    }
  }
  if (f) fclose(f);
}

int main(void) {
  long page = sysconf(_SC_PAGESIZE);
  size_t len = (size_t)(PAGES * page);
  /* A guard page between regions so that none merges with another. */
  char *base = mmap(NULL, NR * (len + (size_t)page), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return 1;
  for (size_t i = 0; i < NR; i++) {
    struct region *r = &regions[i];
    /* MAP_DROPPABLE is a mapping type of its own, not MAP_PRIVATE. */
    int type = r->flags == MAP_DROPPABLE ? MAP_DROPPABLE : MAP_PRIVATE | r->flags;
    r->addr = mmap(base + i * (len + (size_t)page), len, PROT_READ | PROT_WRITE,
                   type | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (r->addr == MAP_FAILED) {
      printf("FAIL: mmap %s: %s\n", r->name, strerror(errno));
      return 1;
    }
    if (r->advice >= 0 && madvise(r->addr, len, r->advice) != 0) {
      printf("FAIL: madvise %s: %s\n", r->name, strerror(errno));
      return 1;
    }
    if ((r->lock == 1 && mlock(r->addr, len) != 0) ||
        (r->lock == 2 && syscall(SYS_mlock2, r->addr, len, MLOCK_ONFAULT) != 0)) {
      printf("FAIL: mlock %s: %s\n", r->name, strerror(errno));
      return 1;
    }
    memset(r->addr, 'a' + (int)i, len);
    if (r->lock == 3 && syscall(SYS_MSEAL, r->addr, len, 0) != 0) {
      printf("FAIL: mseal: %s\n", strerror(errno));
      return 1;
    }
    read_vmflags(r, r->vmflags, sizeof(r->vmflags));
  }
  subject_ready();
  subject_wait();

  for (size_t i = 0; i < NR; i++) {
    struct region *r = &regions[i];
    char now[256];
    read_vmflags(r, now, sizeof(now));
    SUBJECT_CHECK(strcmp(now, r->vmflags) == 0, "%s: VmFlags '%s', not '%s'", r->name, now, r->vmflags);
    int same = 1;
    for (size_t j = 0; j < len; j++) same &= r->addr[j] == (char)('a' + (int)i);
    /* The kernel may drop a droppable page under pressure: zeros then. */
    if (r->flags != MAP_DROPPABLE) SUBJECT_CHECK(same, "%s: contents", r->name);
  }
  pid_t child = fork();
  if (child == 0) {
    int ok = regions[5].addr[0] == 0; /* wiped */
    _exit(ok ? 0 : 3);
  }
  int status = 0;
  waitpid(child, &status, 0);
  SUBJECT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a fork did not wipe WIPEONFORK (0x%x)", status);
  child = fork();
  if (child == 0) {
    signal(SIGSEGV, SIG_DFL); /* a sanitizer's handler would make it an abort */
    volatile char c = regions[0].addr[0]; /* DONTFORK: not in the child */
    (void)c;
    _exit(4);
  }
  waitpid(child, &status, 0);
  SUBJECT_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "a fork copied DONTFORK (0x%x)", status);
  struct region *sealed = &regions[NR - 1];
  SUBJECT_CHECK(munmap(sealed->addr, len) != 0 && errno == EPERM, "the sealed region could be unmapped");
  return subject_verdict();
}
