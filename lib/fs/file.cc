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
#include "lib/mm/mapped_file.h"

namespace ckpt::fs {

absl::Status CheckpointFile(objhash::CheckpointContext& ctx,
                            const objhash::ObjHash::Entry& entry) {
  const auto& f = std::any_cast<const Description&>(entry.data);
  // The object it is on (a pipe, a memfd's memory, a deleted inode) is
  // made first at restore.
  if (f.target_ref != 0) RETURN_IF_ERROR(ctx.Ensure(f.target_ref));
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
  return ctx.writer->AppendStructWith(image::CKPT_HDR_FILE, rec, f.path.data(), f.path.size());
}

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
                                   O_DIRECTORY | O_NOFOLLOW | O_NOATIME | O_PATH | O_ASYNC;
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
  if (kind->has_target) {
    ASSIGN_OR_RETURN(target, ctx.objects->Get(f.target_ref, kind->target_kind));
  }
  ASSIGN_OR_RETURN(UniqueFd owned, kind->open(ctx, f, path, target));
  struct stat st;
  if (fstat(owned.get(), &st) != 0) return ErrnoError(errno, "stat ", path);
  if (kind->check != nullptr) RETURN_IF_ERROR(kind->check(ctx, f, path, owned.get(), st));
  if (kind->seekable && !(f.flags & O_PATH) &&
      lseek(owned.get(), static_cast<off_t>(f.pos), SEEK_SET) < 0) {
    return ErrnoError(errno, "seek ", path, " to ", f.pos);
  }
  return objhash::HoldAt(ctx, f.objref, owned.get(), path);
}

namespace {

bool NamedByPath(const FdProbe& p) {
  return !p.target.empty() && p.target[0] == '/' && !absl::EndsWith(p.target, " (deleted)");
}

absl::StatusOr<UniqueFd> OpenByPath(objhash::RestoreContext&, const image::ckpt_file& rec,
                                    const std::string& path, const objhash::RestoredObject*) {
  int fd = open(path.c_str(), static_cast<int>(rec.flags) | O_CLOEXEC | O_NOCTTY);
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

[[maybe_unused]] const bool kRegistered = RegisterFdKind(&kRegular) && RegisterFdKind(&kDirectory) &&
                         RegisterFdKind(&kCharDevice) &&
                         objhash::RegisterHandler({objhash::ObjKind::kFile, "FILE",
                                                   image::CKPT_HDR_FILE, CheckpointFile,
                                                   RestoreFile});

}  // namespace
}  // namespace ckpt::fs
