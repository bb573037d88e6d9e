/*
 * Names itself (prctl PR_SET_NAME) with bytes that /proc's status file
 * escapes or trims: a leading and a trailing blank, a newline, a
 * backslash. On SIGUSR1, PASS only if its name is still exactly that.
 */
#include <sys/prctl.h>

#include "subject.h"

static const char kName[] = " a\\b\nc\td ";

int main(void) {
  prctl(PR_SET_NAME, kName);
  subject_ready();
  subject_wait();
  char now[17] = {0};
  prctl(PR_GET_NAME, now);
  SUBJECT_CHECK(strcmp(now, kName) == 0, "its name is '%s'", now);
  return subject_verdict();
}
