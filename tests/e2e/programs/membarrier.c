/*
 * membarrier() registrations: the parent registers private expedited,
 * private expedited sync-core and private expedited rseq; its child none.
 * After SIGUSR1 each command succeeds in the parent, and in the child
 * each still fails with EPERM (a restore registers no more than there was).
 */
#define _GNU_SOURCE
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "subject.h"

static int mb(int cmd) { return (int)syscall(SYS_membarrier, cmd, 0, 0); }

static const int cmds[] = {MEMBARRIER_CMD_PRIVATE_EXPEDITED,
                           MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE,
                           MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ};
static const int regs[] = {MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
                           MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE,
                           MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ};

int main(void) {
  subject_install();
  pid_t child = fork();
  if (child == 0) {
    subject_wait();
    for (int i = 0; i < 3; i++) {
      if (mb(cmds[i]) != -1 || errno != EPERM) _exit(10 + i);
    }
    _exit(0);
  }
  for (int i = 0; i < 3; i++) {
    if (mb(regs[i]) != 0) {
      printf("FAIL: register %d: %s\n", regs[i], strerror(errno));
      return 1;
    }
  }
  printf("READY %d %d\n", getpid(), child);
  fflush(stdout);
  subject_wait();
  for (int i = 0; i < 3; i++) {
    SUBJECT_CHECK(mb(cmds[i]) == 0, "command %d: %s", cmds[i], strerror(errno));
  }
  kill(child, SIGUSR1);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  SUBJECT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child: status 0x%x", status);
  return subject_verdict();
}
