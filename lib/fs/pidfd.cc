// pidfds: a FILE of kind pidfd names the pid object of the task it refers
// to (a task of the tree: any other is refused at the dump); one of kind
// pidfd-exited refers to a process that had exited and been reaped.
//
// Restore: the task does not exist yet when the objects are made, so the
// FILE starts as a placeholder (a pidfd of the restorer) that every task
// inherits. In the late pass, with the tasks made, the restorer opens the
// real pidfd (pidfd_open of the restored PID, PIDFD_THREAD and
// PIDFD_NONBLOCK as recorded), puts it in place of its own placeholder,
// and each task that holds the FILE takes that same description with
// pidfd_getfd() through the placeholder it inherited (which names the
// restorer) and puts it at its fd numbers: one open description, shared
// as before. An exited process's pidfd is a pidfd of a helper that has
// exited and been reaped: it polls readable, pidfd_send_signal() fails
// with ESRCH and waitid() finds no child, as the original did.

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/fs/anonfd.h"
#include "lib/fs/fdkind.h"
#include "lib/image/format.h"

namespace ckpt::fs {
namespace {

constexpr uint32_t kPidfdThread = O_EXCL;  // PIDFD_THREAD

// The "Pid:" of a pidfd's fdinfo: its process (or thread) as this process
// sees it, 0 when not visible here, -1 once it has exited and been reaped.
absl::StatusOr<int> PidOfPidfd(const FdProbe& p) {
  ASSIGN_OR_RETURN(auto lines, ReadFdInfoLines(p.pid, p.fd));
  ASSIGN_OR_RETURN(std::string v, FdInfoValue(lines, "Pid", p.pid, p.fd, "a pidfd"));
  int pid = 0;
  if (!absl::SimpleAtoi(v, &pid)) {
    return absl::InternalError(absl::StrCat("task ", p.pid, " fd ", p.fd, ": unexpected pidfd Pid '", v, "'"));
  }
  return pid;
}

bool IsPidfd(const FdProbe& p) { return p.target == "anon_inode:[pidfd]"; }

bool ClaimsLivePidfd(const FdProbe& p) {
  if (!IsPidfd(p)) return false;
  absl::StatusOr<int> pid = PidOfPidfd(p);
  return !pid.ok() || *pid != -1;  // errors come back from register_target
}

bool ClaimsExitedPidfd(const FdProbe& p) {
  if (!IsPidfd(p)) return false;
  absl::StatusOr<int> pid = PidOfPidfd(p);
  return pid.ok() && *pid == -1;
}

absl::StatusOr<uint32_t> RegisterPidfdTask(objhash::ObjHash& objects, const FdProbe& p,
                                           const Description& file) {
  ASSIGN_OR_RETURN(int pid, PidOfPidfd(p));
  if (pid <= 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "task ", p.pid, " fd ", p.fd, ": a pidfd of a process in a pid namespace the dump cannot see"));
  }
  // A thread other than its process's leader (PIDFD_THREAD) is a pid
  // object of the tree too.
  (void)file;
  absl::StatusOr<uint32_t> ref = objects.Lookup(objhash::ObjKind::kPid, objhash::Identity::OfPid(pid));
  if (!ref.ok() || *ref == 0) {
    return absl::FailedPreconditionError(absl::StrCat("task ", p.pid, " fd ", p.fd, ": a pidfd of process ", pid,
                                                      ", which is not in the tree"));
  }
  return *ref;
}

absl::Status DescribePidfd(const FdProbe&, Description* file) {
  // Only the flags a pidfd keeps: PIDFD_NONBLOCK, PIDFD_THREAD.
  file->flags &= O_ACCMODE | O_NONBLOCK | kPidfdThread;
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> OpenPidfdPlaceholder(objhash::RestoreContext& ctx, const image::ckpt_file& rec,
                                              const std::string&, const objhash::RestoredObject*) {
  if (rec.flags & ~static_cast<uint32_t>(O_ACCMODE | O_NONBLOCK | kPidfdThread)) {
    return absl::InvalidArgumentError(absl::StrCat("FILE ", rec.objref, ": field 'flags': 0",
                                                   absl::Hex(rec.flags), " are not a pidfd's flags"));
  }
  int self = static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0));
  if (self < 0) return ErrnoError(errno, "pidfd_open of the restorer (a pidfd's placeholder)");
  UniqueFd owned(self);
  const uint32_t objref = rec.objref, pid_ref = rec.target_ref;
  const unsigned flags = rec.flags & (O_NONBLOCK | kPidfdThread);
  RETURN_IF_ERROR(ctx.Later([=](objhash::LateContext& late) -> absl::Status {
    const pid_t here = late.pid_here ? late.pid_here(pid_ref) : 0;
    if (here <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("FILE ", objref, ": field 'target_ref': pid ", pid_ref,
                                                     " is no task of the image"));
    }
    ASSIGN_OR_RETURN(const objhash::RestoredObject* file, late.objects->Get(objref, objhash::ObjKind::kFile));
    UniqueFd real(static_cast<int>(syscall(SYS_pidfd_open, here, flags)));
    if (!real.valid()) return ErrnoError(errno, "FILE ", objref, ": pidfd_open(", here, ")");
    if (dup3(real.get(), file->fd, O_CLOEXEC) < 0) return ErrnoError(errno, "FILE ", objref, ": dup3 of its pidfd");
    for (objhash::LateTask* t : late.tasks) {
      std::vector<std::pair<int, bool>> fds = t->FdsOf(objref);
      if (fds.empty()) continue;
      // The task's copy of the placeholder names the restorer, whose fd
      // file->fd is the real pidfd now.
      const uint64_t high = static_cast<uint64_t>(file->fd);
      ASSIGN_OR_RETURN(int64_t got, t->Syscall(SYS_pidfd_getfd, {high, high, 0, 0, 0, 0}));
      if (got < 0) {
        return ErrnoError(static_cast<int>(-got), "task ", t->pid(), ": pidfd_getfd of the pidfd of ", here,
                          " from the restorer");
      }
      for (const auto& [fd, cloexec] : fds) {
        ASSIGN_OR_RETURN(int64_t r, t->Syscall(SYS_dup3, {static_cast<uint64_t>(got), static_cast<uint64_t>(fd),
                                                          cloexec ? O_CLOEXEC : 0u, 0, 0, 0}));
        if (r < 0) return ErrnoError(static_cast<int>(-r), "task ", t->pid(), ": dup3 of the pidfd of ", here);
      }
      ASSIGN_OR_RETURN(int64_t closed, t->Syscall(SYS_close, {static_cast<uint64_t>(got), 0, 0, 0, 0, 0}));
      (void)closed;
    }
    return absl::OkStatus();
  }));
  return owned;
}

int ExitAtOnce(void*) { _exit(0); }

absl::StatusOr<UniqueFd> OpenExitedPidfd(objhash::RestoreContext&, const image::ckpt_file& rec,
                                         const std::string&, const objhash::RestoredObject*) {
  if (rec.flags & ~static_cast<uint32_t>(O_ACCMODE | O_NONBLOCK | kPidfdThread)) {
    return absl::InvalidArgumentError(absl::StrCat("FILE ", rec.objref, ": field 'flags': 0",
                                                   absl::Hex(rec.flags), " are not a pidfd's flags"));
  }
  int pidfd = -1;
  ASSIGN_OR_RETURN(int status, RunInHelper(ExitAtOnce, nullptr, CLONE_PIDFD, &pidfd));
  (void)status;
  if (pidfd < 0) return absl::InternalError("the exited pidfd's helper gave no pidfd");
  UniqueFd owned(pidfd);
  int fl = fcntl(pidfd, F_GETFL);
  if (fl < 0 || fcntl(pidfd, F_SETFL, (fl & ~O_NONBLOCK) | (static_cast<int>(rec.flags) & O_NONBLOCK)) != 0) {
    return ErrnoError(errno, "setting an exited pidfd's flags");
  }
  fcntl(pidfd, F_SETFD, FD_CLOEXEC);
  return owned;
}

const FdKindOps kPidfdKind = {
    .name = "pidfd",
    .file_kind = image::kFilePidfd,
    .order = 15,
    .file_type = 0,
    .seekable = false,
    .by_path = false,
    .has_target = true,
    .target_kind = objhash::ObjKind::kPid,
    .claims = ClaimsLivePidfd,
    .describe = DescribePidfd,
    .register_target = RegisterPidfdTask,
    .open = OpenPidfdPlaceholder,
    .check = nullptr,
};

const FdKindOps kExitedPidfdKind = {
    .name = "pidfd of an exited process",
    .file_kind = image::kFilePidfdExited,
    .order = 16,
    .file_type = 0,
    .seekable = false,
    .by_path = false,
    .has_target = false,
    .target_kind = objhash::ObjKind{0},
    .claims = ClaimsExitedPidfd,
    .describe = DescribePidfd,
    .register_target = nullptr,
    .open = OpenExitedPidfd,
    .check = nullptr,
};

[[maybe_unused]] const bool kRegistered = RegisterFdKind(&kPidfdKind) && RegisterFdKind(&kExitedPidfdKind);

}  // namespace
}  // namespace ckpt::fs
