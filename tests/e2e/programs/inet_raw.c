/*
 * Raw sockets, and socket options kept beyond INET_SOCK's own fields:
 * - r4: SOCK_RAW IPPROTO_ICMP bound to 127.0.0.1, an ICMP_FILTER that
 *   passes only echo replies, IP_RECVTTL and SO_TIMESTAMP on;
 * - r6: SOCK_RAW IPPROTO_ICMPV6, an ICMP6_FILTER that passes only echo
 *   replies, IPV6_RECVHOPLIMIT on;
 * - p4: SOCK_RAW protocol 253, bound to 127.0.0.1 and connected to it;
 * - p6: SOCK_RAW protocol 253 over IPv6 with IPV6_CHECKSUM at offset 2,
 *   connected to ::1;
 * - u: UDP bound to 127.0.0.1 with IP_PKTINFO, IP_RECVERR,
 *   IP_MTU_DISCOVER=DO, IP_MULTICAST_TTL=7, IP_MULTICAST_LOOP=0;
 * - t: a TCP listener (SO_REUSEADDR: its connection, closed with the
 *   original of a dump left running, waits in TIME_WAIT) with TCP_DEFER_ACCEPT, TCP_NOTSENT_LOWAT and
 *   TCP_FASTOPEN; c, a client connected to it with TCP_FASTOPEN_CONNECT
 *   (its handshake went with its first bytes), and s, the connection t
 *   accepted.
 * Says READY; after SIGUSR1: every option reads back as it was; r4 sends an
 * echo request to 127.0.0.1 and receives the reply (the request itself is
 * filtered out) with its TTL and a timestamp; r6 likewise with a hop limit;
 * p4 and p6 send with send() and receive their own packet (p6's with the
 * checksum the kernel filled in); u receives its own datagram with
 * IP_PKTINFO; c and s still talk both ways.
 *
 * "queued": p4 sends itself a packet before READY and leaves it unread
 * (a dump is refused); after SIGUSR1 it must still be there.
 */
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>

#include "subject.h"

/* linux/icmp.h's, which clashes with netinet/ip_icmp.h. */
#define ICMP_FILTER 1
struct icmp_filter {
  uint32_t data;
};

static int geti(int s, int level, int opt) {
  int v = -12345;
  socklen_t len = sizeof(v);
  if (getsockopt(s, level, opt, &v, &len) != 0) return -12345;
  return v;
}

static int seti(int s, int level, int opt, int v) { return setsockopt(s, level, opt, &v, sizeof(v)); }

static uint16_t csum(const void *data, size_t len) {
  const uint8_t *p = data;
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) sum += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (len & 1) sum += (uint32_t)p[len - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return htons((uint16_t)~sum);
}

static int readable(int s, int ms) {
  struct pollfd p = {s, POLLIN, 0};
  return poll(&p, 1, ms) == 1;
}

/* Whether a control message of (level, type) came with `mh`. */
static int has_cmsg(struct msghdr *mh, int level, int type) {
  for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c != NULL; c = CMSG_NXTHDR(mh, c)) {
    if (c->cmsg_level == level && c->cmsg_type == type) return 1;
  }
  return 0;
}

static struct sockaddr_in lo4(void) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

static struct sockaddr_in6 lo6(void) {
  struct sockaddr_in6 a;
  memset(&a, 0, sizeof(a));
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  return a;
}

int main(int argc, char **argv) {
  const int queued = argc > 1 && strcmp(argv[1], "queued") == 0;
  int r4 = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
  int r6 = socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6);
  int p4 = socket(AF_INET, SOCK_RAW, 253);
  int p6 = socket(AF_INET6, SOCK_RAW, 253);
  int u = socket(AF_INET, SOCK_DGRAM, 0);
  int t = socket(AF_INET, SOCK_STREAM, 0);
  if (r4 < 0 || r6 < 0 || p4 < 0 || p6 < 0 || u < 0 || t < 0) {
    printf("FAIL: socket: %s\n", strerror(errno));
    return 2;
  }
  struct sockaddr_in a4 = lo4();
  struct sockaddr_in6 a6 = lo6();
  struct icmp_filter f4 = {~(1u << ICMP_ECHOREPLY)};
  struct icmp6_filter f6;
  ICMP6_FILTER_SETBLOCKALL(&f6);
  ICMP6_FILTER_SETPASS(ICMP6_ECHO_REPLY, &f6);
  int rc = bind(r4, (struct sockaddr *)&a4, sizeof(a4)) | setsockopt(r4, SOL_RAW, ICMP_FILTER, &f4, sizeof(f4)) |
           seti(r4, SOL_IP, IP_RECVTTL, 1) | seti(r4, SOL_SOCKET, SO_TIMESTAMP, 1) |
           setsockopt(r6, IPPROTO_ICMPV6, ICMP6_FILTER, &f6, sizeof(f6)) |
           seti(r6, SOL_IPV6, IPV6_RECVHOPLIMIT, 1) | bind(p4, (struct sockaddr *)&a4, sizeof(a4)) |
           connect(p4, (struct sockaddr *)&a4, sizeof(a4)) | seti(p6, SOL_IPV6, IPV6_CHECKSUM, 2) |
           connect(p6, (struct sockaddr *)&a6, sizeof(a6)) | bind(u, (struct sockaddr *)&a4, sizeof(a4)) |
           seti(u, SOL_IP, IP_PKTINFO, 1) | seti(u, SOL_IP, IP_RECVERR, 1) |
           seti(u, SOL_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO) | seti(u, SOL_IP, IP_MULTICAST_TTL, 7) |
           seti(u, SOL_IP, IP_MULTICAST_LOOP, 0) | seti(t, SOL_SOCKET, SO_REUSEADDR, 1) | seti(t, SOL_TCP, TCP_DEFER_ACCEPT, 5) |
           seti(t, SOL_TCP, TCP_NOTSENT_LOWAT, 16384) | seti(t, SOL_TCP, TCP_FASTOPEN, 8) |
           bind(t, (struct sockaddr *)&a4, sizeof(a4)) | listen(t, 4);
  if (rc != 0) {
    printf("FAIL: setting up: %s\n", strerror(errno));
    return 2;
  }
  const int defer = geti(t, SOL_TCP, TCP_DEFER_ACCEPT);
  struct sockaddr_in tb;
  socklen_t tblen = sizeof(tb);
  getsockname(t, (struct sockaddr *)&tb, &tblen);
  int c = socket(AF_INET, SOCK_STREAM, 0);
  char hi[2];
  if (c < 0 || seti(c, SOL_TCP, TCP_FASTOPEN_CONNECT, 1) != 0 || connect(c, (struct sockaddr *)&tb, sizeof(tb)) != 0 ||
      send(c, "hi", 2, 0) != 2) {
    printf("FAIL: fastopen client: %s\n", strerror(errno));
    return 2;
  }
  int s = accept(t, NULL, NULL);
  if (s < 0 || recv(s, hi, 2, MSG_WAITALL) != 2) {
    printf("FAIL: accept: %s\n", strerror(errno));
    return 2;
  }
  struct sockaddr_in ub;
  socklen_t ublen = sizeof(ub);
  getsockname(u, (struct sockaddr *)&ub, &ublen);
  if (queued && send(p4, "early", 5, 0) != 5) {
    printf("FAIL: send: %s\n", strerror(errno));
    return 2;
  }
  subject_ready();
  subject_wait();

  struct icmp_filter g4 = {0};
  socklen_t len = sizeof(g4);
  SUBJECT_CHECK(getsockopt(r4, SOL_RAW, ICMP_FILTER, &g4, &len) == 0 && g4.data == f4.data,
                "r4 ICMP_FILTER 0x%x, not 0x%x", g4.data, f4.data);
  struct icmp6_filter g6;
  memset(&g6, 0, sizeof(g6));
  len = sizeof(g6);
  SUBJECT_CHECK(getsockopt(r6, IPPROTO_ICMPV6, ICMP6_FILTER, &g6, &len) == 0 && memcmp(&g6, &f6, sizeof(f6)) == 0,
                "r6 ICMP6_FILTER changed");
  SUBJECT_CHECK(geti(r4, SOL_IP, IP_RECVTTL) == 1, "r4 IP_RECVTTL off");
  SUBJECT_CHECK(geti(r4, SOL_SOCKET, SO_TIMESTAMP) == 1, "r4 SO_TIMESTAMP off");
  SUBJECT_CHECK(geti(r6, SOL_IPV6, IPV6_RECVHOPLIMIT) == 1, "r6 IPV6_RECVHOPLIMIT off");
  SUBJECT_CHECK(geti(p6, SOL_IPV6, IPV6_CHECKSUM) == 2, "p6 IPV6_CHECKSUM %d", geti(p6, SOL_IPV6, IPV6_CHECKSUM));
  SUBJECT_CHECK(geti(u, SOL_IP, IP_PKTINFO) == 1, "u IP_PKTINFO off");
  SUBJECT_CHECK(geti(u, SOL_IP, IP_RECVERR) == 1, "u IP_RECVERR off");
  SUBJECT_CHECK(geti(u, SOL_IP, IP_MTU_DISCOVER) == IP_PMTUDISC_DO, "u IP_MTU_DISCOVER %d",
                geti(u, SOL_IP, IP_MTU_DISCOVER));
  SUBJECT_CHECK(geti(u, SOL_IP, IP_MULTICAST_TTL) == 7, "u IP_MULTICAST_TTL %d", geti(u, SOL_IP, IP_MULTICAST_TTL));
  SUBJECT_CHECK(geti(u, SOL_IP, IP_MULTICAST_LOOP) == 0, "u IP_MULTICAST_LOOP on");
  SUBJECT_CHECK(geti(t, SOL_TCP, TCP_DEFER_ACCEPT) == defer, "t TCP_DEFER_ACCEPT %d, not %d",
                geti(t, SOL_TCP, TCP_DEFER_ACCEPT), defer);
  SUBJECT_CHECK(geti(t, SOL_TCP, TCP_NOTSENT_LOWAT) == 16384, "t TCP_NOTSENT_LOWAT %d",
                geti(t, SOL_TCP, TCP_NOTSENT_LOWAT));
  SUBJECT_CHECK(geti(t, SOL_TCP, TCP_FASTOPEN) == 8, "t TCP_FASTOPEN %d", geti(t, SOL_TCP, TCP_FASTOPEN));
  struct sockaddr_in ub2;
  socklen_t ublen2 = sizeof(ub2);
  getsockname(u, (struct sockaddr *)&ub2, &ublen2);
  SUBJECT_CHECK(ub2.sin_port == ub.sin_port && ub2.sin_addr.s_addr == ub.sin_addr.s_addr, "u's address changed");

  char buf[2048], ctl[512];
  if (queued) {
    ssize_t n = recv(p4, buf, sizeof(buf), MSG_DONTWAIT);
    SUBJECT_CHECK(n == 20 + 5 && memcmp(buf + 20, "early", 5) == 0, "p4's queued packet is gone (%zd)", n);
  }

  /* r4: an echo request to 127.0.0.1; the first packet it reads is the reply. */
  struct {
    struct icmphdr h;
    char data[8];
  } echo;
  memset(&echo, 0, sizeof(echo));
  echo.h.type = ICMP_ECHO;
  echo.h.un.echo.id = htons(0x4242);
  echo.h.un.echo.sequence = htons(7);
  memcpy(echo.data, "rawping", 8);
  echo.h.checksum = csum(&echo, sizeof(echo));
  SUBJECT_CHECK(sendto(r4, &echo, sizeof(echo), 0, (struct sockaddr *)&a4, sizeof(a4)) == sizeof(echo),
                "r4 sendto: %s", strerror(errno));
  struct iovec iov = {buf, sizeof(buf)};
  struct msghdr mh;
  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl;
  mh.msg_controllen = sizeof(ctl);
  if (readable(r4, 2000)) {
    ssize_t n = recvmsg(r4, &mh, MSG_DONTWAIT);
    const struct icmphdr *h = (const struct icmphdr *)(buf + 20);
    SUBJECT_CHECK(n == 20 + (ssize_t)sizeof(echo) && h->type == ICMP_ECHOREPLY && ntohs(h->un.echo.id) == 0x4242,
                  "r4 read %zd bytes of ICMP type %d (the filter lets only echo replies through)", n, h->type);
    SUBJECT_CHECK(has_cmsg(&mh, SOL_IP, IP_TTL), "r4: no IP_TTL control message");
    SUBJECT_CHECK(has_cmsg(&mh, SOL_SOCKET, SO_TIMESTAMP), "r4: no timestamp control message");
  } else {
    subject_fail("r4: no echo reply");
  }

  /* r6: the same over ICMPv6 (the kernel fills the checksum in). */
  struct icmp6_hdr e6;
  memset(&e6, 0, sizeof(e6));
  e6.icmp6_type = ICMP6_ECHO_REQUEST;
  e6.icmp6_id = htons(0x4343);
  e6.icmp6_seq = htons(9);
  SUBJECT_CHECK(sendto(r6, &e6, sizeof(e6), 0, (struct sockaddr *)&a6, sizeof(a6)) == sizeof(e6), "r6 sendto: %s",
                strerror(errno));
  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl;
  mh.msg_controllen = sizeof(ctl);
  if (readable(r6, 2000)) {
    ssize_t n = recvmsg(r6, &mh, MSG_DONTWAIT);
    const struct icmp6_hdr *h = (const struct icmp6_hdr *)buf;
    SUBJECT_CHECK(n == sizeof(e6) && h->icmp6_type == ICMP6_ECHO_REPLY && ntohs(h->icmp6_id) == 0x4343,
                  "r6 read %zd bytes of ICMPv6 type %d", n, h->icmp6_type);
    SUBJECT_CHECK(has_cmsg(&mh, SOL_IPV6, IPV6_HOPLIMIT), "r6: no IPV6_HOPLIMIT control message");
  } else {
    subject_fail("r6: no echo reply");
  }

  /* p4: connected, so send() needs no address; its own packet comes back. */
  SUBJECT_CHECK(send(p4, "p4-data", 7, 0) == 7, "p4 send: %s", strerror(errno));
  if (readable(p4, 2000)) {
    ssize_t n = recv(p4, buf, sizeof(buf), MSG_DONTWAIT);
    SUBJECT_CHECK(n == 27 && buf[9] == (char)253 && memcmp(buf + 20, "p4-data", 7) == 0, "p4 read %zd bytes", n);
  } else {
    subject_fail("p4: its packet did not come back");
  }

  /* p6: the kernel writes the checksum at offset 2 of what is sent. */
  char six[8] = {'p', '6', 0, 0, 'd', 'a', 't', 'a'};
  SUBJECT_CHECK(send(p6, six, sizeof(six), 0) == sizeof(six), "p6 send: %s", strerror(errno));
  if (readable(p6, 2000)) {
    ssize_t n = recv(p6, buf, sizeof(buf), MSG_DONTWAIT);
    SUBJECT_CHECK(n == sizeof(six) && memcmp(buf + 4, "data", 4) == 0 && (buf[2] != 0 || buf[3] != 0),
                  "p6 read %zd bytes, checksum %02x%02x", n, (unsigned char)buf[2], (unsigned char)buf[3]);
  } else {
    subject_fail("p6: its packet did not come back");
  }

  /* u: its own datagram, with IP_PKTINFO. */
  SUBJECT_CHECK(sendto(u, "udp", 3, 0, (struct sockaddr *)&ub, sizeof(ub)) == 3, "u sendto: %s", strerror(errno));
  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl;
  mh.msg_controllen = sizeof(ctl);
  if (readable(u, 2000)) {
    ssize_t n = recvmsg(u, &mh, MSG_DONTWAIT);
    SUBJECT_CHECK(n == 3, "u read %zd bytes", n);
    SUBJECT_CHECK(has_cmsg(&mh, SOL_IP, IP_PKTINFO), "u: no IP_PKTINFO control message");
  } else {
    subject_fail("u: its datagram did not come");
  }
  /* c and s: the connection, made again, carries bytes both ways. */
  SUBJECT_CHECK(send(c, "again", 5, 0) == 5 && send(s, "back", 4, 0) == 4, "c/s send: %s", strerror(errno));
  if (readable(s, 2000) && readable(c, 2000)) {
    SUBJECT_CHECK(recv(s, buf, 5, MSG_WAITALL) == 5 && memcmp(buf, "again", 5) == 0, "s read the wrong bytes");
    SUBJECT_CHECK(recv(c, buf, 4, MSG_WAITALL) == 4 && memcmp(buf, "back", 4) == 0, "c read the wrong bytes");
  } else {
    subject_fail("c and s: nothing came through (the connection is stuck)");
  }
  return subject_verdict();
}
