#include "lib/task/signals.h"

#include <signal.h>
#include <sys/syscall.h>

#include <cstring>

#include "lib/base/status.h"

namespace ckpt::task {
namespace {

constexpr uint64_t kSaRestorer = 0x04000000;
constexpr uint64_t kKnownSaFlags = SA_NOCLDSTOP | SA_NOCLDWAIT | SA_SIGINFO | SA_ONSTACK |
                                   SA_RESTART | SA_NODEFER | SA_RESETHAND | kSaRestorer |
                                   0x00000400 /* SA_EXPOSE_TAGBITS */ |
                                   0x00000800 /* SA_UNSUPPORTED */;

}  // namespace

SighandQuery QueueSighandQuery(SyscallBatch& b, uint64_t mask) {
  SighandQuery q;
  for (int sig = 1; sig <= 64; ++sig) {
    if (!(mask >> (sig - 1) & 1) || sig == SIGKILL || sig == SIGSTOP) continue;
    uint64_t out = b.Reserve(sizeof(image::ckpt_sigaction));
    b.Add(SYS_rt_sigaction, {static_cast<uint64_t>(sig), 0, out, 8});
    q.outputs.push_back({sig, out});
  }
  return q;
}

image::ckpt_sighand ReadSighand(const SyscallBatch& b, const SighandQuery& q) {
  image::ckpt_sighand sh{};
  for (const auto& [sig, out] : q.outputs) {
    std::memcpy(&sh.action[sig - 1], b.Output(out), sizeof(image::ckpt_sigaction));
  }
  return sh;
}

absl::Status WriteSighand(const image::ckpt_sighand& sh, image::Writer& w) {
  return w.AppendStruct(image::CKPT_HDR_SIGHAND, sh);
}

absl::StatusOr<image::ckpt_sighand> ReadSighandRecord(image::Reader& r) {
  ASSIGN_OR_RETURN(image::ckpt_sighand sh, r.Expect<image::ckpt_sighand>(image::CKPT_HDR_SIGHAND));
  for (int sig = 1; sig <= 64; ++sig) {
    const image::ckpt_sigaction& a = sh.action[sig - 1];
    if (a.flags & ~kKnownSaFlags) {
      return r.FieldError("flags", "signal ", sig, " has unknown flags ", a.flags);
    }
    if ((sig == SIGKILL || sig == SIGSTOP) && (a.handler != 0 || a.flags != 0)) {
      return r.FieldError("handler", "signal ", sig, " cannot have an action");
    }
  }
  return sh;
}

absl::Status QueueSighandRestore(SyscallQueue& q, const image::ckpt_sighand& sh) {
  RETURN_IF_ERROR(q.Reserve(64, sizeof(sh) + 64 * 16));
  SyscallBatch& b = q.batch();
  for (int sig = 1; sig <= 64; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    b.Add(SYS_rt_sigaction, {static_cast<uint64_t>(sig), b.AddStruct(sh.action[sig - 1]), 0, 8});
  }
  return absl::OkStatus();
}

}  // namespace ckpt::task
