// A task's core: comm, personality, umask and prctl settings (TASK), its
// credentials (CREDS) and resource limits (RLIMITS). Dump and restore side
// by side.
//
// Dump: values /proc does not show are read by syscalls injected into the
// task; QueueCoreQuery adds them to a batch, ReadCore collects the results.
// Restore: QueueCoreRestore sets what must be set from inside the task
// early; QueueRlimitsRestore and then QueueCredsRestore come last (the
// credentials may drop privileges). Limits are read and set by the task
// itself: prlimit() on another user's task needs CAP_SYS_RESOURCE.

#ifndef LIBCKPT_LIB_TASK_CORE_H_
#define LIBCKPT_LIB_TASK_CORE_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/image/format.h"
#include "lib/image/reader.h"
#include "lib/image/writer.h"
#include "lib/task/inject.h"
#include "lib/task/proc.h"

namespace ckpt::task {

struct TaskCore {
  image::ckpt_task task{};
  image::ckpt_creds creds{};
  std::vector<uint32_t> groups;
  image::ckpt_rlimits rlimits{};
};

struct CoreQuery {
  size_t dumpable = 0, thp_disable = 0, securebits = 0;
  size_t mb_private = 0, mb_sync_core = 0, mb_rseq = 0;  // membarrier probes
  uint64_t pdeath_out = 0, subreaper_out = 0;
  uint64_t rlimits_out = 0;  // kNrRlimits struct rlimit, read by the task itself
};

CoreQuery QueueCoreQuery(SyscallBatch& batch);
absl::StatusOr<TaskCore> ReadCore(pid_t pid, const ProcStatus& status, const SyscallBatch& batch,
                                  const CoreQuery& query);

// A thread's own credentials, where they differ from its process's (the
// leader's): a raw setresuid() or capset() in one thread changes only it.
struct ThreadCreds {
  image::ckpt_creds creds{};
  std::vector<uint32_t> groups;
};
// The credentials of a thread (from its /proc status; securebits are the
// process's), or nothing when they are the process's.
std::optional<ThreadCreds> ThreadCredsIfOwn(const ProcStatus& status, const TaskCore& core);
// A CREDS record and its groups.
absl::Status WriteCredsRecord(const ThreadCreds& creds, image::Writer& writer);
absl::StatusOr<ThreadCreds> ReadCredsRecord(image::Reader& reader);

// TASK, CREDS, RLIMITS.
absl::Status WriteCore(const TaskCore& core, image::Writer& writer);
absl::StatusOr<TaskCore> ReadCoreRecords(image::Reader& reader);

absl::Status QueueCoreRestore(SyscallQueue& queue, const TaskCore& core);
absl::Status QueueCredsRestore(SyscallQueue& queue, const TaskCore& core);
absl::Status QueueRlimitsRestore(SyscallQueue& queue, const TaskCore& core);

}  // namespace ckpt::task

#endif  // LIBCKPT_LIB_TASK_CORE_H_
