// Reading and writing another task's memory with process_vm_readv/writev.
// A short transfer is an error naming the task and the address.

#ifndef LIBCKPT_LIB_TASK_REMOTE_H_
#define LIBCKPT_LIB_TASK_REMOTE_H_

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"

namespace ckpt::task {

absl::Status ReadRemote(pid_t pid, uint64_t addr, void* dst, size_t len);
absl::Status WriteRemote(pid_t pid, uint64_t addr, const void* src, size_t len);

// Scattered forms: `local` and `remote` describe the same number of bytes.
// Handles more than IOV_MAX entries and partial transfers.
absl::Status ReadRemoteV(pid_t pid, const struct iovec* local, size_t nr_local,
                         const struct iovec* remote, size_t nr_remote);
absl::Status WriteRemoteV(pid_t pid, const struct iovec* local, size_t nr_local,
                          const struct iovec* remote, size_t nr_remote);

}  // namespace ckpt::task

#endif  // LIBCKPT_LIB_TASK_REMOTE_H_
