// The C ABI: extern "C" functions over the C++ API. Errors become negative
// errno-style codes; the message is kept per thread for ckpt_last_error().

#include <cstring>
#include <string>

#include "ckpt/ckpt.h"
#include "ckpt/ckpt.hpp"
#include "lib/base/status.h"

namespace {

thread_local std::string last_error;

int Fail(const absl::Status& status) {
  last_error = std::string(status.message());
  return -ckpt::StatusToErrno(status);
}

// Copies the fields of a caller's struct that its `size` covers, so an
// older caller (smaller struct) and a newer one (larger) both work.
template <typename T>
T ReadVersioned(const T* in) {
  T out{};
  if (in == nullptr) return out;
  size_t n = in->size < sizeof(T) ? in->size : sizeof(T);
  std::memcpy(&out, in, n);
  return out;
}

template <typename T>
void WriteVersioned(T* dst, const T& src) {
  if (dst == nullptr || dst->size < sizeof(size_t)) return;
  size_t n = dst->size < sizeof(T) ? dst->size : sizeof(T);
  size_t caller_size = dst->size;
  std::memcpy(dst, &src, n);
  dst->size = caller_size;
}

}  // namespace

extern "C" {

int ckpt_abi_version(void) { return CKPT_ABI_VERSION; }

const char* ckpt_strerror(int err) {
  if (err >= 0) return "success";
  return strerror(-err);
}

const char* ckpt_last_error(void) { return last_error.c_str(); }

int ckpt_checkpoint_tree(pid_t root, int out_fd, const struct ckpt_dump_opts* opts) {
  last_error.clear();
  ckpt_dump_opts o = ReadVersioned(opts);
  ckpt::DumpOptions options;
  options.leave_running = o.flags & CKPT_DUMP_LEAVE_RUNNING;
  options.shell_job = o.flags & CKPT_DUMP_SHELL_JOB;
  options.container = o.flags & CKPT_DUMP_CONTAINER;
  ckpt::Checkpointer dumper(options);
  absl::Status st = dumper.Dump(root, out_fd);
  if (o.stats != nullptr) {
    const ckpt::DumpStats& s = dumper.stats();
    ckpt_dump_stats out{};
    out.size = sizeof(out);
    out.tasks = s.tasks;
    out.threads = s.threads;
    out.vmas = s.vmas;
    out.pages_written = s.pages_written;
    out.pages_skipped = s.pages_skipped;
    out.image_bytes = s.image_bytes;
    out.freeze_ns = s.freeze_ns;
    out.total_ns = s.total_ns;
    WriteVersioned(o.stats, out);
  }
  return st.ok() ? 0 : Fail(st);
}

int ckpt_restore_tree(int in_fd, const struct ckpt_restore_opts* opts, pid_t* root_out) {
  last_error.clear();
  ckpt_restore_opts o = ReadVersioned(opts);
  ckpt::RestoreOptions options;
  options.shell_job = o.flags & CKPT_RESTORE_SHELL_JOB;
  options.new_pidns = o.flags & CKPT_RESTORE_NEW_PIDNS;
  if ((o.flags & CKPT_RESTORE_IPC_NS_NEW) && (o.flags & CKPT_RESTORE_IPC_NS_CURRENT)) {
    return Fail(absl::InvalidArgumentError(
        "CKPT_RESTORE_IPC_NS_NEW and CKPT_RESTORE_IPC_NS_CURRENT exclude each other"));
  }
  if (o.flags & CKPT_RESTORE_IPC_NS_NEW) options.ipc_ns = ckpt::IpcNamespace::kNew;
  if (o.flags & CKPT_RESTORE_IPC_NS_CURRENT) options.ipc_ns = ckpt::IpcNamespace::kCurrent;
  ckpt::Restorer restorer(options);
  absl::StatusOr<pid_t> root = restorer.Restore(in_fd);
  if (o.stats != nullptr) {
    const ckpt::RestoreStats& s = restorer.stats();
    ckpt_restore_stats out{};
    out.size = sizeof(out);
    out.tasks = s.tasks;
    out.pages_written = s.pages_written;
    out.image_bytes = s.image_bytes;
    out.total_ns = s.total_ns;
    WriteVersioned(o.stats, out);
  }
  if (!root.ok()) return Fail(root.status());
  if (root_out != nullptr) *root_out = *root;
  return 0;
}

}  // extern "C"
