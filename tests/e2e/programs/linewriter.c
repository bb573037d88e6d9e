/*
 * Writes numbered lines ("line 1", "line 2", ...) to stdout, every few ms,
 * until SIGUSR1; then "END <count>" and exits 0. A write that fails (a
 * broken pipe after a restore) ends it with a message on stderr and exit
 * 1. Says READY on stderr (stdout is the pipe under test).
 */
#include "subject.h"

int main(void) {
  subject_install();
  fprintf(stderr, "READY %d\n", getpid());
  fflush(stderr);
  long i;
  for (i = 1; !subject_go; i++) {
    if (printf("line %ld\n", i) < 0 || fflush(stdout) != 0) {
      fprintf(stderr, "FAIL: writing line %ld: %s\n", i, strerror(errno));
      return 1;
    }
    usleep(2000);
  }
  printf("END %ld\n", i - 1);
  if (fflush(stdout) != 0) {
    fprintf(stderr, "FAIL: writing END: %s\n", strerror(errno));
    return 1;
  }
  fprintf(stderr, "PASS\n");
  return 0;
}
