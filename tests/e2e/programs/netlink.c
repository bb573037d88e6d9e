/*
 * Netlink sockets: an rtnetlink socket bound to port id 4242 with the
 * link and IPv4-address groups through bind() and the IPv6-route group through
 * NETLINK_ADD_MEMBERSHIP, with NETLINK_EXT_ACK and NETLINK_NO_ENOBUFS;
 * a second one left unbound; a generic-netlink one that has sent a
 * request and read its answer (autobound). Says READY; after SIGUSR1:
 * port ids, memberships and options are what they were, nothing is
 * queued, each socket still talks to the kernel (a link dump, a generic
 * netlink family lookup), and the bound one gets its answer at 4242.
 */
#include <stdint.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include "subject.h"

static uint32_t portid_of(int s) {
  struct sockaddr_nl a;
  socklen_t len = sizeof(a);
  memset(&a, 0, sizeof(a));
  if (getsockname(s, (struct sockaddr *)&a, &len) != 0) return 0;
  return a.nl_pid;
}

static uint32_t groups_of(int s) {
  uint32_t words[4] = {0};
  socklen_t len = sizeof(words);
  if (getsockopt(s, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, words, &len) != 0) return 0xffffffff;
  return words[0];
}

static int opt(int s, int o) {
  int v = -1;
  socklen_t len = sizeof(v);
  if (getsockopt(s, SOL_NETLINK, o, &v, &len) != 0) return -1;
  return v;
}

/* Sends an RTM_GETLINK dump request (sequence `seq`); true once the
 * kernel's whole answer came back. */
static int link_dump(int s, uint32_t seq) {
  struct {
    struct nlmsghdr h;
    struct rtgenmsg g;
  } req;
  memset(&req, 0, sizeof(req));
  req.h.nlmsg_len = sizeof(req);
  req.h.nlmsg_type = RTM_GETLINK;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.h.nlmsg_seq = seq;
  req.g.rtgen_family = AF_UNSPEC;
  if (send(s, &req, sizeof(req), 0) != (ssize_t)sizeof(req)) return 0;
  char buf[32768];
  for (;;) {
    ssize_t n = recv(s, buf, sizeof(buf), 0);
    if (n <= 0) return 0;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != seq) continue;
      if (h->nlmsg_type == NLMSG_DONE) return 1;
      if (h->nlmsg_type == NLMSG_ERROR) return 0;
    }
  }
}

static int genl_lookup(int s) {
  struct {
    struct nlmsghdr h;
    struct genlmsghdr g;
    struct nlattr a;
    char name[8];
  } req;
  memset(&req, 0, sizeof(req));
  req.h.nlmsg_len = sizeof(req);
  req.h.nlmsg_type = GENL_ID_CTRL;
  req.h.nlmsg_flags = NLM_F_REQUEST;
  req.h.nlmsg_seq = 7;
  req.g.cmd = CTRL_CMD_GETFAMILY;
  req.g.version = 1;
  req.a.nla_type = CTRL_ATTR_FAMILY_NAME;
  req.a.nla_len = sizeof(req.a) + sizeof("nlctrl");
  memcpy(req.name, "nlctrl", sizeof("nlctrl"));
  if (send(s, &req, sizeof(req), 0) != (ssize_t)sizeof(req)) return 0;
  char buf[8192];
  ssize_t n = recv(s, buf, sizeof(buf), 0);
  struct nlmsghdr *h = (struct nlmsghdr *)buf;
  return n > 0 && NLMSG_OK(h, (size_t)n) && h->nlmsg_type == GENL_ID_CTRL && h->nlmsg_seq == 7;
}

int main(void) {
  int bound = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  int unbound = socket(AF_NETLINK, SOCK_DGRAM, NETLINK_ROUTE);
  int genl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK, NETLINK_GENERIC);
  if (bound < 0 || unbound < 0 || genl < 0) return 2;
  struct sockaddr_nl a;
  memset(&a, 0, sizeof(a));
  a.nl_family = AF_NETLINK;
  a.nl_pid = 4242;
  a.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR;
  if (bind(bound, (struct sockaddr *)&a, sizeof(a)) != 0) {
    printf("FAIL: bind: %s\n", strerror(errno));
    return 2;
  }
  int one = 1, group = RTNLGRP_IPV6_ROUTE;
  if (setsockopt(bound, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) != 0 ||
      setsockopt(bound, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one)) != 0 ||
      setsockopt(bound, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof(one)) != 0) {
    printf("FAIL: setsockopt: %s\n", strerror(errno));
    return 2;
  }
  int flags = fcntl(genl, F_GETFL);
  fcntl(genl, F_SETFL, flags & ~O_NONBLOCK);
  if (!genl_lookup(genl)) return 2;
  fcntl(genl, F_SETFL, flags);
  const uint32_t genl_port = portid_of(genl);
  const uint32_t groups = groups_of(bound);
  subject_ready();
  subject_wait();

  SUBJECT_CHECK(portid_of(bound) == 4242, "bound port id %u", portid_of(bound));
  SUBJECT_CHECK(portid_of(unbound) == 0, "the unbound socket has port id %u", portid_of(unbound));
  SUBJECT_CHECK(genl_port != 0 && portid_of(genl) == genl_port, "generic port id %u, was %u", portid_of(genl),
                genl_port);
  SUBJECT_CHECK(groups == (RTMGRP_LINK | RTMGRP_IPV4_IFADDR | (1u << (RTNLGRP_IPV6_ROUTE - 1))) && groups_of(bound) == groups,
                "groups 0x%x, were 0x%x", groups_of(bound), groups);
  SUBJECT_CHECK(opt(bound, NETLINK_EXT_ACK) == 1 && opt(bound, NETLINK_NO_ENOBUFS) == 1 &&
                    opt(bound, NETLINK_PKTINFO) == 0,
                "options ext_ack %d no_enobufs %d pktinfo %d", opt(bound, NETLINK_EXT_ACK),
                opt(bound, NETLINK_NO_ENOBUFS), opt(bound, NETLINK_PKTINFO));
  int type = 0;
  socklen_t len = sizeof(type);
  SUBJECT_CHECK(getsockopt(bound, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_RAW, "type %d", type);
  SUBJECT_CHECK((fcntl(genl, F_GETFL) & O_NONBLOCK) && (fcntl(bound, F_GETFD) & FD_CLOEXEC),
                "flags lost");
  char buf[64];
  SUBJECT_CHECK(recv(genl, buf, sizeof(buf), MSG_DONTWAIT) < 0 && errno == EAGAIN, "something queued");
  SUBJECT_CHECK(link_dump(bound, 100), "the bound socket's link dump failed");
  SUBJECT_CHECK(link_dump(unbound, 200), "the unbound socket's link dump failed");
  fcntl(genl, F_SETFL, flags & ~O_NONBLOCK);
  SUBJECT_CHECK(genl_lookup(genl), "the generic netlink lookup failed");
  return subject_verdict();
}
