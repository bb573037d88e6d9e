/*
 * A process that unmapped its [vdso] (and [vvar], [vvar_vclock]), as some
 * sandboxes and emulators do: after SIGUSR1 it still has none, and its
 * memory is intact. It calls nothing that would go through the vdso.
 */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/syscall.h>

#include "subject.h"

static char maps[65536];

static void read_maps(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  size_t n = f ? fread(maps, 1, sizeof(maps) - 1, f) : 0;
  if (f) fclose(f);
  maps[n] = 0;
}

static int has_vdso_family(void) {
  read_maps();
  return strstr(maps, "[vdso]") || strstr(maps, "[vvar]") || strstr(maps, "[vvar_vclock]");
}

static char data[1 << 20];

int main(void) {
  read_maps();
  /* Unmap every mapping of the family, each by its range. */
  for (char *line = maps; line && *line;) {
    char *next = strchr(line, '\n');
    if (next) *next++ = 0;
    unsigned long lo, hi;
    if ((strstr(line, "[vdso]") || strstr(line, "[vvar]") || strstr(line, "[vvar_vclock]")) &&
        sscanf(line, "%lx-%lx", &lo, &hi) == 2) {
      syscall(SYS_munmap, lo, hi - lo);
    }
    line = next;
  }
  if (has_vdso_family()) {
    printf("FAIL: the vdso is still mapped\n");
    return 1;
  }
  for (size_t i = 0; i < sizeof(data); i++) data[i] = (char)(i * 7);
  subject_ready();
  subject_wait();
  SUBJECT_CHECK(!has_vdso_family(), "a vdso mapping came back");
  for (size_t i = 0; i < sizeof(data); i++) {
    if (data[i] != (char)(i * 7)) {
      subject_fail("data differs at %zu", i);
      break;
    }
  }
  return subject_verdict();
}
