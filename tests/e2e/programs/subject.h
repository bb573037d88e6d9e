/*
 * Shared by the end-to-end test programs ("subjects"). A subject builds
 * some state, prints READY, waits for SIGUSR1 from the harness (which
 * checkpoints, kills and restores it meanwhile), then checks that its
 * state is exactly as it built it and prints PASS or FAIL (exit 0 or 1).
 */
#ifndef LIBCKPT_TESTS_E2E_PROGRAMS_SUBJECT_H_
#define LIBCKPT_TESTS_E2E_PROGRAMS_SUBJECT_H_

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t subject_go;
static int subject_failures;

__attribute__((unused)) static void subject_on_usr1(int sig) {
  int saved = errno;
  (void)sig;
  subject_go = 1;
  errno = saved;
}

/* Installs the SIGUSR1 handler (before forking, so children have it). */
__attribute__((unused)) static void subject_install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = subject_on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
}

/* Installs the SIGUSR1 handler and says READY. */
__attribute__((unused)) static void subject_ready(void) {
  subject_install();
  printf("READY %d\n", getpid());
  fflush(stdout);
}

/* Waits for SIGUSR1 in sigsuspend(), with SIGUSR1 blocked otherwise. */
__attribute__((unused)) static void subject_wait(void) {
  sigset_t usr1, old;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, &old);
  while (!subject_go) sigsuspend(&old);
  sigprocmask(SIG_SETMASK, &old, NULL);
}

/* For a thread other than the one that waits: SIGUSR1 is for the waiting
 * thread's sigsuspend, and a process-wide signal may go to any thread that
 * does not block it. */
__attribute__((unused)) static void subject_block_usr1(void) {
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, NULL);
}

__attribute__((unused)) static void subject_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("FAIL: ");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  fflush(stdout);
  subject_failures++;
}

#define SUBJECT_CHECK(cond, ...)   \
  do {                             \
    if (!(cond)) subject_fail(__VA_ARGS__); \
  } while (0)

/* The state letter of task pid in /proc/PID/stat ('?' if unreadable),
 * its process group and (if session is not NULL) its session. */
__attribute__((unused)) static char subject_proc_state(pid_t pid, pid_t *pgrp, pid_t *session) {
  char path[64], buf[512];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return '?';
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  char state = '?';
  int ppid = 0, group = 0, sid = 0;
  if (p == NULL || sscanf(p + 2, "%c %d %d %d", &state, &ppid, &group, &sid) != 4) return '?';
  *pgrp = group;
  if (session != NULL) *session = sid;
  return state;
}

/* Whether fd is open in this task's table. */
__attribute__((unused)) static int subject_fd_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

/* Waits up to 2 s for fd to be open (want 1) or closed (want 0), as
 * another task sharing the fd table makes it; returns whether it came. */
__attribute__((unused)) static int subject_wait_fd(int fd, int want) {
  for (int i = 0; i < 2000; i++) {
    if (subject_fd_open(fd) == want) return 1;
    usleep(1000);
  }
  return 0;
}

__attribute__((unused)) static int subject_verdict(void) {
  printf(subject_failures ? "FAIL\n" : "PASS\n");
  fflush(stdout);
  return subject_failures ? 1 : 0;
}

#endif /* LIBCKPT_TESTS_E2E_PROGRAMS_SUBJECT_H_ */
