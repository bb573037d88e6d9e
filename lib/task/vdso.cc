#include "lib/task/vdso.h"

#include <elf.h>
#include <sys/auxv.h>

#include <cstring>

namespace ckpt::task {

absl::StatusOr<uint64_t> VdsoSyscallOffset() {
  static const absl::StatusOr<uint64_t> offset = []() -> absl::StatusOr<uint64_t> {
    auto* base = reinterpret_cast<const uint8_t*>(getauxval(AT_SYSINFO_EHDR));
    if (base == nullptr) {
      return absl::FailedPreconditionError("this process has no [vdso] (AT_SYSINFO_EHDR is 0)");
    }
    // Search the executable PT_LOAD segment only.
    const auto* eh = reinterpret_cast<const Elf64_Ehdr*>(base);
    if (std::memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0) {
      return absl::FailedPreconditionError("[vdso] is not an ELF image");
    }
    const auto* ph = reinterpret_cast<const Elf64_Phdr*>(base + eh->e_phoff);
    for (int i = 0; i < eh->e_phnum; ++i) {
      if (ph[i].p_type != PT_LOAD || !(ph[i].p_flags & PF_X)) continue;
      const uint8_t* p = base + ph[i].p_offset;
      for (uint64_t j = 0; j + 1 < ph[i].p_filesz; ++j) {
        if (p[j] == 0x0f && p[j + 1] == 0x05) return ph[i].p_offset + j;
      }
    }
    return absl::FailedPreconditionError("no syscall instruction in [vdso]");
  }();
  return offset;
}

}  // namespace ckpt::task
