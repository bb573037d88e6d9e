// libckpt benchmarks (Google Benchmark). Run them with bench/run.sh; the
// figures go to bench/README.md.
//
//   BM_Scan            page scanning of a 1 GiB process, dense (every page
//                      written) and sparse (1 page in 64): PAGEMAP_SCAN vs
//                      /proc/PID/pagemap, in pages per second.
//   BM_Dump            dump throughput of 1 and 4 GiB dense processes into
//                      /dev/null, a pipe and a tmpfs file (--leave-running,
//                      so one process serves every repetition).
//   BM_Restore         restore throughput of the same images from tmpfs.
//   BM_SmallDumpRestore  dump + restore latency of a trivial process (a C
//                      program sleeping in a loop), image on tmpfs, through
//                      the library; BM_SmallDumpRestoreCli the same through
//                      two `ckpt` processes, BM_SpawnTwoProcesses the cost of
//                      starting two processes at all on this machine.

#include <fcntl.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <tuple>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "ckpt/ckpt.hpp"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/mm/maps.h"
#include "lib/mm/pagescan.h"
#include "tests/e2e/harness.h"

namespace ckpt::bench {
namespace {

using testing::Subject;

constexpr char kImageDir[] = "/dev/shm";

std::string BenchProgram(const std::string& name) { return "bench/programs/" + name; }

// The memory a `touch` subject fills: 0 private anonymous, 1 shared
// anonymous (MAP_SHARED|MAP_ANONYMOUS), 2 a SysV segment (in an IPC
// namespace of the subject's own).
const char* MemoryKind(int64_t kind) {
  return kind == 0 ? "private" : kind == 1 ? "shared" : "sysv";
}

// One live `touch` subject per (MiB, stride, kind), started on first use.
struct Touch {
  Subject subject;
  uint64_t start = 0, end = 0;  // its big mapping
};

Touch* GetTouch(int mib, int stride, int kind = 0) {
  static std::map<std::tuple<int, int, int>, Touch*> subjects;
  auto key = std::make_tuple(mib, stride, kind);
  if (subjects.count(key)) return subjects[key];
  absl::StatusOr<Subject> s = testing::StartProgram(
      BenchProgram("touch"), {absl::StrCat(mib), absl::StrCat(stride), MemoryKind(kind)});
  if (!s.ok() || !testing::WaitForOutput(*s, "READY", 120000).ok()) return nullptr;
  auto* t = new Touch{*s};
  absl::StatusOr<std::vector<mm::Vma>> vmas = mm::ReadVmas(s->pid);
  if (!vmas.ok()) return nullptr;
  for (const mm::Vma& v : *vmas) {
    if (v.size() >= (uint64_t(mib) << 20) && v.name.empty()) {
      t->start = v.start;
      t->end = v.end;
    }
  }
  subjects[key] = t;
  return t;
}

void BM_Scan(benchmark::State& state) {
  const bool ioctl = state.range(0);
  const int stride = static_cast<int>(state.range(1));
  Touch* t = GetTouch(1024, stride);
  if (t == nullptr || t->start == 0) return state.SkipWithError("no subject");
  auto method = ioctl ? mm::PageScanner::Method::kPagemapScan : mm::PageScanner::Method::kPagemapFile;
  absl::StatusOr<mm::PageScanner> scanner = mm::PageScanner::Open(t->subject.pid, method);
  if (!scanner.ok()) return state.SkipWithError("no scanner");
  uint64_t found = 0;
  for (auto _ : state) {
    mm::ScanResult r;
    if (!scanner->Scan(t->start, t->end, &r).ok()) return state.SkipWithError("scan failed");
    found = r.pages;
  }
  state.SetItemsProcessed(state.iterations() * ((t->end - t->start) / 4096));
  state.counters["pages_found"] = static_cast<double>(found);
  state.SetLabel(ioctl ? "PAGEMAP_SCAN" : "/proc/PID/pagemap");
}
BENCHMARK(BM_Scan)
    ->ArgNames({"ioctl", "stride"})
    ->ArgsProduct({{1, 0}, {1, 64}})
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true)
    ->Unit(benchmark::kMillisecond);

// Where a dump goes: 0 /dev/null, 1 a pipe drained by a thread, 2 a tmpfs
// file. What is dumped: MemoryKind.
void BM_Dump(benchmark::State& state) {
  const int mib = static_cast<int>(state.range(0));
  const int sink = static_cast<int>(state.range(1));
  const int kind = static_cast<int>(state.range(2));
  Touch* t = GetTouch(mib, 1, kind);
  if (t == nullptr) return state.SkipWithError("no subject");
  DumpOptions options;
  options.leave_running = true;
  uint64_t bytes = 0;
  for (auto _ : state) {
    state.PauseTiming();
    int fd = -1, drain_fd = -1;
    std::thread drain;
    if (sink == 0) {
      fd = open("/dev/null", O_WRONLY);
    } else if (sink == 1) {
      int p[2];
      if (pipe(p) != 0) return state.SkipWithError("pipe");
      fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
      fd = p[1];
      drain_fd = p[0];
      drain = std::thread([drain_fd] {
        static char buf[1 << 20];
        while (read(drain_fd, buf, sizeof(buf)) > 0) {
        }
      });
    } else {
      fd = open(absl::StrCat(kImageDir, "/bench-dump.img").c_str(),
                O_WRONLY | O_CREAT | O_TRUNC, 0600);
    }
    state.ResumeTiming();
    Checkpointer dumper(options);
    absl::Status st = dumper.Dump(t->subject.pid, fd);
    state.PauseTiming();
    close(fd);
    if (drain.joinable()) drain.join();
    if (drain_fd >= 0) close(drain_fd);
    if (!st.ok()) return state.SkipWithError(std::string(st.message()).c_str());
    bytes = dumper.stats().image_bytes;
    state.ResumeTiming();
  }
  state.SetBytesProcessed(state.iterations() * bytes);
  state.SetLabel(absl::StrCat(sink == 0 ? "/dev/null" : sink == 1 ? "pipe" : "tmpfs file", ", ",
                              MemoryKind(kind)));
}
BENCHMARK(BM_Dump)
    ->ArgNames({"MiB", "sink", "kind"})
    ->ArgsProduct({{1024, 4096}, {0, 1, 2}, {0}})
    ->Args({1024, 2, 1})
    ->Args({1024, 2, 2})
    ->Iterations(1)
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_Restore(benchmark::State& state) {
  const int mib = static_cast<int>(state.range(0));
  const int kind = static_cast<int>(state.range(1));
  std::string image = absl::StrCat(kImageDir, "/bench-restore-", mib, "-", kind, ".img");
  // The image of a subject that is then killed, so its PID is free.
  {
    absl::StatusOr<Subject> s = testing::StartProgram(
        BenchProgram("touch"), {absl::StrCat(mib), "1", MemoryKind(kind)});
    if (!s.ok() || !testing::WaitForOutput(*s, "READY", 120000).ok()) {
      return state.SkipWithError("no subject");
    }
    if (!testing::DumpToFile(s->pid, image).ok()) return state.SkipWithError("dump failed");
    testing::KillAndReap(s->pid);
  }
  uint64_t bytes = 0;
  for (auto _ : state) {
    RestoreStats stats;
    absl::StatusOr<pid_t> pid = testing::RestoreFromFile(image, &stats);
    state.PauseTiming();
    if (!pid.ok()) return state.SkipWithError(std::string(pid.status().message()).c_str());
    bytes = stats.image_bytes;
    testing::KillAndReap(*pid);
    state.ResumeTiming();
  }
  unlink(image.c_str());
  state.SetBytesProcessed(state.iterations() * bytes);
  state.SetLabel(MemoryKind(kind));
}
BENCHMARK(BM_Restore)
    ->ArgNames({"MiB", "kind"})
    ->Args({1024, 0})
    ->Args({4096, 0})
    ->Args({1024, 1})
    ->Args({1024, 2})
    ->Iterations(1)
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Each iteration dumps the sleeper (killing it) and restores it: the
// restored task is this process's child and the next iteration's subject.
void BM_SmallDumpRestore(benchmark::State& state) {
  absl::StatusOr<Subject> s = testing::StartProgram(BenchProgram("sleeper"));
  if (!s.ok() || !testing::WaitForOutput(*s, "READY").ok()) return state.SkipWithError("no subject");
  pid_t pid = s->pid;
  std::string image = absl::StrCat(kImageDir, "/bench-small.img");
  for (auto _ : state) {
    absl::Status st = testing::DumpToFile(pid, image);
    if (!st.ok()) return state.SkipWithError(std::string(st.message()).c_str());
    int status;
    waitpid(pid, &status, 0);
    absl::StatusOr<pid_t> restored = testing::RestoreFromFile(image);
    if (!restored.ok()) return state.SkipWithError(std::string(restored.status().message()).c_str());
  }
  testing::KillAndReap(pid);
  unlink(image.c_str());
}
BENCHMARK(BM_SmallDumpRestore)
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// A tree of 100 processes, or one process of 100 threads: dump time (with
// the freeze on its own) and restore time.
struct Tree {
  Subject subject;
  std::vector<pid_t> pids;  // every task
};

absl::StatusOr<Tree> StartTree(const std::string& program, int n) {
  ASSIGN_OR_RETURN(Subject s, testing::StartProgram(BenchProgram(program), {absl::StrCat(n)}));
  RETURN_IF_ERROR(testing::WaitForOutput(s, "READY", 60000));
  Tree t{s, {s.pid}};
  std::string out = testing::ReadOutput(s);
  size_t at = out.find("CHILDREN");
  if (at != std::string::npos) {
    std::istringstream in(out.substr(at + 8, out.find('\n', at) - at - 8));
    pid_t pid;
    while (in >> pid) t.pids.push_back(pid);
  }
  return t;
}

// A prefork server: 64 MiB in the parent, 8 workers. shared=1: the
// workers still share the parent's pages (copy-on-write since the fork);
// shared=0: each rewrote them (a private copy each). Image size and
// restore time, and the tree's resident memory (Pss) after the restore.
void BM_PreforkRestore(benchmark::State& state) {
  const bool shared = state.range(0);
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  absl::StatusOr<Subject> s =
      testing::StartProgram(BenchProgram("prefork"), {"64", "8", shared ? "0" : "1"});
  if (!s.ok() || !testing::WaitForOutput(*s, "READY", 60000).ok()) {
    return state.SkipWithError("no subject");
  }
  std::vector<pid_t> pids = {s->pid};
  for (pid_t p : testing::LinePids(*s, "CHILDREN")) pids.push_back(p);
  auto pss_mib = [&]() {
    double kib = 0;
    for (pid_t pid : pids) {
      absl::StatusOr<std::string> text = ReadFile(absl::StrCat("/proc/", pid, "/smaps_rollup"));
      size_t at = text.ok() ? text->find("\nPss:") : std::string::npos;
      if (at != std::string::npos) kib += strtod(text->c_str() + at + 5, nullptr);
    }
    return kib / 1024;
  };
  const double before = pss_mib();
  std::string image = absl::StrCat(kImageDir, "/bench-prefork.img");
  DumpStats stats;
  if (!testing::DumpToFile(s->pid, image, {}, &stats).ok()) return state.SkipWithError("dump");
  testing::KillAndReapAll(pids);
  double after = 0;
  for (auto _ : state) {
    absl::StatusOr<pid_t> pid = testing::RestoreFromFile(image);
    state.PauseTiming();
    if (!pid.ok()) return state.SkipWithError(std::string(pid.status().message()).c_str());
    after = pss_mib();
    testing::KillAndReapAll(pids);
    state.ResumeTiming();
  }
  unlink(image.c_str());
  state.counters["image_MiB"] = stats.image_bytes / 1048576.0;
  state.counters["pss_before_MiB"] = before;
  state.counters["pss_after_MiB"] = after;
  state.SetLabel(shared ? "workers share the parent's pages" : "workers hold private copies");
}
BENCHMARK(BM_PreforkRestore)
    ->ArgNames({"shared"})
    ->Arg(1)
    ->Arg(0)
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_TreeDump(benchmark::State& state) {
  const bool threads = state.range(0);
  absl::StatusOr<Tree> tree = StartTree(threads ? "manythreads" : "fanout", 100);
  if (!tree.ok()) return state.SkipWithError("no subject");
  DumpOptions options;
  options.leave_running = true;
  double freeze_ms = 0;
  for (auto _ : state) {
    state.PauseTiming();
    int fd = open("/dev/null", O_WRONLY);
    state.ResumeTiming();
    Checkpointer dumper(options);
    absl::Status st = dumper.Dump(tree->subject.pid, fd);
    state.PauseTiming();
    close(fd);
    if (!st.ok()) return state.SkipWithError(std::string(st.message()).c_str());
    freeze_ms = dumper.stats().freeze_ns / 1e6;
    state.ResumeTiming();
  }
  state.counters["freeze_ms"] = freeze_ms;
  state.SetLabel(threads ? "1 process, 100 threads" : "100 processes");
  testing::KillAndReapAll(tree->pids);
}
BENCHMARK(BM_TreeDump)
    ->ArgNames({"threads"})
    ->Arg(0)
    ->Arg(1)
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_TreeRestore(benchmark::State& state) {
  const bool threads = state.range(0);
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  absl::StatusOr<Tree> tree = StartTree(threads ? "manythreads" : "fanout", 100);
  if (!tree.ok()) return state.SkipWithError("no subject");
  std::string image = absl::StrCat(kImageDir, "/bench-tree.img");
  if (!testing::DumpToFile(tree->subject.pid, image).ok()) return state.SkipWithError("dump");
  testing::KillAndReapAll(tree->pids);
  for (auto _ : state) {
    absl::StatusOr<pid_t> pid = testing::RestoreFromFile(image);
    state.PauseTiming();
    if (!pid.ok()) return state.SkipWithError(std::string(pid.status().message()).c_str());
    testing::KillAndReapAll(tree->pids);
    state.ResumeTiming();
  }
  unlink(image.c_str());
  state.SetLabel(threads ? "1 process, 100 threads" : "100 processes");
}
BENCHMARK(BM_TreeRestore)
    ->ArgNames({"threads"})
    ->Arg(0)
    ->Arg(1)
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Runs argv to completion with posix_spawn; its exit status.
int Spawn(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid;
  if (posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) return -1;
  int status;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The same round trip through the CLI: `ckpt dump`, then `ckpt restore
// --detach`, each a new process. The restored task is then an orphan:
// this process is a child subreaper, so it reaps it at the next dump.
void BM_SmallDumpRestoreCli(benchmark::State& state) {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  absl::StatusOr<Subject> s = testing::StartProgram(BenchProgram("sleeper"));
  if (!s.ok() || !testing::WaitForOutput(*s, "READY").ok()) return state.SkipWithError("no subject");
  std::string pid = absl::StrCat(s->pid);
  std::string image = absl::StrCat(kImageDir, "/bench-cli.img");
  const std::string ckpt = "tools/ckpt/ckpt";
  for (auto _ : state) {
    if (Spawn({ckpt, "dump", "--pid", pid, "--image", image}) != 0) {
      return state.SkipWithError("ckpt dump failed");
    }
    int status;
    waitpid(s->pid, &status, 0);
    if (Spawn({ckpt, "restore", "--image", image, "--detach"}) != 0) {
      return state.SkipWithError("ckpt restore failed");
    }
  }
  testing::KillAndReap(s->pid);
  unlink(image.c_str());
}
BENCHMARK(BM_SmallDumpRestoreCli)
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// The floor under the CLI figure: starting two trivial processes.
void BM_SpawnTwoProcesses(benchmark::State& state) {
  for (auto _ : state) {
    Spawn({"/bin/true"});
    Spawn({"/bin/true"});
  }
}
BENCHMARK(BM_SpawnTwoProcesses)
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace ckpt::bench

BENCHMARK_MAIN();
