/*
 * Signal-driven I/O: the read end of one pipe is O_ASYNC, owned by the
 * process (F_SETOWN) with F_SETSIG SIGUSR2; another's is owned by one
 * thread (F_SETOWN_EX F_OWNER_TID) with SIGRTMIN+2. After SIGUSR1 the
 * owners, signals and O_ASYNC read back as they were, and once a child
 * writes to both pipes each signal arrives, carrying its fd (si_fd), the
 * second in the owning thread.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "subject.h"

static int p1[2], p2[2];
static volatile sig_atomic_t got1_fd = -1, got2_fd = -1, got2_tid;
static volatile pid_t worker_tid;

static void on_io(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  if (sig == SIGUSR2) got1_fd = si->si_fd;
  if (sig == SIGRTMIN + 2) {
    got2_fd = si->si_fd;
    got2_tid = (pid_t)syscall(SYS_gettid);
  }
}

static void *worker(void *arg) {
  (void)arg;
  subject_block_usr1();
  worker_tid = (pid_t)syscall(SYS_gettid);
  for (;;) pause();
  return NULL;
}

int main(void) {
  if (pipe(p1) != 0 || pipe(p2) != 0) return 1;
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = on_io;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigaction(SIGUSR2, &sa, NULL);
  sigaction(SIGRTMIN + 2, &sa, NULL);
  pthread_t t;
  pthread_create(&t, NULL, worker, NULL);
  while (worker_tid == 0) usleep(1000);
  fcntl(p1[0], F_SETOWN, getpid());
  fcntl(p1[0], F_SETSIG, SIGUSR2);
  fcntl(p1[0], F_SETFL, fcntl(p1[0], F_GETFL) | O_ASYNC | O_NONBLOCK);
  struct f_owner_ex tid_owner = {F_OWNER_TID, worker_tid};
  fcntl(p2[0], F_SETOWN_EX, &tid_owner);
  fcntl(p2[0], F_SETSIG, SIGRTMIN + 2);
  fcntl(p2[0], F_SETFL, fcntl(p2[0], F_GETFL) | O_ASYNC | O_NONBLOCK);

  subject_install();
  pid_t child = fork();
  if (child == 0) {
    subject_wait();
    if (write(p1[1], "x", 1) != 1 || write(p2[1], "y", 1) != 1) _exit(1);
    _exit(0);
  }
  printf("READY %d %d\n", getpid(), child);
  fflush(stdout);
  subject_wait();

  struct f_owner_ex o;
  SUBJECT_CHECK(fcntl(p1[0], F_GETOWN_EX, &o) == 0 && o.type == F_OWNER_PID && o.pid == getpid(),
                "pipe 1: owner type %d pid %d", o.type, o.pid);
  SUBJECT_CHECK(fcntl(p2[0], F_GETOWN_EX, &o) == 0 && o.type == F_OWNER_TID && o.pid == worker_tid,
                "pipe 2: owner type %d pid %d, not the thread %d", o.type, o.pid, worker_tid);
  SUBJECT_CHECK(fcntl(p1[0], F_GETSIG) == SIGUSR2 && fcntl(p2[0], F_GETSIG) == SIGRTMIN + 2,
                "F_GETSIG %d and %d", fcntl(p1[0], F_GETSIG), fcntl(p2[0], F_GETSIG));
  SUBJECT_CHECK((fcntl(p1[0], F_GETFL) & O_ASYNC) && (fcntl(p2[0], F_GETFL) & O_ASYNC), "O_ASYNC lost");
  kill(child, SIGUSR1);
  for (int i = 0; i < 2000 && (got1_fd < 0 || got2_fd < 0); i++) usleep(1000);
  SUBJECT_CHECK(got1_fd == p1[0], "SIGUSR2 for fd %d, not %d", got1_fd, p1[0]);
  SUBJECT_CHECK(got2_fd == p2[0], "SIGRTMIN+2 for fd %d, not %d", got2_fd, p2[0]);
  SUBJECT_CHECK(got2_tid == worker_tid, "SIGRTMIN+2 in thread %d, not %d", got2_tid, worker_tid);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  SUBJECT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status 0x%x", status);
  return subject_verdict();
}
