/*
 * An event loop's epoll, level-triggered, over every kind of target that
 * has something to read when the checkpoint comes:
 *
 *   tag A  a pipe's read end with 5 bytes unread ("12345")
 *   tag B  a connected unix stream socket with 19 bytes unread
 *   tag C  an eventfd with count 7
 *   tag D  a timerfd that expired once (one-shot, the expiration unread)
 *   tag E  a signalfd for SIGUSR2, SIGUSR2 pending (blocked), sent with
 *          sigqueue with a value
 *   tag F  EPOLLONESHOT on a second eventfd that fired before the
 *          checkpoint and whose event the loop took (epoll_wait): disarmed,
 *          though the eventfd is still readable
 *   tag G  EPOLLET on a second pipe: "x" was there at the last epoll_wait
 *          (the edge was taken), "y" came after it (a new edge)
 *   tag H  a third pipe's read end added as fd 60, then fd 60 closed while
 *          its dup (fd 61) keeps the file open: the epoll still watches it
 *          under number 60 (the kernel's key is file and number), 3 bytes
 *          unread
 *
 * Tags have their high bits set (a 32-bit copy would lose them). After
 * SIGUSR1: the epoll's watches as /proc/self/fdinfo shows them (target
 * number, events, data) are what they were; one epoll_wait(timeout 0)
 * reports exactly A B C D E G H, each with its tag and EPOLLIN alone;
 * draining each gives what was there (and then EAGAIN); a second
 * epoll_wait(0) reports nothing. The oneshot eventfd is still readable
 * and was not reported; re-armed with EPOLL_CTL_MOD it fires once. Fd 60
 * is not open and EPOLL_CTL_DEL on it fails EBADF (the kernel looks the
 * number up in the fd table first). EPOLL_CTL_MOD of the pipe to
 * EPOLLIN|EPOLLET and EPOLL_CTL_DEL of the socket succeed; then a write
 * to the pipe fires once and data on the socket fires nothing.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#include "subject.h"

#define TAG_PIPE 0xA1000000000000A1ULL
#define TAG_SOCK 0xB2000000000000B2ULL
#define TAG_EVENTFD 0xC3000000000000C3ULL
#define TAG_TIMERFD 0xD4000000000000D4ULL
#define TAG_SIGNALFD 0xE5000000000000E5ULL
#define TAG_ONESHOT 0xF6000000000000F6ULL
#define TAG_EDGE 0x0700000000000007ULL
#define TAG_DUP 0x1800000000000018ULL

#define CLOSED_FD 60
#define DUP_FD 61
#define SIGNAL_VALUE 0x2222

static const char sock_data[] = "socket-data-unread!"; /* 19 bytes */

static int ep, pipe_fds[2], sock_fds[2], efd, tfd, sfd, oneshot_fd, edge_fds[2], dup_w;

static int watch(int fd, uint32_t events, uint64_t tag) {
  struct epoll_event ev = {.events = events, .data.u64 = tag};
  return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

/* The epoll's "tfd: N events: E data: D" lines, sorted: the watches as
 * the kernel holds them (the order of fdinfo is the kernel's tree order,
 * which follows addresses, so a restored epoll lists them otherwise). */
static int by_text(const void *a, const void *b) { return strcmp(a, b); }

static int watches(char lines[][96], int max) {
  char path[64], buf[256];
  snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", ep);
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  int n = 0;
  while (n < max && fgets(buf, sizeof(buf), f) != NULL) {
    int tfd_no;
    unsigned events;
    unsigned long long data;
    if (sscanf(buf, "tfd: %d events: %x data: %llx", &tfd_no, &events, &data) == 3) {
      snprintf(lines[n++], 96, "tfd %d events %x data %llx", tfd_no, events, data);
    }
  }
  fclose(f);
  qsort(lines, (size_t)n, sizeof(lines[0]), by_text);
  return n;
}

static void expect_read(int fd, const char *want, size_t n, const char *what) {
  char buf[64] = {0};
  ssize_t r = read(fd, buf, sizeof(buf));
  SUBJECT_CHECK(r == (ssize_t)n && memcmp(buf, want, n) == 0, "%s: read %zd bytes '%.*s', want '%s'", what, r,
                r > 0 ? (int)r : 0, buf, want);
  r = read(fd, buf, sizeof(buf));
  SUBJECT_CHECK(r < 0 && errno == EAGAIN, "%s: more to read after the drain (read %zd, %s)", what, r,
                r < 0 ? strerror(errno) : "no error");
}

static void expect_count(int fd, uint64_t want, const char *what) {
  uint64_t v = 0;
  ssize_t r = read(fd, &v, sizeof(v));
  SUBJECT_CHECK(r == 8 && v == want, "%s: read %zd, value %llu, want %llu", what, r, (unsigned long long)v,
                (unsigned long long)want);
  r = read(fd, &v, sizeof(v));
  SUBJECT_CHECK(r < 0 && errno == EAGAIN, "%s: readable again after the drain (read %zd)", what, r);
}

/* One epoll_wait(0); the tags it reported (each must be EPOLLIN alone). */
static int ready_tags(uint64_t *tags, const char *when) {
  struct epoll_event evs[16];
  int n = epoll_wait(ep, evs, 16, 0);
  if (n < 0) {
    subject_fail("%s: epoll_wait: %s", when, strerror(errno));
    return 0;
  }
  for (int i = 0; i < n; i++) {
    tags[i] = evs[i].data.u64;
    SUBJECT_CHECK(evs[i].events == EPOLLIN, "%s: tag %llx reported with events %x, want EPOLLIN", when,
                  (unsigned long long)tags[i], evs[i].events);
  }
  return n;
}

static void expect_ready(const uint64_t *want, int nwant, const char *when) {
  uint64_t got[16];
  int n = ready_tags(got, when);
  for (int i = 0; i < nwant; i++) {
    int seen = 0;
    for (int j = 0; j < n; j++) seen += got[j] == want[i];
    SUBJECT_CHECK(seen == 1, "%s: tag %llx reported %d times, want once", when, (unsigned long long)want[i], seen);
  }
  for (int j = 0; j < n; j++) {
    int expected = 0;
    for (int i = 0; i < nwant; i++) expected |= got[j] == want[i];
    SUBJECT_CHECK(expected, "%s: tag %llx reported, not expected", when, (unsigned long long)got[j]);
  }
  SUBJECT_CHECK(n == nwant, "%s: %d targets ready, want %d", when, n, nwant);
}

static int setup(void) {
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0 || pipe2(pipe_fds, O_NONBLOCK) || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sock_fds)) return 0;
  if (write(pipe_fds[1], "12345", 5) != 5) return 0;
  if (send(sock_fds[1], sock_data, strlen(sock_data), 0) != (ssize_t)strlen(sock_data)) return 0;
  efd = eventfd(7, EFD_NONBLOCK);
  tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  struct itimerspec once = {.it_value = {0, 1000000}};
  if (efd < 0 || tfd < 0 || timerfd_settime(tfd, 0, &once, NULL)) return 0;
  struct pollfd p = {.fd = tfd, .events = POLLIN};
  if (poll(&p, 1, 2000) != 1) return 0; /* expired; the expiration stays unread */

  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  sigprocmask(SIG_BLOCK, &usr2, NULL);
  sfd = signalfd(-1, &usr2, SFD_NONBLOCK);
  union sigval v = {.sival_int = SIGNAL_VALUE};
  if (sfd < 0 || sigqueue(getpid(), SIGUSR2, v)) return 0;

  oneshot_fd = eventfd(0, EFD_NONBLOCK);
  if (oneshot_fd < 0 || pipe2(edge_fds, O_NONBLOCK)) return 0;
  int dup_fds[2];
  if (pipe2(dup_fds, O_NONBLOCK) || dup2(dup_fds[0], CLOSED_FD) != CLOSED_FD) return 0;
  close(dup_fds[0]);
  dup_w = dup_fds[1];
  if (write(dup_w, "dup", 3) != 3) return 0;

  if (watch(pipe_fds[0], EPOLLIN, TAG_PIPE) || watch(sock_fds[0], EPOLLIN, TAG_SOCK) ||
      watch(efd, EPOLLIN, TAG_EVENTFD) || watch(tfd, EPOLLIN, TAG_TIMERFD) || watch(sfd, EPOLLIN, TAG_SIGNALFD) ||
      watch(oneshot_fd, EPOLLIN | EPOLLONESHOT, TAG_ONESHOT) || watch(edge_fds[0], EPOLLIN | EPOLLET, TAG_EDGE) ||
      watch(CLOSED_FD, EPOLLIN, TAG_DUP)) {
    return 0;
  }
  if (dup2(CLOSED_FD, DUP_FD) != DUP_FD || close(CLOSED_FD)) return 0;

  /* The loop's last turn before the checkpoint: the oneshot fires (and is
   * disarmed), the edge of "x" is taken. Then "y" makes a new edge. */
  uint64_t one = 1;
  if (write(oneshot_fd, &one, 8) != 8 || write(edge_fds[1], "x", 1) != 1) return 0;
  const uint64_t all[] = {TAG_PIPE, TAG_SOCK, TAG_EVENTFD, TAG_TIMERFD, TAG_SIGNALFD, TAG_ONESHOT, TAG_EDGE, TAG_DUP};
  expect_ready(all, 8, "setup");
  const uint64_t level[] = {TAG_PIPE, TAG_SOCK, TAG_EVENTFD, TAG_TIMERFD, TAG_SIGNALFD, TAG_DUP};
  expect_ready(level, 6, "setup, again");
  if (write(edge_fds[1], "y", 1) != 1) return 0;
  return subject_failures == 0;
}

int main(void) {
  if (!setup()) {
    printf("FAIL: setup: %s\n", strerror(errno));
    return 2;
  }
  char before[16][96], after[16][96];
  int nbefore = watches(before, 16);
  if (nbefore != 8) {
    printf("FAIL: setup: the epoll's fdinfo shows %d watches, not 8\n", nbefore);
    return 2;
  }
  subject_ready();
  subject_wait();

  /* At once, before anything is read: what the loop would see. */
  const uint64_t ready[] = {TAG_PIPE, TAG_SOCK, TAG_EVENTFD, TAG_TIMERFD, TAG_SIGNALFD, TAG_EDGE, TAG_DUP};
  expect_ready(ready, 7, "after the restore");

  int nafter = watches(after, 16);
  SUBJECT_CHECK(nafter == nbefore, "fdinfo shows %d watches, not %d", nafter, nbefore);
  for (int i = 0; i < nbefore && i < nafter; i++) {
    SUBJECT_CHECK(strcmp(before[i], after[i]) == 0, "watch '%s' is now '%s'", before[i], after[i]);
  }
  SUBJECT_CHECK(fcntl(ep, F_GETFD) == FD_CLOEXEC, "the epoll lost EPOLL_CLOEXEC");

  expect_read(pipe_fds[0], "12345", 5, "pipe");
  expect_read(sock_fds[0], sock_data, strlen(sock_data), "socket");
  expect_count(efd, 7, "eventfd");
  expect_count(tfd, 1, "timerfd expirations");
  struct itimerspec left;
  SUBJECT_CHECK(timerfd_gettime(tfd, &left) == 0 && left.it_value.tv_sec == 0 && left.it_value.tv_nsec == 0 &&
                    left.it_interval.tv_sec == 0 && left.it_interval.tv_nsec == 0,
                "the expired one-shot timerfd is armed again");
  struct signalfd_siginfo si;
  memset(&si, 0, sizeof(si));
  ssize_t r = read(sfd, &si, sizeof(si));
  SUBJECT_CHECK(r == (ssize_t)sizeof(si) && si.ssi_signo == SIGUSR2 && si.ssi_code == SI_QUEUE &&
                    si.ssi_int == SIGNAL_VALUE && si.ssi_pid == (uint32_t)getpid() && si.ssi_uid == getuid(),
                "signalfd: read %zd: signo %u code %d int %x pid %u uid %u", r, si.ssi_signo, si.ssi_code,
                si.ssi_int, si.ssi_pid, si.ssi_uid);
  r = read(sfd, &si, sizeof(si));
  SUBJECT_CHECK(r < 0 && errno == EAGAIN, "signalfd: readable again after the drain (read %zd)", r);
  expect_read(edge_fds[0], "xy", 2, "edge-triggered pipe");
  expect_read(DUP_FD, "dup", 3, "the pipe watched under a closed number");

  expect_ready(NULL, 0, "after the drain");

  /* The oneshot: readable, not reported; it is in the epoll (MOD works)
   * and, re-armed, fires once. */
  struct pollfd p = {.fd = oneshot_fd, .events = POLLIN};
  SUBJECT_CHECK(poll(&p, 1, 0) == 1, "the oneshot eventfd is not readable");
  expect_count(oneshot_fd, 1, "oneshot eventfd");
  uint64_t one = 1;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.u64 = TAG_ONESHOT};
  SUBJECT_CHECK(write(oneshot_fd, &one, 8) == 8 && epoll_ctl(ep, EPOLL_CTL_MOD, oneshot_fd, &ev) == 0,
                "re-arming the oneshot: %s", strerror(errno));
  const uint64_t oneshot[] = {TAG_ONESHOT};
  expect_ready(oneshot, 1, "the oneshot re-armed");
  expect_ready(NULL, 0, "the oneshot after it fired");

  /* The closed number: gone from the fd table, so the kernel refuses it. */
  SUBJECT_CHECK(fcntl(CLOSED_FD, F_GETFD) < 0 && errno == EBADF, "fd %d is open after the restore", CLOSED_FD);
  SUBJECT_CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, CLOSED_FD, NULL) < 0 && errno == EBADF,
                "EPOLL_CTL_DEL of closed fd %d: %s, want EBADF", CLOSED_FD, strerror(errno));

  ev.events = EPOLLIN | EPOLLET;
  ev.data.u64 = TAG_PIPE;
  SUBJECT_CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, pipe_fds[0], &ev) == 0, "EPOLL_CTL_MOD of the pipe: %s",
                strerror(errno));
  SUBJECT_CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, sock_fds[0], NULL) == 0, "EPOLL_CTL_DEL of the socket: %s",
                strerror(errno));
  SUBJECT_CHECK(write(pipe_fds[1], "z", 1) == 1 && send(sock_fds[1], "s", 1, 0) == 1, "writes: %s",
                strerror(errno));
  const uint64_t pipe_only[] = {TAG_PIPE};
  expect_ready(pipe_only, 1, "a write to the pipe, now edge-triggered");
  expect_ready(NULL, 0, "the pipe's edge taken");
  return subject_verdict();
}
