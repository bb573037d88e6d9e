/*
 * An unconnected datagram server with messages queued from four senders,
 * each with another kind of address:
 *   A  bound to DIR/sender-a.sock                    (the child's)
 *   B  bound to the abstract name "\0libckpt-dgram-b-<pid>-<dir's name>" (the child's)
 *   C  never bound: no address at all                (the parent's)
 *   D  autobound (bind with only sun_family): an abstract name the kernel
 *      chose                                          (the parent's)
 * The server S (the parent's) is bound to DIR/server.sock; before the dump
 * it holds A1 B1 C1 D1 A2 B2 C2 D2, unread, each of its own length.
 *
 * After SIGUSR1 (passed on to the child): S and every sender have the
 * names getsockname gave before the dump (C is still unbound), and eight
 * recvfrom()s give the eight messages in order, each with its sender's
 * address byte for byte and of the same length (for C, which has none, the
 * kernel reports an address length of 0), and nothing more. Then every
 * sender sends again and S receives each with the right address.
 * argv[1], if given, is a short directory for the sockets (else one is made
 * under /tmp); the socket files are removed at the end, and the directory
 * too when this program made it.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "subject.h"

#define NSENDERS 4

struct addr {
  socklen_t len;
  struct sockaddr_un sa;
};

static const char *who = "parent";

static struct addr sock_name(int fd) {
  struct addr a;
  memset(&a, 0, sizeof(a));
  a.len = sizeof(a.sa);
  if (getsockname(fd, (struct sockaddr *)&a.sa, &a.len) != 0) a.len = 0;
  return a;
}

static int same(const struct addr *a, const struct addr *b) {
  return a->len == b->len && memcmp(&a->sa, &b->sa, a->len) == 0;
}

static const char *show(const struct addr *a) {
  static char text[4][256];
  static int next;
  char *t = text[next++ % 4];
  size_t base = offsetof(struct sockaddr_un, sun_path);
  size_t n = a->len > base ? a->len - base : 0;
  if (n == 0) {
    snprintf(t, 256, "no name (length %u)", a->len);
  } else if (a->sa.sun_path[0] == 0) {
    snprintf(t, 256, "@%.*s (length %u)", (int)n - 1, a->sa.sun_path + 1, a->len);
  } else {
    snprintf(t, 256, "%.*s (length %u)", (int)n, a->sa.sun_path, a->len);
  }
  return t;
}

/* Message `seq` of sender k: "<letter><seq>:" then bytes, 20 + 9k + 4seq long. */
static size_t msg_len(int k, int seq) { return (size_t)(20 + 9 * k + 4 * seq); }
static void fill(char *buf, int k, int seq) {
  size_t n = msg_len(k, seq);
  for (size_t j = 0; j < n; j++) buf[j] = (char)('a' + (j * 7 + (size_t)k * 3 + (size_t)seq) % 26);
  buf[0] = (char)('A' + k);
  buf[1] = (char)('0' + seq);
  buf[2] = ':';
}

static int send_msg(int fd, const struct addr *to, int k, int seq) {
  char buf[128];
  fill(buf, k, seq);
  ssize_t n = sendto(fd, buf, msg_len(k, seq), MSG_DONTWAIT, (const struct sockaddr *)&to->sa, to->len);
  if (n != (ssize_t)msg_len(k, seq)) {
    subject_fail("%s: sender %c message %d: %s", who, 'A' + k, seq, n < 0 ? strerror(errno) : "short");
    return 0;
  }
  return 1;
}

/* Receives one datagram on s: which sender and message it is (-1 if none
 * of them), after checking its bytes and that it came from `from[k]`.
 * With `queued` it was sent before the dump and must be there already. */
static int recv_msg(int s, const struct addr *from, int *seq_out, int queued) {
  char buf[256], want[128];
  struct addr got;
  memset(&got, 0, sizeof(got));
  got.len = sizeof(got.sa);
  ssize_t n;
  do {
    n = recvfrom(s, buf, sizeof(buf), queued ? MSG_DONTWAIT : 0, (struct sockaddr *)&got.sa, &got.len);
  } while (n < 0 && errno == EINTR);
  if (n < 3) {
    subject_fail("recvfrom: %zd (%s)", n, n < 0 ? strerror(errno) : "too short");
    return -1;
  }
  int k = buf[0] - 'A', seq = buf[1] - '0';
  if (k < 0 || k >= NSENDERS || seq < 1 || seq > 9) {
    subject_fail("a datagram of nobody's: '%.*s'", (int)n, buf);
    return -1;
  }
  fill(want, k, seq);
  SUBJECT_CHECK(n == (ssize_t)msg_len(k, seq) && memcmp(buf, want, (size_t)n) == 0,
                "message %c%d: %zd bytes, want %zu, or other bytes", 'A' + k, seq, n, msg_len(k, seq));
  SUBJECT_CHECK(same(&got, &from[k]), "message %c%d came from %s, want %s", 'A' + k, seq, show(&got),
                show(&from[k]));
  *seq_out = seq;
  return k;
}

static void expect_name(int fd, const struct addr *want, const char *what) {
  struct addr now = sock_name(fd);
  SUBJECT_CHECK(same(&now, want), "%s: %s's getsockname is %s, was %s before the dump", who, what, show(&now),
                show(want));
}

int main(int argc, char **argv) {
  char dir[80];
  int own_dir = argc < 2;
  if (own_dir) {
    snprintf(dir, sizeof(dir), "/tmp/libckpt-dgram-XXXXXX");
    if (mkdtemp(dir) == NULL) return 2;
  } else if (strlen(argv[1]) < sizeof(dir)) {
    snprintf(dir, sizeof(dir), "%s", argv[1]);
  } else {
    printf("FAIL: setup: %s is too long for a socket path\n", argv[1]);
    return 2;
  }
  char spath[128], apath[128];
  snprintf(spath, sizeof(spath), "%s/server.sock", dir);
  snprintf(apath, sizeof(apath), "%s/sender-a.sock", dir);
  unlink(spath);
  unlink(apath);

  struct addr want[NSENDERS + 1];
  memset(want, 0, sizeof(want));
  int fd[NSENDERS];
  for (int k = 0; k < NSENDERS; k++) {
    fd[k] = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (fd[k] < 0) return 2;
  }
  int s = socket(AF_UNIX, SOCK_DGRAM, 0);
  struct addr *server = &want[NSENDERS];
  server->sa.sun_family = AF_UNIX;
  strcpy(server->sa.sun_path, spath);
  server->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(spath) + 1);
  if (s < 0 || bind(s, (struct sockaddr *)&server->sa, server->len)) return 2;

  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  strcpy(sa.sun_path, apath);
  if (bind(fd[0], (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(apath) + 1)))
    return 2;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  /* Abstract names are shared by tests in pid namespaces of their own:
   * the directory's unique name goes in too. */
  const char *tag = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
  int blen = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "libckpt-dgram-b-%d-%.30s", getpid(), tag);
  if (bind(fd[1], (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)blen)))
    return 2;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  if (bind(fd[3], (struct sockaddr *)&sa, sizeof(sa_family_t))) return 2; /* autobind */

  /* What each sender is called; C has no name, and a datagram from it
   * carries none: recvfrom says length 0. */
  struct addr before[NSENDERS + 1];
  for (int k = 0; k < NSENDERS; k++) before[k] = want[k] = sock_name(fd[k]);
  before[NSENDERS] = sock_name(s);
  want[2].len = 0;
  if (before[0].len <= sizeof(sa_family_t) || before[0].sa.sun_path[0] == 0 || before[1].sa.sun_path[0] != 0 ||
      before[2].len != sizeof(sa_family_t) || before[3].len <= sizeof(sa_family_t) + 1 ||
      before[3].sa.sun_path[0] != 0 || !same(&before[NSENDERS], server)) {
    printf("FAIL: setup: names %s %s %s %s %s\n", show(&before[0]), show(&before[1]), show(&before[2]),
           show(&before[3]), show(&before[4]));
    return 2;
  }
  for (int seq = 1; seq <= 2; seq++) {
    for (int k = 0; k < NSENDERS; k++) {
      if (!send_msg(fd[k], server, k, seq)) return 2;
    }
  }

  subject_install();
  fflush(stdout);
  pid_t child = fork();
  if (child < 0) return 2;
  if (child == 0) {
    who = "child";
    close(s);
    close(fd[2]);
    close(fd[3]);
    subject_wait();
    expect_name(fd[0], &before[0], "A");
    expect_name(fd[1], &before[1], "B");
    send_msg(fd[0], server, 0, 3);
    send_msg(fd[1], server, 1, 3);
    fflush(stdout);
    _exit(subject_failures ? 1 : 0);
  }
  close(fd[0]);
  close(fd[1]);
  printf("CHILDREN %d\n", child);
  subject_ready();
  subject_wait();
  kill(child, SIGUSR1);

  expect_name(s, &before[NSENDERS], "the server");
  expect_name(fd[2], &before[2], "C");
  expect_name(fd[3], &before[3], "D");
  /* The eight queued, in order. (The child's two new ones may come after.) */
  for (int seq = 1; seq <= 2; seq++) {
    for (int k = 0; k < NSENDERS; k++) {
      int got_seq = 0;
      int got = recv_msg(s, want, &got_seq, 1); /* sent before the dump: there */
      SUBJECT_CHECK(got == k && got_seq == seq, "datagram %d is %c%d, want %c%d", (seq - 1) * NSENDERS + k + 1,
                    got < 0 ? '?' : 'A' + got, got_seq, 'A' + k, seq);
    }
  }
  SUBJECT_CHECK(send_msg(fd[2], server, 2, 3) && send_msg(fd[3], server, 3, 3), "C and D cannot send");
  int seen[NSENDERS] = {0};
  for (int i = 0; i < NSENDERS; i++) {
    int got_seq = 0;
    int got = recv_msg(s, want, &got_seq, 0);
    if (got >= 0) {
      SUBJECT_CHECK(got_seq == 3 && !seen[got], "after the restore: %c%d again or out of turn", 'A' + got, got_seq);
      seen[got] = 1;
    }
  }
  char extra;
  ssize_t r = recv(s, &extra, 1, MSG_DONTWAIT);
  SUBJECT_CHECK(r < 0 && errno == EAGAIN, "the server holds more than was sent (recv %zd)", r);
  int status = 0;
  SUBJECT_CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "the child did not pass (status 0x%x)", status);
  unlink(spath);
  unlink(apath);
  if (own_dir) rmdir(dir);
  return subject_verdict();
}
