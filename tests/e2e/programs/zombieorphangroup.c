/*
 * A zombie alone in a process group whose leader has exited: the parent
 * (a session leader) forks L, which leads a group of its own, and Z,
 * which joins L's group and exits with status 9, unreaped; L then exits
 * and is reaped, so the group lives on only through the zombie. After
 * SIGUSR1 the zombie is still in that group, and waitpid(-L) reaps it
 * with its status.
 */
#define _GNU_SOURCE
#include <sys/wait.h>

#include "subject.h"

int main(void) {
  subject_install();
  if (getsid(0) != getpid() && setsid() < 0) {
    printf("FAIL: not a session leader\n");
    return 1;
  }
  int go[2];
  if (pipe(go) != 0) return 1;
  pid_t leader = fork();
  if (leader == 0) {
    setpgid(0, 0);
    char c;
    if (read(go[0], &c, 1) != 1) _exit(1);
    _exit(0);
  }
  setpgid(leader, leader);
  pid_t zombie = fork();
  if (zombie == 0) {
    setpgid(0, leader);
    _exit(9);
  }
  setpgid(zombie, leader);
  pid_t g = 0;
  for (int i = 0; i < 5000 && subject_proc_state(zombie, &g, NULL) != 'Z'; i++) usleep(1000);
  if (write(go[1], "x", 1) != 1) return 1;
  int status = 0;
  while (waitpid(leader, &status, 0) < 0 && errno == EINTR) {
  }
  if (subject_proc_state(zombie, &g, NULL) != 'Z' || g != leader) {
    printf("FAIL: the zombie is not one in group %d (group %d)\n", leader, g);
    return 1;
  }
  printf("READY %d %d\n", getpid(), zombie);
  fflush(stdout);
  subject_wait();

  char st = subject_proc_state(zombie, &g, NULL);
  SUBJECT_CHECK(st == 'Z' && g == leader, "the zombie: state %c, group %d, not %d", st, g, leader);
  pid_t r = waitpid(-leader, &status, WNOHANG);
  SUBJECT_CHECK(r == zombie && WIFEXITED(status) && WEXITSTATUS(status) == 9,
                "waitpid(-%d) gave %d (status 0x%x)", leader, r, status);
  return subject_verdict();
}
