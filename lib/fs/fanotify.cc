// FANOTIFY objects: a fanotify group with its init flags and every mark.
//
// Dump: /proc/PID/fdinfo shows the group's flags and event flags and each
// mark: an inode's (by file handle, opened to find its path as for
// inotify), a mount's (by mount id, whose mount point names it) or a
// filesystem's (by device, named by a mount of it), each with its mask,
// ignore mask and mark flags. Events queued or waiting for a permission
// answer are not saved (lost, as for inotify).
//
// Restore: fanotify_init() with the same flags, then fanotify_mark() for
// each mask and ignore mask.

#include <fcntl.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/fs/anonfd.h"
#include "lib/fs/fdkind.h"
#include "lib/image/format.h"
#include "lib/image/records.h"

namespace ckpt::fs {
namespace {

constexpr objhash::ObjKind kObjFanotify{21};

constexpr image::FieldSpec kFanotifyFields[] = {
    CKPT_FIELD(image::ckpt_fanotify, objref, kUnsigned),
    CKPT_FIELD(image::ckpt_fanotify, nr_marks, kUnsigned),
    CKPT_FIELD(image::ckpt_fanotify, flags, kHex),
    CKPT_FIELD(image::ckpt_fanotify, event_flags, kOctal),
};
CKPT_RECORD(image::CKPT_HDR_FANOTIFY, "FANOTIFY", image::ckpt_fanotify, kFanotifyFields, 0, kNone);

constexpr image::FieldSpec kMarkFields[] = {
    CKPT_FIELD(image::ckpt_fanotify_mark, type, kUnsigned),
    CKPT_FIELD(image::ckpt_fanotify_mark, mflags, kHex),
    CKPT_FIELD(image::ckpt_fanotify_mark, mask, kHex),
    CKPT_FIELD(image::ckpt_fanotify_mark, ignored_mask, kHex),
    CKPT_FIELD(image::ckpt_fanotify_mark, path_len, kUnsigned),
    CKPT_FIELD(image::ckpt_fanotify_mark, dev, kHex),
    CKPT_FIELD(image::ckpt_fanotify_mark, ino, kUnsigned),
};
CKPT_RECORD(image::CKPT_HDR_FANOTIFY_MARK, "FANOTIFY_MARK", image::ckpt_fanotify_mark, kMarkFields,
            image::kMaxPathLen, kPaths);

#ifndef FAN_MARK_EVICTABLE
#define FAN_MARK_EVICTABLE 0x00000200
#endif
#ifndef FAN_MARK_IGNORE
#define FAN_MARK_IGNORE 0x00000400
#endif
// What fdinfo's mflags may hold.
constexpr uint32_t kKnownMflags = FAN_MARK_IGNORED_SURV_MODIFY | FAN_MARK_EVICTABLE | FAN_MARK_IGNORE;
// fanotify_init() flags a group keeps (FAN_CLOEXEC and FAN_NONBLOCK as
// given at init, which fdinfo shows; the FILE's own say what its
// descriptors have now).
constexpr uint32_t kKnownInitFlags = 0x0000ffff;
constexpr uint32_t kKnownEventFlags = O_ACCMODE | 0100000 /* O_LARGEFILE as the kernel reports it */ | O_CLOEXEC | O_APPEND | O_DSYNC |
                                      O_NOATIME | O_NONBLOCK | O_SYNC;

struct Mark {
  image::ckpt_fanotify_mark rec{};
  std::string path;
};

struct FanotifyData {
  uint32_t flags = 0;
  uint32_t event_flags = 0;
  std::vector<Mark> marks;
};

bool ClaimsFanotify(const FdProbe& p) { return p.target == "anon_inode:[fanotify]"; }

absl::StatusOr<uint32_t> RegisterFanotify(objhash::ObjHash& objects, const FdProbe& p, const Description&) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(absl::StrCat("/proc/", p.pid, "/fdinfo/", p.fd)));
  FanotifyData fan;
  bool group = false;
  auto fail = [&](absl::string_view line, absl::string_view why) {
    return absl::UnimplementedError(absl::StrCat("task ", p.pid, " fd ", p.fd, ": fanotify mark '", line, "': ", why));
  };
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (!absl::StartsWith(line, "fanotify ")) continue;
    std::string l(line);
    unsigned a = 0, b = 0, mflags = 0, mask = 0, ignored = 0, bytes = 0, sdev = 0;
    int type = 0;
    unsigned long long ino = 0;
    char hex[2 * 128 + 1] = {};
    Mark m;
    if (std::sscanf(l.c_str(), "fanotify flags:%x event-flags:%x", &a, &b) == 2) {
      fan.flags = a;
      fan.event_flags = b;
      group = true;
      continue;
    }
    if (std::sscanf(l.c_str(),
                    "fanotify ino:%llx sdev:%x mflags:%x mask:%x ignored_mask:%x fhandle-bytes:%x "
                    "fhandle-type:%x f_handle:%256s",
                    &ino, &sdev, &mflags, &mask, &ignored, &bytes, &type, hex) == 8) {
      m.rec.type = image::kFanMarkInode;
      m.rec.dev = KernelDevToUser(sdev);
      m.rec.ino = ino;
      absl::StatusOr<std::string> path = PathOfHandle(p.pid, m.rec.dev, ino, bytes, type, hex);
      if (!path.ok()) return fail(line, path.status().message());
      m.path = *path;
    } else if (std::sscanf(l.c_str(), "fanotify mnt_id:%x mflags:%x mask:%x ignored_mask:%x", &a, &mflags, &mask,
                           &ignored) == 4) {
      m.rec.type = image::kFanMarkMount;
      absl::StatusOr<std::string> path = MountPointOf(static_cast<int>(a));
      if (!path.ok()) return fail(line, path.status().message());
      m.path = *path;
    } else if (std::sscanf(l.c_str(), "fanotify sdev:%x mflags:%x mask:%x ignored_mask:%x", &sdev, &mflags, &mask,
                           &ignored) == 4) {
      m.rec.type = image::kFanMarkFilesystem;
      m.rec.dev = KernelDevToUser(sdev);
      absl::StatusOr<std::string> path = MountPointOfDev(m.rec.dev);
      if (!path.ok()) return fail(line, path.status().message());
      m.path = *path;
    } else {
      return fail(line, "not a mark this version knows");
    }
    m.rec.mflags = mflags;
    m.rec.mask = mask;
    m.rec.ignored_mask = ignored;
    m.rec.path_len = static_cast<uint32_t>(m.path.size());
    fan.marks.push_back(std::move(m));
  }
  // fdinfo lists the newest mark first: the image keeps them in the order
  // they were made, which the restore makes them in again.
  std::reverse(fan.marks.begin(), fan.marks.end());
  if (!group) {
    return absl::InternalError(absl::StrCat("task ", p.pid, " fd ", p.fd, ": fdinfo does not describe a fanotify group"));
  }
  if (fan.marks.size() > image::kMaxFanotifyMarks) {
    return absl::UnimplementedError(absl::StrCat("task ", p.pid, " fd ", p.fd, ": ", fan.marks.size(), " fanotify marks"));
  }
  ASSIGN_OR_RETURN(objhash::ObjHash::Found f,
                   objects.LookupAdd(kObjFanotify,
                                     objhash::Identity::OfFile(p.pid, p.fd, p.st.st_dev, p.st.st_ino), fan));
  return f.objref;
}

absl::Status CheckpointFanotify(objhash::CheckpointContext& ctx, const objhash::ObjHash::Entry& entry) {
  const FanotifyData& fan = std::any_cast<const FanotifyData&>(entry.data);
  image::ckpt_fanotify rec{entry.objref, static_cast<uint32_t>(fan.marks.size()), fan.flags, fan.event_flags};
  RETURN_IF_ERROR(ctx.writer->AppendStruct(image::CKPT_HDR_FANOTIFY, rec));
  for (const Mark& m : fan.marks) {
    RETURN_IF_ERROR(ctx.writer->AppendStructWith(image::CKPT_HDR_FANOTIFY_MARK, m.rec, m.path.data(), m.path.size()));
  }
  return absl::OkStatus();
}

absl::StatusOr<objhash::RestoredObject> RestoreFanotify(objhash::RestoreContext& ctx, const image::Record&) {
  image::Reader& r = *ctx.reader;
  image::ckpt_fanotify rec;
  RETURN_IF_ERROR(r.ReadStruct(&rec, sizeof(rec)));
  if (rec.nr_marks > image::kMaxFanotifyMarks) return r.FieldError("nr_marks", rec.nr_marks, " is too many");
  if (rec.flags & ~kKnownInitFlags) return r.FieldError("flags", "0x", absl::Hex(rec.flags), " has unknown bits");
  if (rec.event_flags & ~kKnownEventFlags) {
    return r.FieldError("event_flags", "0x", absl::Hex(rec.event_flags), " has unknown bits");
  }
  std::vector<Mark> marks;
  for (uint32_t i = 0; i < rec.nr_marks; ++i) {
    ASSIGN_OR_RETURN(image::ckpt_fanotify_mark m, r.Expect<image::ckpt_fanotify_mark>(image::CKPT_HDR_FANOTIFY_MARK));
    if (m.type < image::kFanMarkInode || m.type > image::kFanMarkFilesystem) {
      return r.FieldError("type", m.type, " is not a mark type");
    }
    if (m.mflags & ~kKnownMflags) return r.FieldError("mflags", "0x", absl::Hex(m.mflags), " has unknown bits");
    if (m.mask == 0 && m.ignored_mask == 0) return r.FieldError("mask", "a mark with no mask and no ignore mask");
    if (m.reserved != 0) return r.FieldError("reserved", m.reserved, " is not zero");
    if (m.path_len == 0 || m.path_len > image::kMaxPathLen) return r.FieldError("path_len", m.path_len, " is out of range");
    ASSIGN_OR_RETURN(std::string path, r.ReadString(m.path_len, "path"));
    if (!absl::StartsWith(path, "/") || path.find('\0') != std::string::npos) {
      return r.FieldError("path", "'", path, "' is not an absolute path");
    }
    marks.push_back({m, std::move(path)});
  }
  // The flags as the group was made with, which fdinfo shows; the
  // descriptors' own come from their FILE records.
  int fd = fanotify_init(rec.flags, rec.event_flags);
  if (fd < 0) return ErrnoError(errno, "FANOTIFY ", rec.objref, ": fanotify_init(0x", absl::Hex(rec.flags), ")");
  UniqueFd owned(fd);
  if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) return ErrnoError(errno, "FANOTIFY ", rec.objref, ": FD_CLOEXEC");
  for (const Mark& m : marks) {
    unsigned int how = m.rec.type == image::kFanMarkMount        ? FAN_MARK_MOUNT
                       : m.rec.type == image::kFanMarkFilesystem ? FAN_MARK_FILESYSTEM
                                                                 : 0;
    // An inode's mark goes on the inode checked here, through its /proc
    // link (followed: the link names the inode itself).
    std::string path = m.path;
    UniqueFd inode;
    if (m.rec.type == image::kFanMarkInode) {
      inode = UniqueFd(open(m.path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
      if (!inode.valid()) return ErrnoError(errno, "FANOTIFY ", rec.objref, ": marked inode ", m.path);
      struct stat st;
      if (fstat(inode.get(), &st) != 0) return ErrnoError(errno, "stat ", m.path);
      if ((st.st_dev != m.rec.dev || st.st_ino != m.rec.ino) && !(ctx.flags & objhash::kRestoreAllowChangedFiles)) {
        return absl::FailedPreconditionError(absl::StrCat(
            "FANOTIFY ", rec.objref, ": ", m.path, " is another inode than at the dump (inode ", m.rec.ino,
            ", now ", st.st_ino, "); restore with --allow-changed-files to mark it as it is"));
      }
      path = absl::StrCat("/proc/self/fd/", inode.get());
    }
    how |= m.rec.mflags & FAN_MARK_EVICTABLE;
    if (m.rec.mask != 0 && fanotify_mark(fd, FAN_MARK_ADD | how, m.rec.mask, AT_FDCWD, path.c_str()) != 0) {
      return ErrnoError(errno, "FANOTIFY ", rec.objref, ": marking ", m.path, " with mask 0x", absl::Hex(m.rec.mask));
    }
    if (m.rec.ignored_mask != 0) {
      unsigned int ignore = (m.rec.mflags & FAN_MARK_IGNORE) ? FAN_MARK_IGNORE : FAN_MARK_IGNORED_MASK;
      ignore |= m.rec.mflags & FAN_MARK_IGNORED_SURV_MODIFY;
      if (fanotify_mark(fd, FAN_MARK_ADD | how | ignore, m.rec.ignored_mask, AT_FDCWD, path.c_str()) != 0) {
        return ErrnoError(errno, "FANOTIFY ", rec.objref, ": ignore mask 0x", absl::Hex(m.rec.ignored_mask), " on ",
                          m.path);
      }
    }
  }
  return objhash::HoldAt(ctx, rec.objref, fd, "a fanotify group");
}

absl::StatusOr<UniqueFd> OpenFanotify(objhash::RestoreContext&, const image::ckpt_file& rec, const std::string&,
                                      const objhash::RestoredObject* obj) {
  return DupWithNonblock(obj->fd, rec.flags, "a fanotify group");
}

const FdKindOps kFanotifyKind = {
    .name = "fanotify",
    .file_kind = image::kFileFanotify,
    .order = 17,
    .file_type = 0,
    .seekable = false,
    .by_path = false,
    .has_target = true,
    .target_kind = kObjFanotify,
    .claims = ClaimsFanotify,
    .describe = nullptr,
    .register_target = RegisterFanotify,
    .open = OpenFanotify,
    .check = nullptr,
};

[[maybe_unused]] const bool kRegistered =
    RegisterFdKind(&kFanotifyKind) &&
    objhash::RegisterHandler({kObjFanotify, "FANOTIFY", image::CKPT_HDR_FANOTIFY, CheckpointFanotify,
                              RestoreFanotify});

}  // namespace
}  // namespace ckpt::fs
