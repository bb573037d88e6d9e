/*
 * Credentials of one thread only: a second thread calls the raw
 * setresgid(2000, 2001, 2002), setgroups({3000}) and setresuid(1000, 1001,
 * 1002) (glibc's wrappers would change every thread), which also empties
 * its capabilities. After SIGUSR1 that thread still has exactly those,
 * and the main thread is still root with its capabilities.
 *
 * Needs uids and gids the sandbox's user namespace does not map: a host
 * test.
 */
#define _GNU_SOURCE
#include <grp.h>
#include <pthread.h>
#include <sys/syscall.h>

#include "subject.h"

static int cmd[2], done[2];

static int check_ids(uid_t r, uid_t e, uid_t s, gid_t gr, gid_t ge, gid_t gs) {
  uid_t ur, ue, us;
  gid_t g1, g2, g3;
  if (syscall(SYS_getresuid, &ur, &ue, &us) != 0 || syscall(SYS_getresgid, &g1, &g2, &g3) != 0) return 0;
  return ur == r && ue == e && us == s && g1 == gr && g2 == ge && g3 == gs;
}

static unsigned long long cap_eff(void) {
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/thread-self/status");
  FILE *f = fopen(path, "r");
  unsigned long long v = ~0ull;
  while (f && fgets(line, sizeof(line), f)) {
    if (sscanf(line, "CapEff: %llx", &v) == 1) break;
  }
  if (f) fclose(f);
  return v;
}

static void *worker(void *arg) {
  (void)arg;
  subject_block_usr1();
  gid_t g = 3000;
  if (syscall(SYS_setresgid, 2000, 2001, 2002) != 0 || syscall(SYS_setgroups, 1, &g) != 0 ||
      syscall(SYS_setresuid, 1000, 1001, 1002) != 0) {
    printf("FAIL: the worker's credentials: %s\n", strerror(errno));
    exit(1);
  }
  char c = 'i';
  if (write(done[1], &c, 1) != 1) exit(1);
  while (read(cmd[0], &c, 1) != 1) {
  }
  gid_t groups[4];
  int n = (int)syscall(SYS_getgroups, 4, groups);
  c = check_ids(1000, 1001, 1002, 2000, 2001, 2002) && n == 1 && groups[0] == 3000 && cap_eff() == 0
          ? 'y' : 'n';
  if (write(done[1], &c, 1) != 1) exit(1);
  return NULL;
}

int main(void) {
  if (pipe(cmd) != 0 || pipe(done) != 0) return 1;
  const unsigned long long caps = cap_eff();
  pthread_t t;
  pthread_create(&t, NULL, worker, NULL);
  char c;
  if (read(done[0], &c, 1) != 1) return 1;
  subject_ready();
  subject_wait();
  SUBJECT_CHECK(check_ids(0, 0, 0, 0, 0, 0), "main: no longer root");
  SUBJECT_CHECK(cap_eff() == caps, "main: CapEff %llx, not %llx", cap_eff(), caps);
  c = 'g';
  if (write(cmd[1], &c, 1) != 1 || read(done[0], &c, 1) != 1) return 1;
  SUBJECT_CHECK(c == 'y', "worker: its own credentials are lost");
  pthread_join(t, NULL);
  return subject_verdict();
}
