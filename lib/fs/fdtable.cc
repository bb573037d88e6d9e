// The fd table (FD records) and cwd/root (FS) of a task.

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/fs/file.h"
#include "lib/fs/fs.h"
#include "lib/fs/ghost.h"
#include "lib/fs/pipe.h"
#include "lib/fs/timerfd.h"
#include "lib/mm/shmem.h"

namespace ckpt::fs {
namespace {

struct FdInfo {
  uint64_t pos = 0;
  uint32_t flags = 0;
};

absl::StatusOr<FdInfo> ReadFdInfo(pid_t pid, int fd) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(absl::StrCat("/proc/", pid, "/fdinfo/", fd)));
  FdInfo info;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (absl::ConsumePrefix(&line, "pos:")) {
      if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &info.pos)) {
        return absl::InvalidArgumentError("bad fdinfo pos");
      }
    } else if (absl::ConsumePrefix(&line, "flags:")) {
      uint64_t v;
      if (!absl::numbers_internal::safe_strtou64_base(absl::StripAsciiWhitespace(line), &v, 8)) {
        return absl::InvalidArgumentError("bad fdinfo flags");
      }
      info.flags = static_cast<uint32_t>(v);
    }
  }
  return info;
}

bool IsPlainCharDevice(dev_t rdev) {
  // /dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom
  return major(rdev) == 1 &&
         (minor(rdev) == 3 || minor(rdev) == 5 || minor(rdev) == 7 || minor(rdev) == 8 ||
          minor(rdev) == 9);
}

bool IsTerminal(dev_t rdev) {
  unsigned m = major(rdev);
  return m == 4 || m == 5 || (m >= 136 && m <= 143);
}

absl::Status Unsupported(pid_t pid, int fd, const std::string& what) {
  return absl::UnimplementedError(
      absl::StrCat("task ", pid, " fd ", fd, ": ", what, " is not supported yet"));
}

}  // namespace

absl::StatusOr<std::vector<int>> ListFds(pid_t pid) {
  std::string dir_path = absl::StrCat("/proc/", pid, "/fd");
  DIR* dir = opendir(dir_path.c_str());
  if (dir == nullptr) return ErrnoError(errno, "task ", pid, ": open ", dir_path);
  std::vector<int> fds;
  while (struct dirent* e = readdir(dir)) {
    int fd;
    if (absl::SimpleAtoi(e->d_name, &fd)) fds.push_back(fd);
  }
  closedir(dir);
  std::sort(fds.begin(), fds.end());
  return fds;
}

absl::StatusOr<ClassifiedFd> ClassifyFd(pid_t pid, int fd, uint32_t dump_flags) {
  const std::string link_path = absl::StrCat("/proc/", pid, "/fd/", fd);
  ASSIGN_OR_RETURN(std::string target, ReadLink(link_path));
  struct stat st;
  if (stat(link_path.c_str(), &st) != 0) return ErrnoError(errno, "task ", pid, " fd ", fd);
  ASSIGN_OR_RETURN(FdInfo info, ReadFdInfo(pid, fd));

  ClassifiedFd c;
  c.fd = fd;
  c.link_path = link_path;
  c.cloexec = info.flags & O_CLOEXEC;
  OpenFile& file = c.file;
  file.st = st;
  file.pos = info.pos;
  file.flags = info.flags & ~static_cast<uint32_t>(O_CLOEXEC);
  file.path = target;
  if (absl::StartsWith(target, "socket:")) return Unsupported(pid, fd, "a socket (" + target + ")");
  if (target == "anon_inode:[timerfd]") {
    c.object = ClassifiedFd::kTimerfd;
    file.kind = image::kFileTimerfd;
  } else if (absl::StartsWith(target, "anon_inode:")) {
    return Unsupported(pid, fd, target.substr(11) + " (" + target + ")");
  } else if (S_ISFIFO(st.st_mode)) {
    // An anonymous pipe ("pipe:[ino]") or a FIFO (a path): the pipe is
    // one object, this description another.
    bool fifo = !target.empty() && target[0] == '/';
    if (fifo && absl::EndsWith(target, " (deleted)")) {
      return Unsupported(pid, fd, "the deleted FIFO " + target);
    }
    c.object = fifo ? ClassifiedFd::kFifo : ClassifiedFd::kPipe;
    file.kind = image::kFilePipe;
  } else if (target.empty() || target[0] != '/') {
    return Unsupported(pid, fd, "'" + target + "'");
  } else if (S_ISREG(st.st_mode) && absl::StartsWith(target, "/memfd:")) {
    c.object = ClassifiedFd::kShmem;
    file.kind = image::kFileShmem;
  } else if (S_ISREG(st.st_mode) && absl::EndsWith(target, " (deleted)")) {
    file.path = target.substr(0, target.size() - 10);
    c.object = ClassifiedFd::kGhost;
    file.kind = image::kFileRegular;
  } else if (absl::EndsWith(target, " (deleted)")) {
    return Unsupported(pid, fd, "the deleted " + target);
  } else if (S_ISREG(st.st_mode)) {
    file.kind = image::kFileRegular;
  } else if (S_ISDIR(st.st_mode)) {
    file.kind = image::kFileDirectory;
  } else if (S_ISCHR(st.st_mode) && IsPlainCharDevice(st.st_rdev)) {
    file.kind = image::kFileCharDevice;
  } else if (S_ISCHR(st.st_mode) && IsTerminal(st.st_rdev)) {
    if (!(dump_flags & objhash::kDumpShellJob)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "task ", pid, " fd ", fd, ": the terminal ", target,
          " (a shell job: dump with --shell-job, and it gets the restorer's terminal)"));
    }
    file.kind = image::kFileTty;
  } else {
    return Unsupported(pid, fd, "the special file " + target);
  }
  if (file.kind == image::kFileRegular && c.object == ClassifiedFd::kNone) {
    struct stat named;
    if (stat(target.c_str(), &named) != 0 || named.st_dev != st.st_dev ||
        named.st_ino != st.st_ino) {
      return absl::FailedPreconditionError(absl::StrCat(
          "task ", pid, " fd ", fd, ": ", target, " no longer names the file it has open"));
    }
  }
  return c;
}

absl::StatusOr<std::vector<FdEntry>> CollectFds(pid_t pid, objhash::ObjHash& objects,
                                                uint32_t dump_flags) {
  ASSIGN_OR_RETURN(std::vector<int> fds, ListFds(pid));
  std::vector<FdEntry> out;
  for (int fd : fds) {
    ASSIGN_OR_RETURN(ClassifiedFd c, ClassifyFd(pid, fd, dump_flags));
    OpenFile& file = c.file;
    const struct stat& st = file.st;
    switch (c.object) {
      case ClassifiedFd::kNone:
        break;
      case ClassifiedFd::kTimerfd: {
        ASSIGN_OR_RETURN(file.target_ref, RegisterTimerfd(objects, pid, fd, st));
        break;
      }
      case ClassifiedFd::kPipe:
      case ClassifiedFd::kFifo: {
        ASSIGN_OR_RETURN(file.target_ref,
                         RegisterPipe(objects, pid, fd, st,
                                      c.object == ClassifiedFd::kFifo ? file.path : std::string()));
        break;
      }
      case ClassifiedFd::kShmem: {
        std::string name = file.path.substr(7);
        if (absl::EndsWith(name, " (deleted)")) name.resize(name.size() - 10);
        ASSIGN_OR_RETURN(file.target_ref,
                         mm::RegisterShmemFd(objects, pid, fd, name, st.st_dev, st.st_ino));
        break;
      }
      case ClassifiedFd::kGhost: {
        ASSIGN_OR_RETURN(file.target_ref, RegisterGhost(objects, c.link_path, file.path, st));
        break;
      }
    }
    ASSIGN_OR_RETURN(objhash::ObjHash::Found found,
                     objects.LookupAdd(objhash::ObjKind::kFile,
                                       objhash::Identity::OfFile(pid, fd, st.st_dev, st.st_ino),
                                       file));
    out.push_back({fd, c.cloexec ? static_cast<uint32_t>(FD_CLOEXEC) : 0u, found.objref});
  }
  return out;
}

absl::StatusOr<FsState> CollectFs(pid_t pid) {
  FsState fs;
  ASSIGN_OR_RETURN(fs.cwd, ReadLink(absl::StrCat("/proc/", pid, "/cwd")));
  ASSIGN_OR_RETURN(fs.root, ReadLink(absl::StrCat("/proc/", pid, "/root")));
  if (absl::EndsWith(fs.cwd, " (deleted)")) {
    return absl::UnimplementedError(
        absl::StrCat("task ", pid, ": its working directory ", fs.cwd, " was deleted"));
  }
  return fs;
}

absl::Status WriteFs(const FsState& fs, image::Writer& w) {
  image::ckpt_fs rec{static_cast<uint32_t>(fs.cwd.size()), static_cast<uint32_t>(fs.root.size())};
  std::string paths = fs.cwd + fs.root;
  return w.AppendStructWith(image::CKPT_HDR_FS, rec, paths.data(), paths.size());
}

absl::Status WriteFds(const std::vector<FdEntry>& fds, image::Writer& w) {
  for (const FdEntry& e : fds) {
    image::ckpt_fd rec{e.fd, e.fd_flags, e.file_ref, 0};
    RETURN_IF_ERROR(w.AppendStruct(image::CKPT_HDR_FD, rec));
  }
  return absl::OkStatus();
}

absl::StatusOr<FsState> ReadFsRecord(image::Reader& r) {
  ASSIGN_OR_RETURN(image::ckpt_fs rec, r.Expect<image::ckpt_fs>(image::CKPT_HDR_FS));
  if (rec.cwd_len == 0 || rec.cwd_len > image::kMaxPathLen) {
    return r.FieldError("cwd_len", rec.cwd_len, " is out of range");
  }
  if (rec.root_len == 0 || rec.root_len > image::kMaxPathLen) {
    return r.FieldError("root_len", rec.root_len, " is out of range");
  }
  FsState fs;
  ASSIGN_OR_RETURN(fs.cwd, r.ReadString(rec.cwd_len, "cwd"));
  ASSIGN_OR_RETURN(fs.root, r.ReadString(rec.root_len, "root"));
  if (fs.cwd[0] != '/' || fs.root[0] != '/') return r.FieldError("cwd", "paths must be absolute");
  return fs;
}

absl::StatusOr<std::vector<FdEntry>> ReadFdRecords(image::Reader& r, uint32_t nr_fds,
                                                   int high_fd_base) {
  std::vector<FdEntry> fds;
  for (uint32_t i = 0; i < nr_fds; ++i) {
    ASSIGN_OR_RETURN(image::ckpt_fd rec, r.Expect<image::ckpt_fd>(image::CKPT_HDR_FD));
    if (rec.fd < 0 || rec.fd >= high_fd_base) {
      return r.FieldError("fd", rec.fd, " is outside 0..", high_fd_base - 1,
                          " (the image's largest fd)");
    }
    if (!fds.empty() && rec.fd <= fds.back().fd) {
      return r.FieldError("fd", rec.fd, " is not in ascending order");
    }
    if (rec.fd_flags & ~static_cast<uint32_t>(FD_CLOEXEC)) {
      return r.FieldError("fd_flags", rec.fd_flags, " has unknown bits");
    }
    fds.push_back({rec.fd, rec.fd_flags, rec.file_ref});
  }
  return fds;
}

absl::Status QueueFsRestore(task::SyscallQueue& q, const FsState& fs) {
  RETURN_IF_ERROR(q.Reserve(2, fs.cwd.size() + fs.root.size() + 32));
  task::SyscallBatch& b = q.batch();
  b.Add(SYS_chdir, {b.AddString(fs.cwd)});
  if (fs.root != "/") b.Add(SYS_chroot, {b.AddString(fs.root)});
  return absl::OkStatus();
}

absl::Status QueueFdRestore(task::SyscallQueue& q, const std::vector<FdEntry>& fds,
                            const objhash::RestoreTable& objects, int high_fd_base) {
  RETURN_IF_ERROR(q.Reserve(1, 0));
  q.batch().Add(SYS_close_range, {0, static_cast<uint64_t>(high_fd_base - 1), 0});
  for (const FdEntry& e : fds) {
    ASSIGN_OR_RETURN(const objhash::RestoredObject* obj,
                     objects.Get(e.file_ref, objhash::ObjKind::kFile));
    RETURN_IF_ERROR(q.Reserve(1, 0));
    q.batch().Add(SYS_dup3, {static_cast<uint64_t>(obj->fd), static_cast<uint64_t>(e.fd),
                             (e.fd_flags & FD_CLOEXEC) ? static_cast<uint64_t>(O_CLOEXEC) : 0});
  }
  return absl::OkStatus();
}

absl::Status QueueCloseObjects(task::SyscallQueue& q, int high_fd_base) {
  RETURN_IF_ERROR(q.Reserve(1, 0));
  q.batch().Add(SYS_close_range, {static_cast<uint64_t>(high_fd_base), ~0u, 0});
  return absl::OkStatus();
}

absl::Status RegisterFsHandlers(objhash::HandlerTable& table) {
  RETURN_IF_ERROR(table.Register(
      {objhash::ObjKind::kPipe, "pipe", image::CKPT_HDR_PIPE, CheckpointPipe, RestorePipe}));
  RETURN_IF_ERROR(table.Register({objhash::ObjKind::kTimerfd, "timerfd", image::CKPT_HDR_TIMERFD,
                                  CheckpointTimerfd, RestoreTimerfd}));
  RETURN_IF_ERROR(table.Register(
      {objhash::ObjKind::kGhost, "deleted file", image::CKPT_HDR_GHOST, CheckpointGhost,
       RestoreGhost}));
  return table.Register(
      {objhash::ObjKind::kFile, "file", image::CKPT_HDR_FILE, CheckpointFile, RestoreFile});
}

}  // namespace ckpt::fs
