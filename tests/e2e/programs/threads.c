/*
 * Eight threads: six take turns round-robin under one pthread mutex and
 * condition variable, each folding its turns into a hash kept in local
 * variables (registers) and keeping its index in TLS; one waits on a raw
 * futex; the main thread waits for SIGUSR1. After the restore every thread
 * must go on exactly where it was: the turns stay in order, each hash
 * matches its count, TLS holds each thread's own values, the futex waiter
 * wakes when told.
 */
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>

#include "subject.h"

#define WORKERS 6

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int turn;
static volatile int stop;
static long total_turns;
static uint32_t futex_word;
static volatile int futex_woken;
static __thread int tls_index = -1;
static __thread uint64_t tls_canary;

struct result {
  long turns;
  uint64_t hash;
  int ok;
};
static struct result results[WORKERS];

static uint64_t step(uint64_t h, long n) { return (h ^ (uint64_t)n) * 0x100000001B3ull; }

static void *worker(void *arg) {
  int me = (int)(intptr_t)arg;
  tls_index = me;
  tls_canary = 0xC0FFEE00ull + me;
  uint64_t hash = 0xcbf29ce484222325ull;
  long turns = 0;
  pthread_mutex_lock(&mu);
  for (;;) {
    while (turn != me && !stop) pthread_cond_wait(&cv, &mu);
    if (stop) break;
    hash = step(hash, ++turns);
    total_turns++;
    turn = (turn + 1) % WORKERS;
    pthread_cond_broadcast(&cv);
  }
  pthread_mutex_unlock(&mu);
  uint64_t expect = 0xcbf29ce484222325ull;
  for (long n = 1; n <= turns; n++) expect = step(expect, n);
  results[me].turns = turns;
  results[me].hash = hash;
  results[me].ok = hash == expect && tls_index == me && tls_canary == 0xC0FFEE00ull + me;
  return NULL;
}

static void *futex_waiter(void *arg) {
  (void)arg;
  tls_index = 100;
  while (__atomic_load_n(&futex_word, __ATOMIC_ACQUIRE) == 0) {
    syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
  }
  futex_woken = tls_index == 100;
  return NULL;
}

int main(void) {
  // Only the main thread takes SIGUSR1: the others are created with it
  // blocked.
  sigset_t usr1, none;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigemptyset(&none);
  sigprocmask(SIG_BLOCK, &usr1, NULL);
  pthread_t t[WORKERS + 1];
  for (int i = 0; i < WORKERS; i++) pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
  pthread_create(&t[WORKERS], NULL, futex_waiter, NULL);
  tls_index = 999;
  usleep(100000);
  subject_ready();
  while (!subject_go) sigsuspend(&none);
  pthread_mutex_lock(&mu);
  long before = total_turns;
  pthread_mutex_unlock(&mu);
  usleep(50000);  // the turns go on after the restore
  pthread_mutex_lock(&mu);
  long after = total_turns;
  stop = 1;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  __atomic_store_n(&futex_word, 1, __ATOMIC_RELEASE);
  syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
  for (int i = 0; i <= WORKERS; i++) pthread_join(t[i], NULL);
  SUBJECT_CHECK(after > before, "the turns stopped after the restore (%ld, %ld)", before, after);
  long sum = 0;
  for (int i = 0; i < WORKERS; i++) {
    SUBJECT_CHECK(results[i].ok, "worker %d: hash or TLS wrong after %ld turns", i, results[i].turns);
    sum += results[i].turns;
  }
  SUBJECT_CHECK(sum == after, "turns %ld, counted %ld", sum, after);
  SUBJECT_CHECK(futex_woken, "the futex waiter did not wake properly");
  SUBJECT_CHECK(tls_index == 999, "main's TLS is %d", tls_index);
  return subject_verdict();
}
