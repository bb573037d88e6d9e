/*
 * A process group whose leader exited: the root (a session leader and
 * child subreaper) forks L, L makes group L and forks M, then L exits and
 * is reaped; M, re-parented to the root, stays in group L. After the
 * restore M is still in group L and the root is still its parent.
 */
#include <sys/prctl.h>
#include <sys/wait.h>

#include "subject.h"

int main(void) {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  int p[2];
  if (pipe(p) != 0) return 2;
  pid_t l = fork();
  if (l == 0) {
    setpgid(0, 0);
    pid_t m = fork();
    if (m == 0) {
      close(p[0]);
      close(p[1]);
      pid_t group = getpgrp();
      subject_ready();
      subject_wait();
      int ok = getpgrp() == group && getppid() == getsid(0);
      printf("member pgrp %d (want %d) ppid %d %s\n", getpgrp(), group, getppid(), ok ? "ok" : "BAD");
      fflush(stdout);
      _exit(ok ? 0 : 1);
    }
    (void)!write(p[1], &m, sizeof(m));
    _exit(0);
  }
  close(p[1]);
  pid_t m;
  if (read(p[0], &m, sizeof(m)) != sizeof(m)) return 2;
  close(p[0]);
  int status;
  waitpid(l, &status, 0);  // the leader is gone
  printf("LEADER %d gone, MEMBER %d\n", l, m);
  subject_ready();
  subject_wait();
  kill(m, SIGUSR1);
  SUBJECT_CHECK(waitpid(m, &status, 0) == m && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "the member did not pass");
  return subject_verdict();
}
