#include "lib/fs/locks.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/syscall.h>

#include <set>
#include <string>
#include <tuple>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/image/records.h"

namespace ckpt::fs {
namespace {

constexpr image::FieldSpec kLocksFields[] = {
    CKPT_FIELD(image::ckpt_locks, nr_locks, kUnsigned),
    CKPT_FIELD(image::ckpt_locks, reserved, kHex),
};
CKPT_RECORD(image::CKPT_HDR_LOCKS, "LOCKS", image::ckpt_locks, kLocksFields, 0, kNone);

constexpr image::FieldSpec kLockFields[] = {
    CKPT_FIELD(image::ckpt_lock, fd, kSigned),       CKPT_FIELD(image::ckpt_lock, kind, kUnsigned),
    CKPT_FIELD(image::ckpt_lock, type, kUnsigned),   CKPT_FIELD(image::ckpt_lock, reserved, kHex),
    CKPT_FIELD(image::ckpt_lock, start, kSigned),    CKPT_FIELD(image::ckpt_lock, len, kSigned),
};
CKPT_RECORD(image::CKPT_HDR_LOCK, "LOCK", image::ckpt_lock, kLockFields, 0, kNone);

const char* KindName(uint32_t kind) {
  switch (kind) {
    case image::kLockFlock:
      return "flock";
    case image::kLockPosix:
      return "POSIX";
    case image::kLockOfd:
      return "OFD";
  }
  return "?";
}

std::string Describe(const image::ckpt_lock& l) {
  std::string what = absl::StrCat(KindName(l.kind), l.type == F_WRLCK ? " write" : " read",
                                  " lock");
  if (l.kind != image::kLockFlock) {
    absl::StrAppend(&what, " on [", l.start, ", ",
                    l.len == 0 ? std::string("EOF") : absl::StrCat(l.start + l.len), ")");
  }
  return absl::StrCat(what, " through fd ", l.fd);
}

}  // namespace

absl::StatusOr<image::ckpt_lock> ParseLockLine(absl::string_view line, int fd) {
  // "lock:\t1: POSIX  ADVISORY  WRITE 1234 00:2a:5678 0 EOF"
  std::vector<absl::string_view> w = absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  if (w.size() < 9 || w[0] != "lock:") {
    return absl::InternalError(absl::StrCat("an fdinfo lock line libckpt cannot read: '", line, "'"));
  }
  image::ckpt_lock l{};
  l.fd = fd;
  if (w[2] == "FLOCK") {
    l.kind = image::kLockFlock;
  } else if (w[2] == "POSIX") {
    l.kind = image::kLockPosix;
  } else if (w[2] == "OFDLCK") {
    l.kind = image::kLockOfd;
  } else {
    return absl::UnimplementedError(absl::StrCat("fd ", fd, " holds a ", w[2],
                                                 " (a lease or delegation): not supported"));
  }
  if (w[3] != "ADVISORY") {
    return absl::UnimplementedError(absl::StrCat("fd ", fd, " holds a ", w[3], " ", w[2],
                                                 " lock: not supported"));
  }
  if (w[4] == "READ") {
    l.type = F_RDLCK;
  } else if (w[4] == "WRITE") {
    l.type = F_WRLCK;
  } else {
    return absl::InternalError(absl::StrCat("fd ", fd, ": a lock of type ", w[4]));
  }
  int64_t start = 0, end = 0;
  if (!absl::SimpleAtoi(w[7], &start) || start < 0 ||
      (w[8] != "EOF" && (!absl::SimpleAtoi(w[8], &end) || end < start))) {
    return absl::InternalError(absl::StrCat("an fdinfo lock range libckpt cannot read: '", line, "'"));
  }
  if (l.kind != image::kLockFlock) {
    l.start = start;
    l.len = w[8] == "EOF" ? 0 : end - start + 1;
  }
  return l;
}

absl::StatusOr<std::vector<image::ckpt_lock>> CollectLocks(pid_t pid,
                                                           const std::vector<FdEntry>& fds) {
  std::vector<image::ckpt_lock> locks;
  // A description open on several fds lists its locks under each.
  std::set<std::tuple<uint32_t, uint32_t, uint32_t, int64_t, int64_t>> seen;
  for (const FdEntry& f : fds) {
    absl::StatusOr<std::string> text = ReadFile(absl::StrCat("/proc/", pid, "/fdinfo/", f.fd));
    if (!text.ok()) return Annotate(text.status(), absl::StrCat("task ", pid, " fd ", f.fd));
    for (absl::string_view line : absl::StrSplit(*text, '\n')) {
      if (!absl::StartsWith(line, "lock:")) continue;
      absl::StatusOr<image::ckpt_lock> l = ParseLockLine(line, f.fd);
      if (!l.ok()) return Annotate(l.status(), absl::StrCat("task ", pid));
      if (seen.insert({f.file_ref, l->kind, l->type, l->start, l->len}).second) locks.push_back(*l);
    }
  }
  return locks;
}

absl::Status WriteLocks(const std::vector<image::ckpt_lock>& locks, image::Writer& writer) {
  image::ckpt_locks h{};
  h.nr_locks = static_cast<uint32_t>(locks.size());
  RETURN_IF_ERROR(writer.AppendStruct(image::CKPT_HDR_LOCKS, h));
  for (const image::ckpt_lock& l : locks) RETURN_IF_ERROR(writer.AppendStruct(image::CKPT_HDR_LOCK, l));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<image::ckpt_lock>> ReadLocks(image::Reader& r,
                                                        const std::function<bool(int)>& has_fd) {
  ASSIGN_OR_RETURN(image::ckpt_locks h, r.Expect<image::ckpt_locks>(image::CKPT_HDR_LOCKS));
  if (h.nr_locks > image::kMaxLocks) return r.FieldError("nr_locks", h.nr_locks, " is too many");
  if (h.reserved != 0) return r.FieldError("reserved", h.reserved, " is not zero");
  std::vector<image::ckpt_lock> locks;
  for (uint32_t i = 0; i < h.nr_locks; ++i) {
    ASSIGN_OR_RETURN(image::ckpt_lock l, r.Expect<image::ckpt_lock>(image::CKPT_HDR_LOCK));
    if (!has_fd(l.fd)) return r.FieldError("fd", l.fd, " is not an fd of the task");
    if (l.kind != image::kLockFlock && l.kind != image::kLockPosix && l.kind != image::kLockOfd) {
      return r.FieldError("kind", l.kind, " is not a lock kind");
    }
    if (l.type != F_RDLCK && l.type != F_WRLCK) return r.FieldError("type", l.type, " is not a lock type");
    if (l.reserved != 0) return r.FieldError("reserved", l.reserved, " is not zero");
    if (l.start < 0 || l.len < 0 || l.len > INT64_MAX - l.start ||
        (l.kind == image::kLockFlock && (l.start != 0 || l.len != 0))) {
      return r.FieldError("start", l.start, " and len ", l.len, " are not a lock range");
    }
    locks.push_back(l);
  }
  return locks;
}

absl::Status TakeLocks(task::Injector& inj, pid_t pid, const std::vector<image::ckpt_lock>& locks) {
  if (locks.empty()) return absl::OkStatus();
  task::SyscallBatch b = inj.NewBatch();
  std::vector<size_t> calls;
  for (const image::ckpt_lock& l : locks) {
    const uint64_t fd = static_cast<uint64_t>(static_cast<int64_t>(l.fd));
    if (l.kind == image::kLockFlock) {
      const uint64_t op = (l.type == F_WRLCK ? LOCK_EX : LOCK_SH) | LOCK_NB;
      calls.push_back(b.Add(SYS_flock, {fd, op}, task::kMayFail));
      continue;
    }
    struct flock fl {};
    fl.l_type = static_cast<short>(l.type);
    fl.l_whence = SEEK_SET;
    fl.l_start = l.start;
    fl.l_len = l.len;
    const uint64_t cmd = l.kind == image::kLockPosix ? F_SETLK : F_OFD_SETLK;
    calls.push_back(b.Add(SYS_fcntl, {fd, cmd, b.AddStruct(fl)}, task::kMayFail));
  }
  RETURN_IF_ERROR(inj.Run(b));
  for (size_t i = 0; i < locks.size(); ++i) {
    const int64_t ret = b.ret(calls[i]);
    if (ret == 0) continue;
    const int err = static_cast<int>(-ret);
    if (err == EAGAIN || err == EACCES) {
      return absl::FailedPreconditionError(absl::StrCat(
          "task ", pid, ": its ", Describe(locks[i]),
          " is held by another process now (was the dumped tree left running?)"));
    }
    return ErrnoError(err, "task ", pid, ": taking its ", Describe(locks[i]), " again");
  }
  return absl::OkStatus();
}

}  // namespace ckpt::fs
