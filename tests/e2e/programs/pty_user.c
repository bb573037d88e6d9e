/*
 * A process on a terminal it did not make: stdin and stdout are what the
 * harness gave it (a pty slave whose master the harness holds, or not a
 * terminal at all). With "session", it leads a session and makes stdin
 * its controlling terminal first. READY goes to stderr. After SIGUSR1:
 * whether stdin is still a terminal (and with "session" still its
 * controlling terminal, with its own group in the foreground, and
 * /dev/tty opens), then "hello <pid>" on stdout, PASS on stderr.
 */
#define _GNU_SOURCE
#include <sys/ioctl.h>
#include <termios.h>

#include "subject.h"

int main(int argc, char **argv) {
  int session = argc > 1 && strcmp(argv[1], "session") == 0;
  int want_tty = session || (argc > 1 && strcmp(argv[1], "tty") == 0);
  if (session) {
    if (setsid() < 0 || ioctl(0, TIOCSCTTY, 0) != 0) {
      fprintf(stderr, "FAIL: taking the terminal: %s\n", strerror(errno));
      return 2;
    }
  }
  subject_install();
  fprintf(stderr, "READY %d\n", getpid());
  fflush(stderr);
  subject_wait();
  FILE *err = stderr;
  if (want_tty && !isatty(0)) fprintf(err, "FAIL: stdin is no terminal\n"), subject_failures++;
  if (session) {
    if (tcgetsid(0) != getpid()) fprintf(err, "FAIL: tcgetsid %d\n", tcgetsid(0)), subject_failures++;
    if (tcgetpgrp(0) != getpgrp()) fprintf(err, "FAIL: tcgetpgrp %d\n", tcgetpgrp(0)), subject_failures++;
    int t = open("/dev/tty", O_RDWR);
    if (t < 0) fprintf(err, "FAIL: /dev/tty: %s\n", strerror(errno)), subject_failures++;
  }
  dprintf(1, "hello %d\n", getpid());
  if (subject_failures) return 1;
  fprintf(err, "PASS\n");
  return 0;
}
