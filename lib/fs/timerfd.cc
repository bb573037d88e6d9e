#include "lib/fs/timerfd.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "lib/base/clock.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/fs/fdkind.h"
#include "lib/image/format.h"
#include "lib/image/records.h"

namespace ckpt::fs {
namespace {

constexpr image::FieldSpec kTimerfdFields[] = {
    CKPT_FIELD(image::ckpt_timerfd, objref, kUnsigned),    CKPT_FIELD(image::ckpt_timerfd, clock, kSigned),
    CKPT_FIELD(image::ckpt_timerfd, settime_flags, kHex),  CKPT_FIELD(image::ckpt_timerfd, ticks, kUnsigned),
    CKPT_FIELD(image::ckpt_timerfd, interval_ns, kSigned), CKPT_FIELD(image::ckpt_timerfd, value_ns, kSigned),
};
CKPT_RECORD(image::CKPT_HDR_TIMERFD, "TIMERFD", image::ckpt_timerfd, kTimerfdFields, 0, kNone);

constexpr unsigned long kSetTicks = 0x40085400;  // TFD_IOC_SET_TICKS, _IOW('T', 0, u64)

// "(12, 345)" -> ns
bool ParsePair(absl::string_view s, int64_t* ns) {
  s = absl::StripAsciiWhitespace(s);
  if (!absl::ConsumePrefix(&s, "(") || !absl::ConsumeSuffix(&s, ")")) return false;
  std::vector<absl::string_view> w = absl::StrSplit(s, ',');
  int64_t sec = 0, nsec = 0;
  if (w.size() != 2 || !absl::SimpleAtoi(absl::StripAsciiWhitespace(w[0]), &sec) ||
      !absl::SimpleAtoi(absl::StripAsciiWhitespace(w[1]), &nsec)) {
    return false;
  }
  *ns = sec * kNsPerSec + nsec;
  return true;
}

}  // namespace

absl::StatusOr<uint32_t> RegisterTimerfd(objhash::ObjHash& objects, pid_t pid, int fd,
                                         const struct stat& st) {
  // A periodic timer that expired stays expired, unarmed, until someone
  // reads it or asks for its time: fdinfo then shows neither the
  // expirations since nor the time to the next. timerfd_gettime() on the
  // same description (pidfd_getfd) counts them into the unread ones and
  // re-arms it, which the task cannot tell from the timer running on.
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return ErrnoError(errno, "pidfd_open(", pid, ")");
  UniqueFd owned_pidfd(pidfd);
  int dup = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, fd, 0));
  if (dup < 0) return ErrnoError(errno, "task ", pid, " fd ", fd, ": pidfd_getfd");
  UniqueFd owned_dup(dup);
  struct itimerspec cur;
  if (timerfd_gettime(dup, &cur) != 0) {
    return ErrnoError(errno, "task ", pid, " fd ", fd, ": timerfd_gettime");
  }
  ASSIGN_OR_RETURN(std::string text, ReadFile(absl::StrCat("/proc/", pid, "/fdinfo/", fd)));
  image::ckpt_timerfd t{};
  bool clock = false, value = false, interval = false;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(line, absl::MaxSplits(':', 1));
    absl::string_view v = absl::StripAsciiWhitespace(kv.second);
    bool ok = true;
    if (kv.first == "clockid") {
      ok = clock = absl::SimpleAtoi(v, &t.clock);
    } else if (kv.first == "ticks") {
      ok = absl::SimpleAtoi(v, &t.ticks);
    } else if (kv.first == "settime flags") {
      uint32_t flags = 0;
      for (char c : v) {
        if (c < '0' || c > '7') ok = false;
        flags = flags * 8 + static_cast<uint32_t>(c - '0');
      }
      t.settime_flags = flags;
    } else if (kv.first == "it_value") {
      ok = value = ParsePair(v, &t.value_ns);
    } else if (kv.first == "it_interval") {
      ok = interval = ParsePair(v, &t.interval_ns);
    }
    if (!ok) {
      return absl::InternalError(absl::StrCat("task ", pid, " fd ", fd, ": unexpected fdinfo line '",
                                              line, "'"));
    }
  }
  if (!clock || !value || !interval) {
    return absl::InternalError(absl::StrCat("task ", pid, " fd ", fd,
                                            ": fdinfo does not describe a timerfd"));
  }
  ASSIGN_OR_RETURN(objhash::ObjHash::Found f,
                   objects.LookupAdd(kObjTimerfd,
                                     objhash::Identity::OfFile(pid, fd, st.st_dev, st.st_ino), t));
  return f.objref;
}

absl::Status CheckpointTimerfd(objhash::CheckpointContext& ctx,
                               const objhash::ObjHash::Entry& entry) {
  image::ckpt_timerfd t = std::any_cast<image::ckpt_timerfd>(entry.data);
  t.objref = entry.objref;
  return ctx.writer->AppendStruct(image::CKPT_HDR_TIMERFD, t);
}

absl::StatusOr<objhash::RestoredObject> RestoreTimerfd(objhash::RestoreContext& ctx,
                                                       const image::Record& rec) {
  (void)rec;
  image::Reader& r = *ctx.reader;
  image::ckpt_timerfd t;
  RETURN_IF_ERROR(r.ReadStruct(&t, sizeof(t)));
  if (t.clock != CLOCK_REALTIME && t.clock != CLOCK_MONOTONIC && t.clock != CLOCK_BOOTTIME &&
      t.clock != CLOCK_REALTIME_ALARM && t.clock != CLOCK_BOOTTIME_ALARM) {
    return r.FieldError("clock", t.clock, " is not a timerfd clock");
  }
  if (t.settime_flags & ~static_cast<uint32_t>(TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET)) {
    return r.FieldError("settime_flags", t.settime_flags, " has unknown bits");
  }
  if (t.interval_ns < 0 || t.interval_ns > image::kMaxDurationNs || t.value_ns < 0 || t.value_ns > image::kMaxDurationNs) {
    return r.FieldError("value_ns", "the timer is out of range");
  }
  int fd = timerfd_create(t.clock, TFD_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "timerfd_create(", t.clock, ")");
  UniqueFd owned(fd);
  if (t.value_ns > 0) {
    // Relative, with the time left from the restore's start.
    int64_t left = t.value_ns - (MonotonicNs() - ctx.start_mono_ns);
    if (left < 1) left = 1;
    struct itimerspec v = {NsToTimespec(t.interval_ns), NsToTimespec(left)};
    if (timerfd_settime(fd, 0, &v, nullptr) != 0) return ErrnoError(errno, "arming a timerfd");
  }
  if (t.ticks > 0 && ioctl(fd, kSetTicks, &t.ticks) != 0) {
    return ErrnoError(errno, "setting a timerfd's ", t.ticks, " unread expirations");
  }
  return objhash::HoldAt(ctx, t.objref, fd, "a timerfd");
}

// --------------------------------------------------------- the fd kind

namespace {

bool ClaimsTimerfd(const FdProbe& p) { return p.target == "anon_inode:[timerfd]"; }

absl::StatusOr<uint32_t> RegisterTimerfdTarget(objhash::ObjHash& objects, const FdProbe& p,
                                               const Description&) {
  return RegisterTimerfd(objects, p.pid, p.fd, p.st);
}

// One description: the descriptors share the restorer's timerfd.
absl::StatusOr<UniqueFd> OpenTimerfd(objhash::RestoreContext&, const image::ckpt_file& rec,
                                     const std::string&, const objhash::RestoredObject* timer) {
  int fd = fcntl(timer->fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return ErrnoError(errno, "dup of a timerfd");
  UniqueFd owned(fd);
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, (fl & ~O_NONBLOCK) | (static_cast<int>(rec.flags) & O_NONBLOCK)) != 0) {
    return ErrnoError(errno, "setting a timerfd's flags");
  }
  return owned;
}

absl::Status CheckTimerfd(objhash::RestoreContext&, const image::ckpt_file& rec,
                          const std::string& path, int, const struct stat& st) {
  return CheckFileType(rec, path, st);
}

const FdKindOps kTimerfdKind = {
    .name = "timerfd",
    .file_kind = image::kFileTimerfd,
    .order = 10,
    .file_type = 0,
    .seekable = false,
    .by_path = false,
    .has_target = true,
    .target_kind = kObjTimerfd,
    .claims = ClaimsTimerfd,
    .describe = nullptr,
    .register_target = RegisterTimerfdTarget,
    .open = OpenTimerfd,
    .check = CheckTimerfd,
};

[[maybe_unused]] const bool kRegistered =
    RegisterFdKind(&kTimerfdKind) &&
    objhash::RegisterHandler({kObjTimerfd, "TIMERFD", image::CKPT_HDR_TIMERFD, CheckpointTimerfd,
                              RestoreTimerfd});

}  // namespace
}  // namespace ckpt::fs
