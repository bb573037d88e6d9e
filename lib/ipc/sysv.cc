#include "lib/ipc/sysv.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <map>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "lib/base/status.h"
#include "lib/image/records.h"
#include "lib/objhash/handlers.h"
#include "lib/mm/maps.h"
#include "lib/mm/pagescan.h"
#include "lib/mm/shmem.h"

#ifndef MSG_COPY
#define MSG_COPY 040000
#endif
#ifndef SHM_DEST
#define SHM_DEST 01000
#endif
#ifndef SHM_LOCKED
#define SHM_LOCKED 02000
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace ckpt::ipc {

struct IpcDump::Segment {
  image::ckpt_shm rec{};
  uint8_t* addr = nullptr;  // attached read-only in this process
  uint64_t mapped = 0;
  UniqueFd fd;  // the segment's shmem file, when /proc/self/map_files opens it
  std::vector<image::ckpt_page_run> runs;
};

struct IpcDump::Queue {
  image::ckpt_msq rec{};
  std::vector<std::pair<int64_t, std::string>> msgs;  // oldest first
};

struct IpcDump::SemSet {
  image::ckpt_sem rec{};
  std::vector<uint16_t> values;
};

namespace {

constexpr image::FieldSpec kIpcFields[] = {
    CKPT_FIELD(image::ckpt_ipc, flags, kHex), CKPT_FIELD(image::ckpt_ipc, nr_shm, kUnsigned),
    CKPT_FIELD(image::ckpt_ipc, nr_msq, kUnsigned), CKPT_FIELD(image::ckpt_ipc, nr_sem, kUnsigned),
    CKPT_FIELD(image::ckpt_ipc, shmmax, kUnsigned), CKPT_FIELD(image::ckpt_ipc, shmall, kUnsigned),
    CKPT_FIELD(image::ckpt_ipc, shmmni, kUnsigned), CKPT_FIELD(image::ckpt_ipc, shm_rmid_forced, kUnsigned),
    CKPT_FIELD(image::ckpt_ipc, msgmax, kUnsigned), CKPT_FIELD(image::ckpt_ipc, msgmnb, kUnsigned),
    CKPT_FIELD(image::ckpt_ipc, msgmni, kUnsigned), CKPT_FIELD(image::ckpt_ipc, sem, kUnsigned),
    CKPT_FIELD(image::ckpt_ipc, objref, kUnsigned), CKPT_FIELD(image::ckpt_ipc, nr_namespaces, kUnsigned),
    CKPT_FIELD(image::ckpt_ipc, reserved, kHex),
};
#define PERM_FIELD(S, f, k)                                                                   \
  image::FieldSpec {                                                                          \
    #f, static_cast<uint32_t>(offsetof(S, perm) + offsetof(image::ckpt_ipc_perm, f)), 4, 1,   \
        image::FieldKind::k                                                                   \
  }
#define PERM(S)                                                                    \
  PERM_FIELD(S, id, kSigned), PERM_FIELD(S, key, kHex), PERM_FIELD(S, uid, kUnsigned), \
      PERM_FIELD(S, gid, kUnsigned), PERM_FIELD(S, mode, kOctal)
constexpr image::FieldSpec kShmFields[] = {
    CKPT_FIELD(image::ckpt_shm, objref, kUnsigned), CKPT_FIELD(image::ckpt_shm, flags, kHex), PERM(image::ckpt_shm),
    CKPT_FIELD(image::ckpt_shm, size, kUnsigned),   CKPT_FIELD(image::ckpt_shm, cpid, kSigned), CKPT_FIELD(image::ckpt_shm, lpid, kSigned),
    CKPT_FIELD(image::ckpt_shm, nr_pages, kUnsigned),
};
constexpr image::FieldSpec kMsqFields[] = {
    PERM(image::ckpt_msq), CKPT_FIELD(image::ckpt_msq, qbytes, kUnsigned), CKPT_FIELD(image::ckpt_msq, nr_msgs, kUnsigned),
};
constexpr image::FieldSpec kMsgFields[] = {
    CKPT_FIELD(image::ckpt_msg, mtype, kSigned),
    CKPT_FIELD(image::ckpt_msg, size, kUnsigned),
};
constexpr image::FieldSpec kSemFields[] = {
    PERM(image::ckpt_sem),
    CKPT_FIELD(image::ckpt_sem, nsems, kUnsigned),
};
#undef PERM
#undef PERM_FIELD
CKPT_RECORD(image::CKPT_HDR_IPC, "IPC", image::ckpt_ipc, kIpcFields, 0, kNone);
CKPT_RECORD(image::CKPT_HDR_SHM, "SHM", image::ckpt_shm, kShmFields, 0, kNone);
CKPT_RECORD(image::CKPT_HDR_MSQ, "MSQ", image::ckpt_msq, kMsqFields, 0, kNone);
CKPT_RECORD(image::CKPT_HDR_MSG, "MSG", image::ckpt_msg, kMsgFields, image::kMaxMsgSize, kRawBytes);
CKPT_RECORD(image::CKPT_HDR_SEM, "SEM", image::ckpt_sem, kSemFields, 2ull * image::kMaxSems, kU16Array);


constexpr uint64_t kPage = 4096;
// IPCMNI: no namespace holds more objects of one kind.
constexpr uint32_t kMaxObjects = 32768;
// SHMMAX-like bound on what an image may ask for.
constexpr uint64_t kMaxSegmentSize = 1ull << 44;

union SemArg {
  int val;
  struct semid_ds* buf;
  unsigned short* array;
};

std::string SysctlPath(absl::string_view name) { return absl::StrCat("/proc/sys/kernel/", name); }

absl::StatusOr<std::vector<uint64_t>> ReadSysctl(absl::string_view name) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(SysctlPath(name)));
  std::vector<uint64_t> values;
  for (absl::string_view word : absl::StrSplit(text, absl::ByAnyChar(" \t\n"), absl::SkipEmpty())) {
    uint64_t v = 0;
    if (!absl::SimpleAtoi(word, &v)) {
      return absl::InternalError(absl::StrCat(SysctlPath(name), ": unexpected '", text, "'"));
    }
    values.push_back(v);
  }
  if (values.empty()) return absl::InternalError(absl::StrCat(SysctlPath(name), " is empty"));
  return values;
}

absl::Status WriteSysctl(absl::string_view name, const std::string& value) {
  ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(SysctlPath(name), O_WRONLY));
  if (write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
    return ErrnoError(errno, "writing '", value, "' to ", SysctlPath(name));
  }
  return absl::OkStatus();
}

// /proc/sysvipc/{shm,msg,sem}: a header line naming the columns, then one
// line per object.
struct Table {
  std::map<std::string, size_t> column;
  std::vector<std::vector<std::string>> rows;

  absl::StatusOr<int64_t> Get(size_t row, const std::string& name) const {
    auto it = column.find(name);
    if (it == column.end() || it->second >= rows[row].size()) {
      return absl::InternalError(absl::StrCat("/proc/sysvipc: no column '", name, "'"));
    }
    int64_t v = 0;
    if (!absl::SimpleAtoi(rows[row][it->second], &v)) {
      return absl::InternalError(
          absl::StrCat("/proc/sysvipc: bad ", name, " '", rows[row][it->second], "'"));
    }
    return v;
  }
};

absl::StatusOr<Table> ReadTable(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  Table t;
  bool first = true;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<std::string> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (first) {
      for (size_t i = 0; i < words.size(); ++i) t.column[words[i]] = i;
      first = false;
    } else {
      t.rows.push_back(std::move(words));
    }
  }
  return t;
}

absl::StatusOr<struct stat> StatNs(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return ErrnoError(errno, "stat ", path);
  return st;
}

image::ckpt_ipc_perm PermOf(int id, const struct ipc_perm& p) {
  image::ckpt_ipc_perm perm{};
  perm.id = id;
  perm.key = p.__key;
  perm.uid = p.uid;
  perm.gid = p.gid;
  perm.cuid = p.cuid;
  perm.cgid = p.cgid;
  perm.mode = p.mode & 0777;
  return perm;
}

absl::Status Vanished(const char* what, int id) {
  return absl::UnavailableError(absl::StrCat(
      "SysV ", what, " ", id, " went away during the dump (the IPC namespace changed); retry"));
}

// Runs `fn` on a thread of its own that enters the IPC namespace `ns_fd`
// and then ends: the caller's threads never change namespace (one could
// not always come back: a process in a user namespace that does not own
// its IPC namespace may leave it but not return). `what` names it.
absl::Status InIpcNamespace(int ns_fd, const std::function<absl::Status()>& fn,
                            absl::string_view what) {
  absl::Status st;
  std::thread worker([&] {
    if (setns(ns_fd, CLONE_NEWIPC) != 0) {
      st = ErrnoError(errno, "entering ", what);
      return;
    }
    st = fn();
  });
  worker.join();
  return st;
}

// Runs `fn` in the IPC namespace of task `pid`, as above.
absl::Status InNamespaceOf(pid_t pid, const std::function<absl::Status()>& fn) {
  ASSIGN_OR_RETURN(UniqueFd ns, OpenFile(absl::StrCat("/proc/", pid, "/ns/ipc"), O_RDONLY));
  return InIpcNamespace(ns.get(), fn, absl::StrCat("the IPC namespace of task ", pid));
}

absl::Status CheckPerm(image::Reader& r, const image::ckpt_ipc_perm& p) {
  if (p.id < 0) return r.FieldError("perm.id", p.id, " is negative");
  if (p.mode & ~0777u) return r.FieldError("perm.mode", absl::StrFormat("0%o", p.mode), " has bits beyond 0777");
  return absl::OkStatus();
}

}  // namespace

// ---------------------------------------------------------------- dump

absl::StatusOr<bool> SameIpcNamespace(pid_t pid) {
  ASSIGN_OR_RETURN(struct stat mine, StatNs("/proc/thread-self/ns/ipc"));
  ASSIGN_OR_RETURN(struct stat theirs, StatNs(absl::StrCat("/proc/", pid, "/ns/ipc")));
  return mine.st_dev == theirs.st_dev && mine.st_ino == theirs.st_ino;
}

IpcDump::~IpcDump() {
  for (auto& s : segments_) {
    if (s->addr != nullptr) shmdt(s->addr);
  }
}

uint64_t IpcDump::pages() const {
  uint64_t n = 0;
  for (const auto& s : segments_) n += s->rec.nr_pages;
  return n;
}

absl::StatusOr<std::unique_ptr<IpcDump>> IpcDump::Collect(const std::vector<pid_t>& tasks,
                                                          uint64_t ns_ino, bool mine,
                                                          objhash::ObjHash& objects) {
  std::unique_ptr<IpcDump> dump(new IpcDump);
  dump->ns_ino_ = ns_ino;
  if (mine) {
    // The dumper's namespace: only the segments the tree attaches.
    std::vector<int> wanted;
    for (pid_t pid : tasks) {
      ASSIGN_OR_RETURN(std::string text, ReadFile(absl::StrCat("/proc/", pid, "/maps")));
      ASSIGN_OR_RETURN(std::vector<mm::Vma> vmas, mm::ParseMaps(text));
      for (const mm::Vma& v : vmas) {
        if (absl::StartsWith(v.name, "/SYSV")) wanted.push_back(static_cast<int>(v.ino));
      }
    }
    std::sort(wanted.begin(), wanted.end());
    wanted.erase(std::unique(wanted.begin(), wanted.end()), wanted.end());
    RETURN_IF_ERROR(dump->CollectHere(&wanted, objects));
  } else {
    dump->header_.flags |= image::kIpcOwnNamespace;
    IpcDump* d = dump.get();
    RETURN_IF_ERROR(InNamespaceOf(tasks.front(), [&] { return d->CollectHere(nullptr, objects); }));
  }
  return dump;
}

absl::StatusOr<std::map<pid_t, uint32_t>> CollectIpcNamespaces(const std::vector<pid_t>& tasks,
                                                               objhash::ObjHash& objects,
                                                               uint64_t* pages) {
  ASSIGN_OR_RETURN(struct stat mine, StatNs("/proc/thread-self/ns/ipc"));
  // The tasks of each namespace, in the order met.
  std::vector<std::pair<struct stat, std::vector<pid_t>>> spaces;
  std::map<pid_t, size_t> space_of;
  for (pid_t pid : tasks) {
    ASSIGN_OR_RETURN(struct stat ns, StatNs(absl::StrCat("/proc/", pid, "/ns/ipc")));
    size_t i = 0;
    while (i < spaces.size() &&
           !(spaces[i].first.st_dev == ns.st_dev && spaces[i].first.st_ino == ns.st_ino)) {
      ++i;
    }
    if (i == spaces.size()) spaces.push_back({ns, {}});
    spaces[i].second.push_back(pid);
    space_of[pid] = i;
  }
  std::vector<uint32_t> refs;
  for (const auto& [ns, members] : spaces) {
    const bool is_mine = ns.st_dev == mine.st_dev && ns.st_ino == mine.st_ino;
    ASSIGN_OR_RETURN(std::unique_ptr<IpcDump> dump,
                     IpcDump::Collect(members, ns.st_ino, is_mine, objects));
    *pages += dump->pages();
    dump->nr_namespaces = static_cast<uint32_t>(spaces.size());
    ASSIGN_OR_RETURN(objhash::ObjHash::Found f,
                     objects.LookupAdd(kObjIpcNs, objhash::Identity::OfInode(ns.st_dev, ns.st_ino),
                                       std::shared_ptr<IpcDump>(std::move(dump))));
    refs.push_back(f.objref);
  }
  std::map<pid_t, uint32_t> out;
  for (const auto& [pid, i] : space_of) out[pid] = refs[i];
  return out;
}

absl::Status IpcDump::CollectHere(const std::vector<int>* wanted_shm, objhash::ObjHash& objects) {
  ASSIGN_OR_RETURN(std::vector<uint64_t> msgmax, ReadSysctl("msgmax"));
  if (wanted_shm == nullptr) {
    // A namespace of the tree's own: its limits too.
    ASSIGN_OR_RETURN(std::vector<uint64_t> v, ReadSysctl("shmmax"));
    header_.shmmax = v[0];
    ASSIGN_OR_RETURN(v, ReadSysctl("shmall"));
    header_.shmall = v[0];
    ASSIGN_OR_RETURN(v, ReadSysctl("shmmni"));
    header_.shmmni = static_cast<uint32_t>(v[0]);
    ASSIGN_OR_RETURN(v, ReadSysctl("shm_rmid_forced"));
    header_.shm_rmid_forced = static_cast<uint32_t>(v[0]);
    header_.msgmax = static_cast<uint32_t>(msgmax[0]);
    ASSIGN_OR_RETURN(v, ReadSysctl("msgmnb"));
    header_.msgmnb = static_cast<uint32_t>(v[0]);
    ASSIGN_OR_RETURN(v, ReadSysctl("msgmni"));
    header_.msgmni = static_cast<uint32_t>(v[0]);
    ASSIGN_OR_RETURN(v, ReadSysctl("sem"));
    if (v.size() != 4) return absl::InternalError("kernel.sem does not hold four numbers");
    for (int i = 0; i < 4; ++i) header_.sem[i] = static_cast<uint32_t>(v[i]);
  }

  ASSIGN_OR_RETURN(Table shm, ReadTable("/proc/sysvipc/shm"));
  std::vector<int> found;
  for (size_t i = 0; i < shm.rows.size(); ++i) {
    ASSIGN_OR_RETURN(int64_t id, shm.Get(i, "shmid"));
    if (wanted_shm != nullptr &&
        !std::binary_search(wanted_shm->begin(), wanted_shm->end(), static_cast<int>(id))) {
      continue;
    }
    ASSIGN_OR_RETURN(int64_t swap, shm.Get(i, "swap"));
    RETURN_IF_ERROR(CollectSegment(static_cast<int>(id), swap > 0, objects));
    found.push_back(static_cast<int>(id));
  }
  if (wanted_shm != nullptr && found.size() != wanted_shm->size()) {
    return absl::UnavailableError(
        "a SysV segment the tree attaches is missing from /proc/sysvipc/shm: the IPC namespace "
        "changed during the dump; retry");
  }
  if (!segments_.empty()) {
    // Hugetlb segments cannot be read or refilled page by page: refuse.
    ASSIGN_OR_RETURN(std::vector<mm::Vma> mine, mm::ReadVmas(getpid()));
    for (const auto& s : segments_) {
      for (const mm::Vma& v : mine) {
        if (v.start == reinterpret_cast<uint64_t>(s->addr) && (v.vm_flags & mm::kVmHugetlb)) {
          return absl::UnimplementedError(absl::StrCat(
              "SysV segment ", s->rec.perm.id, " uses huge pages (SHM_HUGETLB): not supported"));
        }
      }
    }
  }
  if (wanted_shm != nullptr) return absl::OkStatus();

  ASSIGN_OR_RETURN(Table msg, ReadTable("/proc/sysvipc/msg"));
  for (size_t i = 0; i < msg.rows.size(); ++i) {
    ASSIGN_OR_RETURN(int64_t id, msg.Get(i, "msqid"));
    RETURN_IF_ERROR(CollectQueue(static_cast<int>(id), msgmax[0]));
  }
  ASSIGN_OR_RETURN(Table sem, ReadTable("/proc/sysvipc/sem"));
  for (size_t i = 0; i < sem.rows.size(); ++i) {
    ASSIGN_OR_RETURN(int64_t id, sem.Get(i, "semid"));
    RETURN_IF_ERROR(CollectSemSet(static_cast<int>(id)));
  }
  return absl::OkStatus();
}

absl::Status IpcDump::CollectSegment(int id, bool swapped, objhash::ObjHash& objects) {
  struct shmid_ds ds;
  if (shmctl(id, IPC_STAT, &ds) != 0) {
    if (errno == EINVAL || errno == EIDRM) return Vanished("segment", id);
    return ErrnoError(errno, "IPC_STAT of SysV segment ", id);
  }
  auto seg = std::make_unique<Segment>();
  image::ckpt_shm& rec = seg->rec;
  rec.perm = PermOf(id, ds.shm_perm);
  if (ds.shm_perm.mode & SHM_DEST) rec.flags |= image::kShmRemoved;
  if (ds.shm_perm.mode & SHM_LOCKED) rec.flags |= image::kShmLocked;
  rec.size = ds.shm_segsz;
  rec.cpid = ds.shm_cpid;
  rec.lpid = ds.shm_lpid;
  rec.atime = static_cast<uint64_t>(ds.shm_atime);
  rec.dtime = static_cast<uint64_t>(ds.shm_dtime);
  rec.ctime = static_cast<uint64_t>(ds.shm_ctime);

  void* addr = shmat(id, nullptr, SHM_RDONLY);
  if (addr == reinterpret_cast<void*>(-1)) {
    if (errno == EINVAL || errno == EIDRM) return Vanished("segment", id);
    return ErrnoError(errno, "attaching SysV segment ", id, " to read it");
  }
  seg->addr = static_cast<uint8_t*>(addr);
  seg->mapped = (rec.size + kPage - 1) & ~(kPage - 1);
  Segment& s = *seg;
  segments_.push_back(std::move(seg));

  // The pages worth saving: the segment's shmem file knows its holes
  // (swapped-out pages included); without it, the pages resident now.
  const uint64_t start = reinterpret_cast<uint64_t>(s.addr);
  absl::StatusOr<UniqueFd> fd =
      OpenFile(absl::StrFormat("/proc/self/map_files/%x-%x", start, start + s.mapped), O_RDONLY);
  uint64_t pages = 0;
  if (fd.ok()) {
    s.fd = *std::move(fd);
    ASSIGN_OR_RETURN(s.runs, mm::DataRuns(s.fd.get(), rec.size, &pages));
  } else if (swapped) {
    // Resident-page queries miss swapped-out pages: take them all.
    mm::AppendRun(&s.runs, 0, s.mapped / kPage);
    pages = s.mapped / kPage;
  } else {
    std::vector<unsigned char> resident(s.mapped / kPage);
    if (mincore(s.addr, s.mapped, resident.data()) != 0) {
      return ErrnoError(errno, "mincore of SysV segment ", id);
    }
    for (uint64_t i = 0; i < resident.size(); ++i) {
      if (resident[i] & 1) {
        mm::AppendRun(&s.runs, i * kPage, 1);
        ++pages;
      }
    }
  }
  rec.nr_pages = pages;
  ASSIGN_OR_RETURN(objhash::ObjHash::Found f,
                   objects.LookupAdd(objhash::ObjKind::kShm, objhash::Identity::OfIpcId(ns_ino_, id)));
  rec.objref = f.objref;
  return absl::OkStatus();
}

absl::Status IpcDump::CollectQueue(int id, uint64_t msgmax) {
  struct msqid_ds ds;
  if (msgctl(id, IPC_STAT, &ds) != 0) {
    if (errno == EINVAL || errno == EIDRM) return Vanished("message queue", id);
    return ErrnoError(errno, "IPC_STAT of SysV message queue ", id);
  }
  auto q = std::make_unique<Queue>();
  q->rec.perm = PermOf(id, ds.msg_perm);
  q->rec.qbytes = ds.msg_qbytes;
  q->rec.nr_msgs = static_cast<uint32_t>(ds.msg_qnum);
  if (ds.msg_qnum > image::kMaxMsgs) {
    return absl::UnimplementedError(absl::StrCat("SysV message queue ", id, " holds ",
                                                 ds.msg_qnum, " messages: too many"));
  }
  // MSG_COPY reads the n-th message and leaves it queued.
  const uint64_t cap = std::min<uint64_t>(msgmax, image::kMaxMsgSize);
  std::vector<char> buf(sizeof(long) + cap);
  for (uint64_t i = 0; i < ds.msg_qnum; ++i) {
    ssize_t n = msgrcv(id, buf.data(), cap, static_cast<long>(i), IPC_NOWAIT | MSG_COPY);
    if (n < 0) {
      if (errno == ENOSYS) {
        return absl::UnimplementedError(absl::StrCat(
            "SysV message queue ", id, " holds messages and this kernel cannot copy them "
            "(MSG_COPY needs CONFIG_CHECKPOINT_RESTORE)"));
      }
      if (errno == E2BIG) {
        return absl::UnimplementedError(absl::StrCat("message ", i, " of SysV queue ", id,
                                                     " is larger than ", cap, " bytes"));
      }
      if (errno == ENOMSG || errno == EIDRM || errno == EINVAL) return Vanished("message queue", id);
      return ErrnoError(errno, "copying message ", i, " of SysV queue ", id);
    }
    long mtype;
    std::memcpy(&mtype, buf.data(), sizeof(mtype));
    q->msgs.emplace_back(mtype, std::string(buf.data() + sizeof(long), static_cast<size_t>(n)));
  }
  queues_.push_back(std::move(q));
  return absl::OkStatus();
}

absl::Status IpcDump::CollectSemSet(int id) {
  struct semid_ds ds;
  SemArg arg;
  arg.buf = &ds;
  if (semctl(id, 0, IPC_STAT, arg) != 0) {
    if (errno == EINVAL || errno == EIDRM) return Vanished("semaphore set", id);
    return ErrnoError(errno, "IPC_STAT of SysV semaphore set ", id);
  }
  auto s = std::make_unique<SemSet>();
  s->rec.perm = PermOf(id, ds.sem_perm);
  s->rec.nsems = static_cast<uint32_t>(ds.sem_nsems);
  if (s->rec.nsems == 0 || s->rec.nsems > image::kMaxSems) {
    return absl::UnimplementedError(
        absl::StrCat("SysV semaphore set ", id, " has ", s->rec.nsems, " semaphores"));
  }
  s->values.resize(s->rec.nsems);
  arg.array = s->values.data();
  if (semctl(id, 0, GETALL, arg) != 0) {
    if (errno == EINVAL || errno == EIDRM) return Vanished("semaphore set", id);
    return ErrnoError(errno, "reading SysV semaphore set ", id);
  }
  sems_.push_back(std::move(s));
  return absl::OkStatus();
}

absl::Status IpcDump::Write(image::Writer& w, uint32_t objref) {
  header_.objref = objref;
  header_.nr_namespaces = nr_namespaces;
  header_.nr_shm = static_cast<uint32_t>(segments_.size());
  header_.nr_msq = static_cast<uint32_t>(queues_.size());
  header_.nr_sem = static_cast<uint32_t>(sems_.size());
  RETURN_IF_ERROR(w.AppendStruct(image::CKPT_HDR_IPC, header_));
  for (const auto& seg : segments_) {
    const Segment& s = *seg;
    RETURN_IF_ERROR(w.AppendStruct(image::CKPT_HDR_SHM, s.rec));
    if (!s.fd.valid()) {
      // Read through the attachment: fault the runs in from the kernel
      // first (a user-mode first touch costs far more per page).
      for (const image::ckpt_page_run& run : s.runs) {
        (void)madvise(s.addr + run.addr, run.nr_pages * kPage, MADV_POPULATE_READ);
      }
    }
    RETURN_IF_ERROR(mm::WriteObjectPages(
        w, s.runs, s.rec.nr_pages, [&](uint64_t offset, uint64_t len, uint8_t* buf) -> absl::Status {
          const uint64_t avail = std::min(len, s.rec.size - offset);
          if (s.fd.valid()) {
            absl::StatusOr<size_t> got = PreadFull(s.fd.get(), buf, avail, offset);
            if (!got.ok() || *got < avail) {
              return got.ok() ? ErrnoError(EIO, "reading SysV segment ", s.rec.perm.id, ": it ended early")
                              : Annotate(got.status(), absl::StrCat("reading SysV segment ", s.rec.perm.id));
            }
          } else {
            std::memcpy(buf, s.addr + offset, avail);
          }
          std::memset(buf + avail, 0, len - avail);
          return absl::OkStatus();
        }));
  }
  for (const auto& q : queues_) {
    RETURN_IF_ERROR(w.AppendStruct(image::CKPT_HDR_MSQ, q->rec));
    for (const auto& [mtype, text] : q->msgs) {
      image::ckpt_msg m{};
      m.mtype = mtype;
      m.size = text.size();
      RETURN_IF_ERROR(w.AppendStructWith(image::CKPT_HDR_MSG, m, text.data(), text.size()));
    }
  }
  for (const auto& s : sems_) {
    RETURN_IF_ERROR(w.AppendStructWith(image::CKPT_HDR_SEM, s->rec, s->values.data(),
                                       s->values.size() * sizeof(uint16_t)));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- restore

IpcRestore::~IpcRestore() {
  for (void* a : attached_) shmdt(a);
  if (!committed_ && !created_.empty() && ns_.valid()) {
    (void)InNamespace([&] {
      for (auto it = created_.rbegin(); it != created_.rend(); ++it) {
        switch (it->kind) {
          case 's': shmctl(it->id, IPC_RMID, nullptr); break;
          case 'q': msgctl(it->id, IPC_RMID, nullptr); break;
          case 'm': semctl(it->id, 0, IPC_RMID); break;
        }
      }
      return absl::OkStatus();
    });
  }
}

absl::Status IpcRestore::InNamespace(const std::function<absl::Status()>& fn) {
  // The caller's own namespace: here, on this thread (setns needs
  // CAP_SYS_ADMIN even into the namespace one is in).
  if (!fresh_) return fn();
  return InIpcNamespace(ns_.get(), fn, "a restored IPC namespace");
}

absl::Status IpcRestore::Read(image::Reader& r, const image::ckpt_ipc& ipc, NamespaceChoice choice,
                              objhash::RestoreTable& objects) {
  if (ipc.flags & ~static_cast<uint32_t>(image::kIpcOwnNamespace)) {
    return r.FieldError("flags", absl::Hex(ipc.flags), " has unknown bits");
  }
  if (ipc.reserved != 0) return r.FieldError("reserved", ipc.reserved, " is not zero");
  if (ipc.objref == 0) return r.FieldError("objref", 0);
  if (ipc.nr_shm > kMaxObjects) return r.FieldError("nr_shm", ipc.nr_shm, " is too many");
  if (ipc.nr_msq > kMaxObjects) return r.FieldError("nr_msq", ipc.nr_msq, " is too many");
  if (ipc.nr_sem > kMaxObjects) return r.FieldError("nr_sem", ipc.nr_sem, " is too many");
  if (ipc.nr_namespaces == 0 || ipc.nr_namespaces > (1u << 16)) {
    return r.FieldError("nr_namespaces", ipc.nr_namespaces, " is out of range");
  }
  const bool own = ipc.flags & image::kIpcOwnNamespace;
  if (choice == NamespaceChoice::kCurrent && ipc.nr_namespaces > 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the image holds ", ipc.nr_namespaces, " IPC namespaces: --ipc-ns current would merge "
        "them into one (restore as dumped, or with --ipc-ns new)"));
  }
  ns_ref_ = ipc.objref;
  fresh_ = choice == NamespaceChoice::kNew || (choice == NamespaceChoice::kAsDumped && own);
  if (!fresh_) {
    ASSIGN_OR_RETURN(ns_, OpenFile("/proc/thread-self/ns/ipc", O_RDONLY));
  } else {
    // Made by a thread that ends once it holds an fd on it.
    absl::Status st;
    std::thread worker([&] {
      if (unshare(CLONE_NEWIPC) != 0) {
        st = ErrnoError(errno, "creating an IPC namespace");
        return;
      }
      absl::StatusOr<UniqueFd> fd = OpenFile("/proc/thread-self/ns/ipc", O_RDONLY);
      if (fd.ok()) ns_ = *std::move(fd);
      st = fd.status();
    });
    worker.join();
    RETURN_IF_ERROR(st);
  }
  return InNamespace([&]() -> absl::Status {
    if (fresh_ && own) RETURN_IF_ERROR(SetLimits(ipc));
    rmid_forced_ = fresh_ && own && ipc.shm_rmid_forced != 0;
    for (uint32_t i = 0; i < ipc.nr_shm; ++i) RETURN_IF_ERROR(RestoreSegment(r, objects));
    for (uint32_t i = 0; i < ipc.nr_msq; ++i) RETURN_IF_ERROR(RestoreQueue(r));
    for (uint32_t i = 0; i < ipc.nr_sem; ++i) RETURN_IF_ERROR(RestoreSemSet(r));
    return absl::OkStatus();
  });
}

absl::Status IpcRestore::SetLimits(const image::ckpt_ipc& ipc) {
  auto set = [](absl::string_view name, uint64_t value) -> absl::Status {
    if (value == 0) return absl::OkStatus();
    return WriteSysctl(name, absl::StrCat(value));
  };
  RETURN_IF_ERROR(set("shmmax", ipc.shmmax));
  RETURN_IF_ERROR(set("shmall", ipc.shmall));
  RETURN_IF_ERROR(set("shmmni", ipc.shmmni));
  RETURN_IF_ERROR(set("msgmax", ipc.msgmax));
  RETURN_IF_ERROR(set("msgmnb", ipc.msgmnb));
  RETURN_IF_ERROR(set("msgmni", ipc.msgmni));
  if (ipc.sem[0] != 0) {
    RETURN_IF_ERROR(WriteSysctl(
        "sem", absl::StrCat(ipc.sem[0], " ", ipc.sem[1], " ", ipc.sem[2], " ", ipc.sem[3])));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> IpcRestore::CreateWithId(char kind, const image::ckpt_ipc_perm& perm,
                                              bool remove_at_finish,
                                              const std::function<int()>& create) {
  const char* what = kind == 's' ? "segment" : kind == 'q' ? "message queue" : "semaphore set";
  const char* sysctl = kind == 's' ? "shm_next_id" : kind == 'q' ? "msg_next_id" : "sem_next_id";
  const char* ipcrm = kind == 's' ? "m" : kind == 'q' ? "q" : "s";
  RETURN_IF_ERROR(WriteSysctl(sysctl, absl::StrCat(perm.id)));
  int id = create();
  if (id < 0) {
    int err = errno;
    (void)WriteSysctl(sysctl, "-1");
    if (err == EEXIST) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "a SysV %s with key 0x%08x already exists in this IPC namespace (remove it with "
          "'ipcrm -%s 0x%08x', or restore into a fresh namespace with --ipc-ns new)",
          what, static_cast<uint32_t>(perm.key), absl::AsciiStrToUpper(ipcrm),
          static_cast<uint32_t>(perm.key)));
    }
    return ErrnoError(err, "recreating SysV ", what, " ", perm.id);
  }
  created_.push_back({kind, id, remove_at_finish});
  if (id != perm.id) {
    // The id was taken: the kernel gave the next free one instead.
    return absl::FailedPreconditionError(absl::StrCat(
        "SysV ", what, " id ", perm.id, " is taken in this IPC namespace (remove it with 'ipcrm -",
        ipcrm, " ", perm.id, "', or restore into a fresh namespace with --ipc-ns new)"));
  }
  return id;
}

absl::Status IpcRestore::RestoreSegment(image::Reader& r, objhash::RestoreTable& objects) {
  ASSIGN_OR_RETURN(image::ckpt_shm s, r.Expect<image::ckpt_shm>(image::CKPT_HDR_SHM));
  if (s.objref == 0) return r.FieldError("objref", 0);
  if (s.flags & ~static_cast<uint32_t>(image::kShmRemoved | image::kShmLocked)) {
    return r.FieldError("flags", absl::Hex(s.flags), " has unknown bits");
  }
  RETURN_IF_ERROR(CheckPerm(r, s.perm));
  if (s.size == 0 || s.size > kMaxSegmentSize) return r.FieldError("size", s.size, " is out of range");
  const uint64_t mapped = (s.size + kPage - 1) & ~(kPage - 1);
  if (s.nr_pages > mapped / kPage) {
    return r.FieldError("nr_pages", s.nr_pages, " exceeds the segment's ", s.size, " bytes");
  }
  const bool removed = s.flags & image::kShmRemoved;
  const key_t key = removed ? IPC_PRIVATE : s.perm.key;
  ASSIGN_OR_RETURN(int id, CreateWithId('s', s.perm, removed, [&] {
    return shmget(key, s.size, IPC_CREAT | IPC_EXCL | static_cast<int>(s.perm.mode));
  }));

  // Fill it through an attachment in this process, kept until Finish():
  // the segment must outlive the gap before the tasks attach it.
  void* addr = shmat(id, nullptr, 0);
  if (addr == reinterpret_cast<void*>(-1)) return ErrnoError(errno, "attaching SysV segment ", id);
  attached_.push_back(addr);
  uint8_t* base = static_cast<uint8_t*>(addr);
  const uint64_t start = reinterpret_cast<uint64_t>(addr);
  absl::StatusOr<UniqueFd> fd =
      OpenFile(absl::StrFormat("/proc/self/map_files/%x-%x", start, start + mapped), O_RDWR);
  RETURN_IF_ERROR(mm::ReadObjectPages(
      r, s.nr_pages, s.size, absl::StrCat("SysV segment ", id),
      [&](uint64_t offset, const uint8_t* data, uint64_t len) -> absl::Status {
        if (fd.ok()) {
          if (pwrite(fd->get(), data, len, static_cast<off_t>(offset)) != static_cast<ssize_t>(len)) {
            return ErrnoError(errno, "filling SysV segment ", id);
          }
          return absl::OkStatus();
        }
        (void)madvise(base + offset, (len + kPage - 1) & ~(kPage - 1), MADV_POPULATE_WRITE);
        std::memcpy(base + offset, data, len);
        return absl::OkStatus();
      }));
  if ((s.flags & image::kShmLocked) && shmctl(id, SHM_LOCK, nullptr) != 0) {
    return ErrnoError(errno, "locking SysV segment ", id, " (SHM_LOCK)");
  }
  struct shmid_ds ds;
  if (shmctl(id, IPC_STAT, &ds) != 0) return ErrnoError(errno, "IPC_STAT of SysV segment ", id);
  ds.shm_perm.uid = s.perm.uid;
  ds.shm_perm.gid = s.perm.gid;
  ds.shm_perm.mode = static_cast<unsigned short>(s.perm.mode);
  if (shmctl(id, IPC_SET, &ds) != 0) return ErrnoError(errno, "IPC_SET of SysV segment ", id);
  objhash::RestoredObject obj;
  obj.objref = s.objref;
  obj.id = id;
  obj.owner_ref = ns_ref_;
  obj.data = s.size;
  return objects.Insert(s.objref, objhash::ObjKind::kShm, std::move(obj));
}

absl::Status IpcRestore::RestoreQueue(image::Reader& r) {
  ASSIGN_OR_RETURN(image::ckpt_msq q, r.Expect<image::ckpt_msq>(image::CKPT_HDR_MSQ));
  RETURN_IF_ERROR(CheckPerm(r, q.perm));
  if (q.nr_msgs > image::kMaxMsgs) return r.FieldError("nr_msgs", q.nr_msgs, " is too many");
  if (q.qbytes > (1ull << 31)) return r.FieldError("qbytes", q.qbytes, " is out of range");
  ASSIGN_OR_RETURN(int id, CreateWithId('q', q.perm, false, [&] {
    return msgget(q.perm.key, IPC_CREAT | IPC_EXCL | static_cast<int>(q.perm.mode));
  }));

  struct msqid_ds ds;
  if (msgctl(id, IPC_STAT, &ds) != 0) return ErrnoError(errno, "IPC_STAT of SysV queue ", id);
  ds.msg_perm.uid = q.perm.uid;
  ds.msg_perm.gid = q.perm.gid;
  ds.msg_perm.mode = static_cast<unsigned short>(q.perm.mode);
  const uint64_t default_qbytes = ds.msg_qbytes;
  ds.msg_qbytes = q.qbytes;
  // A queue larger than kernel.msgmnb needs CAP_SYS_RESOURCE, or msgmnb
  // raised for the moment of the IPC_SET.
  std::vector<uint64_t> old_mnb;
  if (q.qbytes > default_qbytes) {
    ASSIGN_OR_RETURN(old_mnb, ReadSysctl("msgmnb"));
    RETURN_IF_ERROR(WriteSysctl("msgmnb", absl::StrCat(q.qbytes)));
  }
  int set = msgctl(id, IPC_SET, &ds);
  int set_err = errno;
  if (!old_mnb.empty()) RETURN_IF_ERROR(WriteSysctl("msgmnb", absl::StrCat(old_mnb[0])));
  if (set != 0) return ErrnoError(set_err, "IPC_SET of SysV queue ", id);

  std::vector<char> buf;
  for (uint32_t i = 0; i < q.nr_msgs; ++i) {
    ASSIGN_OR_RETURN(image::ckpt_msg m, r.Expect<image::ckpt_msg>(image::CKPT_HDR_MSG));
    if (m.mtype <= 0) return r.FieldError("mtype", m.mtype, " is not positive");
    if (m.size > image::kMaxMsgSize || m.size != r.payload_remaining()) {
      return r.FieldError("size", m.size, " does not match the ", r.payload_remaining(),
                          " bytes of text");
    }
    buf.resize(sizeof(long) + m.size);
    long mtype = static_cast<long>(m.mtype);
    std::memcpy(buf.data(), &mtype, sizeof(mtype));
    RETURN_IF_ERROR(r.ReadPayload(buf.data() + sizeof(long), m.size));
    if (msgsnd(id, buf.data(), m.size, IPC_NOWAIT) != 0) {
      if (errno == EINVAL) {
        return absl::FailedPreconditionError(absl::StrCat(
            "message ", i, " of SysV queue ", id, " (", m.size,
            " bytes) is larger than kernel.msgmax allows here"));
      }
      return ErrnoError(errno, "queueing message ", i, " of SysV queue ", id);
    }
  }
  return absl::OkStatus();
}

absl::Status IpcRestore::RestoreSemSet(image::Reader& r) {
  ASSIGN_OR_RETURN(image::ckpt_sem s, r.Expect<image::ckpt_sem>(image::CKPT_HDR_SEM));
  RETURN_IF_ERROR(CheckPerm(r, s.perm));
  if (s.nsems == 0 || s.nsems > image::kMaxSems || uint64_t{s.nsems} * 2 != r.payload_remaining()) {
    return r.FieldError("nsems", s.nsems, " does not match the ", r.payload_remaining(),
                        " bytes of values");
  }
  std::vector<unsigned short> values(s.nsems);
  RETURN_IF_ERROR(r.ReadPayload(values.data(), values.size() * sizeof(unsigned short)));
  for (unsigned short v : values) {
    if (v > 32767) return r.FieldError("values", v, " exceeds SEMVMX (32767)");
  }
  ASSIGN_OR_RETURN(int id, CreateWithId('m', s.perm, false, [&] {
    return semget(s.perm.key, static_cast<int>(s.nsems),
                  IPC_CREAT | IPC_EXCL | static_cast<int>(s.perm.mode));
  }));
  SemArg arg;
  arg.array = values.data();
  if (semctl(id, 0, SETALL, arg) != 0) return ErrnoError(errno, "setting SysV semaphores ", id);
  struct semid_ds ds;
  arg.buf = &ds;
  if (semctl(id, 0, IPC_STAT, arg) != 0) return ErrnoError(errno, "IPC_STAT of SysV semaphores ", id);
  ds.sem_perm.uid = s.perm.uid;
  ds.sem_perm.gid = s.perm.gid;
  ds.sem_perm.mode = static_cast<unsigned short>(s.perm.mode);
  if (semctl(id, 0, IPC_SET, arg) != 0) return ErrnoError(errno, "IPC_SET of SysV semaphores ", id);
  return absl::OkStatus();
}

absl::Status IpcRestore::Finish() {
  // This process's attachments go first, as they did before the tasks
  // had theirs; then the segments removed while attached go again.
  for (void* a : attached_) shmdt(a);
  attached_.clear();
  return InNamespace([&]() -> absl::Status {
    for (const Created& c : created_) {
      if (c.remove_at_finish && shmctl(c.id, IPC_RMID, nullptr) != 0) {
        return ErrnoError(errno, "removing SysV segment ", c.id, " again (IPC_RMID)");
      }
    }
    if (rmid_forced_) RETURN_IF_ERROR(WriteSysctl("shm_rmid_forced", "1"));
    return absl::OkStatus();
  });
}

// ---------------------------------------------------------------- handler

namespace {

absl::Status CheckpointIpcNs(objhash::CheckpointContext& ctx, const objhash::ObjHash::Entry& e) {
  const auto& dump = std::any_cast<const std::shared_ptr<IpcDump>&>(e.data);
  return dump->Write(*ctx.writer, e.objref);
}

// Counted across the image's IPC records: as many as each says, at most
// one of them the dumper's namespace.
struct IpcRecordsSeen {
  uint32_t records = 0;
  uint32_t nr_namespaces = 0;
  uint32_t not_own = 0;
};

absl::StatusOr<objhash::RestoredObject> RestoreIpcNs(objhash::RestoreContext& ctx,
                                                     const image::Record&) {
  image::Reader& r = *ctx.reader;
  image::ckpt_ipc ipc;
  RETURN_IF_ERROR(r.ReadStruct(&ipc, sizeof(ipc)));
  if (ctx.kind_state == nullptr) return absl::InternalError("an IPC record outside a restore");
  std::any& state = (*ctx.kind_state)["IPC"];
  if (!state.has_value()) {
    state = std::make_shared<IpcRecordsSeen>();
    std::shared_ptr<IpcRecordsSeen> seen = std::any_cast<std::shared_ptr<IpcRecordsSeen>>(state);
    seen->nr_namespaces = ipc.nr_namespaces;
    RETURN_IF_ERROR(ctx.Later([seen](objhash::LateContext&) -> absl::Status {
      if (seen->records != seen->nr_namespaces) {
        return absl::InvalidArgumentError(absl::StrCat(
            "image record IPC: field 'nr_namespaces': ", seen->nr_namespaces,
            " namespaces, but the image holds ", seen->records, " IPC records"));
      }
      return absl::OkStatus();
    }));
  }
  auto seen = std::any_cast<std::shared_ptr<IpcRecordsSeen>>(state);
  ++seen->records;
  if (ipc.nr_namespaces != seen->nr_namespaces || seen->records > seen->nr_namespaces) {
    return r.FieldError("nr_namespaces", ipc.nr_namespaces, " in IPC record ", seen->records,
                        ", after IPC records that said ", seen->nr_namespaces);
  }
  if (!(ipc.flags & image::kIpcOwnNamespace) && ++seen->not_own > 1) {
    return r.FieldError("flags", absl::Hex(ipc.flags),
                        ": a second IPC namespace that is the dumper's");
  }
  NamespaceChoice choice = NamespaceChoice::kAsDumped;
  if (ctx.flags & objhash::kRestoreIpcNew) choice = NamespaceChoice::kNew;
  if (ctx.flags & objhash::kRestoreIpcCurrent) choice = NamespaceChoice::kCurrent;
  auto restore = std::make_shared<IpcRestore>();
  RETURN_IF_ERROR(restore->Read(r, ipc, choice, *ctx.objects));
  ASSIGN_OR_RETURN(objhash::RestoredObject obj,
                   objhash::HoldAt(ctx, ipc.objref, restore->ns_fd(), "an IPC namespace"));
  obj.id = restore->fresh_namespace() ? 1 : 0;
  // Segments removed while attached go once the tasks have attached them;
  // what the restore made stays only if it succeeds.
  RETURN_IF_ERROR(ctx.Later([restore](objhash::LateContext&) { return restore->Finish(); }));
  RETURN_IF_ERROR(ctx.AtCommit([restore] { restore->Commit(); }));
  obj.data = restore;
  return obj;
}

[[maybe_unused]] const bool kRegistered = objhash::RegisterHandler(
    {kObjIpcNs, "IPC", image::CKPT_HDR_IPC, CheckpointIpcNs, RestoreIpcNs});

}  // namespace

}  // namespace ckpt::ipc
