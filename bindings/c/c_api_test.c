/* The C ABI, compiled as C and linked against libckpt.so only: the codes
 * and messages, the refusals of what the library does not know (unknown
 * flag bits, reserved fields, struct tails), the versioned structs, and
 * the calling process left as it was. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt/ckpt.h"

static int failures;

#define CHECK(cond)                                              \
  do {                                                           \
    if (!(cond)) {                                               \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                \
    }                                                            \
  } while (0)

/* A call refused with -EINVAL whose message names `what`. */
#define CHECK_EINVAL(err, what)                                             \
  do {                                                                      \
    int err_ = (err);                                                       \
    if (err_ != -EINVAL || strstr(ckpt_last_error(), (what)) == NULL) {     \
      fprintf(stderr, "FAIL %s:%d: %s gave %d \"%s\", not -EINVAL naming %s\n", \
              __FILE__, __LINE__, #err, err_, ckpt_last_error(), (what));   \
      failures++;                                                           \
    }                                                                       \
  } while (0)

/* A dump of a PID that does not exist, with options the library accepts. */
#define CHECK_NO_SUCH_TASK(err)                                               \
  do {                                                                        \
    int err_ = (err);                                                         \
    if (err_ != -ESRCH && err_ != -ENOENT) {                                  \
      fprintf(stderr, "FAIL %s:%d: %s gave %d \"%s\", not a missing task\n",  \
              __FILE__, __LINE__, #err, err_, ckpt_last_error());             \
      failures++;                                                             \
    }                                                                         \
  } while (0)

static const pid_t kNoSuchPid = 999999;

static void abi_version(void) {
  CHECK(ckpt_abi_version() == CKPT_ABI_VERSION);
  CHECK(CKPT_ABI_VERSION == 3);
}

static void strerror_names_codes(void) {
  CHECK(strcmp(ckpt_strerror(0), "success") == 0);
  CHECK(strlen(ckpt_strerror(-ESRCH)) > 0);
  CHECK(strcmp(ckpt_strerror(-EPIPE), ckpt_strerror(-EINVAL)) != 0);
  CHECK(strcmp(ckpt_strerror(INT_MIN), "unknown error") == 0);
  CHECK(strcmp(ckpt_strerror(-100000), "unknown error") == 0);
}

static struct ckpt_dump_opts dump_opts(void) {
  struct ckpt_dump_opts opts;
  memset(&opts, 0, sizeof(opts));
  opts.size = sizeof(opts);
  return opts;
}

static struct ckpt_restore_opts restore_opts(void) {
  struct ckpt_restore_opts opts;
  memset(&opts, 0, sizeof(opts));
  opts.size = sizeof(opts);
  return opts;
}

/* A pipe holding bytes that are no image, its write end closed. */
static int garbage_fd(void) {
  int p[2];
  CHECK(pipe(p) == 0);
  CHECK(write(p[1], "garbage garbage garbage garbage", 31) == 31);
  close(p[1]);
  return p[0];
}

/* A restore that got past the options: it read the image and refused it. */
static int restore_garbage(const struct ckpt_restore_opts *opts) {
  int fd = garbage_fd();
  pid_t root = 0;
  int err = ckpt_restore_tree(fd, opts, &root);
  close(fd);
  CHECK(root == 0);
  return err;
}

static void dump_of_a_missing_pid_fails_with_a_message(void) {
  struct ckpt_dump_opts opts = dump_opts();
  int err = ckpt_checkpoint_tree(kNoSuchPid, 1, &opts);
  CHECK_NO_SUCH_TASK(err);
  CHECK(strlen(ckpt_last_error()) > 0);
  fprintf(stderr, "dump of pid %d: %d %s\n", kNoSuchPid, err, ckpt_last_error());
  CHECK_NO_SUCH_TASK(ckpt_checkpoint_tree(kNoSuchPid, 1, NULL)); /* NULL: the defaults */
}

static void restore_of_garbage_fails_with_a_message(void) {
  struct ckpt_restore_opts opts = restore_opts();
  int err = restore_garbage(&opts);
  CHECK(err < 0);
  CHECK(strstr(ckpt_last_error(), "not a libckpt image") != NULL);
  fprintf(stderr, "restore of garbage: %d %s\n", err, ckpt_last_error());
  CHECK(restore_garbage(NULL) < 0);
  CHECK(strstr(ckpt_last_error(), "not a libckpt image") != NULL);
}

/* ---------------------------------------------------- flags and reserved */

static void unknown_dump_flags_are_refused(void) {
  struct ckpt_dump_opts opts = dump_opts();
  opts.flags = CKPT_DUMP_LEAVE_RUNNING | (1u << 31);
  CHECK_EINVAL(ckpt_checkpoint_tree(kNoSuchPid, 1, &opts), "ckpt_dump_opts.flags");
  CHECK(strstr(ckpt_last_error(), "0x80000000") != NULL);
  opts.flags = 1u << 3;
  CHECK_EINVAL(ckpt_checkpoint_tree(kNoSuchPid, 1, &opts), "unknown bits 0x8");
}

static void nonzero_dump_reserved_is_refused(void) {
  struct ckpt_dump_opts opts = dump_opts();
  opts.reserved = 0x40;
  CHECK_EINVAL(ckpt_checkpoint_tree(kNoSuchPid, 1, &opts), "ckpt_dump_opts.reserved is 0x40");
}

static void unknown_restore_flags_are_refused(void) {
  struct ckpt_restore_opts opts = restore_opts();
  opts.flags = 1u << 6;
  CHECK_EINVAL(restore_garbage(&opts), "ckpt_restore_opts.flags has unknown bits 0x40");
  opts.flags = CKPT_RESTORE_IPC_NS_NEW | CKPT_RESTORE_IPC_NS_CURRENT;
  CHECK_EINVAL(restore_garbage(&opts), "exclude each other");
}

static void nonzero_restore_reserved_is_refused(void) {
  struct ckpt_restore_opts opts = restore_opts();
  opts.reserved = 1;
  CHECK_EINVAL(restore_garbage(&opts), "ckpt_restore_opts.reserved is 0x1");
}

static void a_stats_struct_without_its_size_is_refused(void) {
  struct ckpt_dump_stats stats;
  memset(&stats, 0, sizeof(stats));
  struct ckpt_dump_opts opts = dump_opts();
  opts.stats = &stats;
  CHECK_EINVAL(ckpt_checkpoint_tree(kNoSuchPid, 1, &opts), "ckpt_dump_opts.stats->size is 0");
  struct ckpt_restore_stats rstats;
  memset(&rstats, 0, sizeof(rstats));
  struct ckpt_restore_opts ropts = restore_opts();
  ropts.stats = &rstats;
  CHECK_EINVAL(restore_garbage(&ropts), "ckpt_restore_opts.stats->size is 0");
}

/* ---------------------------------------------------- versioned structs */

/* An older caller passes a smaller struct; the library reads only `size`. */
static void older_smaller_opts_are_accepted(void) {
  struct ckpt_dump_opts opts;
  memset(&opts, 0xff, sizeof(opts));
  opts.size = sizeof(size_t) + sizeof(uint32_t);
  opts.flags = 0;
  CHECK_NO_SUCH_TASK(ckpt_checkpoint_tree(kNoSuchPid, 1, &opts));
}

/* ckpt_dump_opts and ckpt_restore_opts as a caller built against ABI 1
 * (before external, nr_external, cancel, inherit_fds) had them: whatever
 * lies beyond in its memory is not read. */
struct abi1_opts {
  size_t size;
  uint32_t flags;
  uint32_t reserved;
  void *stats;
  unsigned char beyond[32];
};

static void abi1_opts_are_accepted(void) {
  struct abi1_opts old;
  memset(&old, 0xff, sizeof(old));
  old.size = offsetof(struct abi1_opts, beyond);
  old.flags = 0;
  old.reserved = 0;
  old.stats = NULL;
  CHECK(old.size == offsetof(struct ckpt_dump_opts, external));
  CHECK(old.size == offsetof(struct ckpt_restore_opts, inherit_fds));
  CHECK_NO_SUCH_TASK(ckpt_checkpoint_tree(kNoSuchPid, 1, (const struct ckpt_dump_opts *)&old));
  CHECK(restore_garbage((const struct ckpt_restore_opts *)&old) < 0);
  CHECK(strstr(ckpt_last_error(), "not a libckpt image") != NULL);
}

/* A newer caller's struct: accepted while its unknown tail is zero. */
static void newer_larger_opts_need_a_zero_tail(void) {
  struct {
    struct ckpt_dump_opts opts;
    uint64_t newer[2];
  } big;
  memset(&big, 0, sizeof(big));
  big.opts.size = sizeof(big);
  CHECK_NO_SUCH_TASK(ckpt_checkpoint_tree(kNoSuchPid, 1, &big.opts));
  big.newer[1] = 1;
  CHECK_EINVAL(ckpt_checkpoint_tree(kNoSuchPid, 1, &big.opts), "ckpt_dump_opts.size is");
  CHECK(strstr(ckpt_last_error(), "byte") != NULL);

  struct {
    struct ckpt_restore_opts opts;
    uint64_t newer;
  } rbig;
  memset(&rbig, 0, sizeof(rbig));
  rbig.opts.size = sizeof(rbig);
  CHECK(restore_garbage(&rbig.opts) < 0);
  CHECK(strstr(ckpt_last_error(), "not a libckpt image") != NULL);
  rbig.newer = 0x100;
  CHECK_EINVAL(restore_garbage(&rbig.opts), "ckpt_restore_opts.size is");
}

static void sizes_that_cut_a_field_are_refused(void) {
  struct ckpt_dump_opts opts = dump_opts();
  opts.size = 0; /* forgotten */
  CHECK_EINVAL(ckpt_checkpoint_tree(kNoSuchPid, 1, &opts), "does not cover flags");
  opts.size = sizeof(size_t);
  CHECK_EINVAL(ckpt_checkpoint_tree(kNoSuchPid, 1, &opts), "does not cover flags");
  opts.size = offsetof(struct ckpt_dump_opts, external) + 4; /* half a pointer */
  CHECK_EINVAL(ckpt_checkpoint_tree(kNoSuchPid, 1, &opts), "ends inside a field");
  opts.size = (size_t)1 << 40; /* garbage */
  CHECK_EINVAL(ckpt_checkpoint_tree(kNoSuchPid, 1, &opts), "larger than any version");

  struct ckpt_restore_opts ropts = restore_opts();
  ropts.size = offsetof(struct ckpt_restore_opts, nr_inherit_fds) + 2;
  CHECK_EINVAL(restore_garbage(&ropts), "ends inside a field");
}

/* ---------------------------------------------------- ABI 2 fields */

static void external_names_are_checked(void) {
  struct ckpt_dump_opts opts = dump_opts();
  opts.nr_external = 2;
  CHECK_EINVAL(ckpt_checkpoint_tree(kNoSuchPid, 1, &opts),
               "ckpt_dump_opts.external is NULL but ckpt_dump_opts.nr_external is 2");
  const char *with_null[] = {"pipe:[1]", NULL};
  opts.external = with_null;
  CHECK_EINVAL(ckpt_checkpoint_tree(kNoSuchPid, 1, &opts), "ckpt_dump_opts.external[1] is NULL");
  const char *with_empty[] = {"", "pipe:[1]"};
  opts.external = with_empty;
  CHECK_EINVAL(ckpt_checkpoint_tree(kNoSuchPid, 1, &opts), "ckpt_dump_opts.external[0] is empty");
  /* Well-formed names get past the options to the dump itself. */
  const char *names[] = {"pipe:[12345]", "pipe:[67890]"};
  opts.external = names;
  CHECK_NO_SUCH_TASK(ckpt_checkpoint_tree(kNoSuchPid, 1, &opts));
  opts.external = NULL;
  opts.nr_external = 0;
  CHECK_NO_SUCH_TASK(ckpt_checkpoint_tree(kNoSuchPid, 1, &opts));
}

static void inherit_fds_are_checked(void) {
  struct ckpt_restore_opts opts = restore_opts();
  opts.nr_inherit_fds = 1;
  CHECK_EINVAL(restore_garbage(&opts), "ckpt_restore_opts.inherit_fds is NULL");

  struct ckpt_inherit_fd fds[2] = {{0, 0, "pipe:[1]"}, {-1, 0, "pipe:[2]"}};
  opts.inherit_fds = fds;
  opts.nr_inherit_fds = 2;
  CHECK_EINVAL(restore_garbage(&opts), "ckpt_restore_opts.inherit_fds[1].fd is -1");
  fds[1].fd = 0;
  fds[1].reserved = 7;
  CHECK_EINVAL(restore_garbage(&opts), "ckpt_restore_opts.inherit_fds[1].reserved is 0x7");
  fds[1].reserved = 0;
  fds[1].name = NULL;
  CHECK_EINVAL(restore_garbage(&opts), "ckpt_restore_opts.inherit_fds[1].name is NULL");
  fds[1].name = "";
  CHECK_EINVAL(restore_garbage(&opts), "ckpt_restore_opts.inherit_fds[1].name is empty");

  /* An fd that is not open: the real errno. */
  const int closed = 1000;
  CHECK(fcntl(closed, F_GETFD) < 0);
  fds[1].name = "pipe:[2]";
  fds[1].fd = closed;
  int err = restore_garbage(&opts);
  CHECK(err == -EBADF);
  CHECK(strstr(ckpt_last_error(), "inherit_fds[1].fd") != NULL);

  /* Well-formed replacements and CKPT_RESTORE_ALLOW_CHANGED_FILES get past
   * the options to the image. */
  fds[1].fd = 1;
  opts.flags = CKPT_RESTORE_ALLOW_CHANGED_FILES;
  CHECK(restore_garbage(&opts) < 0);
  CHECK(strstr(ckpt_last_error(), "not a libckpt image") != NULL);
}

/* ---------------------------------------------------- exceptions */

/* Out of memory inside the library is -ENOMEM with a message, not an
 * exception through C: in a child whose address space is almost full, a
 * list of a million external names cannot be copied. */
static void out_of_memory_is_enomem(void) {
  pid_t pid = fork();
  if (pid == 0) {
    const size_t n = (size_t)1 << 20; /* a million names: 32 MiB of std::string */
    const char **names = malloc(n * sizeof(*names));
    if (names == NULL) _exit(2);
    for (size_t i = 0; i < n; i++) names[i] = "pipe:[1]";
    unsigned long pages = 0;
    FILE *statm = fopen("/proc/self/statm", "r");
    if (statm == NULL || fscanf(statm, "%lu", &pages) != 1) _exit(2);
    fclose(statm);
    struct rlimit as = {pages * (unsigned long)sysconf(_SC_PAGESIZE) + (8ul << 20), RLIM_INFINITY};
    if (setrlimit(RLIMIT_AS, &as) != 0) _exit(2);
    struct ckpt_dump_opts opts = dump_opts();
    opts.external = names;
    opts.nr_external = n;
    int err = ckpt_checkpoint_tree(kNoSuchPid, 1, &opts);
    fprintf(stderr, "dump with its memory gone: %d %s\n", err, ckpt_last_error());
    _exit(err == -ENOMEM && strstr(ckpt_last_error(), "out of memory") != NULL ? 0 : 1);
  }
  int status;
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* ---------------------------------------------------- real processes */

/* A child that keeps a counter and a pattern in memory, then checks them
 * on SIGUSR1. */
static volatile sig_atomic_t go;
static void on_usr1(int sig) {
  (void)sig;
  go = 1;
}

static void child_main(int ready_fd) {
  signal(SIGUSR1, on_usr1);
  static unsigned char pattern[1 << 20];
  for (size_t i = 0; i < sizeof(pattern); i++) pattern[i] = (unsigned char)(i * 7);
  int null = open("/dev/null", O_RDWR);
  dup2(null, 0);
  dup2(null, 1);
  dup2(null, 2);
  /* Every fd but 0-2 and the ready pipe, which it closes once it runs
   * its loop: the parent then sees EOF. */
  if (ready_fd > 3) close_range(3, (unsigned)ready_fd - 1, 0);
  close_range((unsigned)ready_fd + 1, ~0u, 0);
  int ready = ready_fd;
  volatile unsigned long spins = 0;
  while (!go) {
    spins++;
    if (ready >= 0) {
      close(ready);
      ready = -1;
    }
  }
  for (size_t i = 0; i < sizeof(pattern); i++) {
    if (pattern[i] != (unsigned char)(i * 7)) _exit(3);
  }
  _exit(spins > 0 ? 0 : 4);
}

/* Forks the child and returns once it runs its loop, with fds 0-2 only. */
static pid_t start_child(void) {
  int ready[2];
  CHECK(pipe(ready) == 0);
  pid_t child = fork();
  if (child == 0) {
    close(ready[0]);
    child_main(ready[1]);
  }
  close(ready[1]);
  char c;
  CHECK(read(ready[0], &c, 1) == 0);
  close(ready[0]);
  return child;
}

/* The child was resumed intact: it checks its memory and exits 0. */
static void finish_child(pid_t child) {
  int status;
  CHECK(kill(child, SIGUSR1) == 0);
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "child %d: status 0x%x\n", child, status);
  }
}

/* What a call may change in the calling process and must put back. */
struct process_state {
  int fds; /* open, /proc/self/fd's own aside */
  int subreaper;
  struct rlimit nofile;
  sigset_t mask;
  char ipc_ns[64];
};

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  if (d == NULL) return -1;
  for (struct dirent *e; (e = readdir(d)) != NULL;) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

static void take_state(struct process_state *s) {
  memset(s, 0, sizeof(*s));
  s->fds = count_fds();
  CHECK(prctl(PR_GET_CHILD_SUBREAPER, &s->subreaper, 0, 0, 0) == 0);
  CHECK(getrlimit(RLIMIT_NOFILE, &s->nofile) == 0);
  CHECK(pthread_sigmask(SIG_SETMASK, NULL, &s->mask) == 0);
  CHECK(readlink("/proc/thread-self/ns/ipc", s->ipc_ns, sizeof(s->ipc_ns) - 1) > 0);
}

static void check_state_unchanged(const struct process_state *before, const char *call) {
  struct process_state now;
  take_state(&now);
  int same_mask = 1;
  for (int sig = 1; sig < 65; sig++) {
    same_mask &= sigismember(&now.mask, sig) == sigismember(&before->mask, sig);
  }
  if (now.fds != before->fds || now.subreaper != before->subreaper || now.nofile.rlim_cur != before->nofile.rlim_cur ||
      now.nofile.rlim_max != before->nofile.rlim_max || !same_mask ||
      strcmp(now.ipc_ns, before->ipc_ns) != 0) {
    fprintf(stderr, "FAIL: %s changed the caller: fds %d -> %d, subreaper %d -> %d, "
            "NOFILE %lu -> %lu, mask %s, ipc %s -> %s\n", call, before->fds, now.fds,
            before->subreaper, now.subreaper,
            (unsigned long)before->nofile.rlim_cur, (unsigned long)now.nofile.rlim_cur,
            same_mask ? "same" : "changed", before->ipc_ns, now.ipc_ns);
    failures++;
  }
  sigset_t pending;
  sigpending(&pending);
  CHECK(!sigismember(&pending, SIGPIPE));
}

/* A dump whose reader has gone fails with the real errno, -EPIPE; the
 * caller (SIGPIPE at its default action) lives, and the tree resumes. */
static void dump_into_a_pipe_without_reader_is_epipe(void) {
  CHECK(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
  pid_t child = start_child();
  int p[2];
  CHECK(pipe(p) == 0);
  close(p[0]);
  struct process_state before;
  take_state(&before);
  struct ckpt_dump_opts opts = dump_opts();
  int err = ckpt_checkpoint_tree(child, p[1], &opts);
  fprintf(stderr, "dump into a pipe without reader: %d %s\n", err, ckpt_last_error());
  CHECK(err == -EPIPE);
  check_state_unchanged(&before, "a dump into a broken pipe");
  close(p[1]);
  finish_child(child);
}

/* The cancel flag reaches the dump: it stops and resumes the tree. */
static void a_cancelled_dump_is_ecanceled(void) {
  pid_t child = start_child();
  int fd = open("/dev/null", O_WRONLY);
  CHECK(fd >= 0);
  volatile int cancel = 1;
  struct ckpt_dump_opts opts = dump_opts();
  opts.cancel = &cancel;
  int err = ckpt_checkpoint_tree(child, fd, &opts);
  fprintf(stderr, "cancelled dump: %d %s\n", err, ckpt_last_error());
  CHECK(err == -ECANCELED);
  close(fd);
  finish_child(child);
}

static void dump_and_restore_a_real_process(void) {
  pid_t child = start_child();
  char path[4096];
  snprintf(path, sizeof(path), "%s/c_api.img", getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp");
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  CHECK(fd >= 0);
  struct ckpt_dump_stats stats;
  memset(&stats, 0, sizeof(stats));
  stats.size = sizeof(stats);
  struct ckpt_dump_opts opts = dump_opts();
  opts.stats = &stats;
  int err = ckpt_checkpoint_tree(child, fd, &opts);
  close(fd);
  if (err < 0) fprintf(stderr, "dump: %s\n", ckpt_last_error());
  CHECK(err == 0);
  CHECK(strcmp(ckpt_last_error(), "") == 0);
  CHECK(stats.size == sizeof(stats));
  CHECK(stats.tasks == 1);
  CHECK(stats.pages_written >= 256);
  int status;
  CHECK(waitpid(child, &status, 0) == child); /* the dump killed it */
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

  /* A low soft fd limit makes the restore raise it; it is put back. */
  struct rlimit nofile, low;
  CHECK(getrlimit(RLIMIT_NOFILE, &nofile) == 0);
  low = nofile;
  if (low.rlim_max == RLIM_INFINITY || low.rlim_max > 1024) low.rlim_cur = 100;
  CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
  struct process_state before;
  take_state(&before);

  fd = open(path, O_RDONLY);
  /* An older caller's stats struct: only its first figure is written. */
  struct ckpt_restore_stats rstats;
  memset(&rstats, 0xee, sizeof(rstats));
  rstats.size = offsetof(struct ckpt_restore_stats, pages_written);
  struct ckpt_restore_opts ropts = restore_opts();
  ropts.stats = &rstats;
  pid_t root = 0;
  err = ckpt_restore_tree(fd, &ropts, &root);
  close(fd);
  if (err < 0) fprintf(stderr, "restore: %s\n", ckpt_last_error());
  CHECK(err == 0);
  CHECK(root == child);
  CHECK(rstats.size == offsetof(struct ckpt_restore_stats, pages_written));
  CHECK(rstats.tasks == 1);
  CHECK(rstats.pages_written == 0xeeeeeeeeeeeeeeeeull);
  check_state_unchanged(&before, "a restore");
  CHECK(setrlimit(RLIMIT_NOFILE, &nofile) == 0);
  if (err == 0) finish_child(root);
  unlink(path);
}

int main(void) {
  abi_version();
  strerror_names_codes();
  dump_of_a_missing_pid_fails_with_a_message();
  restore_of_garbage_fails_with_a_message();
  unknown_dump_flags_are_refused();
  nonzero_dump_reserved_is_refused();
  unknown_restore_flags_are_refused();
  nonzero_restore_reserved_is_refused();
  a_stats_struct_without_its_size_is_refused();
  older_smaller_opts_are_accepted();
  abi1_opts_are_accepted();
  newer_larger_opts_need_a_zero_tail();
  sizes_that_cut_a_field_are_refused();
  external_names_are_checked();
  inherit_fds_are_checked();
  out_of_memory_is_enomem();
  dump_into_a_pipe_without_reader_is_epipe();
  a_cancelled_dump_is_ecanceled();
  dump_and_restore_a_real_process();
  if (failures) {
    printf("FAIL: %d checks\n", failures);
    return 1;
  }
  printf("PASS\n");
  return 0;
}
