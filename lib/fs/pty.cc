// PTY objects: pseudo-terminal pairs, one per pair however many
// descriptions the tree holds on its master (/dev/ptmx), its slave
// (/dev/pts/N) or on it as a controlling terminal (/dev/tty); and which
// session each pair is the controlling terminal of.
//
// A pair is one of three things (ResolvePtys, once every fd is known):
// - the tree's own, when a task of the tree holds its master: saved in
//   full (below) and made again with the same index;
// - the caller's terminal (--shell-job), when its master is outside the
//   tree: each description on it becomes one on the restorer's terminal;
// - external (--external tty:[136:N]), likewise outside: the restore is
//   given an fd on a terminal to use in its place (--inherit-fd).
// Anything else is refused, naming the task, the fd and the terminal.
//
// Dump of the tree's own pair, through a copy of the master (pidfd_getfd)
// and a description of our own on the slave: the index, termios (every
// flag, control character and speed), the window size, packet mode, the
// slave's lock and exclusive mode, whether every slave was closed, and the
// bytes queued each way: typed to the master and unread by the slave, and
// written by the slave and unread by the master. Both queues are read out
// (the slave's with ICANON off, so that a line not yet ended is read too)
// and put back as they were before the tree goes on: the master's by
// writing to the slave, the slave's with TIOCSTI, under a termios that
// changes nothing on the way (no echo, no signals, no translation, no
// line editing; the line ends stay line ends).
//
// Restore: /dev/ptmx opened until the kernel gives the index (the lower
// ones held meanwhile); the queues put back the same way; the termios,
// the window size and packet mode set; the lock and exclusive mode once
// every task holds its descriptions (a late step). A session leader takes
// its controlling terminal as it is made, before its children (who
// inherit it), and sets the foreground group once every group exists.

#include "lib/fs/pty.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/strings/ascii.h"
#include "lib/base/clock.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/fs/anonfd.h"
#include "lib/fs/fdkind.h"
#include "lib/fs/sockopt.h"
#include "lib/image/format.h"
#include "lib/image/records.h"

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

namespace ckpt::fs {
namespace {

constexpr objhash::ObjKind kObjPty{24};
constexpr unsigned kPtyMasterMajor = 5, kPtyMasterMinor = 2;
constexpr unsigned kSlaveMajorFirst = 136, kSlaveMajorLast = 143;
// How long a restore waits for an index that the dumped tree, dying,
// may still hold.
constexpr int64_t kIndexWaitNs = 3000 * 1000000LL;
// A line discipline buffer (4095 bytes) this full may have more waiting
// behind it in the pair's flip buffers, which cannot all be put back.
constexpr int kAboutFull = 4000;

constexpr image::FieldSpec kPtyFields[] = {
    CKPT_FIELD(image::ckpt_pty, objref, kUnsigned),     CKPT_FIELD(image::ckpt_pty, flags, kHex),
    CKPT_FIELD(image::ckpt_pty, index, kUnsigned),      CKPT_FIELD(image::ckpt_pty, path_len, kUnsigned),
    CKPT_FIELD(image::ckpt_pty, iflag, kOctal),         CKPT_FIELD(image::ckpt_pty, oflag, kOctal),
    CKPT_FIELD(image::ckpt_pty, cflag, kOctal),         CKPT_FIELD(image::ckpt_pty, lflag, kOctal),
    CKPT_FIELD(image::ckpt_pty, line, kUnsigned),       CKPT_FIELD(image::ckpt_pty, ispeed, kUnsigned),
    CKPT_FIELD(image::ckpt_pty, ospeed, kUnsigned),     CKPT_FIELD(image::ckpt_pty, cc, kHex),
    CKPT_FIELD(image::ckpt_pty, ws_row, kUnsigned),     CKPT_FIELD(image::ckpt_pty, ws_col, kUnsigned),
    CKPT_FIELD(image::ckpt_pty, ws_xpixel, kUnsigned),  CKPT_FIELD(image::ckpt_pty, ws_ypixel, kUnsigned),
    CKPT_FIELD(image::ckpt_pty, input_size, kUnsigned), CKPT_FIELD(image::ckpt_pty, output_size, kUnsigned),
    CKPT_FIELD(image::ckpt_pty, session_ref, kUnsigned), CKPT_FIELD(image::ckpt_pty, fg_pgrp_ref, kUnsigned),
    CKPT_FIELD(image::ckpt_pty, mode, kOctal),          CKPT_FIELD(image::ckpt_pty, uid, kUnsigned),
    CKPT_FIELD(image::ckpt_pty, gid, kUnsigned),
};
CKPT_RECORD(image::CKPT_HDR_PTY, "PTY", image::ckpt_pty, kPtyFields,
            uint64_t{image::kMaxPathLen} + image::kMaxPtyInput + image::kMaxPtyOutput, kRawBytes);

struct PtyInfo {
  uint64_t devpts = 0;
  uint32_t index = 0;
  std::string pts_dir;  // the devpts directory as the tree sees it
  pid_t master_pid = 0;
  int master_fd = -1;
  pid_t slave_pid = 0;  // a task holding a description on the slave
  int slave_fd = -1;
  pid_t first_pid = 0;  // the first fd met on it (for messages)
  int first_fd = -1;
  uint32_t flags = 0;  // kPtyCaller or kPtyExternal, from ResolvePtys
  uint32_t session_ref = 0, fg_pgrp_ref = 0;
};

// What the restore made of a PTY record.
struct RestoredPty {
  uint32_t flags = 0;
  uint32_t index = 0;
  std::string path;  // for messages: /dev/pts/N, or the external name
};

bool IsSlaveMajor(unsigned m) { return m >= kSlaveMajorFirst && m <= kSlaveMajorLast; }
uint32_t SlaveIndex(dev_t rdev) { return (major(rdev) - kSlaveMajorFirst) * 256 + minor(rdev); }  // 136: the minor
// devpts numbers every slave 136:index, with a minor of 20 bits.
dev_t SlaveDev(uint32_t index) { return makedev(kSlaveMajorFirst, index); }
std::string TtyName(uint32_t index) {
  return absl::StrCat("tty:[", major(SlaveDev(index)), ":", minor(SlaveDev(index)), "]");
}
std::string SlavePath(const std::string& pts_dir, uint32_t index) { return absl::StrCat(pts_dir, "/", index); }

// /proc/PID/stat's tty_nr (the kernel's new_encode_dev) as a dev_t.
dev_t DecodeTtyNr(uint32_t nr) {
  return makedev((nr >> 8) & 0xfff, (nr & 0xff) | ((nr >> 12) & 0xfff00));
}

std::string Dirname(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos || slash == 0 ? std::string("/") : path.substr(0, slash);
}

// The devpts directory of a master opened at `path` (/dev/ptmx opens on
// the devpts next to it, /dev/pts/ptmx on its own).
std::string PtsDirOfMaster(const std::string& path) {
  std::string dir = Dirname(path);
  return absl::EndsWith(dir, "/pts") ? dir : absl::StrCat(dir == "/" ? "" : dir, "/pts");
}

absl::StatusOr<uint64_t> DevOfDir(pid_t pid, const std::string& dir) {
  struct stat st;
  std::string at = absl::StrCat("/proc/", pid, "/root", dir);
  if (stat(at.c_str(), &st) != 0) return ErrnoError(errno, "task ", pid, ": the devpts directory ", dir);
  return static_cast<uint64_t>(st.st_dev);
}

// The tty a /dev/tty description is on (TIOCGDEV); 0 if none.
dev_t RealTty(pid_t pid, int fd) {
  absl::StatusOr<UniqueFd> copy = CopyOfFd(pid, fd);
  unsigned int dev = 0;
  if (!copy.ok() || ioctl(copy->get(), TIOCGDEV, &dev) != 0) return 0;
  return DecodeTtyNr(dev);
}

// ------------------------------------------------------------------ dump

bool IsChr(const FdProbe& p) { return S_ISCHR(p.st.st_mode); }
bool ClaimsMaster(const FdProbe& p) {
  return IsChr(p) && p.st.st_rdev == makedev(kPtyMasterMajor, kPtyMasterMinor);
}
bool ClaimsSlave(const FdProbe& p) { return IsChr(p) && IsSlaveMajor(major(p.st.st_rdev)); }
bool ClaimsCtty(const FdProbe& p) {
  return IsChr(p) && p.st.st_rdev == makedev(5, 0) && IsSlaveMajor(major(RealTty(p.pid, p.fd)));
}

absl::StatusOr<uint32_t> RegisterPty(objhash::ObjHash& objects, const FdProbe& p, const Description& d) {
  PtyInfo info;
  if (d.kind == image::kFilePtyMaster) {
    ASSIGN_OR_RETURN(UniqueFd m, CopyOfFd(p.pid, p.fd));
    unsigned int n = 0;
    if (ioctl(m.get(), TIOCGPTN, &n) != 0) return ErrnoError(errno, "task ", p.pid, " fd ", p.fd, ": TIOCGPTN");
    info.index = n;
    info.pts_dir = PtsDirOfMaster(p.target);
    ASSIGN_OR_RETURN(info.devpts, DevOfDir(p.pid, info.pts_dir));
    info.master_pid = p.pid;
    info.master_fd = p.fd;
  } else if (d.kind == image::kFilePtySlave) {
    info.index = SlaveIndex(p.st.st_rdev);
    info.pts_dir = Dirname(p.target);
    info.devpts = p.st.st_dev;
    info.slave_pid = p.pid;
    info.slave_fd = p.fd;
  } else {
    const dev_t tty = RealTty(p.pid, p.fd);
    if (!IsSlaveMajor(major(tty))) {
      return absl::AbortedError(absl::StrCat("task ", p.pid, " fd ", p.fd, ": /dev/tty is no longer on a pseudo-terminal"));
    }
    info.index = SlaveIndex(tty);
    info.pts_dir = "/dev/pts";
    ASSIGN_OR_RETURN(info.devpts, DevOfDir(p.pid, info.pts_dir));
  }
  info.first_pid = p.pid;
  info.first_fd = p.fd;
  const PtyInfo seen = info;
  ASSIGN_OR_RETURN(objhash::ObjHash::Found f,
                   objects.LookupAdd(kObjPty, objhash::Identity::OfInode(info.devpts, info.index),
                                     std::move(info)));
  if (!f.first) {
    auto& known = std::any_cast<PtyInfo&>(f.entry->data);
    if (seen.master_pid != 0) {
      if (known.master_pid != 0) {
        return absl::InternalError(absl::StrCat("task ", p.pid, " fd ", p.fd, ": a second master of /dev/pts/",
                                                seen.index));
      }
      known.master_pid = seen.master_pid;
      known.master_fd = seen.master_fd;
      known.pts_dir = seen.pts_dir;
    }
    if (seen.slave_pid != 0 && known.slave_pid == 0) {
      known.slave_pid = seen.slave_pid;
      known.slave_fd = seen.slave_fd;
      if (known.master_pid == 0) known.pts_dir = seen.pts_dir;
    }
  }
  return f.objref;
}

absl::Status DescribePty(const FdProbe&, Description*) { return absl::OkStatus(); }

bool IsTtyNameOf(const std::string& name, uint32_t index) { return name == TtyName(index); }

}  // namespace

bool IsTtyName(const std::string& name) { return absl::StartsWith(name, "tty:["); }

objhash::ObjKind PtyObjKind() { return kObjPty; }

absl::Status ResolvePtys(objhash::ObjHash& objects, const std::vector<TtyOfTask>& tasks,
                         const std::map<pid_t, uint32_t>& pgrp_refs,
                         const std::vector<std::string>& external, uint32_t dump_flags) {
  const bool shell_job = dump_flags & objhash::kDumpShellJob;
  std::set<std::string> named(external.begin(), external.end());
  for (const std::string& name : external) {
    absl::string_view v = name;
    std::vector<absl::string_view> parts;
    if (absl::ConsumePrefix(&v, "tty:[") && absl::ConsumeSuffix(&v, "]")) parts = absl::StrSplit(v, ':');
    unsigned maj = 0, min = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &maj) || !absl::SimpleAtoi(parts[1], &min) ||
        !IsSlaveMajor(maj) || SlaveIndex(makedev(maj, min)) >= image::kMaxPtyIndex ||
        TtyName(SlaveIndex(makedev(maj, min))) != name) {
      return absl::InvalidArgumentError(absl::StrCat(
          "external object '", name, "' is not a terminal's name such as tty:[136:3] (/dev/pts/3)"));
    }
  }
  // A name that matches no terminal of the tree is a mistake of the caller's.
  std::set<std::string> known;
  for (const auto& e : objects.entries()) {
    if (e->kind == kObjPty) known.insert(TtyName(std::any_cast<PtyInfo&>(e->data).index));
  }
  for (const TtyOfTask& t : tasks) {
    const dev_t tty = DecodeTtyNr(t.tty_nr);
    if (t.tty_nr != 0 && IsSlaveMajor(major(tty))) known.insert(TtyName(SlaveIndex(tty)));
  }
  for (const std::string& name : named) {
    if (!known.count(name)) {
      return absl::InvalidArgumentError(absl::StrCat("external object ", name, " is not a terminal the tree uses"));
    }
  }
  std::set<std::string> used;
  // What each pair is.
  auto decide = [&](PtyInfo& info, const std::string& who) -> absl::Status {
    const std::string name = TtyName(info.index);
    const std::string path = SlavePath(info.pts_dir, info.index);
    if (info.master_pid != 0) {
      if (named.count(name)) {
        return absl::InvalidArgumentError(absl::StrCat("external object ", name, " (", path,
                                                       ") is a terminal the tree holds both sides of"));
      }
      if (info.slave_pid != 0) return absl::OkStatus();
      // No task of the tree holds the slave: that is right only when every
      // slave was closed (the master then reads EIO); else a process
      // outside holds it, or nobody opened it yet.
      ASSIGN_OR_RETURN(UniqueFd m, CopyOfFd(info.master_pid, info.master_fd));
      struct pollfd pfd = {m.get(), POLLIN, 0};
      if (poll(&pfd, 1, 0) < 0) return ErrnoError(errno, who, ": poll of the master of ", path);
      if (pfd.revents & POLLHUP) return absl::OkStatus();
      return absl::FailedPreconditionError(absl::StrCat(
          who, ": the master of ", path, " (/dev/ptmx) is in the tree but its slave is open in no task of it "
          "(held by a process outside the tree, or not opened yet): not supported"));
    }
    if (named.count(name)) {
      info.flags = image::kPtyExternal;
      used.insert(name);
      return absl::OkStatus();
    }
    if (shell_job) {
      info.flags = image::kPtyCaller;
      return absl::OkStatus();
    }
    return absl::FailedPreconditionError(absl::StrCat(
        who, ": the terminal ", path, " belongs to a process outside the tree (its master is not in the tree): "
        "dump with --shell-job when it is the terminal the dump is run from, or with --external ", name,
        " and restore with --inherit-fd FD:", name));
  };
  for (const auto& e : objects.entries()) {
    if (e->kind != kObjPty) continue;
    auto& info = std::any_cast<PtyInfo&>(e->data);
    RETURN_IF_ERROR(decide(info, absl::StrCat("task ", info.first_pid, " fd ", info.first_fd)));
  }

  // Sessions and their controlling terminals.
  std::map<pid_t, const TtyOfTask*> by_pid;
  for (const TtyOfTask& t : tasks) by_pid[t.pid] = &t;
  auto find_pty = [&](uint32_t index, pid_t pid) -> absl::StatusOr<PtyInfo*> {
    PtyInfo* found = nullptr;
    for (const auto& e : objects.entries()) {
      if (e->kind != kObjPty) continue;
      auto& info = std::any_cast<PtyInfo&>(e->data);
      if (info.index != index) continue;
      if (found != nullptr) {
        return absl::UnimplementedError(absl::StrCat(
            "task ", pid, ": its controlling terminal's index ", index, " is that of terminals on two devpts "
            "instances: not supported"));
      }
      found = &info;
    }
    return found;
  };
  for (const TtyOfTask& t : tasks) {
    const bool leader = t.pid == t.sid;
    auto leader_it = by_pid.find(t.sid);
    if (!leader) {
      // A member has its session's terminal, as it had it when it was
      // made: the restore makes members after their leader took it.
      if (leader_it != by_pid.end()) {
        if (t.tty_nr != leader_it->second->tty_nr) {
          return absl::UnimplementedError(absl::StrCat(
              "task ", t.pid, " has ", t.tty_nr ? "another controlling terminal" : "no controlling terminal",
              " than its session leader ", t.sid, " (it was made before the leader took its terminal): "
              "not supported"));
        }
        continue;
      }
      // The session is the caller's: its terminal must not be one of the
      // tree's own.
      if (t.tty_nr == 0 || !IsSlaveMajor(major(DecodeTtyNr(t.tty_nr)))) continue;
      ASSIGN_OR_RETURN(PtyInfo * info, find_pty(SlaveIndex(DecodeTtyNr(t.tty_nr)), t.pid));
      if (info != nullptr && info->master_pid != 0) {
        return absl::UnimplementedError(absl::StrCat(
            "task ", t.pid, ": its controlling terminal /dev/pts/", info->index, " is one of the tree's, "
            "but its session's leader ", t.sid, " is outside the tree: not supported"));
      }
      continue;
    }
    if (t.tty_nr == 0) continue;
    const dev_t tty = DecodeTtyNr(t.tty_nr);
    const std::string who = absl::StrCat("task ", t.pid);
    if (!IsSlaveMajor(major(tty))) {
      return absl::UnimplementedError(absl::StrCat(
          who, " leads a session whose controlling terminal (device ", major(tty), ":", minor(tty),
          ") is not a pseudo-terminal (a console or a serial line): not supported"));
    }
    const uint32_t index = SlaveIndex(tty);
    ASSIGN_OR_RETURN(PtyInfo * info, find_pty(index, t.pid));
    if (info == nullptr) {
      // A terminal no fd of the tree is open on.
      PtyInfo fresh;
      fresh.index = index;
      fresh.pts_dir = "/dev/pts";
      ASSIGN_OR_RETURN(fresh.devpts, DevOfDir(t.pid, fresh.pts_dir));
      fresh.first_pid = t.pid;
      ASSIGN_OR_RETURN(objhash::ObjHash::Found f,
                       objects.LookupAdd(kObjPty, objhash::Identity::OfInode(fresh.devpts, index),
                                         std::move(fresh)));
      info = &std::any_cast<PtyInfo&>(f.entry->data);
      RETURN_IF_ERROR(decide(*info, absl::StrCat(who, " (its controlling terminal)")));
    }
    if (info->flags & image::kPtyCaller) {
      return absl::UnimplementedError(absl::StrCat(
          who, " leads a session whose controlling terminal ", SlavePath(info->pts_dir, index),
          " is the caller's (--shell-job): a restored session cannot be given the restorer's terminal; "
          "dump it with --external ", TtyName(index), " instead"));
    }
    auto fg = pgrp_refs.find(t.tpgid);
    if (t.tpgid <= 0 || fg == pgrp_refs.end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          who, ": the foreground process group (", t.tpgid, ") of its controlling terminal ",
          SlavePath(info->pts_dir, index), " is no group of the tree"));
    }
    info->session_ref = t.pid_ref;
    info->fg_pgrp_ref = fg->second;
  }
  for (const std::string& name : named) {
    if (!used.count(name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "external object ", name, " is not a terminal the tree uses whose master is outside it"));
    }
  }
  return absl::OkStatus();
}

namespace {

// A termios that lets bytes through unchanged both ways, for putting
// queued bytes back: no echo, no signals, no flow control, no
// translation, no line editing; in canonical mode the line ends ('\n',
// VEOL, VEOL2 with IEXTEN) stay line ends, and VEOF too where the bytes
// mark lines it ended (`keep_eof`).
struct termios PassThrough(const struct termios& t, bool keep_eof) {
  struct termios p = t;
  p.c_iflag &= ~static_cast<tcflag_t>(IXON | IXOFF | IXANY | ICRNL | INLCR | IGNCR | ISTRIP | IUCLC |
                                      PARMRK | INPCK | IMAXBEL);
  p.c_oflag &= ~static_cast<tcflag_t>(OPOST);
  p.c_lflag &= ~static_cast<tcflag_t>(ECHO | ECHOE | ECHOK | ECHONL | ECHOCTL | ECHOPRT | ECHOKE | ISIG | TOSTOP);
  for (int c : {VINTR, VQUIT, VERASE, VKILL, VSTART, VSTOP, VSUSP, VREPRINT, VDISCARD, VWERASE, VLNEXT}) {
    p.c_cc[c] = _POSIX_VDISABLE;
  }
  if (!keep_eof) p.c_cc[VEOF] = _POSIX_VDISABLE;
  return p;
}

// The kernel's struct termios2 (TCGETS2/TCSETS2), whose speeds are in
// bits per second (asm/termbits.h, which clashes with termios.h).
struct KernelTermios2 {
  uint32_t c_iflag, c_oflag, c_cflag, c_lflag;
  uint8_t c_line;
  uint8_t c_cc[19];
  uint32_t c_ispeed, c_ospeed;
};
static_assert(sizeof(KernelTermios2) == 44);
constexpr unsigned long kTcgets2 = _IOR('T', 0x2A, KernelTermios2);
constexpr unsigned long kTcsets2 = _IOW('T', 0x2B, KernelTermios2);

bool SameTermios(const struct termios& a, const struct termios& b) {
  return a.c_iflag == b.c_iflag && a.c_oflag == b.c_oflag && a.c_cflag == b.c_cflag && a.c_lflag == b.c_lflag &&
         a.c_line == b.c_line && std::memcmp(a.c_cc, b.c_cc, sizeof(a.c_cc)) == 0 &&
         cfgetispeed(&a) == cfgetispeed(&b) && cfgetospeed(&a) == cfgetospeed(&b);
}

// Everything readable now from a non-blocking `fd` (at most `cap` bytes).
absl::StatusOr<std::string> Drain(int fd, size_t cap, const std::string& what) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      if (out.size() > cap) {
        return absl::ResourceExhaustedError(absl::StrCat(what, ": more than ", cap, " bytes queued"));
      }
      continue;
    }
    // EIO: a master whose slaves are all closed, at the end of its queue.
    if (n == 0 || errno == EAGAIN || errno == EIO) return out;
    if (errno == EINTR) continue;
    return ErrnoError(errno, "reading ", what);
  }
}

absl::Status WriteAll(int fd, const std::string& data, const std::string& what) {
  size_t at = 0;
  int stalls = 0;
  while (at < data.size()) {
    ssize_t n = write(fd, data.data() + at, data.size() - at);
    if (n > 0) {
      at += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if ((n == 0 || errno == EAGAIN) && ++stalls < 1000) {
      usleep(1000);
      continue;
    }
    return ErrnoError(n < 0 ? errno : EAGAIN, "putting ", data.size() - at, " of ", data.size(),
                      " bytes back into ", what);
  }
  return absl::OkStatus();
}

// Bytes into the slave's input queue, as if typed, through its line
// discipline at once (TIOCSTI: needs CAP_SYS_ADMIN on another's terminal).
absl::Status Type(int slave, const std::string& data, const std::string& what) {
  for (char c : data) {
    if (ioctl(slave, TIOCSTI, &c) != 0) {
      return ErrnoError(errno, "putting ", data.size(), " typed bytes back into ", what, " (TIOCSTI)");
    }
  }
  return absl::OkStatus();
}

// Whether `input` (in canonical mode) holds lines ended by VEOF: bytes
// equal to it.
bool HasEofMarks(const struct termios& t, const std::string& input) {
  return (t.c_lflag & ICANON) && t.c_cc[VEOF] != _POSIX_VDISABLE &&
         input.find(static_cast<char>(t.c_cc[VEOF])) != std::string::npos;
}

// Puts both queues back into a pair whose slave termios is `t`: `input`
// typed to the slave, `output` as written by it for the master to read.
// Both are tried whatever fails; the first error is returned.
absl::Status Refill(int slave, const struct termios& t, const std::string& input, const std::string& output,
                    bool keep_eof, const std::string& what) {
  if (input.empty() && output.empty()) {
    // Only the termios the drain changed.
    if (tcsetattr(slave, TCSANOW, &t) != 0) return ErrnoError(errno, what, ": tcsetattr");
    return absl::OkStatus();
  }
  struct termios pass = PassThrough(t, keep_eof);
  if (tcsetattr(slave, TCSANOW, &pass) != 0) return ErrnoError(errno, what, ": tcsetattr");
  absl::Status st = Type(slave, input, what);
  absl::Status out = WriteAll(slave, output, what);
  if (st.ok()) st = out;
  if (tcsetattr(slave, TCSANOW, &t) != 0 && st.ok()) st = ErrnoError(errno, what, ": tcsetattr");
  return st;
}

// The slave's queue, in canonical mode line by line (a line ^D ended
// comes with VEOF after it; a bare ^D as VEOF alone), then what is left
// (a line not ended yet) with ICANON off.
absl::StatusOr<std::string> DrainInput(int slave, const struct termios& t, const std::string& what,
                                       size_t* marks) {
  std::string input;
  if (t.c_lflag & ICANON) {
    char buf[4096];
    for (;;) {
      ssize_t n = read(slave, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      if (n < 0) return ErrnoError(errno, "reading ", what, "'s slave");
      input.append(buf, static_cast<size_t>(n));
      const unsigned char last = n > 0 ? static_cast<unsigned char>(buf[n - 1]) : 0;
      const bool ended = n > 0 && (last == '\n' || (t.c_cc[VEOL] != _POSIX_VDISABLE && last == t.c_cc[VEOL]) ||
                                   ((t.c_lflag & IEXTEN) && t.c_cc[VEOL2] != _POSIX_VDISABLE &&
                                    last == t.c_cc[VEOL2]));
      if (!ended) {
        if (t.c_cc[VEOF] == _POSIX_VDISABLE) {
          return absl::InternalError(absl::StrCat(what, ": a line ended without a line end or VEOF"));
        }
        input.push_back(static_cast<char>(t.c_cc[VEOF]));
        ++*marks;
      }
      if (input.size() > image::kMaxPtyInput) break;
    }
  }
  struct termios raw = t;
  raw.c_lflag &= ~static_cast<tcflag_t>(ICANON);
  raw.c_cc[VMIN] = 1;
  raw.c_cc[VTIME] = 0;
  if (tcsetattr(slave, TCSANOW, &raw) != 0) return ErrnoError(errno, what, ": tcsetattr");
  absl::StatusOr<std::string> tail = Drain(slave, image::kMaxPtyInput * 4, absl::StrCat(what, "'s slave"));
  if (!tail.ok()) return tail.status();
  input += *tail;
  return input;
}

// Whether this process may put bytes back into a terminal that is not its
// own (TIOCSTI needs CAP_SYS_ADMIN in the initial user namespace): tried
// on a pair of its own.
absl::Status CheckTiocsti(const std::string& what) {
  UniqueFd m(open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK));
  int unlock = 0;
  if (!m.valid() || ioctl(m.get(), TIOCSPTLCK, &unlock) != 0) return ErrnoError(errno, what, ": a scratch /dev/ptmx");
  UniqueFd s(ioctl(m.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK));
  char c = 'x';
  if (!s.valid() || ioctl(s.get(), TIOCSTI, &c) != 0) {
    return absl::PermissionDeniedError(absl::StrCat(
        what, ": keeping what is typed on a terminal needs TIOCSTI on it (CAP_SYS_ADMIN), which this dumper lacks (",
        strerror(errno), ")"));
  }
  return absl::OkStatus();
}

struct PtyState {
  image::ckpt_pty rec{};
  std::string input, output;
};

absl::StatusOr<PtyState> ReadPtyState(const PtyInfo& info, const std::string& what) {
  PtyState s;
  RETURN_IF_ERROR(CheckTiocsti(what));
  ASSIGN_OR_RETURN(UniqueFd m, CopyOfFd(info.master_pid, info.master_fd));
  int lock = 0, pkt = 0, excl = 0, disc = 0;
  if (ioctl(m.get(), TIOCGPTLCK, &lock) != 0) return ErrnoError(errno, what, ": TIOCGPTLCK");
  if (ioctl(m.get(), TIOCGPKT, &pkt) != 0) return ErrnoError(errno, what, ": TIOCGPKT");
  if (ioctl(m.get(), TIOCGETD, &disc) != 0) return ErrnoError(errno, what, ": TIOCGETD");
  if (disc != N_TTY) {
    return absl::UnimplementedError(absl::StrCat(what, ": line discipline ", disc, " (only N_TTY is supported)"));
  }
  struct termios t;
  if (tcgetattr(m.get(), &t) != 0) return ErrnoError(errno, what, ": tcgetattr");
  struct winsize ws;
  if (ioctl(m.get(), TIOCGWINSZ, &ws) != 0) return ErrnoError(errno, what, ": TIOCGWINSZ");
  // What keeps the queues from being put back as they are is refused
  // before anything is taken out of them.
  struct pollfd pm = {m.get(), POLLIN | POLLPRI, 0};
  if (poll(&pm, 1, 0) < 0) return ErrnoError(errno, what, ": poll of its master");
  const bool hup = pm.revents & POLLHUP;
  if (pkt && (pm.revents & POLLPRI)) {
    return absl::UnimplementedError(absl::StrCat(
        what, ": a packet-mode status byte waits to be read on its master (TIOCPKT): not supported"));
  }
  if (info.slave_pid == 0 && !hup) {
    return absl::FailedPreconditionError(absl::StrCat(what, ": its slave is open in no task of the tree"));
  }
  int out_queued = 0;
  if (ioctl(m.get(), FIONREAD, &out_queued) != 0) return ErrnoError(errno, what, ": FIONREAD of its master");
  if (out_queued >= kAboutFull) {
    return absl::UnimplementedError(absl::StrCat(
        what, ": ", out_queued, " bytes written to it wait unread by its master, whose buffer is about full (the "
        "program reading the master is behind the one writing): not supported"));
  }
  // A locked slave opens for nobody: unlocked while it is read.
  int unlocked = 0;
  if (lock && ioctl(m.get(), TIOCSPTLCK, &unlocked) != 0) return ErrnoError(errno, what, ": TIOCSPTLCK");
  struct Relock {
    int fd;
    bool on;
    ~Relock() {
      int one = 1;
      if (on) ioctl(fd, TIOCSPTLCK, &one);
    }
  } relock{m.get(), lock != 0};
  // A description of our own on the slave (non-blocking, not a
  // controlling terminal); where every slave was closed, a new one (its
  // close leaves them so again).
  UniqueFd slave;
  if (info.slave_pid != 0) {
    ASSIGN_OR_RETURN(slave, OpenFile(absl::StrCat("/proc/", info.slave_pid, "/fd/", info.slave_fd),
                                     O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC));
  } else {
    slave.reset(ioctl(m.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC));
    if (!slave.valid()) return ErrnoError(errno, what, ": opening its slave (TIOCGPTPEER)");
  }
  if (ioctl(slave.get(), TIOCGEXCL, &excl) != 0) return ErrnoError(errno, what, ": TIOCGEXCL");
  struct stat sst;
  if (fstat(slave.get(), &sst) != 0) return ErrnoError(errno, what, ": fstat of its slave");
  int in_queued = 0;
  if (ioctl(slave.get(), FIONREAD, &in_queued) != 0) return ErrnoError(errno, what, ": FIONREAD of its slave");
  if (in_queued >= kAboutFull) {
    return absl::UnimplementedError(absl::StrCat(
        what, ": ", in_queued, " bytes typed wait to be read (its line discipline's buffer is about full, and more "
        "may wait behind it): not supported"));
  }
  // Output is put back by writing it to the slave: a slave whose output
  // is stopped (^S, TCOOFF) takes none.
  struct pollfd ps = {slave.get(), POLLOUT, 0};
  if (out_queued > 0 && (poll(&ps, 1, 0) < 0 || !(ps.revents & POLLOUT))) {
    return absl::UnimplementedError(absl::StrCat(
        what, ": its output is stopped (^S, TCOOFF) with ", out_queued, " bytes unread by its master: not supported"));
  }

  // The master's queue: read through the task's own description, made
  // non-blocking for that while (the tree is stopped), out of packet mode.
  int fl = fcntl(m.get(), F_GETFL);
  if (fl < 0 || fcntl(m.get(), F_SETFL, fl | O_NONBLOCK) != 0) return ErrnoError(errno, what, ": F_SETFL");
  int off = 0, on = 1;
  if (pkt) ioctl(m.get(), TIOCPKT, &off);
  absl::StatusOr<std::string> output = Drain(m.get(), image::kMaxPtyOutput, absl::StrCat(what, "'s master"));
  absl::Status st = output.status();
  if (output.ok()) s.output = std::move(*output);
  size_t marks = 0;
  absl::StatusOr<std::string> input = DrainInput(slave.get(), t, what, &marks);
  if (input.ok()) {
    s.input = std::move(*input);
  } else if (st.ok()) {
    st = input.status();
  }
  // Back as they were, whatever happened. A byte equal to VEOF that is
  // no mark of ours was typed escaped (VLNEXT): it is put back as it came,
  // and the terminal refused, the image could not tell it from a mark.
  const size_t veofs = (t.c_lflag & ICANON) && t.c_cc[VEOF] != _POSIX_VDISABLE
                           ? static_cast<size_t>(std::count(s.input.begin(), s.input.end(),
                                                            static_cast<char>(t.c_cc[VEOF])))
                           : 0;
  absl::Status back = Refill(slave.get(), t, s.input, s.output, marks > 0, what);
  if (st.ok()) st = back;
  if (pkt) ioctl(m.get(), TIOCPKT, &on);
  fcntl(m.get(), F_SETFL, fl);
  RETURN_IF_ERROR(st);
  if (s.input.size() > image::kMaxPtyInput) {
    return absl::UnimplementedError(absl::StrCat(what, ": ", s.input.size(), " bytes typed wait to be read, more "
                                                 "than its line discipline holds again: not supported"));
  }
  if (veofs > marks) {
    return absl::UnimplementedError(absl::StrCat(
        what, ": a line typed and unread holds its end-of-file character (typed escaped): not supported"));
  }
  image::ckpt_pty& r = s.rec;
  r.index = info.index;
  r.flags = (lock ? image::kPtyLocked : 0u) | (pkt ? image::kPtyPacket : 0u) | (excl ? image::kPtyExclusive : 0u) |
            (info.slave_pid == 0 ? image::kPtySlaveClosed : 0u);
  r.iflag = t.c_iflag;
  r.oflag = t.c_oflag;
  r.cflag = t.c_cflag;
  r.lflag = t.c_lflag;
  r.line = t.c_line;
  KernelTermios2 k2;
  if (ioctl(m.get(), kTcgets2, &k2) != 0) return ErrnoError(errno, what, ": TCGETS2");
  r.ispeed = k2.c_ispeed;
  r.ospeed = k2.c_ospeed;
  static_assert(sizeof(r.cc) >= NCCS);
  std::memcpy(r.cc, t.c_cc, NCCS);
  r.ws_row = ws.ws_row;
  r.ws_col = ws.ws_col;
  r.ws_xpixel = ws.ws_xpixel;
  r.ws_ypixel = ws.ws_ypixel;
  r.mode = sst.st_mode & 07777;
  r.uid = sst.st_uid;
  r.gid = sst.st_gid;
  r.input_size = static_cast<uint32_t>(s.input.size());
  r.output_size = static_cast<uint32_t>(s.output.size());
  return s;
}

absl::Status CheckpointPty(objhash::CheckpointContext& ctx, const objhash::ObjHash::Entry& entry) {
  const auto& info = std::any_cast<const PtyInfo&>(entry.data);
  const std::string slave_path = SlavePath(info.pts_dir, info.index);
  PtyState s;
  std::string path;
  if (info.flags & image::kPtyExternal) {
    path = TtyName(info.index);
    s.rec.flags = image::kPtyExternal;
    s.rec.index = info.index;
  } else if (info.flags & image::kPtyCaller) {
    path = slave_path;
    s.rec.flags = image::kPtyCaller;
    s.rec.index = info.index;
  } else {
    ASSIGN_OR_RETURN(s, ReadPtyState(info, absl::StrCat("the terminal ", slave_path)));
    path = info.pts_dir;
  }
  s.rec.objref = entry.objref;
  s.rec.path_len = static_cast<uint32_t>(path.size());
  s.rec.session_ref = info.session_ref;
  s.rec.fg_pgrp_ref = info.fg_pgrp_ref;
  struct iovec parts[4] = {{&s.rec, sizeof(s.rec)},
                           {path.data(), path.size()},
                           {s.input.data(), s.input.size()},
                           {s.output.data(), s.output.size()}};
  return ctx.writer->AppendV(image::CKPT_HDR_PTY, parts, 4);
}

// --------------------------------------------------------------- restore

// kernel.pty.max: no index is at or above it.
absl::StatusOr<uint32_t> PtyMax() {
  absl::StatusOr<std::string> text = ReadFile("/proc/sys/kernel/pty/max");
  uint32_t v = 0;
  if (!text.ok() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &v)) return uint32_t{4096};
  return v;
}

// A master whose pair has `index`: /dev/ptmx opened until the kernel
// gives it (it gives the lowest free one); the lower ones are closed again.
absl::StatusOr<UniqueFd> OpenMasterAt(const std::string& ptmx, uint32_t index, const std::string& what) {
  const int64_t deadline = MonotonicNs() + kIndexWaitNs;
  for (;;) {
    std::vector<UniqueFd> lower;
    for (;;) {
      int fd = open(ptmx.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
      if (fd < 0) return ErrnoError(errno, what, ": open ", ptmx);
      UniqueFd m(fd);
      unsigned int n = 0;
      if (ioctl(fd, TIOCGPTN, &n) != 0) return ErrnoError(errno, what, ": TIOCGPTN");
      if (n == index) return m;
      if (n > index || lower.size() > index) break;
      lower.push_back(std::move(m));
    }
    if (MonotonicNs() > deadline) {
      return absl::AlreadyExistsError(absl::StrCat(what, ": its index ", index,
                                                   " is in use (another pair holds it)"));
    }
    usleep(5000);
  }
}

absl::StatusOr<objhash::RestoredObject> RestorePty(objhash::RestoreContext& ctx, const image::Record&) {
  image::Reader& r = *ctx.reader;
  image::ckpt_pty p;
  RETURN_IF_ERROR(r.ReadStruct(&p, sizeof(p)));
  constexpr uint32_t kKnown = image::kPtyCaller | image::kPtyExternal | image::kPtyOwnState;
  const bool caller = p.flags & image::kPtyCaller, external = p.flags & image::kPtyExternal;
  if ((p.flags & ~kKnown) || (caller && external) || ((caller || external) && (p.flags & image::kPtyOwnState))) {
    return r.FieldError("flags", absl::StrCat("0x", absl::Hex(p.flags)));
  }
  if (p.index >= image::kMaxPtyIndex) return r.FieldError("index", p.index, " is out of range");
  if (p.path_len == 0 || p.path_len > image::kMaxPathLen) return r.FieldError("path_len", p.path_len, " is out of range");
  if (p.input_size > image::kMaxPtyInput || p.output_size > image::kMaxPtyOutput ||
      ((caller || external) && (p.input_size | p.output_size))) {
    return r.FieldError("input_size", p.input_size, " (output_size ", p.output_size, ") does not fit the terminal");
  }
  if (uint64_t{p.path_len} + p.input_size + p.output_size != r.payload_remaining()) {
    return r.FieldError("path_len", p.path_len, ": the record has ", r.payload_remaining(), " bytes after its fields");
  }
  if (p.mode & ~07777u) return r.FieldError("mode", absl::StrFormat("0%o", p.mode), " is not a permission mode");
  for (size_t i = NCCS; i < sizeof(p.cc); i++) {
    if (p.cc[i] != 0) return r.FieldError("cc", "byte ", i, " is beyond the control characters and not zero");
  }
  if ((p.session_ref == 0) != (p.fg_pgrp_ref == 0) || (caller && p.session_ref != 0)) {
    return r.FieldError("session_ref", p.session_ref, " does not fit fg_pgrp_ref ", p.fg_pgrp_ref);
  }
  ASSIGN_OR_RETURN(std::string path, r.ReadString(p.path_len, "path"));
  std::string input(p.input_size, '\0'), output(p.output_size, '\0');
  RETURN_IF_ERROR(r.ReadPayload(input.data(), input.size()));
  RETURN_IF_ERROR(r.ReadPayload(output.data(), output.size()));

  RestoredPty restored{p.flags, p.index, path};
  objhash::RestoredObject obj;
  if (caller) {
    if (!(ctx.flags & objhash::kRestoreShellJob)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the image's tasks used the terminal the dump was run from (", path,
          "): restore with --shell-job to give them this one"));
    }
    UniqueFd tty(open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!tty.valid()) {
      return ErrnoError(errno, "the image's tasks used the terminal the dump was run from (", path,
                        ", a shell job), and this restore has no terminal to give them (/dev/tty)");
    }
    ASSIGN_OR_RETURN(obj, objhash::HoldAt(ctx, p.objref, tty.get(), "the restorer's terminal"));
  } else if (external) {
    if (!IsTtyNameOf(path, p.index)) return r.FieldError("path", "'", path, "' is not the name of pty ", p.index);
    if (ctx.inherited == nullptr || !ctx.inherited->count(path)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the image's terminal ", path, " had its master outside the tree when it was dumped: give the "
          "restore a terminal in its place (--inherit-fd FD:", path, ")"));
    }
    const int fd = ctx.inherited->at(path);
    // The slave of a pseudo-terminal (a master would make a new pair at
    // each reopen; another terminal is hung up when a session it leads ends).
    struct stat gst;
    unsigned int n = 0;
    if (fstat(fd, &gst) != 0 || !S_ISCHR(gst.st_mode) || !IsSlaveMajor(major(gst.st_rdev)) ||
        ioctl(fd, TIOCGPTN, &n) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("--inherit-fd ", fd, ":", path, ": fd ", fd,
                                                     " is not the slave of a pseudo-terminal (/dev/pts/N)"));
    }
    if (ctx.inherited_used != nullptr) ctx.inherited_used->insert(path);
    ASSIGN_OR_RETURN(obj, objhash::HoldAt(ctx, p.objref, fd, absl::StrCat("--inherit-fd ", fd, ":", path)));
  } else {
    if (path[0] != '/') return r.FieldError("path", "'", path, "' is not absolute");
    if (p.line != N_TTY) return r.FieldError("line", p.line, " is not N_TTY");
    const std::string what = absl::StrCat("the terminal ", SlavePath(path, p.index));
    const std::string ptmx = path == "/dev/pts" ? std::string("/dev/ptmx") : absl::StrCat(path, "/ptmx");
    ASSIGN_OR_RETURN(uint32_t pty_max, PtyMax());
    if (p.index >= pty_max) {
      return r.FieldError("index", p.index, " is not below kernel.pty.max (", pty_max, ")");
    }
    struct stat pst;
    if (stat(ptmx.c_str(), &pst) != 0 || !S_ISCHR(pst.st_mode) ||
        pst.st_rdev != makedev(kPtyMasterMajor, kPtyMasterMinor)) {
      return absl::FailedPreconditionError(absl::StrCat(what, ": ", ptmx, " is not the pseudo-terminal multiplexer"));
    }
    ASSIGN_OR_RETURN(UniqueFd m, OpenMasterAt(ptmx, p.index, what));
    int unlock = 0;
    if (ioctl(m.get(), TIOCSPTLCK, &unlock) != 0) return ErrnoError(errno, what, ": TIOCSPTLCK");
    int peer = ioctl(m.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (peer < 0) return ErrnoError(errno, what, ": opening its slave (TIOCGPTPEER)");
    UniqueFd s(peer);
    struct termios t;
    if (tcgetattr(s.get(), &t) != 0) return ErrnoError(errno, what, ": tcgetattr");
    t.c_iflag = p.iflag;
    t.c_oflag = p.oflag;
    t.c_cflag = p.cflag;
    t.c_lflag = p.lflag;
    t.c_line = static_cast<cc_t>(p.line);
    std::memcpy(t.c_cc, p.cc, NCCS);
    if (tcsetattr(s.get(), TCSANOW, &t) != 0) return ErrnoError(errno, what, ": tcsetattr");
    struct termios now;
    if (tcgetattr(s.get(), &now) != 0) return ErrnoError(errno, what, ": tcgetattr");
    if (!SameTermios(now, t)) {
      return absl::FailedPreconditionError(absl::StrCat(
          what, ": this kernel does not take its termios as saved (iflag 0x", absl::Hex(p.iflag), " cflag 0x",
          absl::Hex(p.cflag), " lflag 0x", absl::Hex(p.lflag), ")"));
    }
    // The speeds in bits per second (termios2: a speed of its own,
    // BOTHER, too).
    KernelTermios2 k2;
    if (ioctl(s.get(), kTcgets2, &k2) != 0) return ErrnoError(errno, what, ": TCGETS2");
    if (k2.c_ispeed != p.ispeed || k2.c_ospeed != p.ospeed) {
      k2.c_ispeed = p.ispeed;
      k2.c_ospeed = p.ospeed;
      if (ioctl(s.get(), kTcsets2, &k2) != 0 || ioctl(s.get(), kTcgets2, &k2) != 0) {
        return ErrnoError(errno, what, ": TCSETS2");
      }
      if (k2.c_ispeed != p.ispeed || k2.c_ospeed != p.ospeed) {
        return r.FieldError("ispeed", p.ispeed, " (ospeed ", p.ospeed, ") is not a speed cflag 0x",
                            absl::Hex(p.cflag), " lets the terminal have (it has ", k2.c_ispeed, "/", k2.c_ospeed, ")");
      }
    }
    struct winsize ws = {p.ws_row, p.ws_col, p.ws_xpixel, p.ws_ypixel};
    if (ioctl(m.get(), TIOCSWINSZ, &ws) != 0) return ErrnoError(errno, what, ": TIOCSWINSZ");
    if (fchown(s.get(), p.uid, p.gid) != 0) return ErrnoError(errno, what, ": chown to ", p.uid, ":", p.gid);
    if (fchmod(s.get(), p.mode) != 0) return ErrnoError(errno, what, ": chmod");
    RETURN_IF_ERROR(Refill(s.get(), t, input, output, HasEofMarks(t, input), what));
    int on = 1;
    if ((p.flags & image::kPtyPacket) && ioctl(m.get(), TIOCPKT, &on) != 0) {
      return ErrnoError(errno, what, ": TIOCPKT");
    }
    ASSIGN_OR_RETURN(obj, objhash::HoldAt(ctx, p.objref, m.get(), what));
    absl::StatusOr<int> high = objhash::MoveHigh(ctx, s.get(), what);
    if (!high.ok()) {
      close(obj.fd);
      return high.status();
    }
    obj.fd2 = *high;
    // Once every task holds its descriptions: the slave's exclusive mode
    // and lock (either would keep them from being opened).
    if (p.flags & (image::kPtyExclusive | image::kPtyLocked)) {
      const int mfd = obj.fd, sfd = obj.fd2;
      const uint32_t flags = p.flags;
      absl::Status later = ctx.Later([mfd, sfd, flags, what](objhash::LateContext&) -> absl::Status {
        if ((flags & image::kPtyExclusive) && ioctl(sfd, TIOCEXCL) != 0) return ErrnoError(errno, what, ": TIOCEXCL");
        int lock = 1;
        if ((flags & image::kPtyLocked) && ioctl(mfd, TIOCSPTLCK, &lock) != 0) {
          return ErrnoError(errno, what, ": TIOCSPTLCK");
        }
        return absl::OkStatus();
      });
      if (!later.ok()) {
        close(obj.fd);
        close(obj.fd2);
        return later;
      }
    }
  }
  if (p.session_ref != 0) {
    // The leader takes it as it is made (its fd on it in the restorer is
    // inherited), and sets its foreground group once every group exists.
    const int tty_fd = external ? obj.fd : obj.fd2;
    if (ctx.session_ttys == nullptr || !ctx.session_ttys->emplace(p.session_ref, tty_fd).second) {
      close(obj.fd);
      if (obj.fd2 >= 0) close(obj.fd2);
      return r.FieldError("session_ref", p.session_ref, " has a controlling terminal already");
    }
    const uint32_t session_ref = p.session_ref, fg_ref = p.fg_pgrp_ref;
    const std::string what = external ? path : SlavePath(path, p.index);
    absl::Status st = ctx.Later([=](objhash::LateContext& late) -> absl::Status {
      const pid_t leader = late.pid_here(session_ref);
      for (objhash::LateTask* t : late.tasks) {
        if (leader == 0 || t->pid() != leader) continue;
        const pid_t pgrp = t->PidOf(fg_ref);
        if (pgrp == 0) {
          return absl::InvalidArgumentError(absl::StrCat("image record PTY ", p.objref, " (", what, "): field 'fg_pgrp_ref' ",
                                                         fg_ref, " names no pid of the image"));
        }
        ASSIGN_OR_RETURN(int64_t ret,
                         t->Syscall(SYS_ioctl, {static_cast<uint64_t>(tty_fd), TIOCSPGRP, 0, 0, 0, 0},
                                    {reinterpret_cast<const uint8_t*>(&pgrp), sizeof(pgrp)}, 2));
        if (ret < 0) {
          return ErrnoError(static_cast<int>(-ret), "task ", leader, ": setting the foreground group of ", what,
                            " to ", pgrp, " (TIOCSPGRP)");
        }
        return absl::OkStatus();
      }
      return absl::InvalidArgumentError(absl::StrCat("image record PTY ", p.objref, " (", what, "): field 'session_ref' ",
                                                     session_ref, " names no restored task"));
    });
    if (!st.ok()) {
      close(obj.fd);
      if (obj.fd2 >= 0) close(obj.fd2);
      return st;
    }
  }
  obj.data = restored;
  return obj;
}

// A description on the pair of `pty` (the FILE record `rec`).
absl::StatusOr<UniqueFd> OpenOnPty(const image::ckpt_file& rec, const objhash::RestoredObject* pty,
                                   bool by_name = false) {
  const auto& restored = std::any_cast<const RestoredPty&>(pty->data);
  const int flags = (static_cast<int>(rec.flags) & (O_ACCMODE | O_NONBLOCK | O_APPEND | O_SYNC | O_DSYNC)) |
                    O_NOCTTY | O_CLOEXEC;
  int fd;
  if (restored.flags & image::kPtyCaller) {
    fd = open("/dev/tty", flags);
    if (fd < 0) {
      return ErrnoError(errno, "the image's tasks used the terminal the dump was run from (", restored.path,
                        "), and this restore has no terminal to give them (/dev/tty)");
    }
    // A slave's description by its own name (/dev/pts/N), as it was,
    // where the restorer's terminal is a pseudo-terminal too.
    unsigned int dev = 0;
    struct stat named;
    const dev_t real = by_name && ioctl(fd, TIOCGDEV, &dev) == 0 ? DecodeTtyNr(dev) : 0;
    const std::string path = IsSlaveMajor(major(real)) ? SlavePath("/dev/pts", SlaveIndex(real)) : "";
    if (!path.empty() && stat(path.c_str(), &named) == 0 && named.st_rdev == real) {
      int own = open(path.c_str(), flags);
      if (own >= 0) {
        close(fd);
        fd = own;
      }
    }
  } else if (restored.flags & image::kPtyExternal) {
    std::string link = absl::StrCat("/proc/self/fd/", pty->fd);
    fd = open(link.c_str(), flags);
    if (fd < 0) return ErrnoError(errno, "opening the terminal given for ", restored.path);
  } else {
    fd = ioctl(pty->fd, TIOCGPTPEER, flags);
    if (fd < 0) return ErrnoError(errno, "opening the slave of ", restored.path, "/", restored.index);
  }
  return UniqueFd(fd);
}

absl::StatusOr<UniqueFd> OpenSlave(objhash::RestoreContext&, const image::ckpt_file& rec, const std::string&,
                                   const objhash::RestoredObject* pty) {
  return OpenOnPty(rec, pty, /*by_name=*/true);
}

absl::StatusOr<UniqueFd> OpenMaster(objhash::RestoreContext& ctx, const image::ckpt_file& rec, const std::string&,
                                    const objhash::RestoredObject* pty) {
  const auto& restored = std::any_cast<const RestoredPty&>(pty->data);
  if (restored.flags & (image::kPtyCaller | image::kPtyExternal)) {
    return absl::InvalidArgumentError(absl::StrCat("image record FILE ", rec.objref, ": a master of the terminal ",
                                                   restored.path, ", whose master was outside the tree"));
  }
  // A pair has one master description: a second one is no image of ours.
  auto& masters = (*ctx.kind_state)["pty masters"];
  if (!masters.has_value()) masters = std::set<uint32_t>();
  if (!std::any_cast<std::set<uint32_t>&>(masters).insert(pty->objref).second) {
    return absl::InvalidArgumentError(absl::StrCat("image record FILE ", rec.objref, ": a second master of ",
                                                   restored.path, "/", restored.index));
  }
  return DupWithNonblock(pty->fd, rec.flags, "the master of a terminal");
}

// A /dev/tty description on the terminal `tty`, opened by a helper
// process that takes it as its controlling terminal for that while: a
// new session (setsid), TIOCSCTTY, open("/dev/tty"); the restorer copies
// the fd (pidfd_getfd) and the helper exits, which leaves the terminal
// the controlling terminal of no session again (a pseudo-terminal is not
// hung up when its session leader exits; the SIGHUP goes to the helper's
// own group). Fails where the terminal is some session's already.
absl::StatusOr<UniqueFd> OpenDevTtyOn(int tty, int flags, const std::string& what) {
  int ready[2], go[2];
  if (pipe2(ready, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe");
  UniqueFd ready_r(ready[0]), ready_w(ready[1]);
  if (pipe2(go, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe");
  UniqueFd go_r(go[0]), go_w(go[1]);
  pid_t pid = fork();
  if (pid < 0) return ErrnoError(errno, "fork");
  if (pid == 0) {
    // Async-signal-safe calls only: the restorer may have threads.
    close(go[1]);
    close(ready[0]);
    int r = -1;
    if (setsid() < 0 || ioctl(tty, TIOCSCTTY, 0) != 0) {
      r = -errno;
    } else {
      r = open("/dev/tty", flags);
      if (r < 0) r = -errno;
    }
    if (write(ready[1], &r, sizeof(r)) != sizeof(r)) _exit(1);
    char c;
    while (read(go[0], &c, 1) < 0 && errno == EINTR) {
    }
    _exit(0);
  }
  ready_w.reset();
  go_r.reset();
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  int r = 0;
  ssize_t n = read(ready_r.get(), &r, sizeof(r));
  UniqueFd copy;
  absl::Status st;
  if (n != sizeof(r)) {
    st = absl::InternalError(absl::StrCat(what, ": the helper that opens /dev/tty said nothing"));
  } else if (r < 0) {
    st = ErrnoError(-r, what, ": opening /dev/tty on it (a helper's TIOCSCTTY and open)");
  } else if (!pidfd.valid()) {
    st = ErrnoError(errno, "pidfd_open of the helper");
  } else {
    copy.reset(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd.get(), r, 0)));
    if (!copy.valid()) st = ErrnoError(errno, what, ": pidfd_getfd of the helper's /dev/tty");
  }
  go_w.reset();
  while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
  RETURN_IF_ERROR(st);
  return copy;
}

// /dev/tty, open on the pair: a /dev/tty description on it, or where its
// terminal is some session's already (one given from outside), a
// description on the slave (fstat then shows the slave; reads, writes and
// ioctls are the same).
absl::StatusOr<UniqueFd> OpenCtty(objhash::RestoreContext&, const image::ckpt_file& rec, const std::string&,
                                  const objhash::RestoredObject* pty) {
  const auto& restored = std::any_cast<const RestoredPty&>(pty->data);
  if (restored.flags & image::kPtyCaller) return OpenOnPty(rec, pty);
  const int flags = (static_cast<int>(rec.flags) & (O_ACCMODE | O_NONBLOCK | O_APPEND | O_SYNC | O_DSYNC)) |
                    O_NOCTTY | O_CLOEXEC;
  const int tty = (restored.flags & image::kPtyExternal) ? pty->fd : pty->fd2;
  absl::StatusOr<UniqueFd> devtty = OpenDevTtyOn(tty, flags, restored.path);
  if (devtty.ok() || !(restored.flags & image::kPtyExternal)) return devtty;
  return OpenOnPty(rec, pty);
}

absl::Status CheckPty(objhash::RestoreContext&, const image::ckpt_file& rec, const std::string& path, int,
                      const struct stat& st) {
  if (!S_ISCHR(st.st_mode)) return absl::FailedPreconditionError(absl::StrCat(path, " is not a terminal"));
  (void)rec;
  return absl::OkStatus();
}

constexpr int kPtyOrder = 58;  // before the other terminals (tty.cc)

// The three kinds of description on a pair differ in what they claim and
// how they are opened again.
constexpr FdKindOps PtyKind(const char* name, uint32_t file_kind, bool (*claims)(const FdProbe&),
                            decltype(FdKindOps::open) open) {
  return {
      .name = name,
      .file_kind = file_kind,
      .order = kPtyOrder,
      .file_type = S_IFCHR,
      .seekable = false,
      .by_path = false,
      .has_target = true,
      .target_kind = kObjPty,
      .claims = claims,
      .describe = DescribePty,
      .register_target = RegisterPty,
      .open = open,
      .check = CheckPty,
  };
}

const FdKindOps kMasterKind = PtyKind("pseudo-terminal master", image::kFilePtyMaster, ClaimsMaster, OpenMaster);
const FdKindOps kSlaveKind = PtyKind("pseudo-terminal", image::kFilePtySlave, ClaimsSlave, OpenSlave);
const FdKindOps kCttyKind = PtyKind("controlling terminal (/dev/tty)", image::kFilePtyCtty, ClaimsCtty, OpenCtty);

[[maybe_unused]] const bool kRegistered =
    RegisterFdKind(&kMasterKind) && RegisterFdKind(&kSlaveKind) && RegisterFdKind(&kCttyKind) &&
    objhash::RegisterHandler({kObjPty, "PTY", image::CKPT_HDR_PTY, CheckpointPty, RestorePty});

}  // namespace
}  // namespace ckpt::fs
