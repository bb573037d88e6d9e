/*
 * A tree that never holds still: the main thread forks children that exit
 * at once and reaps them, a second thread starts and joins short-lived
 * threads, both counting. On SIGUSR1 both counts must still be growing.
 */
#include <pthread.h>
#include <sys/wait.h>

#include "subject.h"

static volatile long forks, threads;
static volatile int stop;

static void *nothing(void *arg) { return arg; }

static void *thread_churn(void *arg) {
  (void)arg;
  while (!stop) {
    pthread_t t;
    if (pthread_create(&t, NULL, nothing, NULL) == 0) {
      pthread_join(t, NULL);
      threads++;
    }
  }
  return NULL;
}

int main(void) {
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &usr1, NULL);
  pthread_t churner;
  pthread_create(&churner, NULL, thread_churn, NULL);
  pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
  subject_ready();
  while (!subject_go) {
    pid_t pid = fork();
    if (pid == 0) _exit(7);
    if (pid > 0) {
      int status;
      waitpid(pid, &status, 0);
      forks++;
    }
  }
  long f = forks, t = threads;
  usleep(20000);
  stop = 1;
  pthread_join(churner, NULL);
  SUBJECT_CHECK(f > 0 && t > 0, "no churn: %ld forks, %ld threads", f, t);
  return subject_verdict();
}
