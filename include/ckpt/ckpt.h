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
 *   ...
 *   waitpid(root, &status, 0);  // the restored root is the caller's child
 *
 * Build with `cc prog.c $(pkg-config --cflags --libs libckpt)` once
 * `./run install PREFIX` has put ckpt.h, libckpt.so.1 and libckpt.pc under
 * PREFIX.
 *
 * Every function returns 0 or a positive value on success and a negative
 * errno-style code on failure: the errno of the system call that failed
 * where one did (-EPIPE for an image whose reader went away, -ENOSPC for
 * a full disk), else the errno closest to the cause (-EINVAL for a bad
 * argument or image field, -ENOMEM when memory ran out, -EIO for an
 * internal error). ckpt_last_error() then gives a one-line message naming
 * the task, the object and the cause. No C++ exception ever leaves a
 * ckpt_ function.
 *
 * The ABI only grows. Option structs begin with `size`, which the caller
 * sets to sizeof the struct it was compiled with; fields are only ever
 * appended, and the library reads only the fields that `size` covers
 * (those it does not cover are zero, the default). A `size` larger than
 * the library knows (a caller built against a newer ckpt.h) is accepted
 * only when every byte beyond the fields it knows is zero; otherwise the
 * call fails with -EINVAL, as it does for a `size` that ends inside a
 * field or does not cover `flags`. Unknown flag bits and non-zero
 * `reserved` fields are refused with -EINVAL, naming the field and the
 * bits: a caller never gets a silently ignored request.
 * Only the functions below are exported, with the symbol version
 * LIBCKPT_1.
 *
 * What a call does to the calling process (and what the caller must do):
 *
 * - Both calls trace the tree's tasks with ptrace from the calling thread
 *   and wait for them with waitpid(2). While a call runs, no other thread
 *   of the caller may reap children with wait(2), waitpid(-1, ...) or a
 *   SIGCHLD handler that does so: it would take the library's
 *   notifications (ptrace stops and exits of traced tasks are reported to
 *   any thread of the tracing process). The caller receives SIGCHLD for
 *   these events during the call, and for its restored root afterwards.
 *   Calls on different threads are independent (ckpt_last_error() is per
 *   thread), but no two calls may work on the same tree at once.
 * - ckpt_checkpoint_tree: the tree is frozen (ptrace), and on success
 *   killed (SIGKILL) unless CKPT_DUMP_LEAVE_RUNNING; when the caller is
 *   the parent of the root, the root's exit status is left for the caller
 *   to reap with waitpid(2). On failure (or cancellation) the tree is
 *   resumed as it was.
 * - Writing to a pipe or socket whose reader has gone raises SIGPIPE,
 *   whose default action ends the whole process. ckpt_checkpoint_tree
 *   holds SIGPIPE blocked on the calling thread while it runs and takes
 *   back a SIGPIPE its own writes raised, so the dump fails with -EPIPE
 *   and the caller's signal mask and pending signals are as they were
 *   (a SIGPIPE sent to the process by kill(2) during the call may be taken
 *   with it). Dispositions are never changed: a multi-threaded caller
 *   whose other threads write to pipes should still ignore SIGPIPE.
 * - ckpt_restore_tree creates the tasks by forking the calling thread
 *   (clone3, without pthread_atfork handlers): the restored root becomes
 *   the caller's child; the caller must reap it. Tasks whose process group
 *   or session was outside the dump join the caller's. With
 *   CKPT_RESTORE_SHELL_JOB the tree gets the caller's terminal.
 * - While ckpt_restore_tree runs, the caller is a child subreaper
 *   (PR_SET_CHILD_SUBREAPER), so that a failed restore can reap every task
 *   it made; the previous setting is put back before it returns. An
 *   orphan of another of the caller's descendants that is re-parented
 *   during that window stays the caller's child.
 * - ckpt_restore_tree may raise the caller's soft RLIMIT_NOFILE up to its
 *   hard limit, to hold the restored objects above every fd in use; the
 *   C API puts the soft limit back before returning (unless another
 *   thread changed it meanwhile). The fds it opens in the caller (the
 *   restored objects, above the caller's highest fd, and a pidfd for each
 *   task it makes) are all closed before it returns.
 * - The calling thread's IPC namespace: a restore into a fresh IPC
 *   namespace (CKPT_RESTORE_IPC_NS_NEW, or the image's own) unshares it on
 *   the calling thread and enters the old one again before returning; no
 *   other namespace of the caller changes (a fresh pid namespace is made
 *   for the root only). A dump may start a short-lived thread that enters
 *   the tree's IPC namespace.
 * - ckpt_restore_tree waits up to 10 s for a PID that the dumped task
 *   still holds as an unreaped zombie; reap the dumped tree first.
 * - The calling thread's signal mask is as it was when a call returns;
 *   signal dispositions are not changed.
 *
 * Trust model: an image is code. Restoring one runs its memory as
 * programs with the credentials, capabilities and files it records, so a
 * caller restores only images it would run. The library never grants more
 * than the caller has: every restored task asks the kernel for its own
 * state from inside (setresuid, capset, open, mmap, ...) with the caller's
 * privileges, and a restore that needs more is refused up front, naming
 * what the caller lacks ("an image never grants more than its restorer
 * has"). A caller that is not root needs CAP_CHECKPOINT_RESTORE (PIDs by
 * clone3 set_tid, PR_SET_MM_MAP) and CAP_SYS_PTRACE, and can then restore
 * only images whose tasks ran with its own ids and no capability beyond
 * its own; files are opened with its own access rights. An image is
 * written 0600: it holds the tasks' memory, secrets included.
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
/* No exception leaves a ckpt_ function. */
#define CKPT_NOEXCEPT noexcept
#else
#define CKPT_NOEXCEPT
#endif

/* Bumped when a function or struct field is added.
 * 2: ckpt_dump_opts.external, nr_external, cancel;
 *    ckpt_restore_opts.inherit_fds, nr_inherit_fds;
 *    CKPT_RESTORE_ALLOW_CHANGED_FILES.
 * 3: ckpt_dump_stats.pages_shared. */
#define CKPT_ABI_VERSION 3

/* ckpt_dump_opts.flags */
#define CKPT_DUMP_LEAVE_RUNNING (1u << 0) /* resume the tree after the dump (default: kill it) */
#define CKPT_DUMP_SHELL_JOB (1u << 1)     /* the tree shares the caller's terminal */
#define CKPT_DUMP_CONTAINER (1u << 2)     /* every pid the tree uses must be inside it */

/* ckpt_restore_opts.flags */
#define CKPT_RESTORE_NEW_PIDNS (1u << 0) /* restore into a fresh pid namespace */
#define CKPT_RESTORE_SHELL_JOB (1u << 1) /* give the restored tree the caller's terminal */
/* SysV IPC: by default a tree that had an IPC namespace of its own gets a
 * fresh one, and a tree in the dumper's namespace the caller's. The two
 * flags exclude each other (-EINVAL). */
#define CKPT_RESTORE_IPC_NS_NEW (1u << 2)     /* always a fresh IPC namespace */
#define CKPT_RESTORE_IPC_NS_CURRENT (1u << 3) /* always the caller's IPC namespace */
/* Restore even when a file the image depends on (opened, mapped, the
 * executable) changed since the dump: another size, mtime or ELF build-id
 * (RestoreOptions::allow_changed_files in ckpt.hpp). The tree then sees
 * the file as it is now, which for a mapped file means other code or data
 * than it had. By default such an image is refused. */
#define CKPT_RESTORE_ALLOW_CHANGED_FILES (1u << 4)
/* Lazy (post-copy) restore, from an image in a regular file
 * (RestoreOptions::lazy in ckpt.hpp): the tree runs as soon as everything
 * but its private anonymous memory is in place, and those pages are filled
 * on first touch and in the background. The call returns once every page
 * is in; the caller's thread stays the tracer of the tree until then. */
#define CKPT_RESTORE_LAZY (1u << 5)

/* Figures about one dump, filled when ckpt_dump_opts.stats is set (also
 * when the dump fails). Only the fields `size` covers are written. */
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
  /* ABI 3: private pages a child shares with its parent (copy-on-write
   * since a fork) left out of the child's page arrays: the restore forks
   * it from its parent and they stay shared. */
  uint64_t pages_shared;
};

struct ckpt_dump_opts {
  size_t size;    /* sizeof(struct ckpt_dump_opts) */
  uint32_t flags; /* CKPT_DUMP_* */
  uint32_t reserved; /* 0 */
  struct ckpt_dump_stats *stats; /* optional */
  /* ABI 2 (DumpOptions::external in ckpt.hpp). Objects the tree shares
   * with processes outside it, by the name /proc/PID/fd shows
   * ("pipe:[12345]"; a unix socket whose peer is outside, as
   * "unix:[12345]" for its socket:[12345]; a terminal whose master is
   * outside, as "tty:[136:3]" for /dev/pts/3): recorded in the image as external instead of
   * refused; the restore must be given a replacement for each
   * (ckpt_restore_opts.inherit_fds). `nr_external` names, none NULL or
   * empty; `external` may be NULL only when nr_external is 0. The library
   * copies them; they need to live only during the call. */
  const char *const *external;
  size_t nr_external;
  /* ABI 2 (DumpOptions::cancel). Optional: polled during the dump; once
   * *cancel is non-zero the dump stops, resumes the tree untouched and
   * fails with -ECANCELED. A signal handler may set it (a volatile
   * sig_atomic_t, which is an int here); a write blocked on a full pipe is
   * interrupted by the signal when its handler was installed without
   * SA_RESTART. */
  const volatile int *cancel;
};

/* Figures about one restore, filled when ckpt_restore_opts.stats is set
 * (also when the restore fails). Only the fields `size` covers are
 * written. */
struct ckpt_restore_stats {
  size_t size;            /* set by the caller: sizeof(struct ckpt_restore_stats) */
  uint64_t tasks;         /* processes restored */
  uint64_t pages_written; /* pages filled */
  uint64_t image_bytes;   /* bytes read from the image fd */
  uint64_t total_ns;      /* time until the tree runs */
};

/* An fd of the caller that takes the place of an external object of the
 * image (ckpt_dump_opts.external), at every fd number of every task that
 * held it. The caller keeps its fd; the tasks get copies. This struct has
 * a fixed size (it is an array element): it does not grow. */
struct ckpt_inherit_fd {
  int fd;           /* >= 0, open */
  int reserved;     /* 0 */
  const char *name; /* "pipe:[12345]", as the dump recorded it; not NULL */
};

struct ckpt_restore_opts {
  size_t size;    /* sizeof(struct ckpt_restore_opts) */
  uint32_t flags; /* CKPT_RESTORE_* */
  uint32_t reserved; /* 0 */
  struct ckpt_restore_stats *stats; /* optional */
  /* ABI 2 (RestoreOptions::inherit_fds). Replacements for the image's
   * external objects; an image with an external object that has none is
   * refused, naming it. `inherit_fds` may be NULL only when
   * nr_inherit_fds is 0. The names need to live only during the call. */
  const struct ckpt_inherit_fd *inherit_fds;
  size_t nr_inherit_fds;
};

/* CKPT_ABI_VERSION of the library actually loaded. */
int ckpt_abi_version(void) CKPT_NOEXCEPT;

/* Text for a code returned by a ckpt_ function (negative errno style);
 * static, never NULL. */
const char *ckpt_strerror(int err) CKPT_NOEXCEPT;

/*
 * The message of the last failed ckpt_ call on this thread ("" if none):
 * one line that names the task, the object and the cause. Valid until the
 * thread's next ckpt_ call.
 */
const char *ckpt_last_error(void) CKPT_NOEXCEPT;

/*
 * Checkpoints the process tree rooted at `root` into `out_fd` (a file, a
 * pipe or a socket; written front to back, never seeked; fsync'd before
 * the tree is killed when it is a regular file). The tree is frozen during
 * the dump, then killed, or resumed with CKPT_DUMP_LEAVE_RUNNING. A failed
 * dump resumes the tree untouched. `opts` may be NULL (the defaults).
 * Returns 0 or a negative error code.
 */
int ckpt_checkpoint_tree(pid_t root, int out_fd, const struct ckpt_dump_opts *opts) CKPT_NOEXCEPT;

/*
 * Restores the tree read from `in_fd`, with its original PIDs. The root
 * becomes a child of the caller. Returns 0 once the whole tree runs, with
 * the root's PID (as the caller sees it) in *root_out; on failure, a
 * negative error code, and nothing created is left running. `opts` may
 * be NULL (the defaults).
 */
int ckpt_restore_tree(int in_fd, const struct ckpt_restore_opts *opts,
                      pid_t *root_out) CKPT_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif /* LIBCKPT_INCLUDE_CKPT_CKPT_H_ */
