/*
 * Signal state across a checkpoint:
 *  - SIGUSR1 and SIGRTMIN+1 have SA_SIGINFO|SA_RESTART handlers with SIGUSR2
 *    in their sa_mask; both are blocked, and queued with values: SIGUSR1
 *    once (111), SIGRTMIN+1 twice (222, then 223), on the process queue;
 *  - a worker thread blocks SIGUSR2 and has one queued to it (333), on its
 *    own queue;
 *  - ITIMER_REAL fires every 100 ms (SIGALRM counts);
 *  - a POSIX timer (CLOCK_MONOTONIC) sends SIGRTMIN+2 with value 444 every
 *    50 ms;
 *  - a non-blocking timerfd expires every 100 ms, its expirations unread.
 * After SIGWINCH (the harness's "go"), it checks that both timers still
 * fire (and the POSIX timer still has its id), then unblocks the queued
 * signals and checks each arrives once, with its value, in order.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <fcntl.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <time.h>

#include "subject.h"

static volatile sig_atomic_t go, alarms, ticks, bad_tick;
static volatile int usr1_seen, usr1_value, usr2_seen, usr2_value;
static volatile int rt_seen, rt_values[4];
static timer_t timer;
static int timer_id;
static sigset_t worker_ready_set;
static volatile int worker_ready, worker_go;

static void on_winch(int sig) { (void)sig; go = 1; }
static void on_alarm(int sig) { (void)sig; alarms++; }
static void on_tick(int sig, siginfo_t *si, void *uc) {
  (void)sig;
  (void)uc;
  ticks++;
  if (si->si_value.sival_int != 444 || si->si_timerid != timer_id) bad_tick = 1;
}
static void on_usr1(int sig, siginfo_t *si, void *uc) {
  (void)sig;
  (void)uc;
  usr1_seen++;
  usr1_value = si->si_value.sival_int;
}
static void on_usr2(int sig, siginfo_t *si, void *uc) {
  (void)sig;
  (void)uc;
  usr2_seen++;
  usr2_value = si->si_value.sival_int;
}
static void on_rt(int sig, siginfo_t *si, void *uc) {
  (void)sig;
  (void)uc;
  if (rt_seen < 4) rt_values[rt_seen] = si->si_value.sival_int;
  rt_seen++;
}

static void handle(int sig, void (*fn)(int, siginfo_t *, void *)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = fn;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGUSR2);
  sigaction(sig, &sa, NULL);
}

static void *worker(void *arg) {
  (void)arg;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  worker_ready = 1;
  while (!worker_go) usleep(1000);
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  return NULL;
}

static void pause_ms(int ms) {
  int64_t end;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  end = ts.tv_sec * 1000LL + ts.tv_nsec / 1000000 + ms;
  for (;;) {
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (ts.tv_sec * 1000LL + ts.tv_nsec / 1000000 >= end) break;
    usleep(1000);
  }
}

int main(void) {
  (void)worker_ready_set;
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_winch;
  sigaction(SIGWINCH, &sa, NULL);
  sa.sa_handler = on_alarm;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGALRM, &sa, NULL);
  handle(SIGUSR1, on_usr1);
  handle(SIGUSR2, on_usr2);
  handle(SIGRTMIN + 1, on_rt);
  handle(SIGRTMIN + 2, on_tick);

  sigset_t blocked;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGUSR1);
  sigaddset(&blocked, SIGRTMIN + 1);
  sigprocmask(SIG_BLOCK, &blocked, NULL);

  pthread_t th;
  pthread_create(&th, NULL, worker, NULL);
  while (!worker_ready) usleep(1000);

  union sigval v;
  v.sival_int = 111;
  sigqueue(getpid(), SIGUSR1, v);
  v.sival_int = 222;
  sigqueue(getpid(), SIGRTMIN + 1, v);
  v.sival_int = 223;
  sigqueue(getpid(), SIGRTMIN + 1, v);
  v.sival_int = 333;
  pthread_sigqueue(th, SIGUSR2, v);

  struct itimerval it = {{0, 100000}, {0, 100000}};
  setitimer(ITIMER_REAL, &it, NULL);
  struct sigevent ev;
  memset(&ev, 0, sizeof(ev));
  ev.sigev_notify = SIGEV_SIGNAL;
  ev.sigev_signo = SIGRTMIN + 2;
  ev.sigev_value.sival_int = 444;
  /* A gap in the ids: the timer kept is not the first one made. */
  timer_t first;
  timer_create(CLOCK_MONOTONIC, &ev, &first);
  timer_create(CLOCK_MONOTONIC, &ev, &timer);
  timer_delete(first);
  timer_id = (int)(intptr_t)timer;
  struct itimerspec its = {{0, 50000000}, {0, 50000000}};
  timer_settime(timer, 0, &its, NULL);

  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  struct itimerspec tspec = {{0, 100000000}, {0, 100000000}};
  timerfd_settime(tfd, 0, &tspec, NULL);

  printf("READY %d timer %d\n", getpid(), timer_id);
  fflush(stdout);
  sigset_t none;
  sigemptyset(&none);
  while (!go) sigsuspend(&blocked); /* SIGWINCH, SIGALRM and ticks get through */

  SUBJECT_CHECK(usr1_seen == 0 && rt_seen == 0, "blocked signals arrived early");
  uint64_t expirations = 0;
  SUBJECT_CHECK(read(tfd, &expirations, 8) == 8 && expirations >= 2,
                "the timerfd had %lu unread expirations", (unsigned long)expirations);
  SUBJECT_CHECK(fcntl(tfd, F_GETFL) & O_NONBLOCK, "the timerfd lost O_NONBLOCK");
  int a0 = alarms, t0 = ticks;
  pause_ms(600);
  expirations = 0;
  SUBJECT_CHECK(read(tfd, &expirations, 8) == 8 && expirations >= 4,
                "the timerfd expired %lu times in 600 ms", (unsigned long)expirations);
  SUBJECT_CHECK(alarms - a0 >= 3, "ITIMER_REAL fired %d times in 600 ms", alarms - a0);
  SUBJECT_CHECK(ticks - t0 >= 6, "the POSIX timer fired %d times in 600 ms", ticks - t0);
  SUBJECT_CHECK(!bad_tick, "a timer tick came with the wrong value or timer id");
  struct itimerspec cur;
  SUBJECT_CHECK(timer_gettime(timer, &cur) == 0 && cur.it_interval.tv_nsec == 50000000,
                "timer %d is gone or changed", timer_id);
  struct sigaction got;
  sigaction(SIGUSR1, NULL, &got);
  SUBJECT_CHECK((got.sa_flags & (SA_SIGINFO | SA_RESTART)) == (SA_SIGINFO | SA_RESTART) &&
                    sigismember(&got.sa_mask, SIGUSR2),
                "SIGUSR1's action lost its flags or mask");

  sigprocmask(SIG_UNBLOCK, &blocked, NULL);
  worker_go = 1;
  pthread_join(th, NULL);
  pause_ms(50);
  SUBJECT_CHECK(usr1_seen == 1 && usr1_value == 111, "SIGUSR1 arrived %d times, value %d",
                usr1_seen, usr1_value);
  SUBJECT_CHECK(rt_seen == 2 && rt_values[0] == 222 && rt_values[1] == 223,
                "SIGRTMIN+1 arrived %d times, values %d %d", rt_seen, rt_values[0], rt_values[1]);
  SUBJECT_CHECK(usr2_seen == 1 && usr2_value == 333, "the worker's SIGUSR2 arrived %d times, value %d",
                usr2_seen, usr2_value);
  (void)none;
  return subject_verdict();
}
