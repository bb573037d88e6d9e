/*
 * A zombie in another task's process group: the parent makes child L the
 * leader of a group of its own; child Z joins L's group and exits with
 * status 7, unreaped. After SIGUSR1, Z is still a zombie in L's group and
 * waitpid(-L) reaps it, with its status.
 */
#define _GNU_SOURCE
#include <sys/wait.h>

#include "subject.h"

static char state_of(pid_t pid, pid_t *pgrp) {
  char path[64], buf[512];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return '?';
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  char state = '?';
  int ppid = 0, group = 0;
  if (p == NULL || sscanf(p + 2, "%c %d %d", &state, &ppid, &group) != 3) return '?';
  *pgrp = group;
  return state;
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
  pid_t g = 0;
  for (int i = 0; i < 5000 && state_of(zombie, &g) != 'Z'; i++) usleep(1000);
  if (state_of(zombie, &g) != 'Z' || g != leader) {
    printf("FAIL: the zombie is not one in group %d (group %d)\n", leader, g);
    return 1;
  }
  printf("READY %d %d %d\n", getpid(), leader, zombie);
  fflush(stdout);
  subject_wait();

  char st = state_of(zombie, &g);
  SUBJECT_CHECK(st == 'Z' && g == leader, "the zombie: state %c, group %d, not %d", st, g, leader);
  int status = 0;
  pid_t r = waitpid(-leader, &status, WNOHANG);
  SUBJECT_CHECK(r == zombie && WIFEXITED(status) && WEXITSTATUS(status) == 7,
                "waitpid(-%d) gave %d (status 0x%x)", leader, r, status);
  kill(leader, SIGUSR1);
  while (waitpid(leader, &status, 0) < 0 && errno == EINTR) {
  }
  return subject_verdict();
}
