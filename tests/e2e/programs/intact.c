/*
 * A process that can tell whether anything about it changed while it was
 * frozen, injected into and let go, however the dump ended:
 *
 *   main     64 MiB of patterned memory, an alternate signal stack, a
 *            signal mask (SIGUSR2 and SIGPWR blocked), its own SIGTRAP
 *            handler; waits for SIGUSR1 in sigsuspend()
 *   sleeper  nanosleep() in a loop
 *   reader   blocked in read() on a pipe until main writes one byte
 *   spinner  holds patterns in ymm8-ymm15 and r12-r15 and checks them in a
 *            tight loop (no syscalls): any register the freeze or an
 *            injection failed to put back shows
 *
 * Prints READY, then on SIGUSR1 checks all of it and prints PASS or FAIL.
 * MiB of memory can be given as argv[1] (default 64).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>

#include "subject.h"

static volatile int go_workers;
static volatile long spin_rounds, spin_bad, sleeps;
static int wake[2];
static char reader_got;
static long reader_ret = -2;
static uint64_t patterns[8][4] __attribute__((aligned(32)));

static void on_trap(int sig) { (void)sig; }

/* Loads the patterns and checks them `rounds` times; 1 if any changed. */
static long spin_check(long rounds) {
  long bad;
  __asm__ volatile(
      "vmovdqa 0(%[p]), %%ymm8\n"
      "vmovdqa 32(%[p]), %%ymm9\n"
      "vmovdqa 64(%[p]), %%ymm10\n"
      "vmovdqa 96(%[p]), %%ymm11\n"
      "vmovdqa 128(%[p]), %%ymm12\n"
      "vmovdqa 160(%[p]), %%ymm13\n"
      "vmovdqa 192(%[p]), %%ymm14\n"
      "vmovdqa 224(%[p]), %%ymm15\n"
      "mov $0x1212121212121212, %%r12\n"
      "mov $0x1313131313131313, %%r13\n"
      "mov $0x1414141414141414, %%r14\n"
      "mov $0x1515151515151515, %%r15\n"
      "xor %[bad], %[bad]\n"
      "1:\n"
#define CHECK_YMM(n, off)                  \
      "vpcmpeqq " #off "(%[p]), %%ymm" #n ", %%ymm0\n" \
      "vpmovmskb %%ymm0, %%eax\n"          \
      "cmp $-1, %%eax\n"                   \
      "jne 2f\n"
      CHECK_YMM(8, 0) CHECK_YMM(9, 32) CHECK_YMM(10, 64) CHECK_YMM(11, 96)
      CHECK_YMM(12, 128) CHECK_YMM(13, 160) CHECK_YMM(14, 192) CHECK_YMM(15, 224)
      "mov $0x1212121212121212, %%rax\n cmp %%rax, %%r12\n jne 2f\n"
      "mov $0x1313131313131313, %%rax\n cmp %%rax, %%r13\n jne 2f\n"
      "mov $0x1414141414141414, %%rax\n cmp %%rax, %%r14\n jne 2f\n"
      "mov $0x1515151515151515, %%rax\n cmp %%rax, %%r15\n jne 2f\n"
      "dec %[n]\n"
      "jnz 1b\n"
      "jmp 3f\n"
      "2:\n"
      "mov $1, %[bad]\n"
      "3:\n"
      "vzeroupper\n"
      : [bad] "=&r"(bad), [n] "+r"(rounds)
      : [p] "r"(patterns)
      : "rax", "r12", "r13", "r14", "r15", "xmm0", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
        "xmm13", "xmm14", "xmm15", "memory", "cc");
  return bad;
}

static void *spinner(void *arg) {
  (void)arg;
  while (!go_workers) {
    if (spin_check(200000)) spin_bad++;
    spin_rounds++;
  }
  return NULL;
}

static void *sleeper(void *arg) {
  (void)arg;
  struct timespec t = {0, 30 * 1000 * 1000};
  while (!go_workers) {
    nanosleep(&t, NULL); /* EINTR is fine: it sleeps again */
    sleeps++;
  }
  return NULL;
}

static void *reader(void *arg) {
  (void)arg;
  reader_ret = read(wake[0], &reader_got, 1);
  return NULL;
}

static uint64_t checksum(const uint64_t *p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

int main(int argc, char **argv) {
  size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 64;
  size_t n = (mib << 20) / 8;
  uint64_t *mem = malloc(n * 8);
  if (!mem) return 2;
  for (size_t i = 0; i < n; i++) mem[i] = i * 0x9E3779B97F4A7C15ull + 7;
  const uint64_t want = checksum(mem, n);
  for (int i = 0; i < 8; i++)
    for (int j = 0; j < 4; j++) patterns[i][j] = 0x0101010101010101ull * (uint64_t)(i * 4 + j + 1);

  static char alt[64 * 1024];
  stack_t ss = {.ss_sp = alt, .ss_size = sizeof(alt), .ss_flags = 0};
  if (sigaltstack(&ss, NULL) != 0) return 2;
  struct sigaction trap;
  memset(&trap, 0, sizeof(trap));
  trap.sa_handler = on_trap;
  trap.sa_flags = SA_ONSTACK;
  sigaction(SIGTRAP, &trap, NULL);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGUSR2);
  sigaddset(&mask, SIGPWR);
  sigprocmask(SIG_SETMASK, &mask, NULL);
  if (pipe(wake) != 0) return 2;

  subject_install();
  /* The workers keep SIGUSR1 blocked: it is for main, in sigsuspend. */
  sigset_t with_usr1 = mask;
  sigaddset(&with_usr1, SIGUSR1);
  sigprocmask(SIG_SETMASK, &with_usr1, NULL);
  pthread_t t[3];
  pthread_create(&t[0], NULL, spinner, NULL);
  pthread_create(&t[1], NULL, sleeper, NULL);
  pthread_create(&t[2], NULL, reader, NULL);
  printf("READY %d\n", getpid());
  fflush(stdout);
  while (!subject_go) sigsuspend(&mask);
  sigprocmask(SIG_SETMASK, &mask, NULL);

  /* The main thread's own state. */
  sigset_t now;
  sigprocmask(SIG_SETMASK, NULL, &now);
  SUBJECT_CHECK(sigismember(&now, SIGUSR2) && sigismember(&now, SIGPWR) &&
                    !sigismember(&now, SIGUSR1) && !sigismember(&now, SIGURG),
                "signal mask changed");
  stack_t cur;
  sigaltstack(NULL, &cur);
  SUBJECT_CHECK(cur.ss_sp == alt && cur.ss_size == sizeof(alt) && cur.ss_flags == 0,
                "alternate signal stack changed (%p %zu %d)", cur.ss_sp, cur.ss_size, cur.ss_flags);
  struct sigaction got;
  sigaction(SIGTRAP, NULL, &got);
  SUBJECT_CHECK(got.sa_handler == on_trap && (got.sa_flags & SA_ONSTACK), "SIGTRAP action changed");
  sigaction(SIGURG, NULL, &got);
  SUBJECT_CHECK(got.sa_handler == SIG_DFL, "SIGURG action changed");
  SUBJECT_CHECK(checksum(mem, n) == want, "memory changed");

  go_workers = 1;
  if (write(wake[1], "x", 1) != 1) subject_fail("write to the reader");
  for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
  SUBJECT_CHECK(spin_bad == 0, "registers changed under the spinner %ld times", spin_bad);
  SUBJECT_CHECK(spin_rounds > 0, "the spinner never ran");
  SUBJECT_CHECK(reader_ret == 1 && reader_got == 'x', "the reader's read returned %ld", reader_ret);
  printf("spinner rounds %ld, sleeps %ld\n", spin_rounds, sleeps);
  return subject_verdict();
}
