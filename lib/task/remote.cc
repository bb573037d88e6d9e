#include "lib/task/remote.h"

#include <limits.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "absl/strings/str_format.h"
#include "lib/base/status.h"

namespace ckpt::task {
namespace {

// A cursor over an iovec array that can be advanced by a byte count.
class IovCursor {
 public:
  IovCursor(const struct iovec* iov, size_t n) : iov_(iov), n_(n) {}
  bool done() const { return i_ >= n_; }
  // Up to `max` entries (and at most `max_bytes`), starting at the cursor.
  size_t Take(std::vector<struct iovec>* out, size_t max, size_t max_bytes) const {
    out->clear();
    size_t bytes = 0;
    size_t off = off_;
    for (size_t i = i_; i < n_ && out->size() < max && bytes < max_bytes; ++i) {
      size_t len = std::min(iov_[i].iov_len - off, max_bytes - bytes);
      if (len > 0) out->push_back({static_cast<char*>(iov_[i].iov_base) + off, len});
      bytes += len;
      off = 0;
    }
    return bytes;
  }
  void Advance(size_t bytes) {
    while (bytes > 0 && i_ < n_) {
      size_t left = iov_[i_].iov_len - off_;
      size_t take = std::min(bytes, left);
      off_ += take;
      bytes -= take;
      if (off_ == iov_[i_].iov_len) {
        ++i_;
        off_ = 0;
      }
    }
    while (i_ < n_ && iov_[i_].iov_len == 0) ++i_;
  }
  uint64_t address() const {
    return i_ < n_ ? reinterpret_cast<uint64_t>(iov_[i_].iov_base) + off_ : 0;
  }

 private:
  const struct iovec* iov_;
  size_t n_;
  size_t i_ = 0;
  size_t off_ = 0;
};

absl::Status TransferV(bool write, pid_t pid, const struct iovec* local, size_t nr_local,
                       const struct iovec* remote, size_t nr_remote) {
  IovCursor lc(local, nr_local), rc(remote, nr_remote);
  lc.Advance(0);
  rc.Advance(0);
  std::vector<struct iovec> l, r;
  while (!lc.done() && !rc.done()) {
    // Both sides carry the same total; take what both windows allow.
    size_t rbytes = rc.Take(&r, IOV_MAX, SSIZE_MAX);
    size_t lbytes = lc.Take(&l, IOV_MAX, rbytes);
    if (lbytes < rbytes) rc.Take(&r, IOV_MAX, lbytes);
    ssize_t n = write ? process_vm_writev(pid, l.data(), l.size(), r.data(), r.size(), 0)
                      : process_vm_readv(pid, l.data(), l.size(), r.data(), r.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, absl::StrFormat("process_vm_%s of task %d at 0x%x",
                                               write ? "writev" : "readv", pid, rc.address()));
    }
    if (n == 0) {
      return absl::DataLossError(absl::StrFormat("process_vm_%s of task %d stopped at 0x%x",
                                                 write ? "writev" : "readv", pid, rc.address()));
    }
    lc.Advance(static_cast<size_t>(n));
    rc.Advance(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ReadRemote(pid_t pid, uint64_t addr, void* dst, size_t len) {
  struct iovec l = {dst, len};
  struct iovec r = {reinterpret_cast<void*>(addr), len};
  return TransferV(false, pid, &l, 1, &r, 1);
}

absl::Status WriteRemote(pid_t pid, uint64_t addr, const void* src, size_t len) {
  struct iovec l = {const_cast<void*>(src), len};
  struct iovec r = {reinterpret_cast<void*>(addr), len};
  return TransferV(true, pid, &l, 1, &r, 1);
}

absl::Status ReadRemoteV(pid_t pid, const struct iovec* local, size_t nr_local,
                         const struct iovec* remote, size_t nr_remote) {
  return TransferV(false, pid, local, nr_local, remote, nr_remote);
}

absl::Status WriteRemoteV(pid_t pid, const struct iovec* local, size_t nr_local,
                          const struct iovec* remote, size_t nr_remote) {
  return TransferV(true, pid, local, nr_local, remote, nr_remote);
}

}  // namespace ckpt::task
