// A task's signal state, dump and restore side by side:
//  - SIGHAND, the actions: the kernel shows them to no outside reader, so
//    the dump injects rt_sigaction() for every signal the task catches or
//    ignores;
//  - SIGNALS: the interval timers (getitimer in the task), the POSIX
//    timers (/proc/PID/timers, then timer_gettime in the task) and the
//    process-wide queue of pending signals, with every siginfo
//    (PTRACE_PEEKSIGINFO); each thread's own queue travels with the
//    thread. Restore queues the signals again with rt_sigqueueinfo /
//    rt_tgsigqueueinfo from inside the task (so any si_code is allowed),
//    recreates the POSIX timers with their ids (PR_TIMER_CREATE_RESTORE_IDS)
//    and arms every timer with the time it had left, counted from the
//    restore's start.

#ifndef LIBCKPT_LIB_TASK_SIGNALS_H_
#define LIBCKPT_LIB_TASK_SIGNALS_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
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

// The signals queued for thread `tid` (shared = false) or for its whole
// process (shared = true), oldest first.
absl::StatusOr<std::vector<image::ckpt_siginfo>> PeekPending(pid_t tid, bool shared);

// A POSIX timer as /proc/PID/timers shows it.
struct ProcTimer {
  int id = 0;
  int clock = 0;
  int notify = 0;  // SIGEV_*
  int signo = 0;
  pid_t tid = 0;   // SIGEV_THREAD_ID: the thread, as this process sees it
  uint64_t value = 0;
};
absl::StatusOr<std::vector<ProcTimer>> ReadProcTimers(pid_t pid);

struct TaskSignals {
  image::ckpt_signals rec{};
  std::vector<image::ckpt_siginfo> pending;  // the process-wide queue
  std::vector<image::ckpt_posix_timer> timers;
};

struct SignalsQuery {
  uint64_t itimer_out[3] = {};
  std::vector<ProcTimer> timers;
  std::vector<uint64_t> timer_out;   // struct itimerspec of each timer
  std::vector<size_t> overrun_call;  // timer_getoverrun of each timer
};
// getitimer for the three timers, timer_gettime and timer_getoverrun for
// each POSIX timer.
SignalsQuery QueueSignalsQuery(SyscallBatch& batch, std::vector<ProcTimer> timers);
// `elapsed_ns`: time since the checkpoint's start, added back to timers
// that kept running while the task was frozen. `tid_ref` maps a thread to
// its pid objref.
absl::StatusOr<TaskSignals> ReadSignalsQuery(const SyscallBatch& batch, const SignalsQuery& query,
                                             int64_t elapsed_ns,
                                             const std::function<absl::StatusOr<uint32_t>(pid_t)>& tid_ref);

absl::Status WriteSignals(const TaskSignals& signals, image::Writer& writer);
absl::StatusOr<TaskSignals> ReadSignalsRecords(image::Reader& reader);
// In the task's leader, once every thread exists: queues the pending
// signals (process-wide ones, and each thread's own from `per_thread`),
// creates the POSIX timers and arms all timers. `tgid` and the tids are as
// the task sees them; `ref_tid` maps a pid objref to such a tid.
absl::Status QueueSignalsRestore(
    SyscallQueue& queue, pid_t tgid, const TaskSignals& signals,
    const std::vector<std::pair<pid_t, std::vector<image::ckpt_siginfo>>>& per_thread,
    int64_t restore_start_mono_ns, const std::function<absl::StatusOr<pid_t>(uint32_t)>& ref_tid);

// Reads `n` SIGINFO records.
absl::StatusOr<std::vector<image::ckpt_siginfo>> ReadSiginfoRecords(image::Reader& reader,
                                                                    uint32_t n);

}  // namespace ckpt::task

#endif  // LIBCKPT_LIB_TASK_SIGNALS_H_
