#include "lib/task/proc.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "lib/base/clock.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"

namespace ckpt::task {
namespace {

template <typename T>
bool ParseInt(absl::string_view s, T* out) {
  return absl::SimpleAtoi(s, out);
}

bool ParseHex(absl::string_view s, uint64_t* out) { return absl::SimpleHexAtoi(s, out); }

template <typename T>
bool ParseList(absl::string_view s, std::vector<T>* out) {
  out->clear();
  for (absl::string_view part : absl::StrSplit(s, absl::ByAnyChar(" \t"), absl::SkipEmpty())) {
    T v;
    if (!absl::SimpleAtoi(part, &v)) return false;
    out->push_back(v);
  }
  return true;
}

}  // namespace

absl::StatusOr<ProcStatus> ParseProcStatus(absl::string_view text) {
  ProcStatus st;
  bool ok = true;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    absl::string_view key = line.substr(0, colon);
    absl::string_view value = absl::StripAsciiWhitespace(line.substr(colon + 1));
    std::vector<uint32_t> ids;
    if (key == "Name") {
      st.name = std::string(value);
    } else if (key == "State") {
      st.state = value.empty() ? '?' : value[0];
    } else if (key == "Tgid") {
      ok &= ParseInt(value, &st.tgid);
    } else if (key == "Pid") {
      ok &= ParseInt(value, &st.pid);
    } else if (key == "PPid") {
      ok &= ParseInt(value, &st.ppid);
    } else if (key == "TracerPid") {
      ok &= ParseInt(value, &st.tracer_pid);
    } else if (key == "Uid" || key == "Gid") {
      ok &= ParseList(value, &ids) && ids.size() == 4;
      if (ids.size() == 4) std::copy(ids.begin(), ids.end(), key == "Uid" ? st.uid : st.gid);
    } else if (key == "Groups") {
      ok &= ParseList(value, &st.groups);
    } else if (key == "NStgid") {
      ok &= ParseList(value, &st.nstgid);
    } else if (key == "NSpid") {
      ok &= ParseList(value, &st.nspid);
    } else if (key == "NSpgid") {
      ok &= ParseList(value, &st.nspgid);
    } else if (key == "NSsid") {
      ok &= ParseList(value, &st.nssid);
    } else if (key == "Umask") {
      uint64_t v = 0;
      ok &= absl::numbers_internal::safe_strtou64_base(value, &v, 8);
      st.umask = static_cast<uint32_t>(v);
    } else if (key == "Threads") {
      ok &= ParseInt(value, &st.threads);
    } else if (key == "SigPnd") {
      ok &= ParseHex(value, &st.sig_pnd);
    } else if (key == "ShdPnd") {
      ok &= ParseHex(value, &st.shd_pnd);
    } else if (key == "SigBlk") {
      ok &= ParseHex(value, &st.sig_blk);
    } else if (key == "SigIgn") {
      ok &= ParseHex(value, &st.sig_ign);
    } else if (key == "SigCgt") {
      ok &= ParseHex(value, &st.sig_cgt);
    } else if (key == "CapInh") {
      ok &= ParseHex(value, &st.cap_inh);
    } else if (key == "CapPrm") {
      ok &= ParseHex(value, &st.cap_prm);
    } else if (key == "CapEff") {
      ok &= ParseHex(value, &st.cap_eff);
    } else if (key == "CapBnd") {
      ok &= ParseHex(value, &st.cap_bnd);
    } else if (key == "CapAmb") {
      ok &= ParseHex(value, &st.cap_amb);
    } else if (key == "NoNewPrivs") {
      ok &= ParseInt(value, &st.no_new_privs);
    } else if (key == "Seccomp") {
      ok &= ParseInt(value, &st.seccomp);
    }
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("/proc status: cannot parse '", key, "' value '", value, "'"));
    }
  }
  if (st.tgid == 0 || st.pid == 0) {
    return absl::InvalidArgumentError("/proc status: no Tgid or Pid line");
  }
  return st;
}

absl::StatusOr<ProcStatus> ReadProcStatus(pid_t pid) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(absl::StrCat("/proc/", pid, "/status")));
  absl::StatusOr<ProcStatus> st = ParseProcStatus(text);
  if (!st.ok()) return Annotate(st.status(), absl::StrCat("task ", pid));
  return st;
}

absl::StatusOr<ProcStat> ParseProcStat(absl::string_view text) {
  // "pid (comm) state ..." where comm may hold spaces and parentheses: it
  // ends at the last ')'.
  size_t open = text.find('(');
  size_t close = text.rfind(')');
  if (open == absl::string_view::npos || close == absl::string_view::npos || close < open) {
    return absl::InvalidArgumentError("/proc stat: no (comm)");
  }
  ProcStat st;
  st.comm = std::string(text.substr(open + 1, close - open - 1));
  std::vector<absl::string_view> f =
      absl::StrSplit(absl::StripAsciiWhitespace(text.substr(close + 1)), ' ', absl::SkipEmpty());
  // f[0] is field 3 (state); field N is f[N - 3].
  if (f.size() < 50) {
    return absl::InvalidArgumentError(
        absl::StrCat("/proc stat: ", f.size() + 2, " fields, expected at least 52"));
  }
  auto field = [&](int n) { return f[n - 3]; };
  bool ok = field(3).size() == 1;
  st.state = field(3)[0];
  ok &= ParseInt(field(4), &st.ppid) && ParseInt(field(5), &st.pgrp) &&
        ParseInt(field(6), &st.session) && ParseInt(field(7), &st.tty_nr) && ParseInt(field(8), &st.tpgid) &&
        ParseInt(field(9), &st.flags) && ParseInt(field(26), &st.start_code) &&
        ParseInt(field(27), &st.end_code) && ParseInt(field(28), &st.start_stack) &&
        ParseInt(field(38), &st.exit_signal) && ParseInt(field(45), &st.start_data) &&
        ParseInt(field(46), &st.end_data) && ParseInt(field(47), &st.start_brk) &&
        ParseInt(field(48), &st.arg_start) && ParseInt(field(49), &st.arg_end) &&
        ParseInt(field(50), &st.env_start) && ParseInt(field(51), &st.env_end) &&
        ParseInt(field(52), &st.exit_code);
  if (!ok) return absl::InvalidArgumentError("/proc stat: a field is not a number");
  return st;
}

absl::StatusOr<ProcStat> ReadProcStat(pid_t pid) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(absl::StrCat("/proc/", pid, "/stat")));
  absl::StatusOr<ProcStat> st = ParseProcStat(text);
  if (!st.ok()) return Annotate(st.status(), absl::StrCat("task ", pid));
  return st;
}

absl::StatusOr<ProcStat> WaitForState(pid_t pid, char state, int64_t deadline_ns) {
  for (;;) {
    ASSIGN_OR_RETURN(ProcStat st, ReadProcStat(pid));
    if (st.state == state) return st;
    if (MonotonicNs() > deadline_ns) {
      return absl::DeadlineExceededError(absl::StrCat("task ", pid, " is in state ",
                                                      std::string(1, st.state), ", not ",
                                                      std::string(1, state)));
    }
    usleep(100);
  }
}

absl::StatusOr<std::vector<pid_t>> ListThreads(pid_t pid) {
  std::string path = absl::StrCat("/proc/", pid, "/task");
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return ErrnoError(errno, "task ", pid, ": open ", path);
  std::vector<pid_t> tids;
  while (struct dirent* e = readdir(dir)) {
    pid_t tid;
    if (absl::SimpleAtoi(e->d_name, &tid)) tids.push_back(tid);
  }
  closedir(dir);
  // The leader first, then the others in creation order (ascending tids
  // are the best approximation /proc gives).
  std::sort(tids.begin(), tids.end(), [pid](pid_t a, pid_t b) {
    if ((a == pid) != (b == pid)) return a == pid;
    return a < b;
  });
  return tids;
}

absl::StatusOr<std::vector<pid_t>> ListChildren(pid_t pid) {
  ASSIGN_OR_RETURN(std::vector<pid_t> tids, ListThreads(pid));
  std::vector<pid_t> children;
  for (pid_t tid : tids) {
    absl::StatusOr<std::string> text =
        ReadFile(absl::StrCat("/proc/", pid, "/task/", tid, "/children"));
    if (!text.ok()) {
      if (absl::IsNotFound(text.status())) continue;  // the thread exited
      return text.status();
    }
    std::vector<pid_t> some;
    if (!ParseList(*text, &some)) {
      return absl::InvalidArgumentError(absl::StrCat("task ", pid, ": bad children list"));
    }
    children.insert(children.end(), some.begin(), some.end());
  }
  return children;
}

bool IsExiting(pid_t tid) {
  absl::StatusOr<ProcStat> st = ReadProcStat(tid);
  if (!st.ok()) return absl::IsNotFound(st.status());
  return st->state == 'Z' || st->state == 'X' || (st->flags & kPfExiting) != 0;
}

std::string DescribePidHolder(pid_t pid) {
  absl::StatusOr<ProcStatus> st = ReadProcStatus(pid);
  if (!st.ok()) return "";
  std::string who = st->tgid == pid ? absl::StrCat("task ", pid)
                                    : absl::StrCat("thread ", pid, " of task ", st->tgid);
  std::string traced = st->tracer_pid != 0 ? absl::StrCat(", traced by ", st->tracer_pid) : "";
  return absl::StrCat(" (held by ", who, " '", st->name, "', state ", std::string(1, st->state),
                      traced, ")");
}

}  // namespace ckpt::task
