#include "lib/fs/ghost.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "lib/base/buffer.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/fs/fdkind.h"
#include "lib/fs/fs.h"
#include "lib/image/format.h"
#include "lib/image/records.h"
#include "lib/mm/shmem.h"

namespace ckpt::fs {
namespace {

// GHOST: a deleted file's inode, then its path; its data follow as page
// arrays.
constexpr image::FieldSpec kGhostFields[] = {
    CKPT_FIELD(image::ckpt_ghost, objref, kUnsigned), CKPT_FIELD(image::ckpt_ghost, mode, kOctal),
    CKPT_FIELD(image::ckpt_ghost, uid, kUnsigned),    CKPT_FIELD(image::ckpt_ghost, gid, kUnsigned),
    CKPT_FIELD(image::ckpt_ghost, size, kUnsigned),   CKPT_FIELD(image::ckpt_ghost, path_len, kUnsigned),
    CKPT_FIELD(image::ckpt_ghost, nr_pages, kUnsigned),
};
CKPT_RECORD(image::CKPT_HDR_GHOST, "GHOST", image::ckpt_ghost, kGhostFields, image::kMaxPathLen,
            kPaths);

struct GhostInfo {
  std::string source;  // a link this process can open the file through
  std::string path;
  struct stat st;
};

constexpr uint64_t kPage = 4096;
// Larger files than this are not restored (their data would be saved).
constexpr uint64_t kMaxGhostSize = 1ull << 40;

}  // namespace

absl::StatusOr<uint32_t> RegisterGhost(objhash::ObjHash& objects, const std::string& source,
                                       const std::string& path, const struct stat& st) {
  if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) {
    return absl::UnimplementedError(absl::StrCat(
        "the deleted ", path, " is neither a regular file, a directory nor a symlink: not supported"));
  }
  ASSIGN_OR_RETURN(objhash::ObjHash::Found f,
                   objects.LookupAdd(objhash::ObjKind::kGhost,
                                     objhash::Identity::OfInode(st.st_dev, st.st_ino),
                                     GhostInfo{source, path, st}));
  return f.objref;
}

absl::StatusOr<uint32_t> RegisterMappedGhost(objhash::ObjHash& objects, pid_t pid,
                                             uint64_t start, uint64_t end,
                                             const std::string& path, dev_t dev, uint64_t ino) {
  const objhash::Identity id = objhash::Identity::OfInode(dev, ino);
  ASSIGN_OR_RETURN(uint32_t known, objects.Lookup(objhash::ObjKind::kGhost, id));
  if (known != 0) return known;
  // An fd of the task on the same inode opens it; else map_files, which
  // needs CAP_SYS_ADMIN in the initial user namespace.
  absl::StatusOr<std::vector<int>> fds = ListFds(pid);
  for (int fd : fds.ok() ? *fds : std::vector<int>{}) {
    std::string link = absl::StrCat("/proc/", pid, "/fd/", fd);
    struct stat st;
    if (stat(link.c_str(), &st) == 0 && st.st_dev == dev && st.st_ino == ino) {
      return RegisterGhost(objects, link, path, st);
    }
  }
  std::string link = absl::StrFormat("/proc/%d/map_files/%x-%x", pid, start, end);
  struct stat st;
  if (stat(link.c_str(), &st) != 0) {
    return absl::UnimplementedError(absl::StrCat(
        "task ", pid, ": the deleted file ", path, " is mapped but not open, and ", link,
        " cannot be read here (it needs CAP_SYS_ADMIN in the initial user namespace)"));
  }
  return RegisterGhost(objects, link, path, st);
}

absl::StatusOr<UniqueFd> RecreateUnnamed(const std::string& path, absl::string_view what,
                                         const std::function<int(const char* name)>& create,
                                         int open_flags, mode_t type, mode_t mode) {
  std::mt19937_64 rng(std::random_device{}());
  for (int tries = 0; tries < 8; ++tries) {
    const std::string name = absl::StrFormat("%s.ckpt-ghost-%016x", path, rng());
    if (create(name.c_str()) != 0) {
      if (errno == EEXIST) continue;
      return ErrnoError(errno, "recreating ", what, " ", path, " as ", name);
    }
    int f = open(name.c_str(), open_flags | O_NOFOLLOW | O_CLOEXEC);
    const int open_errno = errno;
    struct stat made;
    const bool ours = f >= 0 && fstatat(f, "", &made, AT_EMPTY_PATH) == 0 &&
                      (made.st_mode & S_IFMT) == type &&
                      made.st_uid == geteuid() && (type != S_IFDIR || made.st_nlink >= 2);
    if (type == S_IFDIR) {
      rmdir(name.c_str());
    } else {
      unlink(name.c_str());
    }
    if (f < 0) return ErrnoError(open_errno, "opening the recreated ", name);
    UniqueFd fd(f);
    if (!ours) return absl::FailedPreconditionError(absl::StrCat(name, " is not what the restore just made"));
    // A symlink has no mode of its own (and an O_PATH fd no fchmod).
    if (type != S_IFLNK && fchmod(f, mode) != 0) return ErrnoError(errno, "chmod of ", what, " ", path);
    return fd;
  }
  return absl::AlreadyExistsError(absl::StrCat("no free name next to ", path));
}

namespace {

// A deleted symlink: its text is its data (one page at most, PATH_MAX).
absl::Status CheckpointGhostSymlink(objhash::CheckpointContext& ctx, const GhostInfo& g,
                                    image::ckpt_ghost rec) {
  // The fd link leads to the symlink itself when opened O_PATH.
  ASSIGN_OR_RETURN(UniqueFd in, OpenFile(g.source, O_PATH));
  struct stat now;
  if (fstatat(in.get(), "", &now, AT_EMPTY_PATH) != 0 || !S_ISLNK(now.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(g.source, " is no longer the deleted symlink ",
                                                      g.path));
  }
  std::string text(kPage, '\0');
  ssize_t n = readlinkat(in.get(), "", text.data(), text.size());
  if (n < 0) return ErrnoError(errno, "reading the deleted symlink ", g.path);
  if (static_cast<uint64_t>(n) >= kPage) {
    return absl::UnimplementedError(absl::StrCat("the deleted symlink ", g.path, " is too long"));
  }
  rec.mode = now.st_mode;
  rec.uid = now.st_uid;
  rec.gid = now.st_gid;
  rec.size = static_cast<uint64_t>(n);
  rec.nr_pages = n > 0 ? 1 : 0;
  RETURN_IF_ERROR(ctx.writer->AppendStructWith(image::CKPT_HDR_GHOST, rec, g.path.data(),
                                               g.path.size()));
  std::vector<image::ckpt_page_run> runs;
  if (n > 0) runs.push_back({0, 1});
  return mm::WriteObjectPages(*ctx.writer, runs, rec.nr_pages,
                              [&](uint64_t, uint64_t len, uint8_t* buf) -> absl::Status {
                                std::memcpy(buf, text.data(), std::min<uint64_t>(len, kPage));
                                return absl::OkStatus();
                              });
}

}  // namespace

absl::Status CheckpointGhost(objhash::CheckpointContext& ctx,
                             const objhash::ObjHash::Entry& entry) {
  const auto& g = std::any_cast<const GhostInfo&>(entry.data);
  if (S_ISLNK(g.st.st_mode)) {
    image::ckpt_ghost rec{};
    rec.objref = entry.objref;
    rec.path_len = static_cast<uint32_t>(g.path.size());
    return CheckpointGhostSymlink(ctx, g, rec);
  }
  ASSIGN_OR_RETURN(UniqueFd in, OpenFile(g.source, O_RDONLY));
  struct stat now;
  if (fstat(in.get(), &now) != 0) return ErrnoError(errno, "stat ", g.source);
  image::ckpt_ghost rec{};
  rec.objref = entry.objref;
  rec.mode = now.st_mode;
  rec.uid = now.st_uid;
  rec.gid = now.st_gid;
  rec.size = static_cast<uint64_t>(now.st_size);
  rec.path_len = static_cast<uint32_t>(g.path.size());
  if (S_ISDIR(now.st_mode)) {
    // A removed directory is empty: its mode and owner are all it has.
    rec.size = 0;
    return ctx.writer->AppendStructWith(image::CKPT_HDR_GHOST, rec, g.path.data(), g.path.size());
  }
  if (rec.size > kMaxGhostSize) {
    return absl::UnimplementedError(absl::StrCat("the deleted ", g.path, " is ", rec.size,
                                                 " bytes long: more than libckpt restores"));
  }
  // Only its data: SEEK_DATA/SEEK_HOLE, page by page.
  uint64_t pages = 0;
  ASSIGN_OR_RETURN(std::vector<image::ckpt_page_run> runs, mm::DataRuns(in.get(), rec.size, &pages));
  rec.nr_pages = static_cast<uint32_t>(pages);
  RETURN_IF_ERROR(ctx.writer->AppendStructWith(image::CKPT_HDR_GHOST, rec, g.path.data(),
                                               g.path.size()));
  return mm::WriteObjectPages(
      *ctx.writer, runs, pages, [&](uint64_t offset, uint64_t len, uint8_t* buf) -> absl::Status {
        absl::StatusOr<size_t> got = PreadFull(in.get(), buf, len, offset);
        if (!got.ok()) return Annotate(got.status(), absl::StrCat("reading the deleted ", g.path));
        // Past the size (the last page), or shorter than when we looked:
        // zeros, as a truncated file reads.
        std::fill(buf + *got, buf + len, 0);
        return absl::OkStatus();
      });
}

absl::StatusOr<objhash::RestoredObject> RestoreGhost(objhash::RestoreContext& ctx,
                                                     const image::Record& rec) {
  (void)rec;
  image::Reader& r = *ctx.reader;
  image::ckpt_ghost g;
  RETURN_IF_ERROR(r.ReadStruct(&g, sizeof(g)));
  if (!S_ISREG(g.mode) && !S_ISDIR(g.mode) && !S_ISLNK(g.mode)) {
    return r.FieldError("mode", absl::StrFormat("0%o", g.mode),
                        " is neither a regular file, a directory nor a symlink");
  }
  if (S_ISLNK(g.mode) && (g.size == 0 || g.size >= kPage || g.nr_pages != 1)) {
    return r.FieldError("size", g.size, " and nr_pages ", g.nr_pages, " for a deleted symlink");
  }
  if (S_ISDIR(g.mode) && (g.size != 0 || g.nr_pages != 0)) {
    return r.FieldError("size", g.size, " and nr_pages ", g.nr_pages, " for a removed directory");
  }
  if (g.path_len == 0 || g.path_len > image::kMaxPathLen) {
    return r.FieldError("path_len", g.path_len, " is out of range");
  }
  if (g.size > kMaxGhostSize) return r.FieldError("size", g.size, " is larger than libckpt restores");
  if (g.nr_pages > (g.size + kPage - 1) / kPage) {
    return r.FieldError("nr_pages", g.nr_pages, " exceeds the file's ", g.size, " bytes");
  }
  ASSIGN_OR_RETURN(std::string path, r.ReadString(g.path_len, "path"));
  if (path[0] != '/') return r.FieldError("path", "'", path, "' is not absolute");
  // Recreated under a fresh name next to the old one, then deleted.
  if (S_ISDIR(g.mode)) {
    ASSIGN_OR_RETURN(UniqueFd dir,
                     RecreateUnnamed(path, "the removed directory",
                                     [](const char* name) { return mkdir(name, 0700); },
                                     O_RDONLY | O_DIRECTORY, S_IFDIR, g.mode & 07777));
    (void)!fchown(dir.get(), g.uid, g.gid);  // best effort, as for files
    return objhash::HoldAt(ctx, g.objref, dir.get(), absl::StrCat("the removed directory ", path));
  }
  if (S_ISLNK(g.mode)) {
    std::string text;
    RETURN_IF_ERROR(mm::ReadObjectPages(
        r, g.nr_pages, g.size, absl::StrCat("the deleted symlink ", path),
        [&](uint64_t offset, const uint8_t* data, uint64_t len) -> absl::Status {
          if (offset != 0) return absl::InvalidArgumentError("a symlink's text is one page");
          text.assign(reinterpret_cast<const char*>(data), std::min<uint64_t>(len, g.size));
          return absl::OkStatus();
        }));
    if (text.size() != g.size || text.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("image record GHOST ", g.objref,
                                                     ": the deleted symlink ", path,
                                                     " has no text of ", g.size, " bytes"));
    }
    // A symlink's mode is always 0777: only its owner is set again.
    ASSIGN_OR_RETURN(UniqueFd link,
                     RecreateUnnamed(path, "the deleted symlink",
                                     [&](const char* name) { return symlink(text.c_str(), name); },
                                     O_PATH, S_IFLNK, 0));
    (void)!fchownat(link.get(), "", g.uid, g.gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
    return objhash::HoldAt(ctx, g.objref, link.get(), absl::StrCat("the deleted symlink ", path));
  }
  ASSIGN_OR_RETURN(UniqueFd fd, RecreateUnnamed(
                                    path, "the deleted file",
                                    [](const char* name) {
                                      int f = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
                                      return f < 0 ? -1 : close(f);
                                    },
                                    O_RDWR, S_IFREG, g.mode & 07777));
  // Sized first: what no page array fills stays a hole.
  if (ftruncate(fd.get(), static_cast<off_t>(g.size)) != 0) {
    return ErrnoError(errno, "sizing the deleted ", path, " to ", g.size, " bytes");
  }
  RETURN_IF_ERROR(mm::ReadObjectPages(
      r, g.nr_pages, g.size, absl::StrCat("the deleted ", path),
      [&](uint64_t offset, const uint8_t* data, uint64_t len) -> absl::Status {
        if (pwrite(fd.get(), data, len, static_cast<off_t>(offset)) != static_cast<ssize_t>(len)) {
          return ErrnoError(errno, "writing the deleted ", path);
        }
        return absl::OkStatus();
      }));
  (void)!fchown(fd.get(), g.uid, g.gid);  // best effort: the owner may not exist here
  return objhash::HoldAt(ctx, g.objref, fd.get(), absl::StrCat("the deleted ", path));
}

// ------------------------------------------ the fd kind: a deleted file

namespace {

bool ClaimsDeleted(const FdProbe& p) {
  return S_ISREG(p.st.st_mode) && !p.target.empty() && p.target[0] == '/' &&
         absl::EndsWith(p.target, " (deleted)");
}

absl::Status DescribeDeleted(const FdProbe& p, Description* file) {
  file->path = p.target.substr(0, p.target.size() - 10);
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> RegisterDeleted(objhash::ObjHash& objects, const FdProbe& p,
                                         const Description& file) {
  return RegisterGhost(objects, p.link_path, file.path, p.st);
}

absl::StatusOr<UniqueFd> OpenDeleted(objhash::RestoreContext&, const image::ckpt_file& rec,
                                     const std::string& path, const objhash::RestoredObject* ghost) {
  return Reopen(ghost->fd, static_cast<int>(rec.flags), path);
}

absl::Status CheckDeleted(objhash::RestoreContext&, const image::ckpt_file& rec,
                          const std::string& path, int, const struct stat& st) {
  return CheckFileType(rec, path, st);
}

const FdKindOps kDeletedKind = {
    .name = "deleted file",
    .file_kind = image::kFileDeleted,
    .order = 40,
    .file_type = S_IFREG,
    .seekable = true,
    .by_path = true,
    .has_target = true,
    .target_kind = objhash::ObjKind::kGhost,
    .claims = ClaimsDeleted,
    .describe = DescribeDeleted,
    .register_target = RegisterDeleted,
    .open = OpenDeleted,
    .check = CheckDeleted,
};

bool ClaimsDeletedDir(const FdProbe& p) {
  return S_ISDIR(p.st.st_mode) && !p.target.empty() && p.target[0] == '/' &&
         absl::EndsWith(p.target, " (deleted)");
}

const FdKindOps kDeletedDirKind = {
    .name = "removed directory",
    .file_kind = image::kFileDeletedDir,
    .order = 41,
    .file_type = S_IFDIR,
    .seekable = true,
    .by_path = true,
    .has_target = true,
    .target_kind = objhash::ObjKind::kGhost,
    .claims = ClaimsDeletedDir,
    .describe = DescribeDeleted,
    .register_target = RegisterDeleted,
    .open = OpenDeleted,
    .check = CheckDeleted,
};

// A symlink open O_PATH|O_NOFOLLOW whose name was unlinked: made again
// under a fresh name (its text saved in its GHOST), opened and unlinked.
bool ClaimsDeletedSymlink(const FdProbe& p) {
  return S_ISLNK(p.st.st_mode) && !p.target.empty() && p.target[0] == '/' &&
         absl::EndsWith(p.target, " (deleted)");
}

absl::StatusOr<UniqueFd> OpenDeletedSymlink(objhash::RestoreContext&, const image::ckpt_file& rec,
                                            const std::string& path,
                                            const objhash::RestoredObject* ghost) {
  if (!(rec.flags & O_PATH) || !(rec.flags & O_NOFOLLOW)) {
    return absl::InvalidArgumentError(absl::StrCat("FILE ", rec.objref, ": field 'flags': the symlink ",
                                                   path, " is not open O_PATH|O_NOFOLLOW"));
  }
  // An O_PATH description holds nothing but the file: the ghost's own.
  int fd = fcntl(ghost->fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return ErrnoError(errno, "dup of the deleted symlink ", path);
  return UniqueFd(fd);
}

const FdKindOps kDeletedSymlinkKind = {
    .name = "deleted symbolic link",
    .file_kind = image::kFileDeletedSymlink,
    .order = 42,
    .file_type = S_IFLNK,
    .seekable = false,
    .by_path = true,
    .has_target = true,
    .target_kind = objhash::ObjKind::kGhost,
    .claims = ClaimsDeletedSymlink,
    .describe = DescribeDeleted,
    .register_target = RegisterDeleted,
    .open = OpenDeletedSymlink,
    .check = CheckDeleted,
};

[[maybe_unused]] const bool kRegistered =
    RegisterFdKind(&kDeletedKind) && RegisterFdKind(&kDeletedDirKind) &&
    RegisterFdKind(&kDeletedSymlinkKind) &&
    objhash::RegisterHandler({objhash::ObjKind::kGhost, "GHOST", image::CKPT_HDR_GHOST,
                              CheckpointGhost, RestoreGhost});

}  // namespace
}  // namespace ckpt::fs
