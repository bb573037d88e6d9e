/*
 * A zombie in another task's process group: the parent makes child L the
 * leader of a group of its own; child Z joins L's group and exits with
 * status 7, unreaped. Child Y leads a session of its own (setsid) and
 * exits with status 5. After SIGUSR1, Z is still a zombie in L's group and
 * waitpid(-L) reaps it, with its status; Y is a zombie that leads its
 * session and group.
 */
#define _GNU_SOURCE
#include <sys/wait.h>

#include "subject.h"

static pid_t last_session;

static char state_of(pid_t pid, pid_t *pgrp) {
  return subject_proc_state(pid, pgrp, &last_session);
}

int main(void) {
  subject_install();
  pid_t leader = fork();
  if (leader == 0) {
    setpgid(0, 0);
    subject_wait();
    _exit(0);
  }
  setpgid(leader, leader);
  pid_t zombie = fork();
  if (zombie == 0) {
    setpgid(0, leader);
    _exit(7);
  }
  setpgid(zombie, leader);
  pid_t session_leader = fork();
  if (session_leader == 0) {
    setsid();
    _exit(5);
  }
  pid_t g = 0;
  for (int i = 0; i < 5000 && state_of(session_leader, &g) != 'Z'; i++) usleep(1000);
  if (state_of(session_leader, &g) != 'Z' || g != session_leader || last_session != session_leader) {
    printf("FAIL: the session leader is not a zombie leading its session\n");
    return 1;
  }
  for (int i = 0; i < 5000 && state_of(zombie, &g) != 'Z'; i++) usleep(1000);
  if (state_of(zombie, &g) != 'Z' || g != leader) {
    printf("FAIL: the zombie is not one in group %d (group %d)\n", leader, g);
    return 1;
  }
  printf("READY %d %d %d %d\n", getpid(), leader, zombie, session_leader);
  fflush(stdout);
  subject_wait();

  char st = state_of(zombie, &g);
  SUBJECT_CHECK(st == 'Z' && g == leader, "the zombie: state %c, group %d, not %d", st, g, leader);
  int status = 0;
  pid_t r = waitpid(-leader, &status, WNOHANG);
  SUBJECT_CHECK(r == zombie && WIFEXITED(status) && WEXITSTATUS(status) == 7,
                "waitpid(-%d) gave %d (status 0x%x)", leader, r, status);
  st = state_of(session_leader, &g);
  SUBJECT_CHECK(st == 'Z' && g == session_leader && last_session == session_leader,
                "the session leader: state %c, group %d, session %d", st, g, last_session);
  r = waitpid(session_leader, &status, 0);
  SUBJECT_CHECK(r == session_leader && WIFEXITED(status) && WEXITSTATUS(status) == 5,
                "the session leader: status 0x%x", status);
  kill(leader, SIGUSR1);
  while (waitpid(leader, &status, 0) < 0 && errno == EINTR) {
  }
  return subject_verdict();
}
