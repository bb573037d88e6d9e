// EPOLL objects: an epoll instance with every file it watches.
//
// The kernel keys a watch by file and fd number: /proc/PID/fdinfo of the
// epoll lists each as "tfd: N events: E data: D ... ino: I sdev: S", N the
// number it was added under (the fd may be closed since, a dup keeping
// the file), and kcmp(KCMP_EPOLL_TFD) tells which of the tree's open
// descriptions it is. The EPOLL record names each watched FILE by objref
// (made before the epoll, CheckpointContext::Ensure) with N, the events
// and the data.
//
// Restore: epoll_create1() in the restorer, and a late step (once every
// object is final: a pidfd's is made in the late pass too) that adds the
// watches with epoll_ctl under their own fd numbers. It does so in a
// helper that shares the restorer's memory but has a copy of its fd
// table (clone without CLONE_FILES), where it may put a file at any fd
// number without touching the restorer's own descriptors. A watch comes
// back armed as it was: readiness is what its target's state says then.
// An EPOLLONESHOT watch that had fired (its events keep only the flag
// bits) is added with the events its target is ready for and fired once
// at once in the helper, which disarms it exactly as the kernel had; one
// whose target is ready for nothing is added with the flag bits alone,
// which the kernel arms for EPOLLERR and EPOLLHUP. An edge-triggered watch
// whose target is ready is reported once after the restore, whether or
// not the program had been told before (epoll shows no such state).

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/fs/anonfd.h"
#include "lib/fs/fdkind.h"
#include "lib/image/format.h"
#include "lib/image/records.h"
#include "lib/objhash/identity.h"

namespace ckpt::fs {
namespace {

constexpr objhash::ObjKind kObjEpoll{19};

constexpr image::FieldSpec kEpollFields[] = {
    CKPT_FIELD(image::ckpt_epoll, objref, kUnsigned),
    CKPT_FIELD(image::ckpt_epoll, nr_items, kUnsigned),
};
CKPT_RECORD(image::CKPT_HDR_EPOLL, "EPOLL", image::ckpt_epoll, kEpollFields, 0, kNone);

constexpr image::FieldSpec kEpollItemFields[] = {
    CKPT_FIELD(image::ckpt_epoll_item, file_ref, kUnsigned),
    CKPT_FIELD(image::ckpt_epoll_item, tfd, kSigned),
    CKPT_FIELD(image::ckpt_epoll_item, events, kHex),
    CKPT_FIELD(image::ckpt_epoll_item, data, kHex),
};
CKPT_RECORD(image::CKPT_HDR_EPOLL_ITEM, "EPOLL_ITEM", image::ckpt_epoll_item, kEpollItemFields, 0,
            kNone);

constexpr int kKcmpEpollTfd = 7;  // KCMP_EPOLL_TFD
struct KcmpEpollSlot {
  uint32_t efd;
  uint32_t tfd;
  uint32_t toff;
};

// The bits epoll_ctl takes: poll events, EPOLLRDHUP, and the flags.
constexpr uint32_t kFlagBits = EPOLLEXCLUSIVE | EPOLLWAKEUP | EPOLLONESHOT | EPOLLET;
constexpr uint32_t kKnownEvents = 0xffffu | kFlagBits;
// The largest fd number the restore puts a watch under.
constexpr int32_t kMaxTfd = 1 << 30;

struct Watch {
  int32_t tfd = 0;
  uint32_t events = 0;
  uint64_t data = 0;
  uint64_t dev = 0;  // of the target's inode, as stat(2) shows it
  uint64_t ino = 0;
};

struct EpollData {
  pid_t pid = 0;  // a task that holds the epoll, and its fd
  int fd = -1;
  std::vector<Watch> watches;  // in fdinfo order
};

// ---------------------------------------------------------------- dump

bool ClaimsEpoll(const FdProbe& p) { return p.target == "anon_inode:[eventpoll]"; }

absl::StatusOr<uint32_t> RegisterEpoll(objhash::ObjHash& objects, const FdProbe& p, const Description&) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(absl::StrCat("/proc/", p.pid, "/fdinfo/", p.fd)));
  EpollData ep;
  ep.pid = p.pid;
  ep.fd = p.fd;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (!absl::StartsWith(line, "tfd:")) continue;
    std::string l(line);
    Watch w;
    unsigned events = 0, sdev = 0;
    unsigned long long data = 0, ino = 0;
    long long pos = 0;
    if (std::sscanf(l.c_str(), "tfd: %d events: %x data: %llx pos:%lli ino:%llx sdev:%x", &w.tfd,
                    &events, &data, &pos, &ino, &sdev) != 6 ||
        w.tfd < 0) {
      return absl::InternalError(absl::StrCat("task ", p.pid, " fd ", p.fd,
                                              ": unexpected epoll fdinfo line '", line, "'"));
    }
    w.events = events;
    w.data = data;
    w.ino = ino;
    w.dev = KernelDevToUser(sdev);
    ep.watches.push_back(w);
  }
  if (ep.watches.size() > image::kMaxEpollItems) {
    return absl::UnimplementedError(absl::StrCat("task ", p.pid, " fd ", p.fd, ": an epoll with ",
                                                 ep.watches.size(), " watches (at most ",
                                                 image::kMaxEpollItems, ")"));
  }
  ASSIGN_OR_RETURN(objhash::ObjHash::Found f,
                   objects.LookupAdd(kObjEpoll,
                                     objhash::Identity::OfFile(p.pid, p.fd, p.st.st_dev, p.st.st_ino), ep));
  return f.objref;
}

absl::Status CheckpointEpoll(objhash::CheckpointContext& ctx, const objhash::ObjHash::Entry& entry) {
  const EpollData& ep = std::any_cast<const EpollData&>(entry.data);
  // The tree's open descriptions by inode: the candidates for each watch.
  std::map<std::pair<uint64_t, uint64_t>, std::vector<const objhash::ObjHash::Entry*>> by_inode;
  for (const auto& e : ctx.objects->entries()) {
    if (e->kind == objhash::ObjKind::kFile && e->id.kcmp == objhash::kKcmpFile) {
      by_inode[{e->id.key_hi, e->id.key_lo}].push_back(e.get());
    }
  }
  std::vector<image::ckpt_epoll_item> items;
  std::map<int32_t, uint32_t> seen_tfd;  // how many watches of each fd number came before
  for (const Watch& w : ep.watches) {
    KcmpEpollSlot slot{static_cast<uint32_t>(ep.fd), static_cast<uint32_t>(w.tfd), seen_tfd[w.tfd]++};
    uint32_t file_ref = 0;
    auto same = [&](const objhash::ObjHash::Entry* e) -> absl::StatusOr<bool> {
      ASSIGN_OR_RETURN(int order, objhash::Kcmp(e->id.pid, ep.pid, static_cast<objhash::KcmpType>(kKcmpEpollTfd),
                                                e->id.idx, reinterpret_cast<unsigned long>(&slot)));
      return order == 0;
    };
    auto it = by_inode.find({w.dev, w.ino});
    if (it != by_inode.end()) {
      for (const objhash::ObjHash::Entry* e : it->second) {
        ASSIGN_OR_RETURN(bool match, same(e));
        if (match) {
          file_ref = e->objref;
          break;
        }
      }
    }
    if (file_ref == 0) {
      // fdinfo's device is the superblock's, which stat(2) may not show
      // (overlayfs, btrfs subvolumes): every other description then.
      for (const auto& [key, entries] : by_inode) {
        if (key == std::make_pair(w.dev, w.ino) || file_ref != 0) continue;
        for (const objhash::ObjHash::Entry* e : entries) {
          ASSIGN_OR_RETURN(bool match, same(e));
          if (match) {
            file_ref = e->objref;
            break;
          }
        }
      }
    }
    if (file_ref == 0) {
      return absl::UnimplementedError(absl::StrCat(
          "task ", ep.pid, " fd ", ep.fd, ": the epoll watches fd ", w.tfd, " (inode ", w.ino,
          "), a file that no task of the tree holds open (held elsewhere: not supported)"));
    }
    RETURN_IF_ERROR(ctx.Ensure(file_ref));
    items.push_back({file_ref, w.tfd, w.events, 0, w.data});
  }
  image::ckpt_epoll rec{entry.objref, static_cast<uint32_t>(items.size())};
  RETURN_IF_ERROR(ctx.writer->AppendStruct(image::CKPT_HDR_EPOLL, rec));
  for (const image::ckpt_epoll_item& item : items) {
    RETURN_IF_ERROR(ctx.writer->AppendStruct(image::CKPT_HDR_EPOLL_ITEM, item));
  }
  return absl::OkStatus();
}

// ------------------------------------------------------------- restore

// One epoll_ctl(EPOLL_CTL_ADD) the helper makes.
struct AddOp {
  int src;          // the target, in the restorer
  int32_t tfd;      // the number it goes under
  uint32_t events;  // as added
  uint64_t data;
  bool fire;        // a fired oneshot: fired once more at once
  int err;          // the helper's result: 0 or an errno
};

struct HelperArgs {
  int epfd;
  AddOp* ops;
  size_t nr_ops;
  int top;        // above every tfd and every fd the restorer has
  uint64_t nofile;  // the helper's own RLIMIT_NOFILE soft limit, enough for all that
  int fired;      // how many the firing epoll_wait reported
  int wait_err;
};

// In the helper: memory shared with the restorer, fd table its own. Only
// plain system calls (errno is the restorer's thread's, which waits).
int AddWatches(void* arg) {
  HelperArgs& a = *static_cast<HelperArgs*>(arg);
  // Its own limits (no CLONE_THREAD): the restorer's stay as they are.
  struct rlimit lim;
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < a.nofile) {
    lim.rlim_cur = a.nofile;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  int ep = fcntl(a.epfd, F_DUPFD, a.top);
  if (ep < 0) {
    for (size_t i = 0; i < a.nr_ops; ++i) a.ops[i].err = errno;
    _exit(1);
  }
  // Every source above every tfd first: putting one file at a tfd must not
  // drop another still to be added.
  for (size_t i = 0; i < a.nr_ops; ++i) {
    int moved = fcntl(a.ops[i].src, F_DUPFD, a.top);
    if (moved < 0) {
      a.ops[i].err = errno;
      _exit(1);
    }
    a.ops[i].src = moved;
  }
  auto add = [&](AddOp& op) -> bool {
    if (dup3(op.src, op.tfd, 0) < 0) {
      op.err = errno;
      return false;
    }
    struct epoll_event ev {};
    ev.events = op.events;
    ev.data.u64 = op.data;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, op.tfd, &ev) != 0) {
      op.err = errno;
      return false;
    }
    close(op.tfd);
    return true;
  };
  // The fired oneshots first, alone in the set, fired by one epoll_wait.
  int to_fire = 0;
  for (size_t i = 0; i < a.nr_ops; ++i) {
    if (!a.ops[i].fire) continue;
    if (!add(a.ops[i])) _exit(1);
    ++to_fire;
  }
  if (to_fire > 0) {
    struct epoll_event evs[64];
    for (int left = to_fire; left > 0;) {
      int n = epoll_wait(ep, evs, std::min(left, 64), 0);
      if (n < 0) {
        a.wait_err = errno;
        _exit(1);
      }
      if (n == 0) break;
      a.fired += n;
      left -= n;
    }
  }
  for (size_t i = 0; i < a.nr_ops; ++i) {
    if (a.ops[i].fire) continue;
    if (!add(a.ops[i])) _exit(1);
  }
  _exit(0);
}

struct EpollRestore {
  uint32_t objref;
  std::vector<image::ckpt_epoll_item> items;
};

absl::Status AddAll(const objhash::LateContext& late, const EpollRestore& ep) {
  if (ep.items.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(const objhash::RestoredObject* epoll, late.objects->Get(ep.objref, kObjEpoll));
  std::vector<AddOp> ops;
  int top = 0;
  for (const image::ckpt_epoll_item& item : ep.items) {
    ASSIGN_OR_RETURN(const objhash::RestoredObject* file, late.objects->Get(item.file_ref, objhash::ObjKind::kFile));
    AddOp op{file->fd, item.tfd, item.events, item.data, false, 0};
    if ((item.events & ~kFlagBits) == 0) {
      // A oneshot that had fired: fired once more now, if its target is
      // ready for anything.
      struct pollfd pfd = {file->fd, static_cast<short>(POLLIN | POLLPRI | POLLOUT | POLLRDHUP), 0};
      if (poll(&pfd, 1, 0) == 1 && (pfd.revents & ~POLLNVAL) != 0) {
        op.events |= static_cast<uint32_t>(pfd.revents) & 0xffffu;
        op.fire = true;
      }
    }
    ops.push_back(op);
    top = std::max(top, item.tfd + 1);
  }
  for (const AddOp& op : ops) top = std::max(top, op.src + 1);
  top = std::max(top, epoll->fd + 1);
  const uint64_t nofile = static_cast<uint64_t>(top) + ops.size() + 2;
  struct rlimit lim;
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return ErrnoError(errno, "getrlimit(RLIMIT_NOFILE)");
  if (lim.rlim_max != RLIM_INFINITY && nofile > lim.rlim_max) {
    int32_t highest = 0;
    for (const image::ckpt_epoll_item& item : ep.items) highest = std::max(highest, item.tfd);
    return absl::ResourceExhaustedError(absl::StrCat("EPOLL ", ep.objref, ": a watch under fd ", highest,
                                                     " needs ", nofile, " fds, beyond this restorer's hard limit ",
                                                     lim.rlim_max, " (RLIMIT_NOFILE)"));
  }
  HelperArgs args{epoll->fd, ops.data(), ops.size(), top, nofile, 0, 0};
  absl::StatusOr<int> ran = RunInHelper(AddWatches, &args);
  if (!ran.ok()) return Annotate(ran.status(), absl::StrCat("EPOLL ", ep.objref));
  const int status = *ran;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (ops[i].err != 0) {
      return ErrnoError(ops[i].err, "EPOLL ", ep.objref, ": adding FILE ", ep.items[i].file_ref,
                        " under fd ", ep.items[i].tfd, " (events 0x", absl::Hex(ep.items[i].events), ")");
    }
  }
  if (args.wait_err != 0) return ErrnoError(args.wait_err, "EPOLL ", ep.objref, ": epoll_wait");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat("EPOLL ", ep.objref, ": its helper ended with status ", status));
  }
  int to_fire = 0;
  for (const AddOp& op : ops) to_fire += op.fire;
  if (args.fired != to_fire) {
    return absl::InternalError(absl::StrCat("EPOLL ", ep.objref, ": ", to_fire,
                                            " fired oneshot watches to disarm, ", args.fired, " fired"));
  }
  return absl::OkStatus();
}

absl::StatusOr<objhash::RestoredObject> RestoreEpoll(objhash::RestoreContext& ctx, const image::Record&) {
  image::Reader& r = *ctx.reader;
  image::ckpt_epoll rec;
  RETURN_IF_ERROR(r.ReadStruct(&rec, sizeof(rec)));
  if (rec.nr_items > image::kMaxEpollItems) {
    return r.FieldError("nr_items", rec.nr_items, " is more than ", image::kMaxEpollItems);
  }
  EpollRestore ep{rec.objref, {}};
  std::set<std::pair<uint32_t, int32_t>> keys;
  for (uint32_t i = 0; i < rec.nr_items; ++i) {
    ASSIGN_OR_RETURN(image::ckpt_epoll_item item, r.Expect<image::ckpt_epoll_item>(image::CKPT_HDR_EPOLL_ITEM));
    if (item.tfd < 0 || item.tfd >= kMaxTfd) return r.FieldError("tfd", item.tfd, " is out of range");
    if (item.events & ~kKnownEvents) return r.FieldError("events", "0x", absl::Hex(item.events), " has unknown bits");
    if ((item.events & EPOLLEXCLUSIVE) && (item.events & EPOLLONESHOT)) {
      return r.FieldError("events", "EPOLLEXCLUSIVE with EPOLLONESHOT");
    }
    if (item.reserved != 0) return r.FieldError("reserved", item.reserved, " is not zero");
    ASSIGN_OR_RETURN(const objhash::RestoredObject* file, ctx.objects->Get(item.file_ref, objhash::ObjKind::kFile));
    (void)file;
    if (!keys.insert({item.file_ref, item.tfd}).second) {
      return r.FieldError("tfd", item.tfd, ": FILE ", item.file_ref, " is watched twice under it");
    }
    ep.items.push_back(item);
  }
  int fd = epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "epoll_create1");
  UniqueFd owned(fd);
  RETURN_IF_ERROR(ctx.Later([ep = std::move(ep)](objhash::LateContext& late) { return AddAll(late, ep); }));
  return objhash::HoldAt(ctx, rec.objref, fd, "an epoll");
}

absl::StatusOr<UniqueFd> OpenEpoll(objhash::RestoreContext&, const image::ckpt_file& rec,
                                   const std::string&, const objhash::RestoredObject* obj) {
  return DupWithNonblock(obj->fd, rec.flags, "an epoll");
}

const FdKindOps kEpollKind = {
    .name = "epoll",
    .file_kind = image::kFileEpoll,
    .order = 13,
    .file_type = 0,
    .seekable = false,
    .by_path = false,
    .has_target = true,
    .target_kind = kObjEpoll,
    .claims = ClaimsEpoll,
    .describe = nullptr,
    .register_target = RegisterEpoll,
    .open = OpenEpoll,
    .check = nullptr,
};

[[maybe_unused]] const bool kRegistered =
    RegisterFdKind(&kEpollKind) &&
    objhash::RegisterHandler({kObjEpoll, "EPOLL", image::CKPT_HDR_EPOLL, CheckpointEpoll, RestoreEpoll});

}  // namespace
}  // namespace ckpt::fs
