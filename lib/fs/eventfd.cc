// EVENTFD and SIGNALFD objects: an eventfd with its counter and
// semaphore mode, a signalfd with the signals it reads. Each is its own
// open description, saved once however many descriptors share it; every
// FILE of these kinds is a dup of the restorer's object.
//
// Dump: /proc/PID/fdinfo shows all of it (eventfd-count, eventfd-semaphore;
// sigmask). Restore: eventfd() and a write of the count; signalfd() with
// the mask. A signalfd holds no signals of its own: what it reads is the
// reading task's pending signals, restored with the task.

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/fs/anonfd.h"
#include "lib/fs/fdkind.h"
#include "lib/image/format.h"
#include "lib/image/records.h"

namespace ckpt::fs {
namespace {

constexpr objhash::ObjKind kObjEventfd{17};
constexpr objhash::ObjKind kObjSignalfd{18};

constexpr image::FieldSpec kEventfdFields[] = {
    CKPT_FIELD(image::ckpt_eventfd, objref, kUnsigned),
    CKPT_FIELD(image::ckpt_eventfd, semaphore, kUnsigned),
    CKPT_FIELD(image::ckpt_eventfd, count, kUnsigned),
};
CKPT_RECORD(image::CKPT_HDR_EVENTFD, "EVENTFD", image::ckpt_eventfd, kEventfdFields, 0, kNone);

constexpr image::FieldSpec kSignalfdFields[] = {
    CKPT_FIELD(image::ckpt_signalfd, objref, kUnsigned),
    CKPT_FIELD(image::ckpt_signalfd, sigmask, kHex),
};
CKPT_RECORD(image::CKPT_HDR_SIGNALFD, "SIGNALFD", image::ckpt_signalfd, kSignalfdFields, 0, kNone);

constexpr uint64_t kMaxEventfdCount = 0xfffffffffffffffeull;

// ------------------------------------------------------------- eventfd

bool ClaimsEventfd(const FdProbe& p) { return p.target == "anon_inode:[eventfd]"; }

absl::StatusOr<uint32_t> RegisterEventfd(objhash::ObjHash& objects, const FdProbe& p,
                                         const Description&) {
  ASSIGN_OR_RETURN(auto lines, ReadFdInfoLines(p.pid, p.fd));
  ASSIGN_OR_RETURN(std::string count, FdInfoValue(lines, "eventfd-count", p.pid, p.fd, "an eventfd"));
  ASSIGN_OR_RETURN(std::string sem, FdInfoValue(lines, "eventfd-semaphore", p.pid, p.fd, "an eventfd"));
  image::ckpt_eventfd e{};
  if (!absl::SimpleHexAtoi(count, &e.count) || !absl::SimpleAtoi(sem, &e.semaphore) ||
      e.semaphore > 1) {
    return absl::InternalError(absl::StrCat("task ", p.pid, " fd ", p.fd,
                                            ": unexpected eventfd fdinfo (count '", count,
                                            "', semaphore '", sem, "')"));
  }
  ASSIGN_OR_RETURN(objhash::ObjHash::Found f,
                   objects.LookupAdd(kObjEventfd,
                                     objhash::Identity::OfFile(p.pid, p.fd, p.st.st_dev, p.st.st_ino), e));
  return f.objref;
}

absl::Status CheckpointEventfd(objhash::CheckpointContext& ctx, const objhash::ObjHash::Entry& entry) {
  image::ckpt_eventfd e = std::any_cast<image::ckpt_eventfd>(entry.data);
  e.objref = entry.objref;
  return ctx.writer->AppendStruct(image::CKPT_HDR_EVENTFD, e);
}

absl::StatusOr<objhash::RestoredObject> RestoreEventfd(objhash::RestoreContext& ctx,
                                                       const image::Record&) {
  image::Reader& r = *ctx.reader;
  image::ckpt_eventfd e;
  RETURN_IF_ERROR(r.ReadStruct(&e, sizeof(e)));
  if (e.semaphore > 1) return r.FieldError("semaphore", e.semaphore, " is not 0 or 1");
  if (e.count > kMaxEventfdCount) return r.FieldError("count", e.count, " is beyond an eventfd's largest");
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | (e.semaphore ? EFD_SEMAPHORE : 0));
  if (fd < 0) return ErrnoError(errno, "eventfd()");
  UniqueFd owned(fd);
  if (e.count != 0 && write(fd, &e.count, sizeof(e.count)) != static_cast<ssize_t>(sizeof(e.count))) {
    return ErrnoError(errno, "setting an eventfd's count to ", e.count);
  }
  return objhash::HoldAt(ctx, e.objref, fd, "an eventfd");
}

// ------------------------------------------------------------ signalfd

bool ClaimsSignalfd(const FdProbe& p) { return p.target == "anon_inode:[signalfd]"; }

absl::StatusOr<uint32_t> RegisterSignalfd(objhash::ObjHash& objects, const FdProbe& p,
                                          const Description&) {
  ASSIGN_OR_RETURN(auto lines, ReadFdInfoLines(p.pid, p.fd));
  ASSIGN_OR_RETURN(std::string mask, FdInfoValue(lines, "sigmask", p.pid, p.fd, "a signalfd"));
  image::ckpt_signalfd s{};
  if (!absl::SimpleHexAtoi(mask, &s.sigmask)) {
    return absl::InternalError(absl::StrCat("task ", p.pid, " fd ", p.fd, ": unexpected signalfd mask '",
                                            mask, "'"));
  }
  ASSIGN_OR_RETURN(objhash::ObjHash::Found f,
                   objects.LookupAdd(kObjSignalfd,
                                     objhash::Identity::OfFile(p.pid, p.fd, p.st.st_dev, p.st.st_ino), s));
  return f.objref;
}

absl::Status CheckpointSignalfd(objhash::CheckpointContext& ctx, const objhash::ObjHash::Entry& entry) {
  image::ckpt_signalfd s = std::any_cast<image::ckpt_signalfd>(entry.data);
  s.objref = entry.objref;
  return ctx.writer->AppendStruct(image::CKPT_HDR_SIGNALFD, s);
}

absl::StatusOr<objhash::RestoredObject> RestoreSignalfd(objhash::RestoreContext& ctx,
                                                        const image::Record&) {
  image::Reader& r = *ctx.reader;
  image::ckpt_signalfd s;
  RETURN_IF_ERROR(r.ReadStruct(&s, sizeof(s)));
  if (s.reserved != 0) return r.FieldError("reserved", s.reserved, " is not zero");
  // SIGKILL and SIGSTOP cannot be read; the kernel never shows them.
  constexpr uint64_t kUnreadable = (1ull << (SIGKILL - 1)) | (1ull << (SIGSTOP - 1));
  if (s.sigmask & kUnreadable) return r.FieldError("sigmask", "SIGKILL and SIGSTOP cannot be read");
  // The kernel's own 64-bit mask: glibc's sigset_t functions refuse its
  // internal signals 32 and 33, which other programs may read.
  uint64_t mask = s.sigmask;
  int fd = static_cast<int>(syscall(SYS_signalfd4, -1, &mask, sizeof(mask), SFD_CLOEXEC | SFD_NONBLOCK));
  if (fd < 0) return ErrnoError(errno, "signalfd()");
  UniqueFd owned(fd);
  return objhash::HoldAt(ctx, s.objref, fd, "a signalfd");
}

// ------------------------------------------------------------ the kinds

absl::StatusOr<UniqueFd> OpenEventfd(objhash::RestoreContext&, const image::ckpt_file& rec,
                                     const std::string&, const objhash::RestoredObject* obj) {
  return DupWithNonblock(obj->fd, rec.flags, "an eventfd");
}

absl::StatusOr<UniqueFd> OpenSignalfd(objhash::RestoreContext&, const image::ckpt_file& rec,
                                      const std::string&, const objhash::RestoredObject* obj) {
  return DupWithNonblock(obj->fd, rec.flags, "a signalfd");
}

const FdKindOps kEventfdKind = {
    .name = "eventfd",
    .file_kind = image::kFileEventfd,
    .order = 11,
    .file_type = 0,
    .seekable = false,
    .by_path = false,
    .has_target = true,
    .target_kind = kObjEventfd,
    .claims = ClaimsEventfd,
    .describe = nullptr,
    .register_target = RegisterEventfd,
    .open = OpenEventfd,
    .check = nullptr,
};

const FdKindOps kSignalfdKind = {
    .name = "signalfd",
    .file_kind = image::kFileSignalfd,
    .order = 12,
    .file_type = 0,
    .seekable = false,
    .by_path = false,
    .has_target = true,
    .target_kind = kObjSignalfd,
    .claims = ClaimsSignalfd,
    .describe = nullptr,
    .register_target = RegisterSignalfd,
    .open = OpenSignalfd,
    .check = nullptr,
};

[[maybe_unused]] const bool kRegistered =
    RegisterFdKind(&kEventfdKind) && RegisterFdKind(&kSignalfdKind) &&
    objhash::RegisterHandler({kObjEventfd, "EVENTFD", image::CKPT_HDR_EVENTFD, CheckpointEventfd,
                              RestoreEventfd}) &&
    objhash::RegisterHandler({kObjSignalfd, "SIGNALFD", image::CKPT_HDR_SIGNALFD, CheckpointSignalfd,
                              RestoreSignalfd});

}  // namespace
}  // namespace ckpt::fs
