// A memfd open as an fd: a description of the SHMEM object (lib/mm/shmem)
// that holds its contents, once however many fds and mappings share it.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/base/fd.h"
#include "lib/fs/fdkind.h"
#include "lib/mm/shmem.h"

namespace ckpt::fs {
namespace {

constexpr uint64_t kHugetlbfsMagic = 0x958458f6;

bool ClaimsMemfd(const FdProbe& p) {
  return S_ISREG(p.st.st_mode) && absl::StartsWith(p.target, "/memfd:");
}

absl::StatusOr<uint32_t> RegisterMemfd(objhash::ObjHash& objects, const FdProbe& p,
                                       const Description&) {
  // MFD_HUGETLB: a hugetlbfs file, whose pages libckpt does not save.
  struct statfs fs;
  const std::string link = absl::StrCat("/proc/", p.pid, "/fd/", p.fd);
  if (statfs(link.c_str(), &fs) == 0 && static_cast<uint64_t>(fs.f_type) == kHugetlbfsMagic) {
    return absl::UnimplementedError(absl::StrCat("task ", p.pid, " fd ", p.fd, ": ", p.target,
                                                 " is a hugetlb memfd (MFD_HUGETLB): not supported"));
  }
  std::string name = p.target.substr(7);
  if (absl::EndsWith(name, " (deleted)")) name.resize(name.size() - 10);
  return mm::RegisterShmemFd(objects, p.pid, p.fd, name, p.st.st_dev, p.st.st_ino);
}

absl::StatusOr<UniqueFd> OpenMemfd(objhash::RestoreContext&, const image::ckpt_file& rec,
                                   const std::string& path, const objhash::RestoredObject* shmem) {
  return Reopen(shmem->fd, static_cast<int>(rec.flags), path);
}

absl::Status CheckMemfd(objhash::RestoreContext&, const image::ckpt_file& rec,
                        const std::string& path, int, const struct stat& st) {
  return CheckFileType(rec, path, st);
}

const FdKindOps kMemfd = {
    .name = "memfd",
    .file_kind = image::kFileShmem,
    .order = 30,
    .file_type = S_IFREG,
    .seekable = true,
    .by_path = false,
    .has_target = true,
    .target_kind = mm::kObjShmem,
    .claims = ClaimsMemfd,
    .describe = nullptr,
    .register_target = RegisterMemfd,
    .open = OpenMemfd,
    .check = CheckMemfd,
};

[[maybe_unused]] const bool kRegistered = RegisterFdKind(&kMemfd);

}  // namespace
}  // namespace ckpt::fs
