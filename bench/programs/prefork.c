/*
 * Benchmark subject: a prefork server. The parent fills argv[1] MiB
 * (default 64) of private anonymous memory, then forks argv[2] workers
 * (default 8) that sleep in pause(). With argv[3] = 1 each worker first
 * rewrites every page (the same bytes), so that it holds a private copy:
 * the same tree without copy-on-write sharing. Prints the workers' PIDs
 * on a CHILDREN line, then "READY <pid>".
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
  size_t mib = argc > 1 ? (size_t)atoi(argv[1]) : 64;
  int workers = argc > 2 ? atoi(argv[2]) : 8;
  int private_copies = argc > 3 && atoi(argv[3]) == 1;
  size_t len = mib << 20;
  unsigned char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return 1;
  madvise(mem, len, MADV_NOHUGEPAGE);
  for (size_t i = 0; i < len; i += 64) mem[i] = (unsigned char)(i >> 12);
  int ready[2];
  if (pipe(ready) != 0) return 1;
  printf("CHILDREN");
  for (int w = 0; w < workers; w++) {
    pid_t pid = fork();
    if (pid == 0) {
      if (private_copies) {
        volatile unsigned char *v = mem;
        for (size_t i = 0; i < len; i += 4096) v[i] = v[i];
      }
      if (write(ready[1], "r", 1) != 1) _exit(1);
      for (;;) pause();
    }
    printf(" %d", pid);
  }
  for (int w = 0; w < workers; w++) {
    char c;
    if (read(ready[0], &c, 1) != 1) return 1;
  }
  printf("\nREADY %d\n", getpid());
  fflush(stdout);
  for (;;) pause();
}
