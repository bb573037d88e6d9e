/*
 * A child whose main thread has called pthread_exit() while another
 * thread of it runs on: /proc shows the process as a zombie, but it is not
 * one. The dump must refuse it (it cannot restore it), naming why, and
 * leave it running. The child's worker counts in memory it shares with the
 * parent and prints "READY <child pid>"; the parent prints its own READY.
 * On SIGUSR1 the parent checks that the count still moves (the refused
 * dump left nothing stopped), ends the child and prints PASS or FAIL.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#include "subject.h"

static volatile unsigned long *count;

static void *worker(void *arg) {
  (void)arg;
  printf("READY %d\n", getpid());
  fflush(stdout);
  for (;;) {
    struct timespec d = {0, 1000000};
    nanosleep(&d, NULL);
    (*count)++;
  }
  return NULL;
}

int main(void) {
  count = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (count == MAP_FAILED) return 2;
  subject_install();
  pid_t child = fork();
  if (child == 0) {
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0) _exit(2);
    pthread_exit(NULL);
  }
  subject_ready();
  subject_wait();
  unsigned long before = *count;
  struct timespec d = {0, 100 * 1000000};
  nanosleep(&d, NULL);
  SUBJECT_CHECK(*count > before, "the child's worker stopped counting (%lu)", before);
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  return subject_verdict();
}
