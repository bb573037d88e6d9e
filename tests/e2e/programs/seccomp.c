/*
 * seccomp filters, per thread: with no_new_privs set, the main thread
 * installs four filters (getppid fails with EPERM; getpgrp with EACCES,
 * SECCOMP_FILTER_FLAG_LOG; getppid with ENOTTY, which wins being newer;
 * membarrier kills), a second thread one of its own (getsid fails with
 * ENOTTY), and a child forked after the main thread's filters has them
 * too. After SIGUSR1 each thread and the child find their calls
 * filtered as before, and nothing more, with the same filter counts.
 */
#define _GNU_SOURCE
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "subject.h"

static int install_action(int nr, unsigned action, unsigned flags) {
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, action),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof(f) / sizeof(f[0]), f};
  return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

static int install(int nr, int err, unsigned flags) {
  return install_action(nr, SECCOMP_RET_ERRNO | (unsigned)err, flags);
}

/* -errno of syscall nr (no arguments beyond 0), or its result. */
static long call(long nr) {
  long r = syscall(nr, 0);
  return r < 0 ? -errno : r;
}

static int filters_of(pid_t tid) {
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/self/task/%d/status", tid);
  FILE *f = fopen(path, "r");
  int n = -1;
  while (f && fgets(line, sizeof(line), f)) {
    if (sscanf(line, "Seccomp_filters: %d", &n) == 1) break;
  }
  if (f) fclose(f);
  return n;
}

static int cmd[2], done[2];
static pid_t worker_tid;

static void *worker(void *arg) {
  (void)arg;
  subject_block_usr1();
  worker_tid = (pid_t)syscall(SYS_gettid);
  if (install(SYS_getsid, ENOTTY, 0) != 0) _exit(20);
  char c = 'i';
  if (write(done[1], &c, 1) != 1) _exit(21);
  while (read(cmd[0], &c, 1) != 1) {
  }
  /* After the restore: its own filter, not the main thread's. */
  c = call(SYS_getsid) == -ENOTTY && call(SYS_getppid) >= 0 && call(SYS_getpgrp) >= 0 ? 'y' : 'n';
  if (write(done[1], &c, 1) != 1) _exit(22);
  return NULL;
}

int main(void) {
  if (pipe(cmd) != 0 || pipe(done) != 0) return 1;
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 1;
  pthread_t t;
  pthread_create(&t, NULL, worker, NULL);
  char c;
  if (read(done[0], &c, 1) != 1) return 1;
  /* The newest of two filters with the same action wins: getppid fails
   * with ENOTTY, not EPERM, only while they are in this order. membarrier,
   * which this program never calls and the dump's own probes do, kills. */
  if (install(SYS_getppid, EPERM, 0) != 0 ||
      install(SYS_getpgrp, EACCES, SECCOMP_FILTER_FLAG_LOG) != 0 ||
      install(SYS_getppid, ENOTTY, 0) != 0 ||
      install_action(SYS_membarrier, SECCOMP_RET_KILL_PROCESS, 0) != 0) {
    printf("FAIL: seccomp: %s\n", strerror(errno));
    return 1;
  }
  subject_install();
  pid_t child = fork();
  if (child == 0) {
    subject_wait();
    int ok = call(SYS_getppid) == -ENOTTY && call(SYS_getpgrp) == -EACCES && call(SYS_getsid) >= 0;
    _exit(ok ? 0 : 3);
  }
  printf("READY %d %d\n", getpid(), child);
  fflush(stdout);
  subject_wait();

  SUBJECT_CHECK(call(SYS_getppid) == -ENOTTY, "main: getppid gives %ld", call(SYS_getppid));
  SUBJECT_CHECK(call(SYS_getpgrp) == -EACCES, "main: getpgrp gives %ld", call(SYS_getpgrp));
  SUBJECT_CHECK(call(SYS_getsid) >= 0, "main: getsid gives %ld", call(SYS_getsid));
  SUBJECT_CHECK(filters_of((pid_t)syscall(SYS_gettid)) == 4, "main: %d filters",
                filters_of((pid_t)syscall(SYS_gettid)));
  SUBJECT_CHECK(filters_of(worker_tid) == 1, "worker: %d filters", filters_of(worker_tid));
  c = 'g';
  if (write(cmd[1], &c, 1) != 1 || read(done[0], &c, 1) != 1) return 1;
  SUBJECT_CHECK(c == 'y', "worker: its calls are not filtered as they were");
  kill(child, SIGUSR1);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  SUBJECT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: status 0x%x", status);
  return subject_verdict();
}
