// The C ABI: extern "C" functions over the C++ API. Errors become negative
// errno-style codes; the message is kept per thread for ckpt_last_error().
//
// The ABI keeps its promises (ckpt.h): no C++ exception reaches a C caller
// (Guarded); nothing a caller asks for is silently ignored (unknown flag
// bits, non-zero reserved fields and unknown struct tails are refused);
// the code is the errno of the system call that failed where one did; and
// what a call changes in the calling process is put back before it
// returns.

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ckpt/ckpt.h"
#include "ckpt/ckpt.hpp"
#include "lib/base/status.h"

namespace {

// The message of this thread's last failure. When even that could not be
// allocated, last_error_fixed (a static text) stands in for it.
thread_local std::string last_error;
thread_local const char* last_error_fixed = nullptr;

void SetLastError(std::initializer_list<absl::string_view> parts) noexcept {
  last_error_fixed = nullptr;
  try {
    last_error.clear();
    for (absl::string_view p : parts) last_error.append(p.data(), p.size());
  } catch (...) {
    last_error.clear();
    last_error_fixed = "out of memory (the error message could not be kept)";
  }
}

// Runs the body of an extern "C" function `function`: a C++ exception
// never reaches a C caller. The body returns a Status; its errno (lib/base/
// status.h) comes out negated.
template <typename Body>
int Guarded(const char* function, Body&& body) noexcept {
  SetLastError({});
  try {
    absl::Status st = body();
    if (st.ok()) return 0;
    SetLastError({st.message()});
    return -ckpt::StatusToErrno(st);
  } catch (const std::bad_alloc&) {
    SetLastError({function, ": out of memory"});
    return -ENOMEM;
  } catch (const std::exception& e) {
    SetLastError({function, ": internal error: ", e.what()});
    return -EIO;
  } catch (...) {
    SetLastError({function, ": internal error: an exception of unknown type"});
    return -EIO;
  }
}

// ------------------------------------------------------ versioned structs

#define CKPT_FIELD_END(type, field) (offsetof(type, field) + sizeof(type::field))

// Where each field of an option struct ends, in order: the sizes a caller
// of some version of ckpt.h can pass (a `size` that ends inside a field
// would hand the library half a pointer). A field appended to a struct
// appends its end here; the static_asserts below insist.
template <typename T>
struct OptsLayout;

template <>
struct OptsLayout<ckpt_dump_opts> {
  static constexpr const char* kName = "ckpt_dump_opts";
  static constexpr size_t kFieldEnds[] = {
      CKPT_FIELD_END(ckpt_dump_opts, flags),    CKPT_FIELD_END(ckpt_dump_opts, reserved),
      CKPT_FIELD_END(ckpt_dump_opts, stats),    CKPT_FIELD_END(ckpt_dump_opts, external),
      CKPT_FIELD_END(ckpt_dump_opts, nr_external), CKPT_FIELD_END(ckpt_dump_opts, cancel),
  };
};

template <>
struct OptsLayout<ckpt_restore_opts> {
  static constexpr const char* kName = "ckpt_restore_opts";
  static constexpr size_t kFieldEnds[] = {
      CKPT_FIELD_END(ckpt_restore_opts, flags),       CKPT_FIELD_END(ckpt_restore_opts, reserved),
      CKPT_FIELD_END(ckpt_restore_opts, stats),       CKPT_FIELD_END(ckpt_restore_opts, inherit_fds),
      CKPT_FIELD_END(ckpt_restore_opts, nr_inherit_fds),
  };
};

static_assert(std::end(OptsLayout<ckpt_dump_opts>::kFieldEnds)[-1] == sizeof(ckpt_dump_opts),
              "a field appended to ckpt_dump_opts must be listed in OptsLayout");
static_assert(std::end(OptsLayout<ckpt_restore_opts>::kFieldEnds)[-1] == sizeof(ckpt_restore_opts),
              "a field appended to ckpt_restore_opts must be listed in OptsLayout");

// No version of an option struct will be this large: a larger `size` is a
// caller's bug, not a newer ckpt.h, and its tail is not read.
constexpr size_t kMaxOptsSize = 4096;

// The caller's struct as this library knows it: the fields its `size`
// covers, the others zero (their defaults). A newer caller's struct is
// accepted only when every byte beyond the fields known here is zero.
template <typename T>
absl::StatusOr<T> ReadVersioned(const T* in) {
  using Layout = OptsLayout<T>;
  T out{};
  if (in == nullptr) return out;
  const size_t size = in->size;
  if (size > kMaxOptsSize) {
    return absl::InvalidArgumentError(absl::StrCat(Layout::kName, ".size is ", size,
                                                   ", larger than any version of the struct"));
  }
  if (size > sizeof(T)) {
    const unsigned char* bytes = reinterpret_cast<const unsigned char*>(in);
    for (size_t i = sizeof(T); i < size; ++i) {
      if (bytes[i] == 0) continue;
      return absl::InvalidArgumentError(absl::StrCat(
          Layout::kName, ".size is ", size, ", and byte ", i, " (0x", absl::Hex(bytes[i]),
          ") is beyond the ", sizeof(T), " bytes this library (ABI ", CKPT_ABI_VERSION,
          ") knows: a newer field it does not implement must stay zero"));
    }
  } else if (std::find(std::begin(Layout::kFieldEnds), std::end(Layout::kFieldEnds), size) ==
             std::end(Layout::kFieldEnds)) {
    return absl::InvalidArgumentError(absl::StrCat(
        Layout::kName, ".size is ", size, ", which ",
        size < Layout::kFieldEnds[0] ? "does not cover flags" : "ends inside a field",
        " (sizes known: ", absl::StrJoin(Layout::kFieldEnds, ", "), "; set it to sizeof(struct ",
        Layout::kName, "))"));
  }
  std::memcpy(&out, in, std::min(size, sizeof(T)));
  return out;
}

// A caller's stats struct must cover at least one figure.
template <typename T>
absl::Status CheckStatsSize(const char* name, const T* stats) {
  static_assert(sizeof(T) % sizeof(uint64_t) == 0 && offsetof(T, tasks) == sizeof(size_t));
  if (stats == nullptr || stats->size >= CKPT_FIELD_END(T, tasks)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(name, "->size is ", stats->size,
                                                 ", which covers no figure (set it to sizeof)"));
}

// Writes the whole fields of `src` that the caller's `dst->size` covers.
template <typename T>
void WriteVersioned(T* dst, const T& src) {
  if (dst == nullptr) return;
  size_t caller_size = dst->size;
  size_t n = std::min(caller_size, sizeof(T)) / sizeof(uint64_t) * sizeof(uint64_t);
  std::memcpy(dst, &src, n);
  dst->size = caller_size;
}

#undef CKPT_FIELD_END

// ------------------------------------------------------ option fields

absl::Status CheckFlags(absl::string_view field, uint32_t flags, uint32_t known) {
  if ((flags & ~known) == 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, " has unknown bits 0x",
                                                 absl::Hex(flags & ~known), " (this library, ABI ",
                                                 CKPT_ABI_VERSION, ", knows 0x", absl::Hex(known), ")"));
}

absl::Status CheckReserved(absl::string_view field, uint64_t value) {
  if (value == 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, " is 0x", absl::Hex(value), "; a reserved field must be 0"));
}

// More names than fs.nr_open allows fds by default cannot all be objects
// of one tree; a larger count is a caller's bug.
constexpr size_t kMaxListed = size_t{1} << 20;

// A caller's array `field` of `count` elements (counted by `count_field`).
template <typename E>
absl::Status CheckArray(absl::string_view field, const E* array, absl::string_view count_field,
                        size_t count) {
  if (count > kMaxListed) {
    return absl::InvalidArgumentError(
        absl::StrCat(count_field, " is ", count, ", more than ", kMaxListed, " objects"));
  }
  if (count > 0 && array == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is NULL but ", count_field, " is ", count));
  }
  return absl::OkStatus();
}

// An object name given by the caller, `array`[`index`]`member`: not NULL,
// not empty.
absl::Status CheckName(absl::string_view array, size_t index, absl::string_view member,
                       const char* name) {
  if (name != nullptr && name[0] != '\0') return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(array, "[", index, "]", member, " is ",
                                                 name == nullptr ? "NULL" : "empty"));
}

constexpr uint32_t kDumpFlags = CKPT_DUMP_LEAVE_RUNNING | CKPT_DUMP_SHELL_JOB | CKPT_DUMP_CONTAINER;
constexpr uint32_t kRestoreFlags = CKPT_RESTORE_NEW_PIDNS | CKPT_RESTORE_SHELL_JOB |
                                   CKPT_RESTORE_IPC_NS_NEW | CKPT_RESTORE_IPC_NS_CURRENT |
                                   CKPT_RESTORE_ALLOW_CHANGED_FILES | CKPT_RESTORE_LAZY;

// ckpt_dump_opts.cancel is the C spelling of DumpOptions::cancel.
static_assert(std::is_same_v<sig_atomic_t, int>);

absl::StatusOr<ckpt::DumpOptions> ToDumpOptions(const ckpt_dump_opts& o) {
  RETURN_IF_ERROR(CheckFlags("ckpt_dump_opts.flags", o.flags, kDumpFlags));
  RETURN_IF_ERROR(CheckReserved("ckpt_dump_opts.reserved", o.reserved));
  RETURN_IF_ERROR(CheckStatsSize("ckpt_dump_opts.stats", o.stats));
  RETURN_IF_ERROR(CheckArray("ckpt_dump_opts.external", o.external, "ckpt_dump_opts.nr_external",
                             o.nr_external));
  ckpt::DumpOptions options;
  options.leave_running = o.flags & CKPT_DUMP_LEAVE_RUNNING;
  options.shell_job = o.flags & CKPT_DUMP_SHELL_JOB;
  options.container = o.flags & CKPT_DUMP_CONTAINER;
  options.external.reserve(o.nr_external);
  for (size_t i = 0; i < o.nr_external; ++i) {
    RETURN_IF_ERROR(CheckName("ckpt_dump_opts.external", i, "", o.external[i]));
    options.external.emplace_back(o.external[i]);
  }
  options.cancel = o.cancel;
  return options;
}

absl::StatusOr<ckpt::RestoreOptions> ToRestoreOptions(const ckpt_restore_opts& o) {
  RETURN_IF_ERROR(CheckFlags("ckpt_restore_opts.flags", o.flags, kRestoreFlags));
  RETURN_IF_ERROR(CheckReserved("ckpt_restore_opts.reserved", o.reserved));
  RETURN_IF_ERROR(CheckStatsSize("ckpt_restore_opts.stats", o.stats));
  RETURN_IF_ERROR(CheckArray("ckpt_restore_opts.inherit_fds", o.inherit_fds,
                             "ckpt_restore_opts.nr_inherit_fds", o.nr_inherit_fds));
  if ((o.flags & CKPT_RESTORE_IPC_NS_NEW) && (o.flags & CKPT_RESTORE_IPC_NS_CURRENT)) {
    return absl::InvalidArgumentError(
        "ckpt_restore_opts.flags: CKPT_RESTORE_IPC_NS_NEW and CKPT_RESTORE_IPC_NS_CURRENT exclude "
        "each other");
  }
  ckpt::RestoreOptions options;
  options.shell_job = o.flags & CKPT_RESTORE_SHELL_JOB;
  options.new_pidns = o.flags & CKPT_RESTORE_NEW_PIDNS;
  if (o.flags & CKPT_RESTORE_IPC_NS_NEW) options.ipc_ns = ckpt::IpcNamespace::kNew;
  if (o.flags & CKPT_RESTORE_IPC_NS_CURRENT) options.ipc_ns = ckpt::IpcNamespace::kCurrent;
  options.allow_changed_files = o.flags & CKPT_RESTORE_ALLOW_CHANGED_FILES;
  options.lazy = o.flags & CKPT_RESTORE_LAZY;
  options.inherit_fds.reserve(o.nr_inherit_fds);
  for (size_t i = 0; i < o.nr_inherit_fds; ++i) {
    const ckpt_inherit_fd& in = o.inherit_fds[i];
    auto field = [i](absl::string_view member) {
      return absl::StrCat("ckpt_restore_opts.inherit_fds[", i, "].", member);
    };
    if (in.reserved != 0) return CheckReserved(field("reserved"), static_cast<uint32_t>(in.reserved));
    if (in.fd < 0) return absl::InvalidArgumentError(absl::StrCat(field("fd"), " is ", in.fd));
    if (fcntl(in.fd, F_GETFD) < 0) return ckpt::ErrnoError(errno, field("fd"), " ", in.fd);
    RETURN_IF_ERROR(CheckName("ckpt_restore_opts.inherit_fds", i, ".name", in.name));
    options.inherit_fds.push_back({in.fd, in.name});
  }
  return options;
}

// ------------------------------------------------------ the calling process

absl::Status CheckpointTree(pid_t root, int out_fd, const ckpt_dump_opts* opts) {
  ASSIGN_OR_RETURN(ckpt_dump_opts o, ReadVersioned(opts));
  ASSIGN_OR_RETURN(ckpt::DumpOptions options, ToDumpOptions(o));
  // The library holds SIGPIPE back and keeps every errno (EPIPE too).
  ckpt::Checkpointer dumper(options);
  absl::Status st = dumper.Dump(root, out_fd);
  if (o.stats != nullptr) {
    const ckpt::DumpStats& s = dumper.stats();
    ckpt_dump_stats stats{};
    stats.size = sizeof(stats);
    stats.tasks = s.tasks;
    stats.threads = s.threads;
    stats.vmas = s.vmas;
    stats.pages_written = s.pages_written;
    stats.pages_skipped = s.pages_skipped;
    stats.image_bytes = s.image_bytes;
    stats.freeze_ns = s.freeze_ns;
    stats.total_ns = s.total_ns;
    stats.pages_shared = s.pages_shared;
    WriteVersioned(o.stats, stats);
  }
  return st;
}

absl::Status RestoreTree(int in_fd, const ckpt_restore_opts* opts, pid_t* root_out) {
  ASSIGN_OR_RETURN(ckpt_restore_opts o, ReadVersioned(opts));
  ASSIGN_OR_RETURN(ckpt::RestoreOptions options, ToRestoreOptions(o));
  ckpt::Restorer restorer(options);
  absl::StatusOr<pid_t> root = restorer.Restore(in_fd);
  if (o.stats != nullptr) {
    const ckpt::RestoreStats& s = restorer.stats();
    ckpt_restore_stats stats{};
    stats.size = sizeof(stats);
    stats.tasks = s.tasks;
    stats.pages_written = s.pages_written;
    stats.image_bytes = s.image_bytes;
    stats.total_ns = s.total_ns;
    WriteVersioned(o.stats, stats);
  }
  if (!root.ok()) return root.status();
  if (root_out != nullptr) *root_out = *root;
  return absl::OkStatus();
}

}  // namespace

extern "C" {

int ckpt_abi_version(void) noexcept { return CKPT_ABI_VERSION; }

const char* ckpt_strerror(int err) noexcept {
  if (err >= 0) return "success";
  // strerrordesc_np: a static text (strerror's may be a per-call buffer).
  const char* text = err > -4096 ? strerrordesc_np(-err) : nullptr;
  return text != nullptr ? text : "unknown error";
}

const char* ckpt_last_error(void) noexcept {
  return last_error_fixed != nullptr ? last_error_fixed : last_error.c_str();
}

int ckpt_checkpoint_tree(pid_t root, int out_fd, const struct ckpt_dump_opts* opts) noexcept {
  return Guarded("ckpt_checkpoint_tree", [&] { return CheckpointTree(root, out_fd, opts); });
}

int ckpt_restore_tree(int in_fd, const struct ckpt_restore_opts* opts, pid_t* root_out) noexcept {
  return Guarded("ckpt_restore_tree", [&] { return RestoreTree(in_fd, opts, root_out); });
}

}  // extern "C"
