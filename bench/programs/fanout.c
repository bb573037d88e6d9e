/*
 * Benchmark subject: a root and argv[1]-1 children (default 100 tasks in
 * all), each a small process sleeping in pause(). Prints "READY <pid>" for
 * the root once every child exists, and the children's PIDs on one line.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 100;
  printf("CHILDREN");
  for (int i = 1; i < n; i++) {
    pid_t pid = fork();
    if (pid == 0) {
      for (;;) pause();
    }
    printf(" %d", pid);
  }
  printf("\nREADY %d\n", getpid());
  fflush(stdout);
  for (;;) pause();
}
