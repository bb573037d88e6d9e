/*
 * Threads in loops of 1 ms sleeps, the way an event loop with a short
 * timer spends its time: nanosleep(), poll() with no fds, and a futex wait
 * that times out. A sleep that short usually ends, or its timer fires,
 * while the dump is still working out how much of it was left; the restore
 * must then let it end as done, never with an EINTR the program did not
 * ask for (it has no signal handler for the threads to be interrupted by).
 * Each thread counts the returns that are not what its call gives when the
 * time runs out: none may fail for nanosleep; poll and the futex wait may
 * still get EINTR now and then on a loaded machine (counted and printed),
 * nothing else. Prints READY; on SIGUSR1 stops the loops and prints PASS
 * or FAIL.
 */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>

#include "subject.h"

static volatile int stop;
static volatile long rounds[3], wrong[3], interrupted[3];
static volatile int last_errno[3];
static uint32_t word;

static void *sleeper(void *arg) {
  const int kind = (int)(intptr_t)arg;
  subject_block_usr1();
  while (!stop) {
    int ok;
    if (kind == 0) {
      struct timespec d = {0, 1000000};
      ok = nanosleep(&d, NULL) == 0;
    } else if (kind == 1) {
      ok = poll(NULL, 0, 1) == 0;
    } else {
      struct timespec d = {0, 1000000};
      ok = syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, &d, NULL, 0) == -1 && errno == ETIMEDOUT;
    }
    if (!ok) {
      last_errno[kind] = errno;
      /* poll and the futex wait may still see EINTR after a restore now
       * and then (a probe on a loaded machine that could not tell); any
       * other failure is wrong. */
      if (kind == 0 || errno != EINTR) wrong[kind]++;
      else interrupted[kind]++;
    }
    rounds[kind]++;
  }
  return NULL;
}

int main(void) {
  subject_install();
  pthread_t t[3];
  for (int i = 0; i < 3; ++i) {
    if (pthread_create(&t[i], NULL, sleeper, (void *)(intptr_t)i) != 0) {
      printf("FAIL: pthread_create\n");
      return 1;
    }
  }
  subject_ready();
  subject_wait();
  stop = 1;
  static const char *const names[] = {"nanosleep", "poll", "futex wait"};
  for (int i = 0; i < 3; ++i) {
    pthread_join(t[i], NULL);
    SUBJECT_CHECK(rounds[i] > 0, "%s: never ran", names[i]);
    SUBJECT_CHECK(wrong[i] == 0, "%s: %ld of %ld calls did not end as timed out (last errno %d)",
                  names[i], wrong[i], rounds[i], last_errno[i]);
  }
  printf("poll EINTR %ld of %ld, futex wait EINTR %ld of %ld\n", interrupted[1], rounds[1],
         interrupted[2], rounds[2]);
  return subject_verdict();
}
