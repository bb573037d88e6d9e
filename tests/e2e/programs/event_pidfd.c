/*
 * pidfds of two children:
 *
 *   A  alive, blocked reading a pipe from the parent; it holds at fd 42 a
 *      pipe's read end with "file of child A" queued (its writer closed).
 *      Its pidfd is PIDFD_NONBLOCK.
 *   B  exited (status 3) and reaped before the checkpoint; its pidfd was
 *      opened while it ran.
 *
 * Prints "CHILDREN A" and READY. After SIGUSR1: fdinfo says each pidfd's
 * Pid (A's number; -1 for B). B: pidfd_send_signal(0) fails ESRCH, poll
 * says POLLIN, waitid(P_PIDFD) fails ECHILD (it was reaped). A:
 * pidfd_send_signal(0) works, poll says nothing, waitid(P_PIDFD, WEXITED)
 * fails EAGAIN (PIDFD_NONBLOCK, A runs); pidfd_getfd(A, 42) gives the
 * pipe, which reads "file of child A" and then end of file. Then the
 * parent writes "x" to A's pipe: A exits 7 (9 if it read something
 * else), its pidfd polls POLLIN within 1 s and waitid(P_PIDFD) reports
 * CLD_EXITED, status 7, A's pid.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "subject.h"

#define CHILD_FD 42
#define PIDFD_NONBLOCK O_NONBLOCK /* <linux/pidfd.h>, which clashes with <fcntl.h> */

static const char child_text[] = "file of child A";

static int pidfd_open(pid_t pid, unsigned flags) { return (int)syscall(SYS_pidfd_open, pid, flags); }
static int pidfd_send_signal(int pidfd, int sig) { return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0); }
static int pidfd_getfd(int pidfd, int fd) { return (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0); }

/* "Pid:" of the pidfd's fdinfo (-2 if there is none). */
static int fdinfo_pid(int fd) {
  char path[64], buf[256];
  snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
  FILE *f = fopen(path, "r");
  if (f == NULL) return -2;
  int pid = -2;
  while (fgets(buf, sizeof(buf), f) != NULL) {
    if (sscanf(buf, "Pid: %d", &pid) == 1) break;
  }
  fclose(f);
  return pid;
}

static int poll_in(int fd, int ms) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  int r = poll(&p, 1, ms);
  return r == 1 && (p.revents & POLLIN);
}

static void child_a(int go_fd, int ready_fd) {
  int q[2];
  if (pipe(q) || write(q[1], child_text, strlen(child_text)) != (ssize_t)strlen(child_text) ||
      dup2(q[0], CHILD_FD) != CHILD_FD) {
    _exit(2);
  }
  close(q[0]);
  close(q[1]);
  if (write(ready_fd, "r", 1) != 1) _exit(2);
  close(ready_fd);
  char c = 0;
  ssize_t r = read(go_fd, &c, 1);
  _exit(r == 1 && c == 'x' ? 7 : 9);
}

int main(void) {
  int go_a[2], go_b[2], ready[2];
  if (pipe(go_a) || pipe(go_b) || pipe(ready)) return 2;
  subject_install();
  signal(SIGPIPE, SIG_IGN); /* a write to A's pipe after A died fails, saying so */
  signal(SIGCHLD, SIG_DFL); /* children stay to be waited for */
  pid_t a = fork();
  if (a < 0) return 2;
  if (a == 0) {
    close(go_a[1]);
    close(go_b[0]);
    close(go_b[1]);
    close(ready[0]);
    child_a(go_a[0], ready[1]);
  }
  close(go_a[0]);
  close(ready[1]);
  pid_t b = fork();
  if (b < 0) return 2;
  if (b == 0) {
    char c;
    _exit(read(go_b[0], &c, 1) == 1 ? 3 : 4);
  }
  close(go_b[0]);
  int pa = pidfd_open(a, PIDFD_NONBLOCK);
  int pb = pidfd_open(b, 0);
  char c;
  int status = 0;
  if (pa < 0 || pb < 0 || read(ready[0], &c, 1) != 1 || write(go_b[1], "x", 1) != 1 || waitpid(b, &status, 0) != b ||
      !WIFEXITED(status) || WEXITSTATUS(status) != 3) {
    printf("FAIL: setup: %s (B's status 0x%x)\n", strerror(errno), status);
    return 2;
  }
  close(ready[0]);
  close(go_b[1]);
  if (pidfd_send_signal(pb, 0) == 0 || errno != ESRCH || fdinfo_pid(pa) != a || fdinfo_pid(pb) != -1) {
    printf("FAIL: setup: B's pidfd signals, or fdinfo shows Pid %d and %d\n", fdinfo_pid(pa), fdinfo_pid(pb));
    return 2;
  }
  printf("CHILDREN %d\n", a);
  subject_ready();
  subject_wait();

  SUBJECT_CHECK(fdinfo_pid(pa) == a && fdinfo_pid(pb) == -1, "fdinfo Pid: %d and %d, want %d and -1", fdinfo_pid(pa),
                fdinfo_pid(pb), a);
  SUBJECT_CHECK(pidfd_send_signal(pb, 0) < 0 && errno == ESRCH, "reaped B's pidfd: signal 0: %s, want ESRCH",
                strerror(errno));
  SUBJECT_CHECK(poll_in(pb, 0), "reaped B's pidfd does not poll POLLIN");
  siginfo_t info;
  memset(&info, 0, sizeof(info));
  SUBJECT_CHECK(waitid(P_PIDFD, (id_t)pb, &info, WEXITED | WNOHANG) < 0 && errno == ECHILD,
                "reaped B: waitid: %s (pid %d status %d), want ECHILD", strerror(errno), info.si_pid, info.si_status);

  SUBJECT_CHECK(pidfd_send_signal(pa, 0) == 0, "A's pidfd: signal 0: %s", strerror(errno));
  SUBJECT_CHECK(!poll_in(pa, 0), "A's pidfd polls POLLIN while A runs");
  SUBJECT_CHECK(fcntl(pa, F_GETFL) & O_NONBLOCK, "A's pidfd lost PIDFD_NONBLOCK");
  int w = waitid(P_PIDFD, (id_t)pa, &info, WEXITED);
  SUBJECT_CHECK(w < 0 && errno == EAGAIN, "A's non-blocking pidfd: waitid while A runs: %d (%s), want EAGAIN", w,
                w < 0 ? strerror(errno) : "A was reaped");
  int got = pidfd_getfd(pa, CHILD_FD);
  SUBJECT_CHECK(got >= 0, "pidfd_getfd(A, %d): %s", CHILD_FD, strerror(errno));
  if (got >= 0) {
    char buf[64] = {0};
    ssize_t r = read(got, buf, sizeof(buf));
    SUBJECT_CHECK(r == (ssize_t)strlen(child_text) && memcmp(buf, child_text, strlen(child_text)) == 0,
                  "A's fd %d reads %zd bytes '%.*s'", CHILD_FD, r, r > 0 ? (int)r : 0, buf);
    r = read(got, buf, sizeof(buf));
    SUBJECT_CHECK(r == 0, "A's fd %d: %zd after its bytes, want end of file", CHILD_FD, r);
    close(got);
  }

  SUBJECT_CHECK(write(go_a[1], "x", 1) == 1, "releasing A: %s", strerror(errno));
  SUBJECT_CHECK(poll_in(pa, 1000), "A's pidfd does not poll POLLIN within 1 s of A's exit");
  memset(&info, 0, sizeof(info));
  w = waitid(P_PIDFD, (id_t)pa, &info, WEXITED);
  if (w < 0 && errno == EAGAIN) {
    poll_in(pa, 5000); /* reported above; wait for the exit itself */
    w = waitid(P_PIDFD, (id_t)pa, &info, WEXITED);
  }
  SUBJECT_CHECK(w == 0 && info.si_pid == a && info.si_code == CLD_EXITED && info.si_status == 7,
                "A: waitid %d (%s): pid %d code %d status %d, want %d CLD_EXITED 7", w, strerror(errno), info.si_pid,
                info.si_code, info.si_status, a);
  return subject_verdict();
}
