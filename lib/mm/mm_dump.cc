// The dump half of the mm section: CollectMm and WriteMm.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/mm/mapped_file.h"
#include "lib/mm/mm.h"
#include "lib/mm/page_buffer.h"
#include "lib/task/proc.h"
#include "lib/task/remote.h"

namespace ckpt::mm {
namespace {

constexpr uint64_t kPage = 4096;

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
  return a;
}

// Sets rec.kind (and for files, rec.file_ref); refuses what is not
// supported yet, naming the mapping.
absl::Status Classify(pid_t pid, const Vma& v, objhash::ObjHash& objects, image::ckpt_vma* rec) {
  if (v.vm_flags & kVmUffd) {
    return absl::UnimplementedError(
        absl::StrCat(Describe(pid, v), " is registered with userfaultfd: not supported"));
  }
  if (v.vm_flags & kVmShadowStack) {
    return absl::UnimplementedError(
        absl::StrCat(Describe(pid, v), " is a shadow stack: not supported"));
  }
  if (v.name == "[vdso]") {
    rec->kind = image::kVmaVdso;
  } else if (v.name == "[vvar]") {
    rec->kind = image::kVmaVvar;
  } else if (v.name == "[vvar_vclock]") {
    rec->kind = image::kVmaVvarVclock;
  } else if (v.vm_flags & (kVmIo | kVmPfnMap)) {
    return absl::UnimplementedError(
        absl::StrCat(Describe(pid, v), " maps device memory: not supported"));
  } else if (v.name == "[heap]") {
    rec->kind = image::kVmaHeap;
  } else if (v.name == "[stack]") {
    rec->kind = image::kVmaStack;
  } else if (v.name.empty() || absl::StartsWith(v.name, "[anon:")) {
    rec->kind = image::kVmaAnon;
  } else if (v.deleted || absl::StartsWith(v.name, "/memfd:") ||
             absl::StartsWith(v.name, "/SYSV") || v.name == "/dev/zero" ||
             absl::StartsWith(v.name, "[anon_shmem:")) {
    return absl::UnimplementedError(absl::StrCat(
        Describe(pid, v), v.deleted ? " (deleted)" : "",
        " is shared memory or a deleted file: not supported yet"));
  } else if (v.is_file()) {
    rec->kind = image::kVmaFile;
    bool writable = v.shared && ((v.prot & PROT_WRITE) || (v.vm_flags & kVmMayWrite));
    absl::StatusOr<uint32_t> ref = RegisterMappedFile(
        objects, v.name, makedev(v.dev_major, v.dev_minor), v.ino, writable);
    if (!ref.ok()) return Annotate(ref.status(), Describe(pid, v));
    rec->file_ref = *ref;
  } else {
    return absl::UnimplementedError(
        absl::StrCat(Describe(pid, v), " is a special mapping libckpt does not know"));
  }
  if (v.shared && rec->kind != image::kVmaFile) {
    return absl::UnimplementedError(absl::StrCat(
        Describe(pid, v), " is shared anonymous memory: not supported yet"));
  }
  return absl::OkStatus();
}

bool IsVdsoFamily(uint32_t kind) {
  return kind == image::kVmaVdso || kind == image::kVmaVvar || kind == image::kVmaVvarVclock;
}

uint64_t ChooseFreeArea(const std::vector<Vma>& vmas) {
  // High, round addresses first: far from the heap, libraries and stack.
  for (uint64_t addr = 0x100000000000ull; addr < kUserSpaceEnd; addr += 0x100000000000ull) {
    if (IsFreeArea(vmas, addr)) return addr;
  }
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
    uint64_t done = 0;
    while (done < r.iov_len) {
      ssize_t n = pread(mem->get(), buf + at + done, r.iov_len - done,
                        static_cast<off_t>(reinterpret_cast<uint64_t>(r.iov_base) + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        return ErrnoError(n < 0 ? errno : EIO,
                          absl::StrFormat("reading /proc/%d/mem at 0x%x", pid,
                                          reinterpret_cast<uint64_t>(r.iov_base) + done));
      }
      done += static_cast<uint64_t>(n);
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
  ASSIGN_OR_RETURN(std::vector<Vma> vmas, ReadVmas(pid));
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
  for (const Vma& v : vmas) {
    if (v.name == "[vsyscall]") continue;  // the kernel's, at a fixed address
    VmaDump d;
    d.name = v.name;
    image::ckpt_vma& r = d.rec;
    r.start = v.start;
    r.end = v.end;
    r.pgoff = v.offset;
    r.prot = v.prot;
    RETURN_IF_ERROR(Classify(pid, v, objects, &r));
    r.flags = v.shared ? MAP_SHARED : MAP_PRIVATE;
    if (r.kind != image::kVmaFile) r.flags |= MAP_ANONYMOUS;
    if (v.vm_flags & kVmGrowsDown) r.flags |= MAP_GROWSDOWN;
    if (r.kind == image::kVmaFile && r.pgoff != v.offset) r.pgoff = v.offset;
    if (r.kind != image::kVmaFile) r.pgoff = 0;
    r.advice = AdviceOf(v.vm_flags);
    if (!v.shared && !IsVdsoFamily(r.kind)) {
      ScanResult scan;
      RETURN_IF_ERROR(scanner.Scan(v.start, v.end, &scan));
      d.runs = std::move(scan.runs);
      r.nr_pages = scan.pages;
      mm.skipped_pages += scan.skipped;
      rec.nr_pages += scan.pages;
    }
    mm.vmas.push_back(std::move(d));
  }
  rec.nr_vmas = static_cast<uint32_t>(mm.vmas.size());
  mm.free_area = ChooseFreeArea(vmas);
  if (mm.free_area == 0) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "task ", pid, ": no free ", kFreeAreaSize >> 20, " MiB area for the restore trampoline"));
  }
  return mm;
}

absl::Status WriteMm(pid_t pid, const MmDump& mm, image::Writer& writer, MmStats* stats) {
  RETURN_IF_ERROR(writer.AppendStructWith(image::CKPT_HDR_MM, mm.rec, mm.auxv.data(),
                                          mm.auxv.size() * 8));
  uint64_t max_chunk = std::min<uint64_t>(image::kMaxPageDataLen, mm.rec.nr_pages * kPage);
  PageBuffer buffer;
  uint8_t* buf = nullptr;
  if (max_chunk > 0) {
    ASSIGN_OR_RETURN(buf, buffer.Get(max_chunk));
  }
  std::vector<struct iovec> remote;
  UniqueFd mem;
  for (const VmaDump& d : mm.vmas) {
    RETURN_IF_ERROR(writer.AppendStruct(image::CKPT_HDR_VMA, d.rec));
    ++stats->vmas;
    size_t run = 0;
    uint64_t run_off = 0;  // pages of runs[run] already written
    while (run < d.runs.size()) {
      // One page array: a slice of the runs, at most kPagesPerArray pages.
      std::vector<image::ckpt_page_run> array;
      uint64_t array_pages = 0;
      size_t r = run;
      uint64_t off = run_off;
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
      RETURN_IF_ERROR(writer.Append(image::CKPT_HDR_PAGE_RUNS, array.data(),
                                    array.size() * sizeof(image::ckpt_page_run)));
      // Contents, in records of at most max_chunk bytes.
      size_t ai = 0;
      uint64_t aoff = 0;
      while (ai < array.size()) {
        remote.clear();
        uint64_t bytes = 0;
        while (ai < array.size() && bytes < max_chunk) {
          uint64_t left = (array[ai].nr_pages - aoff) * kPage;
          uint64_t take = std::min(left, max_chunk - bytes);
          remote.push_back({reinterpret_cast<void*>(array[ai].addr + aoff * kPage), take});
          bytes += take;
          aoff += take / kPage;
          if (aoff == array[ai].nr_pages) {
            ++ai;
            aoff = 0;
          }
        }
        absl::Status st = ReadPages(pid, d.rec.prot & PROT_READ, &mem, remote, buf, bytes);
        if (!st.ok()) return Annotate(st, absl::StrCat("copying pages of task ", pid));
        RETURN_IF_ERROR(writer.Append(image::CKPT_HDR_PAGE_DATA, buf, bytes));
        stats->pages += bytes / kPage;
        stats->bytes += bytes;
      }
      run = r;
      run_off = off;
    }
  }
  stats->skipped_pages += mm.skipped_pages;
  return absl::OkStatus();
}

}  // namespace ckpt::mm
