#include "lib/fs/sockopt.h"

#include <fcntl.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>

#ifndef SIOCGSKNS
#define SIOCGSKNS 0x894C
#endif

#include "absl/strings/str_cat.h"
#include "lib/base/status.h"

namespace ckpt::fs {

absl::StatusOr<UniqueFd> CopyOfFd(pid_t pid, int fd) {
  if (pid == getpid()) {
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0) return ErrnoError(errno, "dup of fd ", fd);
    return UniqueFd(copy);
  }
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd.valid()) return ErrnoError(errno, "pidfd_open of task ", pid);
  UniqueFd copy(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0)));
  if (!copy.valid()) return ErrnoError(errno, "task ", pid, " fd ", fd, ": pidfd_getfd");
  return copy;
}

absl::StatusOr<int> SocketDomain(pid_t pid, int fd) {
  ASSIGN_OR_RETURN(UniqueFd copy, CopyOfFd(pid, fd));
  return GetSockInt(copy.get(), SOL_SOCKET, SO_DOMAIN, "SO_DOMAIN");
}

absl::Status RefuseOtherNetns(int fd, const std::string& who, const char* kind) {
  int ns = ioctl(fd, SIOCGSKNS);
  if (ns < 0) return absl::OkStatus();  // a kernel without it: one namespace for all we can tell
  UniqueFd nsfd(ns);
  struct stat sock_ns {}, own {};
  if (fstat(ns, &sock_ns) == 0 && stat("/proc/self/ns/net", &own) == 0 && sock_ns.st_ino != own.st_ino) {
    return absl::UnimplementedError(
        absl::StrCat(who, ": ", kind, " of another network namespace than the dumper's is not supported yet"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> GetSockInt(int fd, int level, int opt, const char* what) {
  int v = 0;
  socklen_t len = sizeof(v);
  if (getsockopt(fd, level, opt, &v, &len) != 0) return ErrnoError(errno, "getsockopt ", what);
  return v;
}

absl::Status SetSockInt(int fd, int level, int opt, int v, const char* what) {
  if (setsockopt(fd, level, opt, &v, sizeof(v)) != 0) return ErrnoError(errno, "setsockopt ", what, " ", v);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> GetSockTimeo(int fd, int opt, const char* what) {
  struct timeval tv {};
  socklen_t len = sizeof(tv);
  if (getsockopt(fd, SOL_SOCKET, opt, &tv, &len) != 0) return ErrnoError(errno, "getsockopt ", what);
  return static_cast<int64_t>(tv.tv_sec) * 1000000000 + static_cast<int64_t>(tv.tv_usec) * 1000;
}

absl::Status SetSockTimeo(int fd, int opt, int64_t ns, const char* what) {
  struct timeval tv {};
  tv.tv_sec = ns / 1000000000;
  tv.tv_usec = (ns % 1000000000) / 1000;
  if (setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv)) != 0) return ErrnoError(errno, "setsockopt ", what);
  return absl::OkStatus();
}

absl::Status SetSockBuf(int fd, bool snd, uint32_t value) {
  if (value == 0) return absl::OkStatus();
  const int half = static_cast<int>(value / 2);
  if (setsockopt(fd, SOL_SOCKET, snd ? SO_SNDBUFFORCE : SO_RCVBUFFORCE, &half, sizeof(half)) == 0) {
    return absl::OkStatus();
  }
  return SetSockInt(fd, SOL_SOCKET, snd ? SO_SNDBUF : SO_RCVBUF, half, snd ? "SO_SNDBUF" : "SO_RCVBUF");
}

absl::StatusOr<SockFilter> GetSockFilter(int fd, const std::string& who) {
  SockFilter f;
  // The length is counted in instructions; 0 asks how many there are.
  socklen_t n = 0;
  if (getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, nullptr, &n) != 0) {
    if (errno == EACCES || errno == EPERM) {
      return absl::UnimplementedError(absl::StrCat(who, ": an eBPF socket filter (SO_ATTACH_BPF) is not supported"));
    }
    return ErrnoError(errno, who, ": getsockopt SO_GET_FILTER");
  }
  if (n == 0) return f;
  if (n > kMaxFilterInsns) return absl::InternalError(absl::StrCat(who, ": a filter of ", n, " instructions"));
  f.insns.resize(n);
  if (getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, f.insns.data(), &n) != 0) {
    return ErrnoError(errno, who, ": getsockopt SO_GET_FILTER");
  }
  f.insns.resize(n);
  ASSIGN_OR_RETURN(int locked, GetSockInt(fd, SOL_SOCKET, SO_LOCK_FILTER, "SO_LOCK_FILTER"));
  f.locked = locked != 0;
  return f;
}

absl::Status SetSockFilter(int fd, const SockFilter& filter) {
  if (filter.insns.empty()) return absl::OkStatus();
  struct sock_fprog prog {};
  prog.len = static_cast<unsigned short>(filter.insns.size());
  prog.filter = const_cast<struct sock_filter*>(filter.insns.data());
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) != 0) {
    return ErrnoError(errno, "setsockopt SO_ATTACH_FILTER (", filter.insns.size(), " instructions)");
  }
  if (filter.locked) RETURN_IF_ERROR(SetSockInt(fd, SOL_SOCKET, SO_LOCK_FILTER, 1, "SO_LOCK_FILTER"));
  return absl::OkStatus();
}

}  // namespace ckpt::fs
