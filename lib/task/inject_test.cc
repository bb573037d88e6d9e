// Syscall injection into real stopped processes: the batch runs, results
// come back, and the process resumes exactly where it was (still blocked
// in its syscall, with its signal mask as the kernel would restore it).

#include "lib/task/inject.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "lib/base/fd.h"
#include "lib/task/proc.h"
#include "lib/task/ptrace.h"
#include "lib/task/vdso.h"

namespace ckpt::task {
namespace {

int report_fd = -1;
void OnUsr1(int) { (void)!write(report_fd, "U", 1); }

// Child: reports 'R' when ready, then blocks in pause() or sigsuspend();
// writes 'E' if the call returned EINTR after the handler, and 'M' if the
// signal mask afterwards is exactly {SIGUSR2}.
pid_t StartChild(int out, bool use_sigsuspend) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  report_fd = out;
  struct sigaction sa {};
  sa.sa_handler = OnUsr1;
  sigaction(SIGUSR1, &sa, nullptr);
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  sigprocmask(SIG_SETMASK, &usr2, nullptr);
  (void)!write(out, "R", 1);
  int r;
  if (use_sigsuspend) {
    sigset_t none;
    sigemptyset(&none);
    r = sigsuspend(&none);
  } else {
    r = pause();
  }
  if (r == -1 && errno == EINTR) (void)!write(out, "E", 1);
  sigset_t now;
  sigprocmask(SIG_SETMASK, nullptr, &now);
  if (sigismember(&now, SIGUSR2) && !sigismember(&now, SIGUSR1)) (void)!write(out, "M", 1);
  _exit(0);
}

uint64_t VdsoStart(pid_t pid) {
  std::string maps = *ReadFile(absl::StrCat("/proc/", pid, "/maps"));
  size_t at = maps.find("[vdso]");
  size_t line = maps.rfind('\n', at);
  line = line == std::string::npos ? 0 : line + 1;
  return std::stoull(maps.substr(line, maps.find('-', line) - line), nullptr, 16);
}

std::string ReadAvailable(int fd) {
  std::string out;
  char c;
  while (read(fd, &c, 1) == 1) out.push_back(c);
  return out;
}

void InjectAndResume(bool use_sigsuspend) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK), 0);
  pid_t child = StartChild(p[1], use_sigsuspend);
  char c = 0;
  while (read(p[0], &c, 1) != 1) usleep(1000);
  ASSERT_EQ(c, 'R');
  usleep(20000);  // let it block

  ASSERT_TRUE(Seize(child, kSeizeOptions).ok());
  ASSERT_TRUE(Interrupt(child).ok());
  auto stop = WaitStop(child);
  ASSERT_TRUE(stop.ok() && stop->group_stop);
  auto saved = GetRegs(child);
  ASSERT_TRUE(saved.ok());
  EXPECT_EQ(saved->orig_rax, use_sigsuspend ? SYS_rt_sigsuspend : SYS_pause);
  EXPECT_EQ(static_cast<int64_t>(saved->rax), -514);  // -ERESTARTNOHAND

  Injector inj(child, child);
  ASSERT_TRUE(inj.Begin(VdsoStart(child) + *VdsoSyscallOffset()).ok());
  absl::Status st = inj.MapTrampoline();
  ASSERT_TRUE(st.ok()) << st;
  // The first resume put back the mask sigsuspend had saved.
  auto mask = GetSigmask(child);
  ASSERT_TRUE(mask.ok());
  EXPECT_EQ(*mask, 1ull << (SIGUSR2 - 1));

  SyscallBatch batch = inj.NewBatch();
  size_t getpid_i = batch.Add(SYS_getpid, {});
  uint64_t old = batch.Reserve(32);
  batch.Add(SYS_rt_sigaction, {SIGUSR1, 0, old, 8});
  st = inj.Run(batch);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(batch.ret(getpid_i), child);
  uint64_t handler;
  std::memcpy(&handler, batch.Output(old), 8);
  EXPECT_EQ(handler, reinterpret_cast<uint64_t>(&OnUsr1));

  uint64_t tramp = inj.layout().base;
  st = inj.Finish(*saved, *mask);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(Detach(child).ok());

  std::string maps = *ReadFile(absl::StrCat("/proc/", child, "/maps"));
  EXPECT_EQ(maps.find(absl::StrCat(absl::Hex(tramp), "-")), std::string::npos)
      << "trampoline still mapped";
  // Still blocked in its syscall.
  usleep(20000);
  std::string syscall = *ReadFile(absl::StrCat("/proc/", child, "/syscall"));
  EXPECT_EQ(syscall.substr(0, syscall.find(' ')),
            absl::StrCat(use_sigsuspend ? SYS_rt_sigsuspend : SYS_pause));
  EXPECT_EQ(ReadAvailable(p[0]), "");

  kill(child, SIGUSR1);
  int status;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(ReadAvailable(p[0]), "UEM");
  close(p[0]);
  close(p[1]);
}

TEST(InjectTest, PausedTaskRunsABatchAndStaysInPause) { InjectAndResume(false); }

TEST(InjectTest, SigsuspendKeepsItsMaskSemantics) { InjectAndResume(true); }

TEST(InjectTest, AFailingCallNamesItself) {
  pid_t child = fork();
  if (child == 0) {
    for (;;) pause();
  }
  usleep(10000);
  ASSERT_TRUE(Seize(child, kSeizeOptions).ok());
  ASSERT_TRUE(Interrupt(child).ok());
  ASSERT_TRUE(WaitStop(child).ok());
  Injector inj(child, child);
  ASSERT_TRUE(inj.Begin(VdsoStart(child) + *VdsoSyscallOffset()).ok());
  ASSERT_TRUE(inj.MapTrampoline().ok());
  SyscallBatch batch = inj.NewBatch();
  batch.Add(SYS_getpid, {});
  batch.Add(SYS_munmap, {1, 4096});  // unaligned: EINVAL
  batch.Add(SYS_getpid, {});
  absl::Status st = inj.Run(batch);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("injected munmap"), std::string::npos) << st;
  EXPECT_EQ(batch.ret(0), child);
  // kMayFail lets the batch go on.
  SyscallBatch lenient = inj.NewBatch();
  lenient.Add(SYS_munmap, {1, 4096}, kMayFail);
  size_t last = lenient.Add(SYS_getpid, {});
  EXPECT_TRUE(inj.Run(lenient).ok());
  EXPECT_EQ(lenient.ret(last), child);
  kill(child, SIGKILL);
  int status;
  waitpid(child, &status, __WALL);
}

}  // namespace
}  // namespace ckpt::task
