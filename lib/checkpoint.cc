// The dump driver.

#include "ckpt/ckpt.hpp"
#include <signal.h>

#include "lib/base/status.h"

namespace ckpt {

absl::Status Checkpointer::Dump(pid_t root, int out_fd) {
  (void)out_fd;
  if (root <= 0 || kill(root, 0) != 0) return ErrnoError(ESRCH, "task ", root);
  return absl::UnimplementedError("checkpoint is not supported yet");
}

}  // namespace ckpt
