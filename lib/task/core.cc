#include "lib/task/core.h"

#include <linux/capability.h>
#include <linux/membarrier.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"

namespace ckpt::task {

CoreQuery QueueCoreQuery(SyscallBatch& b) {
  CoreQuery q;
  q.pdeath_out = b.Reserve(sizeof(int));
  b.Add(SYS_prctl, {PR_GET_PDEATHSIG, q.pdeath_out});
  q.subreaper_out = b.Reserve(sizeof(int));
  b.Add(SYS_prctl, {PR_GET_CHILD_SUBREAPER, q.subreaper_out});
  q.dumpable = b.Add(SYS_prctl, {PR_GET_DUMPABLE});
  q.thp_disable = b.Add(SYS_prctl, {PR_GET_THP_DISABLE});
  q.securebits = b.Add(SYS_prctl, {PR_GET_SECUREBITS});
  // Each private expedited command succeeds only in a registered process
  // (else EPERM; EINVAL where the kernel lacks it).
  q.mb_private = b.Add(SYS_membarrier, {MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0}, kMayFail);
  q.mb_sync_core =
      b.Add(SYS_membarrier, {MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0}, kMayFail);
  q.mb_rseq = b.Add(SYS_membarrier, {MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0}, kMayFail);
  q.rlimits_out = b.Reserve(image::kNrRlimits * sizeof(struct rlimit));
  for (uint64_t r = 0; r < image::kNrRlimits; ++r) {
    b.Add(SYS_prlimit64, {0, r, 0, q.rlimits_out + r * sizeof(struct rlimit)});
  }
  return q;
}

namespace {

ThreadCreds CredsOf(const ProcStatus& st, uint32_t securebits) {
  ThreadCreds out;
  image::ckpt_creds& c = out.creds;
  c.uid = st.uid[0];
  c.euid = st.uid[1];
  c.suid = st.uid[2];
  c.fsuid = st.uid[3];
  c.gid = st.gid[0];
  c.egid = st.gid[1];
  c.sgid = st.gid[2];
  c.fsgid = st.gid[3];
  c.cap_inheritable = st.cap_inh;
  c.cap_permitted = st.cap_prm;
  c.cap_effective = st.cap_eff;
  c.cap_bounding = st.cap_bnd;
  c.cap_ambient = st.cap_amb;
  c.securebits = securebits;
  out.groups = st.groups;
  c.nr_groups = static_cast<uint32_t>(out.groups.size());
  return out;
}

}  // namespace

absl::StatusOr<TaskCore> ReadCore(pid_t pid, const ProcStatus& st, const SyscallBatch& b,
                                  const CoreQuery& q) {
  TaskCore core;
  image::ckpt_task& t = core.task;
  t.pid_ref = 0;  // set by the driver
  // /proc/PID/comm has the name's bytes as they are (status's Name: line
  // escapes '\n' and '\\', and its parser trims blanks): only the newline
  // the file adds goes.
  ASSIGN_OR_RETURN(std::string comm, ReadFile(absl::StrCat("/proc/", pid, "/comm")));
  if (!comm.empty() && comm.back() == '\n') comm.pop_back();
  std::memcpy(t.comm, comm.data(), std::min(comm.size(), sizeof(t.comm) - 1));
  ASSIGN_OR_RETURN(std::string persona, ReadFile(absl::StrCat("/proc/", pid, "/personality")));
  t.personality = static_cast<uint32_t>(std::stoul(persona, nullptr, 16));
  t.umask = st.umask;
  int v;
  std::memcpy(&v, b.Output(q.pdeath_out), sizeof(v));
  t.pdeath_signal = static_cast<uint32_t>(v);
  std::memcpy(&v, b.Output(q.subreaper_out), sizeof(v));
  t.child_subreaper = static_cast<uint32_t>(v);
  t.dumpable = static_cast<uint32_t>(b.ret(q.dumpable));
  t.thp_disable = static_cast<uint32_t>(b.ret(q.thp_disable));
  t.no_new_privs = static_cast<uint32_t>(st.no_new_privs);
  if (b.ret(q.mb_private) == 0) t.membarrier |= image::kMembarrierPrivateExpedited;
  if (b.ret(q.mb_sync_core) == 0) t.membarrier |= image::kMembarrierSyncCore;
  if (b.ret(q.mb_rseq) == 0) t.membarrier |= image::kMembarrierRseq;

  ThreadCreds own = CredsOf(st, static_cast<uint32_t>(b.ret(q.securebits)));
  core.creds = own.creds;
  core.groups = std::move(own.groups);

  for (uint32_t r = 0; r < image::kNrRlimits; ++r) {
    struct rlimit lim;
    std::memcpy(&lim, b.Output(q.rlimits_out + r * sizeof(lim)), sizeof(lim));
    core.rlimits.cur[r] = lim.rlim_cur;
    core.rlimits.max[r] = lim.rlim_max;
  }
  return core;
}

std::optional<ThreadCreds> ThreadCredsIfOwn(const ProcStatus& st, const TaskCore& core) {
  ThreadCreds own = CredsOf(st, core.creds.securebits);
  if (std::memcmp(&own.creds, &core.creds, sizeof(own.creds)) == 0 && own.groups == core.groups) {
    return std::nullopt;
  }
  return own;
}

absl::Status WriteCredsRecord(const ThreadCreds& creds, image::Writer& w) {
  return w.AppendStructWith(image::CKPT_HDR_CREDS, creds.creds, creds.groups.data(),
                            creds.groups.size() * sizeof(uint32_t));
}

absl::StatusOr<ThreadCreds> ReadCredsRecord(image::Reader& r) {
  ThreadCreds out;
  ASSIGN_OR_RETURN(out.creds, r.Expect<image::ckpt_creds>(image::CKPT_HDR_CREDS));
  if (out.creds.nr_groups * uint64_t{4} != r.payload_remaining()) {
    return r.FieldError("nr_groups", out.creds.nr_groups, " does not match ",
                        r.payload_remaining(), " bytes of groups");
  }
  ASSIGN_OR_RETURN(std::vector<uint8_t> groups, r.ReadArray(4, image::kMaxGroups, "groups"));
  out.groups.resize(groups.size() / 4);
  // No supplementary groups: both vectors are empty and their data() may
  // be null, which memcpy must not be given even for 0 bytes.
  if (!groups.empty()) std::memcpy(out.groups.data(), groups.data(), groups.size());
  return out;
}

absl::Status WriteCore(const TaskCore& core, image::Writer& w) {
  RETURN_IF_ERROR(w.AppendStruct(image::CKPT_HDR_TASK, core.task));
  RETURN_IF_ERROR(WriteCredsRecord(ThreadCreds{core.creds, core.groups}, w));
  return w.AppendStruct(image::CKPT_HDR_RLIMITS, core.rlimits);
}

absl::StatusOr<TaskCore> ReadCoreRecords(image::Reader& r) {
  TaskCore core;
  ASSIGN_OR_RETURN(core.task, r.Expect<image::ckpt_task>(image::CKPT_HDR_TASK));
  if (core.task.comm[sizeof(core.task.comm) - 1] != '\0') {
    return r.FieldError("comm", "is not NUL-terminated");
  }
  if (core.task.umask & ~0777u) return r.FieldError("umask", core.task.umask, " is not a mode");
  if (core.task.pdeath_signal > 64) {
    return r.FieldError("pdeath_signal", core.task.pdeath_signal, " is not a signal");
  }
  if (core.task.dumpable > 2) return r.FieldError("dumpable", core.task.dumpable);
  constexpr uint32_t kMembarrierKnown =
      image::kMembarrierPrivateExpedited | image::kMembarrierSyncCore | image::kMembarrierRseq;
  if (core.task.membarrier & ~kMembarrierKnown) {
    return r.FieldError("membarrier", core.task.membarrier, " has unknown bits");
  }
  if (core.task.reserved != 0) return r.FieldError("reserved", core.task.reserved, " is not zero");
  ASSIGN_OR_RETURN(ThreadCreds creds, ReadCredsRecord(r));
  core.creds = creds.creds;
  core.groups = std::move(creds.groups);
  ASSIGN_OR_RETURN(core.rlimits, r.Expect<image::ckpt_rlimits>(image::CKPT_HDR_RLIMITS));
  for (uint32_t i = 0; i < image::kNrRlimits; ++i) {
    if (core.rlimits.cur[i] > core.rlimits.max[i]) {
      return r.FieldError("cur", "limit ", i, " exceeds its maximum");
    }
  }
  return core;
}

absl::Status QueueCoreRestore(SyscallQueue& q, const TaskCore& core) {
  const image::ckpt_task& t = core.task;
  RETURN_IF_ERROR(q.Reserve(8, sizeof(t.comm) + 16));
  SyscallBatch& b = q.batch();
  b.Add(SYS_prctl, {PR_SET_NAME, b.AddData(t.comm, sizeof(t.comm))});
  b.Add(SYS_personality, {t.personality});
  b.Add(SYS_umask, {t.umask});
  b.Add(SYS_prctl, {PR_SET_PDEATHSIG, t.pdeath_signal});
  b.Add(SYS_prctl, {PR_SET_DUMPABLE, t.dumpable});
  b.Add(SYS_prctl, {PR_SET_CHILD_SUBREAPER, t.child_subreaper});
  b.Add(SYS_prctl, {PR_SET_THP_DISABLE, t.thp_disable, 0, 0, 0});
  // no_new_privs can be set but never cleared; the restorer's own is
  // inherited.
  if (t.no_new_privs) b.Add(SYS_prctl, {PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0});
  RETURN_IF_ERROR(q.Reserve(4, 0));
  SyscallBatch& mb = q.batch();
  if (t.membarrier & image::kMembarrierPrivateExpedited) {
    mb.Add(SYS_membarrier, {MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0});
  }
  if (t.membarrier & image::kMembarrierSyncCore) {
    mb.Add(SYS_membarrier, {MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0});
  }
  if (t.membarrier & image::kMembarrierRseq) {
    mb.Add(SYS_membarrier, {MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0});
  }
  mb.Add(SYS_membarrier, {MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0}, kMayFail);
  return absl::OkStatus();
}

absl::Status QueueCredsRestore(SyscallQueue& q, const TaskCore& core) {
  const image::ckpt_creds& c = core.creds;
  // Nothing to do when the task had exactly the restorer's credentials.
  ASSIGN_OR_RETURN(ProcStatus self, ReadProcStatus(getpid()));
  bool same = self.uid[0] == c.uid && self.uid[1] == c.euid && self.uid[2] == c.suid &&
              self.uid[3] == c.fsuid && self.gid[0] == c.gid && self.gid[1] == c.egid &&
              self.gid[2] == c.sgid && self.gid[3] == c.fsgid && self.groups == core.groups &&
              self.cap_eff == c.cap_effective && self.cap_prm == c.cap_permitted &&
              self.cap_inh == c.cap_inheritable && self.cap_amb == c.cap_ambient &&
              self.cap_bnd == c.cap_bounding;
  if (same) return absl::OkStatus();
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2] = {
      {static_cast<uint32_t>(c.cap_effective), static_cast<uint32_t>(c.cap_permitted),
       static_cast<uint32_t>(c.cap_inheritable)},
      {static_cast<uint32_t>(c.cap_effective >> 32), static_cast<uint32_t>(c.cap_permitted >> 32),
       static_cast<uint32_t>(c.cap_inheritable >> 32)}};
  RETURN_IF_ERROR(q.Reserve(80, core.groups.size() * 4 + sizeof(hdr) + sizeof(data) + 64));
  SyscallBatch& b = q.batch();
  // Drop from the bounding set what the task did not have.
  for (uint64_t cap = 0; cap < 64; ++cap) {
    if (!(c.cap_bounding >> cap & 1) && (self.cap_bnd >> cap & 1)) {
      b.Add(SYS_prctl, {PR_CAPBSET_DROP, cap, 0, 0, 0});
    }
  }
  b.Add(SYS_setgroups, {core.groups.size(), b.AddData(core.groups.data(), core.groups.size() * 4)});
  b.Add(SYS_setresgid, {c.gid, c.egid, c.sgid});
  // The recorded securebits, plus KEEP_CAPS so that the permitted set
  // survives the uid change (this still needs CAP_SETPCAP, so it comes
  // first); capset then sets the recorded sets.
  constexpr uint64_t kSecbitKeepCaps = 1u << 4;
  b.Add(SYS_prctl, {PR_SET_SECUREBITS, c.securebits | kSecbitKeepCaps, 0, 0, 0});
  b.Add(SYS_setresuid, {c.uid, c.euid, c.suid});
  b.Add(SYS_setfsuid, {c.fsuid}, kMayFail);  // returns the old fsuid
  b.Add(SYS_setfsgid, {c.fsgid}, kMayFail);
  b.Add(SYS_capset, {b.AddStruct(hdr), b.AddData(data, sizeof(data))});
  if (!(c.securebits & kSecbitKeepCaps)) b.Add(SYS_prctl, {PR_SET_KEEPCAPS, 0, 0, 0, 0});
  b.Add(SYS_prctl, {PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0});
  for (uint64_t cap = 0; cap < 64; ++cap) {
    if (c.cap_ambient >> cap & 1) {
      b.Add(SYS_prctl, {PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0});
    }
  }
  return absl::OkStatus();
}

absl::Status QueueRlimitsRestore(SyscallQueue& q, const TaskCore& core) {
  RETURN_IF_ERROR(q.Reserve(image::kNrRlimits, image::kNrRlimits * sizeof(struct rlimit) * 2));
  SyscallBatch& b = q.batch();
  for (uint64_t r = 0; r < image::kNrRlimits; ++r) {
    struct rlimit lim = {core.rlimits.cur[r], core.rlimits.max[r]};
    b.Add(SYS_prlimit64, {0, r, b.AddStruct(lim), 0});
  }
  return absl::OkStatus();
}

}  // namespace ckpt::task
