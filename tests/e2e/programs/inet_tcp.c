/*
 * TCP sockets of a parent and its forked child, in every state the dump
 * saves, with data queued both ways and unread:
 *  - listeners (SO_REUSEADDR, backlog 7): 127.0.0.1 and a dual-stack [::];
 *  - three connections from the child to them: over IPv4, over IPv6 [::1],
 *    and over IPv4 to the dual-stack listener (IPv4-mapped on its side);
 *    on each, each side writes (non-blocking) until the queues are full or
 *    1 MiB is written, so that the receiver's receive queue and the
 *    sender's send queue both hold data; every byte is derived from
 *    (connection, direction, offset);
 *  - a socket bound to 127.0.0.1 and not listening, and one never bound.
 * Each side tells the other through a pipe how much it wrote.
 *
 * Options set before the dump are compared with what the restored sockets
 * say: TCP_NODELAY, SO_KEEPALIVE with TCP_KEEPIDLE 77, TCP_KEEPINTVL 11,
 * TCP_KEEPCNT 5, TCP_USER_TIMEOUT 12345, SO_LINGER 9 s, IP_TOS 0x10,
 * SO_PRIORITY 3, TCP_CONGESTION reno, SO_RCVTIMEO 1.5 s on the child's IPv4
 * end; IPV6_TCLASS 0x20 and IPV6_UNICAST_HOPS 33 on the child's IPv6 end;
 * O_NONBLOCK and a 2-instruction socket filter on the parent's IPv4 end;
 * SO_REUSEADDR of the parent's ends (from their listeners); the addresses
 * of every socket.
 *
 * After SIGUSR1 (passed on to the child) each side reads exactly what the
 * other wrote, byte for byte, then each connection carries a new message
 * each way, and the child makes a new connection to each listener, which
 * the parent accepts. The child exits 0 only if its checks passed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "subject.h"

#define NCONN 3
#define MAXQ (1 << 20)

static const char *who = "parent";

static unsigned char byte_at(int conn, int dir, size_t off) {
  return (unsigned char)(off * 7 + (off >> 9) * 13 + conn * 31 + dir * 101 + 1);
}

static int set_int(int fd, int level, int opt, int v) { return setsockopt(fd, level, opt, &v, sizeof(v)); }
static int get_int(int fd, int level, int opt) {
  int v = -12345;
  socklen_t len = sizeof(v);
  getsockopt(fd, level, opt, &v, &len);
  return v;
}

/* Writes the pattern until the queues are full or MAXQ is written. */
static size_t fill(int fd, int conn, int dir) {
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  static unsigned char buf[65536];
  size_t off = 0;
  int idle = 0;
  while (off < MAXQ && idle < 20) {
    size_t n = sizeof(buf) < MAXQ - off ? sizeof(buf) : MAXQ - off;
    for (size_t i = 0; i < n; i++) buf[i] = byte_at(conn, dir, off + i);
    ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
    if (w > 0) {
      off += (size_t)w;
      idle = 0;
    } else if (w < 0 && errno == EAGAIN) {
      idle++;
      usleep(5000);  /* the window may open a little more */
    } else {
      break;
    }
  }
  fcntl(fd, F_SETFL, fl);
  return off;
}

/* Reads exactly want bytes (30 s at most without a byte) and checks each one. */
static void drain(int fd, int conn, int dir, size_t want) {
  static unsigned char buf[65536];
  size_t off = 0;
  while (off < want) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 30000) != 1) break;
    ssize_t n = recv(fd, buf, sizeof(buf) < want - off ? sizeof(buf) : want - off, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) {
      subject_fail("%s conn %d: recv after %zu of %zu bytes: %zd (%s)", who, conn, off, want, n, strerror(errno));
      return;
    }
    for (ssize_t i = 0; i < n; i++) {
      if (buf[i] != byte_at(conn, dir, off + (size_t)i)) {
        subject_fail("%s conn %d: byte %zu is wrong", who, conn, off + (size_t)i);
        return;
      }
    }
    off += (size_t)n;
  }
  SUBJECT_CHECK(off == want, "%s conn %d: got %zu of %zu bytes", who, conn, off, want);
  /* Nothing more came before the other side's message: ping() reads it
   * whole (the other side may have sent it already). */
}

/* One message each way: the parent sends first. */
static void ping(int fd, int conn, int parent) {
  char msg[32], in[32] = {0};
  snprintf(msg, sizeof(msg), "%s-%d", parent ? "from-parent" : "from-child", conn);
  char want[32];
  snprintf(want, sizeof(want), "%s-%d", parent ? "from-child" : "from-parent", conn);
  if (parent) SUBJECT_CHECK(send(fd, msg, strlen(msg), MSG_NOSIGNAL) == (ssize_t)strlen(msg), "%s conn %d: send", who, conn);
  struct pollfd p = {.fd = fd, .events = POLLIN};
  size_t got = 0;
  while (got < strlen(want) && poll(&p, 1, 30000) == 1) {
    ssize_t n = recv(fd, in + got, strlen(want) - got, MSG_DONTWAIT);
    if (n <= 0 && !(n < 0 && errno == EAGAIN)) break;
    if (n > 0) got += (size_t)n;
  }
  SUBJECT_CHECK(got == strlen(want) && memcmp(in, want, got) == 0, "%s conn %d: the message after restore is '%s'", who,
                conn, in);
  if (!parent) SUBJECT_CHECK(send(fd, msg, strlen(msg), MSG_NOSIGNAL) == (ssize_t)strlen(msg), "%s conn %d: send", who, conn);
}

struct names {
  struct sockaddr_storage name, peer;
  socklen_t namelen, peerlen;
};
static void names_of(int fd, struct names *n) {
  memset(n, 0, sizeof(*n));
  n->namelen = sizeof(n->name);
  n->peerlen = sizeof(n->peer);
  getsockname(fd, (struct sockaddr *)&n->name, &n->namelen);
  if (getpeername(fd, (struct sockaddr *)&n->peer, &n->peerlen) != 0) n->peerlen = 0;
}
static void check_names(int fd, const struct names *before, const char *what) {
  struct names now;
  names_of(fd, &now);
  SUBJECT_CHECK(now.namelen == before->namelen && memcmp(&now.name, &before->name, now.namelen) == 0,
                "%s %s: getsockname changed", who, what);
  SUBJECT_CHECK(now.peerlen == before->peerlen && memcmp(&now.peer, &before->peer, now.peerlen) == 0,
                "%s %s: getpeername changed", who, what);
}

static int listener(int family, struct sockaddr_storage *addr, socklen_t *len) {
  int fd = socket(family, SOCK_STREAM, 0);
  memset(addr, 0, sizeof(*addr));
  if (family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)addr;
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *len = sizeof(*a);
  } else {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)addr;
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_any;
    *len = sizeof(*a);
    set_int(fd, SOL_IPV6, IPV6_V6ONLY, 0);
  }
  /* Both: the leave-running test restores them after the original closed
   * its connections, whose TIME_WAIT remnants hold the ports. */
  set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
  if (fd < 0 || bind(fd, (struct sockaddr *)addr, *len) || listen(fd, 7) || getsockname(fd, (struct sockaddr *)addr, len)) {
    exit(2);
  }
  return fd;
}

static int connect_to(int family, const char *ip, int port) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  socklen_t len;
  if (family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    inet_pton(AF_INET, ip, &a->sin_addr);
    a->sin_port = htons((uint16_t)port);
    len = sizeof(*a);
  } else {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    inet_pton(AF_INET6, ip, &a->sin6_addr);
    a->sin6_port = htons((uint16_t)port);
    len = sizeof(*a);
  }
  int fd = socket(family, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&ss, len) != 0) exit(3);
  return fd;
}

static int port_of(const struct sockaddr_storage *ss) {
  return ss->ss_family == AF_INET ? ntohs(((const struct sockaddr_in *)ss)->sin_port)
                                  : ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

struct opts {
  int reuse, nodelay, keepalive, idle, intvl, cnt, user_timeout, tos, prio, linger_on, linger, tclass, hops;
  char cong[16];
  struct timeval rcvtimeo;
};
static void opts_of(int fd, int family, struct opts *o) {
  memset(o, 0, sizeof(*o));
  o->reuse = get_int(fd, SOL_SOCKET, SO_REUSEADDR);
  o->nodelay = get_int(fd, SOL_TCP, TCP_NODELAY);
  o->keepalive = get_int(fd, SOL_SOCKET, SO_KEEPALIVE);
  o->idle = get_int(fd, SOL_TCP, TCP_KEEPIDLE);
  o->intvl = get_int(fd, SOL_TCP, TCP_KEEPINTVL);
  o->cnt = get_int(fd, SOL_TCP, TCP_KEEPCNT);
  o->user_timeout = get_int(fd, SOL_TCP, TCP_USER_TIMEOUT);
  o->prio = get_int(fd, SOL_SOCKET, SO_PRIORITY);
  if (family == AF_INET) {
    o->tos = get_int(fd, SOL_IP, IP_TOS);
  } else {
    o->tclass = get_int(fd, SOL_IPV6, IPV6_TCLASS);
    o->hops = get_int(fd, SOL_IPV6, IPV6_UNICAST_HOPS);
  }
  struct linger lg;
  socklen_t len = sizeof(lg);
  getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &len);
  o->linger_on = lg.l_onoff;
  o->linger = lg.l_linger;
  len = sizeof(o->cong);
  getsockopt(fd, SOL_TCP, TCP_CONGESTION, o->cong, &len);
  len = sizeof(o->rcvtimeo);
  getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &o->rcvtimeo, &len);
}
static void check_opts(int fd, int family, const struct opts *before, const char *what) {
  struct opts now;
  opts_of(fd, family, &now);
#define SAME(f) SUBJECT_CHECK(now.f == before->f, "%s %s: " #f " is %d, was %d", who, what, (int)now.f, (int)before->f)
  SAME(reuse);
  SAME(nodelay);
  SAME(keepalive);
  SAME(idle);
  SAME(intvl);
  SAME(cnt);
  SAME(user_timeout);
  SAME(tos);
  SAME(prio);
  SAME(linger_on);
  SAME(linger);
  SAME(tclass);
  SAME(hops);
  SAME(rcvtimeo.tv_sec);
  SAME(rcvtimeo.tv_usec);
#undef SAME
  SUBJECT_CHECK(strcmp(now.cong, before->cong) == 0, "%s %s: congestion control is %s, was %s", who, what, now.cong,
                before->cong);
}

int main(void) {
  struct sockaddr_storage a4, a6;
  socklen_t l4, l6;
  int lis[2] = {listener(AF_INET, &a4, &l4), listener(AF_INET6, &a6, &l6)};
  int p4 = port_of(&a4), p6 = port_of(&a6);
  int to_child[2], to_parent[2];
  if (pipe(to_child) || pipe(to_parent)) return 2;
  subject_install();
  pid_t child = fork();
  if (child < 0) return 2;
  int is_child = child == 0;
  int conn[NCONN];
  if (is_child) {
    who = "child";
    close(lis[0]);
    close(lis[1]);
    conn[0] = connect_to(AF_INET, "127.0.0.1", p4);
    conn[1] = connect_to(AF_INET6, "::1", p6);
    conn[2] = connect_to(AF_INET, "127.0.0.1", p6);
    int c = conn[0];
    set_int(c, SOL_TCP, TCP_NODELAY, 1);
    set_int(c, SOL_SOCKET, SO_KEEPALIVE, 1);
    set_int(c, SOL_TCP, TCP_KEEPIDLE, 77);
    set_int(c, SOL_TCP, TCP_KEEPINTVL, 11);
    set_int(c, SOL_TCP, TCP_KEEPCNT, 5);
    set_int(c, SOL_TCP, TCP_USER_TIMEOUT, 12345);
    set_int(c, SOL_IP, IP_TOS, 0x10);
    set_int(c, SOL_SOCKET, SO_PRIORITY, 3);
    struct linger lg = {1, 9};
    setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    setsockopt(c, SOL_TCP, TCP_CONGESTION, "reno", 4);
    struct timeval tv = {1, 500000};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    set_int(conn[1], SOL_IPV6, IPV6_TCLASS, 0x20);
    set_int(conn[1], SOL_IPV6, IPV6_UNICAST_HOPS, 33);
  } else {
    for (int i = 0; i < NCONN; i++) {
      conn[i] = accept(lis[i == 0 ? 0 : 1], NULL, NULL);
      if (conn[i] < 0) return 2;
    }
    struct sock_filter insns[2] = {BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0), BPF_STMT(BPF_RET | BPF_K, 0xffffffff)};
    struct sock_fprog prog = {2, insns};
    if (setsockopt(conn[0], SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog))) return 2;
  }
  /* Both write, then tell the other how much. */
  size_t wrote[NCONN], expect[NCONN];
  for (int i = 0; i < NCONN; i++) wrote[i] = fill(conn[i], i, is_child);
  int out = is_child ? to_parent[1] : to_child[1], in = is_child ? to_child[0] : to_parent[0];
  if (write(out, wrote, sizeof(wrote)) != sizeof(wrote) || read(in, expect, sizeof(expect)) != sizeof(expect)) return 2;
  if (!is_child) fcntl(conn[0], F_SETFL, fcntl(conn[0], F_GETFL) | O_NONBLOCK);
  int bound = -1, unbound = -1;
  if (!is_child) {
    bound = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in b = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(bound, (struct sockaddr *)&b, sizeof(b))) return 2;
    unbound = socket(AF_INET6, SOCK_STREAM, 0);
  }
  struct names n[NCONN], nb, nu, nl[2];
  struct opts o[NCONN];
  for (int i = 0; i < NCONN; i++) {
    names_of(conn[i], &n[i]);
    opts_of(conn[i], i == 1 || (!is_child && i == 2) ? AF_INET6 : AF_INET, &o[i]);
  }
  if (!is_child) {
    names_of(bound, &nb);
    names_of(unbound, &nu);
    names_of(lis[0], &nl[0]);
    names_of(lis[1], &nl[1]);
    printf("CHILDREN %d\n", child);
    printf("QUEUED %zu %zu %zu / %zu %zu %zu\n", wrote[0], wrote[1], wrote[2], expect[0], expect[1], expect[2]);
    subject_ready();
  }
  subject_wait();
  if (!is_child) kill(child, SIGUSR1);

  for (int i = 0; i < NCONN; i++) {
    char what[24];
    snprintf(what, sizeof(what), "conn %d", i);
    check_names(conn[i], &n[i], what);
    check_opts(conn[i], i == 1 || (!is_child && i == 2) ? AF_INET6 : AF_INET, &o[i], what);
  }
  if (!is_child) {
    check_names(bound, &nb, "bound socket");
    check_names(unbound, &nu, "unbound socket");
    check_names(lis[0], &nl[0], "IPv4 listener");
    check_names(lis[1], &nl[1], "IPv6 listener");
    SUBJECT_CHECK(get_int(lis[0], SOL_SOCKET, SO_REUSEADDR) == 1, "SO_REUSEADDR of the listener is lost");
    SUBJECT_CHECK(get_int(lis[1], SOL_IPV6, IPV6_V6ONLY) == 0, "the IPv6 listener is IPv6-only");
    SUBJECT_CHECK(get_int(lis[0], SOL_SOCKET, SO_ACCEPTCONN) == 1, "the IPv4 listener does not listen");
    SUBJECT_CHECK(fcntl(conn[0], F_GETFL) & O_NONBLOCK, "O_NONBLOCK is lost");
    struct sock_filter back[8];
    socklen_t len = 8;
    SUBJECT_CHECK(getsockopt(conn[0], SOL_SOCKET, SO_GET_FILTER, back, &len) == 0 && len == 2 &&
                      back[1].k == 0xffffffff,
                  "the socket filter is lost (%u instructions)", (unsigned)len);
  }
  /* The receive sides, then the send sides, drain in parallel: each
   * reads all the other wrote, while its own data flows out. */
  for (int i = 0; i < NCONN; i++) drain(conn[i], i, !is_child, expect[i]);
  for (int i = 0; i < NCONN; i++) ping(conn[i], i, !is_child);
  if (is_child) {
    int c4 = connect_to(AF_INET, "127.0.0.1", p4), c6 = connect_to(AF_INET6, "::1", p6);
    SUBJECT_CHECK(send(c4, "4", 1, 0) == 1 && send(c6, "6", 1, 0) == 1, "child: send on new connections");
    char x;
    SUBJECT_CHECK(recv(c4, &x, 1, 0) == 0 && recv(c6, &x, 1, 0) == 0, "child: the new connections did not end");
    _exit(subject_failures ? 1 : 0);
  }
  for (int i = 0; i < 2; i++) {
    int fd = accept(lis[i], NULL, NULL);
    char x = 0;
    SUBJECT_CHECK(fd >= 0 && recv(fd, &x, 1, 0) == 1 && x == (i == 0 ? '4' : '6'), "a new connection after restore");
    close(fd);
  }
  int status;
  waitpid(child, &status, 0);
  SUBJECT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed");
  return subject_verdict();
}
