/*
 * Threads asleep in every kind of timed wait when the checkpoint comes:
 *
 *   nanosleep        nanosleep(6 s, &rem)
 *   nanosleep-norem  nanosleep(6 s, NULL)      (time left known only to the kernel's timer)
 *   clock-rel        clock_nanosleep(CLOCK_MONOTONIC, 0, 6 s, NULL)
 *   poll             poll() on an idle pipe, 5 s
 *   ppoll            ppoll() on it, 5 s
 *   select           select() on it, 5 s
 *   futex            FUTEX_WAIT on a word nobody changes, 6 s relative
 *   condwait         pthread_cond_timedwait, deadline 6 s ahead (CLOCK_REALTIME)
 *   clock-abs        clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, 6 s ahead)
 *
 *   sleeps TIMES_FILE
 *
 * Prints READY once every thread has started waiting. The harness
 * checkpoints it about 2 s later, kills it, restores it and then writes
 * "<dump start> <restore start>" (CLOCK_MONOTONIC ns) to TIMES_FILE.
 * Relative waits must end at restore start + (time left at dump start),
 * absolute ones at their deadline, each within 1 s, and none with EINTR.
 */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <poll.h>
#include <sys/select.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>

#include "subject.h"

#define NS 1000000000LL

static const char *times_file;
static int idle_pipe[2];
static uint32_t futex_word;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static volatile int started;

static int64_t now(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return ts.tv_sec * NS + ts.tv_nsec;
}

static struct timespec ts_of(int64_t ns) {
  struct timespec ts = {ns / NS, ns % NS};
  return ts;
}

/* The two times the harness writes once the restore is done. */
static int read_times(int64_t *dump_start, int64_t *restore_start) {
  for (int i = 0; i < 30000; i++) {
    FILE *f = fopen(times_file, "r");
    if (f) {
      long long a, b;
      int n = fscanf(f, "%lld %lld", &a, &b);
      fclose(f);
      if (n == 2) {
        *dump_start = a;
        *restore_start = b;
        return 1;
      }
    }
    usleep(1000);
  }
  return 0;
}

struct waiter {
  const char *name;
  int absolute;   /* a deadline on CLOCK_REALTIME rather than a duration */
  int64_t length; /* ns */
  int64_t t0;     /* CLOCK_MONOTONIC when it started (relative) */
  int64_t deadline; /* CLOCK_REALTIME (absolute) */
  long result;
  int err;
  int64_t ended_mono, ended_real;
};

static void *run(void *arg) {
  struct waiter *w = arg;
  w->t0 = now(CLOCK_MONOTONIC);
  w->deadline = now(CLOCK_REALTIME) + w->length;
  __sync_fetch_and_add(&started, 1);
  errno = 0;
  if (!strcmp(w->name, "nanosleep")) {
    struct timespec req = ts_of(w->length), rem;
    w->result = nanosleep(&req, &rem);
  } else if (!strcmp(w->name, "nanosleep-norem")) {
    struct timespec req = ts_of(w->length);
    w->result = syscall(SYS_nanosleep, &req, NULL);
  } else if (!strcmp(w->name, "clock-rel")) {
    struct timespec req = ts_of(w->length);
    w->result = syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &req, NULL);
  } else if (!strcmp(w->name, "poll")) {
    struct pollfd p = {idle_pipe[0], POLLIN, 0};
    w->result = poll(&p, 1, (int)(w->length / 1000000));
  } else if (!strcmp(w->name, "ppoll")) {
    struct pollfd p = {idle_pipe[0], POLLIN, 0};
    struct timespec t = ts_of(w->length);
    w->result = ppoll(&p, 1, &t, NULL);
  } else if (!strcmp(w->name, "select")) {
    fd_set set;
    FD_ZERO(&set);
    FD_SET(idle_pipe[0], &set);
    struct timeval t = {w->length / NS, 0};
    w->result = select(idle_pipe[0] + 1, &set, NULL, NULL, &t);
  } else if (!strcmp(w->name, "futex")) {
    struct timespec rel = ts_of(w->length);
    w->result = syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, &rel, NULL, 0);
  } else if (!strcmp(w->name, "condwait")) {
    struct timespec abs = ts_of(w->deadline);
    pthread_mutex_lock(&mu);
    w->result = pthread_cond_timedwait(&cv, &mu, &abs);
    pthread_mutex_unlock(&mu);
  } else if (!strcmp(w->name, "clock-abs")) {
    struct timespec abs = ts_of(w->deadline);
    w->result = clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &abs, NULL);
  }
  w->err = errno;
  w->ended_mono = now(CLOCK_MONOTONIC);
  w->ended_real = now(CLOCK_REALTIME);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  times_file = argv[1];
  if (pipe(idle_pipe) != 0) return 2;
  struct waiter ws[] = {
      {"nanosleep", 0, 6 * NS, 0, 0, 0, 0, 0, 0},
      {"nanosleep-norem", 0, 6 * NS, 0, 0, 0, 0, 0, 0},
      {"clock-rel", 0, 6 * NS, 0, 0, 0, 0, 0, 0},
      {"poll", 0, 5 * NS, 0, 0, 0, 0, 0, 0},
      {"ppoll", 0, 5 * NS, 0, 0, 0, 0, 0, 0},
      {"select", 0, 5 * NS, 0, 0, 0, 0, 0, 0},
      {"futex", 0, 6 * NS, 0, 0, 0, 0, 0, 0},
      {"condwait", 1, 6 * NS, 0, 0, 0, 0, 0, 0},
      {"clock-abs", 1, 6 * NS, 0, 0, 0, 0, 0, 0},
  };
  const int n = sizeof(ws) / sizeof(ws[0]);
  pthread_t th[16];
  for (int i = 0; i < n; i++) pthread_create(&th[i], NULL, run, &ws[i]);
  while (started < n) usleep(1000);
  usleep(50000); /* every thread inside its syscall */
  printf("READY %d\n", getpid());
  fflush(stdout);
  for (int i = 0; i < n; i++) pthread_join(th[i], NULL);

  int64_t dump_start, restore_start;
  if (!read_times(&dump_start, &restore_start)) {
    printf("FAIL: no times from the harness\n");
    return 1;
  }
  for (int i = 0; i < n; i++) {
    struct waiter *w = &ws[i];
    long want_result = !strcmp(w->name, "condwait") ? ETIMEDOUT : 0;
    int want_errno = !strcmp(w->name, "futex") ? ETIMEDOUT : 0;
    if (!strcmp(w->name, "futex")) want_result = -1;
    SUBJECT_CHECK(w->result == want_result && (want_errno == 0 || w->err == want_errno),
                  "%s returned %ld (errno %s)", w->name, w->result, strerror(w->err));
    double off;
    if (w->absolute) {
      off = (double)(w->ended_real - w->deadline) / NS;
    } else {
      int64_t left_at_dump = w->t0 + w->length - dump_start;
      off = (double)(w->ended_mono - (restore_start + left_at_dump)) / NS;
    }
    printf("%s: ended %+.3f s from when it should\n", w->name, off);
    SUBJECT_CHECK(off > -1.0 && off < 1.0, "%s ended %.3f s off", w->name, off);
  }
  return subject_verdict();
}
