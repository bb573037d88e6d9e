#include "lib/task/recovery.h"

#include <cpuid.h>
#include <elf.h>
#include <errno.h>
#include <sys/auxv.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <map>
#include <mutex>

#include "absl/strings/str_cat.h"

namespace ckpt::task {
namespace {

// The kernel's x86-64 struct sigcontext, ucontext and rt_sigframe, as
// rt_sigreturn reads them (arch/x86/include/uapi/asm/sigcontext.h,
// arch/x86/include/asm/sigframe.h).
struct KernelSigcontext {
  uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
  uint64_t rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags;
  uint16_t cs, gs, fs, ss;
  uint64_t err, trapno, oldmask, cr2;
  uint64_t fpstate;
  uint64_t reserved1[8];
};
static_assert(sizeof(KernelSigcontext) == 256);

struct KernelUcontext {
  uint64_t uc_flags;
  uint64_t uc_link;
  uint64_t ss_sp;
  int32_t ss_flags;
  int32_t ss_pad;
  uint64_t ss_size;
  KernelSigcontext mc;
  uint64_t sigmask;
};
static_assert(sizeof(KernelUcontext) == 304);

struct KernelRtSigframe {
  uint64_t pretcode;
  KernelUcontext uc;
  uint8_t info[128];
};
static_assert(sizeof(KernelRtSigframe) == 440);

constexpr size_t kFpstateOffset = 448;  // 64-byte aligned, after the frame
constexpr uint64_t kUcFpXstate = 0x1, kUcSigcontextSs = 0x2, kUcStrictRestoreSs = 0x4;
constexpr uint32_t kFpXstateMagic1 = 0x46505853, kFpXstateMagic2 = 0x46505845;
constexpr size_t kSwBytesOffset = 464;  // fxsave's sw_reserved
constexpr size_t kXstateBvOffset = 512;
constexpr size_t kXsaveMinSize = 576;   // legacy area + XSAVE header
// An ss_flags value rt_sigreturn's sigaltstack refuses (EINVAL, ignored
// by the kernel): the alternate signal stack stays as it is.
constexpr int32_t kLeaveAltstack = 0x40;
constexpr int64_t kErestartsys = 512, kErestartnointr = 513, kErestartnohand = 514,
                  kErestartRestartblock = 516;

struct FxSwBytes {
  uint32_t magic1;
  uint32_t extended_size;
  uint64_t xfeatures;
  uint32_t xstate_size;
  uint32_t padding[7];
};
static_assert(sizeof(FxSwBytes) == 48);

// Where each user component of the standard (not compacted) XSAVE layout
// ends, from CPUID leaf 0xD, asked once: in a virtual machine every CPUID
// is a trap to the hypervisor, and frames are built for every thread.
const std::array<size_t, 64>& XstateComponentEnds() {
  static const std::array<size_t, 64> ends = [] {
    std::array<size_t, 64> e{};
    for (int i = 2; i < 63; ++i) {
      unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
      if (!__get_cpuid_count(0xd, i, &eax, &ebx, &ecx, &edx)) continue;
      if (ecx & 1) continue;  // a supervisor component: not in a user frame
      e[i] = size_t{ebx} + eax;
    }
    return e;
  }();
  return ends;
}

// Where the user components in `xfeatures` end.
size_t XstateEnd(uint64_t xfeatures) {
  const std::array<size_t, 64>& ends = XstateComponentEnds();
  size_t end = kXsaveMinSize;
  for (int i = 2; i < 63; ++i) {
    if (xfeatures & (1ull << i)) end = std::max(end, ends[i]);
  }
  return end;
}

}  // namespace

size_t RecoveryFrameMaskOffset() {
  return offsetof(KernelRtSigframe, uc) + offsetof(KernelUcontext, sigmask);
}

size_t RecoveryFrameSize(size_t xstate_len) {
  return (kFpstateOffset + xstate_len + sizeof(uint32_t) + 63) & ~size_t{63};
}

uint64_t StackFrameAddress(uint64_t rsp, size_t size) {
  return (rsp - 128 - size) & ~uint64_t{63};
}

absl::StatusOr<std::string> BuildRecoveryFrame(uint64_t at, const user_regs_struct& regs,
                                               const std::string& xstate, uint64_t sigmask,
                                               uint64_t pretcode) {
  if (at % 64 != 0) return absl::InvalidArgumentError("recovery frame not 64-byte aligned");
  if (xstate.size() < kXsaveMinSize) {
    return absl::FailedPreconditionError(
        absl::StrCat("an XSAVE area of ", xstate.size(), " bytes is too small to restore"));
  }
  std::string out(RecoveryFrameSize(xstate.size()), '\0');
  KernelRtSigframe f{};
  f.pretcode = pretcode;
  f.uc.uc_flags = kUcFpXstate | kUcSigcontextSs | kUcStrictRestoreSs;
  f.uc.ss_flags = kLeaveAltstack;
  KernelSigcontext& m = f.uc.mc;
  m.r8 = regs.r8;
  m.r9 = regs.r9;
  m.r10 = regs.r10;
  m.r11 = regs.r11;
  m.r12 = regs.r12;
  m.r13 = regs.r13;
  m.r14 = regs.r14;
  m.r15 = regs.r15;
  m.rdi = regs.rdi;
  m.rsi = regs.rsi;
  m.rbp = regs.rbp;
  m.rbx = regs.rbx;
  m.rdx = regs.rdx;
  m.rax = regs.rax;
  m.rcx = regs.rcx;
  m.rsp = regs.rsp;
  m.rip = regs.rip;
  m.eflags = regs.eflags;
  m.cs = static_cast<uint16_t>(regs.cs);
  m.ss = static_cast<uint16_t>(regs.ss);
  // rt_sigreturn leaves with orig_rax = -1, past the kernel's restart
  // logic: apply it here, as a signal without a handler would.
  const int64_t rax = static_cast<int64_t>(regs.rax);
  if (static_cast<int64_t>(regs.orig_rax) >= 0) {
    if (rax == -kErestartsys || rax == -kErestartnointr || rax == -kErestartnohand) {
      m.rax = regs.orig_rax;
      m.rip = regs.rip - 2;
    } else if (rax == -kErestartRestartblock) {
      m.rax = static_cast<uint64_t>(-EINTR);
    }
  }
  m.fpstate = at + kFpstateOffset;
  f.uc.sigmask = sigmask;
  std::memcpy(out.data(), &f, sizeof(f));

  char* fp = out.data() + kFpstateOffset;
  std::memcpy(fp, xstate.data(), xstate.size());
  uint64_t xstate_bv;
  std::memcpy(&xstate_bv, fp + kXstateBvOffset, sizeof(xstate_bv));
  FxSwBytes sw{};
  sw.magic1 = kFpXstateMagic1;
  sw.xstate_size = static_cast<uint32_t>(std::min(XstateEnd(xstate_bv), xstate.size()));
  sw.extended_size = sw.xstate_size + sizeof(uint32_t);
  sw.xfeatures = xstate_bv | 0x3;  // x87 and SSE are always in the legacy area
  std::memcpy(fp + kSwBytesOffset, &sw, sizeof(sw));
  std::memcpy(fp + sw.xstate_size, &kFpXstateMagic2, sizeof(kFpXstateMagic2));
  return out;
}

uint64_t VdsoSyscallRetOffset() {
  static const uint64_t offset = []() -> uint64_t {
    auto* base = reinterpret_cast<const uint8_t*>(getauxval(AT_SYSINFO_EHDR));
    if (base == nullptr) return 0;
    const auto* eh = reinterpret_cast<const Elf64_Ehdr*>(base);
    if (std::memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0) return 0;
    const auto* ph = reinterpret_cast<const Elf64_Phdr*>(base + eh->e_phoff);
    // After the syscall, only these may come before the ret: each clears
    // a register the syscall's arguments or result do not need.
    static const std::vector<std::vector<uint8_t>> kClears = {
        {0x31, 0xc9}, {0x31, 0xd2}, {0x31, 0xf6}, {0x31, 0xff},
        {0x45, 0x31, 0xc0}, {0x45, 0x31, 0xc9}, {0x45, 0x31, 0xd2}, {0x45, 0x31, 0xdb}};
    for (int i = 0; i < eh->e_phnum; ++i) {
      if (ph[i].p_type != PT_LOAD || !(ph[i].p_flags & PF_X)) continue;
      const uint8_t* p = base + ph[i].p_offset;
      const uint64_t n = ph[i].p_filesz;
      for (uint64_t j = 0; j + 2 < n; ++j) {
        if (p[j] != 0x0f || p[j + 1] != 0x05) continue;
        uint64_t k = j + 2;
        for (bool more = true; more && k < n;) {
          more = false;
          for (const auto& c : kClears) {
            if (k + c.size() <= n && std::equal(c.begin(), c.end(), p + k)) {
              k += c.size();
              more = true;
              break;
            }
          }
        }
        if (k < n && p[k] == 0xc3) return ph[i].p_offset + j;
      }
    }
    return 0;
  }();
  return offset;
}

uint64_t FindSigreturnGadget(pid_t pid, const std::vector<CodeRange>& ranges) {
  // mov $0xf, %rax; syscall
  static constexpr uint8_t kGadget[] = {0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05};
  static std::mutex mu;
  static std::map<std::string, int64_t> cache;  // key -> offset in the range, -1: none
  auto verify = [&](uint64_t addr) {
    uint8_t got[sizeof(kGadget)];
    struct iovec local = {got, sizeof(got)};
    struct iovec remote = {reinterpret_cast<void*>(addr), sizeof(got)};
    return process_vm_readv(pid, &local, 1, &remote, 1, 0) == sizeof(got) &&
           std::memcmp(got, kGadget, sizeof(got)) == 0;
  };
  for (const CodeRange& r : ranges) {
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = cache.find(r.key);
      if (it != cache.end()) {
        if (it->second < 0) continue;
        if (verify(r.start + it->second)) return r.start + it->second;
      }
    }
    constexpr size_t kChunk = 256 << 10;
    std::string buf(kChunk + sizeof(kGadget), '\0');
    int64_t found = -1;
    for (uint64_t at = r.start; at < r.end && found < 0; at += kChunk) {
      size_t len = std::min<uint64_t>(kChunk + sizeof(kGadget) - 1, r.end - at);
      struct iovec local = {buf.data(), len};
      struct iovec remote = {reinterpret_cast<void*>(at), len};
      ssize_t got = process_vm_readv(pid, &local, 1, &remote, 1, 0);
      if (got < static_cast<ssize_t>(sizeof(kGadget))) break;
      auto hit = std::search(buf.data(), buf.data() + got, std::begin(kGadget), std::end(kGadget),
                             [](char a, uint8_t b) { return static_cast<uint8_t>(a) == b; });
      if (hit != buf.data() + got) found = static_cast<int64_t>(at - r.start + (hit - buf.data()));
    }
    std::lock_guard<std::mutex> lock(mu);
    cache[r.key] = found;
    if (found >= 0) return r.start + found;
  }
  return 0;
}

}  // namespace ckpt::task
