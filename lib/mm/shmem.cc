#include "lib/mm/shmem.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <cerrno>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "lib/base/buffer.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/image/format.h"
#include "lib/image/records.h"
#include "lib/mm/pagescan.h"
#include "lib/task/remote.h"

namespace ckpt::mm {
namespace {

// SHMEM: a memfd's or shared mapping's inode, its name, then its pages.
constexpr image::FieldSpec kShmemFields[] = {
    CKPT_FIELD(image::ckpt_shmem, objref, kUnsigned), CKPT_FIELD(image::ckpt_shmem, flags, kHex),
    CKPT_FIELD(image::ckpt_shmem, size, kUnsigned),   CKPT_FIELD(image::ckpt_shmem, seals, kHex),
    CKPT_FIELD(image::ckpt_shmem, mode, kOctal),      CKPT_FIELD(image::ckpt_shmem, nr_pages, kUnsigned),
    CKPT_FIELD(image::ckpt_shmem, name_len, kUnsigned),
};
CKPT_RECORD(image::CKPT_HDR_SHMEM, "SHMEM", image::ckpt_shmem, kShmemFields, image::kMaxPathLen,
            kPaths);

constexpr uint64_t kPage = 4096;
constexpr uint64_t kChunk = image::kMaxPageDataLen;

struct Mapping {
  pid_t pid;
  uint64_t start, end, pgoff;
  bool shared;  // a private one holds copies of its own, not the object's pages
};

struct ShmemInfo {
  std::string name;
  bool memfd = false;
  std::vector<std::pair<pid_t, int>> fds;
  std::vector<Mapping> mappings;
};

absl::StatusOr<ShmemInfo*> Register(objhash::ObjHash& objects, dev_t dev, uint64_t ino,
                                    bool memfd, const std::string& name, uint32_t* objref) {
  ASSIGN_OR_RETURN(objhash::ObjHash::Found f,
                   objects.LookupAdd(kObjShmem,
                                     objhash::Identity::OfInode(dev, ino), ShmemInfo{name, memfd}));
  *objref = f.objref;
  return &std::any_cast<ShmemInfo&>(f.entry->data);
}

// Offsets of the pages worth saving, as runs (addr = offset in the object).
struct Plan {
  uint64_t size = 0;
  uint32_t seals = 0;
  uint32_t mode = 0600;
  std::vector<image::ckpt_page_run> runs;
  uint64_t pages = 0;
  UniqueFd fd;  // when the object could be opened
};

absl::Status PlanFromFd(Plan* plan) {
  struct stat st;
  if (fstat(plan->fd.get(), &st) != 0) return ErrnoError(errno, "stat of shared memory");
  plan->size = static_cast<uint64_t>(st.st_size);
  plan->mode = st.st_mode & 07777;
  int seals = fcntl(plan->fd.get(), F_GET_SEALS);
  plan->seals = seals > 0 ? static_cast<uint32_t>(seals) : 0;
  ASSIGN_OR_RETURN(plan->runs, DataRuns(plan->fd.get(), plan->size, &plan->pages));
  return absl::OkStatus();
}

// Pages present in any task's mapping of the object, by offset.
absl::Status PlanFromMappings(const ShmemInfo& info, Plan* plan) {
  std::map<uint64_t, uint64_t> present;  // offset -> end offset, merged below
  for (const Mapping& m : info.mappings) {
    if (!m.shared) continue;
    plan->size = std::max(plan->size, m.pgoff + (m.end - m.start));
    ASSIGN_OR_RETURN(PageScanner scanner, PageScanner::Open(m.pid));
    ScanResult r;
    RETURN_IF_ERROR(scanner.ScanShared(m.start, m.end, &r));
    for (const image::ckpt_page_run& run : r.runs) {
      uint64_t off = m.pgoff + (run.addr - m.start);
      uint64_t& end = present[off];
      end = std::max(end, off + run.nr_pages * kPage);
    }
  }
  uint64_t covered = 0;
  for (const auto& [start, hi] : present) {
    uint64_t lo = std::max(start, covered);
    if (hi <= lo) continue;
    AppendRun(&plan->runs, lo, (hi - lo) / kPage);
    plan->pages += (hi - lo) / kPage;
    covered = hi;
  }
  return absl::OkStatus();
}

// Reads [offset, offset + len) of the object into buf.
absl::Status ReadRange(const ShmemInfo& info, const Plan& plan, uint64_t offset, uint64_t len,
                       uint8_t* buf) {
  if (plan.fd.valid()) {
    ASSIGN_OR_RETURN(size_t got, PreadFull(plan.fd.get(), buf, len, offset));
    // The last page of an object whose size is not a multiple of pages
    // ends early: the rest of that page is zeros.
    if (got < len && offset + got < plan.size) {
      return ErrnoError(EIO, "reading shared memory: it ended at ", offset + got, " of ",
                        plan.size, " bytes");
    }
    std::memset(buf + got, 0, len - got);
    return absl::OkStatus();
  }
  // Through mappings, page range by page range.
  uint64_t done = 0;
  while (done < len) {
    uint64_t off = offset + done;
    const Mapping* m = nullptr;
    for (const Mapping& c : info.mappings) {
      if (c.shared && c.pgoff <= off && off < c.pgoff + (c.end - c.start)) m = &c;
    }
    if (m == nullptr) return absl::InternalError("a shared memory page no mapping covers");
    uint64_t take = std::min(len - done, m->pgoff + (m->end - m->start) - off);
    RETURN_IF_ERROR(task::ReadRemote(m->pid, m->start + (off - m->pgoff), buf + done, take));
    done += take;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<uint32_t> RegisterShmemFd(objhash::ObjHash& objects, pid_t pid, int fd,
                                         const std::string& name, dev_t dev, uint64_t ino) {
  uint32_t objref = 0;
  ASSIGN_OR_RETURN(ShmemInfo * info, Register(objects, dev, ino, true, name, &objref));
  info->fds.push_back({pid, fd});
  return objref;
}

absl::StatusOr<uint32_t> RegisterShmemMapping(objhash::ObjHash& objects, pid_t pid,
                                              uint64_t start, uint64_t end, uint64_t pgoff,
                                              bool shared, bool memfd, const std::string& name, dev_t dev,
                                              uint64_t ino) {
  uint32_t objref = 0;
  ASSIGN_OR_RETURN(ShmemInfo * info, Register(objects, dev, ino, memfd, name, &objref));
  info->mappings.push_back({pid, start, end, pgoff, shared});
  return objref;
}

absl::Status CheckpointShmem(objhash::CheckpointContext& ctx,
                             const objhash::ObjHash::Entry& entry) {
  const auto& info = std::any_cast<const ShmemInfo&>(entry.data);
  Plan plan;
  for (const auto& [pid, fd] : info.fds) {
    absl::StatusOr<UniqueFd> f = OpenFile(absl::StrCat("/proc/", pid, "/fd/", fd), O_RDONLY);
    if (f.ok()) {
      plan.fd = *std::move(f);
      break;
    }
  }
  for (size_t i = 0; !plan.fd.valid() && i < info.mappings.size(); ++i) {
    const Mapping& m = info.mappings[i];
    absl::StatusOr<UniqueFd> f = OpenFile(
        absl::StrFormat("/proc/%d/map_files/%x-%x", m.pid, m.start, m.end), O_RDONLY);
    if (f.ok()) plan.fd = *std::move(f);
  }
  if (plan.fd.valid()) {
    RETURN_IF_ERROR(PlanFromFd(&plan));
  } else if (std::none_of(info.mappings.begin(), info.mappings.end(),
                          [](const Mapping& m) { return m.shared; })) {
    return absl::UnimplementedError(absl::StrCat(
        "shared memory '", info.name, "' is only mapped privately, and /proc/PID/map_files "
        "cannot be read (it needs CAP_SYS_ADMIN): its own pages cannot be told from the copies"));
  } else {
    RETURN_IF_ERROR(PlanFromMappings(info, &plan));
  }
  image::ckpt_shmem rec{};
  rec.objref = entry.objref;
  rec.flags = info.memfd ? static_cast<uint32_t>(image::kShmemMemfd) : 0u;
  rec.size = plan.size;
  rec.seals = plan.seals;
  rec.mode = plan.mode;
  rec.nr_pages = plan.pages;
  rec.name_len = static_cast<uint32_t>(info.name.size());
  RETURN_IF_ERROR(ctx.writer->AppendStructWith(image::CKPT_HDR_SHMEM, rec, info.name.data(),
                                               info.name.size()));
  return WriteObjectPages(*ctx.writer, plan.runs, plan.pages,
                          [&](uint64_t offset, uint64_t len, uint8_t* buf) {
                            return ReadRange(info, plan, offset, len, buf);
                          });
}

absl::StatusOr<objhash::RestoredObject> RestoreShmem(objhash::RestoreContext& ctx,
                                                     const image::Record& rec) {
  (void)rec;
  image::Reader& r = *ctx.reader;
  image::ckpt_shmem s;
  RETURN_IF_ERROR(r.ReadStruct(&s, sizeof(s)));
  if (s.flags & ~static_cast<uint32_t>(image::kShmemMemfd)) return r.FieldError("flags", s.flags);
  if (s.name_len > 249) return r.FieldError("name_len", s.name_len, " is longer than a memfd name");
  if (s.size > (1ull << 44)) return r.FieldError("size", s.size, " is too large");
  if (s.nr_pages > (s.size + kPage - 1) / kPage) {
    return r.FieldError("nr_pages", s.nr_pages, " exceeds the object's ", s.size, " bytes");
  }
  ASSIGN_OR_RETURN(std::string name, r.ReadString(s.name_len, "name"));
  if (name.empty()) name = "ckpt-shared-anonymous";
  // Sealable always: a memfd made without MFD_ALLOW_SEALING has F_SEAL_SEAL
  // among its seals, which are added back below.
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return ErrnoError(errno, "memfd_create(", name, ")");
  UniqueFd owned(fd);
  if (ftruncate(fd, static_cast<off_t>(s.size)) != 0) {
    return ErrnoError(errno, "sizing shared memory '", name, "' to ", s.size, " bytes");
  }
  RETURN_IF_ERROR(ReadObjectPages(
      r, s.nr_pages, s.size, absl::StrCat("'", name, "'"),
      [&](uint64_t offset, const uint8_t* data, uint64_t len) -> absl::Status {
        if (pwrite(fd, data, len, static_cast<off_t>(offset)) != static_cast<ssize_t>(len)) {
          return ErrnoError(errno, "filling shared memory '", name, "'");
        }
        return absl::OkStatus();
      }));
  // The mode before the seals: F_SEAL_EXEC forbids changing its x bits.
  if (fchmod(fd, s.mode & 07777) != 0) {
    return ErrnoError(errno, "setting the mode of '", name, "' to 0", absl::StrFormat("%o", s.mode & 07777));
  }
  if (s.seals && fcntl(fd, F_ADD_SEALS, s.seals) != 0) {
    return ErrnoError(errno, "sealing '", name, "' with 0x", absl::Hex(s.seals));
  }
  return objhash::HoldAt(ctx, s.objref, fd, absl::StrCat("'", name, "'"));
}

absl::StatusOr<std::vector<image::ckpt_page_run>> DataRuns(int fd, uint64_t size,
                                                           uint64_t* pages) {
  std::vector<image::ckpt_page_run> runs;
  *pages = 0;
  off_t at = 0;
  const off_t end = static_cast<off_t>(size);
  const uint64_t last = (size + kPage - 1) & ~(kPage - 1);
  while (at < end) {
    off_t data = lseek(fd, at, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;
      return ErrnoError(errno, "SEEK_DATA in shared memory");
    }
    off_t hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0 || hole > end) hole = end;
    uint64_t lo = static_cast<uint64_t>(data) & ~(kPage - 1);
    uint64_t hi = std::min<uint64_t>((static_cast<uint64_t>(hole) + kPage - 1) & ~(kPage - 1), last);
    if (!runs.empty() && lo < runs.back().addr + runs.back().nr_pages * kPage) {
      lo = runs.back().addr + runs.back().nr_pages * kPage;
    }
    if (hi > lo) {
      AppendRun(&runs, lo, (hi - lo) / kPage);
      *pages += (hi - lo) / kPage;
    }
    if (hole <= at) break;
    at = hole;
  }
  return runs;
}

absl::Status WriteObjectPages(image::Writer& writer, const std::vector<image::ckpt_page_run>& runs,
                              uint64_t pages, const ReadRangeFn& read) {
  // Page arrays of at most kChunk bytes, each one PAGE_RUNS and one
  // PAGE_DATA.
  Buffer buffer;
  ASSIGN_OR_RETURN(uint8_t * buf,
                   buffer.Get(std::min<uint64_t>(kChunk, std::max<uint64_t>(pages * kPage, kPage))));
  std::vector<image::ckpt_page_run> array;
  uint64_t array_bytes = 0;
  auto flush = [&]() -> absl::Status {
    if (array.empty()) return absl::OkStatus();
    RETURN_IF_ERROR(writer.Append(image::CKPT_HDR_PAGE_RUNS, array.data(),
                                  array.size() * sizeof(image::ckpt_page_run)));
    uint64_t at = 0;
    for (const image::ckpt_page_run& run : array) {
      RETURN_IF_ERROR(read(run.addr, run.nr_pages * kPage, buf + at));
      at += run.nr_pages * kPage;
    }
    RETURN_IF_ERROR(writer.Append(image::CKPT_HDR_PAGE_DATA, buf, at));
    array.clear();
    array_bytes = 0;
    return absl::OkStatus();
  };
  for (image::ckpt_page_run run : runs) {
    while (run.nr_pages > 0) {
      uint64_t room = (kChunk - array_bytes) / kPage;
      uint64_t take = std::min(run.nr_pages, room);
      array.push_back({run.addr, take});
      array_bytes += take * kPage;
      run.addr += take * kPage;
      run.nr_pages -= take;
      if (array_bytes == kChunk) RETURN_IF_ERROR(flush());
    }
  }
  return flush();
}

absl::Status ReadObjectPages(image::Reader& r, uint64_t nr_pages, uint64_t size,
                             absl::string_view what, const FillRangeFn& fill) {
  Buffer buffer;
  uint64_t left = nr_pages;
  uint64_t last_end = 0;
  const uint64_t object_pages = (size + kPage - 1) / kPage;
  while (left > 0) {
    ASSIGN_OR_RETURN(std::vector<image::ckpt_page_run> runs, ReadPageRuns(r, what));
    uint64_t bytes = 0;
    for (const image::ckpt_page_run& run : runs) {
      if (run.addr % kPage || run.nr_pages == 0 || run.addr < last_end ||
          run.nr_pages > left || run.addr / kPage > object_pages ||
          run.nr_pages > object_pages - run.addr / kPage ||
          bytes + run.nr_pages * kPage > image::kMaxPageDataLen) {
        return r.FieldError("runs", "a run outside the object, out of order or too long");
      }
      last_end = run.addr + run.nr_pages * kPage;
      left -= run.nr_pages;
      bytes += run.nr_pages * kPage;
    }
    ASSIGN_OR_RETURN(image::Record data, r.Next());
    if (data.type != image::CKPT_HDR_PAGE_DATA || data.len != bytes) {
      return absl::InvalidArgumentError(absl::StrCat(image::Reader::Where(data), ": expected ",
                                                     bytes, " bytes of ", what));
    }
    ASSIGN_OR_RETURN(uint8_t * buf, buffer.Get(bytes));
    RETURN_IF_ERROR(r.ReadPayload(buf, bytes));
    uint64_t at = 0;
    for (const image::ckpt_page_run& run : runs) {
      uint64_t len = std::min(run.nr_pages * kPage, size - run.addr);
      RETURN_IF_ERROR(fill(run.addr, buf + at, len));
      at += run.nr_pages * kPage;
    }
  }
  return absl::OkStatus();
}

}  // namespace ckpt::mm
