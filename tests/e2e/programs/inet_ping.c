/*
 * ICMP ping sockets (SOCK_DGRAM IPPROTO_ICMP / IPPROTO_ICMPV6; the test
 * runs where net.ipv4.ping_group_range lets it make them):
 * - q4: IPv4, bound to echo identifier 4321, has pinged 127.0.0.1;
 * - a4: IPv4, identifier chosen by the kernel at its first ping;
 * - c6: IPv6, connected to ::1, has pinged it with send();
 * - n6: IPv6, never used.
 * Says READY; after SIGUSR1: the identifiers are the same, each pings
 * again (c6 with send(): still connected) and gets its reply, with its
 * identifier and sequence number; n6 is still unbound and can ping.
 *
 * "queued": q4's last reply is left unread before READY (a dump is
 * refused); after SIGUSR1 it must still be there.
 */
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>

#include "subject.h"

static int v6_of(int s) {
  int d = 0;
  socklen_t len = sizeof(d);
  getsockopt(s, SOL_SOCKET, SO_DOMAIN, &d, &len);
  return d == AF_INET6;
}

static uint16_t ident(int s) {
  struct sockaddr_storage a;
  socklen_t len = sizeof(a);
  memset(&a, 0, sizeof(a));
  if (getsockname(s, (struct sockaddr *)&a, &len) != 0) return 0xffff;
  return ntohs(a.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&a)->sin6_port : ((struct sockaddr_in *)&a)->sin_port);
}

/* Sends an echo request with sequence `seq` (to loopback, or with send()
 * when `connected`). */
static int ping(int s, uint16_t seq, int connected) {
  char pkt[16];
  memset(pkt, 0, sizeof(pkt));
  pkt[0] = v6_of(s) ? ICMP6_ECHO_REQUEST : ICMP_ECHO;
  uint16_t nseq = htons(seq);
  memcpy(pkt + 6, &nseq, 2);
  memcpy(pkt + 8, "pingpong", 8);
  if (connected) return send(s, pkt, sizeof(pkt), 0) == sizeof(pkt);
  struct sockaddr_in a4;
  struct sockaddr_in6 a6;
  memset(&a4, 0, sizeof(a4));
  memset(&a6, 0, sizeof(a6));
  a4.sin_family = AF_INET;
  a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a6.sin6_family = AF_INET6;
  a6.sin6_addr = in6addr_loopback;
  if (v6_of(s)) return sendto(s, pkt, sizeof(pkt), 0, (struct sockaddr *)&a6, sizeof(a6)) == sizeof(pkt);
  return sendto(s, pkt, sizeof(pkt), 0, (struct sockaddr *)&a4, sizeof(a4)) == sizeof(pkt);
}

/* Reads one reply within 2 s: its sequence number, or -1. */
static int reply(int s, uint16_t want_id) {
  struct pollfd p = {s, POLLIN, 0};
  if (poll(&p, 1, 2000) != 1) return -1;
  unsigned char buf[64];
  ssize_t n = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
  const int type = v6_of(s) ? ICMP6_ECHO_REPLY : ICMP_ECHOREPLY;
  uint16_t id, seq;
  memcpy(&id, buf + 4, 2);
  memcpy(&seq, buf + 6, 2);
  if (n != 16 || buf[0] != type || ntohs(id) != want_id || memcmp(buf + 8, "pingpong", 8) != 0) return -1;
  return ntohs(seq);
}

int main(int argc, char **argv) {
  const int queued = argc > 1 && strcmp(argv[1], "queued") == 0;
  int q4 = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
  int a4 = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
  int c6 = socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6);
  int n6 = socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6);
  if (q4 < 0 || a4 < 0 || c6 < 0 || n6 < 0) {
    printf("FAIL: ping socket: %s (net.ipv4.ping_group_range)\n", strerror(errno));
    return 2;
  }
  struct sockaddr_in b;
  memset(&b, 0, sizeof(b));
  b.sin_family = AF_INET;
  b.sin_port = htons(4321);
  struct sockaddr_in6 l6;
  memset(&l6, 0, sizeof(l6));
  l6.sin6_family = AF_INET6;
  l6.sin6_addr = in6addr_loopback;
  if (bind(q4, (struct sockaddr *)&b, sizeof(b)) != 0 || connect(c6, (struct sockaddr *)&l6, sizeof(l6)) != 0) {
    printf("FAIL: bind/connect: %s\n", strerror(errno));
    return 2;
  }
  if (!ping(q4, 1, 0) || reply(q4, 4321) != 1 || !ping(a4, 1, 0) || reply(a4, ident(a4)) != 1 || !ping(c6, 1, 1) ||
      reply(c6, ident(c6)) != 1) {
    printf("FAIL: first pings\n");
    return 2;
  }
  const uint16_t id_a4 = ident(a4), id_c6 = ident(c6);
  if (queued && !ping(q4, 5, 0)) return 2;
  if (queued) usleep(100000);
  subject_ready();
  subject_wait();

  SUBJECT_CHECK(ident(q4) == 4321, "q4's identifier is %u, not 4321", ident(q4));
  SUBJECT_CHECK(ident(a4) == id_a4, "a4's identifier is %u, not %u", ident(a4), id_a4);
  SUBJECT_CHECK(ident(c6) == id_c6, "c6's identifier is %u, not %u", ident(c6), id_c6);
  SUBJECT_CHECK(ident(n6) == 0, "n6 is bound to %u", ident(n6));
  if (queued) SUBJECT_CHECK(reply(q4, 4321) == 5, "q4's queued reply is gone");
  SUBJECT_CHECK(ping(q4, 2, 0) && reply(q4, 4321) == 2, "q4 gets no reply");
  SUBJECT_CHECK(ping(a4, 2, 0) && reply(a4, id_a4) == 2, "a4 gets no reply");
  SUBJECT_CHECK(ping(c6, 2, 1), "c6 cannot send() (not connected?): %s", strerror(errno));
  SUBJECT_CHECK(reply(c6, id_c6) == 2, "c6 gets no reply");
  SUBJECT_CHECK(ping(n6, 1, 0) && reply(n6, ident(n6)) == 1, "n6 gets no reply");
  return subject_verdict();
}
