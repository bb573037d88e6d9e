#include "lib/mm/mapped_file.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
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
  std::string build_id;
};

std::string Hex(absl::string_view bytes) {
  std::string out;
  for (unsigned char c : bytes) absl::StrAppend(&out, absl::Hex(c, absl::kZeroPad2));
  return out;
}

// "1796110000123456789 ns (2026-12-01 09:26:40.123456789 UTC)"
std::string DescribeMtime(uint64_t ns) {
  time_t sec = static_cast<time_t>(ns / 1000000000ull);
  struct tm tm;
  char buf[64] = "?";
  if (gmtime_r(&sec, &tm) != nullptr) strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
  return absl::StrFormat("%s.%09u UTC", buf, static_cast<unsigned>(ns % 1000000000ull));
}

uint64_t MtimeNs(const struct stat& st) {
  return static_cast<uint64_t>(st.st_mtim.tv_sec) * 1000000000ull +
         static_cast<uint64_t>(st.st_mtim.tv_nsec);
}

}  // namespace

std::string ReadBuildId(int fd) {
  Elf64_Ehdr eh;
  if (pread(fd, &eh, sizeof(eh), 0) != static_cast<ssize_t>(sizeof(eh)) ||
      std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
      eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > 256) {
    return "";
  }
  std::vector<Elf64_Phdr> ph(eh.e_phnum);
  const ssize_t ph_bytes = static_cast<ssize_t>(ph.size() * sizeof(Elf64_Phdr));
  if (pread(fd, ph.data(), static_cast<size_t>(ph_bytes), static_cast<off_t>(eh.e_phoff)) != ph_bytes) {
    return "";
  }
  for (const Elf64_Phdr& p : ph) {
    if (p.p_type != PT_NOTE || p.p_filesz == 0 || p.p_filesz > (64 << 10)) continue;
    std::string notes(p.p_filesz, '\0');
    if (pread(fd, notes.data(), notes.size(), static_cast<off_t>(p.p_offset)) !=
        static_cast<ssize_t>(notes.size())) {
      continue;
    }
    // Each note: namesz, descsz, type, then name and desc, 4-byte aligned.
    for (size_t at = 0; at + sizeof(Elf64_Nhdr) <= notes.size();) {
      Elf64_Nhdr n;
      std::memcpy(&n, notes.data() + at, sizeof(n));
      size_t name_at = at + sizeof(n);
      size_t desc_at = name_at + ((n.n_namesz + 3) & ~3u);
      size_t next = desc_at + ((n.n_descsz + 3) & ~3u);
      if (n.n_namesz > 64 || n.n_descsz > 4096 || next > notes.size()) break;
      if (n.n_type == NT_GNU_BUILD_ID && n.n_namesz == 4 &&
          std::memcmp(notes.data() + name_at, "GNU", 4) == 0 && n.n_descsz > 0 &&
          n.n_descsz <= image::kMaxBuildId) {
        return notes.substr(desc_at, n.n_descsz);
      }
      at = next;
    }
  }
  return "";
}

absl::Status CheckUnchanged(const image::ckpt_file& rec, const std::string& path, int fd,
                            const FileExpectation& expect, uint32_t restore_flags) {
  if (restore_flags & objhash::kRestoreAllowChangedFiles) return absl::OkStatus();
  struct stat st;
  if (fstat(fd, &st) != 0) return ErrnoError(errno, "stat ", path);
  auto changed = [&](absl::string_view field, const std::string& was, const std::string& now) {
    return absl::FailedPreconditionError(absl::StrCat(
        "file ", path, " changed since the dump: its ", field, " was ", was, ", it is now ", now,
        " (restore with --allow-changed-files to use it as it is)"));
  };
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (expect.size && size != rec.size && !(expect.grown_ok && size > rec.size)) {
    return changed("size", absl::StrCat(rec.size, " bytes"), absl::StrCat(size, " bytes"));
  }
  const uint64_t mtime = static_cast<uint64_t>(st.st_mtim.tv_sec) * 1000000000ull +
                         static_cast<uint64_t>(st.st_mtim.tv_nsec);
  if (expect.mtime && mtime != rec.mtime_ns) {
    return changed("mtime", DescribeMtime(rec.mtime_ns), DescribeMtime(mtime));
  }
  if (expect.build_id) {
    const std::string was(reinterpret_cast<const char*>(rec.build_id),
                          std::min<uint32_t>(rec.build_id_size, image::kMaxBuildId));
    const std::string now = ReadBuildId(fd);
    if (was != now) {
      return changed("ELF build-id", was.empty() ? "none" : Hex(was), now.empty() ? "none" : Hex(now));
    }
  }
  return absl::OkStatus();
}

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
  // Its ELF build-id, read through the task's own mapping's file so that
  // it is the file the task maps.
  std::string build_id;
  if (UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC)); fd.valid()) {
    struct stat opened;
    if (fstat(fd.get(), &opened) == 0 && opened.st_dev == dev && opened.st_ino == ino) {
      build_id = ReadBuildId(fd.get());
    }
  }
  ASSIGN_OR_RETURN(objhash::ObjHash::Found found,
                   objects.LookupAdd(objhash::ObjKind::kMappedFile,
                                     objhash::Identity::OfInode(mapped.st_dev, mapped.st_ino),
                                     MappedFile{path, mapped, writable, 0, build_id}));
  if (!found.first && writable) {
    std::any_cast<MappedFile&>(found.entry->data).writable = true;
  }
  return found.objref;
}

absl::Status CheckpointMappedFile(objhash::CheckpointContext& ctx,
                                  const objhash::ObjHash::Entry& entry) {
  const auto& f = std::any_cast<const MappedFile&>(entry.data);
  if (f.ghost_ref != 0) RETURN_IF_ERROR(ctx.Ensure(f.ghost_ref));  // the deleted inode first
  image::ckpt_file rec{};
  rec.objref = entry.objref;
  rec.kind = image::kFileRegular;
  rec.flags = f.writable ? O_RDWR : O_RDONLY;
  rec.mode = f.st.st_mode;
  rec.size = static_cast<uint64_t>(f.st.st_size);
  rec.mtime_ns = MtimeNs(f.st);
  rec.path_len = static_cast<uint32_t>(f.path.size());
  rec.target_ref = f.ghost_ref;
  rec.build_id_size = static_cast<uint32_t>(f.build_id.size());
  std::memcpy(rec.build_id, f.build_id.data(), f.build_id.size());
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
  if (f.build_id_size > image::kMaxBuildId) {
    return r.FieldError("build_id_size", f.build_id_size, " is more than ", image::kMaxBuildId);
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
  // Its clean pages are not in the image: they come from the file as it is
  // now, which must be the file that was mapped.
  FileExpectation expect;
  expect.build_id = true;
  RETURN_IF_ERROR(CheckUnchanged(f, path, fd, expect, ctx.flags));
  return objhash::HoldAt(ctx, f.objref, fd, path);
}

}  // namespace ckpt::mm
