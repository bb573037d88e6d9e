/*
 * Holds a netlink socket (not supported yet): the dump must refuse it
 * before writing anything, and leave the process running. On SIGUSR1 it
 * checks the socket still works (the kernel answers a route request).
 */
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include "subject.h"

int main(void) {
  int s = socket(AF_NETLINK, SOCK_DGRAM, NETLINK_ROUTE);
  if (s != 3) return 2;
  subject_ready();
  subject_wait();
  struct {
    struct nlmsghdr h;
    struct rtgenmsg g;
  } req;
  memset(&req, 0, sizeof(req));
  req.h.nlmsg_len = sizeof(req);
  req.h.nlmsg_type = RTM_GETLINK;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.g.rtgen_family = AF_UNSPEC;
  char buf[8192];
  SUBJECT_CHECK(send(s, &req, sizeof(req), 0) == (ssize_t)sizeof(req) && recv(s, buf, sizeof(buf), 0) > 0,
                "the socket stopped working");
  return subject_verdict();
}
