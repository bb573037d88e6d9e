// Running syscalls inside a stopped task, from the outside.
//
// Two ways in:
//  - SyscallViaInsn: point the thread at a `syscall` instruction that is
//    already in its memory (its [vdso]) and step it with PTRACE_SYSCALL:
//    two stops per syscall, no memory written. Used to map and unmap the
//    trampoline, and for the last syscalls of a restore.
//  - Run(SyscallBatch): the trampoline (trampoline.S), mapped in the task,
//    runs a whole table of syscalls and stops on int3: one round trip for
//    many syscalls. Arguments that point at memory point into the
//    trampoline's data area, which the batch fills.
//
//   Injector inj(pid, tid);
//   RETURN_IF_ERROR(inj.Begin(vdso_syscall_insn));
//   RETURN_IF_ERROR(inj.MapTrampoline());
//   SyscallBatch batch = inj.NewBatch();
//   uint64_t old = batch.Reserve(sizeof(kernel_sigaction));
//   size_t i = batch.Add(SYS_rt_sigaction, {SIGINT, 0, old, 8});
//   RETURN_IF_ERROR(inj.Run(batch));
//   ... batch.Output(old) ...
//   RETURN_IF_ERROR(inj.Finish(saved_regs, saved_mask));
//
// Finish leaves the thread in a ptrace event stop on the signal path, with
// the final registers set, so that when it is let go the kernel's own
// syscall-restart logic applies to them exactly as if it had never been
// stopped.

#ifndef LIBCKPT_LIB_TASK_INJECT_H_
#define LIBCKPT_LIB_TASK_INJECT_H_

#include <sys/types.h>
#include <sys/user.h>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ckpt::task {

// One entry of the trampoline's table (see trampoline.S).
struct InjectedCall {
  uint32_t nr;
  uint32_t flags;
  uint64_t args[6];
  int64_t ret;
};
static_assert(sizeof(InjectedCall) == 64);

// InjectedCall::flags
inline constexpr uint32_t kMayFail = 1u << 0;  // an error does not stop the batch

// The signals held back while syscalls are injected. A dump leaves SIGURG
// through (its batches end on a SIGURG the thread sends itself, see
// trampoline.S), a restore SIGTRAP (its batches end on int3).
inline constexpr uint64_t kDumpInjectionMask = ~(1ull << (23 /* SIGURG */ - 1));
inline constexpr uint64_t kRestoreInjectionMask = ~(1ull << (5 /* SIGTRAP */ - 1));

// Where the trampoline lives in a task: code, call table, data area, and
// in a dump one recovery frame per thread (recovery.h).
struct TrampolineLayout {
  static constexpr uint64_t kCodeSize = 4096;
  static constexpr uint64_t kTableSize = 64 * 1024;  // 1024 calls
  static constexpr uint64_t kDataSize = 4 << 20;
  static constexpr uint64_t kSize = kCodeSize + kTableSize + kDataSize;
  static constexpr uint64_t kMaxCalls = kTableSize / sizeof(InjectedCall);

  uint64_t base = 0;
  uint64_t frame_size = 0;  // bytes per recovery frame
  uint64_t nr_frames = 0;
  // The part of the table and data area a batch uses: all of them, or a
  // slice of its own for a thread whose batch runs alongside others'.
  uint64_t table_off = 0;
  uint64_t data_off = 0;
  uint64_t max_calls = kMaxCalls;
  uint64_t max_data = kDataSize;
  uint64_t code() const { return base; }
  uint64_t table() const { return base + kCodeSize + table_off; }
  uint64_t data() const { return base + kCodeSize + kTableSize + data_off; }
  // Slice i of n equal slices of the table and of the data area.
  TrampolineLayout Slice(uint64_t i, uint64_t n) const {
    TrampolineLayout s = *this;
    s.max_calls = kMaxCalls / n;
    s.max_data = (kDataSize / n) & ~uint64_t{63};
    s.table_off = i * s.max_calls * sizeof(InjectedCall);
    s.data_off = i * s.max_data;
    return s;
  }
  uint64_t frame(uint64_t i) const { return base + kSize + i * frame_size; }
  uint64_t mapped_size() const { return kSize + nr_frames * frame_size; }
  uint64_t end() const { return base + mapped_size(); }
};

// The trampoline's machine code, to be copied at TrampolineLayout::code().
std::span<const uint8_t> TrampolineCode();

// A table of syscalls and the bytes they point at.
class SyscallBatch {
 public:
  explicit SyscallBatch(const TrampolineLayout& layout) : layout_(layout) {}

  // Appends a syscall; returns its index.
  size_t Add(long nr, std::initializer_list<uint64_t> args, uint32_t flags = 0);
  // Copies bytes into the data area; returns their address in the task.
  uint64_t AddData(const void* data, size_t len);
  template <typename T>
  uint64_t AddStruct(const T& value) {
    return AddData(&value, sizeof(T));
  }
  uint64_t AddString(absl::string_view s);  // NUL-terminated
  // Zeroed space the syscalls write into; read it with Output() after Run.
  uint64_t Reserve(size_t len);

  // Whether `calls` more syscalls and `data` more bytes fit.
  bool HasRoom(size_t calls, size_t data) const;
  size_t size() const { return calls_.size(); }
  bool empty() const { return calls_.empty(); }
  int64_t ret(size_t i) const { return calls_[i].ret; }
  // Bytes of the data area as the task left them (valid after Run).
  const uint8_t* Output(uint64_t addr) const { return data_.data() + (addr - layout_.data()); }
  void Clear();

 private:
  friend class Injector;
  TrampolineLayout layout_;
  std::vector<InjectedCall> calls_;
  std::vector<uint8_t> data_;
  bool read_back_ = false;
};

// "mmap", "rt_sigaction", ... for error messages.
std::string SyscallName(long nr);

class Injector {
 public:
  // `pid` is the thread group, `tid` the thread to run syscalls in; it must
  // be in a ptrace stop.
  Injector(pid_t pid, pid_t tid) : pid_(pid), tid_(tid) {}

  // Takes the thread's current registers as the template for injections
  // and remembers where a `syscall` instruction is in its memory.
  absl::Status Begin(uint64_t syscall_insn);
  // Same with the registers the caller read already (the thread has not
  // run since).
  void Begin(uint64_t syscall_insn, const user_regs_struct& regs);
  void set_syscall_insn(uint64_t addr) { syscall_insn_ = addr; }
  uint64_t syscall_insn() const { return syscall_insn_; }

  // One syscall through the `syscall` instruction, with PTRACE_SYSCALL
  // stops. Returns the raw result (-errno on failure).
  absl::StatusOr<int64_t> SyscallViaInsn(long nr, std::array<uint64_t, 6> args);
  // Same, but an error result becomes a Status naming the syscall.
  absl::StatusOr<int64_t> CheckedSyscallViaInsn(long nr, std::array<uint64_t, 6> args);
  // A blocking syscall through the `syscall` instruction, interrupted
  // (PTRACE_INTERRUPT) as soon as it runs: the raw result, which is
  // -ERESTART_RESTARTBLOCK when the kernel set up a restart block for it.
  // The interrupt stays pending: the next resume reports it as an event
  // stop.
  absl::StatusOr<int64_t> SyscallInterrupted(long nr, std::array<uint64_t, 6> args);

  // Dump: from here on, every place this thread's registers point at
  // during an injection leads back to `regs`, `xstate` and `sigmask` if
  // the tracer vanishes (recovery.h). `vdso_start` is the task's [vdso],
  // `sigreturn_gadget` an rt_sigreturn in its code (0: none known, and
  // then syscalls at the [vdso] are not covered). Call before any
  // injection; `regs` are normally the thread's registers at the freeze.
  absl::Status EnableRecovery(const user_regs_struct& regs, const std::string& xstate,
                              uint64_t sigmask, uint64_t vdso_start, uint64_t sigreturn_gadget);
  // The signal mask the recovery frames put back, once the real one is
  // known (a thread in sigsuspend shows its temporary mask until resumed).
  absl::Status SetRecoveryMask(uint64_t sigmask);
  bool recovery() const { return recovery_.enabled; }

  // Dump: maps the trampoline anywhere in the task and copies the code in,
  // with room for `nr_frames` recovery frames; this thread takes frame 0.
  absl::Status MapTrampoline(uint64_t nr_frames = 1);
  // Restore: the task mapped it itself at `base` (code already copied).
  void AdoptTrampoline(uint64_t base);
  // Dump: another thread's trampoline; this thread takes frame `frame`.
  absl::Status AdoptTrampoline(const TrampolineLayout& layout, uint64_t frame);
  const TrampolineLayout& layout() const { return layout_; }
  bool has_trampoline() const { return layout_.base != 0; }

  SyscallBatch NewBatch() const { return SyscallBatch(layout_); }
  // Runs the batch; the thread ends stopped on the trampoline's int3. The
  // first failing call (without kMayFail) becomes the Status, naming the
  // syscall and its errno.
  absl::Status Run(SyscallBatch& batch);
  // Run in two halves: Start lets the task run the batch and returns at
  // once, so that the caller works meanwhile; Wait waits for the int3. The
  // batch must stay alive and unchanged in between.
  absl::Status Start(SyscallBatch& batch);
  absl::Status Wait(SyscallBatch& batch);
  bool running() const { return running_; }
  // Whether the last batch of a dump ended past the trampoline's own
  // unblocking of SIGURG (the thread's mask blocked it): the mask the
  // thread has now lacks that one bit of its own.
  bool ended_unblocked() const { return ended_unblocked_; }

  // Unmaps the trampoline (through the `syscall` instruction), sets `regs`
  // and `sigmask`, and parks the thread in a PTRACE_EVENT_STOP on the
  // signal path. PTRACE_DETACH then resumes it as the kernel would.
  //
  // A restore's int3 resets an ignored SIGTRAP to SIG_DFL (the kernel does
  // so for forced signals); pass the task's SIGTRAP action (a 32-byte
  // kernel sigaction) to have it set again after the last int3.
  absl::Status Finish(const user_regs_struct& regs, uint64_t sigmask,
                      const void* sigtrap_action = nullptr);
  // Same without unmapping (no trampoline was mapped).
  absl::Status ParkWith(const user_regs_struct& regs, uint64_t sigmask);
  // ParkWith in two halves, so that several threads are let go at once:
  // StartPark sets and resumes, WaitParked waits for the stop.
  absl::Status StartPark(const user_regs_struct& regs, uint64_t sigmask);
  absl::Status WaitParked();

  // Signals that arrived while syscalls ran and were held back; the caller
  // sends them again once the task is let go.
  const std::vector<int>& held_signals() const { return held_signals_; }

  // The thread group's id in its own pid namespace (how the batch end's
  // SIGURG names its sender); read from /proc when not given.
  void set_own_tgid(pid_t tgid) { own_tgid_ = tgid; }
  pid_t pid() const { return pid_; }
  pid_t tid() const { return tid_; }

 private:
  absl::Status WriteBatch(const SyscallBatch& batch);
  // Resumes and waits until the stop `want` arrives, holding back any
  // other signal.
  absl::Status WaitTrap();
  absl::Status StepSyscallStop(const char* which);
  // The template registers set up to run syscall `nr`: at the trampoline's
  // own `syscall` when it is mapped (unless `at_vdso`), else at the
  // [vdso]'s.
  user_regs_struct SyscallRegs(long nr, const std::array<uint64_t, 6>& args,
                               bool at_vdso = false) const;
  absl::StatusOr<int64_t> StepSyscall(const user_regs_struct& regs, long nr);
  // The recovery frames are written only before the thread runs code
  // that needs them: the trampoline's before a batch or a syscall there,
  // the one on its stack before a syscall at the [vdso] (a thread that
  // only runs one batch never needs it). Marks frames to be (re)written.
  void FramesChanged(bool stack, bool trampoline);
  // Writes the frames marked; `stack` too the one on the stack.
  absl::Status FlushFrames(bool stack);
  // Whether a stop of `tid_` at `rip` for `sig` is the end of a batch.
  absl::StatusOr<bool> IsBatchEnd(int sig);

  struct Recovery {
    bool enabled = false;
    user_regs_struct regs{};
    std::string xstate;
    uint64_t sigmask = 0;
    uint64_t vdso_gadget = 0;       // [vdso] `syscall ... ret`, 0: none
    uint64_t sigreturn_gadget = 0;  // `mov $15, %rax; syscall`, 0: none
    uint64_t stack_frame = 0;       // on the thread's stack, 0: none written
    uint64_t frame = 0;             // in the trampoline, 0: none
    bool stack_stale = false;       // stack_frame is to be (re)written
    bool frame_stale = false;       // frame is to be (re)written
  };

  pid_t pid_;
  pid_t tid_;
  uint64_t syscall_insn_ = 0;
  user_regs_struct template_{};
  TrampolineLayout layout_{};
  std::vector<int> held_signals_;
  bool running_ = false;
  Recovery recovery_;
  bool ended_unblocked_ = false;
  pid_t own_tgid_ = 0;  // the thread group id in its own pid namespace, once read
};

// Syscalls queued for one task and run in as few batches as fit: a caller
// makes room for a call and its data, then adds them to batch(); Flush()
// runs what is queued.
//
//   RETURN_IF_ERROR(queue.Reserve(1, path.size() + 1));
//   queue.batch().Add(SYS_chdir, {queue.batch().AddString(path)});
//   ...
//   RETURN_IF_ERROR(queue.Flush());
class SyscallQueue {
 public:
  explicit SyscallQueue(Injector* injector)
      : injector_(injector), batch_(injector->NewBatch()) {}

  // Runs the queued calls first if `calls` calls and `data` bytes would
  // not fit.
  absl::Status Reserve(size_t calls, size_t data);
  SyscallBatch& batch() { return batch_; }
  absl::Status Flush();
  Injector* injector() { return injector_; }

 private:
  Injector* injector_;
  SyscallBatch batch_;
};

}  // namespace ckpt::task

#endif  // LIBCKPT_LIB_TASK_INJECT_H_
