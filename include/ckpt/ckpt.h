/*
 * libckpt C API: checkpoint a live Linux process tree into one byte stream
 * and restore it into running processes again.
 *
 *   struct ckpt_dump_opts opts = { .size = sizeof(opts) };
 *   int err = ckpt_checkpoint_tree(pid, fd, &opts);
 *   if (err < 0) fprintf(stderr, "dump: %s\n", ckpt_last_error());
 *
 *   struct ckpt_restore_opts ropts = { .size = sizeof(ropts) };
 *   pid_t root;
 *   err = ckpt_restore_tree(fd, &ropts, &root);
 *
 * Every function returns 0 or a positive value on success and a negative
 * errno-style code on failure; ckpt_last_error() then gives a one-line
 * message naming the task, the object and the cause.
 *
 * The ABI only grows. Option structs begin with `size`, which the caller
 * sets to sizeof the struct it was compiled with; fields are only ever
 * appended, and the library reads only the fields that `size` covers.
 * Only symbols that begin with ckpt_ are exported.
 *
 * Not supported yet: see README.md ("What is not supported yet").
 */
#ifndef LIBCKPT_INCLUDE_CKPT_CKPT_H_
#define LIBCKPT_INCLUDE_CKPT_CKPT_H_

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped when a function or struct field is added. */
#define CKPT_ABI_VERSION 1

/* ckpt_dump_opts.flags */
#define CKPT_DUMP_LEAVE_RUNNING (1u << 0) /* resume the tree after the dump (default: kill it) */
#define CKPT_DUMP_SHELL_JOB (1u << 1)     /* the tree shares the caller's terminal */
#define CKPT_DUMP_CONTAINER (1u << 2)     /* every pid the tree uses must be inside it */

/* ckpt_restore_opts.flags */
#define CKPT_RESTORE_NEW_PIDNS (1u << 0) /* restore into a fresh pid namespace */
#define CKPT_RESTORE_SHELL_JOB (1u << 1) /* give the restored tree the caller's terminal */
/* SysV IPC: by default a tree that had an IPC namespace of its own gets a
 * fresh one, and a tree in the dumper's namespace the caller's. */
#define CKPT_RESTORE_IPC_NS_NEW (1u << 2)     /* always a fresh IPC namespace */
#define CKPT_RESTORE_IPC_NS_CURRENT (1u << 3) /* always the caller's IPC namespace */

/* Figures about one dump, filled when ckpt_dump_opts.stats is set. */
struct ckpt_dump_stats {
  size_t size;            /* set by the caller: sizeof(struct ckpt_dump_stats) */
  uint64_t tasks;         /* processes dumped */
  uint64_t threads;       /* threads dumped */
  uint64_t vmas;          /* memory mappings recorded */
  uint64_t pages_written; /* pages whose contents went into the image */
  uint64_t pages_skipped; /* resident pages left out: clean file pages, zero page */
  uint64_t image_bytes;   /* bytes written to the image fd */
  uint64_t freeze_ns;     /* time to stop the tree */
  uint64_t total_ns;      /* time of the whole dump */
};

struct ckpt_dump_opts {
  size_t size;    /* sizeof(struct ckpt_dump_opts) */
  uint32_t flags; /* CKPT_DUMP_* */
  uint32_t reserved;
  struct ckpt_dump_stats *stats; /* optional */
};

/* Figures about one restore, filled when ckpt_restore_opts.stats is set. */
struct ckpt_restore_stats {
  size_t size;            /* set by the caller: sizeof(struct ckpt_restore_stats) */
  uint64_t tasks;         /* processes restored */
  uint64_t pages_written; /* pages filled */
  uint64_t image_bytes;   /* bytes read from the image fd */
  uint64_t total_ns;      /* time until the tree runs */
};

struct ckpt_restore_opts {
  size_t size;    /* sizeof(struct ckpt_restore_opts) */
  uint32_t flags; /* CKPT_RESTORE_* */
  uint32_t reserved;
  struct ckpt_restore_stats *stats; /* optional */
};

/* CKPT_ABI_VERSION of the library actually loaded. */
int ckpt_abi_version(void);

/* Text for a code returned by a ckpt_ function (negative errno style). */
const char *ckpt_strerror(int err);

/*
 * The message of the last failed ckpt_ call on this thread ("" if none):
 * one line that names the task, the object and the cause. Valid until the
 * thread's next ckpt_ call.
 */
const char *ckpt_last_error(void);

/*
 * Checkpoints the process tree rooted at `root` into `out_fd` (a file, a
 * pipe or a socket; written front to back, never seeked). The tree is
 * frozen during the dump, then killed, or resumed with
 * CKPT_DUMP_LEAVE_RUNNING. A failed dump resumes the tree untouched.
 * Returns 0 or a negative error code.
 */
int ckpt_checkpoint_tree(pid_t root, int out_fd, const struct ckpt_dump_opts *opts);

/*
 * Restores the tree read from `in_fd`, with its original PIDs. The root
 * becomes a child of the caller. Returns 0 once the whole tree runs, with
 * the root's PID in *root_out; on failure, a negative error code, and
 * nothing created is left running.
 */
int ckpt_restore_tree(int in_fd, const struct ckpt_restore_opts *opts, pid_t *root_out);

#ifdef __cplusplus
}
#endif

#endif /* LIBCKPT_INCLUDE_CKPT_CKPT_H_ */
