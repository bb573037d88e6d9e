// Image outputs: an open fd, or a path written through an unnamed file
// and linked in once the image is complete and durable.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "ckpt/ckpt.hpp"
#include "lib/base/fd.h"
#include "lib/base/status.h"

namespace ckpt {
namespace {

absl::StatusOr<size_t> WriteVia(const OutputOps& ops, int fd, const struct iovec* iov,
                                int iovcnt, const std::string& what) {
  ssize_t n = ops.writev(fd, iov, iovcnt);
  if (n >= 0) return static_cast<size_t>(n);
  if (errno == EINTR) return 0;
  if (errno == EPIPE) {
    return WithErrno(absl::UnavailableError(absl::StrCat(
                         "writing the image to ", what, ": its reader went away (",
                         strerror(EPIPE), ")")),
                     EPIPE);
  }
  return ErrnoError(errno, "writing the image to ", what);
}

absl::Status SyncIfRegular(const OutputOps& ops, int fd, const std::string& what) {
  struct stat st;
  if (fstat(fd, &st) != 0) return ErrnoError(errno, "fstat ", what);
  if (!S_ISREG(st.st_mode)) return absl::OkStatus();
  if (ops.fsync(fd) != 0) return ErrnoError(errno, "fsync of the image ", what);
  return absl::OkStatus();
}

// A pipe gets the largest buffer an unprivileged process may give it
// (fs.pipe-max-size): a 64 KiB pipe wakes its reader sixteen times a
// MiB. Best effort; the reader sees the same bytes either way.
void GrowPipe(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) return;
  int max = 1 << 20;
  absl::StatusOr<std::string> text = ReadFile("/proc/sys/fs/pipe-max-size");
  int v = 0;
  if (text.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &v) && v > 0) max = v;
  if (fcntl(fd, F_GETPIPE_SZ) < max) fcntl(fd, F_SETPIPE_SZ, max);
}

class FdOutput : public ImageOutput {
 public:
  FdOutput(int fd, OutputOps ops) : fd_(fd), ops_(std::move(ops)) { GrowPipe(fd_); }
  absl::StatusOr<size_t> WriteV(const struct iovec* iov, int iovcnt) override {
    return WriteVia(ops_, fd_, iov, iovcnt, absl::StrCat("fd ", fd_));
  }
  absl::Status Commit() override { return SyncIfRegular(ops_, fd_, absl::StrCat("fd ", fd_)); }

 private:
  int fd_;
  OutputOps ops_;
};

// The directory part of `path` ("." when it has none) and the name.
std::pair<std::string, std::string> SplitPath(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {".", path};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

class FileOutput : public ImageOutput {
 public:
  FileOutput(std::string path, OutputOps ops) : path_(std::move(path)), ops_(std::move(ops)) {}
  ~FileOutput() override { Abort(); }

  absl::Status Open() {
    auto [dir, name] = SplitPath(path_);
    dir_ = dir;
    name_ = name;
    if (name_.empty()) return absl::InvalidArgumentError(absl::StrCat("'", path_, "' names a directory"));
    struct stat st;
    if (stat(path_.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
      // A FIFO or a device: written in place.
      ASSIGN_OR_RETURN(fd_, OpenFile(path_, O_WRONLY | O_CLOEXEC));
      in_place_ = true;
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(dir_fd_, OpenFile(dir_, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    int fd = openat(dir_fd_.get(), ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    if (fd >= 0) {
      fd_ = UniqueFd(fd);
      return absl::OkStatus();
    }
    if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
      return ErrnoError(errno, "creating the image in ", dir_);
    }
    // No O_TMPFILE here: a hidden name, removed on every error (only a
    // SIGKILL of this process can leave it behind).
    temp_ = absl::StrCat(".", name_, ".ckpt-partial.", getpid());
    fd = openat(dir_fd_.get(), temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      int err = errno;
      temp_.clear();
      return ErrnoError(err, "creating the image in ", dir_);
    }
    fd_ = UniqueFd(fd);
    return absl::OkStatus();
  }

  absl::StatusOr<size_t> WriteV(const struct iovec* iov, int iovcnt) override {
    return WriteVia(ops_, fd_.get(), iov, iovcnt, path_);
  }

  absl::Status Commit() override {
    if (in_place_) return absl::OkStatus();
    if (ops_.fsync(fd_.get()) != 0) return ErrnoError(errno, "fsync of the image ", path_);
    if (temp_.empty()) {
      // Link the unnamed file in: straight under its name if that is free,
      // else under a temporary name renamed over the old image.
      const std::string self = absl::StrCat("/proc/self/fd/", fd_.get());
      if (linkat(AT_FDCWD, self.c_str(), dir_fd_.get(), name_.c_str(), AT_SYMLINK_FOLLOW) != 0) {
        if (errno != EEXIST) return ErrnoError(errno, "linking the image in as ", path_);
        temp_ = absl::StrCat(".", name_, ".ckpt-partial.", getpid());
        unlinkat(dir_fd_.get(), temp_.c_str(), 0);
        if (linkat(AT_FDCWD, self.c_str(), dir_fd_.get(), temp_.c_str(), AT_SYMLINK_FOLLOW) != 0) {
          int err = errno;
          temp_.clear();
          return ErrnoError(err, "linking the image in next to ", path_);
        }
      }
    }
    if (!temp_.empty()) {
      if (renameat(dir_fd_.get(), temp_.c_str(), dir_fd_.get(), name_.c_str()) != 0) {
        return ErrnoError(errno, "renaming the image into place as ", path_);
      }
      temp_.clear();
    }
    if (ops_.fsync(dir_fd_.get()) != 0) {
      return ErrnoError(errno, "fsync of the directory ", dir_, " (the image ", path_,
                        " is in place but may not survive a crash)");
    }
    return absl::OkStatus();
  }

  void Abort() override {
    if (!temp_.empty() && dir_fd_.get() >= 0) unlinkat(dir_fd_.get(), temp_.c_str(), 0);
    temp_.clear();
    fd_.reset();  // an unnamed file goes away with its last fd
  }

 private:
  std::string path_, dir_, name_;
  OutputOps ops_;
  UniqueFd dir_fd_, fd_;
  std::string temp_;  // the hidden name, while one exists
  bool in_place_ = false;
};

}  // namespace

OutputOps SystemOutputOps() {
  OutputOps ops;
  ops.writev = [](int fd, const struct iovec* iov, int iovcnt) { return ::writev(fd, iov, iovcnt); };
  ops.fsync = [](int fd) { return ::fsync(fd); };
  return ops;
}

std::unique_ptr<ImageOutput> NewFdImageOutput(int fd, OutputOps ops) {
  return std::make_unique<FdOutput>(fd, std::move(ops));
}

absl::StatusOr<std::unique_ptr<ImageOutput>> NewFileImageOutput(const std::string& path,
                                                                OutputOps ops) {
  auto out = std::make_unique<FileOutput>(path, std::move(ops));
  RETURN_IF_ERROR(out->Open());
  return std::unique_ptr<ImageOutput>(std::move(out));
}

}  // namespace ckpt
