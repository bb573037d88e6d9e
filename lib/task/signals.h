// A task's signal actions (SIGHAND), dump and restore side by side. The
// kernel shows them to no outside reader, so the dump injects
// rt_sigaction() for every signal the task catches or ignores.

#ifndef LIBCKPT_LIB_TASK_SIGNALS_H_
#define LIBCKPT_LIB_TASK_SIGNALS_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/image/format.h"
#include "lib/image/reader.h"
#include "lib/image/writer.h"
#include "lib/task/inject.h"

namespace ckpt::task {

struct SighandQuery {
  std::vector<std::pair<int, uint64_t>> outputs;  // signal, address of its action
};

// Queues rt_sigaction(sig, NULL, &old) for each signal in `mask` (bit
// sig-1), SigCgt | SigIgn of /proc/PID/status.
SighandQuery QueueSighandQuery(SyscallBatch& batch, uint64_t mask);
image::ckpt_sighand ReadSighand(const SyscallBatch& batch, const SighandQuery& query);

absl::Status WriteSighand(const image::ckpt_sighand& sighand, image::Writer& writer);
absl::StatusOr<image::ckpt_sighand> ReadSighandRecord(image::Reader& reader);
// Sets every action but SIGKILL's and SIGSTOP's (which cannot be set).
absl::Status QueueSighandRestore(SyscallQueue& queue, const image::ckpt_sighand& sighand);

}  // namespace ckpt::task

#endif  // LIBCKPT_LIB_TASK_SIGNALS_H_
