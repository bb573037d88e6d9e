#include "lib/fs/netlock.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <pthread.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"

extern char** environ;

namespace ckpt::fs {
namespace {

const char* NftPath() {
  for (const char* p : {"/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return nullptr;
}

// Runs `nft -f -` on `script`; its first line of complaint as the error.
absl::Status RunNft(const std::string& script) {
  const char* nft = NftPath();
  if (nft == nullptr) {
    return absl::FailedPreconditionError(
        "the network lock for TCP connections needs nft (Debian package nftables), which is not installed");
  }
  int in[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe");
  UniqueFd in_r(in[0]), in_w(in[1]);
  if (pipe2(err, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe");
  UniqueFd err_r(err[0]), err_w(err[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in_r.get(), 0);
  posix_spawn_file_actions_adddup2(&fa, err_w.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, err_w.get(), 2);
  char* const argv[] = {const_cast<char*>("nft"), const_cast<char*>("-f"), const_cast<char*>("-"), nullptr};
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, nft, &fa, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return ErrnoError(rc, "spawning ", nft);
  in_r.reset();
  err_w.reset();
  // A script is far below a pipe's capacity, but nft may end before it
  // reads it: SIGPIPE is held back meanwhile (and taken if it came).
  sigset_t pipe_set, old_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
  size_t off = 0;
  while (off < script.size()) {
    ssize_t n = write(in_w.get(), script.data() + off, script.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  in_w.reset();
  if (!sigismember(&old_set, SIGPIPE)) {
    struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_set, nullptr, &zero) == SIGPIPE) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(err_r.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (out.size() < 65536) out.append(buf, static_cast<size_t>(n));
  }
  int status = 0;
  pid_t got;
  while ((got = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
  }
  if (got != pid) {
    // Reaped by someone else (a caller that ignores SIGCHLD): how it
    // ended is not known, so it did not work.
    return ErrnoError(errno, "waiting for nft");
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipWhitespace());
  return absl::UnavailableError(absl::StrCat("nft failed (", WIFEXITED(status) ? WEXITSTATUS(status) : -1, ")",
                                             lines.empty() ? "" : ": ", lines.empty() ? "" : lines[0]));
}

std::string Addr(int family, const uint8_t* a) {
  char text[INET6_ADDRSTRLEN] = "";
  inet_ntop(family, a, text, sizeof(text));
  return text;
}

}  // namespace

NetLock::NetLock() {
  id_ = 0;
  while (id_ == 0) {
    if (getrandom(&id_, sizeof(id_), 0) != sizeof(id_)) id_ = static_cast<uint64_t>(getpid()) << 32 | 1;
  }
}

NetLock::~NetLock() {
  if (!keep_) Lift().IgnoreError();
}

std::string NetLock::TableName(uint64_t id) {
  return absl::StrCat("inet ckpt_lock_", absl::Hex(id, absl::kZeroPad16));
}

std::string NetLock::Prologue() const {
  if (made_) return "";
  const std::string table = TableName(id_);
  // Before conntrack (-300), so that nothing of the connection moves.
  return absl::StrCat("add table ", table, "\n",
                      "add chain ", table, " in { type filter hook input priority -300; policy accept; }\n",
                      "add chain ", table, " out { type filter hook output priority -300; policy accept; }\n");
}

absl::Status NetLock::AddListener(int family, const uint8_t* addr, uint16_t port) {
  std::string script = Prologue();
  std::string match;
  if (addr != nullptr) {
    match = absl::StrCat(family == AF_INET6 ? "ip6" : "ip", " daddr ", Addr(family, addr), " ");
  }
  absl::StrAppend(&script, "add rule ", TableName(id_), " in ", match, "tcp dport ", port,
                  " tcp flags & (syn | ack) == syn drop\n");
  // Made, as far as lifting it goes, even if nft's answer is lost (lifting
  // a table that is not there does no harm).
  made_ = true;
  return Annotate(RunNft(script), "network lock");
}

absl::Status NetLock::Add(const std::vector<LockedConn>& conns) {
  if (conns.empty()) return absl::OkStatus();
  const std::string table = TableName(id_);
  std::string script = Prologue();
  for (const LockedConn& c : conns) {
    const char* ip = c.family == AF_INET6 ? "ip6" : "ip";
    const std::string src = Addr(c.family, c.src), dst = Addr(c.family, c.dst);
    for (const char* chain : {"in", "out"}) {
      absl::StrAppend(&script, "add rule ", table, " ", chain, " ", ip, " saddr ", src, " ", ip, " daddr ", dst,
                      " tcp sport ", c.sport, " tcp dport ", c.dport, " drop\n");
      absl::StrAppend(&script, "add rule ", table, " ", chain, " ", ip, " saddr ", dst, " ", ip, " daddr ", src,
                      " tcp sport ", c.dport, " tcp dport ", c.sport, " drop\n");
    }
  }
  // Made, as far as lifting it goes, even if nft's answer is lost (lifting
  // a table that is not there does no harm).
  made_ = true;
  return Annotate(RunNft(script), "network lock");
}

absl::Status NetLock::Lift() {
  if (!made_) return absl::OkStatus();
  made_ = false;
  return LiftById(id_);
}

absl::Status NetLock::LiftById(uint64_t id) {
  // Without nft here no lock was made here (a dump needs it): an image
  // restored on another host.
  if (NftPath() == nullptr) return absl::OkStatus();
  // "destroy" would ignore a table that is gone, but Debian 12's nft (1.0.6)
  // lacks it: add it (a no-op if it is there), then delete it.
  const std::string table = TableName(id);
  return Annotate(RunNft(absl::StrCat("add table ", table, "\ndelete table ", table, "\n")),
                  "lifting the network lock");
}

}  // namespace ckpt::fs
