/*
 * Signal actions set while the dump is freezing the process: 150 idle
 * threads (20 of them in an hour-long nanosleep, which the dump probes for
 * its time left, some ms apiece), and one more, made last, that watches
 * the leader's TracerPid and, the moment a dump seizes the leader, sets a
 * handler for every
 * real-time signal and for SIGHUP, SIGUSR2, SIGALRM and SIGWINCH, and
 * SIG_IGN for SIGPIPE, none of which had one before. The dump seizes the
 * threads one after the other, this one last, so all of that happens
 * between the dump's first look at the process and the moment the
 * process is wholly stopped. What the dump saves must be what the process
 * had once stopped: after the restore every one of those actions is in
 * place (the setter may also have been stopped part way, and then
 * finishes after the restore). The probes hold that moment open for tens
 * of ms, so that the watcher, polling every 100 us, sees the dump come even
 * on a busy machine; READY waits until it watches.
 *
 * Prints READY; on SIGUSR1 checks the actions and prints PASS or FAIL.
 */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>

#include "subject.h"

#define IDLE 150
#define SLEEPERS 20 /* of them */

static uint32_t idle_word;
static volatile int setter_done;
static volatile int setter_saw_tracer;
static volatile int setter_watching;

static void on_signal(int sig) { (void)sig; }

static void block_all(void) {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
}

static void *idle_main(void *arg) {
  block_all();
  if (arg != NULL) {
    /* A long timed sleep: the dump probes each such thread for its time
     * left, some ms apiece, which holds the window open. */
    for (;;) {
      struct timespec d = {3600, 0};
      nanosleep(&d, NULL);
    }
  }
  for (;;) syscall(SYS_futex, &idle_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
  return NULL;
}

static int leader_traced(int fd) {
  char buf[4096];
  ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return 0;
  buf[n] = 0;
  const char *p = strstr(buf, "TracerPid:");
  return p != NULL && atoi(p + 10) != 0;
}

static int wanted(int sig) {
  return (sig >= SIGRTMIN && sig <= SIGRTMAX) || sig == SIGHUP || sig == SIGUSR2 ||
         sig == SIGALRM || sig == SIGWINCH || sig == SIGPIPE;
}

static void *setter_main(void *arg) {
  (void)arg;
  block_all();
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/status", getpid());
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    setter_watching = 1;
    return NULL;
  }
  setter_watching = 1;
  while (!leader_traced(fd)) {
    if (subject_go) {
      close(fd);
      return NULL; /* never saw the dump: main says so */
    }
    usleep(100);
  }
  setter_saw_tracer = 1;
  for (int sig = 1; sig <= SIGRTMAX; ++sig) {
    if (!wanted(sig)) continue;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = sig == SIGPIPE ? SIG_IGN : on_signal;
    sigaction(sig, &sa, NULL);
  }
  setter_done = 1;
  close(fd);
  return NULL;
}

int main(void) {
  subject_install();
  pthread_t t;
  for (int i = 0; i < IDLE; ++i) {
    if (pthread_create(&t, NULL, idle_main, i < SLEEPERS ? (void *)1 : NULL) != 0) {
      printf("FAIL: pthread_create\n");
      return 1;
    }
  }
  pthread_t setter;
  if (pthread_create(&setter, NULL, setter_main, NULL) != 0) {
    printf("FAIL: pthread_create\n");
    return 1;
  }
  /* READY only once it watches: on a busy machine a thread just made may
   * not run before the dump has seized it. */
  while (!setter_watching) usleep(100);
  subject_ready();
  subject_wait();
  pthread_join(setter, NULL);
  SUBJECT_CHECK(setter_saw_tracer, "the setter never saw the dump");
  for (int sig = 1; sig <= SIGRTMAX; ++sig) {
    if (!wanted(sig)) continue;
    struct sigaction sa;
    if (sigaction(sig, NULL, &sa) != 0) {
      subject_fail("sigaction(%d) failed", sig);
      continue;
    }
    void (*want)(int) = sig == SIGPIPE ? SIG_IGN : on_signal;
    SUBJECT_CHECK(sa.sa_handler == want, "signal %d: action %p, not %p (set while the dump froze "
                  "the process, lost)", sig, (void *)sa.sa_handler, (void *)want);
  }
  return subject_verdict();
}
