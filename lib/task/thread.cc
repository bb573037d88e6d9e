#include "lib/task/thread.h"

#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "lib/base/status.h"
#include "lib/task/restart.h"
#include "lib/task/signals.h"

namespace ckpt::task {

constexpr uint32_t kSsAutoDisarm = 1u << 31;
constexpr uint64_t kUserCs = 0x33;  // __USER_CS
constexpr uint64_t kUserSs = 0x2b;  // __USER_DS

static_assert(sizeof(user_regs_struct) == image::kNrUserRegs * 8);

void RegsToRecord(const user_regs_struct& regs, uint64_t out[image::kNrUserRegs]) {
  std::memcpy(out, &regs, sizeof(regs));
}

user_regs_struct RegsFromRecord(const uint64_t in[image::kNrUserRegs]) {
  user_regs_struct regs;
  std::memcpy(&regs, in, sizeof(regs));
  return regs;
}

absl::Status CaptureThreadFrozen(pid_t tid, ThreadState* s) {
  s->tid = tid;
  ASSIGN_OR_RETURN(s->regs, GetRegs(tid));
  ASSIGN_OR_RETURN(s->xstate, GetXstate(tid));
  ASSIGN_OR_RETURN(s->rseq, GetRseqConfig(tid));
  struct robust_list_head* head = nullptr;
  size_t len = 0;
  if (syscall(SYS_get_robust_list, tid, &head, &len) != 0) {
    return ErrnoError(errno, "get_robust_list of thread ", tid);
  }
  s->robust_list = reinterpret_cast<uint64_t>(head);
  s->robust_list_len = len;
  return absl::OkStatus();
}

ThreadQuery QueueThreadQuery(SyscallBatch& b) {
  ThreadQuery q;
  q.altstack_out = b.Reserve(sizeof(stack_t));
  b.Add(SYS_sigaltstack, {0, q.altstack_out});
  q.tid_address_out = b.Reserve(sizeof(uint64_t));
  b.Add(SYS_prctl, {PR_GET_TID_ADDRESS, q.tid_address_out});
  return q;
}

void ReadThreadQuery(const SyscallBatch& b, const ThreadQuery& q, ThreadState* s) {
  std::memcpy(&s->altstack, b.Output(q.altstack_out), sizeof(stack_t));
  std::memcpy(&s->clear_child_tid, b.Output(q.tid_address_out), sizeof(uint64_t));
}

absl::Status WriteThread(const ThreadState& s, uint32_t tid_ref, image::Writer& w) {
  image::ckpt_thread t{};
  t.tid_ref = tid_ref;
  RegsToRecord(s.regs, t.regs);
  t.sigmask = s.sigmask;
  t.altstack_sp = reinterpret_cast<uint64_t>(s.altstack.ss_sp);
  t.altstack_size = s.altstack.ss_size;
  t.altstack_flags = static_cast<uint32_t>(s.altstack.ss_flags);
  t.rseq_ptr = s.rseq.ptr;
  t.rseq_len = s.rseq.size;
  t.rseq_sig = s.rseq.signature;
  t.rseq_flags = s.rseq.flags;
  t.clear_child_tid = s.clear_child_tid;
  t.robust_list = s.robust_list;
  t.robust_list_len = s.robust_list_len;
  t.nr_pending = static_cast<uint32_t>(s.pending.size());
  if (s.restart) t.flags |= image::kThreadRestart;
  if (s.seccomp.mode != 0) t.flags |= image::kThreadSeccomp;
  if (s.creds) t.flags |= image::kThreadCreds;
  RETURN_IF_ERROR(w.AppendStruct(image::CKPT_HDR_THREAD, t));
  RETURN_IF_ERROR(w.Append(image::CKPT_HDR_XSTATE, s.xstate.data(), s.xstate.size()));
  for (const image::ckpt_siginfo& p : s.pending) {
    RETURN_IF_ERROR(w.AppendStruct(image::CKPT_HDR_SIGINFO, p));
  }
  if (s.restart) RETURN_IF_ERROR(w.AppendStruct(image::CKPT_HDR_RESTART, *s.restart));
  if (s.seccomp.mode != 0) RETURN_IF_ERROR(WriteSeccomp(s.seccomp, w));
  if (s.creds) RETURN_IF_ERROR(WriteCredsRecord(*s.creds, w));
  return absl::OkStatus();
}

absl::StatusOr<ThreadState> ReadThreadRecords(image::Reader& r, uint32_t* tid_ref) {
  ASSIGN_OR_RETURN(image::ckpt_thread t, r.Expect<image::ckpt_thread>(image::CKPT_HDR_THREAD));
  ThreadState s;
  *tid_ref = t.tid_ref;
  s.regs = RegsFromRecord(t.regs);
  // Only the user code and stack segments of a 64-bit task. The kernel
  // checks no more than the privilege level on SETREGS: any other user
  // selector is taken, and the task dies of SIGSEGV on its first return
  // to user space.
  if (s.regs.cs != kUserCs) {
    return r.FieldError("cs", absl::Hex(s.regs.cs), " is not the 64-bit user code segment (0x",
                        absl::Hex(kUserCs), ")");
  }
  if (s.regs.ss != kUserSs) {
    return r.FieldError("ss", absl::Hex(s.regs.ss), " is not the user stack segment (0x",
                        absl::Hex(kUserSs), ")");
  }
  s.sigmask = t.sigmask;
  s.altstack.ss_sp = reinterpret_cast<void*>(t.altstack_sp);
  s.altstack.ss_size = t.altstack_size;
  s.altstack.ss_flags = static_cast<int>(t.altstack_flags);
  if (t.altstack_flags & ~static_cast<uint32_t>(SS_DISABLE | SS_ONSTACK | kSsAutoDisarm)) {
    return r.FieldError("altstack_flags", t.altstack_flags, " has unknown bits");
  }
  s.rseq = {t.rseq_ptr, t.rseq_len, t.rseq_sig, t.rseq_flags};
  s.clear_child_tid = t.clear_child_tid;
  s.robust_list = t.robust_list;
  s.robust_list_len = t.robust_list_len;
  ASSIGN_OR_RETURN(image::Record x, r.Next());
  if (x.type != image::CKPT_HDR_XSTATE) {
    return absl::InvalidArgumentError(
        absl::StrCat(image::Reader::Where(x), ": expected the thread's XSTATE"));
  }
  if (x.len < 576) return r.FieldError("len", x.len, " bytes is smaller than an XSAVE area");
  s.xstate.resize(x.len);
  RETURN_IF_ERROR(r.ReadPayload(s.xstate.data(), x.len));
  if (t.flags & ~static_cast<uint32_t>(image::kThreadRestart | image::kThreadSeccomp |
                                       image::kThreadCreds)) {
    return r.FieldError("flags", t.flags, " has unknown bits");
  }
  ASSIGN_OR_RETURN(s.pending, ReadSiginfoRecords(r, t.nr_pending));
  if (t.flags & image::kThreadRestart) {
    ASSIGN_OR_RETURN(image::ckpt_restart restart,
                     r.Expect<image::ckpt_restart>(image::CKPT_HDR_RESTART));
    absl::Status st = CheckRestart(restart, s.regs);
    if (!st.ok()) return r.FieldError("kind", st.message());
    s.restart = restart;
  }
  if (t.flags & image::kThreadSeccomp) {
    ASSIGN_OR_RETURN(s.seccomp, ReadSeccompRecords(r));
  }
  if (t.flags & image::kThreadCreds) {
    ASSIGN_OR_RETURN(s.creds, ReadCredsRecord(r));
  }
  return s;
}

absl::Status QueueThreadRestore(SyscallQueue& q, const ThreadState& s) {
  RETURN_IF_ERROR(q.Reserve(4, sizeof(stack_t) + 16));
  SyscallBatch& b = q.batch();
  // SS_ONSTACK is a state, not a setting: the task is not on the stack
  // while its registers are being set up.
  stack_t ss = s.altstack;
  ss.ss_flags &= ~SS_ONSTACK;
  // A task forked from a restored parent has the parent's stack: a task
  // without one disables it.
  if (ss.ss_flags & SS_DISABLE) ss = stack_t{nullptr, SS_DISABLE, 0};
  b.Add(SYS_sigaltstack, {b.AddStruct(ss), 0});
  if (s.rseq.size != 0) {
    b.Add(SYS_rseq, {s.rseq.ptr, s.rseq.size, 0, s.rseq.signature});
  }
  b.Add(SYS_set_robust_list, {s.robust_list, s.robust_list_len});
  b.Add(SYS_set_tid_address, {s.clear_child_tid});
  return absl::OkStatus();
}

}  // namespace ckpt::task
