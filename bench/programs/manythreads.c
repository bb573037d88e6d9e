/*
 * Benchmark subject: one process of argv[1] threads (default 100), all
 * but the main one blocked in pause(). Prints READY once they all exist.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void *sleeper(void *arg) {
  for (;;) pause();
  return arg;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 100;
  for (int i = 1; i < n; i++) {
    pthread_t t;
    pthread_create(&t, NULL, sleeper, NULL);
  }
  usleep(100000);
  printf("READY %d\n", getpid());
  fflush(stdout);
  for (;;) pause();
}
