#include "lib/image/records.h"

#include <cstddef>
#include <deque>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "lib/image/format.h"

namespace ckpt::image {
namespace {

#define FLD(S, f, k) CKPT_FIELD(S, f, k)
#define CHARS(S, f) CKPT_CHARS(S, f)
#define REG(i, name) \
  FieldSpec { name, static_cast<uint32_t>(offsetof(ckpt_thread, regs) + 8 * (i)), 8, 1, FieldKind::kHex }

constexpr FieldSpec kImageFields[] = {
    CHARS(ckpt_image_header, magic),
    FLD(ckpt_image_header, major, kUnsigned),
    FLD(ckpt_image_header, minor, kUnsigned),
    FLD(ckpt_image_header, arch, kUnsigned),
    FLD(ckpt_image_header, page_size, kUnsigned),
    FLD(ckpt_image_header, flags, kHex),
    FLD(ckpt_image_header, created_realtime_ns, kUnsigned),
    FLD(ckpt_image_header, created_boottime_ns, kUnsigned),
    CHARS(ckpt_image_header, kernel_release),
};
constexpr FieldSpec kTailFields[] = {
    FLD(ckpt_tail, nr_records, kUnsigned),
    FLD(ckpt_tail, checksum, kHex),
    FLD(ckpt_tail, checksum_algo, kUnsigned),
};
constexpr FieldSpec kTreeFields[] = {
    FLD(ckpt_tree, nr_pids, kUnsigned),
    FLD(ckpt_tree, nr_tasks, kUnsigned),
    FLD(ckpt_tree, flags, kHex),
};
constexpr FieldSpec kPidFields[] = {
    FLD(ckpt_pid, objref, kUnsigned),
    FLD(ckpt_pid, nr_levels, kUnsigned),
    FLD(ckpt_pid, nr, kSigned),
};
constexpr FieldSpec kTaskEntryFields[] = {
    FLD(ckpt_task_entry, pid_ref, kUnsigned),     FLD(ckpt_task_entry, parent_ref, kUnsigned),
    FLD(ckpt_task_entry, pgrp_ref, kUnsigned),    FLD(ckpt_task_entry, session_ref, kUnsigned),
    FLD(ckpt_task_entry, state, kUnsigned),       FLD(ckpt_task_entry, exit_code, kSigned),
    FLD(ckpt_task_entry, nr_threads, kUnsigned),  FLD(ckpt_task_entry, flags, kHex),
    FLD(ckpt_task_entry, free_area, kHex),       FLD(ckpt_task_entry, ipc_ns_ref, kUnsigned),
    FLD(ckpt_task_entry, stop_signo, kUnsigned),
};
constexpr FieldSpec kObjectsFields[] = {
    FLD(ckpt_objects, nr_objects, kUnsigned),
    FLD(ckpt_objects, fd_limit, kUnsigned),
    FLD(ckpt_objects, nr_links, kUnsigned),
    FLD(ckpt_objects, reserved, kHex),
};
constexpr FieldSpec kFileFields[] = {
    FLD(ckpt_file, objref, kUnsigned), FLD(ckpt_file, kind, kUnsigned),
    FLD(ckpt_file, flags, kOctal),     FLD(ckpt_file, mode, kOctal),
    FLD(ckpt_file, pos, kUnsigned),    FLD(ckpt_file, size, kUnsigned),
    FLD(ckpt_file, rdev, kHex),        FLD(ckpt_file, mtime_ns, kUnsigned),
    FLD(ckpt_file, path_len, kUnsigned), FLD(ckpt_file, target_ref, kUnsigned),
    FLD(ckpt_file, build_id_size, kUnsigned), FLD(ckpt_file, build_id, kHex),
    FLD(ckpt_file, owner_type, kUnsigned), FLD(ckpt_file, owner_ref, kUnsigned),
    FLD(ckpt_file, owner_sig, kUnsigned),
};
constexpr FieldSpec kRestartFields[] = {
    FLD(ckpt_restart, kind, kUnsigned),
    FLD(ckpt_restart, remaining_ns, kSigned),
    CHARS(ckpt_restart, how),
};
constexpr FieldSpec kSiginfoFields[] = {
    FieldSpec{"signo", 0, 4, 1, FieldKind::kSigned},
    FieldSpec{"errno", 4, 4, 1, FieldKind::kSigned},
    FieldSpec{"code", 8, 4, 1, FieldKind::kSigned},
    FieldSpec{"pid", 16, 4, 1, FieldKind::kSigned},
    FieldSpec{"uid", 20, 4, 1, FieldKind::kUnsigned},
    FieldSpec{"value", 24, 8, 1, FieldKind::kHex},
};
constexpr FieldSpec kSignalsFields[] = {
    FieldSpec{"real_interval_ns", 0, 8, 1, FieldKind::kSigned},
    FieldSpec{"real_value_ns", 8, 8, 1, FieldKind::kSigned},
    FieldSpec{"virtual_interval_ns", 16, 8, 1, FieldKind::kSigned},
    FieldSpec{"virtual_value_ns", 24, 8, 1, FieldKind::kSigned},
    FieldSpec{"prof_interval_ns", 32, 8, 1, FieldKind::kSigned},
    FieldSpec{"prof_value_ns", 40, 8, 1, FieldKind::kSigned},
    FLD(ckpt_signals, nr_pending, kUnsigned),
    FLD(ckpt_signals, nr_timers, kUnsigned),
};
constexpr FieldSpec kPosixTimerFields[] = {
    FLD(ckpt_posix_timer, id, kSigned),          FLD(ckpt_posix_timer, clock, kSigned),
    FLD(ckpt_posix_timer, notify, kSigned),      FLD(ckpt_posix_timer, signo, kSigned),
    FLD(ckpt_posix_timer, tid_ref, kSigned),     FLD(ckpt_posix_timer, value, kHex),
    FLD(ckpt_posix_timer, interval_ns, kSigned), FLD(ckpt_posix_timer, value_ns, kSigned),
    FLD(ckpt_posix_timer, overrun, kSigned),
};
constexpr FieldSpec kTaskFields[] = {
    FLD(ckpt_task, pid_ref, kUnsigned),         FLD(ckpt_task, personality, kHex),
    CHARS(ckpt_task, comm),                     FLD(ckpt_task, umask, kOctal),
    FLD(ckpt_task, pdeath_signal, kUnsigned),   FLD(ckpt_task, dumpable, kUnsigned),
    FLD(ckpt_task, child_subreaper, kUnsigned), FLD(ckpt_task, no_new_privs, kUnsigned),
    FLD(ckpt_task, thp_disable, kUnsigned),     FLD(ckpt_task, nr_threads, kUnsigned),
    FLD(ckpt_task, nr_fds, kUnsigned),          FLD(ckpt_task, membarrier, kHex),
    FLD(ckpt_task, reserved, kHex),
};
constexpr FieldSpec kCredsFields[] = {
    FLD(ckpt_creds, uid, kUnsigned),           FLD(ckpt_creds, euid, kUnsigned),
    FLD(ckpt_creds, suid, kUnsigned),          FLD(ckpt_creds, fsuid, kUnsigned),
    FLD(ckpt_creds, gid, kUnsigned),           FLD(ckpt_creds, egid, kUnsigned),
    FLD(ckpt_creds, sgid, kUnsigned),          FLD(ckpt_creds, fsgid, kUnsigned),
    FLD(ckpt_creds, cap_inheritable, kHex),    FLD(ckpt_creds, cap_permitted, kHex),
    FLD(ckpt_creds, cap_effective, kHex),      FLD(ckpt_creds, cap_bounding, kHex),
    FLD(ckpt_creds, cap_ambient, kHex),        FLD(ckpt_creds, securebits, kHex),
    FLD(ckpt_creds, nr_groups, kUnsigned),
};
constexpr FieldSpec kRlimitsFields[] = {
    FLD(ckpt_rlimits, cur, kUnsigned),
    FLD(ckpt_rlimits, max, kUnsigned),
};
constexpr FieldSpec kFsFields[] = {
    FLD(ckpt_fs, cwd_len, kUnsigned),
    FLD(ckpt_fs, root_len, kUnsigned),
    FLD(ckpt_fs, cwd_ref, kUnsigned),
    FLD(ckpt_fs, root_ref, kUnsigned),
};
constexpr FieldSpec kFdFields[] = {
    FLD(ckpt_fd, fd, kSigned),
    FLD(ckpt_fd, fd_flags, kHex),
    FLD(ckpt_fd, file_ref, kUnsigned),
};
constexpr FieldSpec kInheritedFields[] = {
    FLD(ckpt_inherited, total_pages, kUnsigned),
    FLD(ckpt_inherited, total_runs, kUnsigned),
};
constexpr FieldSpec kMmFields[] = {
    FLD(ckpt_mm, start_code, kHex), FLD(ckpt_mm, end_code, kHex),
    FLD(ckpt_mm, start_data, kHex), FLD(ckpt_mm, end_data, kHex),
    FLD(ckpt_mm, start_brk, kHex),  FLD(ckpt_mm, brk, kHex),
    FLD(ckpt_mm, start_stack, kHex), FLD(ckpt_mm, arg_start, kHex),
    FLD(ckpt_mm, arg_end, kHex),    FLD(ckpt_mm, env_start, kHex),
    FLD(ckpt_mm, env_end, kHex),    FLD(ckpt_mm, exe_ref, kUnsigned),
    FLD(ckpt_mm, nr_vmas, kUnsigned), FLD(ckpt_mm, nr_auxv, kUnsigned),
    FLD(ckpt_mm, flags, kHex),      FLD(ckpt_mm, nr_pages, kUnsigned),
};
constexpr FieldSpec kVmaFields[] = {
    FLD(ckpt_vma, start, kHex),      FLD(ckpt_vma, end, kHex),
    FLD(ckpt_vma, pgoff, kHex),      FLD(ckpt_vma, prot, kHex),
    FLD(ckpt_vma, flags, kHex),      FLD(ckpt_vma, kind, kUnsigned),
    FLD(ckpt_vma, file_ref, kUnsigned), FLD(ckpt_vma, advice, kHex),
    FLD(ckpt_vma, nr_pages, kUnsigned),
};
constexpr FieldSpec kSighandFields[] = {
    FieldSpec{"handler", offsetof(ckpt_sighand, action) + offsetof(ckpt_sigaction, handler), 8,
              kNrSignals, FieldKind::kHex},
};
constexpr FieldSpec kThreadFields[] = {
    FLD(ckpt_thread, tid_ref, kUnsigned),
    FLD(ckpt_thread, flags, kHex),
    REG(0, "r15"), REG(1, "r14"), REG(2, "r13"), REG(3, "r12"), REG(4, "rbp"), REG(5, "rbx"),
    REG(6, "r11"), REG(7, "r10"), REG(8, "r9"), REG(9, "r8"), REG(10, "rax"), REG(11, "rcx"),
    REG(12, "rdx"), REG(13, "rsi"), REG(14, "rdi"), REG(15, "orig_rax"), REG(16, "rip"),
    REG(17, "cs"), REG(18, "eflags"), REG(19, "rsp"), REG(20, "ss"), REG(21, "fs_base"),
    REG(22, "gs_base"), REG(23, "ds"), REG(24, "es"), REG(25, "fs"), REG(26, "gs"),
    FLD(ckpt_thread, sigmask, kHex),
    FLD(ckpt_thread, altstack_sp, kHex),
    FLD(ckpt_thread, altstack_size, kUnsigned),
    FLD(ckpt_thread, altstack_flags, kHex),
    FLD(ckpt_thread, rseq_sig, kHex),
    FLD(ckpt_thread, rseq_ptr, kHex),
    FLD(ckpt_thread, rseq_len, kUnsigned),
    FLD(ckpt_thread, rseq_flags, kHex),
    FLD(ckpt_thread, clear_child_tid, kHex),
    FLD(ckpt_thread, robust_list, kHex),
    FLD(ckpt_thread, robust_list_len, kUnsigned),
    FLD(ckpt_thread, nr_pending, kUnsigned),
};

#define SPEC(type, name, S, fields, max_tail, tail) \
  CKPT_RECORD_SPEC(type, name, S, fields, max_tail, tail)

// The stream's own records; the kinds register theirs from their files.
const RecordSpec kSpecs[] = {
    SPEC(CKPT_HDR_IMAGE, "IMAGE", ckpt_image_header, kImageFields, 0, kNone),
    SPEC(CKPT_HDR_TAIL, "TAIL", ckpt_tail, kTailFields, 0, kNone),
    RecordSpec{CKPT_HDR_NOTE, "NOTE", 0, 64 * 1024, {}, TailKind::kText},
    SPEC(CKPT_HDR_TREE, "TREE", ckpt_tree, kTreeFields, 0, kNone),
    SPEC(CKPT_HDR_PID, "PID", ckpt_pid, kPidFields, 0, kNone),
    SPEC(CKPT_HDR_TASK_ENTRY, "TASK_ENTRY", ckpt_task_entry, kTaskEntryFields, 0, kNone),
    SPEC(CKPT_HDR_OBJECTS, "OBJECTS", ckpt_objects, kObjectsFields, 0, kNone),
    SPEC(CKPT_HDR_FILE, "FILE", ckpt_file, kFileFields, kMaxPathLen, kPaths),
    SPEC(CKPT_HDR_MAPPED_FILE, "MAPPED_FILE", ckpt_file, kFileFields, kMaxPathLen, kPaths),
    SPEC(CKPT_HDR_TASK, "TASK", ckpt_task, kTaskFields, 0, kNone),
    SPEC(CKPT_HDR_CREDS, "CREDS", ckpt_creds, kCredsFields, 4ull * kMaxGroups, kU32Array),
    SPEC(CKPT_HDR_RLIMITS, "RLIMITS", ckpt_rlimits, kRlimitsFields, 0, kNone),
    SPEC(CKPT_HDR_FS, "FS", ckpt_fs, kFsFields, 2 * kMaxPathLen, kPaths),
    SPEC(CKPT_HDR_FD, "FD", ckpt_fd, kFdFields, 0, kNone),
    SPEC(CKPT_HDR_MM, "MM", ckpt_mm, kMmFields, 8ull * kMaxAuxvWords, kU64Array),
    SPEC(CKPT_HDR_VMA, "VMA", ckpt_vma, kVmaFields, 0, kNone),
    RecordSpec{CKPT_HDR_PAGE_RUNS, "PAGE_RUNS", 0, kMaxPageRuns * sizeof(ckpt_page_run), {},
               TailKind::kPageRuns},
    RecordSpec{CKPT_HDR_PAGE_DATA, "PAGE_DATA", 0, kMaxPageDataLen, {}, TailKind::kPageData},
    SPEC(CKPT_HDR_INHERITED, "INHERITED", ckpt_inherited, kInheritedFields,
         kMaxInheritedRuns * sizeof(ckpt_page_run), kPageRuns),
    SPEC(CKPT_HDR_SIGHAND, "SIGHAND", ckpt_sighand, kSighandFields, 0, kNone),
    SPEC(CKPT_HDR_THREAD, "THREAD", ckpt_thread, kThreadFields, 0, kNone),
    RecordSpec{CKPT_HDR_XSTATE, "XSTATE", 0, kMaxXstateLen, {}, TailKind::kRawBytes},
    SPEC(CKPT_HDR_RESTART, "RESTART", ckpt_restart, kRestartFields, 0, kNone),
    SPEC(CKPT_HDR_SIGINFO, "SIGINFO", ckpt_siginfo, kSiginfoFields, 0, kNone),
    SPEC(CKPT_HDR_SIGNALS, "SIGNALS", ckpt_signals, kSignalsFields, 0, kNone),
    SPEC(CKPT_HDR_POSIX_TIMER, "POSIX_TIMER", ckpt_posix_timer, kPosixTimerFields, 0, kNone),
};

uint64_t LoadUnsigned(const uint8_t* p, uint32_t size) {
  uint64_t v = 0;
  std::memcpy(&v, p, size);  // little-endian host, see format.h
  return v;
}

int64_t LoadSigned(const uint8_t* p, uint32_t size) {
  uint64_t v = LoadUnsigned(p, size);
  if (size < 8 && (v >> (8 * size - 1)) & 1) v |= ~0ull << (8 * size);
  return static_cast<int64_t>(v);
}

std::string FormatElem(const FieldSpec& f, const uint8_t* p) {
  switch (f.kind) {
    case FieldKind::kUnsigned:
      return absl::StrCat(LoadUnsigned(p, f.size));
    case FieldKind::kSigned:
      return absl::StrCat(LoadSigned(p, f.size));
    case FieldKind::kHex:
      return absl::StrFormat("0x%x", LoadUnsigned(p, f.size));
    case FieldKind::kOctal:
      return absl::StrFormat("0%o", LoadUnsigned(p, f.size));
    case FieldKind::kChars:
      return std::string(reinterpret_cast<const char*>(p), strnlen(reinterpret_cast<const char*>(p), f.size));
  }
  return "";
}

std::string Printable(std::span<const uint8_t> bytes) {
  std::string out;
  for (uint8_t c : bytes) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      out += absl::StrFormat("\\x%02x", c);
    }
  }
  return out;
}

}  // namespace

namespace {

// A deque: a spec's address stays the same as others are added.
std::deque<RecordSpec>& Registry() {
  static std::deque<RecordSpec>* specs = new std::deque<RecordSpec>(std::begin(kSpecs), std::end(kSpecs));
  return *specs;
}

// AllRecordSpecs' view, rebuilt when a spec was added since.
std::vector<RecordSpec>& Flat() {
  static std::vector<RecordSpec>* flat = new std::vector<RecordSpec>;
  return *flat;
}

}  // namespace

bool RegisterRecordSpec(const RecordSpec& spec) {
  for (const RecordSpec& s : Registry()) {
    if (s.type == spec.type) {
      std::fprintf(stderr, "libckpt: record type %u registered twice (%s, %s)\n", spec.type,
                   s.name, spec.name);
      std::abort();
    }
  }
  Registry().push_back(spec);
  return true;
}

const RecordSpec* FindRecordSpec(uint32_t type) {
  for (const RecordSpec& s : Registry()) {
    if (s.type == type) return &s;
  }
  return nullptr;
}

std::span<const RecordSpec> AllRecordSpecs() {
  std::vector<RecordSpec>& flat = Flat();
  if (flat.size() != Registry().size()) flat.assign(Registry().begin(), Registry().end());
  return flat;
}

std::string RecordName(uint32_t type) {
  const RecordSpec* s = FindRecordSpec(type);
  return s ? std::string(s->name) : absl::StrCat("type ", type);
}

std::vector<DecodedField> DecodeRecord(const RecordSpec& spec, std::span<const uint8_t> payload) {
  std::vector<DecodedField> out;
  if (payload.size() < spec.struct_size) return out;
  std::vector<uint64_t> string_lens;
  for (const FieldSpec& f : spec.fields) {
    const uint8_t* base = payload.data() + f.offset;
    bool numeric = f.kind == FieldKind::kUnsigned || f.kind == FieldKind::kSigned;
    if (f.count == 1) {
      out.push_back({f.name, FormatElem(f, base), numeric});
    } else {
      // Trailing zero elements are left out ("nr=4242" rather than 32 numbers).
      uint32_t shown = f.count;
      while (shown > 1 && LoadUnsigned(base + (shown - 1) * f.size, f.size) == 0) --shown;
      std::string list;
      for (uint32_t i = 0; i < shown; ++i) {
        absl::StrAppend(&list, i ? "," : "", FormatElem(f, base + i * f.size));
      }
      out.push_back({f.name, list, false});
    }
    std::string_view name = f.name;
    if (spec.tail == TailKind::kPaths && name.size() > 4 && name.ends_with("_len")) {
      string_lens.push_back(LoadUnsigned(base, f.size));
    }
  }
  std::span<const uint8_t> tail = payload.subspan(spec.struct_size);
  switch (spec.tail) {
    case TailKind::kNone:
      break;
    case TailKind::kText:
      out.push_back({"text", Printable(tail), false});
      break;
    case TailKind::kPaths: {
      size_t at = 0;
      size_t i = 0;
      for (const FieldSpec& f : spec.fields) {
        std::string_view name = f.name;
        if (!(name.size() > 4 && name.ends_with("_len"))) continue;
        uint64_t len = string_lens[i++];
        if (len > tail.size() - at) {
          out.push_back({std::string(name.substr(0, name.size() - 4)), "<truncated>", false});
          break;
        }
        out.push_back({std::string(name.substr(0, name.size() - 4)),
                       Printable(tail.subspan(at, len)), false});
        at += len;
      }
      break;
    }
    case TailKind::kU16Array:
    case TailKind::kU32Array:
    case TailKind::kU64Array: {
      uint32_t w = spec.tail == TailKind::kU16Array ? 2 : spec.tail == TailKind::kU32Array ? 4 : 8;
      std::string list;
      for (size_t at = 0; at + w <= tail.size(); at += w) {
        absl::StrAppend(&list, at ? "," : "", LoadUnsigned(tail.data() + at, w));
      }
      out.push_back({"values", list, false});
      break;
    }
    case TailKind::kPageRuns: {
      uint64_t pages = 0;
      std::string list;
      size_t shown = 0;
      for (size_t at = 0; at + sizeof(ckpt_page_run) <= tail.size(); at += sizeof(ckpt_page_run)) {
        ckpt_page_run run;
        std::memcpy(&run, tail.data() + at, sizeof(run));
        pages += run.nr_pages;
        if (shown++ < 8) absl::StrAppendFormat(&list, "%s0x%x+%u", shown > 1 ? "," : "", run.addr, run.nr_pages);
      }
      if (shown > 8) absl::StrAppend(&list, ",...");
      out.push_back({"nr_runs", absl::StrCat(tail.size() / sizeof(ckpt_page_run)), true});
      out.push_back({"nr_pages", absl::StrCat(pages), true});
      out.push_back({"runs", list, false});
      break;
    }
    case TailKind::kPageData:
    case TailKind::kRawBytes:
      out.push_back({"bytes", absl::StrCat(tail.size()), true});
      break;
  }
  return out;
}

}  // namespace ckpt::image
