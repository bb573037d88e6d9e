/*
 * A three-level tree with two sessions and three process groups:
 *
 *   root   (session root, group root; started with setsid by the harness)
 *   +- a   (calls setsid after forking a1: session a, group a)
 *   |  +- a1  (forked before a's setsid: session root, group root)
 *   |  +- a2  (forked after: session a, group a)
 *   +- b   (setpgid: session root, group b)
 *
 * Each task notes its parent, group and session, says READY, and on
 * SIGUSR1 passes the signal to its children, checks its own ids, waits for
 * its children and exits 0 only if it and all of them passed.
 */
#include <sys/wait.h>

#include "subject.h"

static pid_t kids[4];
static int nkids;

static void on_usr1_forward(int sig) {
  (void)sig;
  subject_go = 1;
}

static int run(const char *name) {
  pid_t ppid = getppid(), pgrp = getpgrp(), sid = getsid(0);
  printf("READY %d %s ppid=%d pgrp=%d sid=%d\n", getpid(), name, ppid, pgrp, sid);
  fflush(stdout);
  sigset_t usr1, old;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, &old);
  while (!subject_go) sigsuspend(&old);
  for (int i = 0; i < nkids; i++) kill(kids[i], SIGUSR1);
  int ok = getppid() == ppid && getpgrp() == pgrp && getsid(0) == sid;
  if (!ok) {
    printf("FAIL: %s ppid %d/%d pgrp %d/%d sid %d/%d\n", name, getppid(), ppid, getpgrp(), pgrp,
           getsid(0), sid);
  }
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

static pid_t spawn(int (*body)(void)) {
  pid_t pid = fork();
  if (pid == 0) {
    nkids = 0;
    _exit(body());
  }
  kids[nkids++] = pid;
  return pid;
}

static int a1(void) { return run("a1"); }
static int a2(void) { return run("a2"); }
static int a(void) {
  spawn(a1);
  setsid();
  spawn(a2);
  return run("a");
}
static int b(void) {
  setpgid(0, 0);
  return run("b");
}

int main(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_usr1_forward;
  sigaction(SIGUSR1, &sa, NULL);
  spawn(a);
  spawn(b);
  int rc = run("root");
  printf(rc == 0 ? "PASS\n" : "FAIL\n");
  fflush(stdout);
  return rc;
}
