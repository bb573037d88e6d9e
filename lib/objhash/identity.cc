#include "lib/objhash/identity.h"

#include <sys/syscall.h>
#include <unistd.h>

#include "lib/base/status.h"

namespace ckpt::objhash {

absl::StatusOr<int> Kcmp(pid_t pid1, pid_t pid2, KcmpType type, unsigned long idx1,
                         unsigned long idx2) {
  long r = syscall(SYS_kcmp, pid1, pid2, static_cast<int>(type), idx1, idx2);
  if (r < 0) {
    return ErrnoError(errno, "kcmp(", pid1, ", ", pid2, ", type ", static_cast<int>(type), ", ",
                      idx1, ", ", idx2, ")");
  }
  return static_cast<int>(r);
}

absl::StatusOr<bool> SameObject(const Identity& a, const Identity& b) {
  if (a.key_hi != b.key_hi || a.key_lo != b.key_lo || a.kcmp != b.kcmp) return false;
  if (a.kcmp == kKcmpNone) return true;
  ASSIGN_OR_RETURN(int order, Kcmp(a.pid, b.pid, a.kcmp, a.idx, b.idx));
  return order == 0;
}

}  // namespace ckpt::objhash
