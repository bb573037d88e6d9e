// Scratch timing tool (not a benchmark): dump a heap subject of N MiB to a
// file and restore it, printing phase times.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "ckpt/ckpt.hpp"
#include "tests/e2e/harness.h"

using namespace ckpt;
using namespace ckpt::testing;

static double Ms(timespec a, timespec b) { return (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6; }

int main(int argc, char** argv) {
  std::string mib = argc > 1 ? argv[1] : "256";
  std::string path = argc > 2 ? argv[2] : "/dev/shm/bench.img";
  auto s = StartSubject("heap", {mib});
  if (!s.ok()) return 1;
  if (!WaitForOutput(*s, "READY", 60000).ok()) return 1;
  timespec t0, t1, t2;
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  Checkpointer d;
  absl::Status st = d.Dump(s->pid, fd);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  close(fd);
  if (!st.ok()) { fprintf(stderr, "%s\n", std::string(st.message()).c_str()); return 1; }
  KillAndReap(s->pid);
  printf("dump %.1f ms (freeze %.2f ms), %lu pages, %.2f GB/s\n", Ms(t0, t1), d.stats().freeze_ns / 1e6,
         d.stats().pages_written, d.stats().pages_written * 4096.0 / (Ms(t0, t1) * 1e6));
  fd = open(path.c_str(), O_RDONLY);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  Restorer r;
  auto pid = r.Restore(fd);
  clock_gettime(CLOCK_MONOTONIC, &t2);
  if (!pid.ok()) { fprintf(stderr, "%s\n", std::string(pid.status().message()).c_str()); return 1; }
  printf("restore %.1f ms, %.2f GB/s\n", Ms(t1, t2), r.stats().pages_written * 4096.0 / (Ms(t1, t2) * 1e6));
  kill(*pid, SIGUSR1);
  auto code = WaitExit(*pid);
  printf("exit %d\n", code.ok() ? *code : -1);
  return 0;
}
