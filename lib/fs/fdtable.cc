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
#include "lib/fs/fdkind.h"
#include "lib/fs/ghost.h"
#include "lib/fs/file.h"
#include "lib/fs/fs.h"

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
  RETURN_IF_ERROR(FdKindsStatus());
  ClassifiedFd c;
  FdProbe& p = c.probe;
  p.pid = pid;
  p.fd = fd;
  p.dump_flags = dump_flags;
  p.link_path = absl::StrCat("/proc/", pid, "/fd/", fd);
  ASSIGN_OR_RETURN(p.target, ReadLink(p.link_path));
  if (stat(p.link_path.c_str(), &p.st) != 0) return ErrnoError(errno, "task ", pid, " fd ", fd);
  ASSIGN_OR_RETURN(FdInfo info, ReadFdInfo(pid, fd));

  c.fd = fd;
  c.cloexec = info.flags & O_CLOEXEC;
  Description& file = c.file;
  file.st = p.st;
  file.pos = info.pos;
  // What open() was told but the description does not keep as a state:
  // O_CLOEXEC is the fd's, O_TMPFILE (and the O_DIRECTORY bit it carries)
  // made a file that is an unlinked regular file now.
  constexpr uint32_t kTmpfileBit = 020000000;  // __O_TMPFILE
  file.flags = info.flags & ~static_cast<uint32_t>(O_CLOEXEC | kTmpfileBit);
  if (!S_ISDIR(p.st.st_mode)) file.flags &= ~static_cast<uint32_t>(O_DIRECTORY);
  file.path = p.target;
  for (const FdKindOps* kind : FdKinds()) {
    if (!kind->claims(p)) continue;
    c.kind = kind;
    file.kind = kind->file_kind;
    if (kind->describe != nullptr) RETURN_IF_ERROR(kind->describe(p, &file));
    return c;
  }
  // No kind claims it: not supported yet.
  const std::string& t = p.target;
  if (absl::StartsWith(t, "socket:")) return Unsupported(pid, fd, "a socket (" + t + ")");
  if (absl::StartsWith(t, "anon_inode:")) {
    // "anon_inode:[io_uring]", "anon_inode:[userfaultfd]", "anon_inode:bpf-map", ...
    std::string kind(absl::StripSuffix(absl::StripPrefix(t.substr(11), "["), "]"));
    return Unsupported(pid, fd, kind + " (" + t + ")");
  }
  if (t.empty() || t[0] != '/') return Unsupported(pid, fd, "'" + t + "'");
  if (absl::EndsWith(t, " (deleted)")) return Unsupported(pid, fd, "the deleted " + t);
  return Unsupported(pid, fd, "the special file " + t);
}

// The description's SIGIO owner and signal, through a copy of it.
absl::Status ReadOwner(int pidfd, pid_t pid, int fd, Description* file) {
  // Only where signal-driven I/O is armed, or on a socket (whose owner
  // gets SIGURG too, and which programs set before arming): the copy is not
  // free (closing it flushes the file, as any close does).
  if ((file->flags & O_PATH) || (!(file->flags & O_ASYNC) && !S_ISSOCK(file->st.st_mode))) {
    return absl::OkStatus();
  }
  UniqueFd copy(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, fd, 0)));
  if (!copy.valid()) return ErrnoError(errno, "task ", pid, " fd ", fd, ": pidfd_getfd");
  struct f_owner_ex owner {};
  if (fcntl(copy.get(), F_GETOWN_EX, &owner) != 0) {
    return ErrnoError(errno, "task ", pid, " fd ", fd, ": F_GETOWN_EX");
  }
  int sig = fcntl(copy.get(), F_GETSIG);
  if (sig < 0) return ErrnoError(errno, "task ", pid, " fd ", fd, ": F_GETSIG");
  file->owner_sig = static_cast<uint32_t>(sig);
  if (owner.pid != 0) {
    file->owner_pid = owner.pid;
    file->owner_type = owner.type == F_OWNER_TID    ? image::kOwnerTid
                       : owner.type == F_OWNER_PGRP ? image::kOwnerPgrp
                                                    : image::kOwnerPid;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<FdEntry>> CollectFds(pid_t pid, objhash::ObjHash& objects,
                                                uint32_t dump_flags) {
  ASSIGN_OR_RETURN(std::vector<int> fds, ListFds(pid));
  std::vector<FdEntry> out;
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd.valid() && !fds.empty()) return ErrnoError(errno, "pidfd_open of task ", pid);
  for (int fd : fds) {
    bool cloexec = false;
    ASSIGN_OR_RETURN(uint32_t objref,
                     RegisterDescription(pid, fd, pidfd.get(), objects, dump_flags, &cloexec));
    out.push_back({fd, cloexec ? static_cast<uint32_t>(FD_CLOEXEC) : 0u, objref});
  }
  return out;
}

absl::StatusOr<uint32_t> RegisterDescription(pid_t pid, int fd, int pidfd, objhash::ObjHash& objects,
                                             uint32_t dump_flags, bool* cloexec) {
  ASSIGN_OR_RETURN(ClassifiedFd c, ClassifyFd(pid, fd, dump_flags));
  RETURN_IF_ERROR(ReadOwner(pidfd, pid, fd, &c.file));
  // The kind registers its object first: a description met again (by
  // kcmp) keeps its first target.
  ASSIGN_OR_RETURN(uint32_t known,
                   objects.Lookup(objhash::ObjKind::kFile,
                                  objhash::Identity::OfFile(pid, fd, c.file.st.st_dev, c.file.st.st_ino)));
  if (cloexec != nullptr) *cloexec = c.cloexec;
  if (known != 0) return known;
  if (c.kind->register_target != nullptr) {
    ASSIGN_OR_RETURN(c.file.target_ref, c.kind->register_target(objects, c.probe, c.file));
  }
  const struct stat& st = c.file.st;
  ASSIGN_OR_RETURN(objhash::ObjHash::Found found,
                   objects.LookupAdd(objhash::ObjKind::kFile,
                                     objhash::Identity::OfFile(pid, fd, st.st_dev, st.st_ino),
                                     c.file));
  return found.objref;
}

absl::StatusOr<FsState> CollectFs(pid_t pid, objhash::ObjHash& objects) {
  FsState fs;
  const std::string cwd_link = absl::StrCat("/proc/", pid, "/cwd");
  ASSIGN_OR_RETURN(fs.cwd, ReadLink(cwd_link));
  ASSIGN_OR_RETURN(fs.root, ReadLink(absl::StrCat("/proc/", pid, "/root")));
  if (absl::EndsWith(fs.cwd, " (deleted)")) {
    // Removed while the task sat in it: made again (empty) and removed
    // again at restore, like a removed directory held open.
    fs.cwd.resize(fs.cwd.size() - 10);
    struct stat st;
    if (stat(cwd_link.c_str(), &st) != 0) return ErrnoError(errno, "stat ", cwd_link);
    ASSIGN_OR_RETURN(fs.cwd_ref, RegisterGhost(objects, cwd_link, fs.cwd, st));
  }
  if (absl::EndsWith(fs.root, " (deleted)")) {
    // Likewise a removed root directory (a chroot into it).
    const std::string root_link = absl::StrCat("/proc/", pid, "/root");
    fs.root.resize(fs.root.size() - 10);
    struct stat st;
    if (stat(root_link.c_str(), &st) != 0) return ErrnoError(errno, "stat ", root_link);
    ASSIGN_OR_RETURN(fs.root_ref, RegisterGhost(objects, root_link, fs.root, st));
  }
  return fs;
}

absl::Status WriteFs(const FsState& fs, image::Writer& w) {
  image::ckpt_fs rec{static_cast<uint32_t>(fs.cwd.size()), static_cast<uint32_t>(fs.root.size()),
                     fs.cwd_ref, fs.root_ref};
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
  fs.cwd_ref = rec.cwd_ref;
  fs.root_ref = rec.root_ref;
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

absl::Status QueueFsRestore(task::SyscallQueue& q, const FsState& fs,
                            const objhash::RestoreTable& objects) {
  RETURN_IF_ERROR(q.Reserve(2, fs.cwd.size() + fs.root.size() + 64));
  task::SyscallBatch& b = q.batch();
  // A recreated (and removed again) directory, which the task holds among
  // the restorer's objects.
  auto removed_dir = [&](uint32_t ref, const char* field) -> absl::StatusOr<int> {
    ASSIGN_OR_RETURN(const objhash::RestoredObject* dir, objects.Get(ref, objhash::ObjKind::kGhost));
    struct stat st;
    if (fstat(dir->fd, &st) != 0 || !S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat("image record FS: field '", field,
                                                     "': GHOST ", ref, " is not a directory"));
    }
    return dir->fd;
  };
  if (fs.cwd_ref != 0) {
    ASSIGN_OR_RETURN(int fd, removed_dir(fs.cwd_ref, "cwd_ref"));
    b.Add(SYS_fchdir, {static_cast<uint64_t>(fd)});
  } else {
    b.Add(SYS_chdir, {b.AddString(fs.cwd)});
  }
  if (fs.root_ref != 0) {
    // Through the fd's /proc link, which leaves the working directory be.
    ASSIGN_OR_RETURN(int fd, removed_dir(fs.root_ref, "root_ref"));
    b.Add(SYS_chroot, {b.AddString(absl::StrCat("/proc/self/fd/", fd))});
  } else if (fs.root != "/") {
    b.Add(SYS_chroot, {b.AddString(fs.root)});
  }
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

absl::Status QueueCloseObjects(task::SyscallQueue& q, int high_fd_base, const std::vector<int>& keep) {
  uint64_t from = static_cast<uint64_t>(high_fd_base);
  for (int k : keep) {
    if (k < high_fd_base || static_cast<uint64_t>(k) < from) continue;
    if (static_cast<uint64_t>(k) > from) {
      RETURN_IF_ERROR(q.Reserve(1, 0));
      q.batch().Add(SYS_close_range, {from, static_cast<uint64_t>(k) - 1, 0});
    }
    from = static_cast<uint64_t>(k) + 1;
  }
  RETURN_IF_ERROR(q.Reserve(1, 0));
  q.batch().Add(SYS_close_range, {from, ~0u, 0});
  return absl::OkStatus();
}

}  // namespace ckpt::fs
