/*
 * A tree inside its own pid namespace, with a second one nested in it:
 *
 *   outer (the harness's child): makes the namespace, waits for its init
 *   i1   pid 1 of namespace N1                (the dumped root)
 *   +- c1   pid 2 of N1
 *   +- t    pid 3 of N1, pid 1 of namespace N2
 *      +- c2   pid 2 of N2
 *
 * Each task notes its PID and parent PID as its own namespace shows them,
 * says UP, and on SIGUSR1 passes it on to its children, checks its ids,
 * waits for its children and exits 0 only if it and they passed. i1 prints
 * PASS or FAIL. outer prints "ROOT <pid of i1>".
 */
#define _GNU_SOURCE
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "subject.h"

static pid_t kids[4];
static int nkids;

static int run(const char *name, pid_t want_pid, pid_t want_ppid) {
  printf("UP %s pid=%d ppid=%d\n", name, getpid(), getppid());
  fflush(stdout);
  sigset_t usr1, old;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, &old);
  while (!subject_go) sigsuspend(&old);
  for (int i = 0; i < nkids; i++) kill(kids[i], SIGUSR1);
  int ok = getpid() == want_pid && getppid() == want_ppid;
  if (!ok) printf("FAIL: %s pid %d/%d ppid %d/%d\n", name, getpid(), want_pid, getppid(), want_ppid);
  for (int i = 0; i < nkids; i++) {
    int status;
    if (waitpid(kids[i], &status, 0) != kids[i] || !WIFEXITED(status) || WEXITSTATUS(status)) {
      printf("FAIL: %s: child %d did not pass\n", name, kids[i]);
      ok = 0;
    }
  }
  printf("%s %s\n", name, ok ? "ok" : "not ok");
  fflush(stdout);
  return ok ? 0 : 1;
}

static pid_t spawn(int new_ns, int (*body)(void)) {
  pid_t pid = (pid_t)syscall(SYS_clone, (new_ns ? CLONE_NEWPID : 0) | SIGCHLD, 0, 0, 0, 0);
  if (pid == 0) {
    nkids = 0;
    _exit(body());
  }
  kids[nkids++] = pid;
  return pid;
}

static int c1(void) { return run("c1", 2, 1); }
static int c2(void) { return run("c2", 2, 1); }
static int t(void) {
  spawn(0, c2);
  return run("t", 1, 0);  /* pid 1 of N2; its parent is outside N2 */
}
static int i1(void) {
  spawn(0, c1);
  spawn(1, t);
  int rc = run("i1", 1, 0);
  printf(rc == 0 ? "PASS\n" : "FAIL\n");
  fflush(stdout);
  return rc;
}

int main(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = subject_on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  pid_t root = spawn(1, i1);
  printf("ROOT %d\n", root);
  fflush(stdout);
  int status;
  waitpid(root, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
