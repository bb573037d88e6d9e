// The restore half of the mm section: the restored task is a copy of the
// restorer with the trampoline in its free area. Its vdso family is parked
// in the free area, everything else is unmapped, then every recorded VMA
// is mapped at its address, its pages written from outside, its
// protection and advice set, and the mm fields set with PR_SET_MM_MAP.

#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <array>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "lib/base/clock.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/mm/mapped_file.h"
#include "lib/mm/mm.h"
#include "lib/mm/shmem.h"
#include "lib/task/remote.h"

namespace ckpt::mm {
namespace {

constexpr uint64_t kPage = 4096;
constexpr long kSysMseal = 462;  // mseal(2), Linux 6.10
// Page arrays up to this much in all are staged (see Stage).
constexpr uint64_t kStageBytes = 4ull << 20;
// How far ahead of the page writes the task populates its memory.
constexpr uint64_t kPopulateWindow = (8ull << 20) / kPage;

// Queues MADV_POPULATE_WRITE for pages [from, to) of `runs` (counted
// across the runs).
void QueuePopulate(task::SyscallBatch& b, const std::vector<image::ckpt_page_run>& runs,
                   uint64_t from, uint64_t to) {
  uint64_t at = 0;
  for (const image::ckpt_page_run& run : runs) {
    uint64_t lo = std::max(from, at), hi = std::min(to, at + run.nr_pages);
    if (lo < hi && b.HasRoom(1, 0)) {
      b.Add(SYS_madvise,
            {run.addr + (lo - at) * kPage, (hi - lo) * kPage, MADV_POPULATE_WRITE}, task::kMayFail);
    }
    at += run.nr_pages;
    if (at >= to) break;
  }
}

const char* FamilyName(uint32_t kind) {
  switch (kind) {
    case image::kVmaVdso:
      return "[vdso]";
    case image::kVmaVvar:
      return "[vvar]";
    case image::kVmaVvarVclock:
      return "[vvar_vclock]";
  }
  return nullptr;
}

absl::Status ValidateVma(image::Reader& r, const image::ckpt_vma& v, uint64_t prev_end,
                         uint64_t free_area) {
  if (v.start % kPage || v.end % kPage || v.start >= v.end) {
    return r.FieldError("start", absl::StrFormat("0x%x-0x%x is not a page-aligned range",
                                                 v.start, v.end));
  }
  if (v.end > kUserSpaceEnd) return r.FieldError("end", absl::Hex(v.end), " is beyond user space");
  if (v.start < prev_end) {
    return r.FieldError("start", absl::StrFormat("0x%x overlaps the previous VMA (ends 0x%x)",
                                                 v.start, prev_end));
  }
  if (v.start < free_area + kFreeAreaSize && free_area < v.end) {
    return r.FieldError("start", absl::StrFormat(
                                     "0x%x-0x%x overlaps the free area the dump recorded (0x%x)",
                                     v.start, v.end, free_area));
  }
  if (v.prot & ~static_cast<uint32_t>(PROT_READ | PROT_WRITE | PROT_EXEC)) {
    return r.FieldError("prot", absl::Hex(v.prot), " has unknown bits");
  }
  const uint32_t known = MAP_SHARED | MAP_PRIVATE | image::kMapDroppable | MAP_ANONYMOUS |
                         MAP_GROWSDOWN | MAP_NORESERVE;
  const uint32_t type = v.flags & 0x0f;  // MAP_TYPE
  if ((v.flags & ~known) ||
      (type != MAP_SHARED && type != MAP_PRIVATE &&
       !(type == image::kMapDroppable && (v.flags & MAP_ANONYMOUS) && v.kind == image::kVmaAnon))) {
    return r.FieldError("flags", absl::Hex(v.flags), " is not a valid mapping type");
  }
  bool anon = v.flags & MAP_ANONYMOUS;
  switch (v.kind) {
    case image::kVmaFile:
    case image::kVmaSysvShm:
    case image::kVmaShmem:
      if (anon || v.file_ref == 0) return r.FieldError("file_ref", "a VMA of an object without one");
      if (v.pgoff % kPage) return r.FieldError("pgoff", absl::Hex(v.pgoff), " is not aligned");
      if (v.kind == image::kVmaSysvShm && !(v.flags & MAP_SHARED)) {
        return r.FieldError("flags", "a SysV shm attachment is shared");
      }
      break;
    case image::kVmaAnon:
    case image::kVmaHeap:
    case image::kVmaStack:
    case image::kVmaVdso:
    case image::kVmaVvar:
    case image::kVmaVvarVclock:
      if (!anon || v.file_ref != 0) return r.FieldError("file_ref", "an anonymous VMA with a file");
      break;
    default:
      return r.FieldError("kind", v.kind, " is not a known VMA kind");
  }
  constexpr uint64_t kKnownAdvice =
      image::kAdvHugepage | image::kAdvNoHugepage | image::kAdvDontDump | image::kAdvDontFork |
      image::kAdvWipeOnFork | image::kAdvMergeable | image::kAdvLocked | image::kAdvSequential |
      image::kAdvRandom | image::kAdvLockOnFault | image::kAdvSealed;
  if (v.advice & ~kKnownAdvice) return r.FieldError("advice", absl::Hex(v.advice), " has unknown bits");
  if (v.nr_pages > (v.end - v.start) / kPage) {
    return r.FieldError("nr_pages", v.nr_pages, " exceeds the VMA's ",
                        (v.end - v.start) / kPage, " pages");
  }
  if ((v.flags & MAP_SHARED) && v.nr_pages > 0) {
    return r.FieldError("nr_pages", "a shared mapping carries no pages");
  }
  if (FamilyName(v.kind) != nullptr && v.nr_pages > 0) {
    return r.FieldError("nr_pages", "a vdso mapping carries no pages");
  }
  return absl::OkStatus();
}

void QueueAdvice(task::SyscallBatch& b, const image::ckpt_vma& v) {
  const uint64_t len = v.end - v.start;
  struct {
    uint64_t bit;
    int advice;
  } const table[] = {
      {image::kAdvHugepage, MADV_HUGEPAGE},     {image::kAdvNoHugepage, MADV_NOHUGEPAGE},
      {image::kAdvDontDump, MADV_DONTDUMP},     {image::kAdvDontFork, MADV_DONTFORK},
      {image::kAdvWipeOnFork, MADV_WIPEONFORK}, {image::kAdvMergeable, MADV_MERGEABLE},
      {image::kAdvSequential, MADV_SEQUENTIAL}, {image::kAdvRandom, MADV_RANDOM},
  };
  for (const auto& t : table) {
    if (v.advice & t.bit) {
      // KSM or THP may be configured out: advice is best effort.
      b.Add(SYS_madvise, {v.start, len, static_cast<uint64_t>(t.advice)}, task::kMayFail);
    }
  }
}

// Small page arrays are staged: their contents wait in a buffer while the
// mmap calls of the following VMAs are queued, so that a task with many
// small VMAs needs a few syscall batches and one process_vm_writev rather
// than a round trip per VMA. Calls that must follow the writes (mprotect
// to a read-only protection, mlock) wait in `after`.
struct Stage {
  Buffer buffer;
  uint64_t capacity = 0;
  uint64_t used = 0;
  std::vector<struct iovec> remote;
  std::vector<std::array<uint64_t, 4>> after;  // nr, args
};

// Runs the queued calls (the mappings), writes the staged pages, and
// queues what had to wait for them.
absl::Status FlushStage(MmRestoreContext& ctx, Stage& stage) {
  RETURN_IF_ERROR(ctx.queue->Flush());
  if (stage.used > 0) {
    struct iovec local = {stage.buffer.data(), stage.used};
    absl::Status st =
        task::WriteRemoteV(ctx.pid, &local, 1, stage.remote.data(), stage.remote.size());
    if (!st.ok()) return Annotate(st, absl::StrCat("filling pages of task ", ctx.pid));
  }
  stage.used = 0;
  stage.remote.clear();
  for (const auto& call : stage.after) {
    RETURN_IF_ERROR(ctx.queue->Reserve(1, 0));
    ctx.queue->batch().Add(static_cast<long>(call[0]), {call[1], call[2], call[3]});
  }
  stage.after.clear();
  return absl::OkStatus();
}

// Reads one page array (PAGE_RUNS, then PAGE_DATA records) of VMA `v` and
// writes its pages into the task, or stages them. Returns the pages it
// held.
// Reads one page array's PAGE_RUNS record and checks its runs against the
// VMA, what came before and the pages the VMA has left; `total` is set to
// their pages.
absl::StatusOr<std::vector<image::ckpt_page_run>> ReadArrayRuns(image::Reader& r,
                                                               const image::ckpt_vma& v,
                                                               uint64_t pages_left,
                                                               uint64_t* last_end, uint64_t* total_out) {
  ASSIGN_OR_RETURN(std::vector<image::ckpt_page_run> runs,
                   ReadPageRuns(r, absl::StrCat("the VMA at 0x", absl::Hex(v.start))));
  uint64_t total = 0;
  for (const image::ckpt_page_run& run : runs) {
    if (run.addr % kPage || run.nr_pages == 0 || run.addr < *last_end ||
        run.addr < v.start || run.nr_pages > (v.end - run.addr) / kPage) {
      return r.FieldError("runs", absl::StrFormat("run 0x%x+%u is not inside the VMA 0x%x-0x%x "
                                                  "after 0x%x",
                                                  run.addr, run.nr_pages, v.start, v.end,
                                                  *last_end));
    }
    *last_end = run.addr + run.nr_pages * kPage;
    total += run.nr_pages;
  }
  if (total > pages_left) {
    return r.FieldError("runs", total, " pages exceed the ", pages_left, " the VMA has left");
  }
  *total_out = total;
  return runs;
}

// The next PAGE_DATA record of a page array, checked against the bytes
// its runs have left.
absl::StatusOr<image::Record> NextPageData(image::Reader& r, const image::ckpt_vma& v,
                                           uint64_t bytes_left) {
  ASSIGN_OR_RETURN(image::Record data, r.Next());
  if (data.type != image::CKPT_HDR_PAGE_DATA) {
    return absl::InvalidArgumentError(absl::StrCat(image::Reader::Where(data),
                                                   ": expected PAGE_DATA, ", bytes_left,
                                                   " bytes of page contents are missing"));
  }
  if (data.len == 0 || data.len % kPage || data.len > bytes_left) {
    return absl::InvalidArgumentError(absl::StrCat(image::Reader::Where(data), ": length ",
                                                   data.len, " does not fit the ", bytes_left,
                                                   " bytes left in the runs of the VMA at ",
                                                   absl::Hex(v.start)));
  }
  return data;
}

// A page array of a VMA left to the lazy fill: its contents are skipped,
// and where they are in the stream is noted, run by run.
absl::StatusOr<uint64_t> SkipPageArray(image::Reader& r, MmRestoreContext& ctx,
                                       const image::ckpt_vma& v, uint64_t pages_left,
                                       uint64_t* last_end) {
  uint64_t total = 0;
  ASSIGN_OR_RETURN(std::vector<image::ckpt_page_run> runs,
                   ReadArrayRuns(r, v, pages_left, last_end, &total));
  size_t ri = 0;
  uint64_t roff = 0;  // pages of runs[ri] already placed
  uint64_t bytes_left = total * kPage;
  while (bytes_left > 0) {
    ASSIGN_OR_RETURN(image::Record data, NextPageData(r, v, bytes_left));
    uint64_t at = r.offset();  // the payload's first byte in the stream
    uint64_t need = data.len / kPage;
    while (need > 0) {
      const uint64_t take = std::min(runs[ri].nr_pages - roff, need);
      ctx.lazy_runs.push_back({runs[ri].addr + roff * kPage, take, at});
      at += take * kPage;
      roff += take;
      need -= take;
      if (roff == runs[ri].nr_pages) {
        ++ri;
        roff = 0;
      }
    }
    ASSIGN_OR_RETURN(bool skipped, r.SkipUnread(data.len));
    if (!skipped) {
      return absl::FailedPreconditionError(
          "a lazy restore needs an image it can seek in (a file), not a pipe or a socket");
    }
    bytes_left -= data.len;
  }
  return total;
}

absl::StatusOr<uint64_t> FillPageArray(image::Reader& r, MmRestoreContext& ctx, Stage& stage,
                                       const image::ckpt_vma& v, uint64_t pages_left,
                                       uint64_t* last_end, MmStats* stats) {
  uint64_t total = 0;
  ASSIGN_OR_RETURN(std::vector<image::ckpt_page_run> runs,
                   ReadArrayRuns(r, v, pages_left, last_end, &total));
  if (stage.used + total * kPage <= stage.capacity) {
    // Staged: populate with the mappings' batch, write with the stage.
    RETURN_IF_ERROR(ctx.queue->Reserve(runs.size(), 0));
    if (ctx.populate) QueuePopulate(ctx.queue->batch(), runs, 0, total);
    uint64_t bytes_left = total * kPage;
    uint8_t* dst = stage.buffer.data() + stage.used;
    while (bytes_left > 0) {
      ASSIGN_OR_RETURN(image::Record data, NextPageData(r, v, bytes_left));
      RETURN_IF_ERROR(r.ReadPayload(dst, data.len));
      dst += data.len;
      bytes_left -= data.len;
    }
    for (const image::ckpt_page_run& run : runs) {
      stage.remote.push_back({reinterpret_cast<void*>(run.addr), run.nr_pages * kPage});
    }
    stage.used += total * kPage;
    stats->pages += total;
    stats->bytes += total * kPage;
    return total;
  }
  RETURN_IF_ERROR(FlushStage(ctx, stage));
  RETURN_IF_ERROR(ctx.queue->Flush());  // the mappings exist from here on

  // The task populates its pages (MADV_POPULATE_WRITE, far cheaper than a
  // fault per page) one window ahead of the writes, while this process
  // reads the image and fills the window before: the two run in parallel.
  task::Injector& injector = *ctx.queue->injector();
  task::SyscallBatch populate = injector.NewBatch();
  uint64_t populated = 0;  // pages of the array a populate was started for
  auto populate_ahead = [&](uint64_t upto) -> absl::Status {
    upto = std::min(upto, total);
    if (!ctx.populate || upto <= populated) return absl::OkStatus();
    populate.Clear();
    QueuePopulate(populate, runs, populated, upto);
    populated = upto;
    return injector.Start(populate);
  };
  RETURN_IF_ERROR(populate_ahead(kPopulateWindow));

  size_t ri = 0;
  uint64_t roff = 0;  // pages of runs[ri] already filled
  uint64_t filled = 0;
  uint64_t bytes_left = total * kPage;
  std::vector<struct iovec> remote;
  while (bytes_left > 0) {
    ASSIGN_OR_RETURN(image::Record data, NextPageData(r, v, bytes_left));
    ASSIGN_OR_RETURN(uint8_t * buf, ctx.buffer->Get(data.len));
    int64_t t0 = MonotonicNs();
    RETURN_IF_ERROR(r.ReadPayload(buf, data.len));
    int64_t t1 = MonotonicNs();
    stats->read_ns += t1 - t0;
    RETURN_IF_ERROR(injector.Wait(populate));
    stats->wait_ns += MonotonicNs() - t1;
    const uint64_t pages = data.len / kPage;
    RETURN_IF_ERROR(populate_ahead(filled + pages + kPopulateWindow));
    remote.clear();
    uint64_t need = data.len;
    while (need > 0) {
      uint64_t take = std::min((runs[ri].nr_pages - roff) * kPage, need);
      remote.push_back({reinterpret_cast<void*>(runs[ri].addr + roff * kPage), take});
      roff += take / kPage;
      need -= take;
      if (roff == runs[ri].nr_pages) {
        ++ri;
        roff = 0;
      }
    }
    struct iovec local = {buf, data.len};
    t0 = MonotonicNs();
    absl::Status st = task::WriteRemoteV(ctx.pid, &local, 1, remote.data(), remote.size());
    stats->write_ns += MonotonicNs() - t0;
    if (!st.ok()) return Annotate(st, absl::StrCat("filling pages of task ", ctx.pid));
    filled += pages;
    bytes_left -= data.len;
    stats->pages += pages;
    stats->bytes += data.len;
  }
  RETURN_IF_ERROR(injector.Wait(populate));
  return total;
}

}  // namespace

namespace {

// One shmat() of a SysV segment, and the parts of it the image's VMAs
// cover.
struct ShmAttachment {
  uint64_t size = 0;
  std::vector<std::pair<uint64_t, uint64_t>> covered;
};

// A VMA of a SysV shm attachment: the first (at offset 0) attaches the
// whole segment there; every VMA then gets its own protection.
absl::Status AttachShm(image::Reader& r, MmRestoreContext& ctx, const image::ckpt_vma& v,
                       std::map<uint64_t, ShmAttachment>& attachments) {
  ASSIGN_OR_RETURN(const objhash::RestoredObject* shm,
                   ctx.objects->Get(v.file_ref, objhash::ObjKind::kShm));
  if (shm->owner_ref != ctx.ipc_ns_ref) {
    // shmat takes an id of the task's own namespace: another namespace's
    // segment would be some other segment with that id.
    return r.FieldError("file_ref", v.file_ref, " is a SysV segment of IPC namespace ",
                        shm->owner_ref, ", not of the task's (", ctx.ipc_ns_ref, ")");
  }
  const uint64_t size = (std::any_cast<uint64_t>(shm->data) + kPage - 1) & ~(kPage - 1);
  const uint64_t base = v.start - v.pgoff;
  if (v.pgoff + (v.end - v.start) > size) {
    return r.FieldError("end", "the attachment is longer than its segment (", size, " bytes)");
  }
  task::SyscallQueue& q = *ctx.queue;
  auto it = attachments.find(base);
  if (it == attachments.end()) {
    if (v.pgoff != 0) {
      return absl::UnimplementedError(absl::StrCat(
          "a SysV shm attachment whose first page was unmapped (at 0x", absl::Hex(v.start),
          ") is not supported"));
    }
    uint64_t flags = (v.prot & PROT_WRITE) ? 0 : SHM_RDONLY;
    if (v.prot & PROT_EXEC) flags |= SHM_EXEC;
    RETURN_IF_ERROR(q.Reserve(1, 0));
    q.batch().Add(SYS_shmat, {static_cast<uint64_t>(shm->id), base, flags});
    it = attachments.emplace(base, ShmAttachment{size, {}}).first;
  }
  it->second.covered.push_back({v.start, v.end});
  RETURN_IF_ERROR(q.Reserve(1, 0));
  q.batch().Add(SYS_mprotect, {v.start, v.end - v.start, v.prot});
  return absl::OkStatus();
}

// The INHERITED record of a task forked from its restored parent: runs
// of pages kept, ascending, each inside a VMA of the parent that a fork
// passes on (listed in `kept`, ascending, once each).
absl::StatusOr<std::vector<image::ckpt_page_run>> ReadInherited(
    image::Reader& r, const RestoredMm& parent, std::vector<const image::ckpt_vma*>* kept) {
  ASSIGN_OR_RETURN(image::ckpt_inherited head,
                   r.Expect<image::ckpt_inherited>(image::CKPT_HDR_INHERITED));
  if (head.total_runs > image::kMaxInheritedRuns ||
      head.total_runs * sizeof(image::ckpt_page_run) != r.payload_remaining()) {
    return r.FieldError("total_runs", head.total_runs, " does not match the ",
                        r.payload_remaining(), " bytes of runs");
  }
  ASSIGN_OR_RETURN(std::vector<uint8_t> raw,
                   r.ReadArray(sizeof(image::ckpt_page_run), image::kMaxInheritedRuns, "runs"));
  std::vector<image::ckpt_page_run> runs(raw.size() / sizeof(image::ckpt_page_run));
  if (!runs.empty()) std::memcpy(runs.data(), raw.data(), raw.size());
  uint64_t pages = 0;
  uint64_t last_end = 0;
  size_t pv = 0;
  for (const image::ckpt_page_run& run : runs) {
    if (run.addr % kPage || run.nr_pages == 0 || run.addr < last_end ||
        run.nr_pages > (kUserSpaceEnd - run.addr) / kPage) {
      return r.FieldError("runs", absl::StrFormat("run 0x%x+%u is not a page range after 0x%x",
                                                  run.addr, run.nr_pages, last_end));
    }
    last_end = run.addr + run.nr_pages * kPage;
    pages += run.nr_pages;
    while (pv < parent.vmas.size() && parent.vmas[pv].end <= run.addr) ++pv;
    if (pv == parent.vmas.size() || parent.vmas[pv].start > run.addr ||
        parent.vmas[pv].end < last_end ||
        !KeepableFromParent(parent.vmas[pv], parent.vmas[pv])) {
      return r.FieldError("runs", absl::StrFormat(
                                      "run 0x%x+%u is not inside a private VMA of the parent that "
                                      "a fork passes on",
                                      run.addr, run.nr_pages));
    }
    if (kept->empty() || kept->back() != &parent.vmas[pv]) kept->push_back(&parent.vmas[pv]);
  }
  if (pages != head.total_pages) {
    return r.FieldError("total_pages", head.total_pages, " differs from the ", pages,
                        " pages of its runs");
  }
  return runs;
}

}  // namespace

bool LazyEligible(const image::ckpt_vma& v) {
  constexpr uint64_t kMinPages = 16;
  constexpr uint64_t kEager = image::kAdvLocked | image::kAdvLockOnFault | image::kAdvSealed |
                              image::kAdvWipeOnFork | image::kAdvDontFork;
  return (v.kind == image::kVmaAnon || v.kind == image::kVmaHeap) &&
         (v.flags & 0x0f) == MAP_PRIVATE && (v.flags & MAP_ANONYMOUS) &&
         !(v.flags & MAP_GROWSDOWN) && v.prot != PROT_NONE && !(v.advice & kEager) &&
         v.nr_pages >= kMinPages;
}

absl::StatusOr<RestorerLayout> ReadRestorerLayout() {
  ASSIGN_OR_RETURN(std::string text, ReadFile("/proc/self/maps"));
  RestorerLayout layout;
  ASSIGN_OR_RETURN(layout.all, ParseMaps(text));
  for (const Vma& v : layout.all) {
    if (v.name == "[vdso]" || v.name == "[vvar]" || v.name == "[vvar_vclock]") {
      layout.vdso_family.push_back(v);
    }
  }
  if (layout.vdso_family.empty()) {
    return absl::FailedPreconditionError("the restorer has no [vdso]");
  }
  uint64_t span = layout.vdso_family.back().end - layout.vdso_family.front().start;
  if (span > kFreeAreaSize - kParkOffset) {
    return absl::FailedPreconditionError("the restorer's vdso mappings are spread too far apart");
  }
  return layout;
}

absl::Status RestoreMm(image::Reader& r, MmRestoreContext& ctx, MmStats* stats) {
  ASSIGN_OR_RETURN(image::ckpt_mm mm, r.Expect<image::ckpt_mm>(image::CKPT_HDR_MM));
  if (mm.nr_vmas > image::kMaxVmas) return r.FieldError("nr_vmas", mm.nr_vmas, " is too many");
  if (mm.nr_auxv > image::kMaxAuxvWords || mm.nr_auxv % 2 ||
      uint64_t{mm.nr_auxv} * 8 != r.payload_remaining()) {
    return r.FieldError("nr_auxv", mm.nr_auxv, " does not match the ", r.payload_remaining(),
                        " bytes of auxv");
  }
  ASSIGN_OR_RETURN(std::vector<uint8_t> auxv, r.ReadArray(8, image::kMaxAuxvWords, "auxv"));
  ASSIGN_OR_RETURN(const objhash::RestoredObject* exe,
                   ctx.objects->Get(mm.exe_ref, objhash::ObjKind::kMappedFile));
  task::SyscallQueue& q = *ctx.queue;
  // The sum of the VMAs' page counts (checked against them below): it
  // sizes the staging buffer, so it is bounded before use.
  if (mm.nr_pages > kUserSpaceEnd / kPage) {
    return r.FieldError("nr_pages", mm.nr_pages, " is more pages than an address space holds");
  }
  Stage stage;
  stage.capacity = std::min<uint64_t>(kStageBytes, mm.nr_pages * kPage);
  if (stage.capacity > 0) {
    ASSIGN_OR_RETURN(uint8_t * staging, stage.buffer.Get(stage.capacity));
    (void)staging;
  }

  // A task forked from its restored parent keeps the parent's VMAs that
  // hold pages it still shares (INHERITED); its vdso family is where the
  // parent's is.
  std::vector<image::ckpt_page_run> inherited;
  std::vector<const image::ckpt_vma*> kept;  // the parent's VMAs kept, ascending
  std::vector<Vma> parent_family;
  if (ctx.parent != nullptr) {
    ASSIGN_OR_RETURN(inherited, ReadInherited(r, *ctx.parent, &kept));
    for (const image::ckpt_vma& v : ctx.parent->vmas) {
      if (const char* name = FamilyName(v.kind)) {
        Vma f;
        f.start = v.start;
        f.end = v.end;
        f.name = name;
        parent_family.push_back(std::move(f));
      }
      if (v.advice & image::kAdvSealed) {
        // Sealed in the parent before the fork, it could not be unmapped.
        return absl::InvalidArgumentError(absl::StrFormat(
            "task %d inherits the memory of a parent with a sealed VMA (0x%x), which a fork "
            "passes on and nothing unmaps (TASK_ENTRY flags)",
            ctx.pid, v.start));
      }
    }
    if (parent_family.empty() ||
        parent_family.back().end - parent_family.front().start > kFreeAreaSize - kParkOffset) {
      return absl::FailedPreconditionError(absl::StrCat(
          "task ", ctx.pid, ": its parent's vdso mappings (whose memory it inherits) are missing "
          "or spread too far apart"));
    }
  }
  // Park the vdso family in the free area, then clear everything else.
  const std::vector<Vma>& family = ctx.parent != nullptr ? parent_family : ctx.layout->vdso_family;
  const uint64_t park = ctx.free_area + kParkOffset;
  const uint64_t area_end = ctx.free_area + kFreeAreaSize;
  std::vector<uint64_t> parked(family.size());
  std::vector<bool> placed(family.size(), false);
  RETURN_IF_ERROR(q.Reserve(family.size() + 2, 0));
  for (size_t i = 0; i < family.size(); ++i) {
    parked[i] = park + (family[i].start - family.front().start);
    q.batch().Add(SYS_mremap, {family[i].start, family[i].size(), family[i].size(),
                               MREMAP_MAYMOVE | MREMAP_FIXED, parked[i]});
  }
  {
    // Everything but the free area and the kept VMAs (which do not overlap
    // it: the parent's VMAs were checked against the same area).
    std::vector<std::pair<uint64_t, uint64_t>> keep = {{ctx.free_area, area_end}};
    for (const image::ckpt_vma* k : kept) keep.push_back({k->start, k->end});
    std::sort(keep.begin(), keep.end());
    keep.push_back({kUserSpaceEnd, kUserSpaceEnd});
    uint64_t at = 0;
    for (const auto& [lo, hi] : keep) {
      if (lo > at) {
        RETURN_IF_ERROR(q.Reserve(1, 0));
        q.batch().Add(SYS_munmap, {at, lo - at});
      }
      at = std::max(at, hi);
    }
  }
  RETURN_IF_ERROR(q.Flush());

  uint64_t prev_end = 0;
  std::map<uint64_t, ShmAttachment> attachments;
  uint64_t vma_pages = 0;
  size_t ki = 0;  // the next kept VMA
  size_t ii = 0;  // the next inherited run
  for (uint32_t i = 0; i < mm.nr_vmas; ++i) {
    ASSIGN_OR_RETURN(image::ckpt_vma v, r.Expect<image::ckpt_vma>(image::CKPT_HDR_VMA));
    RETURN_IF_ERROR(ValidateVma(r, v, prev_end, ctx.free_area));
    prev_end = v.end;
    ++stats->vmas;
    if (ctx.restored != nullptr) ctx.restored->vmas.push_back(v);
    const uint64_t len = v.end - v.start;
    // Kept from the parent: it must be the same mapping. Pages it does not
    // share are dropped (zero, or the file's again), then its own written.
    const bool keep = ki < kept.size() && kept[ki]->start < v.end;
    if (keep) {
      if (kept[ki]->start < v.start || !KeepableFromParent(v, *kept[ki])) {
        return r.FieldError("start", absl::StrFormat(
                                         "the VMA 0x%x-0x%x is not the parent's mapping at 0x%x, "
                                         "whose pages it keeps (INHERITED)",
                                         v.start, v.end, kept[ki]->start));
      }
      ++ki;
    } else if (const char* name = FamilyName(v.kind)) {
      size_t k = 0;
      while (k < family.size() && family[k].name != name) ++k;
      if (k == family.size() || placed[k]) {
        return absl::FailedPreconditionError(absl::StrCat(
            "the image has a ", name, " mapping this kernel does not provide: the vdso layouts "
            "differ (dumped on another kernel?)"));
      }
      if (family[k].size() != len) {
        return absl::FailedPreconditionError(absl::StrCat(
            "the image's ", name, " is ", len, " bytes, this kernel's is ", family[k].size(),
            ": the vdso layouts differ (dumped on another kernel?)"));
      }
      RETURN_IF_ERROR(q.Reserve(1, 0));
      q.batch().Add(SYS_mremap, {parked[k], len, len, MREMAP_MAYMOVE | MREMAP_FIXED, v.start});
      placed[k] = true;
      if (v.kind == image::kVmaVdso) ctx.vdso_start = v.start;
      continue;
    } else if (v.kind == image::kVmaSysvShm) {
      RETURN_IF_ERROR(AttachShm(r, ctx, v, attachments));
      continue;
    }
    const bool lazy = ctx.lazy && !keep && LazyEligible(v);
    const bool fill = v.nr_pages > 0 && !lazy;
    vma_pages += v.nr_pages;
    const uint32_t prot = fill ? (v.prot | PROT_READ | PROT_WRITE) : v.prot;
    if (keep) {
      if (prot != v.prot) {
        RETURN_IF_ERROR(q.Reserve(1, 0));
        q.batch().Add(SYS_mprotect, {v.start, len, prot});
      }
      uint64_t at = v.start;
      auto drop_to = [&](uint64_t to) -> absl::Status {
        if (to > at) {
          RETURN_IF_ERROR(q.Reserve(1, 0));
          q.batch().Add(SYS_madvise, {at, to - at, MADV_DONTNEED});
        }
        return absl::OkStatus();
      };
      for (; ii < inherited.size() && inherited[ii].addr < v.end; ++ii) {
        RETURN_IF_ERROR(drop_to(inherited[ii].addr));
        at = inherited[ii].addr + inherited[ii].nr_pages * kPage;
      }
      RETURN_IF_ERROR(drop_to(v.end));
    } else {
      int fd = -1;
      if (v.kind == image::kVmaFile || v.kind == image::kVmaShmem) {
        ASSIGN_OR_RETURN(const objhash::RestoredObject* file,
                         ctx.objects->Get(v.file_ref, v.kind == image::kVmaFile
                                                          ? objhash::ObjKind::kMappedFile
                                                          : kObjShmem));
        fd = file->fd;
      }
      RETURN_IF_ERROR(q.Reserve(12, 0));
      q.batch().Add(SYS_mmap, {v.start, len, prot, v.flags | MAP_FIXED,
                               static_cast<uint64_t>(static_cast<int64_t>(fd)), v.pgoff});
      QueueAdvice(q.batch(), v);
    }
    uint64_t pages_left = v.nr_pages;
    uint64_t last_end = v.start;
    if (lazy) ctx.lazy_vmas.push_back({v.start, v.end});
    while (pages_left > 0) {
      ASSIGN_OR_RETURN(uint64_t filled,
                       lazy ? SkipPageArray(r, ctx, v, pages_left, &last_end)
                            : FillPageArray(r, ctx, stage, v, pages_left, &last_end, stats));
      pages_left -= filled;
    }
    if (prot != v.prot) stage.after.push_back({SYS_mprotect, v.start, len, v.prot});
    if (v.advice & image::kAdvLockOnFault) {
      stage.after.push_back({SYS_mlock2, v.start, len, MLOCK_ONFAULT});
    } else if (v.advice & image::kAdvLocked) {
      stage.after.push_back({SYS_mlock, v.start, len, 0});
    }
    // Sealed last: nothing may change the VMA after that.
    if (v.advice & image::kAdvSealed) stage.after.push_back({kSysMseal, v.start, len, 0});
  }
  if (ki != kept.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "image record INHERITED: field 'runs': pages at 0x%x are kept from the parent, but no VMA "
        "of the task is there",
        kept[ki]->start));
  }
  if (vma_pages != mm.nr_pages) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image record MM: field 'nr_pages': ", mm.nr_pages, " differs from the ", vma_pages,
        " pages its VMAs carry"));
  }
  RETURN_IF_ERROR(FlushStage(ctx, stage));
  // What an attachment covered beyond its recorded VMAs had been unmapped.
  for (const auto& [base, a] : attachments) {
    uint64_t at = base;
    std::vector<std::pair<uint64_t, uint64_t>> covered = a.covered;
    std::sort(covered.begin(), covered.end());
    for (const auto& [lo, hi] : covered) {
      if (lo > at) {
        RETURN_IF_ERROR(q.Reserve(1, 0));
        q.batch().Add(SYS_munmap, {at, lo - at});
      }
      at = std::max(at, hi);
    }
    if (at < base + a.size) {
      RETURN_IF_ERROR(q.Reserve(1, 0));
      q.batch().Add(SYS_munmap, {at, base + a.size - at});
    }
  }
  const bool none_placed = std::none_of(placed.begin(), placed.end(), [](bool p) { return p; });
  if (none_placed) {
    // The task had unmapped its whole vdso family: it comes back without.
    for (size_t k = 0; k < family.size(); ++k) {
      RETURN_IF_ERROR(q.Reserve(1, 0));
      q.batch().Add(SYS_munmap, {parked[k], family[k].size()});
    }
    ctx.vdso_start = 0;
  } else {
    for (size_t k = 0; k < family.size(); ++k) {
      if (!placed[k]) {
        return absl::FailedPreconditionError(absl::StrCat(
            "the image has no ", family[k].name, " mapping but this kernel provides one: the "
            "vdso layouts differ (dumped on another kernel?)"));
      }
    }
    if (ctx.vdso_start == 0) return absl::FailedPreconditionError("the image has no [vdso]");
  }

  struct prctl_mm_map map {};
  map.start_code = mm.start_code;
  map.end_code = mm.end_code;
  map.start_data = mm.start_data;
  map.end_data = mm.end_data;
  map.start_brk = mm.start_brk;
  map.brk = mm.brk;
  map.start_stack = mm.start_stack;
  map.arg_start = mm.arg_start;
  map.arg_end = mm.arg_end;
  map.env_start = mm.env_start;
  map.env_end = mm.env_end;
  map.auxv_size = static_cast<uint32_t>(auxv.size());
  // The task is a copy of the restorer, so its exe link is already the
  // restorer's: left as it is when that is the image's executable (the
  // kernel refuses to switch away from an exe that is still mapped).
  struct stat exe_st, own_st;
  bool same_exe = fstat(exe->fd, &exe_st) == 0 && stat("/proc/self/exe", &own_st) == 0 &&
                  exe_st.st_dev == own_st.st_dev && exe_st.st_ino == own_st.st_ino;
  map.exe_fd = same_exe ? ~0u : static_cast<uint32_t>(exe->fd);
  if (ctx.parent != nullptr) {
    // Forked from the parent, it has the parent's executable already.
    if (mm.exe_ref != ctx.parent->exe_ref) {
      return absl::InvalidArgumentError(absl::StrCat(
          "image record MM: field 'exe_ref': ", mm.exe_ref, " differs from the parent's (",
          ctx.parent->exe_ref, "), whose memory the task inherits"));
    }
    map.exe_fd = ~0u;
  }
  if (ctx.restored != nullptr) ctx.restored->exe_ref = mm.exe_ref;
  RETURN_IF_ERROR(q.Reserve(1, auxv.size() + sizeof(map) + 32));
  map.auxv = reinterpret_cast<__u64*>(q.batch().AddData(auxv.data(), auxv.size()));
  uint64_t map_addr = q.batch().AddStruct(map);
  q.batch().Add(SYS_prctl, {PR_SET_MM, PR_SET_MM_MAP, map_addr, sizeof(map), 0});
  absl::Status st = q.Flush();
  if (!st.ok()) return Annotate(st, "restoring the mm fields (PR_SET_MM_MAP)");
  return absl::OkStatus();
}

namespace {

[[maybe_unused]] const bool kRegistered =
    objhash::RegisterHandler({kObjShmem, "SHMEM", image::CKPT_HDR_SHMEM, CheckpointShmem,
                              RestoreShmem}) &&
    objhash::RegisterHandler({objhash::ObjKind::kMappedFile, "MAPPED_FILE",
                              image::CKPT_HDR_MAPPED_FILE, CheckpointMappedFile,
                              RestoreMappedFile});

}  // namespace

}  // namespace ckpt::mm
