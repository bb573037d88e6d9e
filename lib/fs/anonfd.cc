#include "lib/fs/anonfd.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "lib/base/status.h"
#include "lib/fs/fs.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

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

namespace {

// "\\040" and the like of /proc/self/mountinfo.
std::string Unescape(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3') {
      out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// /proc/self/mountinfo as (mount id, mount point) pairs.
absl::StatusOr<std::vector<std::pair<int, std::string>>> Mounts() {
  ASSIGN_OR_RETURN(std::string text, ReadFile("/proc/self/mountinfo"));
  std::vector<std::pair<int, std::string>> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> w = absl::StrSplit(line, ' ');
    int id = 0;
    if (w.size() < 5 || !absl::SimpleAtoi(w[0], &id)) continue;
    out.emplace_back(id, Unescape(w[4]));
  }
  return out;
}

}  // namespace

absl::StatusOr<int> RunInHelper(int (*fn)(void*), void* arg, unsigned long extra_flags, int* pidfd) {
  constexpr size_t kStack = 256 * 1024;
  void* stack = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return ErrnoError(errno, "mmap of a helper's stack");
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t child = clone(fn, static_cast<char*>(stack) + kStack, CLONE_VM | CLONE_VFORK | SIGCHLD | extra_flags, arg,
                      pidfd);
  const int err = errno;
  int status = 0;
  pid_t waited = -1;
  if (child > 0) {
    while ((waited = waitpid(child, &status, __WALL)) < 0 && errno == EINTR) {
    }
  }
  const int wait_err = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
#if defined(__SANITIZE_ADDRESS__)
  // The helper's frames poisoned the shadow of its stack, which nothing
  // unpoisons when it exits: the next use of these pages would look like
  // an overflow.
  __asan_unpoison_memory_region(stack, kStack);
#endif
  munmap(stack, kStack);
  if (child < 0) return ErrnoError(err, "clone of a helper");
  if (waited != child) return ErrnoError(wait_err, "waiting for a helper");
  return status;
}

absl::StatusOr<std::string> MountPointOf(int mnt_id) {
  ASSIGN_OR_RETURN(auto mounts, Mounts());
  for (const auto& [id, point] : mounts) {
    if (id == mnt_id) return point;
  }
  return absl::NotFoundError(absl::StrCat("mount ", mnt_id, " is not visible here"));
}

absl::StatusOr<std::string> MountPointOfDev(uint64_t dev) {
  ASSIGN_OR_RETURN(auto mounts, Mounts());
  for (const auto& [id, point] : mounts) {
    struct stat st;
    if (stat(point.c_str(), &st) == 0 && st.st_dev == dev) return point;
  }
  return absl::NotFoundError(absl::StrCat("no mount of device ", major(dev), ":", minor(dev), " is visible"));
}

namespace {

// The inode (dev, ino) near the paths task `pid` uses; empty if not found.
std::string FindNear(pid_t pid, uint64_t dev, uint64_t ino) {
  std::vector<std::string> seeds;
  const std::string proc = absl::StrCat("/proc/", pid);
  for (const char* link : {"/cwd", "/root", "/exe"}) {
    absl::StatusOr<std::string> p = ReadLink(proc + link);
    if (p.ok()) seeds.push_back(*p);
  }
  if (absl::StatusOr<std::vector<int>> fds = ListFds(pid); fds.ok()) {
    for (int fd : *fds) {
      absl::StatusOr<std::string> p = ReadLink(absl::StrCat(proc, "/fd/", fd));
      if (p.ok()) seeds.push_back(*p);
    }
  }
  if (absl::StatusOr<std::string> cmdline = ReadFile(proc + "/cmdline"); cmdline.ok()) {
    for (absl::string_view arg : absl::StrSplit(*cmdline, '\0', absl::SkipEmpty())) seeds.emplace_back(arg);
  }
  auto is = [&](const std::string& path) {
    struct stat st;
    return lstat(path.c_str(), &st) == 0 && st.st_dev == dev && st.st_ino == ino;
  };
  std::vector<std::string> dirs;
  size_t looked = 0;
  constexpr size_t kMaxLooks = 1 << 16;
  for (const std::string& seed : seeds) {
    if (seed.empty() || seed[0] != '/') continue;
    for (std::string p = seed; !p.empty(); p = p.substr(0, p.rfind('/'))) {
      if (++looked > kMaxLooks) return "";
      if (is(p)) return p;
      dirs.push_back(p);
    }
    if (is("/")) return "/";
  }
  for (const std::string& d : dirs) {
    DIR* dir = opendir(d.c_str());
    if (dir == nullptr) continue;
    std::string found;
    while (struct dirent* e = readdir(dir)) {
      if (++looked > kMaxLooks) break;
      if (e->d_ino != ino || !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      std::string p = absl::StrCat(d, "/", e->d_name);
      if (is(p)) {
        found = p;
        break;
      }
    }
    closedir(dir);
    if (!found.empty() || looked > kMaxLooks) return found;
  }
  return "";
}

}  // namespace

absl::StatusOr<std::string> PathOfHandle(pid_t pid, uint64_t dev, uint64_t ino, unsigned bytes, int type,
                                         absl::string_view hex) {
  if (bytes == 0 || bytes > 128 || hex.size() != 2 * bytes) {
    return absl::InvalidArgumentError(absl::StrCat("a file handle of ", bytes, " bytes shown as '", hex, "'"));
  }
  std::vector<unsigned char> buf(sizeof(struct file_handle) + bytes);
  auto* handle = reinterpret_cast<struct file_handle*>(buf.data());
  handle->handle_bytes = bytes;
  handle->handle_type = type;
  for (unsigned i = 0; i < bytes; ++i) {
    uint32_t v = 0;
    if (!absl::SimpleHexAtoi(hex.substr(2 * i, 2), &v)) {
      return absl::InvalidArgumentError(absl::StrCat("a file handle shown as '", hex, "'"));
    }
    handle->f_handle[i] = static_cast<unsigned char>(v);
  }
  ASSIGN_OR_RETURN(std::string point, MountPointOfDev(dev));
  // Not O_PATH: open_by_handle_at refuses those as its mount fd.
  UniqueFd mnt(open(point.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!mnt.valid()) return ErrnoError(errno, "open ", point);
  UniqueFd inode(open_by_handle_at(mnt.get(), handle, O_PATH | O_CLOEXEC));
  if (!inode.valid()) {
    const int err = errno;
    if (err == EPERM) {
      std::string near = FindNear(pid, dev, ino);
      if (!near.empty()) return near;
    }
    return absl::PermissionDeniedError(absl::StrCat(
        "its file handle does not open (", strerror(err), ")",
        err == EPERM ? ", and the inode is not near any path the task uses" : ""));
  }
  absl::StatusOr<std::string> path = ReadLink(absl::StrCat("/proc/self/fd/", inode.get()));
  if (!path.ok() || path->empty() || (*path)[0] != '/' || absl::EndsWith(*path, " (deleted)")) {
    return absl::UnimplementedError("the inode has no path (deleted?): not supported");
  }
  struct stat named;
  if (lstat(path->c_str(), &named) != 0 || named.st_dev != dev || named.st_ino != ino) {
    return absl::FailedPreconditionError(absl::StrCat("its path ", *path, " does not name that inode"));
  }
  return *path;
}

}  // namespace ckpt::fs
