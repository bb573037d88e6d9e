/*
 * Seventy threads, more than one wave of the dump's per-thread queries
 * (they run side by side, 64 at a time), each with state of its own that
 * the dump reads by injecting into it and must leave or put back as it
 * was:
 *
 *   - its own signal mask: SIGUSR1 and one real-time signal for each,
 *     SIGURG too in every other thread (the dump's injected batches end on
 *     a SIGURG the thread sends itself, unblocked by the trampoline where
 *     the mask blocks it);
 *   - its own alternate signal stack, and the tid address the C library
 *     set (PR_GET_TID_ADDRESS);
 *   - every third thread waits in sigsuspend() with a temporary mask
 *     unlike its own (SIGUSR2 let through): once woken, its own mask must
 *     be back; the others wait on a futex.
 *
 * The process has a SIGURG handler that counts: none of the dump's SIGURGs
 * may reach it. Prints READY; on SIGUSR1 wakes every thread, which checks
 * its own state, and prints PASS or FAIL.
 */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "subject.h"

#define NT 70

struct thread_state {
  pthread_t handle;
  volatile pid_t tid;
  sigset_t mask;
  void *altstack;
  uint64_t tid_address;
  int suspends;
  volatile int ready;
  volatile int woken;
  volatile int done;
  char why[160];
};

static struct thread_state threads[NT];
static volatile int urg_count;
static uint32_t go;

static void on_urg(int sig) {
  (void)sig;
  urg_count++;
}
static void on_usr2(int sig) { (void)sig; }

static uint64_t mask_bits(const sigset_t *s) {
  uint64_t bits = 0;
  for (int sig = 1; sig <= 64; ++sig) {
    if (sigismember(s, sig) == 1) bits |= 1ull << (sig - 1);
  }
  return bits;
}

static void *thread_main(void *arg) {
  struct thread_state *t = arg;
  const int i = (int)(t - threads);
  t->tid = (pid_t)syscall(SYS_gettid);
  sigemptyset(&t->mask);
  sigaddset(&t->mask, SIGUSR1);
  sigaddset(&t->mask, SIGUSR2);
  sigaddset(&t->mask, SIGRTMIN + (i % 16));
  if (i % 2 == 0) sigaddset(&t->mask, SIGURG);
  pthread_sigmask(SIG_SETMASK, &t->mask, NULL);
  const size_t alt_size = 64 * 1024 + (size_t)i * 4096;
  t->altstack = malloc(alt_size);
  stack_t ss = {.ss_sp = t->altstack, .ss_size = alt_size, .ss_flags = 0};
  stack_t before;  /* put back at the end: a sanitizer unmaps its own at thread exit */
  if (sigaltstack(&ss, &before) != 0) snprintf(t->why, sizeof(t->why), "sigaltstack: %m");
  uint64_t *addr = NULL;
  prctl(PR_GET_TID_ADDRESS, &addr);
  t->tid_address = (uint64_t)addr;
  t->suspends = i % 3 == 0;
  t->ready = 1;
  if (t->suspends) {
    sigset_t temp = t->mask;
    sigdelset(&temp, SIGUSR2);
    sigaddset(&temp, SIGRTMIN + 20);
    sigdelset(&temp, SIGRTMIN + (i % 16));
    while (!t->woken) sigsuspend(&temp);
  } else {
    while (__atomic_load_n(&go, __ATOMIC_ACQUIRE) == 0) {
      syscall(SYS_futex, &go, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
    }
  }
  sigset_t now;
  pthread_sigmask(SIG_SETMASK, NULL, &now);
  stack_t cur;
  sigaltstack(NULL, &cur);
  addr = NULL;
  prctl(PR_GET_TID_ADDRESS, &addr);
  if (t->why[0] != 0) {
    /* set above */
  } else if (mask_bits(&now) != mask_bits(&t->mask)) {
    snprintf(t->why, sizeof(t->why), "mask %#llx, not %#llx",
             (unsigned long long)mask_bits(&now), (unsigned long long)mask_bits(&t->mask));
  } else if (cur.ss_sp != t->altstack || cur.ss_size != alt_size || cur.ss_flags != 0) {
    snprintf(t->why, sizeof(t->why), "altstack %p/%zu/%d, not %p/%zu/0", cur.ss_sp, cur.ss_size,
             cur.ss_flags, t->altstack, alt_size);
  } else if ((uint64_t)addr != t->tid_address) {
    snprintf(t->why, sizeof(t->why), "tid address %p, not %#llx", (void *)addr,
             (unsigned long long)t->tid_address);
  }
  sigaltstack(&before, NULL);
  t->done = 1;
  return NULL;
}

int main(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_urg;
  sigaction(SIGURG, &sa, NULL);
  sa.sa_handler = on_usr2;
  sigaction(SIGUSR2, &sa, NULL);
  subject_install();
  for (int i = 0; i < NT; ++i) {
    if (pthread_create(&threads[i].handle, NULL, thread_main, &threads[i]) != 0) {
      printf("FAIL: pthread_create\n");
      return 1;
    }
  }
  for (int i = 0; i < NT; ++i) {
    while (!threads[i].ready) usleep(1000);
  }
  usleep(20000);  /* every thread in its wait */
  subject_ready();
  subject_wait();
  for (int i = 0; i < NT; ++i) {
    if (!threads[i].suspends) continue;
    threads[i].woken = 1;
    syscall(SYS_tgkill, getpid(), threads[i].tid, SIGUSR2);
  }
  __atomic_store_n(&go, 1, __ATOMIC_RELEASE);
  syscall(SYS_futex, &go, FUTEX_WAKE_PRIVATE, NT, NULL, NULL, 0);
  for (int i = 0; i < NT; ++i) {
    /* a sigsuspend() that took its SIGUSR2 before `woken` was seen */
    for (int tries = 0; !threads[i].done && tries < 2000; ++tries) {
      if (threads[i].suspends) syscall(SYS_tgkill, getpid(), threads[i].tid, SIGUSR2);
      usleep(1000);
    }
    if (!threads[i].done) {
      subject_fail("thread %d did not wake", i);
      continue;
    }
    pthread_join(threads[i].handle, NULL);
    SUBJECT_CHECK(threads[i].why[0] == 0, "thread %d: %s", i, threads[i].why);
  }
  SUBJECT_CHECK(urg_count == 0, "the SIGURG handler ran %d times", urg_count);
  return subject_verdict();
}
