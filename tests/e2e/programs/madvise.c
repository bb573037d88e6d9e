/*
 * Memory advice and flags: regions with MADV_DONTFORK, MADV_DONTDUMP,
 * MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_MERGEABLE, MADV_WIPEONFORK,
 * mlock, MAP_LOCKED and MAP_NORESERVE, each written. Before READY each
 * region's VmFlags line of /proc/self/smaps is noted; after SIGUSR1 it must
 * read the same, the data must be there, and a fork must still wipe the
 * WIPEONFORK region and leave the DONTFORK one out.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "subject.h"

#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif

#define PAGES 4

struct region {
  const char *name;
  int advice;  /* -1: none */
  int flags;   /* extra mmap flags */
  int lock;
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
    r->addr = mmap(base + i * (len + (size_t)page), len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | r->flags, -1, 0);
    if (r->addr == MAP_FAILED) {
      printf("FAIL: mmap %s: %s\n", r->name, strerror(errno));
      return 1;
    }
    if (r->advice >= 0 && madvise(r->addr, len, r->advice) != 0) {
      printf("FAIL: madvise %s: %s\n", r->name, strerror(errno));
      return 1;
    }
    if (r->lock && mlock(r->addr, len) != 0) {
      printf("FAIL: mlock: %s\n", strerror(errno));
      return 1;
    }
    memset(r->addr, 'a' + (int)i, len);
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
    SUBJECT_CHECK(same, "%s: contents", r->name);
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
    volatile char c = regions[0].addr[0]; /* DONTFORK: not in the child */
    (void)c;
    _exit(4);
  }
  waitpid(child, &status, 0);
  SUBJECT_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "a fork copied DONTFORK (0x%x)", status);
  return subject_verdict();
}
