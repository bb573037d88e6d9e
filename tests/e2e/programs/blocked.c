/*
 * Blocked in a syscall at checkpoint time: pause() or sigsuspend()
 * (argv[1]). After the restore it must still be blocked there, and the
 * harness's SIGUSR1 must wake it: the handler runs and the call returns
 * EINTR. With sigsuspend, the mask it saved (SIGUSR2 blocked) must be back
 * afterwards.
 */
#include "subject.h"

static volatile sig_atomic_t handled;
static void on_usr1(int sig) {
  (void)sig;
  handled++;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "pause";
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  sigprocmask(SIG_BLOCK, &usr2, NULL);
  printf("READY %d\n", getpid());
  fflush(stdout);
  int r;
  if (strcmp(mode, "sigsuspend") == 0) {
    sigset_t none;
    sigemptyset(&none);
    r = sigsuspend(&none);
  } else {
    r = pause();
  }
  int err = errno;
  SUBJECT_CHECK(r == -1 && err == EINTR, "%s returned %d (errno %d), want -1/EINTR", mode, r, err);
  SUBJECT_CHECK(handled == 1, "the handler ran %d times", (int)handled);
  sigset_t now;
  sigprocmask(SIG_SETMASK, NULL, &now);
  SUBJECT_CHECK(sigismember(&now, SIGUSR2) && !sigismember(&now, SIGUSR1),
                "the signal mask afterwards is wrong");
  return subject_verdict();
}
