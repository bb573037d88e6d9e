#include "lib/task/restart.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "lib/base/clock.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/task/proc.h"
#include "lib/task/ptrace.h"
#include "lib/task/remote.h"

namespace ckpt::task {
namespace {

constexpr uint64_t kFutexCmdMask = ~static_cast<uint64_t>(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);

// The hrtimer_wakeup timers of /proc/timer_list (the timers of sleeping
// tasks), by address, with their soft expiry on CLOCK_MONOTONIC.
std::map<std::string, SleepProbe::Timer> ReadSleepTimersOnce() {
  std::map<std::string, SleepProbe::Timer> timers;
  absl::StatusOr<std::string> text = ReadFile("/proc/timer_list");
  if (!text.ok()) return timers;
  int64_t offset = 0;  // the current clock base's offset from CLOCK_MONOTONIC
  std::string pending;  // the address of a hrtimer_wakeup timer, awaiting its expiry line
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    absl::string_view l = absl::StripLeadingAsciiWhitespace(line);
    if (absl::ConsumePrefix(&l, ".offset:")) {
      l = absl::StripLeadingAsciiWhitespace(l);
      std::vector<absl::string_view> w = absl::StrSplit(l, ' ', absl::SkipEmpty());
      if (w.empty() || !absl::SimpleAtoi(w[0], &offset)) offset = 0;
    } else if (absl::StartsWith(l, "# expires at ")) {
      if (pending.empty()) continue;
      l.remove_prefix(13);
      std::vector<absl::string_view> range = absl::StrSplit(l, absl::ByAnyChar("- "));
      int64_t soft = 0, hard = 0;
      if (range.size() >= 2 && absl::SimpleAtoi(range[0], &soft) &&
          absl::SimpleAtoi(range[1], &hard)) {
        timers[pending] = {soft - offset, hard - offset};
      }
      pending.clear();
    } else if (absl::StartsWith(l, "#")) {
      // "#3: <00000000deadbeef>, hrtimer_wakeup, S:01"
      std::vector<absl::string_view> parts = absl::StrSplit(l, ", ");
      pending.clear();
      if (parts.size() >= 2 && parts[1] == "hrtimer_wakeup") {
        size_t lt = parts[0].find('<');
        if (lt != absl::string_view::npos) pending = std::string(parts[0].substr(lt));
      }
    }
  }
  return timers;
}

// The kernel prints /proc/timer_list one timer at a time, taking the
// base's lock again for each and walking to the next index: a timer that
// expires earlier and goes away meanwhile shifts the rest, and one of
// them is skipped. A single read can miss a timer that is there (never
// show one that is not): a timer is taken as present when any of a few
// reads shows it, and as gone only when none does. A read that skipped
// one differs from the next (the timer that went is missing from it, the
// one skipped is back): two reads that show the same timers are taken as
// they are, and only when they differ is a third read.
constexpr int kTimerReads = 3;
std::map<std::string, SleepProbe::Timer> ReadSleepTimers() {
  std::map<std::string, SleepProbe::Timer> timers = ReadSleepTimersOnce();
  for (int i = 1; i < kTimerReads; ++i) {
    std::map<std::string, SleepProbe::Timer> again = ReadSleepTimersOnce();
    const bool same = again.size() == timers.size() &&
                      std::equal(again.begin(), again.end(), timers.begin(),
                                 [](const auto& a, const auto& b) {
                                   // A timer re-armed at the same address has a new expiry.
                                   return a.first == b.first &&
                                          a.second.soft_mono_ns == b.second.soft_mono_ns &&
                                          a.second.hard_mono_ns == b.second.hard_mono_ns;
                                 });
    timers.merge(again);
    if (same) break;
  }
  return timers;
}

struct BlockedSyscall {
  long nr = -1;
  uint64_t args[6] = {};
};

// /proc/PID/task/TID/syscall of a blocked thread: "nr a1 ... a6 sp pc".
bool ReadBlockedSyscall(pid_t pid, pid_t tid, BlockedSyscall* out) {
  absl::StatusOr<std::string> text =
      ReadFile(absl::StrCat("/proc/", pid, "/task/", tid, "/syscall"));
  if (!text.ok()) return false;
  std::vector<absl::string_view> w =
      absl::StrSplit(absl::StripAsciiWhitespace(*text), ' ', absl::SkipEmpty());
  if (w.size() < 7 || !absl::SimpleAtoi(w[0], &out->nr) || out->nr < 0) return false;
  for (int i = 0; i < 6; ++i) {
    absl::string_view a = w[i + 1];
    if (!absl::ConsumePrefix(&a, "0x") || !absl::SimpleHexAtoi(a, &out->args[i])) return false;
  }
  return true;
}

// Whether only a timer can tell the time left of this blocked call.
bool NeedsTimer(const BlockedSyscall& s) {
  switch (s.nr) {
    case SYS_nanosleep:
      return s.args[1] == 0;
    case SYS_clock_nanosleep:
      return !(s.args[1] & TIMER_ABSTIME) && s.args[3] == 0;
    case SYS_poll:
      return static_cast<int32_t>(s.args[2]) > 0;
    case SYS_futex:
      return (s.args[1] & kFutexCmdMask) == FUTEX_WAIT && s.args[3] != 0;
    case SYS_epoll_wait:
    case SYS_epoll_pwait:
      return static_cast<int32_t>(s.args[3]) > 0;
    case SYS_epoll_pwait2:
      return s.args[3] != 0;
    default:
      return false;
  }
}

// The epoll waits: interrupted, they return -EINTR (never restarted by
// the kernel), and the dump restarts them itself, with the time left.
bool IsEpollWait(long nr) { return nr == SYS_epoll_wait || nr == SYS_epoll_pwait || nr == SYS_epoll_pwait2; }

}  // namespace

bool IsInterruptedEpollWait(const user_regs_struct& regs) {
  return static_cast<int64_t>(regs.rax) == -EINTR && IsEpollWait(static_cast<long>(regs.orig_rax));
}

// Then the EINTR is the signal's, and stays.
bool UnblockedSignalPending(pid_t tid) {
  absl::StatusOr<std::string> text = ReadFile(absl::StrCat("/proc/", tid, "/status"));
  if (!text.ok()) return true;
  uint64_t pnd = 0, shd = 0, blk = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    absl::string_view v;
    uint64_t* out = nullptr;
    if (absl::StartsWith(line, "SigPnd:")) out = &pnd;
    if (absl::StartsWith(line, "ShdPnd:")) out = &shd;
    if (absl::StartsWith(line, "SigBlk:")) out = &blk;
    if (out == nullptr) continue;
    v = absl::StripAsciiWhitespace(line.substr(7));
    if (!absl::SimpleHexAtoi(v, out)) return true;
  }
  return ((pnd | shd) & ~blk) != 0;
}

namespace {

image::ckpt_restart Make(image::RestartKind kind, int64_t remaining_ns) {
  image::ckpt_restart r{};
  r.kind = kind;
  r.remaining_ns = remaining_ns < 0 ? 0 : remaining_ns;
  const char* how = kind == image::kRestartTimeLeft   ? "time-left"
                    : kind == image::kRestartSameArgs ? "same-args"
                                                      : "eintr";
  std::strncpy(r.how, how, sizeof(r.how) - 1);
  return r;
}

bool IsRestartBlockSyscall(long nr) {
  return nr == SYS_nanosleep || nr == SYS_clock_nanosleep || nr == SYS_poll || nr == SYS_futex;
}

}  // namespace

bool NeedsSleepProbe(pid_t pid, pid_t tid) {
  BlockedSyscall s;
  return ReadBlockedSyscall(pid, tid, &s) && NeedsTimer(s);
}

bool InTimedEpollWait(pid_t pid, pid_t tid) {
  BlockedSyscall s;
  return ReadBlockedSyscall(pid, tid, &s) && IsEpollWait(s.nr) && NeedsTimer(s);
}

SleepProbe TakeSleepProbe() {
  SleepProbe probe;
  probe.taken_ns = MonotonicNs();
  probe.before = ReadSleepTimers();
  return probe;
}

namespace {

// The timers of `before` that are gone from `after` without having
// expired on their own: soft expiry by hard expiry.
std::map<int64_t, int64_t> GoneTimers(const std::map<std::string, SleepProbe::Timer>& before,
                                      const std::map<std::string, SleepProbe::Timer>& after) {
  const int64_t now = MonotonicNs();
  std::map<int64_t, int64_t> gone;
  for (const auto& [addr, timer] : before) {
    if (after.count(addr)) continue;
    // Gone because it expired on its own: another task's sleep ended.
    if (timer.soft_mono_ns <= now) continue;
    gone[timer.hard_mono_ns] = timer.soft_mono_ns;
  }
  return gone;
}

// Whether `timers` hold a sleep re-armed from a restart block that kept
// `hard` (nanosleep) or `soft` (futex, poll).
bool Holds(const std::map<std::string, SleepProbe::Timer>& timers, int64_t hard, int64_t soft) {
  for (const auto& [addr, timer] : timers) {
    const bool from_hard = timer.soft_mono_ns == hard && timer.hard_mono_ns == hard;
    if (from_hard || timer.soft_mono_ns == soft) return true;
  }
  return false;
}

// Waits (briefly) until `tid`, just let go, sleeps in restart_syscall
// again. Until it has run, /proc shows the registers it stopped with (the
// sleep's own number): that is not yet a sign that the sleep ended. One
// that did end runs on: seen blocked in another syscall (twice, around a
// read of its syscall), it is taken as gone on; running, until the
// deadline.
enum class RestartWait { kAsleep, kWentOn, kNotSeen };

// The syscall /proc shows a thread blocked in (-1: running, or blocked
// outside one); an error once it is gone.
absl::StatusOr<long> BlockedNr(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  long nr = -1;
  std::vector<absl::string_view> w = absl::StrSplit(text, ' ', absl::SkipEmpty());
  if (w.empty() || !absl::SimpleAtoi(w[0], &nr)) return -1;
  return nr;
}

// Held on the way back into its sleep: a cgroup freezer's trap in
// get_signal shows the sleep's own registers, before the restart.
bool HeldByFreezer(pid_t pid, pid_t tid) {
  absl::StatusOr<std::string> wchan = ReadFile(absl::StrCat("/proc/", pid, "/task/", tid, "/wchan"));
  return wchan.ok() && absl::StrContains(*wchan, "freezer");
}

RestartWait WaitAsleepInRestart(pid_t pid, pid_t tid) {
  const std::string path = absl::StrCat("/proc/", pid, "/task/", tid, "/syscall");
  const int64_t deadline = MonotonicNs() + 1000 * 1000000LL;
  while (MonotonicNs() < deadline) {
    absl::StatusOr<long> nr = BlockedNr(path);
    if (!nr.ok()) return RestartWait::kNotSeen;
    if (*nr >= 0) {
      absl::StatusOr<ProcStat> stat = ReadProcStat(tid);
      if (!stat.ok()) return RestartWait::kNotSeen;
      if (*nr == SYS_restart_syscall && stat->state == 'S') return RestartWait::kAsleep;
      // Blocked, so it has run since it was let go, and /proc now shows
      // where it is. In another syscall, and still blocked there: its
      // sleep ended meanwhile and it went on (a loop of short sleeps is
      // soon in the next one). It does not come back to this sleep, and
      // waiting for the deadline only held the dump a second longer.
      absl::StatusOr<long> again =
          stat->state == 'S' || stat->state == 'D' ? BlockedNr(path) : absl::StatusOr<long>(-1);
      if (again.ok() && *again >= 0) {
        absl::StatusOr<ProcStat> still = ReadProcStat(tid);
        if (!still.ok()) return RestartWait::kNotSeen;
        if (*again == SYS_restart_syscall && still->state == 'S') return RestartWait::kAsleep;
        if (*again != SYS_restart_syscall && (still->state == 'S' || still->state == 'D') &&
            !HeldByFreezer(pid, tid)) {
          return RestartWait::kWentOn;
        }
      }
    }
    usleep(50);
  }
  return RestartWait::kNotSeen;
}

}  // namespace

namespace {
absl::StatusOr<int64_t> ResolveEpollExpiry(pid_t pid, pid_t tid, const user_regs_struct& regs,
                                           const SleepProbe& probe,
                                           const std::map<std::string, SleepProbe::Timer>& after);
}  // namespace

absl::StatusOr<int64_t> ResolveSleepExpiry(pid_t pid, pid_t tid, const SleepProbe& probe,
                                           const std::function<absl::Status()>& refreeze) {
  if (!probe.armed()) return -1;
  std::map<std::string, SleepProbe::Timer> after = ReadSleepTimers();
  std::map<int64_t, int64_t> candidates = GoneTimers(probe.before, after);
  // At least one round even for a single candidate: the thread's own timer
  // may not be among those gone (a short sleep that ended and began again
  // between the two reads) while a stranger's was cancelled meanwhile; a
  // lone candidate is taken only once it has come back and gone with the
  // thread (else EINTR, never a stranger's expiry: a 2 ms sleep restored
  // with a sleep that never ended was seen on a loaded machine).
  {
    ASSIGN_OR_RETURN(user_regs_struct regs, GetRegs(tid));
    if (IsInterruptedEpollWait(regs)) return ResolveEpollExpiry(pid, tid, regs, probe, after);
  }
  if (candidates.empty()) {
    // None left to come: the thread's own timer, which the probe saw armed
    // and the interrupt took away before it fired, expired since the probe
    // began (a sleep of a few ms does, while the timers are read). Every
    // timer gone meanwhile did so within that moment, so the latest of
    // them is its expiry give or take the probe's own length, and the
    // restore ends the sleep on time instead of with EINTR.
    const int64_t now = MonotonicNs();
    int64_t latest = -1;
    for (const auto& [addr, timer] : probe.before) {
      if (after.count(addr) || timer.soft_mono_ns <= probe.taken_ns || timer.soft_mono_ns > now) continue;
      latest = std::max(latest, timer.soft_mono_ns);
    }
    if (latest >= 0) return latest;
  }
  // Two rounds at least: a candidate is taken once it came back and went
  // with the thread twice.
  constexpr int kRounds = 8;
  for (int round = 0; round < kRounds && !candidates.empty() && (round < 2 || candidates.size() > 1);
       ++round) {
    ASSIGN_OR_RETURN(user_regs_struct first, GetRegs(tid));
    if (static_cast<int64_t>(first.rax) != -kErestartRestartblock) return -1;
    RETURN_IF_ERROR(Cont(tid, 0));
    const RestartWait wait = WaitAsleepInRestart(pid, tid);
    const bool asleep = wait == RestartWait::kAsleep;
    std::map<std::string, SleepProbe::Timer> rearmed =
        asleep ? ReadSleepTimers() : std::map<std::string, SleepProbe::Timer>{};
    RETURN_IF_ERROR(refreeze());
    if (!asleep) {
      // Gone on into another sleep, stopped again in it: that one began
      // while it ran just now.
      if (wait == RestartWait::kWentOn) {
        absl::StatusOr<user_regs_struct> regs = GetRegs(tid);
        if (regs.ok() && static_cast<int64_t>(regs->rax) == -kErestartRestartblock &&
            static_cast<long>(regs->orig_rax) != SYS_restart_syscall) {
          return kSleepBegunDuringProbe;
        }
      }
      return -1;
    }
    // Stopped again, its timer is gone again.
    std::map<std::string, SleepProbe::Timer> frozen = ReadSleepTimers();
    absl::StatusOr<user_regs_struct> now = GetRegs(tid);
    if (!now.ok()) return -1;  // it exited meanwhile
    if (static_cast<int64_t>(now->rax) != -kErestartRestartblock ||
        static_cast<long>(now->orig_rax) != SYS_restart_syscall) {
      return -1;  // something else happened to it (its sleep ended, a signal came)
    }
    // restart_syscall re-arms the sleep from its restart block: nanosleep's
    // kept the hard expiry (the new timer's soft and hard are both it),
    // futex's and poll's the soft one. Its own candidate is always among
    // those that come back while it sleeps and go again once it is stopped;
    // a stranger's only if it came and went with the very same expiry in
    // step with it, which leaves the choice ambiguous, never wrong. (A
    // stranger that sleeps on with an expiry equal to a candidate's, after
    // its timer moved, comes back every time but never goes.)
    std::map<int64_t, int64_t> back;
    for (const auto& [hard, soft] : candidates) {
      if (Holds(rearmed, hard, soft) && !Holds(frozen, hard, soft)) back.emplace(hard, soft);
    }
    // The restart block still holds the sleep: only orig_rax changed.
    RETURN_IF_ERROR(SetRegs(tid, first));
    candidates = std::move(back);
  }
  return candidates.size() == 1 ? candidates.begin()->second : -1;
}

namespace {

// The next stop of `tid` that is not an event stop on the way.
absl::StatusOr<StopInfo> NextStopOf(pid_t pid, pid_t tid) {
  return WaitStopAlive(pid, tid, "its sleep was probed");
}

// From a syscall stop of `tid`: into an event stop on its way back to
// user space, before it runs an instruction there.
absl::Status ParkAfterSyscall(pid_t pid, pid_t tid) {
  RETURN_IF_ERROR(Interrupt(tid));
  RETURN_IF_ERROR(Cont(tid, 0));
  for (;;) {
    ASSIGN_OR_RETURN(StopInfo stop, NextStopOf(pid, tid));
    if (stop.group_stop) return absl::OkStatus();
    if (!stop.syscall_stop && stop.signal != 0) {
      return absl::InternalError(absl::StrCat(TaskName(pid, tid), ": signal ", stop.signal,
                                              " while its sleep was probed"));
    }
    RETURN_IF_ERROR(Cont(tid, 0));
  }
}

// From a stop of `tid` that is not a syscall stop: on to its next syscall
// stop, through the event stops on the way; a signal is an error.
absl::Status ToSyscallStop(pid_t pid, pid_t tid) {
  for (;;) {
    ASSIGN_OR_RETURN(StopInfo stop, NextStopOf(pid, tid));
    if (stop.syscall_stop) return absl::OkStatus();
    if (!stop.group_stop && stop.signal != 0) {
      return absl::InternalError(absl::StrCat(TaskName(pid, tid), ": signal ", stop.signal,
                                              " while its sleep was probed"));
    }
    RETURN_IF_ERROR(ContSyscall(tid, 0));
  }
}

struct SleptAgain {
  bool asleep = false;  // it sleeps in the call: `timers` were read then
  bool ended = false;   // the call returned: stopped at its exit
  std::map<std::string, SleepProbe::Timer> timers;
};

// `tid`, stopped with registers that make syscall `nr`, is let into it one
// syscall stop at a time (it runs nothing of its own), and watched for a
// second at most until it sleeps there or the call ends.
absl::StatusOr<SleptAgain> SleepAgain(pid_t pid, pid_t tid, long nr) {
  RETURN_IF_ERROR(ContSyscall(tid, 0));
  RETURN_IF_ERROR(ToSyscallStop(pid, tid));  // the entry of the call
  RETURN_IF_ERROR(ContSyscall(tid, 0));
  SleptAgain out;
  const std::string syscall_path = absl::StrCat("/proc/", pid, "/task/", tid, "/syscall");
  for (const int64_t deadline = MonotonicNs() + 1000 * 1000000LL; MonotonicNs() < deadline;) {
    int status = 0;
    if (waitpid(tid, &status, WNOHANG | __WALL) == tid) {
      if (!WIFSTOPPED(status)) {
        return absl::AbortedError(absl::StrCat(TaskName(pid, tid), " exited while its sleep was probed"));
      }
      out.ended = true;
      return out;
    }
    absl::StatusOr<ProcStat> stat = ReadProcStat(tid);
    absl::StatusOr<std::string> text = ReadFile(syscall_path);
    long now_nr = -1;
    if (stat.ok() && stat->state == 'S' && text.ok()) {
      std::vector<absl::string_view> w = absl::StrSplit(*text, ' ', absl::SkipEmpty());
      if (!w.empty() && absl::SimpleAtoi(w[0], &now_nr) && now_nr == nr) {
        out.asleep = true;
        out.timers = ReadSleepTimers();
        return out;
      }
    }
    usleep(50);
  }
  return out;
}

// Interrupted, a call that sleeps comes out at its syscall exit.
absl::Status InterruptToExit(pid_t pid, pid_t tid) {
  RETURN_IF_ERROR(Interrupt(tid));
  return ToSyscallStop(pid, tid);
}

}  // namespace

namespace {

// An epoll wait cannot be sent back to its sleep through restart_syscall:
// of the timers gone when it was stopped, those that end within the
// timeout it asked for are its candidates; one is taken as it is. Among
// several, the thread is let into the same wait once more (one syscall
// stop at a time, so that it runs nothing of its own; its events buffer
// pointed at an address never mapped, so that events that come meanwhile
// stay queued: the kernel puts them back when the copy fails), and its
// sleep timer shows where on its kernel stack the wait keeps its timer:
// the candidate at that address is its. Else -1 (EINTR).
absl::StatusOr<int64_t> ResolveEpollExpiry(pid_t pid, pid_t tid, const user_regs_struct& regs,
                                           const SleepProbe& probe,
                                           const std::map<std::string, SleepProbe::Timer>& after) {
  const long nr = static_cast<long>(regs.orig_rax);
  int64_t requested = -1;
  if (nr == SYS_epoll_pwait2) {
    struct timespec ts;
    if (regs.r10 != 0 && ReadRemote(pid, regs.r10, &ts, sizeof(ts)).ok() && ts.tv_sec >= 0 &&
        ts.tv_sec < image::kMaxDurationNs / 1000000000) {
      requested = TimespecToNs(ts);
    }
  } else {
    requested = static_cast<int64_t>(static_cast<int32_t>(regs.r10)) * 1000000;
  }
  if (requested <= 0) return -1;
  const int64_t now = MonotonicNs();
  const int64_t latest = now + requested + 100 * 1000000LL;
  std::map<std::string, SleepProbe::Timer> candidates;
  for (const auto& [addr, timer] : probe.before) {
    if (after.count(addr) || timer.soft_mono_ns <= now || timer.soft_mono_ns > latest) continue;
    candidates.emplace(addr, timer);
  }
  if (candidates.size() <= 1) return candidates.empty() ? -1 : candidates.begin()->second.soft_mono_ns;

  user_regs_struct again = regs;
  again.rax = regs.orig_rax;
  again.rip = regs.rip - 2;
  again.orig_rax = ~0ull;
  again.rsi = 0x1000;  // below mmap_min_addr: never mapped
  again.rdx = 1;
  if (nr == SYS_epoll_pwait2) {
    const uint64_t at = (regs.rsp - 128 - sizeof(struct timespec)) & ~uint64_t{15};
    struct timespec ts = {3600, 0};
    RETURN_IF_ERROR(WriteRemote(pid, at, &ts, sizeof(ts)));
    again.r10 = at;
  } else {
    again.r10 = 3600 * 1000;
  }
  RETURN_IF_ERROR(SetRegs(tid, again));
  // Ended at once: events were ready (the copy failed, EFAULT).
  ASSIGN_OR_RETURN(SleptAgain slept, SleepAgain(pid, tid, nr));
  if (!slept.ended) RETURN_IF_ERROR(InterruptToExit(pid, tid));
  const std::map<std::string, SleepProbe::Timer>& rearmed = slept.timers;
  RETURN_IF_ERROR(ParkAfterSyscall(pid, tid));
  RETURN_IF_ERROR(SetRegs(tid, regs));
  std::string mine;
  int matches = 0;
  for (const auto& [addr, timer] : candidates) {
    if (rearmed.count(addr) && !after.count(addr)) {
      mine = addr;
      ++matches;
    }
  }
  return matches == 1 ? candidates[mine].soft_mono_ns : -1;
}

}  // namespace

absl::StatusOr<int64_t> ResolveStoppedSleep(pid_t pid, pid_t tid) {
  constexpr int kRounds = 8;
  std::map<int64_t, int64_t> candidates;  // hard expiry -> soft
  for (int round = 0; round < kRounds && (round < 2 || candidates.size() > 1); ++round) {
    ASSIGN_OR_RETURN(user_regs_struct first, GetRegs(tid));
    if (static_cast<int64_t>(first.rax) != -kErestartRestartblock) return -1;
    // Into restart_syscall, one syscall stop at a time: if the sleep is
    // over it returns, and the thread is parked again before it runs
    // anything of its own.
    ASSIGN_OR_RETURN(SleptAgain slept, SleepAgain(pid, tid, SYS_restart_syscall));
    if (slept.ended) {
      // The call is over (its result in rax): the thread keeps that.
      RETURN_IF_ERROR(ParkAfterSyscall(pid, tid));
      return -1;
    }
    const bool asleep = slept.asleep;
    const std::map<std::string, SleepProbe::Timer>& rearmed = slept.timers;
    RETURN_IF_ERROR(InterruptToExit(pid, tid));
    RETURN_IF_ERROR(ParkAfterSyscall(pid, tid));
    std::map<std::string, SleepProbe::Timer> frozen = ReadSleepTimers();
    ASSIGN_OR_RETURN(user_regs_struct now, GetRegs(tid));
    if (static_cast<int64_t>(now.rax) != -kErestartRestartblock) return -1;  // it ended meanwhile
    if (!asleep) {
      RETURN_IF_ERROR(SetRegs(tid, first));
      return -1;
    }
    std::map<int64_t, int64_t> back;
    for (const auto& [addr, timer] : rearmed) {
      if (Holds(frozen, timer.hard_mono_ns, timer.soft_mono_ns)) continue;
      if (round == 0 || candidates.count(timer.hard_mono_ns)) {
        back.emplace(timer.hard_mono_ns, timer.soft_mono_ns);
      }
    }
    RETURN_IF_ERROR(SetRegs(tid, first));
    candidates = std::move(back);
    if (candidates.empty()) return -1;
  }
  return candidates.size() == 1 ? candidates.begin()->second : -1;
}

namespace {
bool IsWallClock(int64_t clock) {
  return clock == CLOCK_REALTIME || clock == CLOCK_MONOTONIC || clock == CLOCK_BOOTTIME ||
         clock == CLOCK_TAI || clock == CLOCK_REALTIME_ALARM || clock == CLOCK_BOOTTIME_ALARM;
}
}  // namespace

absl::StatusOr<std::optional<image::ckpt_restart>> PlanRestart(pid_t pid,
                                                               const user_regs_struct& regs,
                                                               int64_t expiry_mono_ns,
                                                               int64_t start_mono_ns,
                                                               int64_t interrupted_mono_ns) {
  const long nr = static_cast<long>(regs.orig_rax);
  if (IsInterruptedEpollWait(regs)) {
    if (UnblockedSignalPending(pid)) return std::nullopt;  // the signal's EINTR
    int64_t requested_ns = -1;  // forever
    if (nr == SYS_epoll_pwait2) {
      if (regs.r10 != 0) {
        struct timespec ts;
        if (!ReadRemote(pid, regs.r10, &ts, sizeof(ts)).ok()) return Make(image::kRestartEintr, 0);
        if (ts.tv_sec < 0 || ts.tv_nsec < 0 || ts.tv_nsec >= 1000000000) return std::nullopt;  // never slept
        // Beyond what the kernel can time: it waits forever.
        requested_ns = ts.tv_sec >= image::kMaxDurationNs / 1000000000 ? -1 : TimespecToNs(ts);
      }
    } else if (static_cast<int32_t>(regs.r10) >= 0) {
      requested_ns = static_cast<int64_t>(static_cast<int32_t>(regs.r10)) * 1000000;
    }
    if (requested_ns < 0) return Make(image::kRestartSameArgs, 0);
    if (requested_ns == 0) return std::nullopt;
    constexpr int64_t kSlackNs = 100 * 1000000LL;
    if (expiry_mono_ns < 0) return Make(image::kRestartEintr, 0);
    const int64_t left = expiry_mono_ns - start_mono_ns;
    if (left > requested_ns + kSlackNs) return Make(image::kRestartEintr, 0);
    return Make(image::kRestartTimeLeft, std::min(left, requested_ns));
  }
  if (static_cast<int64_t>(regs.rax) != -kErestartRestartblock) return std::nullopt;
  // What the sleep itself reported: nanosleep's and clock_nanosleep's
  // `rem`, written when the freeze interrupted them.
  auto reported = [&](uint64_t rem) -> std::optional<int64_t> {
    if (rem == 0) return std::nullopt;
    struct timespec ts;
    if (!ReadRemote(pid, rem, &ts, sizeof(ts)).ok()) return std::nullopt;
    return TimespecToNs(ts);
  };
  // What the call asked for: the time left can never be more.
  auto asked = [&](uint64_t ts_addr) -> std::optional<int64_t> {
    struct timespec ts;
    if (ts_addr == 0 || !ReadRemote(pid, ts_addr, &ts, sizeof(ts)).ok()) return std::nullopt;
    return TimespecToNs(ts);
  };
  std::optional<int64_t> left;
  std::optional<int64_t> requested;
  bool relative = false;  // `requested` is a length (not a deadline)
  if (expiry_mono_ns >= 0) left = expiry_mono_ns - start_mono_ns;
  switch (nr) {
    case SYS_nanosleep:
      if (!left) left = reported(regs.rsi);
      requested = asked(regs.rdi);
      relative = true;
      break;
    case SYS_clock_nanosleep:
      if (!left) left = reported(regs.r10);
      requested = asked(regs.rdx);
      // An absolute one is restarted as it was, not here; a CPU-time clock
      // (a negative id, or the process's or thread's own) does not run
      // with CLOCK_MONOTONIC.
      relative = IsWallClock(static_cast<int64_t>(regs.rdi));
      break;
    case SYS_poll:
      // Without a timeout, poll() too returns -ERESTART_RESTARTBLOCK (its
      // restart block says so): the same call again.
      if (static_cast<int32_t>(regs.rdx) < 0) return Make(image::kRestartSameArgs, 0);
      requested = static_cast<int64_t>(static_cast<int32_t>(regs.rdx)) * 1000000;
      relative = true;
      break;
    case SYS_futex: {
      const uint64_t cmd = regs.rsi & kFutexCmdMask;
      if (cmd == FUTEX_WAIT_BITSET) return Make(image::kRestartSameArgs, 0);
      if (cmd != FUTEX_WAIT) left.reset();
      requested = asked(regs.r10);
      relative = cmd == FUTEX_WAIT;
      break;
    }
    default:
      left.reset();
  }
  // A time left beyond what was asked (plus the timer slack) is not this
  // call's: EINTR rather than a sleep of someone else's length.
  constexpr int64_t kSlackNs = 100 * 1000000LL;
  if (left && requested && *requested >= 0 && *left > *requested + kSlackNs) left.reset();
  // A sleep whose expiry the probe could not tell ends otherwise than with
  // an EINTR the program never asked for where its state says how. One
  // that began while the probe let the thread run has all but that moment
  // (well under the timer slack) left.
  if (!left && requested && *requested >= 0 && relative &&
      expiry_mono_ns == kSleepBegunDuringProbe) {
    left = requested;
  }
  // One that began before its thread was interrupted, and asked for no
  // longer than has passed since, is over on CLOCK_MONOTONIC: it ends as
  // done (nanosleep 0, poll and futex their timeout).
  if (!left && requested && *requested >= 0 && relative && interrupted_mono_ns > 0 &&
      *requested <= MonotonicNs() - interrupted_mono_ns) {
    left = 0;
  }
  if (!left) return Make(image::kRestartEintr, 0);
  return Make(image::kRestartTimeLeft, *left);
}

absl::StatusOr<user_regs_struct> RestartedEpollWait(pid_t pid, const user_regs_struct& regs,
                                                    const image::ckpt_restart& restart, int64_t left_ns) {
  user_regs_struct out = regs;
  if (!IsInterruptedEpollWait(regs) || restart.kind == image::kRestartEintr) return out;
  if (left_ns < 0) left_ns = 0;
  const long nr = static_cast<long>(regs.orig_rax);
  if (restart.kind == image::kRestartTimeLeft) {
    if (nr == SYS_epoll_pwait2) {
      // The caller's timespec stays as it was: the time left goes below
      // the stack's red zone, where a signal frame would go.
      const uint64_t at = ((regs.rsp - 128 - sizeof(struct timespec)) & ~uint64_t{15});
      struct timespec ts = NsToTimespec(left_ns);
      if (!WriteRemote(pid, at, &ts, sizeof(ts)).ok()) return out;  // EINTR, as without us
      out.r10 = at;
    } else {
      out.r10 = static_cast<uint64_t>(static_cast<uint32_t>((left_ns + 999999) / 1000000));
    }
  }
  // Back at its syscall instruction, to make the call again.
  out.rax = regs.orig_rax;
  out.rip = regs.rip - 2;
  out.orig_rax = ~0ull;
  return out;
}

absl::Status CheckRestart(const image::ckpt_restart& restart, const user_regs_struct& regs) {
  if (restart.kind == image::kRestartEintr) return absl::OkStatus();
  if (restart.kind != image::kRestartTimeLeft && restart.kind != image::kRestartSameArgs) {
    return absl::InvalidArgumentError(absl::StrCat("unknown kind ", restart.kind));
  }
  const long nr = static_cast<long>(regs.orig_rax);
  if (IsInterruptedEpollWait(regs)) {
    if (restart.remaining_ns < 0 || restart.remaining_ns > image::kMaxDurationNs) {
      return absl::InvalidArgumentError(absl::StrCat("remaining_ns ", restart.remaining_ns, " is out of range"));
    }
    return absl::OkStatus();
  }
  if (static_cast<int64_t>(regs.rax) != -kErestartRestartblock || !IsRestartBlockSyscall(nr)) {
    return absl::InvalidArgumentError(
        absl::StrCat("kind ", restart.kind, " for a thread not stopped in a restartable sleep"));
  }
  if (restart.kind == image::kRestartSameArgs &&
      !(nr == SYS_futex && (regs.rsi & kFutexCmdMask) == FUTEX_WAIT_BITSET) &&
      !(nr == SYS_poll && static_cast<int32_t>(regs.rdx) < 0)) {
    return absl::InvalidArgumentError("same-args for a call that has no absolute deadline nor waits forever");
  }
  if (restart.remaining_ns < 0 || restart.remaining_ns > image::kMaxDurationNs) {
    return absl::InvalidArgumentError(absl::StrCat("remaining_ns ", restart.remaining_ns,
                                                   " is out of range"));
  }
  return absl::OkStatus();
}

absl::StatusOr<user_regs_struct> PrimeRestart(Injector& inj, const user_regs_struct& regs,
                                              const image::ckpt_restart& restart,
                                              int64_t restore_start_mono_ns) {
  user_regs_struct out = regs;
  if (restart.kind == image::kRestartEintr) {
    out.rax = static_cast<uint64_t>(-EINTR);
    out.orig_rax = ~0ull;
    return out;
  }
  RETURN_IF_ERROR(CheckRestart(restart, regs));
  if (IsInterruptedEpollWait(regs)) {
    int64_t left = restart.remaining_ns - (MonotonicNs() - restore_start_mono_ns);
    return RestartedEpollWait(inj.pid(), regs, restart, left);
  }
  const long nr = static_cast<long>(regs.orig_rax);
  std::array<uint64_t, 6> args = {regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9};
  if (restart.kind == image::kRestartTimeLeft) {
    // The relative model: the time left runs from the restore's start.
    int64_t left = restart.remaining_ns - (MonotonicNs() - restore_start_mono_ns);
    if (left < 0) left = 0;
    if (!inj.has_trampoline()) {
      return absl::FailedPreconditionError("no trampoline to hold the time left");
    }
    struct timespec ts = NsToTimespec(left);
    const uint64_t at = inj.layout().data();
    RETURN_IF_ERROR(WriteRemote(inj.pid(), at, &ts, sizeof(ts)));
    switch (nr) {
      case SYS_nanosleep:
        args[0] = at;
        break;
      case SYS_clock_nanosleep:
        args[2] = at;
        break;
      case SYS_poll:
        args[2] = static_cast<uint64_t>((left + 999999) / 1000000);
        break;
      case SYS_futex:
        args[3] = at;
        break;
    }
  }
  ASSIGN_OR_RETURN(int64_t ret, inj.SyscallInterrupted(nr, args));
  if (ret == -kErestartRestartblock) return out;  // primed: the kernel resumes it
  // The call ended at once (the time was up, a futex word had changed, a
  // polled fd was ready): it returns that.
  out.rax = static_cast<uint64_t>(ret);
  out.orig_rax = ~0ull;
  return out;
}

}  // namespace ckpt::task
