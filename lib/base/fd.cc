#include "lib/base/fd.h"

#include <dirent.h>
#include <fcntl.h>

#include <cstdlib>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "lib/base/status.h"

namespace ckpt {

absl::StatusOr<UniqueFd> OpenFile(const std::string& path, int flags, mode_t mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoError(errno, "open ", path);
  return UniqueFd(fd);
}

absl::StatusOr<UniqueFd> Reopen(int held, int flags, const std::string& what) {
  std::string link = "/proc/self/fd/" + std::to_string(held);
  int fd = ::open(link.c_str(), flags | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return ErrnoError(errno, "reopening ", what);
  return UniqueFd(fd);
}

absl::StatusOr<std::string> ReadAll(int fd) {
  std::string out;
  size_t used = 0;
  out.resize(4096);
  for (;;) {
    if (used == out.size()) out.resize(out.size() * 2);
    ssize_t n = ::read(fd, out.data() + used, out.size() - used);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "read");
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  out.resize(used);
  return out;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY));
  absl::StatusOr<std::string> text = ReadAll(fd.get());
  if (!text.ok()) return Annotate(text.status(), path);
  return text;
}

absl::Status WriteAll(int fd, const void* data, size_t len) {
  const char* p = static_cast<const char*>(data);
  while (len > 0) {
    ssize_t n = ::write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "write");
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<int> MaxOpenFd() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return ErrnoError(errno, "open /proc/self/fd");
  int max = -1;
  while (struct dirent* e = readdir(dir)) {
    char* end;
    long fd = strtol(e->d_name, &end, 10);
    if (*end == '\0' && end != e->d_name && fd > max) max = static_cast<int>(fd);
  }
  closedir(dir);
  return max;
}

absl::StatusOr<std::string> ReadLink(const std::string& path) {
  char buf[4096];
  ssize_t n = readlink(path.c_str(), buf, sizeof(buf));
  if (n < 0) return ErrnoError(errno, "readlink ", path);
  if (n == sizeof(buf)) return absl::OutOfRangeError(absl::StrCat("readlink ", path, ": too long"));
  return std::string(buf, static_cast<size_t>(n));
}

absl::StatusOr<size_t> PreadFull(int fd, void* buf, size_t len, uint64_t offset) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = pread(fd, static_cast<char*>(buf) + got, len - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, "pread of ", len, " bytes at ", offset);
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  return got;
}

}  // namespace ckpt
