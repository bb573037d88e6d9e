/*
 * A time-based loop: every 10 ms of CLOCK_MONOTONIC it bumps a counter and
 * prints it. After the restore the counter continues from where it was
 * (never restarts, never jumps back), and the loop keeps going until
 * SIGUSR1. Sleeps interrupted by the checkpoint are simply resumed.
 */
#include <time.h>

#include "subject.h"

static long ms_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(void) {
  subject_ready();
  long counter = 0, last = 0, next = ms_now();
  while (!subject_go) {
    long now = ms_now();
    if (now >= next) {
      counter++;
      if (counter != last + 1) subject_fail("counter jumped from %ld to %ld", last, counter);
      last = counter;
      printf("COUNT %ld\n", counter);
      fflush(stdout);
      next = now + 10;
    }
    struct timespec d = {0, 2 * 1000 * 1000};
    nanosleep(&d, NULL);
  }
  SUBJECT_CHECK(counter > 0, "the counter never ran");
  return subject_verdict();
}
