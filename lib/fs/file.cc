// FILE objects: one open file description of a regular file, a directory
// or a character device.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/fs/file.h"
#include "lib/fs/pipe.h"
#include "lib/mm/mapped_file.h"

namespace ckpt::fs {

absl::Status CheckpointFile(objhash::CheckpointContext& ctx,
                            const objhash::ObjHash::Entry& entry) {
  const auto& f = std::any_cast<const OpenFile&>(entry.data);
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

namespace {


}  // namespace

absl::StatusOr<objhash::RestoredObject> RestoreFile(objhash::RestoreContext& ctx,
                                                    const image::Record& rec) {
  (void)rec;
  image::Reader& r = *ctx.reader;
  image::ckpt_file f;
  RETURN_IF_ERROR(r.ReadStruct(&f, sizeof(f)));
  if (f.kind < image::kFileRegular || f.kind > image::kFileTimerfd) {
    return r.FieldError("kind", f.kind, " is not a known file kind");
  }
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
  const bool anonymous = f.kind == image::kFilePipe || f.kind == image::kFileShmem ||
                         f.kind == image::kFileTimerfd;
  bool on_target = anonymous || (f.kind == image::kFileRegular && f.target_ref);
  if (!on_target && f.target_ref != 0) return r.FieldError("target_ref", "only pipes and deleted files have one");
  if (!anonymous && path[0] != '/') {
    return r.FieldError("path", "'", path, "' is not absolute");
  }

  UniqueFd owned;
  bool inherited = false;  // the caller's fd, for an external object: any kind of file
  if (f.kind == image::kFileTimerfd) {
    // One description: the descriptors share the restorer's timerfd.
    ASSIGN_OR_RETURN(const objhash::RestoredObject* timer,
                     ctx.objects->Get(f.target_ref, objhash::ObjKind::kTimerfd));
    int fd = fcntl(timer->fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return ErrnoError(errno, "dup of a timerfd");
    owned.reset(fd);
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, (fl & ~O_NONBLOCK) | (static_cast<int>(f.flags) & O_NONBLOCK)) != 0) {
      return ErrnoError(errno, "setting a timerfd's flags");
    }
  } else if (f.kind == image::kFilePipe) {
    ASSIGN_OR_RETURN(const objhash::RestoredObject* pipe,
                     ctx.objects->Get(f.target_ref, objhash::ObjKind::kPipe));
    const auto* restored = std::any_cast<RestoredPipe>(&pipe->data);
    if (restored != nullptr && restored->external) {
      // The caller's fd itself, at every number that held an end of it.
      int fd = fcntl(pipe->fd, F_DUPFD_CLOEXEC, 0);
      if (fd < 0) return ErrnoError(errno, "dup of the fd given for ", path);
      owned.reset(fd);
      inherited = true;
    } else {
      ASSIGN_OR_RETURN(owned, Reopen(pipe->fd, static_cast<int>(f.flags), path));
    }
  } else if (f.kind == image::kFileShmem) {
    ASSIGN_OR_RETURN(const objhash::RestoredObject* shmem,
                     ctx.objects->Get(f.target_ref, objhash::ObjKind::kShmem));
    ASSIGN_OR_RETURN(owned, Reopen(shmem->fd, static_cast<int>(f.flags), path));
  } else if (f.target_ref != 0) {
    ASSIGN_OR_RETURN(const objhash::RestoredObject* ghost,
                     ctx.objects->Get(f.target_ref, objhash::ObjKind::kGhost));
    ASSIGN_OR_RETURN(owned, Reopen(ghost->fd, static_cast<int>(f.flags), path));
  } else if (f.kind == image::kFileTty) {
    if (!(ctx.flags & objhash::kRestoreShellJob)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the image's tasks used the dumper's terminal (", path,
          "): restore with --shell-job to give them this one"));
    }
    int fd = open("/dev/tty", static_cast<int>(f.flags) | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return ErrnoError(errno, "--shell-job: this process's terminal (/dev/tty)");
    owned.reset(fd);
  } else {
    int fd = open(path.c_str(), static_cast<int>(f.flags) | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return ErrnoError(errno, "open file ", path, " for the restore");
    owned.reset(fd);
  }
  int fd = owned.get();
  struct stat st;
  if (fstat(fd, &st) != 0) return ErrnoError(errno, "stat ", path);
  if (f.kind != image::kFileTty && !inherited && (st.st_mode & S_IFMT) != (f.mode & S_IFMT)) {
    return absl::FailedPreconditionError(
        absl::StrCat("file ", path, " changed type since the dump"));
  }
  // A file must be as it was; one the task appends to (O_APPEND, a log)
  // may have grown, but not have lost what the task had written.
  if (f.kind == image::kFileRegular && f.target_ref == 0 && !(f.flags & O_PATH)) {
    mm::FileExpectation expect;
    if ((f.flags & O_ACCMODE) != O_RDONLY && (f.flags & O_APPEND)) {
      expect.grown_ok = true;
      expect.mtime = false;
    }
    RETURN_IF_ERROR(mm::CheckUnchanged(f, path, fd, expect, ctx.flags));
  }
  if (f.kind == image::kFileCharDevice && st.st_rdev != f.rdev) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "device %s is %u:%u, the dump had %u:%u", path, major(st.st_rdev), minor(st.st_rdev),
        major(f.rdev), minor(f.rdev)));
  }
  bool seekable = f.kind == image::kFileRegular || f.kind == image::kFileDirectory ||
                  f.kind == image::kFileShmem;
  if (seekable && !(f.flags & O_PATH) && lseek(fd, static_cast<off_t>(f.pos), SEEK_SET) < 0) {
    return ErrnoError(errno, "seek ", path, " to ", f.pos);
  }
  return objhash::HoldAt(ctx, f.objref, fd, path);
}

}  // namespace ckpt::fs
