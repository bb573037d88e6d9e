/*
 * Benchmark subject: a trivial process, a loop that sleeps 10 ms and
 * counts. Prints READY first.
 */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(void) {
  printf("READY %d\n", getpid());
  fflush(stdout);
  volatile unsigned long n = 0;
  for (;;) {
    struct timespec d = {0, 10 * 1000 * 1000};
    nanosleep(&d, NULL);
    n++;
  }
}
