// UniqueFd owns one file descriptor and closes it once.
//
//   ASSIGN_OR_RETURN(UniqueFd maps, OpenFile("/proc/1/maps", O_RDONLY));
//   ASSIGN_OR_RETURN(std::string text, ReadAll(maps.get()));

#ifndef LIBCKPT_LIB_BASE_FD_H_
#define LIBCKPT_LIB_BASE_FD_H_

#include <unistd.h>

#include <string>
#include <utility>

#include "absl/status/statusor.h"

namespace ckpt {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// open(2) with O_CLOEXEC added; the error names the path.
absl::StatusOr<UniqueFd> OpenFile(const std::string& path, int flags, mode_t mode = 0);

// A new open description of the file `held` refers to (a pipe, a deleted
// file, a memfd), with its own `flags`, through /proc/self/fd; `what`
// names the file in errors.
absl::StatusOr<UniqueFd> Reopen(int held, int flags, const std::string& what);

// Reads until EOF (restarting on EINTR and short reads).
absl::StatusOr<std::string> ReadAll(int fd);

// readlink(2) into a string; the error names the path.
absl::StatusOr<std::string> ReadLink(const std::string& path);

// Reads a whole (usually /proc) file; the error names the path.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Reads `len` bytes at `offset`, restarting on EINTR and short reads;
// returns how many it read, fewer only at end of file.
absl::StatusOr<size_t> PreadFull(int fd, void* buf, size_t len, uint64_t offset);

// Writes every byte, restarting on EINTR and short writes.
absl::Status WriteAll(int fd, const void* data, size_t len);

// The highest fd number this process has open (-1 if none).
absl::StatusOr<int> MaxOpenFd();

}  // namespace ckpt

#endif  // LIBCKPT_LIB_BASE_FD_H_
