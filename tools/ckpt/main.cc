// ckpt: the command-line face of libckpt. Parses flags, calls the library,
// prints. Errors are one line on stderr and a non-zero exit status.
//
//   ckpt dump    --pid PID --image PATH|-  [--leave-running] [--shell-job] [--container]
//   ckpt restore --image PATH|-            [--detach] [--pidfile PATH] [--new-pidns] [--shell-job]
//                                          [--ipc-ns new|current]
//   ckpt show    --image PATH|-            [--json]
//   ckpt check

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
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
    "  ckpt restore --image PATH|-            [--detach] [--pidfile PATH] [--new-pidns] [--shell-job]\n"
    "                                         [--ipc-ns new|current]\n"
    "  ckpt show    --image PATH|-            [--json]\n"
    "  ckpt check\n";

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

int Usage(const std::string& command, const absl::Status& status) {
  std::fprintf(stderr, "ckpt %s: %s\n%s", command.c_str(), std::string(status.message()).c_str(),
               kUsage);
  return kExitUsage;
}

// An image given as a path is written next to its final name and renamed
// into place once complete, so a failed dump never leaves a half image
// where a good one was. Paths that are not regular files (a FIFO, a
// device) are written in place.
class ImageOutput {
 public:
  absl::Status Open(const std::string& path) {
    if (path == "-") {
      fd_ = STDOUT_FILENO;
      return absl::OkStatus();
    }
    struct stat st;
    if (stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
      ASSIGN_OR_RETURN(owned_, OpenFile(path, O_WRONLY));
      fd_ = owned_.get();
      return absl::OkStatus();
    }
    final_ = path;
    temp_ = absl::StrCat(path, ".partial.", getpid());
    ASSIGN_OR_RETURN(owned_, OpenFile(temp_, O_WRONLY | O_CREAT | O_TRUNC | O_EXCL, 0600));
    fd_ = owned_.get();
    return absl::OkStatus();
  }
  int fd() const { return fd_; }
  absl::Status Commit() {
    if (temp_.empty()) return absl::OkStatus();
    if (fsync(fd_) != 0 && errno != EINVAL) return ErrnoError(errno, "fsync ", temp_);
    owned_.reset();
    if (rename(temp_.c_str(), final_.c_str()) != 0) {
      return ErrnoError(errno, "rename ", temp_, " to ", final_);
    }
    temp_.clear();
    return absl::OkStatus();
  }
  ~ImageOutput() {
    if (!temp_.empty()) unlink(temp_.c_str());
  }

 private:
  int fd_ = -1;
  UniqueFd owned_;
  std::string final_;
  std::string temp_;
};

absl::StatusOr<UniqueFd> OpenImageInput(const std::string& path) {
  if (path == "-") return UniqueFd(dup(STDIN_FILENO));
  return OpenFile(path, O_RDONLY);
}

int Dump(const std::vector<std::string>& args) {
  absl::StatusOr<Flags> flags =
      ParseFlags(args, {{"pid", "image"}, {"leave-running", "shell-job", "container"}, {"pid", "image"}});
  if (!flags.ok()) return Usage("dump", flags.status());
  int pid = 0;
  if (!absl::SimpleAtoi(flags->Get("pid"), &pid) || pid <= 0) {
    return Usage("dump", absl::InvalidArgumentError(
                             absl::StrCat("--pid '", flags->Get("pid"), "' is not a PID")));
  }
  ImageOutput out;
  absl::Status st = out.Open(flags->Get("image"));
  if (!st.ok()) return Fail("dump", st);
  DumpOptions options;
  options.leave_running = flags->Has("leave-running");
  options.shell_job = flags->Has("shell-job");
  options.container = flags->Has("container");
  Checkpointer dumper(options);
  st = dumper.Dump(pid, out.fd());
  if (st.ok()) st = out.Commit();
  return st.ok() ? 0 : Fail("dump", st);
}

int Restore(const std::vector<std::string>& args) {
  absl::StatusOr<Flags> flags =
      ParseFlags(args, {{"image", "pidfile", "ipc-ns"}, {"detach", "new-pidns", "shell-job"}, {"image"}});
  if (!flags.ok()) return Usage("restore", flags.status());
  RestoreOptions options;
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
  Restorer restorer(options);
  absl::StatusOr<pid_t> root = restorer.Restore(in->get());
  if (!root.ok()) return Fail("restore", root.status());
  if (flags->values.count("pidfile")) {
    // Written under a temporary name and renamed: whoever waits for the
    // pidfile never reads it half-written.
    const std::string& path = flags->Get("pidfile");
    const std::string tmp = absl::StrCat(path, ".tmp.", getpid());
    std::string text = absl::StrCat(*root, "\n");
    absl::StatusOr<UniqueFd> pidfile = OpenFile(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    absl::Status st = pidfile.ok() ? WriteAll(pidfile->get(), text.data(), text.size())
                                   : pidfile.status();
    if (st.ok() && rename(tmp.c_str(), path.c_str()) != 0) {
      st = ErrnoError(errno, "rename ", tmp, " to ", path);
    }
    if (!st.ok()) {
      unlink(tmp.c_str());
      return Fail("restore", st);
    }
  }
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

int Check(const std::vector<std::string>& args) {
  absl::StatusOr<Flags> flags = ParseFlags(args, {});
  if (!flags.ok()) return Usage("check", flags.status());
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
