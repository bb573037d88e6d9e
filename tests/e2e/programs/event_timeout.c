/*
 * Threads blocked in an epoll wait with a 5 s timeout on an empty epoll
 * (one epoll each) when the checkpoint comes:
 *
 *   event_timeout WAIT...    WAIT: epoll_wait, epoll_pwait, epoll_pwait2
 *
 * epoll_pwait and epoll_pwait2 wait with SIGUSR2 blocked besides the
 * thread's own mask (SIGUSR1 blocked).
 *
 * Prints READY once every thread is inside its call. The harness
 * checkpoints it about 2 s later, kills it and restores it at once. Each
 * wait must then return 0 (the timeout; not -1 with EINTR), 4.5 to 7 s
 * after the thread first called it (CLOCK_MONOTONIC, which runs on while
 * the process is away: the restore takes some time, never 3 s), with the
 * thread's own mask back; the epoll must still be one (empty, and it
 * reports a pipe added to it). Prints PASS or FAIL; no signal needed.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>

#include "subject.h"

#define NS 1000000000LL

struct waiter {
  const char *name;
  long nr; /* its syscall number, as /proc/PID/task/TID/syscall shows it */
  int ep;
  pid_t tid;
  int64_t t0, t1;
  int result, err;
  int usr2_blocked_after; /* the pwait's mask left behind */
};

static int64_t now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * NS + ts.tv_nsec;
}

static void *run(void *arg) {
  struct waiter *w = arg;
  subject_block_usr1();
  sigset_t during;
  pthread_sigmask(SIG_SETMASK, NULL, &during);
  sigaddset(&during, SIGUSR2);
  struct epoll_event ev[4];
  struct timespec five = {5, 0};
  w->tid = (pid_t)syscall(SYS_gettid);
  w->t0 = now();
  if (w->nr == SYS_epoll_wait) {
    w->result = epoll_wait(w->ep, ev, 4, 5000);
  } else if (w->nr == SYS_epoll_pwait) {
    w->result = epoll_pwait(w->ep, ev, 4, 5000, &during);
  } else {
    w->result = epoll_pwait2(w->ep, ev, 4, &five, &during);
  }
  w->err = errno;
  w->t1 = now();
  sigset_t after;
  pthread_sigmask(SIG_SETMASK, NULL, &after);
  w->usr2_blocked_after = sigismember(&after, SIGUSR2);
  return NULL;
}

/* Whether thread `tid` is blocked in syscall `nr` (its syscall file). */
static int in_syscall(pid_t tid, long nr) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", tid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0;
  long got = -1;
  int n = fscanf(f, "%ld", &got);
  fclose(f);
  return n == 1 && got == nr;
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 4) return 2;
  struct waiter ws[3];
  const int n = argc - 1;
  memset(ws, 0, sizeof(ws));
  for (int i = 0; i < n; i++) {
    ws[i].name = argv[i + 1];
    if (!strcmp(ws[i].name, "epoll_wait")) {
      ws[i].nr = SYS_epoll_wait;
    } else if (!strcmp(ws[i].name, "epoll_pwait")) {
      ws[i].nr = SYS_epoll_pwait;
    } else if (!strcmp(ws[i].name, "epoll_pwait2")) {
      ws[i].nr = SYS_epoll_pwait2;
    } else {
      return 2;
    }
    ws[i].ep = epoll_create1(0);
    if (ws[i].ep < 0) return 2;
  }
  pthread_t th[3];
  for (int i = 0; i < n; i++) pthread_create(&th[i], NULL, run, &ws[i]);
  for (int i = 0; i < n; i++) {
    int tries = 0;
    while (!(ws[i].tid && in_syscall(ws[i].tid, ws[i].nr)) && tries++ < 2000) usleep(1000);
    if (tries >= 2000) {
      printf("FAIL: setup: the %s thread is not in its call\n", ws[i].name);
      return 2;
    }
  }
  printf("READY %d\n", getpid());
  fflush(stdout);
  for (int i = 0; i < n; i++) pthread_join(th[i], NULL);

  for (int i = 0; i < n; i++) {
    struct waiter *w = &ws[i];
    double took = (double)(w->t1 - w->t0) / NS;
    printf("%s: returned %d (%s) after %.3f s\n", w->name, w->result, w->result < 0 ? strerror(w->err) : "no error",
           took);
    SUBJECT_CHECK(w->result == 0, "%s returned %d (%s), not 0 (timed out)", w->name, w->result,
                  w->result < 0 ? strerror(w->err) : "events");
    SUBJECT_CHECK(took >= 4.5 && took <= 7.0, "%s took %.3f s, not about 5 s", w->name, took);
    SUBJECT_CHECK(!w->usr2_blocked_after, "%s left its wait's mask (SIGUSR2 blocked) behind", w->name);
    struct epoll_event ev;
    SUBJECT_CHECK(epoll_wait(w->ep, &ev, 1, 0) == 0, "%s's epoll is not empty", w->name);
    int p[2];
    ev.events = EPOLLIN;
    ev.data.u64 = 0x5eed0000u + (unsigned)i;
    if (pipe(p) == 0 && epoll_ctl(w->ep, EPOLL_CTL_ADD, p[0], &ev) == 0 && write(p[1], "k", 1) == 1) {
      memset(&ev, 0, sizeof(ev));
      int r = epoll_wait(w->ep, &ev, 1, 0);
      SUBJECT_CHECK(r == 1 && ev.data.u64 == 0x5eed0000u + (unsigned)i, "%s's epoll does not report a pipe",
                    w->name);
    } else {
      subject_fail("%s's epoll takes no pipe: %s", w->name, strerror(errno));
    }
  }
  return subject_verdict();
}
