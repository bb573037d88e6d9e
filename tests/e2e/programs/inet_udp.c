/*
 * UDP and UDP-Lite sockets with datagrams queued and unread:
 *  - r4: UDP bound to 127.0.0.1, with 20 datagrams from s4 (a socket of
 *    this process), one of zero bytes, then 5 from a socket that was
 *    closed before the dump (its port is free by then), SO_BROADCAST on;
 *  - r6: UDP bound to [::1], IPv6-only, 10 datagrams from s6;
 *  - rd: dual-stack UDP bound to [::], 5 datagrams over IPv4 from s4 and 5
 *    over IPv6 from s6, interleaved;
 *  - rl: UDP-Lite bound to 127.0.0.1, 3 datagrams from an UDP-Lite sender;
 *  - c4: UDP connected to r4 (bound automatically), shut down for reading;
 *  - u: a UDP socket never bound.
 * Datagram i of a socket is i * 37 % 1400 bytes long, each byte derived
 * from (socket, index, position); its sender's address is checked too.
 *
 * After SIGUSR1 every socket gives exactly its datagrams, in order, with
 * their lengths, bytes and senders, and nothing more; then r4 and r6 take
 * a new datagram each, c4 still sends to r4 and still reads nothing,
 * SO_BROADCAST and IPV6_V6ONLY are as set, every address as it was.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include "subject.h"

#ifndef IPPROTO_UDPLITE
#define IPPROTO_UDPLITE 136
#endif

static size_t dlen(int i) { return (size_t)(i * 37 % 1400); }
static unsigned char dbyte(int sock, int i, size_t j) { return (unsigned char)(sock * 41 + i * 13 + j * 3 + 7); }

static int udp(int family, int proto, const char *ip, int v6only, struct sockaddr_storage *ss, socklen_t *len) {
  int fd = socket(family, SOCK_DGRAM, proto);
  if (fd < 0) exit(2);
  memset(ss, 0, sizeof(*ss));
  if (family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    inet_pton(AF_INET, ip, &a->sin_addr);
    *len = sizeof(*a);
  } else {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    inet_pton(AF_INET6, ip, &a->sin6_addr);
    *len = sizeof(*a);
    if (setsockopt(fd, SOL_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only))) exit(2);
  }
  if (bind(fd, (struct sockaddr *)ss, *len) || getsockname(fd, (struct sockaddr *)ss, len)) exit(2);
  return fd;
}

static void addr_to(const struct sockaddr_storage *bound, int family, const char *ip, struct sockaddr_storage *out,
                    socklen_t *len) {
  memset(out, 0, sizeof(*out));
  int port = bound->ss_family == AF_INET ? ntohs(((const struct sockaddr_in *)bound)->sin_port)
                                         : ntohs(((const struct sockaddr_in6 *)bound)->sin6_port);
  if (family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)out;
    a->sin_family = AF_INET;
    inet_pton(AF_INET, ip, &a->sin_addr);
    a->sin_port = htons((uint16_t)port);
    *len = sizeof(*a);
  } else {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;
    a->sin6_family = AF_INET6;
    inet_pton(AF_INET6, ip, &a->sin6_addr);
    a->sin6_port = htons((uint16_t)port);
    *len = sizeof(*a);
  }
}

/* What a receiving socket expects: (tag, index, sender) in order. */
struct expect {
  int tag, index;
  struct sockaddr_storage from;
  socklen_t fromlen;
};
#define MAXE 32

static void send_one(int from, int tag, int i, const struct sockaddr_storage *to, socklen_t tolen) {
  unsigned char buf[1400];
  for (size_t j = 0; j < dlen(i); j++) buf[j] = dbyte(tag, i, j);
  if (sendto(from, buf, dlen(i), 0, (const struct sockaddr *)to, tolen) != (ssize_t)dlen(i)) exit(3);
}

/* The address `fd` receives from `from` with: its name, as the receiver
 * family shows it (IPv4-mapped for an IPv4 sender of a dual-stack one). */
static void sender_name(int from, int rx_family, struct sockaddr_storage *out, socklen_t *len) {
  struct sockaddr_storage ss;
  socklen_t l = sizeof(ss);
  getsockname(from, (struct sockaddr *)&ss, &l);
  if (ss.ss_family == AF_INET && rx_family == AF_INET6) {
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 m;
    memset(&m, 0, sizeof(m));
    m.sin6_family = AF_INET6;
    m.sin6_port = in->sin_port;
    m.sin6_addr.s6_addr[10] = m.sin6_addr.s6_addr[11] = 0xff;
    memcpy(&m.sin6_addr.s6_addr[12], &in->sin_addr, 4);
    memcpy(out, &m, sizeof(m));
    *len = sizeof(m);
  } else {
    memcpy(out, &ss, sizeof(ss));
    *len = l;
  }
}

static void queue(int from, int tag, int i, int to, int rx_family, struct expect *e, int *n) {
  struct sockaddr_storage ss, dst;
  socklen_t l = sizeof(ss), dl;
  getsockname(to, (struct sockaddr *)&ss, &l);
  struct sockaddr_storage me;
  socklen_t ml = sizeof(me);
  getsockname(from, (struct sockaddr *)&me, &ml);
  if (me.ss_family == AF_INET) {
    addr_to(&ss, AF_INET, "127.0.0.1", &dst, &dl);
  } else {
    addr_to(&ss, AF_INET6, "::1", &dst, &dl);
  }
  send_one(from, tag, i, &dst, dl);
  if (e == NULL) return;
  e[*n].tag = tag;
  e[*n].index = i;
  sender_name(from, rx_family, &e[*n].from, &e[*n].fromlen);
  (*n)++;
}

static void check_queue(int fd, const char *what, const struct expect *e, int n) {
  unsigned char buf[2000];
  for (int k = 0; k < n; k++) {
    struct sockaddr_storage from;
    socklen_t fl = sizeof(from);
    ssize_t r = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
    if (r < 0) {
      subject_fail("%s: datagram %d of %d is missing (%s)", what, k, n, strerror(errno));
      return;
    }
    SUBJECT_CHECK((size_t)r == dlen(e[k].index), "%s: datagram %d is %zd bytes, not %zu", what, k, r, dlen(e[k].index));
    int same = 1;
    for (ssize_t j = 0; j < r && same; j++) same = buf[j] == dbyte(e[k].tag, e[k].index, (size_t)j);
    SUBJECT_CHECK(same, "%s: datagram %d has wrong bytes", what, k);
    SUBJECT_CHECK(fl == e[k].fromlen && memcmp(&from, &e[k].from, fl) == 0, "%s: datagram %d has another sender", what,
                  k);
  }
  ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
  SUBJECT_CHECK(r < 0 && errno == EAGAIN, "%s: more datagrams than were sent (%zd)", what, r);
}

static void name_of(int fd, struct sockaddr_storage *ss, socklen_t *len) {
  *len = sizeof(*ss);
  memset(ss, 0, sizeof(*ss));
  getsockname(fd, (struct sockaddr *)ss, len);
}

int main(void) {
  struct sockaddr_storage a;
  socklen_t al;
  int r4 = udp(AF_INET, IPPROTO_UDP, "127.0.0.1", 0, &a, &al);
  int r6 = udp(AF_INET6, IPPROTO_UDP, "::1", 1, &a, &al);
  int rd = udp(AF_INET6, IPPROTO_UDP, "::", 0, &a, &al);
  int rl = udp(AF_INET, IPPROTO_UDPLITE, "127.0.0.1", 0, &a, &al);
  int s4 = udp(AF_INET, IPPROTO_UDP, "127.0.0.1", 0, &a, &al);
  int s6 = udp(AF_INET6, IPPROTO_UDP, "::1", 1, &a, &al);
  int sl = udp(AF_INET, IPPROTO_UDPLITE, "127.0.0.1", 0, &a, &al);
  int gone = udp(AF_INET, IPPROTO_UDP, "127.0.0.1", 0, &a, &al);
  int one = 1;
  setsockopt(r4, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one));
  struct expect e4[MAXE], e6[MAXE], ed[MAXE], el[MAXE];
  int n4 = 0, n6 = 0, nd = 0, nl = 0;
  for (int i = 0; i < 20; i++) queue(s4, 1, i, r4, AF_INET, e4, &n4);
  for (int i = 0; i < 5; i++) queue(gone, 2, i, r4, AF_INET, e4, &n4);
  close(gone);
  for (int i = 0; i < 10; i++) queue(s6, 3, i + 1, r6, AF_INET6, e6, &n6);
  for (int i = 0; i < 5; i++) {
    queue(s4, 4, i + 3, rd, AF_INET6, ed, &nd);
    queue(s6, 5, i + 5, rd, AF_INET6, ed, &nd);
  }
  for (int i = 0; i < 3; i++) queue(sl, 6, i + 2, rl, AF_INET, el, &nl);
  /* c4: connected to r4, shut down for reading. */
  int c4 = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_storage r4name;
  socklen_t r4len;
  name_of(r4, &r4name, &r4len);
  if (connect(c4, (struct sockaddr *)&r4name, r4len) || shutdown(c4, SHUT_RD)) return 2;
  int u = socket(AF_INET, SOCK_DGRAM, 0);
  char probe[8];
  ssize_t shut_before = recv(c4, probe, sizeof(probe), MSG_DONTWAIT);
  int shut_errno = errno;
  int fds[] = {r4, r6, rd, rl, s4, s6, sl, c4, u};
  struct sockaddr_storage names[9];
  socklen_t lens[9];
  for (int i = 0; i < 9; i++) name_of(fds[i], &names[i], &lens[i]);
  subject_ready();
  subject_wait();

  for (int i = 0; i < 9; i++) {
    struct sockaddr_storage now;
    socklen_t l;
    name_of(fds[i], &now, &l);
    SUBJECT_CHECK(l == lens[i] && memcmp(&now, &names[i], l) == 0, "socket %d: getsockname changed", i);
  }
  check_queue(r4, "r4", e4, n4);
  check_queue(r6, "r6", e6, n6);
  check_queue(rd, "rd", ed, nd);
  check_queue(rl, "rl", el, nl);
  int v = 0;
  socklen_t vl = sizeof(v);
  getsockopt(r4, SOL_SOCKET, SO_BROADCAST, &v, &vl);
  SUBJECT_CHECK(v == 1, "SO_BROADCAST is lost");
  getsockopt(r6, SOL_IPV6, IPV6_V6ONLY, &v, &vl);
  SUBJECT_CHECK(v == 1, "r6 is no longer IPv6-only");
  getsockopt(rd, SOL_IPV6, IPV6_V6ONLY, &v, &vl);
  SUBJECT_CHECK(v == 0, "rd became IPv6-only");
  /* They still work. */
  struct expect x[1];
  int nx = 0;
  queue(s4, 7, 9, r4, AF_INET, x, &nx);
  struct pollfd p = {.fd = r4, .events = POLLIN};
  poll(&p, 1, 2000);
  check_queue(r4, "r4 after restore", x, nx);
  nx = 0;
  queue(s6, 8, 11, r6, AF_INET6, x, &nx);
  p.fd = r6;
  poll(&p, 1, 2000);
  check_queue(r6, "r6 after restore", x, nx);
  SUBJECT_CHECK(send(c4, "abc", 3, 0) == 3, "c4 cannot send to its peer");
  p.fd = r4;
  poll(&p, 1, 2000);
  char buf[8];
  struct sockaddr_storage from;
  socklen_t fl = sizeof(from);
  SUBJECT_CHECK(recvfrom(r4, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &fl) == 3 &&
                    memcmp(&from, &names[7], fl) == 0,
                "r4 did not get c4's datagram from c4's address");
  ssize_t r = recv(c4, buf, sizeof(buf), MSG_DONTWAIT);
  SUBJECT_CHECK(r == shut_before && (r >= 0 || errno == shut_errno),
                "c4 is no longer shut down for reading (recv gives %zd, %s; before the dump %zd, %s)", r,
                strerror(errno), shut_before, strerror(shut_errno));
  return subject_verdict();
}
