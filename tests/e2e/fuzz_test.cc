// Restore fuzzing: real images of the end-to-end subjects, rewritten one
// field at a time through hostile values (tests/e2e/image_mutants.h), each
// restored in a child of its own under a watchdog
// (tests/e2e/restore_trial.h). Every mutant must end in a clear error or a
// restore that works; never a crash, a hang, a process left behind, or a
// silent acceptance of what must be refused.
//
// CKPT_FUZZ_STRIDE=N keeps one mutant in N (the ASan build keeps one in 4
// by default); CKPT_FUZZ_VERBOSE=1 prints every mutant's outcome.

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/base/clock.h"
#include "lib/base/fd.h"
#include "lib/image/format.h"
#include "tests/e2e/expect.h"
#include "tests/e2e/harness.h"
#include "tests/e2e/image_mutants.h"
#include "tests/e2e/restore_trial.h"

namespace ckpt::testing {
namespace {

using Sel = MutantPlan::Selector;

#if defined(__SANITIZE_ADDRESS__)
constexpr uint32_t kDefaultStride = 4;
constexpr int kSlowdown = 4;
#else
constexpr uint32_t kDefaultStride = 1;
constexpr int kSlowdown = 1;
#endif
constexpr int kMustPassTimeoutMs = 5000;
constexpr uint64_t kFailuresTold = 10;

uint32_t Stride() {
  const char* s = getenv("CKPT_FUZZ_STRIDE");
  long v = s ? strtol(s, nullptr, 10) : 0;
  return v > 0 ? static_cast<uint32_t>(v) : kDefaultStride;
}

bool Verbose() {
  const char* s = getenv("CKPT_FUZZ_VERBOSE");
  return s && *s == '1';
}

struct Counts {
  uint64_t mutants = 0, refused = 0, passed = 0, ran = 0, failures = 0;
  void Count(Outcome o) {
    ++mutants;
    ++(o == Outcome::kRefused          ? refused
       : o == Outcome::kRestoredPassed ? passed
       : o == Outcome::kRestoredRan    ? ran
                                       : failures);
  }
  void Add(const Counts& o) {
    mutants += o.mutants;
    refused += o.refused;
    passed += o.passed;
    ran += o.ran;
    failures += o.failures;
  }
  std::string Line(const std::string& what) const {
    return absl::StrCat(what, ": ", mutants, " mutants, ", refused, " clear errors, ",
                        passed + ran, " successful restores (", passed, " passed their check, ",
                        ran, " ran as their image said), ", failures,
                        " failures (crash/hang/stray/silent-wrong)");
  }
};

Counts& Total() {
  static Counts total;
  return total;
}

// A subject to make an image of, and which of its records to mutate.
struct FuzzSubject {
  std::string program;
  std::vector<std::string> args;
  std::string ready = "READY";
  int ready_count = 1;
  bool new_session = false;
  int settle_ms = 0;                  // after READY, before the dump
  std::string pid_line;               // "CHILDREN": more PIDs to kill after the dump
  int go_signal = SIGUSR1;
  bool verdict_usable = true;         // see TrialSetup
  bool await_verdict = true;          // false: a verdict takes long (timers)
  bool shape_threads = true;          // false: its threads may end at any time
  // How long a restored subject has for its verdict: a mutant of its state
  // may well make it hang (a thread's clear_child_tid moved, pthread_join
  // waits forever), so such mutants get a short while; framing mutants,
  // which must pass, a long one.
  int verdict_timeout_ms = 500;
  std::string watch_dir;
  uint32_t needs_record = 0;  // the image must hold a record of this type
  MutantPlan plan;
};

// The uninstrumented build of tests/e2e/programs/NAME (see BUILD.bazel).
std::string SubjectPath(const std::string& name) {
  const char* srcdir = getenv("TEST_SRCDIR");
  const char* ws = getenv("TEST_WORKSPACE");
  std::string rel = absl::StrCat("tests/e2e/fuzz_subject_", name, ".bin");
  return srcdir && ws ? absl::StrCat(srcdir, "/", ws, "/", rel) : rel;
}

// [start, end) of every mapping of this process.
std::vector<std::pair<uint64_t, uint64_t>> OwnMappings() {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  absl::StatusOr<std::string> maps = ReadFile("/proc/self/maps");
  if (!maps.ok()) return out;
  std::istringstream in(*maps);
  std::string line;
  while (std::getline(in, line)) {
    unsigned long long lo, hi;
    if (sscanf(line.c_str(), "%llx-%llx", &lo, &hi) == 2) out.push_back({lo, hi});
  }
  return out;
}

// The dump places each task's trampoline area (TASK_ENTRY.free_area)
// where the task had nothing, at 16 TiB first: where an ASan-built
// restorer keeps its shadow. Such a restorer refuses the image ("used by
// the restoring process"), rightly; the area is moved to the next
// 16-TiB step that is free in both layouts, so that the fuzzing can go on.
// Nothing changes when the area is already free here.
void MoveFreeAreasOutOfTheRestorersWay(HeldImage* image) {
  constexpr uint64_t kArea = 16ull << 20, kStep = 0x100000000000ull, kEnd = 0x7ffffffff000ull;
  std::vector<std::pair<uint64_t, uint64_t>> used = OwnMappings();
  for (const HeldRecord& rec : image->records) {
    if (rec.type != image::CKPT_HDR_VMA || rec.payload.size() < sizeof(image::ckpt_vma)) continue;
    image::ckpt_vma v;
    std::memcpy(&v, rec.payload.data(), sizeof(v));
    used.push_back({v.start, v.end});
  }
  auto free_at = [&](uint64_t a) {
    for (const auto& [lo, hi] : used) {
      if (a < hi && lo < a + kArea) return false;
    }
    return true;
  };
  for (HeldRecord& rec : image->records) {
    if (rec.type != image::CKPT_HDR_TASK_ENTRY || rec.payload.size() < sizeof(image::ckpt_task_entry)) {
      continue;
    }
    image::ckpt_task_entry e;
    std::memcpy(&e, rec.payload.data(), sizeof(e));
    if (e.state != image::kTaskAlive || free_at(e.free_area)) continue;
    for (uint64_t a = kStep; a + kArea <= kEnd; a += kStep) {
      if (free_at(a)) {
        e.free_area = a;
        std::memcpy(rec.payload.data(), &e, sizeof(e));
        break;
      }
    }
  }
}

class FuzzTest : public ::testing::Test {
 protected:
  // Killed and failed trees leave orphans: this process adopts them and
  // reaps them, so their PIDs are free for the next restore.
  static void SetUpTestSuite() { prctl(PR_SET_CHILD_SUBREAPER, 1); }
  static void TearDownTestSuite() {
    std::cout << Total().Line("restore fuzz, all subjects") << std::endl;
  }

  // Starts the subject, dumps it, kills it: its image, and the shape of
  // its tree before the dump.
  static void MakeImage(const FuzzSubject& fs, Subject* s, HeldImage* image,
                        std::vector<TaskShape>* shape) {
    if (!fs.watch_dir.empty()) mkdir(fs.watch_dir.c_str(), 0700);
    absl::StatusOr<Subject> started = StartProgram(SubjectPath(fs.program), fs.args, fs.new_session);
    ASSERT_TRUE(started.ok()) << started.status();
    *s = *started;
    ASSERT_OK(WaitForCount(*s, fs.ready, fs.ready_count));
    if (fs.settle_ms) usleep(fs.settle_ms * 1000);
    std::vector<pid_t> pids = ReadyPids(*s);
    if (pids.empty()) pids.push_back(s->pid);
    if (!fs.pid_line.empty()) {
      for (pid_t p : LinePids(*s, fs.pid_line)) {
        if (std::find(pids.begin(), pids.end(), p) == pids.end()) pids.push_back(p);
      }
    }
    for (pid_t p : pids) {
      shape->push_back(ShapeOf(p));
      if (!fs.shape_threads) shape->back().threads = 0;
    }
    const std::string path = TempPath(fs.program + ".fuzz.img");
    ASSERT_OK(DumpToFile(s->pid, path));
    KillAndReapAll(pids);
    absl::StatusOr<HeldImage> loaded = LoadImage(path);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    *image = std::move(*loaded);
    if (fs.needs_record != 0) {
      bool found = false;
      for (const HeldRecord& rec : image->records) found |= rec.type == fs.needs_record;
      ASSERT_TRUE(found) << fs.program << ": the image has no record of type " << fs.needs_record;
    }
    MoveFreeAreasOutOfTheRestorersWay(image);
  }

  static TrialResult Try(const HeldImage& image, const Mutant* m, TrialSetup setup, int fd) {
    TrialResult r{Outcome::kCrashed, ""};
    if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0) {
      r.detail = absl::StrCat("resetting the image file: ", strerror(errno));
      return r;
    }
    HeldImage bad = m ? ApplyMutant(image, *m) : image;
    absl::Status st = WriteImage(bad, fd, m);
    if (!st.ok()) {
      r.detail = absl::StrCat("writing the image: ", st.ToString());
      return r;
    }
    if (m != nullptr) {
      setup.must_pass = m->structural && !m->must_refuse;
      setup.must_refuse = m->must_refuse;
      setup.expected_root = ImageRootPid(bad);
    }
    if (setup.must_pass) setup.verdict_timeout_ms = kMustPassTimeoutMs * kSlowdown;
    return RunRestoreTrial(fd, setup);
  }

  void Fuzz(const FuzzSubject& fs) {
    Subject s;
    HeldImage image;
    std::vector<TaskShape> shape;
    ASSERT_NO_FATAL_FAILURE(MakeImage(fs, &s, &image, &shape));
    int fd = memfd_create("fuzz-image", MFD_CLOEXEC);
    ASSERT_GE(fd, 0);
    UniqueFd image_fd(fd);
    TrialSetup base;
    base.output = s.output;
    base.go_signal = fs.go_signal;
    base.await_verdict = fs.await_verdict;
    base.verdict_usable = fs.verdict_usable;
    base.shape = shape;
    base.verdict_timeout_ms = fs.verdict_timeout_ms * kSlowdown;
    base.restore_timeout_ms = 5000 * kSlowdown;
    base.watch_dir = fs.watch_dir;

    // The image as dumped must come back whole: else nothing below means
    // anything.
    TrialSetup control = base;
    control.must_pass = true;
    control.expected_root = s.pid;
    TrialResult r = Try(image, nullptr, control, image_fd.get());
    ASSERT_EQ(r.outcome, Outcome::kRestoredPassed)
        << fs.program << ": the unchanged image: " << OutcomeName(r.outcome) << ": " << r.detail;

    const int64_t t0 = MonotonicNs();
    MutantPlan plan = fs.plan;
    plan.stride = Stride();
    Counts counts;
    std::map<std::string, int> failed;  // "VMA.start: STRAY" -> mutants
    for (const Mutant& m : EnumerateMutants(image, plan)) {
      const int64_t started = MonotonicNs();
      r = Try(image, &m, base, image_fd.get());
      counts.Count(r.outcome);
      if (IsFailure(r.outcome)) {
        // Every failure counts; the first few are told in full.
        if (counts.failures <= kFailuresTold) {
          ADD_FAILURE() << fs.program << ": " << m.Describe(image) << ": "
                        << OutcomeName(r.outcome) << ": " << r.detail;
        }
        ++failed[absl::StrCat(m.Where(image), ": ", OutcomeName(r.outcome))];
      }
      if (Verbose()) {
        std::cout << fs.program << ": " << m.Describe(image) << ": " << OutcomeName(r.outcome)
                  << " (" << (MonotonicNs() - started) / 1000000 << " ms): "
                  << r.detail.substr(0, 300) << std::endl;
      }
    }
    std::cout << counts.Line(fs.program) << " in " << (MonotonicNs() - t0) / 1000000 << " ms"
              << std::endl;
    for (const auto& [what, n] : failed) std::cout << "  failed: " << what << " x" << n << std::endl;
    Total().Add(counts);
    EXPECT_EQ(counts.failures, 0u);
  }
};

TEST_F(FuzzTest, SingleProcessImage) {
  FuzzSubject fs;
  fs.program = "heap";
  fs.args = {"1"};
  fs.plan.tail = true;
  fs.plan.selectors = {
      Sel{image::CKPT_HDR_IMAGE},       Sel{image::CKPT_HDR_TREE},
      Sel{image::CKPT_HDR_PID},         Sel{image::CKPT_HDR_TASK_ENTRY},
      Sel{image::CKPT_HDR_IPC},         Sel{image::CKPT_HDR_OBJECTS},
      Sel{image::CKPT_HDR_FILE, Section::kHeader, 2},
      Sel{image::CKPT_HDR_MAPPED_FILE, Section::kHeader, 2},
      Sel{image::CKPT_HDR_TASK},        Sel{image::CKPT_HDR_CREDS},
      Sel{image::CKPT_HDR_RLIMITS},     Sel{image::CKPT_HDR_FS},
      Sel{image::CKPT_HDR_FD, Section::kHeader, 2},
      Sel{image::CKPT_HDR_MM},
      Sel{image::CKPT_HDR_VMA, Section::kHeader, 3},
      Sel{image::CKPT_HDR_PAGE_RUNS, Section::kTasks, 2},
      Sel{image::CKPT_HDR_PAGE_DATA},   Sel{image::CKPT_HDR_SIGHAND},
      Sel{image::CKPT_HDR_SIGNALS},     Sel{image::CKPT_HDR_THREAD},
      Sel{image::CKPT_HDR_XSTATE},
  };
  Fuzz(fs);
}

TEST_F(FuzzTest, MultiThreadedImage) {
  FuzzSubject fs;
  fs.program = "threads";
  // The threads' records: each field in one of the eight, in turn.
  fs.plan.selectors = {
      Sel{image::CKPT_HDR_TASK_ENTRY},
      Sel{image::CKPT_HDR_TASK},
      Sel{image::CKPT_HDR_PID},
      Sel{image::CKPT_HDR_THREAD},
      Sel{image::CKPT_HDR_XSTATE, Section::kHeader, 2},
  };
  Fuzz(fs);
}

TEST_F(FuzzTest, TreeWithPipesImage) {
  FuzzSubject fs;
  fs.program = "pipes";
  fs.pid_line = "CHILDREN";
  fs.plan.selectors = {
      Sel{image::CKPT_HDR_TREE},
      Sel{image::CKPT_HDR_PID},
      Sel{image::CKPT_HDR_TASK_ENTRY, Section::kHeader, 3},
      Sel{image::CKPT_HDR_OBJECTS},
      Sel{image::CKPT_HDR_PIPE, Section::kHeader, 3},
      Sel{image::CKPT_HDR_FILE, Section::kHeader, 3},
      Sel{image::CKPT_HDR_TASK, Section::kHeader, 2},
      Sel{image::CKPT_HDR_FD, Section::kHeader, 3},
  };
  Fuzz(fs);
}

// Unix socket pairs of each type with queued messages, options and
// credentials, and fds in flight (pipes, a file, a socket) in their queues.
TEST_F(FuzzTest, UnixSocketPairsImage) {
  FuzzSubject fs;
  fs.program = "unix_pairs";
  fs.pid_line = "CHILDREN";
  fs.plan.selectors = {
      Sel{image::CKPT_HDR_UNIX_SOCK, Section::kHeader, 3},
      Sel{image::CKPT_HDR_UNIX_QUEUE, Section::kHeader, 3},
      Sel{image::CKPT_HDR_FILE, Section::kHeader, 2},
  };
  Fuzz(fs);
}

TEST_F(FuzzTest, UnixSocketsInFlightImage) {
  FuzzSubject fs;
  fs.program = "unix_scm";
  fs.pid_line = "CHILDREN";
  // Its file is left in the directory it is given, for every mutant.
  fs.watch_dir = TempPath("scm");
  fs.args = {fs.watch_dir};
  fs.plan.selectors = {
      Sel{image::CKPT_HDR_UNIX_SOCK, Section::kHeader, 3},
      Sel{image::CKPT_HDR_UNIX_QUEUE, Section::kHeader, 3},
      Sel{image::CKPT_HDR_FILE, Section::kHeader, 2},
  };
  Fuzz(fs);
}

// TCP listeners and connections with data queued both ways, options and a
// filter; UDP and UDP-Lite sockets with queued datagrams. Outside the
// sandbox (fuzz_host_test): their restore needs CAP_NET_ADMIN and
// CAP_NET_RAW over the network namespace.
TEST_F(FuzzTest, InetTcpImage) {
  FuzzSubject fs;
  fs.program = "inet_tcp";
  fs.pid_line = "CHILDREN";
  fs.plan.selectors = {
      Sel{image::CKPT_HDR_INET_SOCK, Section::kHeader, 3},
      Sel{image::CKPT_HDR_FILE, Section::kHeader, 1},
  };
  Fuzz(fs);
}

TEST_F(FuzzTest, InetUdpImage) {
  FuzzSubject fs;
  fs.program = "inet_udp";
  fs.plan.selectors = {
      Sel{image::CKPT_HDR_INET_SOCK, Section::kHeader, 4},
  };
  Fuzz(fs);
}

// Event objects: an epoll over a pipe, a socket, eventfds, a timerfd and a
// signalfd (oneshot, edge-triggered, a watch under a closed number); pidfds
// of a live and a reaped child.
TEST_F(FuzzTest, EpollImage) {
  FuzzSubject fs;
  fs.program = "event_loop";
  fs.plan.selectors = {
      Sel{image::CKPT_HDR_EPOLL},
      Sel{image::CKPT_HDR_EPOLL_ITEM, Section::kHeader, 8},
      Sel{image::CKPT_HDR_EVENTFD, Section::kHeader, 2},
      Sel{image::CKPT_HDR_SIGNALFD},
  };
  Fuzz(fs);
}

TEST_F(FuzzTest, PidfdImage) {
  FuzzSubject fs;
  fs.program = "event_pidfd";
  fs.pid_line = "CHILDREN";
  fs.plan.selectors = {
      Sel{image::CKPT_HDR_FILE, Section::kHeader, 6},
  };
  Fuzz(fs);
}

// fanotify marks of every kind, and inotify watches: outside the sandbox
// (fuzz_host_test): fanotify_init needs CAP_SYS_ADMIN, and the dump opens
// the watched inodes by file handle.
TEST_F(FuzzTest, NotifyImage) {
  FuzzSubject fs;
  fs.program = "event_fanotify";
  fs.watch_dir = TempPath("fan");
  fs.args = {fs.watch_dir};
  fs.plan.selectors = {
      Sel{image::CKPT_HDR_FANOTIFY},
      Sel{image::CKPT_HDR_FANOTIFY_MARK, Section::kHeader, 4},
  };
  Fuzz(fs);
}

TEST_F(FuzzTest, NotifyInotifyImage) {
  FuzzSubject fs;
  fs.program = "event_inotify";
  // A wrong watch makes it wait for events that never come (a second at
  // most) before its verdict and its clean-up.
  fs.verdict_timeout_ms = 3000;
  fs.watch_dir = TempPath("ino");
  fs.args = {fs.watch_dir};
  fs.plan.selectors = {
      Sel{image::CKPT_HDR_INOTIFY},
      Sel{image::CKPT_HDR_INOTIFY_WATCH, Section::kHeader, 2},
  };
  Fuzz(fs);
}

// Netlink sockets: port ids, groups, options.
TEST_F(FuzzTest, NetlinkImage) {
  FuzzSubject fs;
  fs.program = "netlink";
  fs.plan.selectors = {
      Sel{image::CKPT_HDR_NETLINK_SOCK, Section::kHeader, 3},
  };
  Fuzz(fs);
}

// A pseudo-terminal pair with bytes queued both ways and every mode.
TEST_F(FuzzTest, TerminalPairImage) {
  FuzzSubject fs;
  fs.program = "pty_pair";
  fs.args = {"raw"};
  fs.needs_record = image::CKPT_HDR_PTY;
  fs.verdict_timeout_ms = 1500;  // it reads each queue until 200 ms of quiet
  fs.plan.selectors = {
      Sel{image::CKPT_HDR_PTY},
      Sel{image::CKPT_HDR_FILE, Section::kObjects, 2},
  };
  Fuzz(fs);
}

TEST_F(FuzzTest, SessionsAndGroupsImage) {
  FuzzSubject fs;
  fs.program = "tree";
  fs.new_session = true;
  fs.ready_count = 5;
  // It checks its root's parent, which is the restoring child here.
  fs.verdict_usable = false;
  fs.plan.selectors = {
      Sel{image::CKPT_HDR_TREE},
      Sel{image::CKPT_HDR_PID},
      Sel{image::CKPT_HDR_TASK_ENTRY, Section::kHeader, 3},
  };
  Fuzz(fs);
}

TEST_F(FuzzTest, ZombiesImage) {
  FuzzSubject fs;
  fs.program = "zombie";
  fs.pid_line = "ZOMBIES";
  fs.plan.selectors = {
      Sel{image::CKPT_HDR_TREE},
      Sel{image::CKPT_HDR_PID},
      Sel{image::CKPT_HDR_TASK_ENTRY, Section::kHeader, 3},
  };
  Fuzz(fs);
}

TEST_F(FuzzTest, SignalsAndTimersImage) {
  FuzzSubject fs;
  fs.program = "sigstate";
  fs.settle_ms = 200;
  fs.go_signal = SIGWINCH;
  // Its check takes most of a second: mutants of its state are only
  // required to run; framing mutants still have to pass.
  fs.await_verdict = false;
  fs.plan.selectors = {
      Sel{image::CKPT_HDR_TIMERFD},
      Sel{image::CKPT_HDR_FILE},
      Sel{image::CKPT_HDR_SIGHAND},
      Sel{image::CKPT_HDR_SIGNALS},
      Sel{image::CKPT_HDR_SIGINFO},
      Sel{image::CKPT_HDR_POSIX_TIMER},
  };
  Fuzz(fs);
}

TEST_F(FuzzTest, InterruptedSleepsImage) {
  FuzzSubject fs;
  fs.program = "sleeps";
  fs.args = {TempPath("sleeps.fuzz.times")};  // never written: its verdict is not awaited
  fs.settle_ms = 100;
  fs.verdict_usable = false;  // it wants the times of the dump and the restore
  fs.shape_threads = false;   // a sleep that ends with EINTR ends its thread
  fs.plan.selectors = {
      Sel{image::CKPT_HDR_RESTART, Section::kHeader, 2},
      Sel{image::CKPT_HDR_THREAD},
  };
  Fuzz(fs);
}

TEST_F(FuzzTest, DeletedFileImage) {
  FuzzSubject fs;
  fs.program = "deleted";
  fs.watch_dir = TempPath("ghosts");
  fs.args = {fs.watch_dir};
  fs.plan.selectors = {
      Sel{image::CKPT_HDR_GHOST},
      Sel{image::CKPT_HDR_PAGE_RUNS},
      Sel{image::CKPT_HDR_PAGE_DATA},
      Sel{image::CKPT_HDR_FILE, Section::kHeader, 2},
      Sel{image::CKPT_HDR_MAPPED_FILE, Section::kHeader, 2},
  };
  Fuzz(fs);
}

TEST_F(FuzzTest, SharedMemoryImage) {
  FuzzSubject fs;
  fs.program = "sharedanon";
  fs.ready_count = 3;
  fs.plan.selectors = {
      Sel{image::CKPT_HDR_SHMEM, Section::kHeader, 2},
      Sel{image::CKPT_HDR_PAGE_RUNS, Section::kObjects, 2},
      Sel{image::CKPT_HDR_FILE},
      Sel{image::CKPT_HDR_VMA},
  };
  Fuzz(fs);
}

// Children forked from their restored parent, keeping the pages they
// share (INHERITED). Frame numbers need the host's user namespace: this
// one runs in fuzz_host_test.
TEST_F(FuzzTest, CopyOnWriteTreeImage) {
  FuzzSubject fs;
  fs.program = "cow";
  fs.args = {"1024"};
  fs.pid_line = "READY";  // the whole tree
  fs.needs_record = image::CKPT_HDR_INHERITED;
  fs.plan.selectors = {
      Sel{image::CKPT_HDR_TASK_ENTRY, Section::kHeader, 3},
      Sel{image::CKPT_HDR_INHERITED, Section::kTasks, 3},
      Sel{image::CKPT_HDR_MM, Section::kTasks, 2},
      Sel{image::CKPT_HDR_VMA, Section::kTasks, 4},
      Sel{image::CKPT_HDR_PAGE_RUNS, Section::kTasks, 2},
  };
  Fuzz(fs);
}

}  // namespace
}  // namespace ckpt::testing
