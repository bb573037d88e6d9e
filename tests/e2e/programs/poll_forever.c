/*
 * A thread blocked in poll() without a timeout on a pipe (as tail -f
 * waits), another in ppoll() without one. Says READY once both are
 * asleep; after SIGUSR1 the main thread writes to each pipe: each call
 * must return 1 with POLLIN, never -1/EINTR.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <sys/syscall.h>

#include "subject.h"

static int pipes[2][2];
static volatile pid_t tids[2];
static int results[2], errors[2];

static void *waiter(void *arg) {
  long i = (long)arg;
  subject_block_usr1();
  tids[i] = (pid_t)syscall(SYS_gettid);
  struct pollfd p = {pipes[i][0], POLLIN, 0};
  results[i] = i == 0 ? poll(&p, 1, -1) : ppoll(&p, 1, NULL, NULL);
  errors[i] = errno;
  if (results[i] == 1 && !(p.revents & POLLIN)) results[i] = -2;
  return NULL;
}

static int asleep_in(pid_t tid, long nr) {
  char path[64], buf[256];
  snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", tid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0;
  long got = -1;
  int ok = fgets(buf, sizeof(buf), f) != NULL && sscanf(buf, "%ld", &got) == 1 && got == nr;
  fclose(f);
  return ok;
}

int main(void) {
  subject_install();
  pthread_t t[2];
  for (long i = 0; i < 2; ++i) {
    if (pipe(pipes[i]) != 0 || pthread_create(&t[i], NULL, waiter, (void *)i) != 0) return 2;
  }
  for (int tries = 0; tries < 2000 && !(tids[0] && tids[1] && asleep_in(tids[0], SYS_poll) &&
                                         asleep_in(tids[1], SYS_ppoll));
       ++tries) {
    usleep(1000);
  }
  subject_ready();
  subject_wait();
  usleep(100000);  /* they must still be waiting */
  SUBJECT_CHECK(results[0] == 0 && results[1] == 0, "a wait ended before its pipe was written: %d (%s), %d (%s)",
                results[0], strerror(errors[0]), results[1], strerror(errors[1]));
  for (int i = 0; i < 2; ++i) {
    if (write(pipes[i][1], "x", 1) != 1) subject_fail("write");
    pthread_join(t[i], NULL);
    SUBJECT_CHECK(results[i] == 1, "%s returned %d (%s), not 1", i == 0 ? "poll" : "ppoll", results[i],
                  strerror(errors[i]));
  }
  return subject_verdict();
}
