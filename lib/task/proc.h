// Parsers for the /proc files that describe a task: status, stat, task/,
// children. Pure text parsers are separate from the readers so that tests
// can feed them odd inputs (a comm with spaces and parentheses).
//
//   ASSIGN_OR_RETURN(ProcStatus st, ReadProcStatus(pid));
//   if (st.tracer_pid != 0) ...

#ifndef LIBCKPT_LIB_TASK_PROC_H_
#define LIBCKPT_LIB_TASK_PROC_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ckpt::task {

struct ProcStatus {
  std::string name;
  char state = '?';
  pid_t tgid = 0;
  pid_t pid = 0;
  pid_t ppid = 0;
  pid_t tracer_pid = 0;
  uint32_t uid[4] = {};  // real, effective, saved, fs
  uint32_t gid[4] = {};
  std::vector<uint32_t> groups;
  std::vector<pid_t> nstgid, nspid, nspgid, nssid;  // outermost first
  uint32_t umask = 0;
  int threads = 0;
  uint64_t sig_pnd = 0, shd_pnd = 0, sig_blk = 0, sig_ign = 0, sig_cgt = 0;
  uint64_t cap_inh = 0, cap_prm = 0, cap_eff = 0, cap_bnd = 0, cap_amb = 0;
  int no_new_privs = 0;
  int seccomp = 0;
};

absl::StatusOr<ProcStatus> ParseProcStatus(absl::string_view text);
absl::StatusOr<ProcStatus> ReadProcStatus(pid_t pid);

// /proc/PID/stat, the fields libckpt uses.
struct ProcStat {
  std::string comm;
  char state = '?';
  pid_t ppid = 0, pgrp = 0, session = 0;
  int tty_nr = 0;
  pid_t tpgid = 0;     // the foreground group of its controlling terminal (-1: none)
  uint32_t flags = 0;  // PF_*
  int exit_signal = 0;
  uint64_t start_code = 0, end_code = 0, start_stack = 0;
  uint64_t start_data = 0, end_data = 0, start_brk = 0;
  uint64_t arg_start = 0, arg_end = 0, env_start = 0, env_end = 0;
  int exit_code = 0;
};

inline constexpr uint32_t kPfKthread = 0x00200000;
inline constexpr uint32_t kPfExiting = 0x00000004;

absl::StatusOr<ProcStat> ParseProcStat(absl::string_view text);
absl::StatusOr<ProcStat> ReadProcStat(pid_t pid);
// Polls /proc/PID/stat until the task is in `state` ('Z', 'T', ...) and
// returns that stat; an error once it cannot be read (it is gone) or
// CLOCK_MONOTONIC passes `deadline_ns` (DeadlineExceeded).
absl::StatusOr<ProcStat> WaitForState(pid_t pid, char state, int64_t deadline_ns);

// The thread ids of a thread group, in /proc order (the leader first).
absl::StatusOr<std::vector<pid_t>> ListThreads(pid_t pid);

// The children of every thread of `pid` (/proc/PID/task/TID/children).
absl::StatusOr<std::vector<pid_t>> ListChildren(pid_t pid);

// Whether the thread is gone or has begun to exit (a zombie, or dead but
// not yet released): the kernel refuses to seize such a thread with EPERM.
bool IsExiting(pid_t tid);

// Who holds a PID that a restore needs, for its error message:
// " (held by task 38 'name', state S)" or " (held by thread 38 of task 37
// 'name', state Z, traced by 12)"; empty when /proc no longer shows it.
std::string DescribePidHolder(pid_t pid);

}  // namespace ckpt::task

#endif  // LIBCKPT_LIB_TASK_PROC_H_
