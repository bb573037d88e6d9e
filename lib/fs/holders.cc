#include "lib/fs/holders.h"

#include <dirent.h>
#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "lib/base/fd.h"

namespace ckpt::fs {

std::map<uint64_t, std::vector<std::pair<pid_t, int>>> FdHolders(const std::string& kind,
                                                                 const std::set<uint64_t>& inos,
                                                                 const std::set<pid_t>& skip) {
  std::map<uint64_t, std::vector<std::pair<pid_t, int>>> holders;
  if (inos.empty()) return holders;
  const std::string prefix = kind + ":[";
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return holders;
  while (struct dirent* e = readdir(proc)) {
    pid_t pid;
    if (!absl::SimpleAtoi(e->d_name, &pid) || skip.count(pid)) continue;
    std::string dir_path = absl::StrCat("/proc/", pid, "/fd");
    DIR* dir = opendir(dir_path.c_str());
    if (dir == nullptr) continue;  // gone, or a kernel thread
    while (struct dirent* f = readdir(dir)) {
      int fd;
      if (!absl::SimpleAtoi(f->d_name, &fd)) continue;
      char buf[64];
      ssize_t n = readlinkat(dirfd(dir), f->d_name, buf, sizeof(buf));
      if (n <= 0) continue;
      absl::string_view link(buf, static_cast<size_t>(n));
      uint64_t ino;
      if (absl::ConsumePrefix(&link, prefix) && absl::ConsumeSuffix(&link, "]") &&
          absl::SimpleAtoi(link, &ino) && inos.count(ino)) {
        holders[ino].push_back({pid, fd});
      }
    }
    closedir(dir);
  }
  closedir(proc);
  return holders;
}

std::string ProcComm(pid_t pid) {
  absl::StatusOr<std::string> comm = ReadFile(absl::StrCat("/proc/", pid, "/comm"));
  return comm.ok() ? std::string(absl::StripTrailingAsciiWhitespace(*comm)) : "?";
}

}  // namespace ckpt::fs
