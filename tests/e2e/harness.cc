#include "tests/e2e/harness.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "lib/base/clock.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"

namespace ckpt::testing {
namespace {

long NowMs() { return static_cast<long>(MonotonicNs() / 1000000); }

int counter = 0;

}  // namespace

std::string TempPath(const std::string& name) {
  const char* dir = getenv("TEST_TMPDIR");
  return absl::StrCat(dir ? dir : "/tmp", "/", name);
}

std::string ProgramPath(const std::string& name) {
  const char* srcdir = getenv("TEST_SRCDIR");
  const char* ws = getenv("TEST_WORKSPACE");
  if (srcdir && ws) return absl::StrCat(srcdir, "/", ws, "/tests/e2e/programs/", name);
  return absl::StrCat("tests/e2e/programs/", name);
}

absl::StatusOr<Subject> StartSubject(const std::string& name,
                                     const std::vector<std::string>& args) {
  return StartProgram(ProgramPath(name), args);
}

absl::StatusOr<Subject> StartProgram(const std::string& path,
                                     const std::vector<std::string>& args, bool new_session) {
  Subject s;
  std::string name = path.substr(path.rfind('/') + 1);
  s.output = TempPath(absl::StrCat(name, ".", getpid(), ".", counter++, ".out"));
  std::vector<std::string> argv_s = {path};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  int out = open(s.output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  if (out < 0) return ErrnoError(errno, "open ", s.output);
  pid_t pid = fork();
  if (pid < 0) return ErrnoError(errno, "fork");
  if (pid == 0) {
    int null = open("/dev/null", O_RDONLY);
    dup2(null, 0);
    dup2(out, 1);
    dup2(out, 2);
    syscall(SYS_close_range, 3, ~0u, 0);
    if (new_session) setsid();
    execv(path.c_str(), argv.data());
    _exit(127);
  }
  close(out);
  s.pid = pid;
  return s;
}

std::string ReadOutput(const Subject& s) {
  std::ifstream in(s.output);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status WaitForOutput(const Subject& s, const std::string& text, int timeout_ms) {
  long deadline = NowMs() + timeout_ms;
  while (NowMs() < deadline) {
    if (ReadOutput(s).find(text) != std::string::npos) return absl::OkStatus();
    usleep(2000);
  }
  return absl::DeadlineExceededError(absl::StrCat("no '", text, "' from the subject; output:\n",
                                                  ReadOutput(s)));
}

absl::Status WaitForCount(const Subject& s, const std::string& text, int count,
                          int timeout_ms) {
  long deadline = NowMs() + timeout_ms;
  while (NowMs() < deadline) {
    std::string out = ReadOutput(s);
    int n = 0;
    for (size_t at = out.find(text); at != std::string::npos; at = out.find(text, at + 1)) ++n;
    if (n >= count) return absl::OkStatus();
    usleep(2000);
  }
  return absl::DeadlineExceededError(absl::StrCat("fewer than ", count, " '", text,
                                                  "' from the subject; output:\n", ReadOutput(s)));
}

std::vector<pid_t> ReadyPids(const Subject& s) {
  std::vector<pid_t> pids;
  std::string out = ReadOutput(s);
  for (size_t at = out.find("READY "); at != std::string::npos; at = out.find("READY ", at + 1)) {
    pids.push_back(static_cast<pid_t>(strtol(out.c_str() + at + 6, nullptr, 10)));
  }
  return pids;
}

std::vector<pid_t> LinePids(const Subject& s, const std::string& tag) {
  std::vector<pid_t> pids;
  std::string out = ReadOutput(s);
  size_t at = out.find(tag + " ");
  if (at == std::string::npos) return pids;
  std::istringstream in(out.substr(at + tag.size(), out.find('\n', at) - at - tag.size()));
  pid_t pid;
  while (in >> pid) pids.push_back(pid);
  return pids;
}

void KillAndReapAll(const std::vector<pid_t>& pids) {
  for (pid_t pid : pids) kill(pid, SIGKILL);
  for (pid_t pid : pids) {
    int status;
    for (int i = 0; i < 5000; ++i) {
      pid_t r = waitpid(pid, &status, WNOHANG);
      if (r == pid || (r < 0 && errno == ECHILD && kill(pid, 0) != 0)) break;
      usleep(1000);
    }
  }
}

absl::Status DumpToFile(pid_t pid, const std::string& path, const DumpOptions& options,
                        DumpStats* stats) {
  ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_WRONLY | O_CREAT | O_TRUNC, 0600));
  Checkpointer dumper(options);
  absl::Status st = dumper.Dump(pid, fd.get());
  if (stats) *stats = dumper.stats();
  return st;
}

absl::StatusOr<pid_t> RestoreFromFile(const std::string& path, RestoreStats* stats) {
  return RestoreFromFile(path, RestoreOptions{}, stats);
}

absl::StatusOr<pid_t> RestoreFromFile(const std::string& path, const RestoreOptions& options,
                                      RestoreStats* stats) {
  ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY | O_CLOEXEC));
  Restorer restorer(options);
  absl::StatusOr<pid_t> pid = restorer.Restore(fd.get());
  if (stats) *stats = restorer.stats();
  return pid;
}

void KillAndReap(pid_t pid) {
  kill(pid, SIGKILL);
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

absl::StatusOr<int> WaitExit(pid_t pid, int timeout_ms) {
  long deadline = NowMs() + timeout_ms;
  for (;;) {
    int status;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      continue;
    }
    if (r < 0) return ErrnoError(errno, "waitpid ", pid);
    if (NowMs() > deadline) {
      KillAndReap(pid);
      return absl::DeadlineExceededError(absl::StrCat("task ", pid, " did not exit in time"));
    }
    usleep(2000);
  }
}

char TaskState(pid_t pid) {
  absl::StatusOr<std::string> stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!stat.ok()) return '?';
  size_t close = stat->rfind(')');
  return close == std::string::npos || close + 2 >= stat->size() ? '?' : (*stat)[close + 2];
}

long BlockedSyscall(pid_t pid) {
  absl::StatusOr<std::string> text = ReadFile(absl::StrCat("/proc/", pid, "/syscall"));
  if (!text.ok()) return -2;
  if (text->rfind("running", 0) == 0) return -1;
  return strtol(text->c_str(), nullptr, 10);
}

std::string CkptPath() {
  return absl::StrCat(getenv("TEST_SRCDIR"), "/", getenv("TEST_WORKSPACE"), "/tools/ckpt/ckpt");
}

pid_t Spawn(const std::vector<std::string>& args, int in, int out, int err) {
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (std::string& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_RDWR);
    dup2(in >= 0 ? in : null, 0);
    dup2(out >= 0 ? out : null, 1);
    dup2(err >= 0 ? err : null, 2);
    syscall(SYS_close_range, 3, ~0u, 0);
    for (int sig = 1; sig < NSIG; ++sig) signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

std::string ReadToEof(int fd) {
  std::string out;
  char buf[4096];
  for (ssize_t r; (r = read(fd, buf, sizeof(buf))) > 0 || (r < 0 && errno == EINTR);) {
    if (r > 0) out.append(buf, static_cast<size_t>(r));
  }
  return out;
}

}  // namespace ckpt::testing
