#include "lib/mm/maps.h"

#include <sys/mman.h>

#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"

namespace ckpt::mm {
namespace {

// "start-end perms offset major:minor inode   name"
absl::StatusOr<Vma> ParseMapsLine(absl::string_view line) {
  Vma v;
  auto bad = [&](const char* what) {
    return absl::InvalidArgumentError(absl::StrCat("maps line '", line, "': bad ", what));
  };
  size_t at = 0;
  auto next_token = [&]() -> absl::string_view {
    while (at < line.size() && line[at] == ' ') ++at;
    size_t begin = at;
    while (at < line.size() && line[at] != ' ') ++at;
    return line.substr(begin, at - begin);
  };
  absl::string_view range = next_token();
  absl::string_view perms = next_token();
  absl::string_view offset = next_token();
  absl::string_view dev = next_token();
  absl::string_view inode = next_token();
  size_t dash = range.find('-');
  if (dash == absl::string_view::npos || !absl::SimpleHexAtoi(range.substr(0, dash), &v.start) ||
      !absl::SimpleHexAtoi(range.substr(dash + 1), &v.end) || v.end <= v.start) {
    return bad("range");
  }
  if (perms.size() != 4) return bad("permissions");
  if (perms[0] == 'r') v.prot |= PROT_READ;
  if (perms[1] == 'w') v.prot |= PROT_WRITE;
  if (perms[2] == 'x') v.prot |= PROT_EXEC;
  v.shared = perms[3] == 's';
  if (!absl::SimpleHexAtoi(offset, &v.offset)) return bad("offset");
  size_t colon = dev.find(':');
  if (colon == absl::string_view::npos ||
      !absl::SimpleHexAtoi(dev.substr(0, colon), &v.dev_major) ||
      !absl::SimpleHexAtoi(dev.substr(colon + 1), &v.dev_minor)) {
    return bad("device");
  }
  if (!absl::SimpleAtoi(inode, &v.ino)) return bad("inode");
  while (at < line.size() && line[at] == ' ') ++at;
  absl::string_view name = line.substr(at);
  if (absl::ConsumeSuffix(&name, " (deleted)")) v.deleted = true;
  v.name = std::string(name);
  return v;
}

bool IsMapsLine(absl::string_view line) {
  // smaps field lines are "Name:   value"; maps lines begin with a hex range.
  size_t dash = line.find('-');
  return dash != absl::string_view::npos && dash > 0 && absl::ascii_isxdigit(line[0]) &&
         line.find(':') > dash;
}

uint64_t ParseVmFlags(absl::string_view value) {
  uint64_t flags = 0;
  for (absl::string_view f : absl::StrSplit(value, ' ', absl::SkipEmpty())) {
    if (f == "gd") flags |= kVmGrowsDown;
    else if (f == "hg") flags |= kVmHugepage;
    else if (f == "nh") flags |= kVmNoHugepage;
    else if (f == "dd") flags |= kVmDontDump;
    else if (f == "dc") flags |= kVmDontCopy;
    else if (f == "wf") flags |= kVmWipeOnFork;
    else if (f == "mg") flags |= kVmMergeable;
    else if (f == "lo") flags |= kVmLocked;
    else if (f == "sr") flags |= kVmSeqRead;
    else if (f == "rr") flags |= kVmRandRead;
    else if (f == "io") flags |= kVmIo;
    else if (f == "pf") flags |= kVmPfnMap;
    else if (f == "um" || f == "uw") flags |= kVmUffd;
    else if (f == "ss") flags |= kVmShadowStack;
    else if (f == "sl") flags |= kVmSealed;
    else if (f == "mw") flags |= kVmMayWrite;
    else if (f == "ht") flags |= kVmHugetlb;
    else if (f == "nr") flags |= kVmNoReserve;
    else if (f == "lf") flags |= kVmLockOnFault;
    else if (f == "dp") flags |= kVmDroppable;
  }
  return flags;
}

}  // namespace

absl::StatusOr<std::vector<Vma>> ParseMaps(absl::string_view text) {
  std::vector<Vma> vmas;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    ASSIGN_OR_RETURN(Vma v, ParseMapsLine(line));
    vmas.push_back(std::move(v));
  }
  return vmas;
}

absl::StatusOr<std::vector<Vma>> ParseSmaps(absl::string_view text) {
  std::vector<Vma> vmas;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (IsMapsLine(line)) {
      ASSIGN_OR_RETURN(Vma v, ParseMapsLine(line));
      vmas.push_back(std::move(v));
    } else if (absl::ConsumePrefix(&line, "VmFlags:")) {
      if (vmas.empty()) return absl::InvalidArgumentError("smaps: VmFlags before any mapping");
      vmas.back().vm_flags = ParseVmFlags(line);
      vmas.back().has_vm_flags = true;
    }
  }
  for (const Vma& v : vmas) {
    if (!v.has_vm_flags) {
      return absl::InvalidArgumentError(
          absl::StrCat("smaps: no VmFlags for ", absl::Hex(v.start), "-", absl::Hex(v.end)));
    }
  }
  return vmas;
}

absl::StatusOr<std::vector<Vma>> ReadVmas(pid_t pid) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(absl::StrCat("/proc/", pid, "/smaps")));
  absl::StatusOr<std::vector<Vma>> vmas = ParseSmaps(text);
  if (!vmas.ok()) return Annotate(vmas.status(), absl::StrCat("task ", pid));
  return vmas;
}

VmaPrefetch::VmaPrefetch(std::vector<pid_t> pids) : pids_(std::move(pids)) {
  if (pids_.empty()) return;
  try {
    worker_ = std::thread([this] { Work(); });
  } catch (const std::system_error&) {
    // No thread to be had (pids.max, RLIMIT_NPROC): Take reads them itself.
  }
}

VmaPrefetch::~VmaPrefetch() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void VmaPrefetch::Work() {
  for (size_t i = 0; i < pids_.size(); ++i) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || i < next_take_ + kAhead; });
      if (stop_) return;
      if (i < next_take_) {  // dropped before it was read
        done_ = i + 1;
        continue;
      }
    }
    absl::StatusOr<std::vector<Vma>> vmas = ReadVmas(pids_[i]);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (i >= next_take_) ready_.emplace(i, std::move(vmas));
      done_ = i + 1;
    }
    cv_.notify_all();
  }
}

absl::StatusOr<std::vector<Vma>> VmaPrefetch::Take(pid_t pid) {
  size_t i = next_take_;
  while (i < pids_.size() && pids_[i] != pid) ++i;
  if (i == pids_.size() || !worker_.joinable()) return ReadVmas(pid);
  std::unique_lock<std::mutex> lock(mu_);
  // Those before it will not be asked for.
  ready_.erase(ready_.begin(), ready_.lower_bound(i));
  next_take_ = i;
  cv_.notify_all();
  cv_.wait(lock, [&] { return done_ > i || stop_; });
  next_take_ = i + 1;
  cv_.notify_all();
  auto it = ready_.find(i);
  if (it == ready_.end()) {
    lock.unlock();
    return ReadVmas(pid);
  }
  auto node = ready_.extract(it);
  return std::move(node.mapped());
}

}  // namespace ckpt::mm
