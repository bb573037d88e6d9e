#include "lib/fs/anonfd.h"

#include <fcntl.h>
#include <sys/sysmacros.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "lib/base/status.h"

namespace ckpt::fs {

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ReadFdInfoLines(pid_t pid, int fd) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(absl::StrCat("/proc/", pid, "/fdinfo/", fd)));
  std::vector<std::pair<std::string, std::string>> lines;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos) {
      lines.emplace_back(std::string(absl::StripAsciiWhitespace(line)), "");
      continue;
    }
    lines.emplace_back(std::string(absl::StripAsciiWhitespace(line.substr(0, colon))),
                       std::string(absl::StripAsciiWhitespace(line.substr(colon + 1))));
  }
  return lines;
}

absl::StatusOr<std::string> FdInfoValue(const std::vector<std::pair<std::string, std::string>>& lines,
                                        absl::string_view key, pid_t pid, int fd, absl::string_view what) {
  for (const auto& [k, v] : lines) {
    if (k == key) return v;
  }
  return absl::InternalError(absl::StrCat("task ", pid, " fd ", fd, ": the fdinfo of ", what,
                                          " has no '", key, "' line"));
}

uint64_t KernelDevToUser(uint64_t sdev) {
  return makedev(static_cast<unsigned>(sdev >> 20), static_cast<unsigned>(sdev & 0xfffff));
}

absl::StatusOr<UniqueFd> DupWithNonblock(int fd, uint32_t flags, absl::string_view what) {
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return ErrnoError(errno, "dup of ", what);
  UniqueFd owned(copy);
  int fl = fcntl(copy, F_GETFL);
  if (fl < 0 || fcntl(copy, F_SETFL, (fl & ~O_NONBLOCK) | (static_cast<int>(flags) & O_NONBLOCK)) != 0) {
    return ErrnoError(errno, "setting the flags of ", what);
  }
  return owned;
}

}  // namespace ckpt::fs
