// seccomp: a thread's BPF filters (read with PTRACE_SECCOMP_GET_FILTER and
// _METADATA, which need CAP_SYS_ADMIN in the initial user namespace and a
// dumper under no seccomp filter of its own) are installed again at
// restore, oldest first, before the thread's credentials are set
// (installing one needs no_new_privs or CAP_SYS_ADMIN); the calls the
// restore injects after that pass through them, as the thread's own did.
// Refused: strict mode (it forbids the calls the dump injects) and a
// filter that answers with SECCOMP_RET_USER_NOTIF (a listener elsewhere).
//
//   ASSIGN_OR_RETURN(state.seccomp, ReadSeccomp(pid, tid, status));  // dump, frozen
//   RETURN_IF_ERROR(QueueSeccompFilters(queue, state.seccomp)); // restore

#ifndef LIBCKPT_LIB_TASK_SECCOMP_H_
#define LIBCKPT_LIB_TASK_SECCOMP_H_

#include <linux/filter.h>
#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/image/format.h"
#include "lib/image/reader.h"
#include "lib/image/writer.h"
#include "lib/task/inject.h"
#include "lib/task/proc.h"

namespace ckpt::task {

struct SeccompFilter {
  uint32_t flags = 0;
  std::vector<struct sock_filter> insns;
};

struct SeccompState {
  uint32_t mode = 0;  // 0: none; else SECCOMP_MODE_FILTER
  std::vector<SeccompFilter> filters;  // oldest first
};

// `status`: the thread's /proc status (its Seccomp: mode).
absl::StatusOr<SeccompState> ReadSeccomp(pid_t pid, pid_t tid, const ProcStatus& status);
absl::Status WriteSeccomp(const SeccompState& s, image::Writer& writer);
absl::StatusOr<SeccompState> ReadSeccompRecords(image::Reader& reader);
// The filters (mode 2), as syscalls of the thread's queue.
absl::Status QueueSeccompFilters(SyscallQueue& queue, const SeccompState& s);

}  // namespace ckpt::task

#endif  // LIBCKPT_LIB_TASK_SECCOMP_H_
