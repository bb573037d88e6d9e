// ckpt: the command-line face of libckpt. Parses flags, calls the library,
// prints. Errors are one line on stderr and a non-zero exit status.
//
//   ckpt dump    --pid PID --image PATH|-  [--leave-running] [--shell-job] [--container]
//                                          [--external NAME]...
//   ckpt restore --image PATH|-            [--detach] [--pidfile PATH] [--new-pidns] [--shell-job]
//                                          [--ipc-ns new|current] [--inherit-fd FD:NAME]...
//                                          [--allow-changed-files] [--lazy]
//   ckpt show    --image PATH|-            [--json]
//   ckpt check   [--pid PID [--shell-job] [--container] [--external NAME]...]

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "ckpt/ckpt.hpp"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "tools/ckpt/flags.h"
#include "tools/ckpt/show.h"

namespace ckpt::cli {
namespace {

constexpr char kUsage[] =
    "usage:\n"
    "  ckpt dump    --pid PID --image PATH|-  [--leave-running] [--shell-job] [--container]\n"
    "                                         [--external NAME]...\n"
    "  ckpt restore --image PATH|-            [--detach] [--pidfile PATH] [--new-pidns] [--shell-job]\n"
    "                                         [--ipc-ns new|current] [--inherit-fd FD:NAME]...\n"
    "                                         [--allow-changed-files] [--lazy]\n"
    "  ckpt show    --image PATH|-            [--json]\n"
    "  ckpt check   [--pid PID [--shell-job] [--container] [--external NAME]...]\n";

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

int Fail(const std::string& command, const absl::Status& status) {
  std::string msg(status.message());
  for (char& c : msg) {
    if (c == '\n') c = ' ';
  }
  std::fprintf(stderr, "ckpt %s: %s\n", command.c_str(), msg.c_str());
  return kExitFailure;
}

volatile sig_atomic_t g_cancel_signal = 0;

void OnCancelSignal(int sig) { g_cancel_signal = sig; }

void CatchCancelSignals() {
  struct sigaction sa = {};
  sa.sa_handler = OnCancelSignal;  // no SA_RESTART: a blocked write returns EINTR
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

int Usage(const std::string& command, const absl::Status& status) {
  std::fprintf(stderr, "ckpt %s: %s\n%s", command.c_str(), std::string(status.message()).c_str(),
               kUsage);
  return kExitUsage;
}

absl::StatusOr<UniqueFd> OpenImageInput(const std::string& path) {
  if (path == "-") return UniqueFd(dup(STDIN_FILENO));
  return OpenFile(path, O_RDONLY);
}

int Dump(const std::vector<std::string>& args) {
  absl::StatusOr<Flags> flags =
      ParseFlags(args, {{"pid", "image", "external"},
                        {"leave-running", "shell-job", "container"},
                        {"pid", "image"},
                        {"external"}});
  if (!flags.ok()) return Usage("dump", flags.status());
  int pid = 0;
  if (!absl::SimpleAtoi(flags->Get("pid"), &pid) || pid <= 0) {
    return Usage("dump", absl::InvalidArgumentError(
                             absl::StrCat("--pid '", flags->Get("pid"), "' is not a PID")));
  }
  const std::string& image = flags->Get("image");
  std::unique_ptr<ImageOutput> out;
  if (image == "-") {
    out = NewFdImageOutput(STDOUT_FILENO);
  } else {
    absl::StatusOr<std::unique_ptr<ImageOutput>> file = NewFileImageOutput(image);
    if (!file.ok()) return Fail("dump", file.status());
    out = *std::move(file);
  }
  DumpOptions options;
  options.leave_running = flags->Has("leave-running");
  options.shell_job = flags->Has("shell-job");
  options.container = flags->Has("container");
  options.external = flags->All("external");
  options.cancel = &g_cancel_signal;
  // SIGINT, SIGTERM and SIGHUP cancel the dump (the tree is resumed); a
  // reader that goes away is an EPIPE error, not a SIGPIPE death.
  CatchCancelSignals();
  Checkpointer dumper(options);
  absl::Status st = dumper.Dump(pid, *out);
  if (st.ok()) return 0;
  if (g_cancel_signal != 0) {
    return Fail("dump", absl::CancelledError(absl::StrCat(
                            "interrupted by ", sigabbrev_np(g_cancel_signal) ? "SIG" : "",
                            sigabbrev_np(g_cancel_signal) ? sigabbrev_np(g_cancel_signal) : "a signal",
                            ": ", st.message())));
  }
  return Fail("dump", st);
}

int Restore(const std::vector<std::string>& args) {
  absl::StatusOr<Flags> flags =
      ParseFlags(args, {{"image", "pidfile", "ipc-ns", "inherit-fd"},
                        {"detach", "new-pidns", "shell-job", "allow-changed-files", "lazy"},
                        {"image"},
                        {"inherit-fd"}});
  if (!flags.ok()) return Usage("restore", flags.status());
  RestoreOptions options;
  for (const std::string& spec : flags->All("inherit-fd")) {
    // FD:NAME, NAME as the dump named the external object (pipe:[12345],
    // unix:[12345], tty:[136:3]).
    size_t colon = spec.find(':');
    InheritFd in;
    if (colon == std::string::npos || !absl::SimpleAtoi(spec.substr(0, colon), &in.fd) ||
        in.fd < 0 || colon + 1 == spec.size()) {
      return Usage("restore", absl::InvalidArgumentError(absl::StrCat(
                                  "--inherit-fd '", spec, "' is not FD:NAME (e.g. 3:pipe:[12345])")));
    }
    in.name = spec.substr(colon + 1);
    options.inherit_fds.push_back(std::move(in));
  }
  options.allow_changed_files = flags->Has("allow-changed-files");
  if (flags->values.count("ipc-ns")) {
    const std::string& ns = flags->Get("ipc-ns");
    if (ns == "new") {
      options.ipc_ns = IpcNamespace::kNew;
    } else if (ns == "current") {
      options.ipc_ns = IpcNamespace::kCurrent;
    } else {
      return Usage("restore", absl::InvalidArgumentError(
                                  absl::StrCat("--ipc-ns '", ns, "' is neither 'new' nor 'current'")));
    }
  }
  absl::StatusOr<UniqueFd> in = OpenImageInput(flags->Get("image"));
  if (!in.ok()) return Fail("restore", in.status());
  options.shell_job = flags->Has("shell-job");
  options.new_pidns = flags->Has("new-pidns");
  options.lazy = flags->Has("lazy");
  // Written under a temporary name and renamed: whoever waits for the
  // pidfile never reads it half-written. A lazy restore writes it as soon
  // as the tree runs.
  absl::Status pidfile_st;
  bool pidfile_written = false;
  auto write_pidfile = [&](pid_t root) {
    if (!flags->values.count("pidfile") || pidfile_written) return;
    pidfile_written = true;
    const std::string& path = flags->Get("pidfile");
    const std::string tmp = absl::StrCat(path, ".tmp.", getpid());
    std::string text = absl::StrCat(root, "\n");
    absl::StatusOr<UniqueFd> pidfile = OpenFile(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    absl::Status st = pidfile.ok() ? WriteAll(pidfile->get(), text.data(), text.size())
                                   : pidfile.status();
    if (st.ok() && rename(tmp.c_str(), path.c_str()) != 0) {
      st = ErrnoError(errno, "rename ", tmp, " to ", path);
    }
    if (!st.ok()) unlink(tmp.c_str());
    pidfile_st = st;
  };
  if (options.lazy) options.on_running = write_pidfile;
  Restorer restorer(options);
  absl::StatusOr<pid_t> root = restorer.Restore(in->get());
  if (!root.ok()) {
    if (pidfile_written) unlink(flags->Get("pidfile").c_str());
    return Fail("restore", root.status());
  }
  write_pidfile(*root);
  if (!pidfile_st.ok()) return Fail("restore", pidfile_st);
  if (flags->Has("detach")) return 0;
  // Wait for the restored root and exit as it did.
  int status = 0;
  while (waitpid(*root, &status, 0) < 0) {
    if (errno != EINTR) return Fail("restore", ErrnoError(errno, "waitpid ", *root));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return kExitFailure;
}

int Show(const std::vector<std::string>& args) {
  absl::StatusOr<Flags> flags = ParseFlags(args, {{"image"}, {"json"}, {"image"}});
  if (!flags.ok()) return Usage("show", flags.status());
  absl::StatusOr<UniqueFd> in = OpenImageInput(flags->Get("image"));
  if (!in.ok()) return Fail("show", in.status());
  absl::Status st = ShowImage(in->get(), flags->Has("json"), stdout);
  return st.ok() ? 0 : Fail("show", st);
}

// `ckpt check --pid PID`: the dump's pre-flight, on a live tree, nothing
// frozen. One line per problem, then a summary; exit 0 when it would dump.
int CheckTree(const Flags& flags) {
  int pid = 0;
  if (!absl::SimpleAtoi(flags.Get("pid"), &pid) || pid <= 0) {
    return Usage("check", absl::InvalidArgumentError(
                              absl::StrCat("--pid '", flags.Get("pid"), "' is not a PID")));
  }
  DumpOptions options;
  options.shell_job = flags.Has("shell-job");
  options.container = flags.Has("container");
  options.external = flags.All("external");
  absl::StatusOr<TreeReport> report = Checkpointer(options).Check(pid);
  if (!report.ok()) return Fail("check", report.status());
  for (const absl::Status& p : report->problems) {
    std::printf("cannot dump: %s\n", std::string(p.message()).c_str());
  }
  if (report->problems.empty()) {
    std::printf("ckpt check: the tree of task %d would dump: %llu tasks, %llu threads\n", pid,
                static_cast<unsigned long long>(report->tasks),
                static_cast<unsigned long long>(report->threads));
    return 0;
  }
  std::fprintf(stderr, "ckpt check: the tree of task %d cannot be dumped: %zu problems\n", pid,
               report->problems.size());
  return kExitFailure;
}

int Check(const std::vector<std::string>& args) {
  absl::StatusOr<Flags> flags =
      ParseFlags(args, {{"pid", "external"}, {"shell-job", "container"}, {}, {"external"}});
  if (!flags.ok()) return Usage("check", flags.status());
  if (flags->values.count("pid")) return CheckTree(*flags);
  bool ok = true;
  for (const KernelFeature& f : ProbeKernelFeatures()) {
    std::printf("%-8s %-42s %s%s\n", f.present ? "present" : "missing", f.name.c_str(),
                f.required ? "[required] " : "[optional] ", f.detail.c_str());
    if (f.required && !f.present) ok = false;
  }
  if (!ok) {
    std::fprintf(stderr, "ckpt check: a required kernel interface is missing\n");
    return kExitFailure;
  }
  return 0;
}

}  // namespace
}  // namespace ckpt::cli

int main(int argc, char** argv) {
  using namespace ckpt::cli;
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "help") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? kExitUsage : 0;
  }
  std::string command = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "dump") return Dump(args);
  if (command == "restore") return Restore(args);
  if (command == "show") return Show(args);
  if (command == "check") return Check(args);
  std::fprintf(stderr, "ckpt: unknown command '%s'\n%s", command.c_str(), kUsage);
  return kExitUsage;
}
