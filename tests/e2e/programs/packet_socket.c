/*
 * Packet sockets (AF_PACKET; the test runs in a network namespace of its
 * own, where nothing else sends on lo):
 * - s1: SOCK_RAW ETH_P_ALL bound to lo, a classic filter that passes only
 *   UDP to port 4747, a promiscuous and a multicast membership on lo;
 * - s2, s3: SOCK_DGRAM ETH_P_IP on every interface, in fanout group 77
 *   (PACKET_FANOUT_HASH with PACKET_FANOUT_FLAG_DEFRAG), each with the
 *   same filter;
 * - s4: the old SOCK_PACKET, ETH_P_ALL, bound to "lo" by name, filtered;
 * - s5: SOCK_RAW bound to lo with no protocol (receives nothing), with
 *   PACKET_VERSION, PACKET_RESERVE, PACKET_AUXDATA, PACKET_ORIGDEV,
 *   PACKET_QDISC_BYPASS, PACKET_IGNORE_OUTGOING, SO_MARK, SO_PRIORITY,
 *   SO_RCVTIMEO and SO_TIMESTAMPNS set.
 * Says READY; after SIGUSR1: bindings, options, fanout and memberships
 * (lo promiscuous, the group in /proc/net/dev_mcast) are as they were; a
 * datagram to 127.0.0.1:4747 reaches s1, exactly one of s2 and s3, and
 * s4; one to port 4748 reaches none of them, and s5 none at all.
 *
 * "queued": s1 has a packet unread at READY (a dump is refused); after
 * SIGUSR1 it must still be there. "ring": s6 has a PACKET_RX_RING mapped
 * (a dump is refused).
 */
#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "subject.h"

static int geti(int s, int level, int opt) {
  int v = -12345;
  socklen_t len = sizeof(v);
  if (getsockopt(s, level, opt, &v, &len) != 0) return -12345;
  return v;
}

static int seti(int s, int level, int opt, int v) { return setsockopt(s, level, opt, &v, sizeof(v)); }

/* Passes UDP to port 4747: `l3` is where the IP header starts (14 with an
 * Ethernet header, 0 without). */
static int attach(int s, unsigned l3) {
  struct sock_filter code[] = {
      {BPF_LD | BPF_B | BPF_ABS, 0, 0, l3 + 9},
      {BPF_JMP | BPF_JEQ | BPF_K, 0, 3, IPPROTO_UDP},
      {BPF_LD | BPF_H | BPF_ABS, 0, 0, l3 + 22},
      {BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 4747},
      {BPF_RET | BPF_K, 0, 0, 0x40000},
      {BPF_RET | BPF_K, 0, 0, 0},
  };
  struct sock_fprog prog = {sizeof(code) / sizeof(code[0]), code};
  return setsockopt(s, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog));
}

static int bind_ll(int s, int ifindex, int proto) {
  struct sockaddr_ll a;
  memset(&a, 0, sizeof(a));
  a.sll_family = AF_PACKET;
  a.sll_ifindex = ifindex;
  a.sll_protocol = htons((uint16_t)proto);
  return bind(s, (struct sockaddr *)&a, sizeof(a));
}

static int add_mc(int s, int ifindex, int type, const unsigned char *addr, int alen) {
  struct packet_mreq m;
  memset(&m, 0, sizeof(m));
  m.mr_ifindex = ifindex;
  m.mr_type = (unsigned short)type;
  m.mr_alen = (unsigned short)alen;
  if (alen) memcpy(m.mr_address, addr, (size_t)alen);
  return setsockopt(s, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &m, sizeof(m));
}

/* lo's promiscuity count (IFLA_PROMISCUITY, through rtnetlink: the flags
 * that SIOCGIFFLAGS shows leave out what packet sockets asked for). */
static int lo_promisc(void) {
  int s = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
  struct {
    struct nlmsghdr h;
    struct ifinfomsg i;
  } req;
  memset(&req, 0, sizeof(req));
  req.h.nlmsg_len = sizeof(req);
  req.h.nlmsg_type = RTM_GETLINK;
  req.h.nlmsg_flags = NLM_F_REQUEST;
  req.i.ifi_family = AF_UNSPEC;
  req.i.ifi_index = (int)if_nametoindex("lo");
  char buf[8192];
  int count = -1;
  if (send(s, &req, sizeof(req), 0) == (ssize_t)sizeof(req)) {
    ssize_t n = recv(s, buf, sizeof(buf), 0);
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    if (n > 0 && NLMSG_OK(h, (size_t)n) && h->nlmsg_type == RTM_NEWLINK) {
      struct ifinfomsg *i = NLMSG_DATA(h);
      int left = (int)IFLA_PAYLOAD(h);
      for (struct rtattr *a = IFLA_RTA(i); RTA_OK(a, left); a = RTA_NEXT(a, left)) {
        if (a->rta_type == IFLA_PROMISCUITY) memcpy(&count, RTA_DATA(a), 4);
      }
    }
  }
  close(s);
  return count > 0;
}

static int lo_has_group(void) {
  FILE *f = fopen("/proc/net/dev_mcast", "r");
  if (f == NULL) return 0;
  char line[256];
  int found = 0;
  while (fgets(line, sizeof(line), f)) found |= strstr(line, " lo ") != NULL && strstr(line, "01005e0000fb") != NULL;
  fclose(f);
  return found;
}

static void udp_to(int port) {
  int u = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((uint16_t)port);
  sendto(u, "packet!", 7, 0, (struct sockaddr *)&a, sizeof(a));
  close(u);
}

/* Packets waiting on s, read (within `ms` for the first). */
static int drain(int s, int ms) {
  int n = 0;
  struct pollfd p = {s, POLLIN, 0};
  char buf[2048];
  while (poll(&p, 1, n ? 50 : ms) == 1) {
    if (recv(s, buf, sizeof(buf), MSG_DONTWAIT) < 0) break;
    n++;
  }
  return n;
}

static void name_of(int s, struct sockaddr_ll *a) {
  socklen_t len = sizeof(*a);
  memset(a, 0, sizeof(*a));
  getsockname(s, (struct sockaddr *)a, &len);
}

int main(int argc, char **argv) {
  const int queued = argc > 1 && strcmp(argv[1], "queued") == 0;
  const int ring = argc > 1 && strcmp(argv[1], "ring") == 0;
  const int lo = (int)if_nametoindex("lo");
  static const unsigned char group[6] = {0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb};
  int s1 = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
  int s2 = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_IP));
  int s3 = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_IP));
  int s4 = socket(AF_PACKET, SOCK_PACKET, htons(ETH_P_ALL));
  int s5 = socket(AF_PACKET, SOCK_RAW, 0);
  if (s1 < 0 || s2 < 0 || s3 < 0 || s4 < 0 || s5 < 0 || lo == 0) {
    printf("FAIL: socket: %s\n", strerror(errno));
    return 2;
  }
  const int fanout = (int)(77u | ((unsigned)(PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG) << 16));
  struct sockaddr_pkt pk;
  memset(&pk, 0, sizeof(pk));
  pk.spkt_family = AF_PACKET;
  strcpy((char *)pk.spkt_device, "lo");
  struct timeval tv = {1, 500000};
  int rc = attach(s1, 14) | bind_ll(s1, lo, ETH_P_ALL) | add_mc(s1, lo, PACKET_MR_PROMISC, NULL, 0) |
           add_mc(s1, lo, PACKET_MR_MULTICAST, group, 6) | attach(s2, 0) | attach(s3, 0) |
           seti(s2, SOL_PACKET, PACKET_FANOUT, fanout) | seti(s3, SOL_PACKET, PACKET_FANOUT, fanout) | attach(s4, 14) |
           bind(s4, (struct sockaddr *)&pk, sizeof(struct sockaddr)) | seti(s5, SOL_PACKET, PACKET_VERSION, TPACKET_V2) |
           seti(s5, SOL_PACKET, PACKET_RESERVE, 64) | seti(s5, SOL_PACKET, PACKET_AUXDATA, 1) |
           seti(s5, SOL_PACKET, PACKET_ORIGDEV, 1) | seti(s5, SOL_PACKET, PACKET_QDISC_BYPASS, 1) |
           seti(s5, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1) | seti(s5, SOL_SOCKET, SO_MARK, 5) |
           seti(s5, SOL_SOCKET, SO_PRIORITY, 3) | setsockopt(s5, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) |
           seti(s5, SOL_SOCKET, SO_TIMESTAMPNS, 1) | bind_ll(s5, lo, 0);
  if (rc != 0) {
    printf("FAIL: setting up: %s\n", strerror(errno));
    return 2;
  }
  if (ring) {
    int s6 = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    struct tpacket_req req = {4096, 4, 2048, 8};
    if (s6 < 0 || seti(s6, SOL_PACKET, PACKET_VERSION, TPACKET_V2) != 0 ||
        setsockopt(s6, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) != 0 ||
        mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, s6, 0) == MAP_FAILED) {
      printf("FAIL: ring: %s\n", strerror(errno));
      return 2;
    }
  }
  if (!lo_promisc() || !lo_has_group()) {
    printf("FAIL: memberships not made\n");
    return 2;
  }
  if (queued) {
    udp_to(4747);
    usleep(100000);
  }
  subject_ready();
  subject_wait();

  struct sockaddr_ll a;
  name_of(s1, &a);
  SUBJECT_CHECK(a.sll_ifindex == lo && ntohs(a.sll_protocol) == ETH_P_ALL, "s1 bound to %d protocol 0x%x",
                a.sll_ifindex, ntohs(a.sll_protocol));
  name_of(s2, &a);
  SUBJECT_CHECK(a.sll_ifindex == 0 && ntohs(a.sll_protocol) == ETH_P_IP, "s2 bound to %d protocol 0x%x",
                a.sll_ifindex, ntohs(a.sll_protocol));
  name_of(s5, &a);
  SUBJECT_CHECK(a.sll_ifindex == lo && a.sll_protocol == 0, "s5 bound to %d protocol 0x%x", a.sll_ifindex,
                ntohs(a.sll_protocol));
  SUBJECT_CHECK(geti(s2, SOL_PACKET, PACKET_FANOUT) == fanout, "s2 fanout 0x%x", geti(s2, SOL_PACKET, PACKET_FANOUT));
  SUBJECT_CHECK(geti(s3, SOL_PACKET, PACKET_FANOUT) == fanout, "s3 fanout 0x%x", geti(s3, SOL_PACKET, PACKET_FANOUT));
  SUBJECT_CHECK(geti(s5, SOL_PACKET, PACKET_VERSION) == TPACKET_V2, "s5 PACKET_VERSION");
  SUBJECT_CHECK(geti(s5, SOL_PACKET, PACKET_RESERVE) == 64, "s5 PACKET_RESERVE");
  SUBJECT_CHECK(geti(s5, SOL_PACKET, PACKET_AUXDATA) == 1, "s5 PACKET_AUXDATA");
  SUBJECT_CHECK(geti(s5, SOL_PACKET, PACKET_ORIGDEV) == 1, "s5 PACKET_ORIGDEV");
  SUBJECT_CHECK(geti(s5, SOL_PACKET, PACKET_QDISC_BYPASS) == 1, "s5 PACKET_QDISC_BYPASS");
  SUBJECT_CHECK(geti(s5, SOL_PACKET, PACKET_IGNORE_OUTGOING) == 1, "s5 PACKET_IGNORE_OUTGOING");
  SUBJECT_CHECK(geti(s5, SOL_SOCKET, SO_MARK) == 5, "s5 SO_MARK");
  SUBJECT_CHECK(geti(s5, SOL_SOCKET, SO_PRIORITY) == 3, "s5 SO_PRIORITY");
  SUBJECT_CHECK(geti(s5, SOL_SOCKET, SO_TIMESTAMPNS) == 1, "s5 SO_TIMESTAMPNS");
  struct timeval got = {0, 0};
  socklen_t len = sizeof(got);
  getsockopt(s5, SOL_SOCKET, SO_RCVTIMEO, &got, &len);
  SUBJECT_CHECK(got.tv_sec == 1 && got.tv_usec == 500000, "s5 SO_RCVTIMEO %ld.%06ld", (long)got.tv_sec,
                (long)got.tv_usec);
  SUBJECT_CHECK(lo_promisc(), "lo is not promiscuous: s1's membership is gone");
  SUBJECT_CHECK(lo_has_group(), "lo is not in 01:00:5e:00:00:fb: s1's membership is gone");

  if (queued) {
    SUBJECT_CHECK(drain(s1, 100) == 2, "s1's queued packet (out and in on lo) is gone");
    const int q2 = drain(s2, 100), q3 = drain(s3, 100);
    SUBJECT_CHECK(q2 + q3 == 1, "s2 and s3 had %d and %d packets queued, not 1 between them", q2, q3);
    SUBJECT_CHECK(drain(s4, 100) == 2, "s4's queued packets are gone");
  }
  udp_to(4748);
  udp_to(4747);
  /* On lo, s1 and s4 (every protocol) see the datagram go out and come
   * in; s2 and s3 (IP) see it come in, and fanout gives it to one. */
  const int n1 = drain(s1, 1000), n2 = drain(s2, 300), n3 = drain(s3, 100), n4 = drain(s4, 300);
  SUBJECT_CHECK(n1 == 2, "s1 got %d packets, not 2 (the filter, or its binding)", n1);
  SUBJECT_CHECK(n2 + n3 == 1, "s2 and s3 got %d and %d packets, not 1 between them (fanout, filters)", n2, n3);
  SUBJECT_CHECK(n4 == 2, "s4 got %d packets, not 2", n4);
  SUBJECT_CHECK(drain(s5, 100) == 0, "s5, with no protocol, got packets");
  return subject_verdict();
}
