/* The C ABI, compiled as C and linked against libckpt.so only. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
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

int main(void) {
  abi_version();
  strerror_names_codes();
  dump_of_a_missing_pid_fails_with_a_message();
  restore_of_garbage_fails_with_a_message();
  older_smaller_opts_are_accepted();
  if (failures) {
    printf("FAIL: %d checks\n", failures);
    return 1;
  }
  printf("PASS\n");
  return 0;
}
