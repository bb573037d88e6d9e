/*
 * Scheduling attributes, per thread: the main thread runs SCHED_OTHER at
 * nice 7 on CPU 0; thread "fifo" runs SCHED_FIFO at priority 9 with
 * SCHED_FLAG_RESET_ON_FORK on the last CPU; thread "idle" runs SCHED_IDLE
 * on every CPU. The process's oom_score_adj is 321. After restore each
 * thread reads its own attributes (sched_getattr, sched_getaffinity) and
 * the main thread /proc/self/oom_score_adj.
 *
 * Needs CAP_SYS_NICE in the initial user namespace (SCHED_FIFO).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "subject.h"

struct attr {
  uint32_t size, policy;
  uint64_t flags;
  int32_t nice;
  uint32_t priority;
  uint64_t runtime, deadline, period;
};

static int go[2], set[2];
static int last_cpu;

static void check_self(const char *who, uint32_t policy, uint64_t flags, int nice, uint32_t prio,
                       int cpu /* -1: every CPU */) {
  struct attr a = {0};
  if (syscall(SYS_sched_getattr, 0, &a, sizeof(a), 0) != 0) {
    subject_fail("%s: sched_getattr: %s", who, strerror(errno));
    return;
  }
  SUBJECT_CHECK(a.policy == policy, "%s: policy %u, not %u", who, a.policy, policy);
  SUBJECT_CHECK((a.flags & 1) == flags, "%s: flags 0x%llx", who, (unsigned long long)a.flags);
  if (policy == SCHED_OTHER) SUBJECT_CHECK(a.nice == nice, "%s: nice %d, not %d", who, a.nice, nice);
  SUBJECT_CHECK(a.priority == prio, "%s: priority %u, not %u", who, a.priority, prio);
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) {
    subject_fail("%s: sched_getaffinity: %s", who, strerror(errno));
    return;
  }
  if (cpu >= 0) {
    SUBJECT_CHECK(CPU_COUNT(&set) == 1 && CPU_ISSET(cpu, &set), "%s: affinity is not {%d} (%d CPUs)",
                  who, cpu, CPU_COUNT(&set));
  } else {
    SUBJECT_CHECK(CPU_COUNT(&set) == last_cpu + 1, "%s: affinity has %d CPUs, not %d", who,
                  CPU_COUNT(&set), last_cpu + 1);
  }
}

static void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (cpu < 0) {
    for (int c = 0; c <= last_cpu; c++) CPU_SET(c, &set);
  } else {
    CPU_SET(cpu, &set);
  }
  if (sched_setaffinity(0, sizeof(set), &set) != 0) {
    printf("FAIL: sched_setaffinity: %s\n", strerror(errno));
    exit(1);
  }
}

static void wait_go(void) {
  char c = 's';
  if (write(set[1], &c, 1) != 1) exit(1); /* this thread's attributes are set */
  while (read(go[0], &c, 1) < 0 && errno == EINTR) {
  }
}

static void *fifo_thread(void *arg) {
  (void)arg;
  pin(last_cpu);
  struct attr a = {sizeof(a), SCHED_FIFO, 1 /* RESET_ON_FORK */, 0, 9, 0, 0, 0};
  if (syscall(SYS_sched_setattr, 0, &a, 0) != 0) {
    printf("FAIL: SCHED_FIFO: %s\n", strerror(errno));
    exit(1);
  }
  wait_go();
  check_self("fifo", SCHED_FIFO, 1, 0, 9, last_cpu);
  return NULL;
}

static void *idle_thread(void *arg) {
  (void)arg;
  pin(-1);
  struct attr a = {sizeof(a), SCHED_IDLE, 0, 0, 0, 0, 0, 0};
  if (syscall(SYS_sched_setattr, 0, &a, 0) != 0) {
    printf("FAIL: SCHED_IDLE: %s\n", strerror(errno));
    exit(1);
  }
  wait_go();
  check_self("idle", SCHED_IDLE, 0, 0, 0, -1);
  return NULL;
}

int main(void) {
  last_cpu = (int)sysconf(_SC_NPROCESSORS_ONLN) - 1;
  if (pipe(go) != 0 || pipe(set) != 0) return 1;
  FILE *oom = fopen("/proc/self/oom_score_adj", "w");
  if (oom == NULL || fprintf(oom, "321\n") < 0 || fclose(oom) != 0) {
    printf("FAIL: oom_score_adj: %s\n", strerror(errno));
    return 1;
  }
  pin(0);
  if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 7) != 0) {
    printf("FAIL: setpriority: %s\n", strerror(errno));
    return 1;
  }
  /* SIGUSR1 is for the main thread's sigsuspend: the others block it. */
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, NULL);
  pthread_t f, i;
  pthread_create(&f, NULL, fifo_thread, NULL);
  pthread_create(&i, NULL, idle_thread, NULL);
  sigprocmask(SIG_UNBLOCK, &usr1, NULL);
  char c[2];
  for (size_t got = 0; got < 2;) { /* both threads have set theirs */
    ssize_t n = read(set[0], c + got, 2 - got);
    if (n <= 0 && errno != EINTR) return 1;
    if (n > 0) got += (size_t)n;
  }
  subject_ready();
  subject_wait();
  if (write(go[1], "gg", 2) != 2) return 1;
  check_self("main", SCHED_OTHER, 0, 7, 0, 0);
  FILE *in = fopen("/proc/self/oom_score_adj", "r");
  int v = 0;
  SUBJECT_CHECK(in != NULL && fscanf(in, "%d", &v) == 1 && v == 321, "oom_score_adj is %d", v);
  if (in) fclose(in);
  pthread_join(f, NULL);
  pthread_join(i, NULL);
  return subject_verdict();
}
