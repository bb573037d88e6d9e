// Terminals that are no pseudo-terminal (consoles, virtual consoles,
// serial lines; pty.cc claims the pseudo-terminals first): dumped only
// with --shell-job, as the caller's terminal, and restored as the
// restorer's own terminal (/dev/tty). Images of format 4.5 and older hold
// the caller's pseudo-terminal so too.

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
        " is no pseudo-terminal (a console or a serial line): not supported, unless it is the terminal the "
        "dump is run from (dump with --shell-job, and it gets the restorer's terminal)"));
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
  if (fd < 0) {
    return ErrnoError(errno, "the image's tasks used the terminal the dump was run from (", path,
                      ", a shell job), and this restore has no terminal to give them (/dev/tty)");
  }
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
