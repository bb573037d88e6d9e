// Scheduling of a task: each thread's policy, priority, nice and CPU
// affinity (struct sched_attr, sched_getaffinity), and the process's
// oom_score_adj. Read from outside a stopped task and set again from
// outside the restored one (sched_setattr and sched_setaffinity take a
// TID; oom_score_adj is a /proc file).
//
//   RETURN_IF_ERROR(WriteSched(pid, threads, writer));   // dump, frozen
//   ASSIGN_OR_RETURN(TaskSched s, ReadSched(reader));    // restore
//   RETURN_IF_ERROR(ApplySched(pid, s, tid_of_ref));

#ifndef LIBCKPT_LIB_TASK_SCHED_H_
#define LIBCKPT_LIB_TASK_SCHED_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/image/format.h"
#include "lib/image/reader.h"
#include "lib/image/writer.h"

namespace ckpt::task {

struct ThreadSched {
  image::ckpt_sched_thread rec{};
  std::vector<uint64_t> cpus;  // the affinity mask, bit N = CPU N
};

struct TaskSched {
  int32_t oom_score_adj = 0;
  std::vector<ThreadSched> threads;
};

// SCHED and one SCHED_THREAD per thread of `threads` (TID, its pid objref),
// in that order.
absl::Status WriteSched(pid_t pid, const std::vector<std::pair<pid_t, uint32_t>>& threads,
                        image::Writer& w);
// Reads what WriteSched wrote, checking every field; `nr_threads` is the
// task's.
absl::StatusOr<TaskSched> ReadSched(image::Reader& r, uint32_t nr_threads);
// Sets it on the restored task `pid`, whose threads' TIDs (as this
// process sees them) `tid_of` gives by pid objref.
absl::Status ApplySched(pid_t pid, const TaskSched& s,
                        const std::function<pid_t(uint32_t tid_ref)>& tid_of);

}  // namespace ckpt::task

#endif  // LIBCKPT_LIB_TASK_SCHED_H_
