// A task's memory, dumped and restored: mm fields, auxv, every VMA, and the
// page arrays of the VMAs that hold private data.
//
// Dump, in two steps, because the objects section (mapped files) is
// written before any task's section:
//
//   ASSIGN_OR_RETURN(MmDump mm, CollectMm(pid, brk, objects));   // frozen task
//   ... write the objects section ...
//   RETURN_IF_ERROR(WriteMm(pid, mm, writer, &stats));            // copies pages
//
// Restore, from inside the stopped task (a copy of the restorer, with the
// trampoline mapped in its free area), driven through a SyscallQueue:
//
//   RETURN_IF_ERROR(RestoreMm(reader, ctx, &stats));

#ifndef LIBCKPT_LIB_MM_MM_H_
#define LIBCKPT_LIB_MM_MM_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/image/format.h"
#include "lib/image/reader.h"
#include "lib/image/writer.h"
#include "lib/mm/lazy.h"
#include "lib/mm/maps.h"
#include "lib/base/buffer.h"
#include "lib/mm/pagescan.h"
#include "lib/objhash/handlers.h"
#include "lib/objhash/objhash.h"
#include "lib/task/inject.h"

namespace ckpt::mm {

// The free area every task keeps for the restore: the trampoline at its
// start, the restorer's vdso parked at kParkOffset.
inline constexpr uint64_t kFreeAreaSize = 16ull << 20;
inline constexpr uint64_t kParkOffset = 8ull << 20;
static_assert(task::TrampolineLayout::kSize <= kParkOffset);
// The end of the 47-bit user address space.
inline constexpr uint64_t kUserSpaceEnd = 0x7ffffffff000ull;

// Most pages in one page array (PAGE_RUNS record).
inline constexpr uint64_t kPagesPerArray = 64 * 1024;

struct VmaDump {
  image::ckpt_vma rec{};
  std::vector<image::ckpt_page_run> runs;
  std::string name;  // for messages
};

struct MmDump {
  image::ckpt_mm rec{};
  std::vector<uint64_t> auxv;
  std::vector<VmaDump> vmas;
  uint64_t skipped_pages = 0;
  uint64_t free_area = 0;  // kFreeAreaSize bytes no VMA uses
  // Forked from its parent at restore (image::kTaskInheritsMemory): the
  // INHERITED record follows MM, with the pages kept from the parent.
  bool inherits = false;
  std::vector<image::ckpt_page_run> inherited;
};

struct MmStats {
  uint64_t vmas = 0;
  uint64_t pages = 0;
  uint64_t skipped_pages = 0;
  uint64_t bytes = 0;
  // Restore, for CKPT_TRACE: time reading page data from the image,
  // writing it into the task, and waiting for the task's populate.
  int64_t read_ns = 0;
  int64_t write_ns = 0;
  int64_t wait_ns = 0;
};

struct CollectOptions {
  bool force_pagemap_file = false;  // scan with /proc/PID/pagemap (benchmarks)
  // Registers the GHOST object of a deleted file the task maps (files are
  // a layer above); unset, such mappings are refused.
  std::function<absl::StatusOr<uint32_t>(pid_t pid, const Vma& vma)> register_deleted;
  // Where the task's VMAs come from (a VmaPrefetch); unset, ReadVmas.
  std::function<absl::StatusOr<std::vector<Vma>>(pid_t pid)> read_vmas;
};

// Reads the task's VMAs, mm fields and auxv, scans its pages, and
// registers the files its VMAs map (and its executable) as MAPPED_FILE
// objects. `brk` is the task's current brk (an injected brk(0)). Refuses,
// naming the VMA, what cannot be dumped yet.
absl::StatusOr<MmDump> CollectMm(pid_t pid, uint64_t brk, objhash::ObjHash& objects,
                                 const CollectOptions& options = {});

// Why a VMA cannot be dumped yet (naming the task and the mapping), or OK.
// `deleted_files_ok`: a deleted file's mapping can be saved (its contents go
// into the image). Reads nothing: the task may be running (pre-flight).
absl::Status RefuseVma(pid_t pid, const Vma& v, bool deleted_files_ok);

// Whether a VMA of the child, `c`, can be kept from its parent's `p` when
// the restore forks the child from the restored parent: the same private
// mapping, with advice a fork passes on (not DONTFORK, WIPEONFORK, sealed).
bool KeepableFromParent(const image::ckpt_vma& c, const image::ckpt_vma& p);

// The private pages a child still shares with its parent: the same
// physical page at the same address, in VMAs it can keep, saved in the
// parent's page arrays (copy-on-write since a fork, and neither wrote it).
// They move from the child's page arrays to `child.inherited`. Frame
// numbers come from /proc/PID/pagemap, which shows them only to
// CAP_SYS_ADMIN: without it nothing is found shared. Both tasks are
// frozen. Returns the pages moved.
absl::StatusOr<uint64_t> ShareWithParent(pid_t child, MmDump& child_mm, pid_t parent,
                                         const MmDump& parent_mm);

// Writes MM, then each VMA with its page arrays; page contents are copied
// out of the (still frozen) task.
absl::Status WriteMm(pid_t pid, const MmDump& mm, image::Writer& writer, MmStats* stats);

// What the restorer (and so every task it forks, before the big unmap)
// has mapped that a restore must deal with.
struct RestorerLayout {
  std::vector<Vma> vdso_family;  // [vvar], [vvar_vclock], [vdso], ascending
  std::vector<Vma> all;          // every VMA of the restorer
};
absl::StatusOr<RestorerLayout> ReadRestorerLayout();

// Whether [addr, addr + kFreeAreaSize) is unused in `vmas`.
bool IsFreeArea(const std::vector<Vma>& vmas, uint64_t addr);

// What a restored task's memory holds, kept for the children forked from
// it (kTaskInheritsMemory).
struct RestoredMm {
  std::vector<image::ckpt_vma> vmas;
  uint32_t exe_ref = 0;
};

struct MmRestoreContext {
  pid_t pid = 0;
  // Set: the task was just forked from its restored parent, whose memory
  // this is; the image's INHERITED record says which pages it keeps.
  const RestoredMm* parent = nullptr;
  // Filled with the task's own (for its children), when set.
  RestoredMm* restored = nullptr;
  uint64_t free_area = 0;
  const RestorerLayout* layout = nullptr;
  const objhash::RestoreTable* objects = nullptr;
  uint32_t ipc_ns_ref = 0;  // the task's IPC namespace: its SysV segments must be in it
  task::SyscallQueue* queue = nullptr;
  Buffer* buffer = nullptr;  // staging for page contents
  // Fill pages after MADV_POPULATE_WRITE (fewer faults) rather than
  // letting process_vm_writev fault them in.
  bool populate = true;
  // Set by RestoreMm: where [vdso] now is (the final munmap goes through
  // its syscall instruction); 0 for a task that had unmapped it.
  uint64_t vdso_start = 0;
  // A lazy restore (the image in a file): the page contents of private
  // anonymous VMAs that qualify (LazyEligible) are skipped, not read,
  // and listed here with where they are in the stream, for a LazyFill;
  // their VMAs are listed whole in `lazy_vmas`.
  bool lazy = false;
  std::vector<LazyRun> lazy_runs;
  std::vector<std::pair<uint64_t, uint64_t>> lazy_vmas;
};

// Whether a VMA's pages are left to a lazy fill: private anonymous memory
// (not the stack, not PROT_NONE, not locked, sealed, wiped or dropped on
// fork) of at least a few pages. The others are filled before the task
// runs, as in an eager restore.
bool LazyEligible(const image::ckpt_vma& v);

// Reads MM and its VMAs and page arrays from `reader` (positioned just
// before the MM record) and rebuilds the task's memory.
absl::Status RestoreMm(image::Reader& reader, MmRestoreContext& ctx, MmStats* stats);

}  // namespace ckpt::mm

#endif  // LIBCKPT_LIB_MM_MM_H_
