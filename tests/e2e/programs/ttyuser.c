/*
 * A shell job: stdin, stdout and stderr are a terminal. Notes that, and
 * on SIGUSR1 checks they still are, writing its verdict to the file
 * argv[1] (not to the terminal, which the restore replaces).
 */
#include <fcntl.h>

#include "subject.h"

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  int log = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (log < 0) return 2;
  dprintf(log, "START %d %d%d%d\n", getpid(), isatty(0), isatty(1), isatty(2));
  subject_install();
  sigset_t usr1, old;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, &old);
  while (!subject_go) sigsuspend(&old);
  int ok = isatty(0) && isatty(1) && isatty(2);
  dprintf(log, "%s %d%d%d\n", ok ? "PASS" : "FAIL", isatty(0), isatty(1), isatty(2));
  return ok ? 0 : 1;
}
