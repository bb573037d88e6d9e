// The running kernel's [vdso]: where a `syscall` instruction sits in it.
// Every process of one kernel maps the same vdso image, so an offset found
// in our own copy holds in a target's (and in a restored task's, whose
// vdso is the restorer's own, moved).

#ifndef LIBCKPT_LIB_TASK_VDSO_H_
#define LIBCKPT_LIB_TASK_VDSO_H_

#include <cstdint>

#include "absl/status/statusor.h"

namespace ckpt::task {

// Offset of the bytes 0f 05 (syscall) from the start of [vdso].
absl::StatusOr<uint64_t> VdsoSyscallOffset();

}  // namespace ckpt::task

#endif  // LIBCKPT_LIB_TASK_VDSO_H_
