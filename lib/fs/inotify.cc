// INOTIFY objects: an inotify instance with its watches, each under the
// watch descriptor (wd) it had.
//
// Dump: /proc/PID/fdinfo lists each watch with its wd, mask and the
// watched inode as a file handle; the inode's path is found by opening
// the handle (open_by_handle_at on the inode's filesystem) and is checked
// to name that inode. Events queued but not read yet are not saved: no
// interface puts events back into an inotify queue, so they are lost, as
// in every checkpointer (README).
//
// Restore: inotify_init1(); the kernel hands out wds in turn, so every
// number below a watch's wd that was free is taken by a watch on a
// scratch inode (a memfd) and removed again. The real watches are added
// first with IN_UNMOUNT alone, the queue is drained of the IN_IGNORED
// events those removals made, then each gets its own mask.

#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
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

constexpr objhash::ObjKind kObjInotify{20};

constexpr image::FieldSpec kInotifyFields[] = {
    CKPT_FIELD(image::ckpt_inotify, objref, kUnsigned),
    CKPT_FIELD(image::ckpt_inotify, nr_watches, kUnsigned),
};
CKPT_RECORD(image::CKPT_HDR_INOTIFY, "INOTIFY", image::ckpt_inotify, kInotifyFields, 0, kNone);

constexpr image::FieldSpec kWatchFields[] = {
    CKPT_FIELD(image::ckpt_inotify_watch, wd, kSigned),
    CKPT_FIELD(image::ckpt_inotify_watch, mask, kHex),
    CKPT_FIELD(image::ckpt_inotify_watch, path_len, kUnsigned),
    CKPT_FIELD(image::ckpt_inotify_watch, dev, kHex),
    CKPT_FIELD(image::ckpt_inotify_watch, ino, kUnsigned),
};
CKPT_RECORD(image::CKPT_HDR_INOTIFY_WATCH, "INOTIFY_WATCH", image::ckpt_inotify_watch, kWatchFields,
            image::kMaxPathLen, kPaths);

// What a watch's mask may hold: events and the flags the kernel keeps.
constexpr uint32_t kKnownMask = IN_ALL_EVENTS | IN_EXCL_UNLINK | IN_ONESHOT;
// The mask a watch has until the queue is drained: no event it could
// report during the restore but an unmount's.
constexpr uint32_t kQuietMask = IN_UNMOUNT;

struct InotifyWatch {
  int32_t wd;
  uint32_t mask;
  uint64_t dev;
  uint64_t ino;
  std::string path;
};

struct InotifyData {
  std::vector<InotifyWatch> watches;  // ascending wd
};

bool ClaimsInotify(const FdProbe& p) { return p.target == "anon_inode:inotify"; }

absl::StatusOr<uint32_t> RegisterInotify(objhash::ObjHash& objects, const FdProbe& p, const Description&) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(absl::StrCat("/proc/", p.pid, "/fdinfo/", p.fd)));
  InotifyData in;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (!absl::StartsWith(line, "inotify wd:")) continue;
    std::string l(line);
    unsigned wd = 0, sdev = 0, mask = 0, ignored = 0, bytes = 0;
    int type = 0;
    unsigned long long ino = 0;
    char hex[2 * 128 + 1] = {};
    if (std::sscanf(l.c_str(),
                    "inotify wd:%x ino:%llx sdev:%x mask:%x ignored_mask:%x fhandle-bytes:%x "
                    "fhandle-type:%x f_handle:%256s",
                    &wd, &ino, &sdev, &mask, &ignored, &bytes, &type, hex) != 8 ||
        bytes == 0 || bytes > 128 || std::strlen(hex) != 2 * bytes) {
      return absl::UnimplementedError(absl::StrCat("task ", p.pid, " fd ", p.fd,
                                                   ": an inotify watch whose inode has no file handle ('",
                                                   line, "'): not supported"));
    }
    InotifyWatch w{static_cast<int32_t>(wd), mask, KernelDevToUser(sdev), ino, ""};
    absl::StatusOr<std::string> path = PathOfHandle(p.pid, w.dev, ino, bytes, type, hex);
    if (!path.ok()) {
      return absl::UnimplementedError(absl::StrCat("task ", p.pid, " fd ", p.fd, ": inotify watch ", wd,
                                                   " (inode ", ino, " on ", major(w.dev), ":", minor(w.dev),
                                                   "): ", path.status().message()));
    }
    w.path = *path;
    in.watches.push_back(std::move(w));
  }
  std::sort(in.watches.begin(), in.watches.end(),
            [](const InotifyWatch& a, const InotifyWatch& b) { return a.wd < b.wd; });
  if (in.watches.size() > image::kMaxInotifyWatches) {
    return absl::UnimplementedError(absl::StrCat("task ", p.pid, " fd ", p.fd, ": ", in.watches.size(),
                                                 " inotify watches (at most ", image::kMaxInotifyWatches, ")"));
  }
  if (!in.watches.empty() && in.watches.back().wd > image::kMaxInotifyWd) {
    return absl::UnimplementedError(absl::StrCat("task ", p.pid, " fd ", p.fd, ": inotify watch descriptor ",
                                                 in.watches.back().wd, " (the restore makes them up to ",
                                                 image::kMaxInotifyWd, ")"));
  }
  ASSIGN_OR_RETURN(objhash::ObjHash::Found f,
                   objects.LookupAdd(kObjInotify,
                                     objhash::Identity::OfFile(p.pid, p.fd, p.st.st_dev, p.st.st_ino), in));
  return f.objref;
}

absl::Status CheckpointInotify(objhash::CheckpointContext& ctx, const objhash::ObjHash::Entry& entry) {
  const InotifyData& in = std::any_cast<const InotifyData&>(entry.data);
  image::ckpt_inotify rec{entry.objref, static_cast<uint32_t>(in.watches.size())};
  RETURN_IF_ERROR(ctx.writer->AppendStruct(image::CKPT_HDR_INOTIFY, rec));
  for (const InotifyWatch& w : in.watches) {
    image::ckpt_inotify_watch wr{w.wd, w.mask, static_cast<uint32_t>(w.path.size()), 0, w.dev, w.ino};
    RETURN_IF_ERROR(ctx.writer->AppendStructWith(image::CKPT_HDR_INOTIFY_WATCH, wr, w.path.data(), w.path.size()));
  }
  return absl::OkStatus();
}

absl::StatusOr<objhash::RestoredObject> RestoreInotify(objhash::RestoreContext& ctx, const image::Record&) {
  image::Reader& r = *ctx.reader;
  image::ckpt_inotify rec;
  RETURN_IF_ERROR(r.ReadStruct(&rec, sizeof(rec)));
  if (rec.nr_watches > image::kMaxInotifyWatches) {
    return r.FieldError("nr_watches", rec.nr_watches, " is more than ", image::kMaxInotifyWatches);
  }
  std::vector<InotifyWatch> watches;
  for (uint32_t i = 0; i < rec.nr_watches; ++i) {
    ASSIGN_OR_RETURN(image::ckpt_inotify_watch w,
                     r.Expect<image::ckpt_inotify_watch>(image::CKPT_HDR_INOTIFY_WATCH));
    if (w.wd < 1 || w.wd > image::kMaxInotifyWd) return r.FieldError("wd", w.wd, " is out of range");
    if (!watches.empty() && w.wd <= watches.back().wd) return r.FieldError("wd", w.wd, " is not in ascending order");
    if (w.mask & ~kKnownMask) return r.FieldError("mask", "0x", absl::Hex(w.mask), " has unknown bits");
    if ((w.mask & IN_ALL_EVENTS) == 0) return r.FieldError("mask", "0x", absl::Hex(w.mask), " has no event");
    if (w.reserved != 0) return r.FieldError("reserved", w.reserved, " is not zero");
    if (w.path_len == 0 || w.path_len > image::kMaxPathLen) return r.FieldError("path_len", w.path_len, " is out of range");
    ASSIGN_OR_RETURN(std::string path, r.ReadString(w.path_len, "path"));
    if (!absl::StartsWith(path, "/") || path.find('\0') != std::string::npos) {
      return r.FieldError("path", "'", path, "' is not an absolute path");
    }
    watches.push_back({w.wd, w.mask, w.dev, w.ino, std::move(path)});
  }
  int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (fd < 0) return ErrnoError(errno, "inotify_init1");
  UniqueFd owned(fd);
  if (!watches.empty()) {
    int scratch = memfd_create("ckpt-inotify-wd", MFD_CLOEXEC);
    if (scratch < 0) return ErrnoError(errno, "memfd_create");
    UniqueFd owned_scratch(scratch);
    const std::string scratch_path = absl::StrCat("/proc/self/fd/", scratch);
    // Each watched inode, opened once: both adds go through it (its /proc
    // link), so they are on the inode checked here.
    std::vector<UniqueFd> inodes;
    std::vector<std::string> through;
    for (const InotifyWatch& w : watches) {
      UniqueFd inode(open(w.path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
      if (!inode.valid()) return ErrnoError(errno, "INOTIFY ", rec.objref, ": watch ", w.wd, " on ", w.path);
      struct stat st;
      if (fstat(inode.get(), &st) != 0) return ErrnoError(errno, "stat ", w.path);
      if ((st.st_dev != w.dev || st.st_ino != w.ino) && !(ctx.flags & objhash::kRestoreAllowChangedFiles)) {
        return absl::FailedPreconditionError(absl::StrCat(
            "INOTIFY ", rec.objref, ": watch ", w.wd, ": ", w.path, " is another inode than at the dump (inode ",
            w.ino, ", now ", st.st_ino, "); restore with --allow-changed-files to watch it as it is"));
      }
      through.push_back(absl::StrCat("/proc/self/fd/", inode.get()));
      inodes.push_back(std::move(inode));
    }
    int32_t next = 1;
    for (size_t i = 0; i < watches.size(); ++i) {
      const InotifyWatch& w = watches[i];
      for (; next < w.wd; ++next) {
        int d = inotify_add_watch(fd, scratch_path.c_str(), kQuietMask);
        if (d < 0) return ErrnoError(errno, "INOTIFY ", rec.objref, ": taking watch descriptor ", next);
        if (d != next || inotify_rm_watch(fd, d) != 0) {
          return absl::InternalError(absl::StrCat("INOTIFY ", rec.objref, ": watch descriptor ", d,
                                                  " came where ", next, " was expected"));
        }
      }
      int d = inotify_add_watch(fd, through[i].c_str(), kQuietMask);
      if (d < 0) return ErrnoError(errno, "INOTIFY ", rec.objref, ": watching ", w.path);
      if (d != w.wd) {
        return absl::InternalError(absl::StrCat("INOTIFY ", rec.objref, ": the watch on ", w.path,
                                                " got descriptor ", d, ", not ", w.wd,
                                                " (is that inode watched twice?)"));
      }
      next = w.wd + 1;
    }
    // The IN_IGNORED of every scratch watch removed.
    char buf[4096];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    for (size_t i = 0; i < watches.size(); ++i) {
      const InotifyWatch& w = watches[i];
      int d = inotify_add_watch(fd, through[i].c_str(), w.mask);
      if (d != w.wd) {
        return ErrnoError(d < 0 ? errno : EEXIST, "INOTIFY ", rec.objref, ": setting the mask of the watch on ",
                          w.path);
      }
    }
  }
  return objhash::HoldAt(ctx, rec.objref, fd, "an inotify");
}

absl::StatusOr<UniqueFd> OpenInotify(objhash::RestoreContext&, const image::ckpt_file& rec,
                                     const std::string&, const objhash::RestoredObject* obj) {
  return DupWithNonblock(obj->fd, rec.flags, "an inotify");
}

const FdKindOps kInotifyKind = {
    .name = "inotify",
    .file_kind = image::kFileInotify,
    .order = 14,
    .file_type = 0,
    .seekable = false,
    .by_path = false,
    .has_target = true,
    .target_kind = kObjInotify,
    .claims = ClaimsInotify,
    .describe = nullptr,
    .register_target = RegisterInotify,
    .open = OpenInotify,
    .check = nullptr,
};

[[maybe_unused]] const bool kRegistered =
    RegisterFdKind(&kInotifyKind) &&
    objhash::RegisterHandler({kObjInotify, "INOTIFY", image::CKPT_HDR_INOTIFY, CheckpointInotify,
                              RestoreInotify});

}  // namespace
}  // namespace ckpt::fs
