/*
 * A parent with two unreaped children: one exited with status 42, one
 * killed by SIGTERM. After the restore waitpid() gets both statuses.
 */
#include <sys/wait.h>

#include "subject.h"

int main(void) {
  pid_t exited = fork();
  if (exited == 0) _exit(42);
  pid_t killed = fork();
  if (killed == 0) {
    for (;;) pause();
  }
  kill(killed, SIGTERM);
  usleep(100000);  // both are zombies now
  printf("ZOMBIES %d %d\n", exited, killed);
  subject_ready();
  subject_wait();
  int status;
  SUBJECT_CHECK(waitpid(exited, &status, 0) == exited, "waitpid(%d): %s", exited, strerror(errno));
  SUBJECT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 42, "status 0x%x, want exit 42", status);
  SUBJECT_CHECK(waitpid(killed, &status, 0) == killed, "waitpid(%d): %s", killed, strerror(errno));
  SUBJECT_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM, "status 0x%x, want SIGTERM",
                status);
  return subject_verdict();
}
