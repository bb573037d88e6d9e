/*
 * Listening unix stream sockets with connections not yet accepted.
 *
 *  - L, bound to DIR/listen.sock, listen(8), with three connections in its
 *    queue, none accepted, each client having sent its data: client 1
 *    (bound to DIR/client1.sock) 100 bytes, client 2 (autobound: an
 *    abstract name the kernel chose) 3000 bytes, client 3 (unbound)
 *    50 KiB. Clients 1 and 3 belong to the forked child, client 2 to the
 *    parent, which holds L.
 *  - AL, bound to the abstract name "\0libckpt-test-<pid>-<dir's name>", with one
 *    connection accepted (data queued both ways, unread) and one pending
 *    (its client sent data); both clients belong to the child.
 *
 * After SIGUSR1 (passed on to the child): L and AL have their names; three
 * accept()s on L give the connections in the order they were made, each
 * with its client's address (accept's and getpeername's, byte for byte as
 * the client's getsockname said before the dump), L's own address as
 * getsockname, and exactly its client's bytes; the parent replies on each,
 * every client reads its reply and answers. A new client then connects by
 * path, and another by the abstract name, and both exchange data. L still
 * has its backlog: as many non-blocking connects succeed before EAGAIN as
 * a fresh listen(8) took before the dump. The accepted and the pending
 * connection of AL have AL's name, their queued bytes, and still work.
 * argv[1], if given, is a short directory for the sockets (else one is
 * made under /tmp); the socket files are removed at the end, and the
 * directory too when this program made it. With argv[2] "late", the
 * connections not yet accepted carry no data at the dump: their clients
 * send it after SIGUSR1 (the kernel shows a pending connection's data only
 * to whoever accepts it, so a dump that leaves the tree running cannot
 * take it; the pending connections themselves it can).
 */
#define _GNU_SOURCE
#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "subject.h"

static const size_t sizes[4] = {0, 100, 3000, 50 * 1024};
static const char *who = "parent";
static int late;

static unsigned char data_byte(int k, size_t j) { return (unsigned char)(j * 13 + k * 71 + (j >> 9)); }

/* Client k's data: "client-k:" then the pattern. */
static unsigned char data[4][50 * 1024];

static void fill(unsigned char *buf, int k) {
  for (size_t j = 0; j < sizes[k]; j++) buf[j] = data_byte(k, j);
  memcpy(buf, "client-", 7);
  buf[7] = (unsigned char)('0' + k);
  buf[8] = ':';
}

static int send_all(int fd, const void *buf, size_t len) {
  size_t at = 0;
  while (at < len) {
    ssize_t w = send(fd, (const char *)buf + at, len - at, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return 0;
    at += (size_t)w;
  }
  return 1;
}

/* Reads len bytes; with `queued`, bytes that must all be there already
 * (sent before the dump): a missing one fails rather than waits forever. */
static int read_all(int fd, void *buf, size_t len, int queued) {
  size_t at = 0;
  while (at < len) {
    ssize_t r = recv(fd, (char *)buf + at, len - at, queued ? MSG_DONTWAIT : 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return 0;
    at += (size_t)r;
  }
  return 1;
}

static void expect_bytes(int fd, const char *want, const char *what, int queued) {
  char buf[256] = {0};
  size_t n = strlen(want);
  int ok = read_all(fd, buf, n, queued);
  SUBJECT_CHECK(ok && memcmp(buf, want, n) == 0, "%s: %s: got '%s', want '%s'%s", who, what, buf, want,
                ok ? "" : queued ? " queued" : " (end of stream)");
}

/* Bytes sent after the restore: wait for them. */
static void expect_text(int fd, const char *want, const char *what) { expect_bytes(fd, want, what, 0); }
/* Bytes sent before the dump, or just now by this process: they are there. */
static void expect_queued(int fd, const char *want, const char *what) { expect_bytes(fd, want, what, 1); }

static void nothing_more(int fd, const char *what) {
  char c;
  ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
  SUBJECT_CHECK(r < 0 && errno == EAGAIN, "%s: %s: more bytes queued than were sent (recv %zd)", who,
                what, r);
}

struct addr {
  socklen_t len;
  struct sockaddr_un sa;
};

static struct addr path_addr(const char *path) {
  struct addr a;
  memset(&a, 0, sizeof(a));
  a.sa.sun_family = AF_UNIX;
  snprintf(a.sa.sun_path, sizeof(a.sa.sun_path), "%s", path);
  a.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
  return a;
}

static struct addr abstract_addr(const char *name) {
  struct addr a;
  memset(&a, 0, sizeof(a));
  a.sa.sun_family = AF_UNIX;
  memcpy(a.sa.sun_path + 1, name, strlen(name));
  a.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name));
  return a;
}

static struct addr sock_name(int fd, int peer) {
  struct addr a;
  memset(&a, 0, sizeof(a));
  a.len = sizeof(a.sa);
  int r = peer ? getpeername(fd, (struct sockaddr *)&a.sa, &a.len)
               : getsockname(fd, (struct sockaddr *)&a.sa, &a.len);
  if (r != 0) a.len = 0;
  return a;
}

static int same(const struct addr *a, const struct addr *b) {
  return a->len == b->len && memcmp(&a->sa, &b->sa, a->len) == 0;
}

/* The address as text: a path, "@name" for an abstract one, "unnamed". */
static const char *show(const struct addr *a) {
  static char text[4][256];
  static int next;
  char *t = text[next++ % 4];
  size_t n = a->len > offsetof(struct sockaddr_un, sun_path) ? a->len - offsetof(struct sockaddr_un, sun_path) : 0;
  if (n == 0) {
    snprintf(t, 256, "unnamed (length %u)", a->len);
  } else if (a->sa.sun_path[0] == 0) {
    snprintf(t, 256, "@%.*s (length %u)", (int)n - 1, a->sa.sun_path + 1, a->len);
  } else {
    snprintf(t, 256, "%.*s (length %u)", (int)n, a->sa.sun_path, a->len);
  }
  return t;
}

static void expect_addr(const struct addr *got, const struct addr *want, const char *what) {
  SUBJECT_CHECK(same(got, want), "%s: %s is %s, want %s", who, what, show(got), show(want));
}

static void expect_name(int fd, int peer, const struct addr *want, const char *what) {
  struct addr got = sock_name(fd, peer);
  expect_addr(&got, want, what);
}

static int connect_to(const struct addr *a, int flags) {
  int fd = socket(AF_UNIX, SOCK_STREAM | flags, 0);
  if (fd < 0) return -1;
  if (connect(fd, (const struct sockaddr *)&a->sa, a->len) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

/* How many non-blocking connects the listener at `a` queues before EAGAIN. */
static int backlog_room(const struct addr *a) {
  int fds[128], n = 0;
  while (n < 128) {
    int fd = connect_to(a, SOCK_NONBLOCK);
    if (fd < 0) break;
    fds[n++] = fd;
  }
  int e = errno;
  for (int i = 0; i < n; i++) close(fds[i]);
  if (n < 128 && e != EAGAIN) return -e;
  return n;
}

/* The child: clients 1 and 3 of L, and both clients of AL. */
static int child_main(int c1, int c3, int a1, int a2, const struct addr *lname, const struct addr *c1name) {
  who = "child";
  subject_wait();
  if (late) {
    SUBJECT_CHECK(send_all(c1, data[1], sizes[1]) && send_all(c3, data[3], sizes[3]) &&
                      send_all(a2, "abstract client 2, pending", 26),
                  "child: the clients' data: %s", strerror(errno));
  }
  expect_name(c1, 0, c1name, "client 1's getsockname");
  expect_name(c1, 1, lname, "client 1's getpeername");
  struct addr c3name = sock_name(c3, 0);
  SUBJECT_CHECK(c3name.len == sizeof(sa_family_t), "child: client 3 is bound now: %s", show(&c3name));
  expect_name(c3, 1, lname, "client 3's getpeername");
  expect_text(c1, "reply to client 1", "client 1's reply");
  expect_text(c3, "reply to client 3", "client 3's reply");
  SUBJECT_CHECK(send_all(c1, "ack 1", 5) && send_all(c3, "ack 3", 5), "child: acks: %s", strerror(errno));
  expect_queued(a1, "abstract server, before the dump", "the accepted connection's queued bytes");
  expect_text(a1, "abstract server, after the restore", "the accepted connection after the restore");
  expect_text(a2, "abstract server to the pending one", "the pending connection's reply");
  SUBJECT_CHECK(send_all(a1, "a1 done", 7), "child: a1: %s", strerror(errno));
  fflush(stdout);
  return subject_failures ? 1 : 0;
}

int main(int argc, char **argv) {
  char dir[80];
  int own_dir = argc < 2;
  late = argc > 2 && strcmp(argv[2], "late") == 0;
  if (own_dir) {
    snprintf(dir, sizeof(dir), "/tmp/libckpt-unix-XXXXXX");
    if (mkdtemp(dir) == NULL) return 2;
  } else if (strlen(argv[1]) < sizeof(dir)) {
    snprintf(dir, sizeof(dir), "%s", argv[1]);
  } else {
    printf("FAIL: setup: %s is too long for a socket path\n", argv[1]);
    return 2;
  }
  char lpath[128], c1path[128], abs_name[64], probe_name[64];
  snprintf(lpath, sizeof(lpath), "%s/listen.sock", dir);
  snprintf(c1path, sizeof(c1path), "%s/client1.sock", dir);
  /* Abstract names are per network namespace, which tests running at the
   * same time in pid namespaces of their own share: the directory's own
   * (unique) name goes into them too. */
  const char *tag = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
  snprintf(abs_name, sizeof(abs_name), "libckpt-test-%d-%.30s", getpid(), tag);
  snprintf(probe_name, sizeof(probe_name), "libckpt-probe-%d-%.30s", getpid(), tag);
  struct addr lwant = path_addr(lpath), c1want = path_addr(c1path);
  struct addr awant = abstract_addr(abs_name), pwant = abstract_addr(probe_name);
  unlink(lpath);
  unlink(c1path);

  /* What listen(8) queues on this kernel, seen on a fresh listener. */
  int probe = socket(AF_UNIX, SOCK_STREAM, 0);
  if (probe < 0 || bind(probe, (struct sockaddr *)&pwant.sa, pwant.len) || listen(probe, 8)) return 2;
  int room = backlog_room(&pwant);
  close(probe);
  if (room <= 3) {
    printf("FAIL: setup: listen(8) queues %d\n", room);
    return 2;
  }

  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  if (l < 0 || bind(l, (struct sockaddr *)&lwant.sa, lwant.len) || listen(l, 8)) return 2;
  struct addr lname = sock_name(l, 0);
  if (!same(&lname, &lwant)) {
    printf("FAIL: setup: L is %s\n", show(&lname));
    return 2;
  }
  int c[4];
  struct addr cname[4];
  for (int k = 1; k <= 3; k++) {
    c[k] = socket(AF_UNIX, SOCK_STREAM, 0);
    if (c[k] < 0) return 2;
    if (k == 1 && bind(c[k], (struct sockaddr *)&c1want.sa, c1want.len)) return 2;
    if (k == 2) {
      struct sockaddr_un autob = {.sun_family = AF_UNIX};
      if (bind(c[k], (struct sockaddr *)&autob, sizeof(sa_family_t))) return 2;
    }
    if (connect(c[k], (struct sockaddr *)&lname.sa, lname.len)) return 2;
    fill(data[k], k);
    if (!late && !send_all(c[k], data[k], sizes[k])) return 2;
    cname[k] = sock_name(c[k], 0);
  }
  if (!same(&cname[1], &c1want) || cname[2].len <= sizeof(sa_family_t) + 1 || cname[2].sa.sun_path[0] != 0 ||
      cname[3].len != sizeof(sa_family_t)) {
    printf("FAIL: setup: client names %s, %s, %s\n", show(&cname[1]), show(&cname[2]), show(&cname[3]));
    return 2;
  }

  int al = socket(AF_UNIX, SOCK_STREAM, 0);
  if (al < 0 || bind(al, (struct sockaddr *)&awant.sa, awant.len) || listen(al, 4)) return 2;
  int a1 = connect_to(&awant, 0);
  if (a1 < 0) return 2;
  int acc1 = accept(al, NULL, NULL);
  if (acc1 < 0) return 2;
  int a2 = connect_to(&awant, 0);
  if (a2 < 0) return 2;
  if (!send_all(a1, "abstract client 1, before the dump", 34) ||
      !send_all(acc1, "abstract server, before the dump", 32) ||
      (!late && !send_all(a2, "abstract client 2, pending", 26))) {
    return 2;
  }

  int sync[2];
  if (pipe(sync)) return 2;
  subject_install();
  fflush(stdout);
  pid_t child = fork();
  if (child < 0) return 2;
  if (child == 0) {
    close(sync[0]);
    close(l);
    close(c[2]);
    close(al);
    close(acc1);
    if (write(sync[1], "c", 1) != 1) _exit(2);
    close(sync[1]);
    _exit(child_main(c[1], c[3], a1, a2, &lname, &cname[1]));
  }
  close(sync[1]);
  close(c[1]);
  close(c[3]);
  close(a1);
  close(a2);
  char sc;
  if (read(sync[0], &sc, 1) != 1) return 2; /* the child holds only its clients now */
  close(sync[0]);
  printf("CHILDREN %d\n", child);
  subject_ready();
  subject_wait();
  kill(child, SIGUSR1);

  expect_name(l, 0, &lname, "L's getsockname");
  expect_name(c[2], 0, &cname[2], "client 2's autobound name");
  expect_name(c[2], 1, &lname, "client 2's getpeername");
  if (late) SUBJECT_CHECK(send_all(c[2], data[2], sizes[2]), "client 2's data: %s", strerror(errno));
  int acc[4];
  for (int k = 1; k <= 3; k++) {
    struct addr from;
    memset(&from, 0, sizeof(from));
    from.len = sizeof(from.sa);
    struct pollfd lp = {.fd = l, .events = POLLIN};
    errno = 0;
    acc[k] = poll(&lp, 1, 0) == 1 ? accept(l, (struct sockaddr *)&from.sa, &from.len) : -1;
    if (acc[k] < 0) {
      subject_fail("accept %d: %s", k, errno ? strerror(errno) : "no connection left in L's queue");
      kill(child, SIGKILL); /* it would wait for its replies forever */
      waitpid(child, NULL, 0);
      unlink(lpath);
      unlink(c1path);
      if (own_dir) rmdir(dir);
      return subject_verdict();
    }
    char what[64];
    snprintf(what, sizeof(what), "accept %d's peer address", k);
    expect_addr(&from, &cname[k], what);
    snprintf(what, sizeof(what), "accepted %d's getpeername", k);
    expect_name(acc[k], 1, &cname[k], what);
    snprintf(what, sizeof(what), "accepted %d's getsockname", k);
    expect_name(acc[k], 0, &lname, what);
    static unsigned char got[50 * 1024];
    memset(got, 0, sizeof(got));
    if (!read_all(acc[k], got, sizes[k], !late)) {
      subject_fail("accepted %d: fewer than %zu bytes%s", k, sizes[k], late ? "" : " queued");
      continue;
    }
    for (size_t j = 0; j < sizes[k]; j++) {
      if (got[j] != data[k][j]) {
        subject_fail("accepted %d ('%.9s'): byte %zu is %u, want %u", k, got, j, got[j], data[k][j]);
        break;
      }
    }
    snprintf(what, sizeof(what), "accepted %d", k);
    nothing_more(acc[k], what);
    char reply[32];
    int n = snprintf(reply, sizeof(reply), "reply to client %d", k);
    SUBJECT_CHECK(send_all(acc[k], reply, (size_t)n), "reply %d: %s", k, strerror(errno));
  }
  expect_queued(c[2], "reply to client 2", "client 2's reply");
  SUBJECT_CHECK(send_all(c[2], "ack 2", 5), "ack 2: %s", strerror(errno));
  expect_text(acc[1], "ack 1", "client 1's ack");
  expect_queued(acc[2], "ack 2", "client 2's ack");
  expect_text(acc[3], "ack 3", "client 3's ack");
  struct pollfd lp = {.fd = l, .events = POLLIN};
  SUBJECT_CHECK(poll(&lp, 1, 0) == 0, "L has more connections queued than the three");

  /* A new client by path. */
  int nc = connect_to(&lwant, 0);
  SUBJECT_CHECK(nc >= 0, "a new client cannot connect to %s: %s", lpath, strerror(errno));
  if (nc >= 0) {
    int nacc = accept(l, NULL, NULL);
    SUBJECT_CHECK(nacc >= 0, "accept of the new client: %s", strerror(errno));
    if (nacc >= 0) {
      SUBJECT_CHECK(send_all(nc, "new client", 10) && send_all(nacc, "new server", 10), "new pair: %s",
                    strerror(errno));
      expect_queued(nacc, "new client", "the new client's bytes");
      expect_queued(nc, "new server", "the reply to the new client");
      close(nacc);
    }
    close(nc);
  }
  int room_now = backlog_room(&lwant);
  SUBJECT_CHECK(room_now == room, "L queues %d connections, listen(8) queued %d", room_now, room);

  /* The abstract listener, its accepted and its pending connection. */
  expect_name(al, 0, &awant, "AL's getsockname");
  expect_name(acc1, 0, &awant, "the accepted abstract connection's getsockname");
  expect_queued(acc1, "abstract client 1, before the dump", "the accepted abstract connection's bytes");
  nothing_more(acc1, "the accepted abstract connection");
  SUBJECT_CHECK(send_all(acc1, "abstract server, after the restore", 34), "acc1: %s", strerror(errno));
  struct pollfd ap = {.fd = al, .events = POLLIN};
  errno = 0;
  int acc2 = poll(&ap, 1, 0) == 1 ? accept(al, NULL, NULL) : -1;
  SUBJECT_CHECK(acc2 >= 0, "accept on AL: %s", errno ? strerror(errno) : "no pending connection");
  if (acc2 >= 0) {
    expect_name(acc2, 0, &awant, "the pending abstract connection's getsockname");
    expect_bytes(acc2, "abstract client 2, pending", "the pending abstract connection's bytes", !late);
    nothing_more(acc2, "the pending abstract connection");
    SUBJECT_CHECK(send_all(acc2, "abstract server to the pending one", 34), "acc2: %s", strerror(errno));
  }
  expect_text(acc1, "a1 done", "the accepted abstract connection's last bytes");
  int nac = connect_to(&awant, 0);
  SUBJECT_CHECK(nac >= 0, "a new client cannot connect to @%s: %s", abs_name, strerror(errno));
  if (nac >= 0) {
    int nacc = accept(al, NULL, NULL);
    SUBJECT_CHECK(nacc >= 0 && send_all(nac, "hi", 2), "the new abstract client: %s", strerror(errno));
    if (nacc >= 0) expect_queued(nacc, "hi", "the new abstract client's bytes");
  }

  int status = 0;
  SUBJECT_CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "the child did not pass (status 0x%x)", status);
  unlink(lpath);
  unlink(c1path);
  if (own_dir) rmdir(dir);
  return subject_verdict();
}
