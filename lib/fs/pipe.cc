#include "lib/fs/pipe.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/image/format.h"

namespace ckpt::fs {
namespace {

struct PipeInfo {
  pid_t pid;
  int fd;
  std::string fifo_path;
};

// The bytes a pipe holds, without taking them out of it.
absl::StatusOr<std::string> PeekPipe(const PipeInfo& p, uint32_t* capacity) {
  // A read side of our own on the same pipe (opening the /proc link of
  // either end gives one), non-blocking so that a pipe without writers
  // does not wait.
  std::string link = absl::StrCat("/proc/", p.pid, "/fd/", p.fd);
  ASSIGN_OR_RETURN(UniqueFd in, OpenFile(link, O_RDONLY | O_NONBLOCK));
  int size = fcntl(in.get(), F_GETPIPE_SZ);
  if (size < 0) return ErrnoError(errno, "F_GETPIPE_SZ of ", link);
  *capacity = static_cast<uint32_t>(size);
  int queued = 0;
  if (ioctl(in.get(), FIONREAD, &queued) != 0) return ErrnoError(errno, "FIONREAD of ", link);
  if (queued == 0) return std::string();
  if (static_cast<uint64_t>(queued) > image::kMaxPipeData) {
    return absl::UnimplementedError(absl::StrCat("task ", p.pid, " fd ", p.fd, ": a pipe holding ",
                                                 queued, " bytes is more than libckpt saves"));
  }
  // tee() duplicates the pipe's buffers into a scratch pipe as large as
  // the original: the original keeps them.
  int scratch[2];
  if (pipe2(scratch, O_CLOEXEC | O_NONBLOCK) != 0) return ErrnoError(errno, "pipe");
  UniqueFd sr(scratch[0]), sw(scratch[1]);
  if (fcntl(sw.get(), F_SETPIPE_SZ, size) < size) {
    return ErrnoError(errno, "growing a scratch pipe to ", size, " bytes");
  }
  ssize_t n = tee(in.get(), sw.get(), static_cast<size_t>(queued), SPLICE_F_NONBLOCK);
  if (n < 0) return ErrnoError(errno, "tee from ", link);
  if (n != queued) {
    return absl::AbortedError(absl::StrCat("task ", p.pid, " fd ", p.fd, ": the pipe holds ",
                                           queued, " bytes but tee copied ", n));
  }
  std::string data(static_cast<size_t>(n), '\0');
  size_t got = 0;
  while (got < data.size()) {
    ssize_t r = read(sr.get(), data.data() + got, data.size() - got);
    if (r <= 0) return ErrnoError(r < 0 ? errno : EIO, "reading a scratch pipe");
    got += static_cast<size_t>(r);
  }
  return data;
}

}  // namespace

absl::StatusOr<uint32_t> RegisterPipe(objhash::ObjHash& objects, pid_t pid, int fd,
                                      const struct stat& st, const std::string& fifo_path) {
  ASSIGN_OR_RETURN(objhash::ObjHash::Found f,
                   objects.LookupAdd(objhash::ObjKind::kPipe,
                                     objhash::Identity::OfInode(st.st_dev, st.st_ino),
                                     PipeInfo{pid, fd, fifo_path}));
  return f.objref;
}

absl::Status CheckpointPipe(objhash::CheckpointContext& ctx,
                            const objhash::ObjHash::Entry& entry) {
  const auto& p = std::any_cast<const PipeInfo&>(entry.data);
  image::ckpt_pipe rec{};
  rec.objref = entry.objref;
  rec.flags = p.fifo_path.empty() ? 0u : static_cast<uint32_t>(image::kPipeFifo);
  ASSIGN_OR_RETURN(std::string data, PeekPipe(p, &rec.capacity));
  rec.data_size = static_cast<uint32_t>(data.size());
  rec.path_len = static_cast<uint32_t>(p.fifo_path.size());
  struct iovec parts[3] = {{&rec, sizeof(rec)},
                           {const_cast<char*>(p.fifo_path.data()), p.fifo_path.size()},
                           {data.data(), data.size()}};
  return ctx.writer->AppendV(image::CKPT_HDR_PIPE, parts, 3);
}

absl::StatusOr<objhash::RestoredObject> RestorePipe(objhash::RestoreContext& ctx,
                                                    const image::Record& rec) {
  (void)rec;
  image::Reader& r = *ctx.reader;
  image::ckpt_pipe p;
  RETURN_IF_ERROR(r.ReadStruct(&p, sizeof(p)));
  if (p.flags & ~static_cast<uint32_t>(image::kPipeFifo)) return r.FieldError("flags", p.flags);
  bool fifo = p.flags & image::kPipeFifo;
  if ((fifo && (p.path_len == 0 || p.path_len > image::kMaxPathLen)) || (!fifo && p.path_len)) {
    return r.FieldError("path_len", p.path_len, " does not fit the pipe's kind");
  }
  if (p.data_size > image::kMaxPipeData || p.data_size > p.capacity ||
      uint64_t{p.path_len} + p.data_size != r.payload_remaining()) {
    return r.FieldError("data_size", p.data_size, " does not fit the pipe (capacity ", p.capacity,
                        ", ", r.payload_remaining(), " bytes left)");
  }
  std::string path;
  if (fifo) {
    ASSIGN_OR_RETURN(path, r.ReadString(p.path_len, "path"));
  }
  std::string data(p.data_size, '\0');
  RETURN_IF_ERROR(r.ReadPayload(data.data(), data.size()));

  UniqueFd rd, wr;
  if (fifo) {
    // O_RDWR never waits for the other side of a FIFO.
    absl::StatusOr<UniqueFd> f = OpenFile(path, O_RDWR | O_NONBLOCK);
    if (!f.ok()) return Annotate(f.status(), "the FIFO of the image");
    struct stat st;
    if (fstat(f->get(), &st) != 0 || !S_ISFIFO(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat(path, " is not a FIFO any more"));
    }
    rd = std::move(*f);
  } else {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return ErrnoError(errno, "pipe");
    rd.reset(fds[0]);
    wr.reset(fds[1]);
  }
  int out = wr.valid() ? wr.get() : rd.get();
  if (p.capacity != 0 && fcntl(out, F_SETPIPE_SZ, p.capacity) < 0) {
    return ErrnoError(errno, "setting a pipe's capacity to ", p.capacity, " bytes");
  }
  // A FIFO nobody holds open keeps no data: it is empty here, unless a
  // process outside the tree holds it and wrote since; the image's bytes
  // come after those.
  size_t at = 0;
  while (at < data.size()) {
    ssize_t n = write(out, data.data() + at, data.size() - at);
    if (n < 0) return ErrnoError(errno, "refilling a pipe with ", data.size(), " bytes");
    at += static_cast<size_t>(n);
  }
  ASSIGN_OR_RETURN(objhash::RestoredObject obj, objhash::HoldAt(ctx, p.objref, rd.get(), "a pipe"));
  if (wr.valid()) {
    absl::StatusOr<int> high2 = objhash::MoveHigh(ctx, wr.get(), "a pipe");
    if (!high2.ok()) {
      close(obj.fd);
      return high2.status();
    }
    obj.fd2 = *high2;
  }
  return obj;
}

}  // namespace ckpt::fs
