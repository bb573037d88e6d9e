/*
 * The floor of freezing and reading N threads with ptrace, for the
 * 100-thread goal: a child of N threads (sleeping in pause()), and, five
 * times, the least a ptrace dump does per thread, timed by phase: list
 * /proc/PID/task, PTRACE_SEIZE + PTRACE_INTERRUPT each and wait for each
 * stop, PTRACE_GETREGS + PTRACE_GETREGSET (NT_X86_XSTATE) each, read each
 * /proc/PID/task/TID/status, PTRACE_DETACH each. No injected syscall:
 * sigaltstack() and PR_GET_TID_ADDRESS have no ptrace request, so a real
 * dump runs code in every thread on top of this.
 *   threadfloor [N]   (100 by default)
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <elf.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 1024

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void *sleeper(void *arg) {
  (void)arg;
  for (;;) pause();
  return NULL;
}

static char xstate[65536];

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 100;
  if (n < 1 || n > MAX_THREADS) return 2;
  int ready[2];
  if (pipe(ready) != 0) return 2;
  pid_t child = fork();
  if (child < 0) return 2;
  if (child == 0) {
    pthread_t t;
    for (int i = 0; i < n - 1; i++) {
      if (pthread_create(&t, NULL, sleeper, NULL) != 0) _exit(2);
    }
    if (write(ready[1], "x", 1) != 1) _exit(2);
    for (;;) pause();
  }
  char c;
  if (read(ready[0], &c, 1) != 1) return 2;
  usleep(200000);
  printf("threads,list_ms,seize_stop_ms,regs_xstate_ms,status_ms,detach_ms,total_ms\n");
  for (int rep = 0; rep < 5; rep++) {
    pid_t tids[MAX_THREADS];
    int nt = 0;
    char path[96], buf[4096];
    double t0 = now_ms();
    snprintf(path, sizeof(path), "/proc/%d/task", child);
    DIR *d = opendir(path);
    if (d == NULL) return 2;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && nt < MAX_THREADS) {
      if (e->d_name[0] != '.') tids[nt++] = atoi(e->d_name);
    }
    closedir(d);
    double t1 = now_ms();
    for (int i = 0; i < nt; i++) {
      if (ptrace(PTRACE_SEIZE, tids[i], 0, 0) != 0 || ptrace(PTRACE_INTERRUPT, tids[i], 0, 0) != 0) {
        perror("ptrace");
        return 1;
      }
    }
    for (int i = 0; i < nt; i++) {
      int st;
      if (waitpid(tids[i], &st, __WALL) != tids[i]) return 1;
    }
    double t2 = now_ms();
    for (int i = 0; i < nt; i++) {
      struct user_regs_struct regs;
      struct iovec io = {xstate, sizeof(xstate)};
      if (ptrace(PTRACE_GETREGS, tids[i], 0, &regs) != 0 ||
          ptrace(PTRACE_GETREGSET, tids[i], NT_X86_XSTATE, &io) != 0) {
        return 1;
      }
    }
    double t3 = now_ms();
    for (int i = 0; i < nt; i++) {
      snprintf(path, sizeof(path), "/proc/%d/task/%d/status", child, tids[i]);
      int fd = open(path, O_RDONLY);
      if (fd < 0 || read(fd, buf, sizeof(buf)) <= 0) return 1;
      close(fd);
    }
    double t4 = now_ms();
    for (int i = 0; i < nt; i++) ptrace(PTRACE_DETACH, tids[i], 0, 0);
    double t5 = now_ms();
    printf("%d,%.2f,%.2f,%.2f,%.2f,%.2f,%.2f\n", nt, t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4,
           t5 - t0);
    usleep(100000);
  }
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  return 0;
}
