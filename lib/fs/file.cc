// FILE objects (an open file description of any fd kind: the record, its
// checks and the loop over the kinds), and the kinds opened by path:
// regular files, directories and the plain character devices.

#include "lib/fs/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>


#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/fs/fdkind.h"
#include "lib/fs/ghost.h"
#include "lib/mm/mapped_file.h"

namespace ckpt::fs {

absl::Status CheckpointFile(objhash::CheckpointContext& ctx,
                            const objhash::ObjHash::Entry& entry) {
  const auto& f = std::any_cast<const Description&>(entry.data);
  // The object it is on (a pipe, a memfd's memory, a deleted inode) is
  // made first at restore; a pid is the tree's, written before any object.
  const objhash::ObjHash::Entry* target = f.target_ref != 0 ? ctx.objects->Get(f.target_ref) : nullptr;
  if (target != nullptr && target->kind != objhash::ObjKind::kPid) {
    RETURN_IF_ERROR(ctx.Ensure(f.target_ref));
  }
  image::ckpt_file rec{};
  rec.objref = entry.objref;
  rec.kind = f.kind;
  rec.flags = f.flags;
  rec.mode = f.st.st_mode;
  rec.pos = f.pos;
  rec.size = S_ISREG(f.st.st_mode) ? static_cast<uint64_t>(f.st.st_size) : 0;
  rec.rdev = f.st.st_rdev;
  rec.mtime_ns = static_cast<uint64_t>(f.st.st_mtim.tv_sec) * 1000000000ull +
                 static_cast<uint64_t>(f.st.st_mtim.tv_nsec);
  rec.path_len = static_cast<uint32_t>(f.path.size());
  rec.target_ref = f.target_ref;
  rec.owner_sig = f.owner_sig;
  if (f.owner_type != image::kOwnerNone) {
    ASSIGN_OR_RETURN(uint32_t owner, ctx.objects->Lookup(objhash::ObjKind::kPid,
                                                         objhash::Identity::OfPid(f.owner_pid)));
    if (owner == 0) {
      return absl::UnimplementedError(absl::StrCat(
          f.path, ": its SIGIO owner (F_SETOWN), ",
          f.owner_type == image::kOwnerPgrp ? "process group " : "task ", f.owner_pid,
          ", is outside the tree: not supported"));
    }
    rec.owner_type = f.owner_type;
    rec.owner_ref = owner;
  }
  return ctx.writer->AppendStructWith(image::CKPT_HDR_FILE, rec, f.path.data(), f.path.size());
}

namespace {

// F_SETSIG; then, once every task exists (the late pass), in a task that
// holds the description: O_ASYNC (set through the task's own fd, which the
// signal's si_fd names; open() takes the flag without arming it) and the
// F_SETOWN_EX owner, which names a task by its number in that namespace.
absl::Status RestoreAsync(objhash::RestoreContext& ctx, const image::ckpt_file& f,
                          const std::string& path, int fd) {
  // A /proc file's placeholder takes no F_SETSIG: its late step sets it.
  if (f.owner_sig != 0 && f.kind != image::kFileProcTask &&
      fcntl(fd, F_SETSIG, static_cast<int>(f.owner_sig)) != 0) {
    return ErrnoError(errno, "F_SETSIG ", f.owner_sig, " on ", path);
  }
  const bool async = f.flags & O_ASYNC;
  if (f.owner_type == image::kOwnerNone && !async) return absl::OkStatus();
  const uint32_t objref = f.objref, owner_ref = f.owner_ref;
  const int type = f.owner_type == image::kOwnerNone   ? -1
                   : f.owner_type == image::kOwnerTid  ? F_OWNER_TID
                   : f.owner_type == image::kOwnerPgrp ? F_OWNER_PGRP
                                                       : F_OWNER_PID;
  return ctx.Later([objref, owner_ref, type, async, path](objhash::LateContext& lc) -> absl::Status {
    for (objhash::LateTask* t : lc.tasks) {
      const int at = t->FdOf(objref);
      if (at < 0) continue;
      const uint64_t fd = static_cast<uint64_t>(at);
      if (type >= 0) {
        struct f_owner_ex owner {};
        owner.type = static_cast<__pid_type>(type);
        owner.pid = t->PidOf(owner_ref);
        if (owner.pid == 0) {
          return absl::InvalidArgumentError(absl::StrCat(
              "FILE ", objref, " (", path, "): owner_ref ", owner_ref, " names no pid of the image"));
        }
        const auto* bytes = reinterpret_cast<const uint8_t*>(&owner);
        ASSIGN_OR_RETURN(int64_t ret, t->Syscall(SYS_fcntl, {fd, F_SETOWN_EX, 0, 0, 0, 0},
                                                 std::span<const uint8_t>(bytes, sizeof(owner)), 2));
        if (ret != 0) {
          return ErrnoError(static_cast<int>(-ret), "task ", t->pid(), ": F_SETOWN_EX of ", path,
                            " to ", owner.pid);
        }
      }
      if (async) {
        ASSIGN_OR_RETURN(int64_t fl, t->Syscall(SYS_fcntl, {fd, F_GETFL, 0, 0, 0, 0}));
        if (fl < 0) return ErrnoError(static_cast<int>(-fl), "task ", t->pid(), ": F_GETFL of ", path);
        ASSIGN_OR_RETURN(int64_t ret,
                         t->Syscall(SYS_fcntl, {fd, F_SETFL, static_cast<uint64_t>(fl) | O_ASYNC, 0, 0, 0}));
        if (ret != 0) {
          return ErrnoError(static_cast<int>(-ret), "task ", t->pid(), ": setting O_ASYNC on ", path);
        }
      }
      return absl::OkStatus();
    }
    return absl::OkStatus();  // no task holds it: no one to signal
  });
}

}  // namespace

absl::StatusOr<objhash::RestoredObject> RestoreFile(objhash::RestoreContext& ctx,
                                                    const image::Record& rec) {
  (void)rec;
  RETURN_IF_ERROR(FdKindsStatus());
  image::Reader& r = *ctx.reader;
  image::ckpt_file f;
  RETURN_IF_ERROR(r.ReadStruct(&f, sizeof(f)));
  const FdKindOps* kind = FdKindOfFile(f.kind);
  if (kind == nullptr) return r.FieldError("kind", f.kind, " is not a known file kind");
  constexpr uint32_t kKnownFlags = O_ACCMODE | O_APPEND | O_NONBLOCK | O_DSYNC | O_SYNC |
                                   O_DIRECT | 0100000 /* O_LARGEFILE as the kernel reports it */ |
                                   O_DIRECTORY | O_NOFOLLOW | O_NOATIME | O_PATH | O_ASYNC |
                                   O_EXCL /* a pidfd's PIDFD_THREAD */;
  if ((f.flags & O_EXCL) && f.kind != image::kFilePidfd && f.kind != image::kFilePidfdExited) {
    return r.FieldError("flags", "O_EXCL (PIDFD_THREAD) on a ", kind->name);
  }
  if (f.flags & ~kKnownFlags) {
    return r.FieldError("flags", absl::StrFormat("0%o", f.flags), " has unknown bits");
  }
  if (f.path_len == 0 || f.path_len > image::kMaxPathLen) {
    return r.FieldError("path_len", f.path_len, " is out of range");
  }
  ASSIGN_OR_RETURN(std::string path, r.ReadString(f.path_len, "path"));
  if (kind->has_target != (f.target_ref != 0)) {
    return r.FieldError("target_ref", f.target_ref, kind->has_target ? " is missing for a " : " for a ",
                        kind->name);
  }
  if (kind->by_path && path[0] != '/') return r.FieldError("path", "'", path, "' is not absolute");
  if (kind->file_type != 0 && (f.mode & S_IFMT) != kind->file_type) {
    return r.FieldError("kind", f.kind, " (", kind->name, ") does not fit its mode 0",
                        absl::StrFormat("%o", f.mode));
  }

  const objhash::RestoredObject* target = nullptr;
  // A pid object is the tree's, not the objects section's: the kind checks
  // it once the tasks exist.
  if (kind->has_target && kind->target_kind != objhash::ObjKind::kPid) {
    ASSIGN_OR_RETURN(target, ctx.objects->Get(f.target_ref, kind->target_kind));
  }
  if (f.owner_type > image::kOwnerPgrp) return r.FieldError("owner_type", f.owner_type, " is not an owner type");
  if ((f.owner_type == image::kOwnerNone) != (f.owner_ref == 0)) {
    return r.FieldError("owner_ref", f.owner_ref, " does not fit owner_type ", f.owner_type);
  }
  if (f.owner_sig > image::kNrSignals) return r.FieldError("owner_sig", f.owner_sig, " is not a signal");
  if (f.reserved2 != 0) return r.FieldError("reserved2", f.reserved2, " is not zero");
  image::ckpt_file opened = f;
  opened.flags &= ~static_cast<uint32_t>(O_ASYNC);  // armed later, in a task (RestoreAsync)
  ASSIGN_OR_RETURN(UniqueFd owned, kind->open(ctx, opened, path, target));
  struct stat st;
  if (fstat(owned.get(), &st) != 0) return ErrnoError(errno, "stat ", path);
  if (kind->check != nullptr) RETURN_IF_ERROR(kind->check(ctx, f, path, owned.get(), st));
  if (kind->seekable && !(f.flags & O_PATH) &&
      lseek(owned.get(), static_cast<off_t>(f.pos), SEEK_SET) < 0) {
    return ErrnoError(errno, "seek ", path, " to ", f.pos);
  }
  RETURN_IF_ERROR(RestoreAsync(ctx, f, path, owned.get()));
  return objhash::HoldAt(ctx, f.objref, owned.get(), path);
}

namespace {

bool NamedByPath(const FdProbe& p) {
  return !p.target.empty() && p.target[0] == '/' && !absl::EndsWith(p.target, " (deleted)");
}

absl::StatusOr<UniqueFd> OpenByPath(objhash::RestoreContext&, const image::ckpt_file& rec,
                                    const std::string& path, const objhash::RestoredObject*) {
  int fd = open(path.c_str(), (static_cast<int>(rec.flags) & ~O_EXCL) | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return ErrnoError(errno, "open file ", path, " for the restore");
  return UniqueFd(fd);
}

// ----------------------------------------------------------- regular files

bool ClaimsRegular(const FdProbe& p) { return S_ISREG(p.st.st_mode) && NamedByPath(p); }

absl::Status DescribeRegular(const FdProbe& p, Description*) {
  struct stat named;
  if (stat(p.target.c_str(), &named) != 0 || named.st_dev != p.st.st_dev ||
      named.st_ino != p.st.st_ino) {
    return absl::FailedPreconditionError(absl::StrCat(
        "task ", p.pid, " fd ", p.fd, ": ", p.target, " no longer names the file it has open"));
  }
  return absl::OkStatus();
}

// A file must be as it was; one the task appends to (O_APPEND, a log) may
// have grown, but not have lost what the task had written.
absl::Status CheckRegular(objhash::RestoreContext& ctx, const image::ckpt_file& rec,
                          const std::string& path, int fd, const struct stat& st) {
  RETURN_IF_ERROR(CheckFileType(rec, path, st));
  if (rec.flags & O_PATH) return absl::OkStatus();
  mm::FileExpectation expect;
  if ((rec.flags & O_ACCMODE) != O_RDONLY && (rec.flags & O_APPEND)) {
    expect.grown_ok = true;
    expect.mtime = false;
  }
  return mm::CheckUnchanged(rec, path, fd, expect, ctx.flags);
}

const FdKindOps kRegular = {
    .name = "regular file",
    .file_kind = image::kFileRegular,
    .order = 50,
    .file_type = S_IFREG,
    .seekable = true,
    .by_path = true,
    .has_target = false,
    .target_kind = objhash::ObjKind{0},
    .claims = ClaimsRegular,
    .describe = DescribeRegular,
    .register_target = nullptr,
    .open = OpenByPath,
    .check = CheckRegular,
};

// ------------------------------------------------------------- directories

bool ClaimsDirectory(const FdProbe& p) { return S_ISDIR(p.st.st_mode) && NamedByPath(p); }

absl::Status CheckDirectory(objhash::RestoreContext&, const image::ckpt_file& rec,
                            const std::string& path, int, const struct stat& st) {
  return CheckFileType(rec, path, st);
}

const FdKindOps kDirectory = {
    .name = "directory",
    .file_kind = image::kFileDirectory,
    .order = 51,
    .file_type = S_IFDIR,
    .seekable = true,
    .by_path = true,
    .has_target = false,
    .target_kind = objhash::ObjKind{0},
    .claims = ClaimsDirectory,
    .describe = nullptr,
    .register_target = nullptr,
    .open = OpenByPath,
    .check = CheckDirectory,
};

// -------------------------------- /dev/null, zero, full, random, urandom

bool ClaimsCharDevice(const FdProbe& p) {
  const dev_t rdev = p.st.st_rdev;
  return S_ISCHR(p.st.st_mode) && NamedByPath(p) && major(rdev) == 1 &&
         (minor(rdev) == 3 || minor(rdev) == 5 || minor(rdev) == 7 || minor(rdev) == 8 ||
          minor(rdev) == 9);
}

absl::Status CheckCharDevice(objhash::RestoreContext&, const image::ckpt_file& rec,
                             const std::string& path, int, const struct stat& st) {
  RETURN_IF_ERROR(CheckFileType(rec, path, st));
  if (st.st_rdev != rec.rdev) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "device %s is %u:%u, the dump had %u:%u", path, major(st.st_rdev), minor(st.st_rdev),
        major(rec.rdev), minor(rec.rdev)));
  }
  return absl::OkStatus();
}

const FdKindOps kCharDevice = {
    .name = "character device",
    .file_kind = image::kFileCharDevice,
    .order = 52,
    .file_type = S_IFCHR,
    .seekable = false,
    .by_path = true,
    .has_target = false,
    .target_kind = objhash::ObjKind{0},
    .claims = ClaimsCharDevice,
    .describe = nullptr,
    .register_target = nullptr,
    .open = OpenByPath,
    .check = CheckCharDevice,
};

// A node of one of those devices, unlinked while open (mknod, open,
// unlink): made again under a fresh name next to the old one, opened and
// unlinked (mknod needs CAP_MKNOD in the initial user namespace).

bool ClaimsDeletedCharDevice(const FdProbe& p) {
  if (p.target.empty() || p.target[0] != '/' || !absl::EndsWith(p.target, " (deleted)")) return false;
  FdProbe named = p;
  named.target.resize(named.target.size() - 10);
  return ClaimsCharDevice(named);
}

absl::Status DescribeDeletedCharDevice(const FdProbe& p, Description* file) {
  file->path = p.target.substr(0, p.target.size() - 10);
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> OpenDeletedCharDevice(objhash::RestoreContext&, const image::ckpt_file& rec,
                                               const std::string& path, const objhash::RestoredObject*) {
  if (!S_ISCHR(rec.mode) || major(rec.rdev) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("FILE ", rec.objref, ": field 'rdev': ", path,
                                                   " is not one of the plain character devices"));
  }
  // mknod's mode goes through the restorer's umask: set again after.
  const dev_t rdev = static_cast<dev_t>(rec.rdev);
  return RecreateUnnamed(
      path, "the deleted device node",
      [&](const char* name) { return mknod(name, S_IFCHR | 0600, rdev); },
      static_cast<int>(rec.flags) | O_NOCTTY, S_IFCHR, rec.mode & 07777);
}

const FdKindOps kDeletedCharDevice = {
    .name = "deleted character device",
    .file_kind = image::kFileDeletedCharDevice,
    .order = 53,
    .file_type = S_IFCHR,
    .seekable = false,
    .by_path = true,
    .has_target = false,
    .target_kind = objhash::ObjKind{0},
    .claims = ClaimsDeletedCharDevice,
    .describe = DescribeDeletedCharDevice,
    .register_target = nullptr,
    .open = OpenDeletedCharDevice,
    .check = CheckCharDevice,
};

// ----------------------------------------- a symbolic link, open O_PATH

bool ClaimsSymlink(const FdProbe& p) { return S_ISLNK(p.st.st_mode) && NamedByPath(p); }

absl::StatusOr<UniqueFd> OpenSymlink(objhash::RestoreContext&, const image::ckpt_file& rec,
                                     const std::string& path, const objhash::RestoredObject*) {
  if (!(rec.flags & O_PATH) || !(rec.flags & O_NOFOLLOW)) {
    return absl::InvalidArgumentError(absl::StrCat("FILE ", rec.objref, ": field 'flags': the symlink ",
                                                   path, " is not open O_PATH|O_NOFOLLOW"));
  }
  int fd = open(path.c_str(), static_cast<int>(rec.flags) | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "open the symlink ", path, " for the restore");
  return UniqueFd(fd);
}

absl::Status CheckSymlink(objhash::RestoreContext&, const image::ckpt_file& rec,
                          const std::string& path, int, const struct stat& st) {
  return CheckFileType(rec, path, st);
}

const FdKindOps kSymlink = {
    .name = "symbolic link",
    .file_kind = image::kFileSymlink,
    .order = 54,
    .file_type = S_IFLNK,
    .seekable = false,
    .by_path = true,
    .has_target = false,
    .target_kind = objhash::ObjKind{0},
    .claims = ClaimsSymlink,
    .describe = nullptr,
    .register_target = nullptr,
    .open = OpenSymlink,
    .check = CheckSymlink,
};

[[maybe_unused]] const bool kRegistered = RegisterFdKind(&kRegular) && RegisterFdKind(&kDirectory) &&
                         RegisterFdKind(&kCharDevice) && RegisterFdKind(&kDeletedCharDevice) &&
                         RegisterFdKind(&kSymlink) &&
                         objhash::RegisterHandler({objhash::ObjKind::kFile, "FILE",
                                                   image::CKPT_HDR_FILE, CheckpointFile,
                                                   RestoreFile});

}  // namespace
}  // namespace ckpt::fs
