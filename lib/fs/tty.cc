// The caller's terminal (a shell job): dumped only with --shell-job, and
// restored as the restorer's own terminal (/dev/tty). Terminals of the
// tree's own (ptys) are not supported yet.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "absl/strings/str_cat.h"
#include "lib/base/status.h"
#include "lib/fs/fdkind.h"

namespace ckpt::fs {
namespace {

bool ClaimsTty(const FdProbe& p) {
  const unsigned m = major(p.st.st_rdev);
  return S_ISCHR(p.st.st_mode) && (m == 4 || m == 5 || (m >= 136 && m <= 143));
}

absl::Status DescribeTty(const FdProbe& p, Description*) {
  if (!(p.dump_flags & objhash::kDumpShellJob)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "task ", p.pid, " fd ", p.fd, ": the terminal ", p.target,
        " (a shell job: dump with --shell-job, and it gets the restorer's terminal)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> OpenTty(objhash::RestoreContext& ctx, const image::ckpt_file& rec,
                                 const std::string& path, const objhash::RestoredObject*) {
  if (!(ctx.flags & objhash::kRestoreShellJob)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the image's tasks used the dumper's terminal (", path,
        "): restore with --shell-job to give them this one"));
  }
  int fd = open("/dev/tty", static_cast<int>(rec.flags) | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return ErrnoError(errno, "--shell-job: this process's terminal (/dev/tty)");
  return UniqueFd(fd);
}

const FdKindOps kTty = {
    .name = "terminal",
    .file_kind = image::kFileTty,
    .order = 60,
    .file_type = S_IFCHR,
    .seekable = false,
    .by_path = true,
    .has_target = false,
    .target_kind = objhash::ObjKind{0},
    .claims = ClaimsTty,
    .describe = DescribeTty,
    .register_target = nullptr,
    .open = OpenTty,
    .check = nullptr,
};

[[maybe_unused]] const bool kRegistered = RegisterFdKind(&kTty);

}  // namespace
}  // namespace ckpt::fs
