/*
 * A pidfd of a thread (PIDFD_THREAD), not its process's leader, and a
 * second descriptor of the same pidfd in an epoll. Says READY; after
 * SIGUSR1: fdinfo's Pid is the thread's TID, the pidfd is not ready while
 * the thread lives, pidfd_send_signal(0) reaches it, and once the thread
 * has exited both poll and the epoll report it (within a second).
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/syscall.h>

#include "subject.h"

static volatile int stop;
static volatile pid_t thread_tid;

static void *run(void *arg) {
  (void)arg;
  subject_block_usr1();
  thread_tid = (pid_t)syscall(SYS_gettid);
  while (!stop) usleep(1000);
  return NULL;
}

static int fdinfo_pid(int fd) {
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
  FILE *f = fopen(path, "r");
  int pid = 0;
  if (f == NULL) return 0;
  while (fgets(line, sizeof(line), f)) {
    if (sscanf(line, "Pid: %d", &pid) == 1) break;
  }
  fclose(f);
  return pid;
}

int main(void) {
  subject_install();
  pthread_t t;
  if (pthread_create(&t, NULL, run, NULL) != 0) return 2;
  while (thread_tid == 0) usleep(1000);
  const pid_t tid = thread_tid;
  int pidfd = (int)syscall(SYS_pidfd_open, tid, O_EXCL /* PIDFD_THREAD */);
  if (pidfd < 0) {
    printf("FAIL: pidfd_open(%d, PIDFD_THREAD): %s\n", tid, strerror(errno));
    return 2;
  }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x7e57ab1e00000001ull};
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, pidfd, &ev) != 0) return 2;
  subject_ready();
  subject_wait();

  SUBJECT_CHECK(fdinfo_pid(pidfd) == tid, "fdinfo Pid %d, want the thread's %d", fdinfo_pid(pidfd), tid);
  int fl = fcntl(pidfd, F_GETFL);
  SUBJECT_CHECK(fl >= 0 && (fl & O_EXCL), "PIDFD_THREAD lost (flags 0%o)", fl);
  struct pollfd p = {pidfd, POLLIN, 0};
  SUBJECT_CHECK(poll(&p, 1, 0) == 0, "the pidfd is ready while its thread lives");
  SUBJECT_CHECK(syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) == 0, "pidfd_send_signal(0): %s", strerror(errno));
  struct epoll_event out;
  SUBJECT_CHECK(epoll_wait(ep, &out, 1, 0) == 0, "the epoll reports the pidfd while its thread lives");
  stop = 1;
  pthread_join(t, NULL);
  SUBJECT_CHECK(poll(&p, 1, 1000) == 1 && (p.revents & POLLIN), "the thread's exit is not reported");
  int n = epoll_wait(ep, &out, 1, 1000);
  SUBJECT_CHECK(n == 1 && out.data.u64 == 0x7e57ab1e00000001ull, "the epoll did not report the exit (%d)", n);
  if (subject_failures == 0) printf("PASS\n");
  return subject_failures == 0 ? 0 : 1;
}
