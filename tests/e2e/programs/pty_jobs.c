/*
 * Job control on a pseudo-terminal. The root holds the master; its child
 * L leads a session whose controlling terminal is the slave (it opened it
 * after setsid). L has a foreground job F and a background job B, each a
 * process group of its own; F holds /dev/tty open. READY lists all four.
 *
 * After SIGUSR1 the root checks, through the master: the foreground group
 * is F's and the session L's; Ctrl-Z typed on the master stops F with
 * SIGTSTP (L sees it in waitpid); B, reading the terminal from the
 * background, is stopped by SIGTTIN; L brings F back to the foreground
 * and continues it (`fg`): F writes through its old /dev/tty fd and
 * through a /dev/tty it opens now, and the root reads both lines.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>

#include "subject.h"

static int master_fd;
static int to_l[2], from_l[2];
static volatile sig_atomic_t got_usr2, got_cont;
static void on_usr2(int sig) { (void)sig; got_usr2 = 1; }
static void on_cont(int sig) { (void)sig; got_cont = 1; }

static void report(const char *fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  if (write(from_l[1], buf, (size_t)n) != n) _exit(9);
}

static void foreground_job(int tty) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_cont;
  sigaction(SIGCONT, &sa, NULL);
  /* Stopped by SIGTSTP (default action), then continued. */
  while (!got_cont) pause();
  struct stat st;
  if (fstat(tty, &st) != 0 || st.st_rdev != makedev(5, 0)) dprintf(tty, "F old-fd-not-dev-tty\n");
  dprintf(tty, "F old-fd\n");
  int fresh = open("/dev/tty", O_RDWR);
  if (fresh < 0) {
    dprintf(tty, "F no-dev-tty %d\n", errno);
  } else {
    dprintf(fresh, "F new-dev-tty\n");
  }
  for (;;) pause();
}

static void background_job(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_usr2;
  sigaction(SIGUSR2, &sa, NULL);
  while (!got_usr2) pause();
  char c;
  /* From the background: SIGTTIN stops this (default action). */
  ssize_t r = read(0, &c, 1);
  (void)r;
  for (;;) pause();
}

static void leader(const char *pts) {
  setsid();
  int tty = open(pts, O_RDWR); /* no O_NOCTTY: the controlling terminal */
  if (tty < 0) _exit(10);
  dup2(tty, 0);
  dup2(tty, 1);
  dup2(tty, 2);
  pid_t f = fork();
  if (f == 0) {
    setpgid(0, 0);
    int devtty = open("/dev/tty", O_RDWR);
    if (devtty < 0) _exit(11);
    foreground_job(devtty);
  }
  setpgid(f, f);
  pid_t b = fork();
  if (b == 0) {
    setpgid(0, 0);
    background_job();
  }
  setpgid(b, b);
  tcsetpgrp(tty, f);
  signal(SIGTTOU, SIG_IGN); /* as a shell: it sets the foreground from the background */
  char line[64];
  snprintf(line, sizeof(line), "%d %d ", f, b);
  if (write(from_l[1], line, strlen(line)) < 0) _exit(12);
  /* Steps the root asks for. */
  for (;;) {
    char step;
    if (read(to_l[0], &step, 1) != 1) _exit(0);
    int status;
    if (step == 'z') {
      pid_t w = waitpid(f, &status, WUNTRACED);
      report("z %d %d\n", w == f && WIFSTOPPED(status), WIFSTOPPED(status) ? WSTOPSIG(status) : -1);
    } else if (step == 'b') {
      kill(b, SIGUSR2);
      pid_t w = waitpid(b, &status, WUNTRACED);
      report("b %d %d\n", w == b && WIFSTOPPED(status), WIFSTOPPED(status) ? WSTOPSIG(status) : -1);
    } else if (step == 'f') {
      /* fg: F to the foreground, continued. */
      int r = tcsetpgrp(0, f);
      kill(-f, SIGCONT);
      report("f %d\n", r);
    }
  }
}

/* A line from L (up to '\n'), 5 s at most. */
static int read_report(char *buf, size_t cap) {
  size_t n = 0;
  while (n + 1 < cap) {
    struct pollfd p = {from_l[0], POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0) break;
    if (read(from_l[0], buf + n, 1) != 1) break;
    if (buf[n++] == '\n') break;
  }
  buf[n] = 0;
  return (int)n;
}

/* What the master gives within 500 ms of quiet. */
static size_t read_master(char *buf, size_t cap) {
  size_t n = 0;
  for (;;) {
    struct pollfd p = {master_fd, POLLIN, 0};
    if (poll(&p, 1, 500) <= 0 || n + 1 >= cap) break;
    ssize_t r = read(master_fd, buf + n, cap - 1 - n);
    if (r <= 0) break;
    n += (size_t)r;
  }
  buf[n] = 0;
  return n;
}

int main(void) {
  master_fd = posix_openpt(O_RDWR | O_NOCTTY);
  if (master_fd < 0 || grantpt(master_fd) || unlockpt(master_fd)) return 2;
  char pts[64];
  snprintf(pts, sizeof(pts), "%s", ptsname(master_fd));
  if (pipe(to_l) || pipe(from_l)) return 2;
  subject_install();
  pid_t l = fork();
  if (l == 0) {
    close(master_fd);
    close(to_l[1]);
    close(from_l[0]);
    leader(pts);
  }
  close(to_l[0]);
  close(from_l[1]);
  char ids[64] = {0};
  size_t n = 0;
  int spaces = 0;
  while (spaces < 2 && n + 1 < sizeof(ids) && read(from_l[0], ids + n, 1) == 1) {
    if (ids[n++] == ' ') spaces++;
  }
  pid_t f = 0, b = 0;
  if (sscanf(ids, "%d %d", &f, &b) != 2) return 2;
  /* Settled: F and B in their groups, F in the foreground. */
  for (int i = 0; i < 200 && tcgetpgrp(master_fd) != f; i++) usleep(5000);
  usleep(50000);
  printf("READY %d %d %d %d\n", getpid(), l, f, b);
  fflush(stdout);
  subject_wait();

  pid_t fg = tcgetpgrp(master_fd);
  SUBJECT_CHECK(fg == f, "foreground group %d, expected %d", fg, f);
  pid_t sid = -1;
  ioctl(master_fd, TIOCGSID, &sid);
  SUBJECT_CHECK(sid == l, "session of the terminal %d, expected %d", sid, l);
  char buf[256];
  /* Ctrl-Z on the master: SIGTSTP to the foreground job. */
  if (write(master_fd, "\x1a", 1) != 1) subject_fail("write ^Z");
  if (write(to_l[1], "z", 1) != 1) subject_fail("to L");
  read_report(buf, sizeof(buf));
  SUBJECT_CHECK(strcmp(buf, "z 1 20\n") == 0, "after ^Z L says '%s' (expected F stopped by SIGTSTP)", buf);
  /* The background job reads the terminal: SIGTTIN. */
  if (write(to_l[1], "b", 1) != 1) subject_fail("to L");
  read_report(buf, sizeof(buf));
  SUBJECT_CHECK(strcmp(buf, "b 1 21\n") == 0, "after a background read L says '%s' (expected SIGTTIN)", buf);
  /* fg. */
  read_master(buf, sizeof(buf)); /* the echo of ^Z */
  if (write(to_l[1], "f", 1) != 1) subject_fail("to L");
  char rep[64];
  read_report(rep, sizeof(rep));
  SUBJECT_CHECK(strcmp(rep, "f 0\n") == 0, "fg: L says '%s'", rep);
  read_master(buf, sizeof(buf));
  SUBJECT_CHECK(strstr(buf, "F old-fd") != NULL, "F's old /dev/tty fd: master read '%s'", buf);
  SUBJECT_CHECK(strstr(buf, "F new-dev-tty") != NULL, "F's new /dev/tty: master read '%s'", buf);
  SUBJECT_CHECK(strstr(buf, "not-dev-tty") == NULL, "F's old /dev/tty fd is another file: '%s'", buf);
  kill(f, SIGKILL);
  kill(b, SIGKILL);
  kill(l, SIGKILL);
  waitpid(l, NULL, 0);
  if (subject_failures) return 1;
  printf("PASS\n");
  return 0;
}
