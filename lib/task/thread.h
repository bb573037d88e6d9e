// One thread's state (THREAD, then XSTATE): registers with fs_base and
// gs_base, the XSAVE area, signal mask, alternate signal stack, rseq
// registration, robust futex list and clear_child_tid. Dump and restore
// side by side.
//
// Registers and the XSAVE area are taken at freeze time, before any
// injection. The signal mask is taken after the first injected syscall: a
// task stopped inside sigsuspend() or ppoll() shows their temporary mask
// until it resumes once, and restarting the call sets it again.

#ifndef LIBCKPT_LIB_TASK_THREAD_H_
#define LIBCKPT_LIB_TASK_THREAD_H_

#include <signal.h>
#include <sys/types.h>
#include <sys/user.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/image/format.h"
#include "lib/image/reader.h"
#include "lib/image/writer.h"
#include "lib/task/core.h"
#include "lib/task/inject.h"
#include "lib/task/ptrace.h"
#include "lib/task/seccomp.h"

namespace ckpt::task {

struct ThreadState {
  pid_t tid = 0;
  user_regs_struct regs{};
  std::string xstate;
  uint64_t sigmask = 0;
  stack_t altstack{};
  RseqConfig rseq;
  uint64_t clear_child_tid = 0;
  uint64_t robust_list = 0;
  uint64_t robust_list_len = 0;
  std::vector<image::ckpt_siginfo> pending;       // the thread's own signal queue
  std::optional<image::ckpt_restart> restart;     // an interrupted restart-block syscall
  SeccompState seccomp;
  std::optional<ThreadCreds> creds;  // its own, where not its process's
};

// At freeze time: registers, XSAVE area, rseq, robust list.
absl::Status CaptureThreadFrozen(pid_t tid, ThreadState* state);

struct ThreadQuery {
  uint64_t altstack_out = 0;
  uint64_t tid_address_out = 0;
};
// Per-thread getters, to run in that thread: sigaltstack,
// PR_GET_TID_ADDRESS.
ThreadQuery QueueThreadQuery(SyscallBatch& batch);
void ReadThreadQuery(const SyscallBatch& batch, const ThreadQuery& query, ThreadState* state);

absl::Status WriteThread(const ThreadState& state, uint32_t tid_ref, image::Writer& writer);
// Reads THREAD, XSTATE, the thread's SIGINFO records and its RESTART.
absl::StatusOr<ThreadState> ReadThreadRecords(image::Reader& reader, uint32_t* tid_ref);

// Per-thread setup to run in the restored thread itself: altstack, rseq,
// robust list, clear_child_tid.
absl::Status QueueThreadRestore(SyscallQueue& queue, const ThreadState& state);

// Registers of the thread as a user_regs_struct in image order.
void RegsToRecord(const user_regs_struct& regs, uint64_t out[image::kNrUserRegs]);
user_regs_struct RegsFromRecord(const uint64_t in[image::kNrUserRegs]);

}  // namespace ckpt::task

#endif  // LIBCKPT_LIB_TASK_THREAD_H_
