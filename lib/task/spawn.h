// Creating a task for the restore: a clone3() child of the caller with
// the original PID (set_tid), which prepares itself and waits to be
// seized. It is a copy of the caller until the restorer replaces its
// memory from outside.
//
//   SpawnSpec spec{.pid = 4242, .set_sid = true, .trampoline = area};
//   ASSIGN_OR_RETURN(pid_t pid, SpawnTask(spec));  // stopped, seized

#ifndef LIBCKPT_LIB_TASK_SPAWN_H_
#define LIBCKPT_LIB_TASK_SPAWN_H_

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace ckpt::task {

struct SpawnSpec {
  // The PID at every pid-namespace level, outermost first (as in
  // ckpt_pid.nr); the last is the one the caller sees.
  std::vector<pid_t> pids;
  bool set_sid = false;   // become a session (and group) leader
  bool set_pgid = false;  // become a group leader
  uint64_t trampoline = 0;  // where the child maps the trampoline
};

// Creates the task, waits until it is ready, seizes it (PTRACE_O_EXITKILL:
// it dies if the restorer does) and stops it. A PID that is taken is an
// AlreadyExists error naming it.
absl::StatusOr<pid_t> SpawnTask(const SpawnSpec& spec);

}  // namespace ckpt::task

#endif  // LIBCKPT_LIB_TASK_SPAWN_H_
