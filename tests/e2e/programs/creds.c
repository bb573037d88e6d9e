/*
 * Credentials: the subject (started as root) takes uid 1000, gid 1000,
 * groups {1001, 1002}, keeps CAP_NET_BIND_SERVICE only (permitted and
 * effective), then checks after the restore that all of it is as it was.
 */
#define _GNU_SOURCE
#include <grp.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "subject.h"

static void caps(unsigned long long *eff, unsigned long long *prm) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  syscall(SYS_capget, &h, d);
  *eff = d[0].effective | (unsigned long long)d[1].effective << 32;
  *prm = d[0].permitted | (unsigned long long)d[1].permitted << 32;
}

int main(void) {
  gid_t groups[] = {1001, 1002};
  if (setgroups(2, groups) || setresgid(1000, 1000, 1000)) return 2;
  prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0);
  if (setresuid(1000, 1000, 1000)) return 2;
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2] = {{1u << CAP_NET_BIND_SERVICE, 1u << CAP_NET_BIND_SERVICE, 0},
                                        {0, 0, 0}};
  if (syscall(SYS_capset, &h, d)) return 3;
  subject_ready();
  subject_wait();
  uid_t r, e, s;
  gid_t gr, ge, gs;
  getresuid(&r, &e, &s);
  getresgid(&gr, &ge, &gs);
  SUBJECT_CHECK(r == 1000 && e == 1000 && s == 1000, "uids %d %d %d", r, e, s);
  SUBJECT_CHECK(gr == 1000 && ge == 1000 && gs == 1000, "gids %d %d %d", gr, ge, gs);
  gid_t now[8];
  int n = getgroups(8, now);
  SUBJECT_CHECK(n == 2 && now[0] == 1001 && now[1] == 1002, "%d supplementary groups", n);
  unsigned long long eff, prm;
  caps(&eff, &prm);
  SUBJECT_CHECK(eff == 1ull << CAP_NET_BIND_SERVICE && prm == 1ull << CAP_NET_BIND_SERVICE,
                "capabilities eff %llx prm %llx", eff, prm);
  SUBJECT_CHECK(prctl(PR_GET_KEEPCAPS) == 1, "keepcaps lost");
  SUBJECT_CHECK(prctl(PR_GET_DUMPABLE) == 0, "dumpable is %d", prctl(PR_GET_DUMPABLE));
  return subject_verdict();
}
