/*
 * Benchmark subject: maps argv[1] MiB of anonymous memory and writes one
 * page in every argv[2] (1: dense, 64: sparse), then prints READY and
 * sleeps until killed. Populates with MADV_POPULATE_WRITE first when dense,
 * so that building a 4 GiB subject does not take a fault per page.
 * argv[3] picks the memory: "private" (default), "shared"
 * (MAP_SHARED|MAP_ANONYMOUS) or "sysv" (a SysV segment, in an IPC
 * namespace of the process's own).
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <unistd.h>

int main(int argc, char **argv) {
  size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
  size_t stride = argc > 2 ? strtoul(argv[2], NULL, 10) : 1;
  size_t len = mib << 20;
  const char *kind = argc > 3 ? argv[3] : "private";
  char *p;
  if (strcmp(kind, "sysv") == 0) {
    if (unshare(CLONE_NEWIPC) != 0) return 2;
    int id = shmget(IPC_PRIVATE, len, IPC_CREAT | 0600);
    if (id < 0) return 2;
    p = shmat(id, NULL, 0);
    if (p == (void *)-1) return 2;
  } else {
    int shared = strcmp(kind, "shared") == 0;
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS,
             -1, 0);
    if (p == MAP_FAILED) return 2;
  }
  if (stride == 1) madvise(p, len, MADV_POPULATE_WRITE);
  for (size_t off = 0; off < len; off += 4096 * stride) {
    memset(p + off, (int)(off >> 12), 64);
    p[off + 4095] = 1;
  }
  printf("READY %d %p %zu\n", getpid(), (void *)p, len);
  fflush(stdout);
  for (;;) pause();
}
