#include "lib/fs/pipe.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/fs/fdkind.h"
#include "lib/fs/holders.h"
#include "lib/fs/ghost.h"
#include "lib/image/format.h"
#include "lib/image/records.h"

namespace ckpt::fs {
namespace {

// PIPE: the pipe's flags, capacity and queued bytes, then a FIFO's path
// and the data.
constexpr image::FieldSpec kPipeFields[] = {
    CKPT_FIELD(image::ckpt_pipe, objref, kUnsigned),   CKPT_FIELD(image::ckpt_pipe, flags, kHex),
    CKPT_FIELD(image::ckpt_pipe, capacity, kUnsigned), CKPT_FIELD(image::ckpt_pipe, data_size, kUnsigned),
    CKPT_FIELD(image::ckpt_pipe, path_len, kUnsigned), CKPT_FIELD(image::ckpt_pipe, mode, kOctal),
};
CKPT_RECORD(image::CKPT_HDR_PIPE, "PIPE", image::ckpt_pipe, kPipeFields,
            image::kMaxPathLen + image::kMaxPipeData, kPaths);

struct PipeInfo {
  pid_t pid;
  int fd;
  std::string fifo_path;
  uint64_t ino = 0;
  bool external = false;
  bool deleted = false;  // a FIFO unlinked while open (fifo_path is the path it had)
  uint32_t mode = 0;
};

std::string PipeName(uint64_t ino) { return absl::StrCat("pipe:[", ino, "]"); }

// "pipe:[123]" -> 123.
bool ParsePipeName(absl::string_view name, uint64_t* ino) {
  return absl::ConsumePrefix(&name, "pipe:[") && absl::ConsumeSuffix(&name, "]") &&
         !name.empty() && absl::SimpleAtoi(name, ino);
}

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
  PipeInfo info{pid, fd, fifo_path, st.st_ino};
  if (absl::EndsWith(info.fifo_path, " (deleted)")) {
    info.fifo_path.resize(info.fifo_path.size() - 10);
    info.deleted = true;
    info.mode = st.st_mode & 07777;
  }
  ASSIGN_OR_RETURN(objhash::ObjHash::Found f,
                   objects.LookupAdd(kObjPipe,
                                     objhash::Identity::OfInode(st.st_dev, st.st_ino),
                                     std::move(info)));
  return f.objref;
}

absl::StatusOr<std::vector<std::string>> ExternalPipeProblems(
    const std::map<uint64_t, PipeEnd>& pipes, const std::set<pid_t>& tree,
    const std::vector<std::string>& external, std::set<uint64_t>* external_inos) {
  std::set<uint64_t> named;
  for (const std::string& name : external) {
    uint64_t ino;
    if (!ParsePipeName(name, &ino)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "external object '", name, "' is not a pipe name such as pipe:[12345]"));
    }
    if (!pipes.count(ino)) {
      return absl::InvalidArgumentError(
          absl::StrCat("external object ", name, " is not a pipe of the tree"));
    }
    named.insert(ino);
  }
  std::vector<std::string> problems;
  if (pipes.empty()) return problems;
  std::set<uint64_t> inos;
  for (const auto& [ino, end] : pipes) inos.insert(ino);
  for (const auto& [ino, list] : FdHolders("pipe", inos, tree)) {
    if (named.count(ino)) {
      external_inos->insert(ino);
      continue;
    }
    std::vector<std::string> who;
    for (const auto& h : list) {
      if (who.size() == 3) {
        who.push_back("...");
        break;
      }
      who.push_back(absl::StrCat("process ", h.first, " (", ProcComm(h.first), ") fd ", h.second));
    }
    const PipeEnd& end = pipes.at(ino);
    problems.push_back(absl::StrCat(
        "task ", end.pid, " fd ", end.fd, ": ", PipeName(ino), " is also open in ",
        absl::StrJoin(who, ", "), ", outside the tree; dump it with --external ", PipeName(ino),
        " and restore with --inherit-fd FD:", PipeName(ino)));
  }
  // A pipe named external that only the tree holds is saved as usual.
  return problems;
}

absl::Status ResolveExternalPipes(objhash::ObjHash& objects, const std::set<pid_t>& tree,
                                  const std::vector<std::string>& external,
                                  const std::set<uint64_t>& checked,
                                  const std::set<uint64_t>& known_external) {
  // A FIFO is found again by its path at restore, by whoever holds it
  // then: only anonymous pipes can be cut off from the outside.
  std::map<uint64_t, PipeInfo*> infos;
  std::map<uint64_t, PipeEnd> pipes;
  for (const auto& e : objects.entries()) {
    if (e->kind != kObjPipe) continue;
    auto* p = std::any_cast<PipeInfo>(&e->data);
    if (p == nullptr || !p->fifo_path.empty()) continue;
    infos[p->ino] = p;
    if (known_external.count(p->ino)) p->external = true;
    if (!checked.count(p->ino)) pipes[p->ino] = {p->pid, p->fd};
  }
  // The names must still be pipes of the tree: check them against all.
  std::vector<std::string> names;
  for (const std::string& name : external) {
    uint64_t ino;
    if (!ParsePipeName(name, &ino) || !infos.count(ino)) {
      return absl::InvalidArgumentError(
          absl::StrCat("external object ", name, " is not a pipe of the tree"));
    }
    if (pipes.count(ino)) names.push_back(name);
  }
  std::set<uint64_t> external_inos;
  ASSIGN_OR_RETURN(std::vector<std::string> problems,
                   ExternalPipeProblems(pipes, tree, names, &external_inos));
  for (uint64_t ino : external_inos) infos[ino]->external = true;
  if (problems.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrJoin(problems, "; "));
}

absl::Status CheckpointPipe(objhash::CheckpointContext& ctx,
                            const objhash::ObjHash::Entry& entry) {
  const auto& p = std::any_cast<const PipeInfo&>(entry.data);
  image::ckpt_pipe rec{};
  rec.objref = entry.objref;
  std::string path = p.fifo_path;
  std::string data;
  if (p.external) {
    // Its bytes stay in the pipe, with the process outside.
    rec.flags = image::kPipeExternal;
    path = PipeName(p.ino);
  } else {
    rec.flags = p.fifo_path.empty() ? 0u : static_cast<uint32_t>(image::kPipeFifo);
    if (p.deleted) {
      rec.flags |= image::kPipeDeleted;
      rec.mode = p.mode;
    }
    ASSIGN_OR_RETURN(data, PeekPipe(p, &rec.capacity));
  }
  rec.data_size = static_cast<uint32_t>(data.size());
  rec.path_len = static_cast<uint32_t>(path.size());
  struct iovec parts[3] = {{&rec, sizeof(rec)},
                           {path.data(), path.size()},
                           {data.data(), data.size()}};
  return ctx.writer->AppendV(image::CKPT_HDR_PIPE, parts, 3);
}

namespace {

// An external pipe: the caller's fd given for it, by name.
absl::StatusOr<objhash::RestoredObject> RestoreExternalPipe(objhash::RestoreContext& ctx,
                                                            const image::ckpt_pipe& p) {
  image::Reader& r = *ctx.reader;
  if (p.path_len == 0 || p.path_len > 64 || p.data_size != 0 ||
      uint64_t{p.path_len} != r.payload_remaining()) {
    return r.FieldError("path_len", p.path_len, " does not fit an external pipe");
  }
  ASSIGN_OR_RETURN(std::string name, r.ReadString(p.path_len, "path"));
  uint64_t ino;
  if (!ParsePipeName(name, &ino)) return r.FieldError("path", "'", name, "' is not a pipe's name");
  const bool given = ctx.inherited != nullptr && ctx.inherited->count(name) != 0;
  if (!given) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the image's ", name, " was shared with a process outside the tree when it was dumped: "
        "give the restore an fd in its place (--inherit-fd FD:", name, ")"));
  }
  if (ctx.inherited_used != nullptr) ctx.inherited_used->insert(name);
  const int fd = ctx.inherited->at(name);
  ASSIGN_OR_RETURN(objhash::RestoredObject obj,
                   objhash::HoldAt(ctx, p.objref, fd, absl::StrCat("--inherit-fd ", fd, ":", name)));
  obj.data = RestoredPipe{true};
  return obj;
}

}  // namespace

namespace {

// A FIFO unlinked while open: made again (O_RDWR never waits for the
// other side of a FIFO).
absl::StatusOr<UniqueFd> RecreateDeletedFifo(const std::string& path, uint32_t mode) {
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat("PIPE: the deleted FIFO's path '", path,
                                                   "' is not absolute"));
  }
  return RecreateUnnamed(path, "the deleted FIFO",
                         [](const char* name) { return mkfifo(name, 0600); },
                         O_RDWR | O_NONBLOCK, S_IFIFO, mode);
}

}  // namespace

absl::StatusOr<objhash::RestoredObject> RestorePipe(objhash::RestoreContext& ctx,
                                                    const image::Record& rec) {
  (void)rec;
  image::Reader& r = *ctx.reader;
  image::ckpt_pipe p;
  RETURN_IF_ERROR(r.ReadStruct(&p, sizeof(p)));
  if (p.flags & ~static_cast<uint32_t>(image::kPipeFifo | image::kPipeExternal | image::kPipeDeleted) ||
      (p.flags & (image::kPipeFifo | image::kPipeExternal)) ==
          (image::kPipeFifo | image::kPipeExternal) ||
      ((p.flags & image::kPipeDeleted) && !(p.flags & image::kPipeFifo))) {
    return r.FieldError("flags", p.flags);
  }
  if ((p.mode & ~07777u) || (p.mode != 0 && !(p.flags & image::kPipeDeleted))) {
    return r.FieldError("mode", absl::StrFormat("0%o", p.mode), " does not fit the pipe");
  }
  if (p.flags & image::kPipeExternal) return RestoreExternalPipe(ctx, p);
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
  if (p.flags & image::kPipeDeleted) {
    ASSIGN_OR_RETURN(rd, RecreateDeletedFifo(path, p.mode));
  } else if (fifo) {
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

// ------------------------------------------------- pipe and FIFO fd kind

namespace {

bool ClaimsPipe(const FdProbe& p) { return S_ISFIFO(p.st.st_mode); }

bool IsFifoPath(const std::string& target) { return !target.empty() && target[0] == '/'; }

absl::Status DescribePipe(const FdProbe&, Description*) { return absl::OkStatus(); }

absl::StatusOr<uint32_t> RegisterPipeTarget(objhash::ObjHash& objects, const FdProbe& p,
                                            const Description&) {
  return RegisterPipe(objects, p.pid, p.fd, p.st, IsFifoPath(p.target) ? p.target : std::string());
}

bool IsInherited(const objhash::RestoredObject* pipe) {
  const auto* restored = std::any_cast<RestoredPipe>(&pipe->data);
  return restored != nullptr && restored->external;
}

absl::StatusOr<UniqueFd> OpenPipe(objhash::RestoreContext&, const image::ckpt_file& rec,
                                  const std::string& path, const objhash::RestoredObject* pipe) {
  if (IsInherited(pipe)) {
    // The caller's fd itself, at every number that held an end of it.
    int fd = fcntl(pipe->fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return ErrnoError(errno, "dup of the fd given for ", path);
    return UniqueFd(fd);
  }
  return Reopen(pipe->fd, static_cast<int>(rec.flags), path);
}

absl::Status CheckPipe(objhash::RestoreContext& ctx, const image::ckpt_file& rec,
                       const std::string& path, int, const struct stat& st) {
  // The caller's fd given for an external pipe may be any kind of file.
  ASSIGN_OR_RETURN(const objhash::RestoredObject* pipe, ctx.objects->Get(rec.target_ref, kObjPipe));
  if (IsInherited(pipe)) return absl::OkStatus();
  return CheckFileType(rec, path, st);
}

const FdKindOps kPipeKind = {
    .name = "pipe",
    .file_kind = image::kFilePipe,
    .order = 20,
    .file_type = S_IFIFO,
    .seekable = false,
    .by_path = false,
    .has_target = true,
    .target_kind = kObjPipe,
    .claims = ClaimsPipe,
    .describe = DescribePipe,
    .register_target = RegisterPipeTarget,
    .open = OpenPipe,
    .check = CheckPipe,
};

[[maybe_unused]] const bool kRegistered =
    RegisterFdKind(&kPipeKind) &&
    objhash::RegisterHandler({kObjPipe, "PIPE", image::CKPT_HDR_PIPE, CheckpointPipe, RestorePipe});

}  // namespace
}  // namespace ckpt::fs
