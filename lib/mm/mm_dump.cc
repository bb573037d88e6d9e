// The dump half of the mm section: CollectMm and WriteMm.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <set>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/mm/mapped_file.h"
#include "lib/mm/mm.h"
#include "lib/mm/shmem.h"
#include "lib/base/buffer.h"
#include "lib/task/proc.h"
#include "lib/task/remote.h"

namespace ckpt::mm {
namespace {

constexpr uint64_t kPage = 4096;
// Page contents go out in PAGE_DATA records of this size.
constexpr uint64_t kDumpChunkBytes = 8ull << 20;
// From this many bytes of pages on, a second thread copies them.
constexpr uint64_t kThreadedCopyBytes = 32ull << 20;

std::string Describe(pid_t pid, const Vma& v) {
  return absl::StrFormat("task %d: mapping %x-%x%s%s", pid, v.start, v.end,
                         v.name.empty() ? "" : " ", v.name);
}

uint64_t AdviceOf(uint64_t vm_flags) {
  uint64_t a = 0;
  if (vm_flags & kVmHugepage) a |= image::kAdvHugepage;
  if (vm_flags & kVmNoHugepage) a |= image::kAdvNoHugepage;
  if (vm_flags & kVmDontDump) a |= image::kAdvDontDump;
  if (vm_flags & kVmDontCopy) a |= image::kAdvDontFork;
  if (vm_flags & kVmWipeOnFork) a |= image::kAdvWipeOnFork;
  if (vm_flags & kVmMergeable) a |= image::kAdvMergeable;
  if (vm_flags & kVmLocked) a |= image::kAdvLocked;
  if (vm_flags & kVmSeqRead) a |= image::kAdvSequential;
  if (vm_flags & kVmRandRead) a |= image::kAdvRandom;
  if (vm_flags & kVmLockOnFault) a |= image::kAdvLockOnFault;
  if (vm_flags & kVmSealed) a |= image::kAdvSealed;
  return a;
}

// Kinds whose VMA maps an object (a file, a segment, shared memory).
bool FileBacked(uint32_t kind) {
  return kind == image::kVmaFile || kind == image::kVmaSysvShm || kind == image::kVmaShmem;
}

bool IsAnonName(const std::string& name) {
  return name.empty() || absl::StartsWith(name, "[anon:") || name == "[heap]" || name == "[stack]";
}

bool IsShmemName(const std::string& name) {
  return absl::StartsWith(name, "/memfd:") || name == "/dev/zero" ||
         absl::StartsWith(name, "[anon_shmem:");
}

}  // namespace

absl::Status RefuseVma(pid_t pid, const Vma& v, bool deleted_files_ok) {
  if (v.vm_flags & kVmUffd) {
    return absl::UnimplementedError(
        absl::StrCat(Describe(pid, v), " is registered with userfaultfd: not supported"));
  }
  if (v.vm_flags & kVmShadowStack) {
    return absl::UnimplementedError(
        absl::StrCat(Describe(pid, v), " is a shadow stack: not supported"));
  }
  if (v.name == "[vdso]" || v.name == "[vvar]" || v.name == "[vvar_vclock]") return absl::OkStatus();
  if (v.vm_flags & (kVmIo | kVmPfnMap)) {
    return absl::UnimplementedError(
        absl::StrCat(Describe(pid, v), " maps device memory: not supported"));
  }
  if (v.vm_flags & kVmHugetlb) {
    return absl::UnimplementedError(absl::StrCat(
        Describe(pid, v), " is a hugetlb mapping (MAP_HUGETLB, SHM_HUGETLB, hugetlbfs): not supported"));
  }
  if (IsAnonName(v.name)) {
    if (v.shared) {
      return absl::UnimplementedError(absl::StrCat(
          Describe(pid, v), " is a shared mapping of a kind libckpt does not know"));
    }
    return absl::OkStatus();
  }
  if (absl::StartsWith(v.name, "/SYSV")) return absl::OkStatus();
  if (IsShmemName(v.name)) return absl::OkStatus();
  if (v.deleted && !(v.is_file() && deleted_files_ok)) {
    return absl::UnimplementedError(absl::StrCat(Describe(pid, v), " (deleted) is not supported"));
  }
  if (absl::StartsWith(v.name, "socket:[")) {
    // A socket's own pages: a packet socket's PACKET_RX_RING/TX_RING, or
    // a TCP receive zerocopy (TCP_ZEROCOPY_RECEIVE) mapping.
    return absl::UnimplementedError(absl::StrCat(
        Describe(pid, v), " maps a socket's ring (a packet socket's PACKET_RX_RING or PACKET_TX_RING, or TCP "
                          "zerocopy receive): not supported (the kernel's place in a ring cannot be set again)"));
  }
  if (!v.is_file()) {
    return absl::UnimplementedError(
        absl::StrCat(Describe(pid, v), " is a special mapping libckpt does not know"));
  }
  return absl::OkStatus();
}

namespace {

// Sets rec.kind (and for files, rec.file_ref) of a VMA RefuseVma let
// through.
absl::Status Classify(pid_t pid, const Vma& v, objhash::ObjHash& objects,
                      const CollectOptions& options, image::ckpt_vma* rec) {
  RETURN_IF_ERROR(RefuseVma(pid, v, static_cast<bool>(options.register_deleted)));
  if (v.name == "[vdso]") {
    rec->kind = image::kVmaVdso;
  } else if (v.name == "[vvar]") {
    rec->kind = image::kVmaVvar;
  } else if (v.name == "[vvar_vclock]") {
    rec->kind = image::kVmaVvarVclock;
  } else if (v.name == "[heap]") {
    rec->kind = image::kVmaHeap;
  } else if (v.name == "[stack]") {
    rec->kind = image::kVmaStack;
  } else if (IsAnonName(v.name) || (v.name == "/dev/zero" && !v.shared)) {
    // A private mapping of /dev/zero is anonymous memory to the kernel
    // (it comes back without the name).
    rec->kind = image::kVmaAnon;
  } else if (absl::StartsWith(v.name, "/SYSV")) {
    // A SysV shm attachment: the segment was registered with the IPC
    // namespace (its inode number is its id).
    rec->kind = image::kVmaSysvShm;
    struct stat ns;
    const std::string ns_path = absl::StrCat("/proc/", pid, "/ns/ipc");
    if (stat(ns_path.c_str(), &ns) != 0) return ErrnoError(errno, "stat ", ns_path);
    ASSIGN_OR_RETURN(rec->file_ref,
                     objects.Lookup(objhash::ObjKind::kShm,
                                    objhash::Identity::OfIpcId(ns.st_ino, static_cast<int>(v.ino))));
    if (rec->file_ref == 0) {
      return absl::UnavailableError(absl::StrCat(
          Describe(pid, v), " attaches SysV segment ", v.ino,
          ", which was not in the IPC namespace a moment ago: it changed during the dump; retry"));
    }
  } else if (IsShmemName(v.name)) {
    bool memfd = absl::StartsWith(v.name, "/memfd:");
    rec->kind = image::kVmaShmem;
    std::string name = memfd ? v.name.substr(7) : std::string();
    ASSIGN_OR_RETURN(rec->file_ref,
                     RegisterShmemMapping(objects, pid, v.start, v.end, v.offset, v.shared, memfd, name,
                                          makedev(v.dev_major, v.dev_minor), v.ino));
  } else {
    // A file, or a deleted one (RefuseVma let it through only when it can
    // be saved).
    rec->kind = image::kVmaFile;
    uint32_t ghost = 0;
    if (v.deleted) {
      absl::StatusOr<uint32_t> g = options.register_deleted(pid, v);
      if (!g.ok()) return Annotate(g.status(), Describe(pid, v));
      ghost = *g;
    }
    bool writable = v.shared && ((v.prot & PROT_WRITE) || (v.vm_flags & kVmMayWrite));
    absl::StatusOr<uint32_t> ref = RegisterMappedFile(
        objects, v.name, makedev(v.dev_major, v.dev_minor), v.ino, writable, ghost);
    if (!ref.ok()) return Annotate(ref.status(), Describe(pid, v));
    rec->file_ref = *ref;
  }
  if (v.shared && !FileBacked(rec->kind)) {
    return absl::UnimplementedError(absl::StrCat(
        Describe(pid, v), " is a shared mapping of a kind libckpt does not know"));
  }
  return absl::OkStatus();
}

bool IsVdsoFamily(uint32_t kind) {
  return kind == image::kVmaVdso || kind == image::kVmaVvar || kind == image::kVmaVvarVclock;
}

uint64_t ChooseFreeArea(const std::vector<Vma>& vmas) {
  // High, round addresses first: far from the heap, libraries and stack,
  // from 32 TiB up (16 TiB lies inside AddressSanitizer's shadow, which a
  // restorer built with it holds), then 16 TiB.
  constexpr uint64_t kStep = 0x100000000000ull;
  for (uint64_t addr = 2 * kStep; addr < kUserSpaceEnd; addr += kStep) {
    if (IsFreeArea(vmas, addr)) return addr;
  }
  if (IsFreeArea(vmas, kStep)) return kStep;
  // Otherwise the first gap from the top that is large enough.
  for (size_t i = vmas.size(); i-- > 0;) {
    uint64_t gap_end = i + 1 < vmas.size() ? vmas[i + 1].start : kUserSpaceEnd;
    uint64_t addr = (gap_end - kFreeAreaSize) & ~(kFreeAreaSize - 1);
    if (gap_end > kFreeAreaSize && addr >= vmas[i].end && IsFreeArea(vmas, addr)) return addr;
  }
  return 0;
}

absl::StatusOr<std::vector<uint64_t>> ReadAuxv(pid_t pid) {
  ASSIGN_OR_RETURN(std::string raw, ReadFile(absl::StrCat("/proc/", pid, "/auxv")));
  std::vector<uint64_t> words(raw.size() / 8);
  std::memcpy(words.data(), raw.data(), words.size() * 8);
  // Keep up to and including the AT_NULL pair.
  for (size_t i = 0; i + 1 < words.size(); i += 2) {
    if (words[i] == 0) {
      words.resize(i + 2);
      break;
    }
  }
  if (words.size() > image::kMaxAuxvWords) {
    return absl::FailedPreconditionError(absl::StrCat("task ", pid, ": auxv of ", words.size(),
                                                      " words is too long"));
  }
  return words;
}

// Copies the pages `remote` names into buf. process_vm_readv needs the
// mapping readable; pages of a PROT_NONE or execute-only mapping are read
// through /proc/PID/mem, which may look past the protection.
absl::Status ReadPages(pid_t pid, bool readable, UniqueFd* mem,
                       const std::vector<struct iovec>& remote, uint8_t* buf, uint64_t bytes) {
  if (readable) {
    struct iovec local = {buf, bytes};
    return task::ReadRemoteV(pid, &local, 1, remote.data(), remote.size());
  }
  if (!mem->valid()) {
    ASSIGN_OR_RETURN(*mem, OpenFile(absl::StrCat("/proc/", pid, "/mem"), O_RDONLY));
  }
  uint64_t at = 0;
  for (const struct iovec& r : remote) {
    const uint64_t addr = reinterpret_cast<uint64_t>(r.iov_base);
    absl::StatusOr<size_t> done = PreadFull(mem->get(), buf + at, r.iov_len, addr);
    if (!done.ok() || *done < r.iov_len) {
      const std::string where = absl::StrFormat("reading /proc/%d/mem at 0x%x", pid, addr);
      return done.ok() ? ErrnoError(EIO, where, ": it ended early") : Annotate(done.status(), where);
    }
    at += r.iov_len;
  }
  return absl::OkStatus();
}

}  // namespace

bool IsFreeArea(const std::vector<Vma>& vmas, uint64_t addr) {
  uint64_t end = addr + kFreeAreaSize;
  if (addr < 0x10000 || end > kUserSpaceEnd) return false;
  for (const Vma& v : vmas) {
    if (v.start < end && addr < v.end) return false;
  }
  return true;
}

absl::StatusOr<MmDump> CollectMm(pid_t pid, uint64_t brk, objhash::ObjHash& objects,
                                 const CollectOptions& options) {
  MmDump mm;
  ASSIGN_OR_RETURN(std::vector<Vma> vmas, options.read_vmas ? options.read_vmas(pid) : ReadVmas(pid));
  ASSIGN_OR_RETURN(task::ProcStat proc, task::ReadProcStat(pid));
  ASSIGN_OR_RETURN(mm.auxv, ReadAuxv(pid));

  image::ckpt_mm& rec = mm.rec;
  rec.start_code = proc.start_code;
  rec.end_code = proc.end_code;
  rec.start_data = proc.start_data;
  rec.end_data = proc.end_data;
  rec.start_brk = proc.start_brk;
  rec.brk = brk;
  rec.start_stack = proc.start_stack;
  rec.arg_start = proc.arg_start;
  rec.arg_end = proc.arg_end;
  rec.env_start = proc.env_start;
  rec.env_end = proc.env_end;
  rec.nr_auxv = static_cast<uint32_t>(mm.auxv.size());

  std::string exe_link = absl::StrCat("/proc/", pid, "/exe");
  char exe[4096];
  ssize_t n = readlink(exe_link.c_str(), exe, sizeof(exe) - 1);
  if (n < 0) return ErrnoError(errno, "task ", pid, ": readlink ", exe_link);
  std::string exe_path(exe, static_cast<size_t>(n));
  if (absl::EndsWith(exe_path, " (deleted)")) {
    return absl::UnimplementedError(absl::StrCat("task ", pid, ": its executable ", exe_path,
                                                 " was deleted: not supported yet"));
  }
  struct stat exe_st;
  if (stat(exe_link.c_str(), &exe_st) != 0) return ErrnoError(errno, "stat ", exe_link);
  absl::StatusOr<uint32_t> exe_ref =
      RegisterMappedFile(objects, exe_path, exe_st.st_dev, exe_st.st_ino, false);
  if (!exe_ref.ok()) return Annotate(exe_ref.status(), absl::StrCat("task ", pid, ": executable"));
  rec.exe_ref = *exe_ref;

  ASSIGN_OR_RETURN(PageScanner scanner,
                   options.force_pagemap_file
                       ? PageScanner::Open(pid, PageScanner::Method::kPagemapFile)
                       : PageScanner::Open(pid));
  std::set<uint64_t> shm_bases;  // where each SysV attachment starts
  for (const Vma& v : vmas) {
    if (v.name == "[vsyscall]") continue;  // the kernel's, at a fixed address
    if (absl::StartsWith(v.name, "/SYSV")) {
      // The restore attaches the whole segment where its first page was,
      // then sets each part's protection: that first page must be there.
      if (v.offset == 0) {
        shm_bases.insert(v.start);
      } else if (v.offset > v.start || !shm_bases.count(v.start - v.offset)) {
        return absl::UnimplementedError(absl::StrCat(
            Describe(pid, v), ": an attachment of SysV segment ", v.ino,
            " whose first page was unmapped is not supported"));
      }
    }
    VmaDump d;
    d.name = v.name;
    image::ckpt_vma& r = d.rec;
    r.start = v.start;
    r.end = v.end;
    r.pgoff = v.offset;
    r.prot = v.prot;
    RETURN_IF_ERROR(Classify(pid, v, objects, options, &r));
    r.flags = v.shared ? MAP_SHARED : MAP_PRIVATE;
    if (!v.shared && (v.vm_flags & kVmDroppable) && r.kind == image::kVmaAnon) {
      r.flags = image::kMapDroppable;
    }
    if (!FileBacked(r.kind)) r.flags |= MAP_ANONYMOUS;
    if (v.vm_flags & kVmGrowsDown) r.flags |= MAP_GROWSDOWN;
    // Reserved without swap (huge address-space reservations: sanitizer
    // shadows, language runtimes' arenas): mapped so again, or the restore
    // runs into the overcommit limit.
    if ((v.vm_flags & kVmNoReserve) && !v.shared) r.flags |= MAP_NORESERVE;
    r.pgoff = FileBacked(r.kind) ? v.offset : 0;
    r.advice = AdviceOf(v.vm_flags);
    mm.vmas.push_back(std::move(d));
  }
  // One scan of the whole address space (a syscall per few thousand runs,
  // not one per VMA), its runs then handed to the VMAs that hold private
  // data; pages of the others (shared, vdso) are never saved.
  ScanResult scan;
  if (!mm.vmas.empty()) {
    RETURN_IF_ERROR(scanner.Scan(mm.vmas.front().rec.start, mm.vmas.back().rec.end, &scan));
  }
  mm.skipped_pages = scan.skipped;
  size_t vi = 0;
  for (const image::ckpt_page_run& run : scan.runs) {
    uint64_t addr = run.addr, end = run.addr + run.nr_pages * kPage;
    while (addr < end) {
      while (vi < mm.vmas.size() && mm.vmas[vi].rec.end <= addr) ++vi;
      if (vi == mm.vmas.size()) break;
      VmaDump& d = mm.vmas[vi];
      uint64_t lo = std::max(addr, d.rec.start), hi = std::min(end, d.rec.end);
      if (lo >= hi) {  // a gap between VMAs (cannot hold pages)
        addr = d.rec.start;
        continue;
      }
      uint64_t pages = (hi - lo) / kPage;
      if (!(d.rec.flags & MAP_SHARED) && !IsVdsoFamily(d.rec.kind)) {
        AppendRun(&d.runs, lo, pages);
        d.rec.nr_pages += pages;
        rec.nr_pages += pages;
      } else {
        mm.skipped_pages += pages;
      }
      addr = hi;
    }
  }
  rec.nr_vmas = static_cast<uint32_t>(mm.vmas.size());
  mm.free_area = ChooseFreeArea(vmas);
  if (mm.free_area == 0) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "task ", pid, ": no free ", kFreeAreaSize >> 20, " MiB area for the restore trampoline"));
  }
  return mm;
}

namespace {

// One PAGE_DATA record's worth of pages, to be copied out of the task.
struct Chunk {
  std::vector<struct iovec> remote;
  uint64_t bytes = 0;
  bool readable = true;
};

// What WriteMm emits after the MM record, in order.
struct Step {
  enum Kind { kVma, kRuns, kData } kind;
  const VmaDump* vma = nullptr;
  std::vector<image::ckpt_page_run> runs;  // kRuns
  size_t chunk = 0;                        // kData: index into chunks
};

// Splits the VMAs' runs into page arrays (at most kPagesPerArray pages and
// kMaxPageRuns runs) and their contents into chunks of at most
// `max_chunk` bytes.
void Plan(const MmDump& mm, uint64_t max_chunk, std::vector<Step>* steps,
          std::vector<Chunk>* chunks) {
  for (const VmaDump& d : mm.vmas) {
    steps->push_back({Step::kVma, &d, {}, 0});
    size_t r = 0;
    uint64_t off = 0;  // pages of d.runs[r] already planned
    while (r < d.runs.size()) {
      std::vector<image::ckpt_page_run> array;
      uint64_t array_pages = 0;
      while (r < d.runs.size() && array_pages < kPagesPerArray &&
             array.size() < image::kMaxPageRuns) {
        uint64_t take = std::min(d.runs[r].nr_pages - off, kPagesPerArray - array_pages);
        array.push_back({d.runs[r].addr + off * kPage, take});
        array_pages += take;
        off += take;
        if (off == d.runs[r].nr_pages) {
          ++r;
          off = 0;
        }
      }
      steps->push_back({Step::kRuns, &d, array, 0});
      size_t ai = 0;
      uint64_t aoff = 0;
      while (ai < array.size()) {
        Chunk c;
        c.readable = d.rec.prot & PROT_READ;
        while (ai < array.size() && c.bytes < max_chunk) {
          uint64_t take = std::min((array[ai].nr_pages - aoff) * kPage, max_chunk - c.bytes);
          c.remote.push_back({reinterpret_cast<void*>(array[ai].addr + aoff * kPage), take});
          c.bytes += take;
          aoff += take / kPage;
          if (aoff == array[ai].nr_pages) {
            ++ai;
            aoff = 0;
          }
        }
        steps->push_back({Step::kData, &d, {}, chunks->size()});
        chunks->push_back(std::move(c));
      }
    }
  }
}

// Copies chunks out of the task on a second thread, one chunk ahead of the
// writer, into two alternating buffers: copying out of the task and
// writing the image overlap.
class ChunkReader {
 public:
  ChunkReader(pid_t pid, const std::vector<Chunk>& chunks, uint8_t* bufs[2], bool threaded)
      : pid_(pid), chunks_(chunks), threaded_(threaded) {
    bufs_[0] = bufs[0];
    bufs_[1] = bufs[1];
    if (threaded_ && !chunks_.empty()) worker_ = std::thread([this] { Work(); });
  }
  ~ChunkReader() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
  }

  // The contents of chunk i (chunks are taken in order).
  absl::StatusOr<const uint8_t*> Take(size_t i) {
    if (!threaded_) {
      RETURN_IF_ERROR(Copy(i, bufs_[0]));
      return bufs_[0];
    }
    std::unique_lock<std::mutex> l(mu_);
    released_ = i;  // chunk i-1's buffer is free again
    cv_.notify_all();
    cv_.wait(l, [&] { return ready_ > i || !error_.ok(); });
    if (!error_.ok()) return error_;
    return bufs_[i % 2];
  }

 private:
  absl::Status Copy(size_t i, uint8_t* buf) {
    const Chunk& c = chunks_[i];
    return ReadPages(pid_, c.readable, &mem_, c.remote, buf, c.bytes);
  }

  void Work() {
    for (size_t i = 0; i < chunks_.size(); ++i) {
      {
        // Buffer i % 2 held chunk i-2, which the writer has finished with
        // once it asks for chunk i-1.
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return stop_ || i < released_ + 2; });
        if (stop_) return;
      }
      absl::Status st = Copy(i, bufs_[i % 2]);
      std::lock_guard<std::mutex> l(mu_);
      if (!st.ok()) {
        error_ = st;
        cv_.notify_all();
        return;
      }
      ready_ = i + 1;
      cv_.notify_all();
    }
  }

  pid_t pid_;
  const std::vector<Chunk>& chunks_;
  uint8_t* bufs_[2];
  bool threaded_;
  UniqueFd mem_;
  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  size_t ready_ = 0;     // chunks copied
  size_t released_ = 0;  // the writer has asked for chunk released_
  bool stop_ = false;
  absl::Status error_;
};

}  // namespace

absl::Status WriteMm(pid_t pid, const MmDump& mm, image::Writer& writer, MmStats* stats) {
  RETURN_IF_ERROR(writer.AppendStructWith(image::CKPT_HDR_MM, mm.rec, mm.auxv.data(),
                                          mm.auxv.size() * 8));
  if (mm.inherits) {
    image::ckpt_inherited rec{0, mm.inherited.size()};
    for (const image::ckpt_page_run& run : mm.inherited) rec.total_pages += run.nr_pages;
    RETURN_IF_ERROR(writer.AppendStructWith(image::CKPT_HDR_INHERITED, rec, mm.inherited.data(),
                                            mm.inherited.size() * sizeof(image::ckpt_page_run)));
  }
  // Small dumps copy inline through one buffer; large ones overlap the
  // copy with the writing through two.
  const uint64_t total = mm.rec.nr_pages * kPage;
  const bool threaded = total >= kThreadedCopyBytes;
  const uint64_t max_chunk = std::min<uint64_t>(kDumpChunkBytes, std::max<uint64_t>(total, kPage));
  std::vector<Step> steps;
  std::vector<Chunk> chunks;
  Plan(mm, max_chunk, &steps, &chunks);
  Buffer buffers[2];
  uint8_t* bufs[2] = {nullptr, nullptr};
  if (!chunks.empty()) {
    ASSIGN_OR_RETURN(bufs[0], buffers[0].Get(max_chunk));
    if (threaded) {
      ASSIGN_OR_RETURN(bufs[1], buffers[1].Get(max_chunk));
    }
  }
  ChunkReader reader(pid, chunks, bufs, threaded);
  for (const Step& s : steps) {
    switch (s.kind) {
      case Step::kVma:
        RETURN_IF_ERROR(writer.AppendStruct(image::CKPT_HDR_VMA, s.vma->rec));
        ++stats->vmas;
        break;
      case Step::kRuns:
        RETURN_IF_ERROR(writer.Append(image::CKPT_HDR_PAGE_RUNS, s.runs.data(),
                                      s.runs.size() * sizeof(image::ckpt_page_run)));
        break;
      case Step::kData: {
        const Chunk& c = chunks[s.chunk];
        absl::StatusOr<const uint8_t*> data = reader.Take(s.chunk);
        if (!data.ok()) return Annotate(data.status(), absl::StrCat("copying pages of task ", pid));
        RETURN_IF_ERROR(writer.Append(image::CKPT_HDR_PAGE_DATA, *data, c.bytes));
        stats->pages += c.bytes / kPage;
        stats->bytes += c.bytes;
        break;
      }
    }
  }
  stats->skipped_pages += mm.skipped_pages;
  return absl::OkStatus();
}

}  // namespace ckpt::mm
