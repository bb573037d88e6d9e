/*
 * Socket paths that are not as bind() left them.
 *
 *  - U, a datagram socket bound to DIR/gone.sock, whose path was then
 *    unlinked; V, a datagram socket connect()ed to U before the unlink,
 *    with "before-dump" sent and queued on U.
 *  - L, a stream listener on DIR/perm.sock, the file chmod'ed to 0600 and
 *    chown'ed to 1234:1234.
 *
 * After SIGUSR1: DIR/gone.sock does not exist (stat fails with ENOENT, and
 * a datagram sent to the path finds nobody), U's getsockname and V's
 * getpeername still give the path as before the dump; U reads
 * "before-dump", from V (unbound: an address of length 0), and V, still
 * connected, delivers a new datagram to U. DIR/perm.sock is a socket with
 * mode 0600 and owner 1234:1234, and a client connecting by its path
 * reaches L and exchanges data.
 * argv[1] is a short directory for the sockets (else one is made under
 * /tmp); the socket files are removed at the end, and the directory too
 * when this program made it. Without argv[2] "owner", a user namespace
 * that maps no uid 1234 (Bazel's sandbox: chown fails with EINVAL) keeps
 * the owner the file has.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "subject.h"

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

static int read_all(int fd, void *buf, size_t n) {
  size_t at = 0;
  while (at < n) {
    ssize_t r = recv(fd, (char *)buf + at, n - at, MSG_DONTWAIT); /* all sent already */
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return 0;
    at += (size_t)r;
  }
  return 1;
}

/* The next datagram on u must be `want`, from an unbound sender. */
static void expect_dgram(int u, const char *want) {
  char buf[64] = {0};
  struct addr from;
  memset(&from, 0, sizeof(from));
  from.len = sizeof(from.sa);
  ssize_t n;
  do {
    n = recvfrom(u, buf, sizeof(buf) - 1, MSG_DONTWAIT, (struct sockaddr *)&from.sa, &from.len);
  } while (n < 0 && errno == EINTR);
  SUBJECT_CHECK(n == (ssize_t)strlen(want) && memcmp(buf, want, strlen(want)) == 0,
                "U received %zd bytes '%s', want '%s' %s", n, buf, want, n < 0 ? strerror(errno) : "");
  SUBJECT_CHECK(from.len == 0, "'%s' came from an address of length %u, want none (V is unbound)", want,
                from.len);
}

int main(int argc, char **argv) {
  char dir[80];
  int own_dir = argc < 2;
  if (own_dir) {
    snprintf(dir, sizeof(dir), "/tmp/libckpt-deleted-XXXXXX");
    if (mkdtemp(dir) == NULL) return 2;
  } else if (strlen(argv[1]) < sizeof(dir)) {
    snprintf(dir, sizeof(dir), "%s", argv[1]);
  } else {
    printf("FAIL: setup: %s is too long for a socket path\n", argv[1]);
    return 2;
  }
  int want_owner = argc > 2 && strcmp(argv[2], "owner") == 0;
  char gone[128], perm[128];
  snprintf(gone, sizeof(gone), "%s/gone.sock", dir);
  snprintf(perm, sizeof(perm), "%s/perm.sock", dir);
  unlink(gone);
  unlink(perm);
  struct addr gone_addr = path_addr(gone), perm_addr = path_addr(perm);

  int u = socket(AF_UNIX, SOCK_DGRAM, 0), v = socket(AF_UNIX, SOCK_DGRAM, 0);
  if (u < 0 || v < 0 || bind(u, (struct sockaddr *)&gone_addr.sa, gone_addr.len) ||
      connect(v, (struct sockaddr *)&gone_addr.sa, gone_addr.len) || send(v, "before-dump", 11, 0) != 11 ||
      unlink(gone)) {
    printf("FAIL: setup: %s: %s\n", gone, strerror(errno));
    return 2;
  }
  struct addr u_name = sock_name(u, 0), v_peer = sock_name(v, 1);
  if (!same(&u_name, &gone_addr) || !same(&v_peer, &gone_addr)) {
    printf("FAIL: setup: U's name or V's peer is not %s\n", gone);
    return 2;
  }

  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  if (l < 0 || bind(l, (struct sockaddr *)&perm_addr.sa, perm_addr.len) || listen(l, 4) || chmod(perm, 0600)) {
    printf("FAIL: setup: %s: %s\n", perm, strerror(errno));
    return 2;
  }
  uid_t uid = 1234;
  gid_t gid = 1234;
  if (chown(perm, uid, gid) != 0) {
    if (errno != EINVAL || want_owner) {
      printf("FAIL: setup: chown %s: %s\n", perm, strerror(errno));
      return 2;
    }
    uid = getuid();
    gid = getgid();
  }
  struct stat before;
  if (stat(perm, &before) != 0 || !S_ISSOCK(before.st_mode) || (before.st_mode & 07777) != 0600 ||
      before.st_uid != uid || before.st_gid != gid) {
    printf("FAIL: setup: %s is not as made\n", perm);
    return 2;
  }
  subject_ready();
  subject_wait();

  /* The unlinked path stays unlinked; the sockets keep their names. */
  struct stat st;
  errno = 0;
  SUBJECT_CHECK(stat(gone, &st) != 0 && errno == ENOENT, "%s exists again (stat: %s)", gone, strerror(errno));
  int probe = socket(AF_UNIX, SOCK_DGRAM, 0);
  errno = 0;
  SUBJECT_CHECK(sendto(probe, "x", 1, MSG_DONTWAIT, (struct sockaddr *)&gone_addr.sa, gone_addr.len) < 0 &&
                    errno == ENOENT,
                "a datagram to the unlinked %s: %s, want ENOENT", gone, errno ? strerror(errno) : "delivered");
  close(probe);
  struct addr now = sock_name(u, 0);
  SUBJECT_CHECK(same(&now, &u_name), "U's getsockname (length %u) is not %s", now.len, gone);
  now = sock_name(v, 1);
  SUBJECT_CHECK(same(&now, &v_peer), "V's getpeername (length %u) is not %s", now.len, gone);
  now = sock_name(v, 0);
  SUBJECT_CHECK(now.len == sizeof(sa_family_t), "V has a name now (length %u)", now.len);
  expect_dgram(u, "before-dump");
  SUBJECT_CHECK(send(v, "after-restore", 13, 0) == 13, "V cannot send to U: %s", strerror(errno));
  expect_dgram(u, "after-restore");
  char extra;
  ssize_t r = recv(u, &extra, 1, MSG_DONTWAIT);
  SUBJECT_CHECK(r < 0 && errno == EAGAIN, "U holds more than was sent (recv %zd)", r);

  /* The listener's file: its mode and owner, and it still leads to L. */
  SUBJECT_CHECK(stat(perm, &st) == 0, "stat %s: %s", perm, strerror(errno));
  SUBJECT_CHECK(S_ISSOCK(st.st_mode), "%s is not a socket (mode %o)", perm, st.st_mode);
  SUBJECT_CHECK((st.st_mode & 07777) == 0600, "%s has mode %o, want 600", perm, st.st_mode & 07777);
  SUBJECT_CHECK(st.st_uid == uid && st.st_gid == gid, "%s is owned by %d:%d, want %d:%d", perm, st.st_uid,
                st.st_gid, uid, gid);
  now = sock_name(l, 0);
  SUBJECT_CHECK(same(&now, &perm_addr), "L's getsockname (length %u) is not %s", now.len, perm);
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  int connected = connect(c, (struct sockaddr *)&perm_addr.sa, perm_addr.len) == 0;
  SUBJECT_CHECK(connected, "connect to %s: %s", perm, strerror(errno));
  int a = connected ? accept(l, NULL, NULL) : -1; /* connected just now: it is queued */
  SUBJECT_CHECK(!connected || a >= 0, "accept on L: %s", strerror(errno));
  if (a >= 0) {
    char buf[16] = {0};
    SUBJECT_CHECK(send(c, "knock", 5, MSG_NOSIGNAL) == 5 && read_all(a, buf, 5) && memcmp(buf, "knock", 5) == 0,
                  "client to L: '%s'", buf);
    SUBJECT_CHECK(send(a, "enter", 5, MSG_NOSIGNAL) == 5 && read_all(c, buf, 5) && memcmp(buf, "enter", 5) == 0,
                  "L to client: '%s'", buf);
  }
  unlink(perm);
  if (own_dir) rmdir(dir);
  return subject_verdict();
}
