#include "tests/e2e/restore_trial.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ckpt/ckpt.hpp"
#include "lib/base/clock.h"
#include "lib/base/fd.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

namespace ckpt::testing {
namespace {

int64_t NowMs() { return MonotonicNs() / 1000000; }

// Every process visible in this pid namespace.
std::set<pid_t> ProcessesNow() {
  std::set<pid_t> out;
  DIR* d = opendir("/proc");
  if (d == nullptr) return out;
  while (struct dirent* e = readdir(d)) {
    char* end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end == '\0' && pid > 0) out.insert(static_cast<pid_t>(pid));
  }
  closedir(d);
  return out;
}

// PPid of every process, from /proc/PID/stat.
std::map<pid_t, pid_t> Parents() {
  std::map<pid_t, pid_t> out;
  for (pid_t pid : ProcessesNow()) {
    absl::StatusOr<std::string> stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
    if (!stat.ok()) continue;
    size_t close = stat->rfind(')');
    if (close == std::string::npos) continue;
    char state;
    int ppid;
    if (sscanf(stat->c_str() + close + 1, " %c %d", &state, &ppid) == 2) out[pid] = ppid;
  }
  return out;
}

std::vector<pid_t> Descendants(pid_t of) {
  std::map<pid_t, pid_t> parents = Parents();
  std::vector<pid_t> out;
  std::vector<pid_t> todo = {of};
  while (!todo.empty()) {
    pid_t p = todo.back();
    todo.pop_back();
    for (const auto& [pid, ppid] : parents) {
      if (ppid == p && pid != of) {
        out.push_back(pid);
        todo.push_back(pid);
      }
    }
  }
  return out;
}

std::string Describe(pid_t pid) {
  absl::StatusOr<std::string> stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!stat.ok()) return absl::StrCat(pid, " (gone)");
  std::string s = *stat;
  size_t close = s.rfind(')');
  if (close != std::string::npos && close + 2 < s.size()) s = s.substr(0, close + 3);
  return s;
}

// Kills every descendant of this process, by PID, and reaps its children
// until it has none (orphans come to it: it is a subreaper).
void EndDescendants(int64_t deadline_ms) {
  for (;;) {
    for (pid_t pid : Descendants(getpid())) kill(pid, SIGKILL);
    int status;
    pid_t r = waitpid(-1, &status, WNOHANG | __WALL);
    if (r < 0 && errno == ECHILD) return;
    if (NowMs() > deadline_ms) return;
    if (r == 0) usleep(500);
  }
}

// What this process still has: live or zombie children.
std::string ChildrenLeft() {
  std::vector<std::string> left;
  for (pid_t pid : Descendants(getpid())) left.push_back(Describe(pid));
  int status;
  siginfo_t info{};
  if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT | __WALL) == 0 && info.si_pid != 0 &&
      left.empty()) {
    left.push_back(absl::StrCat(info.si_pid, " (an unreaped zombie)"));
  }
  (void)status;
  return absl::StrJoin(left, "; ");
}

off_t FileSize(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? st.st_size : 0;
}

std::string ReadFrom(const std::string& path, off_t from) {
  absl::StatusOr<std::string> all = ReadFile(path);
  if (!all.ok() || static_cast<off_t>(all->size()) < from) return "";
  return all->substr(static_cast<size_t>(from));
}

std::set<std::string> Listing(const std::string& dir) {
  std::set<std::string> out;
  if (dir.empty()) return out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (struct dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.insert(n);
  }
  closedir(d);
  return out;
}

struct Report {
  Outcome outcome;
  std::string detail;
};

// The verdict of a restored tree rooted at `root`, a child of this process.
Report Judge(pid_t root, const TrialSetup& setup, off_t out_start) {
  if (setup.must_pass && !setup.verdict_usable) {
    usleep(20000);
    for (const TaskShape& want : setup.shape) {
      TaskShape got = ShapeOf(want.pid);
      if (want.threads == 0) got.threads = 0;  // not to be compared
      if (!(got == want)) {
        return {Outcome::kSilentWrong,
                absl::StrCat("a framing field changed, the restore took it, and the tree is not "
                             "intact: task ", Describe(want), " came back as ", Describe(got))};
      }
    }
    return {Outcome::kRestoredPassed, "restored, every task as it was"};
  }
  if (!setup.must_pass && !(setup.await_verdict && setup.verdict_usable)) {
    usleep(20000);
    return {Outcome::kRestoredRan, absl::StrCat("restored, running: ", Describe(root))};
  }
  kill(root, setup.go_signal);
  const int64_t deadline = NowMs() + setup.verdict_timeout_ms;
  int status = 0;
  bool exited = false;
  while (NowMs() < deadline) {
    pid_t r = waitpid(root, &status, WNOHANG | __WALL);
    if (r == root && (WIFEXITED(status) || WIFSIGNALED(status))) {
      exited = true;
      break;
    }
    if (r < 0 && errno != EINTR) break;
    usleep(1000);
  }
  std::string out = ReadFrom(setup.output, out_start);
  const bool passed = exited && WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
                      out.find("PASS") != std::string::npos &&
                      out.find("FAIL") == std::string::npos;
  if (passed) return {Outcome::kRestoredPassed, "restored and passed"};
  std::string how = !exited               ? std::string("no verdict in time")
                    : WIFSIGNALED(status) ? absl::StrCat("killed by signal ", WTERMSIG(status))
                                          : absl::StrCat("exit ", WEXITSTATUS(status));
  if (out.size() > 400) out = out.substr(0, 400) + "...";
  std::replace(out.begin(), out.end(), '\n', '|');
  std::string detail = absl::StrCat("restored, then ", how, "; output: ", out);
  if (setup.must_pass) {
    return {Outcome::kSilentWrong,
            absl::StrCat("a framing field changed, the restore took it, and the tree is not "
                         "intact: ",
                         detail)};
  }
  return {Outcome::kRestoredRan, detail};
}

Report Restore(int image_fd, const TrialSetup& setup) {
  const off_t out_start = FileSize(setup.output);
  const int64_t t0 = NowMs();
  Restorer restorer;
  absl::StatusOr<pid_t> root = restorer.Restore(image_fd);
  const int64_t took = NowMs() - t0;
  Report rep;
  if (!root.ok()) {
    if (root.status().message().empty()) {
      rep = {Outcome::kSilentWrong, absl::StrCat("refused without a message: ", root.status().ToString())};
    } else {
      rep = {Outcome::kRefused, root.status().ToString()};
    }
    std::string left = ChildrenLeft();
    if (!left.empty()) {
      rep = {Outcome::kStray, absl::StrCat("the failed restore (", root.status().ToString(),
                                           ") left processes behind: ", left)};
    }
  } else if (setup.must_refuse) {
    rep = {Outcome::kSilentWrong, absl::StrCat("the restore accepted it (root ", *root, ")")};
  } else if (setup.expected_root != 0 && *root != setup.expected_root) {
    rep = {Outcome::kSilentWrong, absl::StrCat("the restore returned root ", *root,
                                               ", the image's root is ", setup.expected_root)};
  } else {
    rep = Judge(*root, setup, out_start);
  }
  if (took > setup.restore_timeout_ms && !IsFailure(rep.outcome)) {
    rep = {Outcome::kHung, absl::StrCat("the restore took ", took, " ms (", rep.detail, ")")};
  }
  EndDescendants(NowMs() + 5000);
  std::string left = ChildrenLeft();
  if (!left.empty() && !IsFailure(rep.outcome)) {
    rep = {Outcome::kStray, absl::StrCat("could not end the restored tree: ", left)};
  }
#if defined(__SANITIZE_ADDRESS__)
  // Leaks on the paths a corrupt image takes (the runner never exits
  // normally, so LeakSanitizer would not look otherwise).
  if (__lsan_do_recoverable_leak_check() != 0 && !IsFailure(rep.outcome)) {
    rep = {Outcome::kCrashed, absl::StrCat("LeakSanitizer found leaks (", rep.detail, ")")};
  }
#endif
  return rep;
}

void WriteReport(int fd, const Report& rep) {
  std::string msg = rep.detail.substr(0, 8000);
  char o = static_cast<char>(rep.outcome);
  (void)!write(fd, &o, 1);
  (void)WriteAll(fd, msg.data(), msg.size());
}

}  // namespace

TaskShape ShapeOf(pid_t pid) {
  TaskShape t;
  t.pid = pid;
  absl::StatusOr<std::string> stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!stat.ok()) return t;
  size_t close = stat->rfind(')');
  char state = '?';
  int ppid = 0, pgrp = 0, session = 0;
  if (close == std::string::npos ||
      sscanf(stat->c_str() + close + 1, " %c %d %d %d", &state, &ppid, &pgrp, &session) != 4) {
    return t;
  }
  t.pgrp = pgrp;
  t.session = session;
  t.alive = state != 'Z' && state != 'X';
  absl::StatusOr<std::string> status = ReadFile(absl::StrCat("/proc/", pid, "/status"));
  size_t at = status.ok() ? status->find("\nThreads:") : std::string::npos;
  if (at != std::string::npos) t.threads = atoi(status->c_str() + at + 9);
  return t;
}

std::string Describe(const TaskShape& t) {
  return absl::StrCat(t.pid, " (", t.alive ? "alive" : "dead", ", group ", t.pgrp, ", session ",
                      t.session, ", ", t.threads, " threads)");
}

bool IsFailure(Outcome o) {
  return o != Outcome::kRefused && o != Outcome::kRestoredPassed && o != Outcome::kRestoredRan;
}

const char* OutcomeName(Outcome o) {
  switch (o) {
    case Outcome::kRefused:
      return "refused";
    case Outcome::kRestoredPassed:
      return "restored, passed";
    case Outcome::kRestoredRan:
      return "restored, ran";
    case Outcome::kCrashed:
      return "CRASH";
    case Outcome::kHung:
      return "HANG";
    case Outcome::kStray:
      return "STRAY";
    case Outcome::kSilentWrong:
      return "SILENT-WRONG";
  }
  return "?";
}

TrialResult RunRestoreTrial(int image_fd, const TrialSetup& setup) {
  TrialResult result;
  const std::set<std::string> files_before = Listing(setup.watch_dir);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    return {Outcome::kCrashed, absl::StrCat("pipe2: ", strerror(errno))};
  }
  fflush(nullptr);
  pid_t runner = fork();
  if (runner < 0) return {Outcome::kCrashed, absl::StrCat("fork: ", strerror(errno))};
  if (runner == 0) {
    close(fds[0]);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    Report rep = Restore(image_fd, setup);
    int fl = fcntl(fds[1], F_GETFL);
    fcntl(fds[1], F_SETFL, fl & ~O_NONBLOCK);
    WriteReport(fds[1], rep);
    _exit(0);
  }
  close(fds[1]);
  UniqueFd report(fds[0]);
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, runner, 0)));
  const int limit_ms = setup.restore_timeout_ms * 2 + setup.verdict_timeout_ms + 10000;
  struct pollfd p = {pidfd.get(), POLLIN, 0};
  int ready = pidfd.valid() ? poll(&p, 1, limit_ms) : 1;
  bool hung = ready == 0;
  if (hung) kill(runner, SIGKILL);
  int status = 0;
  while (waitpid(runner, &status, 0) < 0 && errno == EINTR) {
  }
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = read(report.get(), buf, sizeof(buf));
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  if (hung) {
    result = {Outcome::kHung, absl::StrCat("no result in ", limit_ms, " ms")};
  } else if (WIFSIGNALED(status) || WEXITSTATUS(status) != 0 || text.empty()) {
    result = {Outcome::kCrashed,
              WIFSIGNALED(status) ? absl::StrCat("the restoring process died of signal ",
                                                 WTERMSIG(status), " (", strsignal(WTERMSIG(status)), ")")
                                  : absl::StrCat("the restoring process exited ",
                                                 WEXITSTATUS(status), " without a result")};
  } else {
    result = {static_cast<Outcome>(text[0]), text.substr(1)};
  }
  // Whatever of the trial is left now is stray: it was reparented here
  // (this process is a subreaper and has no other children). End it by
  // PID.
  std::vector<std::string> strays;
  const int64_t deadline = NowMs() + 5000;
  for (;;) {
    std::vector<pid_t> left = Descendants(getpid());
    if (left.empty()) break;
    if (NowMs() > deadline) {
      strays.push_back(absl::StrCat("still there after 5 s: ", left.front()));
      break;
    }
    for (pid_t pid : left) {
      std::string d = Describe(pid);
      if (std::find(strays.begin(), strays.end(), d) == strays.end() && strays.size() < 8) {
        strays.push_back(d);
      }
      kill(pid, SIGKILL);
    }
    int st;
    while (waitpid(-1, &st, WNOHANG | __WALL) > 0) {
    }
    usleep(1000);
  }
  if (!strays.empty()) {
    std::string what = absl::StrCat("processes left behind: ", absl::StrJoin(strays, "; "));
    if (IsFailure(result.outcome)) {
      absl::StrAppend(&result.detail, "; and ", what);
    } else {
      result = {Outcome::kStray, absl::StrCat(what, " (after: ", result.detail, ")")};
    }
  }
  std::set<std::string> files_after = Listing(setup.watch_dir);
  std::vector<std::string> added;
  for (const std::string& f : files_after) {
    if (!files_before.count(f)) {
      added.push_back(f);
      unlink(absl::StrCat(setup.watch_dir, "/", f).c_str());
    }
  }
  if (!added.empty()) {
    std::string what = absl::StrCat("files left in ", setup.watch_dir, ": ", absl::StrJoin(added, ", "));
    if (IsFailure(result.outcome)) {
      absl::StrAppend(&result.detail, "; and ", what);
    } else {
      result = {Outcome::kStray, absl::StrCat(what, " (after: ", result.detail, ")")};
    }
  }
  return result;
}

}  // namespace ckpt::testing
