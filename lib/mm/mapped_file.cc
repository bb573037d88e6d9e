#include "lib/mm/mapped_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/image/format.h"

namespace ckpt::mm {
namespace {

struct MappedFile {
  std::string path;
  struct stat st;
  bool writable;
  uint32_t ghost_ref;
};

uint64_t MtimeNs(const struct stat& st) {
  return static_cast<uint64_t>(st.st_mtim.tv_sec) * 1000000000ull +
         static_cast<uint64_t>(st.st_mtim.tv_nsec);
}

}  // namespace

absl::StatusOr<uint32_t> RegisterMappedFile(objhash::ObjHash& objects, const std::string& path,
                                            dev_t dev, uint64_t ino, bool writable,
                                            uint32_t ghost_ref) {
  // A file mapped many times (every library is) is checked once.
  const objhash::Identity id = objhash::Identity::OfInode(dev, ino);
  ASSIGN_OR_RETURN(uint32_t known, objects.Lookup(objhash::ObjKind::kMappedFile, id));
  if (known != 0) {
    if (writable) {
      std::any_cast<MappedFile&>(objects.GetMutable(known)->data).writable = true;
    }
    return known;
  }
  struct stat mapped {};
  if (ghost_ref != 0) {
    mapped.st_mode = S_IFREG;
    ASSIGN_OR_RETURN(objhash::ObjHash::Found found,
                     objects.LookupAdd(objhash::ObjKind::kMappedFile, id,
                                       MappedFile{path, mapped, writable, ghost_ref}));
    return found.objref;
  }
  if (stat(path.c_str(), &mapped) != 0) {
    return ErrnoError(errno, "mapped file ", path, " cannot be found by its path");
  }
  if (mapped.st_dev != dev || mapped.st_ino != ino) {
    return absl::FailedPreconditionError(
        absl::StrCat("mapped file ", path, " was replaced since it was mapped"));
  }
  if (!S_ISREG(mapped.st_mode)) {
    return absl::UnimplementedError(
        absl::StrCat("mapping of ", path, ", which is not a regular file, is not supported yet"));
  }
  ASSIGN_OR_RETURN(objhash::ObjHash::Found found,
                   objects.LookupAdd(objhash::ObjKind::kMappedFile,
                                     objhash::Identity::OfInode(mapped.st_dev, mapped.st_ino),
                                     MappedFile{path, mapped, writable, 0}));
  if (!found.first && writable) {
    std::any_cast<MappedFile&>(found.entry->data).writable = true;
  }
  return found.objref;
}

absl::Status CheckpointMappedFile(objhash::CheckpointContext& ctx,
                                  const objhash::ObjHash::Entry& entry) {
  const auto& f = std::any_cast<const MappedFile&>(entry.data);
  image::ckpt_file rec{};
  rec.objref = entry.objref;
  rec.kind = image::kFileRegular;
  rec.flags = f.writable ? O_RDWR : O_RDONLY;
  rec.mode = f.st.st_mode;
  rec.size = static_cast<uint64_t>(f.st.st_size);
  rec.mtime_ns = MtimeNs(f.st);
  rec.path_len = static_cast<uint32_t>(f.path.size());
  rec.target_ref = f.ghost_ref;
  return ctx.writer->AppendStructWith(image::CKPT_HDR_MAPPED_FILE, rec, f.path.data(),
                                      f.path.size());
}

absl::StatusOr<objhash::RestoredObject> RestoreMappedFile(objhash::RestoreContext& ctx,
                                                          const image::Record& rec) {
  image::Reader& r = *ctx.reader;
  image::ckpt_file f;
  RETURN_IF_ERROR(r.ReadStruct(&f, sizeof(f)));
  if (f.kind != image::kFileRegular) return r.FieldError("kind", f.kind, " is not a regular file");
  if (f.flags != O_RDONLY && f.flags != O_RDWR) {
    return r.FieldError("flags", f.flags, " is neither O_RDONLY nor O_RDWR");
  }
  if (f.path_len == 0 || f.path_len > image::kMaxPathLen) {
    return r.FieldError("path_len", f.path_len, " is out of range");
  }
  ASSIGN_OR_RETURN(std::string path, r.ReadString(f.path_len, "path"));
  if (path[0] != '/') return r.FieldError("path", "'", path, "' is not absolute");
  (void)rec;
  if (f.target_ref != 0) {
    // A deleted file: map the copy the GHOST object recreated.
    ASSIGN_OR_RETURN(const objhash::RestoredObject* ghost,
                     ctx.objects->Get(f.target_ref, objhash::ObjKind::kGhost));
    ASSIGN_OR_RETURN(UniqueFd owned,
                     Reopen(ghost->fd, static_cast<int>(f.flags), absl::StrCat("the deleted ", path)));
    return objhash::HoldAt(ctx, f.objref, owned.get(), absl::StrCat("the deleted ", path));
  }
  int fd = open(path.c_str(), static_cast<int>(f.flags) | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "mapped file ", path, " cannot be opened");
  UniqueFd owned(fd);
  struct stat st;
  if (fstat(fd, &st) != 0) return ErrnoError(errno, "stat ", path);
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("mapped file ", path, " is no longer a regular file"));
  }
  if (static_cast<uint64_t>(st.st_size) != f.size) {
    return absl::FailedPreconditionError(absl::StrCat("mapped file ", path,
                                                      " changed size since the dump (was ",
                                                      f.size, " bytes, now ", st.st_size, ")"));
  }
  return objhash::HoldAt(ctx, f.objref, fd, path);
}

}  // namespace ckpt::mm
