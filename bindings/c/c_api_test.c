/* The C ABI, compiled as C and linked against libckpt.so only. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static void abi_version(void) { CHECK(ckpt_abi_version() == CKPT_ABI_VERSION); }

static void strerror_names_codes(void) {
  CHECK(strcmp(ckpt_strerror(0), "success") == 0);
  CHECK(strlen(ckpt_strerror(-ESRCH)) > 0);
}

static void dump_of_a_missing_pid_fails_with_a_message(void) {
  struct ckpt_dump_opts opts;
  memset(&opts, 0, sizeof(opts));
  opts.size = sizeof(opts);
  int err = ckpt_checkpoint_tree(999999, 1, &opts);
  CHECK(err < 0);
  CHECK(strlen(ckpt_last_error()) > 0);
  fprintf(stderr, "dump of pid 999999: %d %s\n", err, ckpt_last_error());
}

static void restore_of_garbage_fails_with_a_message(void) {
  int p[2];
  CHECK(pipe(p) == 0);
  CHECK(write(p[1], "garbage garbage garbage garbage", 31) == 31);
  close(p[1]);
  struct ckpt_restore_opts opts;
  memset(&opts, 0, sizeof(opts));
  opts.size = sizeof(opts);
  pid_t root = 0;
  int err = ckpt_restore_tree(p[0], &opts, &root);
  CHECK(err < 0);
  CHECK(root == 0);
  CHECK(strstr(ckpt_last_error(), "not a libckpt image") != NULL);
  fprintf(stderr, "restore of garbage: %d %s\n", err, ckpt_last_error());
  close(p[0]);
}

/* An older caller passes a smaller struct; the library reads only `size`. */
static void older_smaller_opts_are_accepted(void) {
  struct ckpt_dump_opts opts;
  memset(&opts, 0xff, sizeof(opts));
  opts.size = sizeof(size_t) + sizeof(uint32_t);
  opts.flags = 0;
  int err = ckpt_checkpoint_tree(999999, 1, &opts);
  CHECK(err == -ESRCH || err == -ENOENT);
}

/* A child that keeps a counter and a pattern in memory, then checks them
 * on SIGUSR1; it is dumped, killed and restored through the C ABI. */
static volatile sig_atomic_t go;
static void on_usr1(int sig) {
  (void)sig;
  go = 1;
}

static void child_main(void) {
  int null = open("/dev/null", O_RDWR);
  dup2(null, 0);
  dup2(null, 1);
  dup2(null, 2);
  close_range(3, ~0u, 0);
  signal(SIGUSR1, on_usr1);
  static unsigned char pattern[1 << 20];
  for (size_t i = 0; i < sizeof(pattern); i++) pattern[i] = (unsigned char)(i * 7);
  volatile unsigned long spins = 0;
  while (!go) spins++;
  for (size_t i = 0; i < sizeof(pattern); i++) {
    if (pattern[i] != (unsigned char)(i * 7)) _exit(3);
  }
  _exit(spins > 0 ? 0 : 4);
}

static void dump_and_restore_a_real_process(void) {
  pid_t child = fork();
  if (child == 0) child_main();
  usleep(100000);
  char path[4096];
  snprintf(path, sizeof(path), "%s/c_api.img", getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp");
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  CHECK(fd >= 0);
  struct ckpt_dump_stats stats;
  memset(&stats, 0, sizeof(stats));
  stats.size = sizeof(stats);
  struct ckpt_dump_opts opts;
  memset(&opts, 0, sizeof(opts));
  opts.size = sizeof(opts);
  opts.stats = &stats;
  int err = ckpt_checkpoint_tree(child, fd, &opts);
  close(fd);
  if (err < 0) fprintf(stderr, "dump: %s\n", ckpt_last_error());
  CHECK(err == 0);
  CHECK(stats.tasks == 1);
  CHECK(stats.pages_written >= 256);
  int status;
  CHECK(waitpid(child, &status, 0) == child); /* the dump killed it */
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

  fd = open(path, O_RDONLY);
  struct ckpt_restore_opts ropts;
  memset(&ropts, 0, sizeof(ropts));
  ropts.size = sizeof(ropts);
  pid_t root = 0;
  err = ckpt_restore_tree(fd, &ropts, &root);
  close(fd);
  if (err < 0) fprintf(stderr, "restore: %s\n", ckpt_last_error());
  CHECK(err == 0);
  CHECK(root == child);
  if (err == 0) {
    kill(root, SIGUSR1);
    CHECK(waitpid(root, &status, 0) == root);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
}

int main(void) {
  abi_version();
  strerror_names_codes();
  dump_of_a_missing_pid_fails_with_a_message();
  restore_of_garbage_fails_with_a_message();
  older_smaller_opts_are_accepted();
  dump_and_restore_a_real_process();
  if (failures) {
    printf("FAIL: %d checks\n", failures);
    return 1;
  }
  printf("PASS\n");
  return 0;
}
