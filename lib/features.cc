// `ckpt check`: probes each kernel interface libckpt relies on, without
// side effects on the caller (anything that needs a victim uses a child).

#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "ckpt/ckpt.hpp"
#include "lib/mm/uapi.h"

namespace ckpt {
namespace {

std::string ErrnoText(int err) { return absl::StrCat(strerror(err), " (errno ", err, ")"); }

KernelFeature ProbePagemapScan() {
  KernelFeature f{"PAGEMAP_SCAN ioctl", false, false,
                  "fast page scanning; without it /proc/PID/pagemap is read"};
  int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    f.detail = "cannot open /proc/self/pagemap: " + ErrnoText(errno);
    return f;
  }
  static char page[4096];
  page[0] = 1;
  mm::page_region regions[4];
  mm::pm_scan_arg arg{};
  arg.size = sizeof(arg);
  arg.start = reinterpret_cast<uint64_t>(page) & ~4095ull;
  arg.end = arg.start + 4096;
  arg.vec = reinterpret_cast<uint64_t>(regions);
  arg.vec_len = 4;
  arg.category_anyof_mask = mm::kPageIsPresent;
  arg.return_mask = mm::kPageIsPresent;
  long r = ioctl(fd, mm::kPagemapScan, &arg);
  if (r < 0) f.detail = "missing: " + ErrnoText(errno) + "; /proc/PID/pagemap is read instead";
  f.present = r >= 0;
  close(fd);
  return f;
}

KernelFeature ProbeProcmapQuery() {
  KernelFeature f{"PROCMAP_QUERY ioctl", false, false, "per-VMA queries of /proc/PID/maps"};
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return f;
  mm::procmap_query q{};
  q.size = sizeof(q);
  q.query_addr = reinterpret_cast<uint64_t>(&ProbeProcmapQuery);
  long r = ioctl(fd, mm::kProcmapQuery, &q);
  f.present = r == 0;
  if (!f.present) f.detail = "missing: " + ErrnoText(errno);
  close(fd);
  return f;
}

KernelFeature ProbeClone3SetTid() {
  KernelFeature f{"clone3 set_tid", false, true, "restore with the original PIDs"};
  // A set_tid pointer the kernel cannot read: a kernel that knows set_tid
  // fails with EFAULT copying it; an older one refuses the size.
  struct clone_args args;
  memset(&args, 0, sizeof(args));
  args.exit_signal = SIGCHLD;
  args.set_tid = ~0ull;
  args.set_tid_size = 1;
  long r = syscall(SYS_clone3, &args, sizeof(args));
  if (r == 0) _exit(0);  // cannot happen, but never run on in a child
  if (r > 0) waitpid(static_cast<pid_t>(r), nullptr, 0);
  f.present = r < 0 && errno == EFAULT;
  if (!f.present) f.detail = "missing: " + ErrnoText(errno);
  return f;
}

KernelFeature ProbeCheckpointRestoreCap() {
  KernelFeature f{"CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN", false, true,
                  "choosing PIDs at restore, PR_SET_MM_MAP"};
  std::string status;
  int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  char buf[8192];
  ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
  if (fd >= 0) close(fd);
  if (n <= 0) return f;
  buf[n] = 0;
  const char* eff = strstr(buf, "CapEff:");
  if (eff == nullptr) return f;
  unsigned long long caps = strtoull(eff + 7, nullptr, 16);
  constexpr int kCapSysAdmin = 21;
  constexpr int kCapCheckpointRestore = 40;
  f.present = (caps >> kCapSysAdmin & 1) || (caps >> kCapCheckpointRestore & 1);
  if (!f.present) f.detail = "missing from the effective capabilities of this process";
  return f;
}

KernelFeature ProbePidfdGetfd() {
  KernelFeature f{"pidfd_getfd", false, true, "reading pipes and files of a frozen task"};
  long r = syscall(SYS_pidfd_getfd, -1, 0, 0);
  f.present = !(r < 0 && errno == ENOSYS);
  if (!f.present) f.detail = "missing: " + ErrnoText(errno);
  return f;
}

KernelFeature ProbeKcmp() {
  KernelFeature f{"kcmp", false, true, "identity of shared files, mm, fd tables"};
  long r = syscall(SYS_kcmp, getpid(), getpid(), 1 /* KCMP_VM */, 0, 0);
  f.present = r == 0;
  if (!f.present) f.detail = "missing: " + ErrnoText(errno);
  return f;
}

KernelFeature ProbePrSetMmMap() {
  KernelFeature f{"PR_SET_MM_MAP", false, true, "mm fields, auxv and exe of restored tasks"};
  unsigned int size = 0;
  long r = prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, &size, 0, 0);
  f.present = r == 0 && size > 0;
  if (!f.present) f.detail = "missing: " + ErrnoText(errno);
  return f;
}

KernelFeature ProbeSoftDirty() {
  KernelFeature f{"soft-dirty bits", false, false,
                  "incremental dumps (not used yet; CONFIG_MEM_SOFT_DIRTY)"};
  // Clear this process's soft-dirty bits (harmless), write a page, and look
  // at bit 55 of its pagemap entry: only a soft-dirty kernel sets it.
  int clear = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
  int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (clear < 0 || pagemap < 0) {
    f.detail = "cannot open /proc/self/clear_refs or pagemap: " + ErrnoText(errno);
  } else if (write(clear, "4", 1) == 1) {
    static volatile char page[4096] __attribute__((aligned(4096)));
    page[0] = 1;
    uint64_t entry = 0;
    off_t off = static_cast<off_t>(reinterpret_cast<uintptr_t>(page) / 4096 * 8);
    f.present = pread(pagemap, &entry, 8, off) == 8 && (entry >> 55 & 1);
    if (!f.present) f.detail = "missing: written pages are not marked soft-dirty";
  }
  if (clear >= 0) close(clear);
  if (pagemap >= 0) close(pagemap);
  return f;
}

KernelFeature ProbeUserfaultfd() {
  KernelFeature f{"userfaultfd", false, false, "lazy restore (not used yet)"};
  long fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  f.present = fd >= 0;
  if (fd >= 0) {
    close(static_cast<int>(fd));
  } else {
    f.detail = "missing: " + ErrnoText(errno);
  }
  return f;
}

// Needs a tracee: a child that only sleeps.
KernelFeature ProbePtraceRseq() {
  KernelFeature f{"PTRACE_GET_RSEQ_CONFIGURATION", false, true,
                  "rseq registrations of dumped threads"};
  pid_t child = fork();
  if (child < 0) {
    f.detail = "fork: " + ErrnoText(errno);
    return f;
  }
  if (child == 0) {
    for (;;) pause();
  }
  struct {
    uint64_t ptr;
    uint32_t size, sig, flags, pad;
  } conf{};
  constexpr int kPtraceGetRseqConfiguration = 0x420f;
  int status;
  if (ptrace(PTRACE_SEIZE, child, 0, 0) == 0 && ptrace(PTRACE_INTERRUPT, child, 0, 0) == 0 &&
      waitpid(child, &status, __WALL) == child) {
    long r = ptrace(static_cast<__ptrace_request>(kPtraceGetRseqConfiguration), child,
                    sizeof(conf), &conf);
    f.present = r == static_cast<long>(sizeof(conf));
    if (!f.present) f.detail = "missing: " + ErrnoText(errno);
  } else {
    f.detail = "cannot seize a child: " + ErrnoText(errno);
  }
  kill(child, SIGKILL);
  waitpid(child, &status, __WALL);
  return f;
}

}  // namespace

std::vector<KernelFeature> ProbeKernelFeatures() {
  return {ProbePagemapScan(),  ProbeProcmapQuery(),         ProbeClone3SetTid(),
          ProbeCheckpointRestoreCap(), ProbePidfdGetfd(),   ProbeKcmp(),
          ProbePrSetMmMap(),   ProbePtraceRseq(),           ProbeSoftDirty(),
          ProbeUserfaultfd()};
}

}  // namespace ckpt
