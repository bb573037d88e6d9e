// A file under /proc/PID of a task of the tree (/proc/self/stat, a
// child's /proc/PID/status, the /proc/PID directory itself): it names a
// process, which exists only once the restore has made it. The FILE
// record names that task's pid object (target_ref); the restorer holds
// its own /proc directory (O_PATH) in its place, which the tasks put at
// their fd numbers, and the late pass opens the file again inside each
// task that holds it, relative to that directory (whatever the task's
// root), under the restored task's number as the restorer's /proc shows
// it, seeks it and puts it over every fd number the placeholder had.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/fs/fdkind.h"

namespace ckpt::fs {
namespace {

// "/proc/N" or "/proc/N/REST": N, and REST with its slash ("" for none).
bool SplitProcPath(const std::string& path, pid_t* pid, std::string* rest) {
  if (!absl::StartsWith(path, "/proc/")) return false;
  size_t end = path.find('/', 6);
  std::string num = path.substr(6, end == std::string::npos ? std::string::npos : end - 6);
  if (num.empty() || num.size() > 10 || num.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  int n = 0;
  if (!absl::SimpleAtoi(num, &n) || n <= 0) return false;
  *pid = n;
  *rest = end == std::string::npos ? "" : path.substr(end);
  return true;
}

dev_t ProcDev() {
  static const dev_t dev = [] {
    struct stat st;
    return stat("/proc/self", &st) == 0 ? st.st_dev : static_cast<dev_t>(-1);
  }();
  return dev;
}

bool ClaimsProcFile(const FdProbe& p) {
  pid_t pid;
  std::string rest;
  return !p.target.empty() && !absl::EndsWith(p.target, " (deleted)") &&
         SplitProcPath(p.target, &pid, &rest) && p.st.st_dev == ProcDev();
}

absl::Status DescribeProcFile(const FdProbe& p, Description*) {
  pid_t pid;
  std::string rest;
  SplitProcPath(p.target, &pid, &rest);
  if (absl::StartsWith(rest, "/task/") || rest.find("/..") != std::string::npos) {
    return absl::UnimplementedError(absl::StrCat(
        "task ", p.pid, " fd ", p.fd, ": ", p.target,
        " (a file of one thread under /proc/PID/task) is not supported"));
  }
  return absl::OkStatus();
}

// The pid object of the task the file belongs to: a task of the tree.
absl::StatusOr<uint32_t> RegisterProcTask(objhash::ObjHash& objects, const FdProbe& p,
                                          const Description&) {
  pid_t pid;
  std::string rest;
  SplitProcPath(p.target, &pid, &rest);
  // /proc/TID of a thread that is not its process's leader is one thread's.
  absl::StatusOr<std::string> status = ReadFile(absl::StrCat("/proc/", pid, "/status"));
  size_t at = status.ok() ? status->find("\nTgid:\t") : std::string::npos;
  if (at != std::string::npos && strtol(status->c_str() + at + 7, nullptr, 10) != pid) {
    return absl::UnimplementedError(absl::StrCat(
        "task ", p.pid, " fd ", p.fd, ": ", p.target, " is a file of thread ", pid,
        " (not of a process): not supported"));
  }
  absl::StatusOr<uint32_t> ref = objects.Lookup(objhash::ObjKind::kPid, objhash::Identity::OfPid(pid));
  if (!ref.ok() || *ref == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "task ", p.pid, " fd ", p.fd, ": ", p.target, " is a file of process ", pid,
        ", which is not in the tree (only /proc files of the tree's own tasks are restored)"));
  }
  return *ref;
}

absl::StatusOr<UniqueFd> OpenProcFile(objhash::RestoreContext& ctx, const image::ckpt_file& rec,
                                      const std::string& path, const objhash::RestoredObject*) {
  pid_t pid;
  std::string rest;
  if (!SplitProcPath(path, &pid, &rest) || absl::StartsWith(rest, "/task/") ||
      rest.find("/..") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("FILE ", rec.objref, ": field 'path': ", path,
                                                   " is not a file under /proc/PID"));
  }
  int fd = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "open /proc (the placeholder of ", path, ")");
  const uint32_t objref = rec.objref, pid_ref = rec.target_ref, sig = rec.owner_sig;
  // O_ASYNC and the owner: see RestoreAsync, whose late step comes after.
  const int flags = static_cast<int>(rec.flags) | O_CLOEXEC | O_NOCTTY;
  const uint64_t pos = rec.pos;
  const bool seek = pos != 0 && !(rec.flags & (O_PATH | O_DIRECTORY));
  RETURN_IF_ERROR(ctx.Later([=](objhash::LateContext& late) -> absl::Status {
    const pid_t here = late.pid_here ? late.pid_here(pid_ref) : 0;
    if (here <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("FILE ", objref, ": field 'target_ref': pid ",
                                                     pid_ref, " is no task of the image"));
    }
    const std::string now = absl::StrCat("/proc/", here, rest);
    for (objhash::LateTask* t : late.tasks) {
      std::vector<std::pair<int, bool>> fds = t->FdsOf(objref);
      if (fds.empty()) continue;
      // Relative to the restorer's /proc, which the placeholder is.
      std::string arg = absl::StrCat(here, rest);
      arg.push_back('\0');
      ASSIGN_OR_RETURN(int64_t opened,
                       t->Syscall(SYS_openat, {static_cast<uint64_t>(fds.front().first), 0,
                                               static_cast<uint64_t>(flags), 0, 0, 0},
                                  {reinterpret_cast<const uint8_t*>(arg.data()), arg.size()}, 1));
      if (opened < 0) {
        return ErrnoError(static_cast<int>(-opened), "task ", t->pid(), ": opening ", now,
                          " again (it had ", path, ")");
      }
      const uint64_t nfd = static_cast<uint64_t>(opened);
      if (sig != 0) {
        ASSIGN_OR_RETURN(int64_t set, t->Syscall(SYS_fcntl, {nfd, F_SETSIG, sig, 0, 0, 0}));
        if (set < 0) return ErrnoError(static_cast<int>(-set), "task ", t->pid(), ": F_SETSIG on ", now);
      }
      if (seek) {
        ASSIGN_OR_RETURN(int64_t at, t->Syscall(SYS_lseek, {nfd, pos, SEEK_SET, 0, 0, 0}));
        if (at < 0) {
          return ErrnoError(static_cast<int>(-at), "task ", t->pid(), ": seeking ", now, " to ", pos);
        }
      }
      for (const auto& [fd, cloexec] : fds) {
        ASSIGN_OR_RETURN(int64_t r, t->Syscall(SYS_dup3, {nfd, static_cast<uint64_t>(fd),
                                                          cloexec ? O_CLOEXEC : 0u, 0, 0, 0}));
        if (r < 0) return ErrnoError(static_cast<int>(-r), "task ", t->pid(), ": dup3 of ", now);
      }
      ASSIGN_OR_RETURN(int64_t closed, t->Syscall(SYS_close, {nfd, 0, 0, 0, 0, 0}));
      (void)closed;
    }
    return absl::OkStatus();
  }));
  return UniqueFd(fd);
}

const FdKindOps kProcFile = {
    .name = "file under /proc/PID",
    .file_kind = image::kFileProcTask,
    .order = 45,
    .file_type = 0,
    .seekable = false,  // the late pass seeks the real file
    .by_path = true,
    .has_target = true,
    .target_kind = objhash::ObjKind::kPid,
    .claims = ClaimsProcFile,
    .describe = DescribeProcFile,
    .register_target = RegisterProcTask,
    .open = OpenProcFile,
    .check = nullptr,
};

[[maybe_unused]] const bool kRegistered = RegisterFdKind(&kProcFile);

}  // namespace
}  // namespace ckpt::fs
