/*
 * Job-control stops. Three children are stopped before READY:
 *  - "tstp": two threads, a process group of its own, stopped by SIGTSTP;
 *    its parent has waited for the stop (WUNTRACED). While it is stopped
 *    it is sent SIGUSR2 (handled) and a queued SIGRTMIN+1 carrying 42.
 *  - "tgstop": two threads, stopped by SIGSTOP sent with tgkill to its
 *    second thread; its parent has not waited for the stop.
 *  - "sleeper": stopped by SIGSTOP in the middle of a 1.5 s nanosleep;
 *    not waited for;
 *  - "suspended": stopped inside sigsuspend() (its own mask blocks SIGUSR2
 *    and SIGINT, the temporary one nothing): after SIGCONT and SIGUSR2 it
 *    comes out with its own mask.
 * A thread of each child counts in shared memory while it runs. The
 * parent counts SIGCHLD (its handler has no SA_NOCLDSTOP).
 *
 * After SIGUSR1 the parent checks: every thread of every child is stopped
 * (T), none of them runs for 200 ms, no SIGCHLD came, the stop of "tstp"
 * is not reported again while the other two are (SIGSTOP). Then it
 * continues each (SIGCONT): "tstp" is reported continued, takes both its
 * signals and runs again; "tgstop" runs again; "sleeper" sleeps the rest
 * of its time without EINTR. Each child exits 0 when its checks pass.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "subject.h"

static volatile uint64_t *ticks; /* shared: one counter per child */
static volatile sig_atomic_t got_usr2, rt_value, chld_count;
static int tid_pipe[2];

static void *ticker(void *arg) {
  volatile uint64_t *t = &ticks[(intptr_t)arg];
  if (arg == (void *)1) {
    pid_t tid = (pid_t)syscall(SYS_gettid);
    if (write(tid_pipe[1], &tid, sizeof(tid)) != sizeof(tid)) _exit(2);
  }
  for (;;) {
    (*t)++;
    usleep(1000);
  }
  return NULL;
}

static void on_usr2(int sig) { (void)sig; got_usr2 = 1; }
static void on_rt(int sig, siginfo_t *si, void *uc) {
  (void)sig, (void)uc;
  rt_value = si->si_value.sival_int;
}
static void on_chld(int sig) { (void)sig; chld_count++; }

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void tstp_child(void) {
  setpgid(0, 0);
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_usr2;
  sigaction(SIGUSR2, &sa, NULL);
  sa.sa_sigaction = on_rt;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGRTMIN + 1, &sa, NULL);
  pthread_t t;
  pthread_create(&t, NULL, ticker, (void *)0);
  while (!got_usr2 || rt_value != 42) usleep(1000);
  uint64_t before = ticks[0];
  usleep(50000);
  _exit(ticks[0] > before ? 0 : 3);
}

static volatile sig_atomic_t got_cont;
static void on_cont(int sig) { (void)sig; got_cont = 1; }

static void tgstop_child(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_cont;
  sigaction(SIGCONT, &sa, NULL);
  pthread_t t;
  pthread_create(&t, NULL, ticker, (void *)1);
  while (!got_cont) usleep(1000);
  uint64_t before = ticks[1];
  usleep(50000);
  _exit(ticks[1] > before ? 0 : 3);
}

static volatile sig_atomic_t got_usr2_susp;
static void on_usr2_susp(int sig) { (void)sig; got_usr2_susp = 1; }

/* Stopped inside sigsuspend(), whose temporary mask lets SIGUSR2 in while
 * its own mask blocks SIGUSR2 and SIGINT: after SIGCONT and SIGUSR2 it
 * must come out of sigsuspend with its own mask back. */
static void suspended_child(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_usr2_susp;
  sigaction(SIGUSR2, &sa, NULL);
  sigset_t own, wait_mask, now;
  sigemptyset(&own);
  sigaddset(&own, SIGUSR2);
  sigaddset(&own, SIGINT);
  sigprocmask(SIG_SETMASK, &own, NULL);
  sigemptyset(&wait_mask);
  while (!got_usr2_susp) sigsuspend(&wait_mask);
  sigprocmask(SIG_SETMASK, NULL, &now);
  _exit(sigismember(&now, SIGUSR2) && sigismember(&now, SIGINT) && !sigismember(&now, SIGTERM) ? 0 : 6);
}

static void sleeper_child(void) {
  double t0 = now();
  struct timespec ts = {1, 500000000};
  int r = nanosleep(&ts, NULL);
  if (r != 0) _exit(4); /* EINTR: the restored sleep lost its time */
  if (now() - t0 < 1.5) _exit(5);
  _exit(0);
}

/* Every thread of `pid` is in state T. */
static int all_stopped(pid_t pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/task", pid);
  DIR *d = opendir(path);
  if (d == NULL) return 0;
  int n = 0, stopped = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char stat[320], buf[512];
    snprintf(stat, sizeof(stat), "/proc/%d/task/%s/stat", pid, e->d_name);
    FILE *f = fopen(stat, "r");
    if (f == NULL) continue;
    size_t len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[len] = 0;
    char *p = strrchr(buf, ')');
    n++;
    if (p != NULL && p[1] == ' ' && p[2] == 'T') stopped++;
  }
  closedir(d);
  return n > 0 && n == stopped;
}

static int nr_threads(pid_t pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/task", pid);
  DIR *d = opendir(path);
  if (d == NULL) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

static void wait_stopped(pid_t pid, int threads) {
  for (int i = 0; i < 5000 && !(nr_threads(pid) == threads && all_stopped(pid)); i++) usleep(1000);
  if (!all_stopped(pid)) {
    printf("FAIL: child %d did not stop\n", pid);
    exit(1);
  }
}

static uint64_t sum_ticks(void) { return ticks[0] + ticks[1] + ticks[2]; }

int main(void) {
  ticks = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (ticks == MAP_FAILED || pipe(tid_pipe) != 0) return 1;
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_chld;
  sigaction(SIGCHLD, &sa, NULL);
  subject_install();

  pid_t tstp = fork();
  if (tstp == 0) tstp_child();
  setpgid(tstp, tstp);
  pid_t tgstop = fork();
  if (tgstop == 0) tgstop_child();
  pid_t sleeper = fork();
  if (sleeper == 0) sleeper_child();
  pid_t suspended = fork();
  if (suspended == 0) suspended_child();

  /* tstp: once its ticker runs, SIGTSTP, and wait for the stop. */
  while (ticks[0] == 0) usleep(1000);
  kill(tstp, SIGTSTP);
  int st = 0;
  if (waitpid(tstp, &st, WUNTRACED) != tstp || !WIFSTOPPED(st) || WSTOPSIG(st) != SIGTSTP) {
    printf("FAIL: tstp did not stop on SIGTSTP (status 0x%x)\n", st);
    return 1;
  }
  kill(tstp, SIGUSR2);
  union sigval v = {.sival_int = 42};
  sigqueue(tstp, SIGRTMIN + 1, v);

  /* tgstop: SIGSTOP to its second thread. */
  pid_t tid;
  if (read(tid_pipe[0], &tid, sizeof(tid)) != sizeof(tid)) return 1;
  syscall(SYS_tgkill, tgstop, tid, SIGSTOP);

  usleep(300000);
  kill(sleeper, SIGSTOP);
  wait_stopped(tstp, 2);
  wait_stopped(tgstop, 2);
  wait_stopped(sleeper, 1);
  usleep(20000); /* in sigsuspend by now */
  kill(suspended, SIGSTOP);
  wait_stopped(suspended, 1);
  usleep(50000); /* the SIGCHLDs of the stops have come */
  const int chld_before = chld_count;

  printf("READY %d %d %d %d %d\n", getpid(), tstp, tgstop, sleeper, suspended);
  fflush(stdout);
  subject_wait();

  SUBJECT_CHECK(chld_count == chld_before, "%d SIGCHLD came since the stops",
                chld_count - chld_before);
  SUBJECT_CHECK(all_stopped(tstp), "tstp is not stopped");
  SUBJECT_CHECK(all_stopped(tgstop), "tgstop is not stopped");
  SUBJECT_CHECK(all_stopped(sleeper), "sleeper is not stopped");
  SUBJECT_CHECK(all_stopped(suspended), "suspended is not stopped");
  SUBJECT_CHECK(nr_threads(tstp) == 2 && nr_threads(tgstop) == 2, "threads: %d and %d",
                nr_threads(tstp), nr_threads(tgstop));
  uint64_t before = sum_ticks();
  usleep(200000);
  SUBJECT_CHECK(sum_ticks() == before, "a stopped child ran (%llu ticks)",
                (unsigned long long)(sum_ticks() - before));

  siginfo_t si;
  memset(&si, 0, sizeof(si));
  SUBJECT_CHECK(waitid(P_PID, (id_t)tstp, &si, WSTOPPED | WNOHANG | WNOWAIT) == 0 && si.si_pid == 0,
                "the stop of tstp, already waited for, is reported again");
  pid_t reported[2] = {tgstop, sleeper};
  for (int i = 0; i < 2; i++) {
    memset(&si, 0, sizeof(si));
    int r = waitid(P_PID, (id_t)reported[i], &si, WSTOPPED | WNOHANG);
    SUBJECT_CHECK(r == 0 && si.si_pid == reported[i] && si.si_code == CLD_STOPPED &&
                      si.si_status == SIGSTOP,
                  "the stop of %d is not reported (r %d pid %d code %d status %d)", reported[i], r,
                  si.si_pid, si.si_code, si.si_status);
  }

  kill(tstp, SIGCONT);
  memset(&si, 0, sizeof(si));
  SUBJECT_CHECK(waitid(P_PID, (id_t)tstp, &si, WCONTINUED) == 0 && si.si_code == CLD_CONTINUED,
                "tstp is not reported continued (code %d)", si.si_code);
  kill(tgstop, SIGCONT);
  kill(sleeper, SIGCONT);
  kill(suspended, SIGCONT);
  usleep(20000);
  kill(suspended, SIGUSR2);
  pid_t kids[4] = {tstp, tgstop, sleeper, suspended};
  const char *names[4] = {"tstp", "tgstop", "sleeper", "suspended"};
  for (int i = 0; i < 4; i++) {
    int status = 0;
    pid_t r;
    while ((r = waitpid(kids[i], &status, 0)) < 0 && errno == EINTR) {
    }
    SUBJECT_CHECK(r == kids[i] && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "%s ended with status 0x%x", names[i], status);
  }
  return subject_verdict();
}
