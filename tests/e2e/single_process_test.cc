// End to end, one process at a time: a subject program builds its state,
// is checkpointed, killed and restored with the same PID, then checks
// itself and says PASS or FAIL.

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/image/format.h"
#include "tests/e2e/expect.h"
#include "tests/e2e/harness.h"
#include "tests/e2e/image_edit.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Checkpoint, kill, restore: the restored task has the subject's PID.
void CheckpointKillRestore(const Subject& s, const std::string& image, DumpStats* dump = nullptr,
                           const DumpOptions& options = {}) {
  DumpKillRestore(s, {s.pid}, image, dump, options);
}

// Signals the restored subject and expects its PASS.
bool PidExists(pid_t pid) { return kill(pid, 0) == 0 || errno != ESRCH; }

TEST(SingleProcessTest, HeapOf256MiBComesBackIntact) {
  absl::StatusOr<Subject> s = StartSubject("heap", {"256"});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  DumpStats stats;
  CheckpointKillRestore(*s, TempPath("heap.img"), &stats);
  EXPECT_GE(stats.pages_written, 65536u);
  EXPECT_EQ(stats.tasks, 1u);
  ExpectPass(*s);
}

// Seventy threads, each with its own mask (SIGURG blocked in half of
// them), alternate stack and tid address, a third of them in sigsuspend()
// with a temporary mask: a dump that leaves them running, then one they
// are killed and restored from, leave all of it as it was, and none of the
// dump's own SIGURGs reaches the process's handler. The dump queries the
// threads side by side, 64 at a time: this crosses a wave.
TEST(SingleProcessTest, ManyThreadsKeepMasksAltstacksAndTidAddresses) {
  absl::StatusOr<Subject> s = StartSubject("threadmasks");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  DumpOptions leave;
  leave.leave_running = true;
  ASSERT_OK(DumpToFile(s->pid, TempPath("threadmasks-live.img"), leave));
  DumpStats stats;
  CheckpointKillRestore(*s, TempPath("threadmasks.img"), &stats);
  EXPECT_EQ(stats.threads, 71u);
  ExpectPass(*s);
}

// Signal actions a thread sets while the dump is seizing the others (from
// the moment the leader is seized on) are saved as the stopped process
// has them, not as they were when the dump first looked at the process.
TEST(SingleProcessTest, ActionsSetWhileTheProcessIsFrozenAreKept) {
  absl::StatusOr<Subject> s = StartSubject("handlerrace");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  CheckpointKillRestore(*s, TempPath("handlerrace.img"));
  ExpectPass(*s);
}

// Loops of 1 ms sleeps (nanosleep, poll, a futex wait with a timeout):
// a nanosleep that ends while the dump probes it, or too short for the
// probe to tell, ends as done after the restore, not with EINTR; poll and
// the futex wait end as timed out or, now and then on a loaded machine,
// with EINTR, never otherwise. Three rounds, since where each thread is
// when the dump comes is up to chance.
TEST(SingleProcessTest, ShortSleepsEndAsDoneNotInterrupted) {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  absl::StatusOr<Subject> s = StartSubject("shortsleeps");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  for (int round = 0; round < 3; ++round) {
    CheckpointKillRestore(*s, TempPath(absl::StrCat("shortsleeps-", round, ".img")));
  }
  ExpectPass(*s);
}

TEST(SingleProcessTest, MappingsKeepProtectionsAndCopyOnWritePages) {
  absl::StatusOr<Subject> s = StartSubject("mappings", {TempPath("")});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  DumpStats stats;
  CheckpointKillRestore(*s, TempPath("mappings.img"), &stats);
  // The 64 pages read from the untouched private file mapping (and those
  // of the libraries) are not in the image; the 32 copy-on-write pages of
  // the written one are.
  EXPECT_GE(stats.pages_skipped, 64u);
  EXPECT_LT(stats.image_bytes, stats.pages_written * 4096 + 256 * 1024);
  ExpectPass(*s);
}

// madvise advice and mapping flags keep their effect: the same VmFlags
// in smaps, and a fork after the restore still wipes a WIPEONFORK region
// and leaves a DONTFORK one out.
TEST(SingleProcessTest, MemoryAdviceAndFlagsKeepTheirEffect) {
  absl::StatusOr<Subject> s = StartSubject("madvise");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  CheckpointKillRestore(*s, TempPath("madvise.img"));
  ExpectPass(*s);
}

// membarrier() registrations (private expedited, sync-core, rseq) are
// made again, and only where they were: the child that had none still
// gets EPERM.
TEST(SingleProcessTest, MembarrierRegistrationsSurvive) {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  absl::StatusOr<Subject> s = StartSubject("membarrier");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::vector<pid_t> pids = LinePids(*s, "READY");
  ASSERT_EQ(pids.size(), 2u) << ReadOutput(*s);
  ASSERT_NO_FATAL_FAILURE(DumpKillRestore(*s, pids, TempPath("membarrier.img")));
  ExpectPass(*s);
}

// A process that unmapped its [vdso] family comes back without one (the
// syscalls are injected through its C library's rt_sigreturn gadget).
TEST(SingleProcessTest, AProcessWithoutVdsoComesBackWithout) {
  absl::StatusOr<Subject> s = StartSubject("novdso.bin");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  ASSERT_NO_FATAL_FAILURE(DumpKillRestore(*s, {s->pid}, TempPath("novdso.img")));
  ExpectPass(*s);
}

TEST(SingleProcessTest, AvxSseAndX87RegistersSurvive) {
  absl::StatusOr<Subject> s = StartSubject("fpu");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  usleep(50000);  // well inside its register loop
  CheckpointKillRestore(*s, TempPath("fpu.img"));
  ExpectPass(*s);
}

TEST(SingleProcessTest, ThreadLocalStorageAndErrnoSurvive) {
  absl::StatusOr<Subject> s = StartSubject("tls");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  usleep(50000);
  CheckpointKillRestore(*s, TempPath("tls.img"));
  ExpectPass(*s);
}

void BlockedStaysBlocked(const std::string& mode, long nr) {
  absl::StatusOr<Subject> s = StartSubject("blocked", {mode});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  usleep(50000);
  ASSERT_EQ(BlockedSyscall(s->pid), nr);
  CheckpointKillRestore(*s, TempPath(mode + ".img"));
  usleep(200000);
  EXPECT_EQ(TaskState(s->pid), 'S');
  EXPECT_EQ(BlockedSyscall(s->pid), nr);
  EXPECT_THAT(ReadOutput(*s), Not(HasSubstr("PASS")));
  ExpectPass(*s);
}

TEST(SingleProcessTest, BlockedInPauseStaysBlockedUntilSignalled) {
  BlockedStaysBlocked("pause", SYS_pause);
}

TEST(SingleProcessTest, BlockedInSigsuspendStaysBlockedAndKeepsItsMask) {
  BlockedStaysBlocked("sigsuspend", SYS_rt_sigsuspend);
}

long LastCount(const std::string& out) {
  size_t at = out.rfind("COUNT ");
  return at == std::string::npos ? 0 : std::stol(out.substr(at + 6));
}

// comm comes back byte for byte, even the bytes /proc/PID/status escapes
// (newline, backslash) or trims (blanks at either end).
TEST(SingleProcessTest, NameWithBlanksNewlineAndBackslashSurvives) {
  absl::StatusOr<Subject> s = StartSubject("comm");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  DumpKillRestore(*s, {s->pid}, TempPath("comm.img"));
  ExpectPass(*s);
}

TEST(SingleProcessTest, TimeBasedCounterContinues) {
  absl::StatusOr<Subject> s = StartSubject("counter");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "COUNT 20"));
  CheckpointKillRestore(*s, TempPath("counter.img"));
  long before = LastCount(ReadOutput(*s));
  ASSERT_OK(WaitForOutput(*s, absl::StrCat("COUNT ", before + 20)));
  ExpectPass(*s);
}

// /proc/PID/stat fields 5 (pgrp) and 6 (session).
std::pair<pid_t, pid_t> GroupAndSession(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string line((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  std::string state;
  pid_t ppid, pgrp, sid;
  rest >> state >> ppid >> pgrp >> sid;
  return {pgrp, sid};
}

TEST(SingleProcessTest, SessionLeaderLeadsItsSessionAgain) {
  absl::StatusOr<Subject> s =
      StartProgram(ProgramPath("counter"), {}, /*new_session=*/true);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "COUNT 2"));
  ASSERT_EQ(GroupAndSession(s->pid), std::make_pair(s->pid, s->pid));
  CheckpointKillRestore(*s, TempPath("session.img"));
  EXPECT_EQ(GroupAndSession(s->pid), std::make_pair(s->pid, s->pid));
  ExpectPass(*s);
}

TEST(SingleProcessTest, TaskOfAForeignSessionJoinsTheRestorers) {
  absl::StatusOr<Subject> s = StartSubject("counter");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "COUNT 2"));
  CheckpointKillRestore(*s, TempPath("foreign.img"));
  EXPECT_EQ(GroupAndSession(s->pid), std::make_pair(getpgrp(), getsid(0)));
  ExpectPass(*s);
}

TEST(SingleProcessTest, LeaveRunningKeepsTheOriginalAndTheImageRestoresLater) {
  absl::StatusOr<Subject> s = StartSubject("heap", {"32"});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::string image = TempPath("leave.img");
  DumpOptions leave;
  leave.leave_running = true;
  ASSERT_OK(DumpToFile(s->pid, image, leave));
  usleep(50000);
  EXPECT_EQ(TaskState(s->pid), 'S');  // still in its sigsuspend
  ExpectPass(*s);                     // the original checks itself and exits
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_EQ(*pid, s->pid);
  ExpectPass(*s);
  std::string out = ReadOutput(*s);
  EXPECT_EQ(std::count(out.begin(), out.end(), 'P'), 2) << out;  // two PASS lines
}

TEST(SingleProcessTest, RestoreRefusesATakenPidAndLeavesNothing) {
  absl::StatusOr<Subject> s = StartSubject("counter");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "COUNT 3"));
  DumpOptions leave;
  leave.leave_running = true;
  std::string image = TempPath("taken.img");
  ASSERT_OK(DumpToFile(s->pid, image, leave));
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_FALSE(pid.ok());
  EXPECT_EQ(pid.status().code(), absl::StatusCode::kAlreadyExists) << pid.status();
  EXPECT_THAT(pid.status().message(), HasSubstr(absl::StrCat("PID ", s->pid, " is taken")));
  long before = LastCount(ReadOutput(*s));
  ASSERT_OK(WaitForOutput(*s, absl::StrCat("COUNT ", before + 5)));  // untouched, still counting
  ExpectPass(*s);
}

TEST(SingleProcessTest, RestoreRefusesAMappedFileThatChangedSize) {
  absl::StatusOr<Subject> s = StartSubject("mappings", {TempPath("")});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::string image = TempPath("changed.img");
  ASSERT_OK(DumpToFile(s->pid, image));
  KillAndReap(s->pid);
  {
    std::ofstream grow(TempPath("readonly.dat"), std::ios::app);
    grow << "one more line";
  }
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_FALSE(pid.ok());
  EXPECT_THAT(pid.status().message(),
              HasSubstr("readonly.dat changed since the dump: its size was"));
  EXPECT_FALSE(PidExists(s->pid));
}

TEST(SingleProcessTest, RestoreRefusesAMissingMappedFile) {
  absl::StatusOr<Subject> s = StartSubject("mappings", {TempPath("")});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::string image = TempPath("missing.img");
  ASSERT_OK(DumpToFile(s->pid, image));
  KillAndReap(s->pid);
  ASSERT_EQ(unlink(TempPath("written.dat").c_str()), 0);
  absl::StatusOr<pid_t> pid = RestoreFromFile(image);
  ASSERT_FALSE(pid.ok());
  EXPECT_THAT(pid.status().message(), HasSubstr("written.dat cannot be opened"));
  EXPECT_FALSE(PidExists(s->pid));
}

TEST(SingleProcessTest, RestoreRefusesAnotherVdsoLayoutAndLeavesNothing) {
  absl::StatusOr<Subject> s = StartSubject("counter");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "COUNT 2"));
  std::string image = TempPath("vdso.img");
  ASSERT_OK(DumpToFile(s->pid, image));
  KillAndReap(s->pid);
  // The same image, as if dumped on a kernel whose [vdso] is a page shorter.
  std::string edited = TempPath("vdso-edited.img");
  ASSERT_OK(RewriteImage(image, edited, [](uint32_t type, std::string* payload) {
    if (type != image::CKPT_HDR_VMA) return;
    image::ckpt_vma v;
    std::memcpy(&v, payload->data(), sizeof(v));
    if (v.kind != image::kVmaVdso) return;
    v.end -= 4096;
    std::memcpy(payload->data(), &v, sizeof(v));
  }));
  absl::StatusOr<pid_t> pid = RestoreFromFile(edited);
  ASSERT_FALSE(pid.ok());
  EXPECT_THAT(pid.status().message(), HasSubstr("vdso layouts differ"));
  EXPECT_FALSE(PidExists(s->pid));
  // The original image still restores.
  pid = RestoreFromFile(image);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ExpectPass(*s);
}

TEST(SingleProcessTest, CorruptOrTruncatedImageKillsWhatItCreated) {
  absl::StatusOr<Subject> s = StartSubject("heap", {"8"});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  std::string image = TempPath("corrupt.img");
  ASSERT_OK(DumpToFile(s->pid, image));
  KillAndReap(s->pid);
  std::string bytes;
  {
    std::ifstream in(image, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  // A flipped byte deep in the page contents: only the tail's checksum
  // can tell, after the task was built.
  std::string flipped = bytes;
  flipped[bytes.size() / 2] ^= 0x40;
  std::ofstream(TempPath("flipped.img"), std::ios::binary) << flipped;
  absl::StatusOr<pid_t> pid = RestoreFromFile(TempPath("flipped.img"));
  ASSERT_FALSE(pid.ok());
  EXPECT_THAT(pid.status().message(), HasSubstr("checksum mismatch"));
  EXPECT_FALSE(PidExists(s->pid));
  std::ofstream(TempPath("short.img"), std::ios::binary) << bytes.substr(0, bytes.size() * 2 / 3);
  pid = RestoreFromFile(TempPath("short.img"));
  ASSERT_FALSE(pid.ok());
  EXPECT_THAT(pid.status().message(), HasSubstr("truncated"));
  EXPECT_FALSE(PidExists(s->pid));
  // The file was left alone, and still restores.
  pid = RestoreFromFile(image);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ExpectPass(*s);
}

TEST(SingleProcessTest, DumpOfAMissingPidNamesIt) {
  absl::Status st = DumpToFile(999999, TempPath("none.img"));
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(st.message(), HasSubstr("task 999999 does not exist"));
}

TEST(SingleProcessTest, DumpOfATracedProcessIsRefusedAndItKeepsRunning) {
  absl::StatusOr<Subject> s = StartSubject("counter");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "COUNT 1"));
  ASSERT_EQ(ptrace(PTRACE_SEIZE, s->pid, 0, 0), 0);
  absl::Status st = DumpToFile(s->pid, TempPath("traced.img"));
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(st.message(), HasSubstr("already traced by process"));
  // Detaching needs the tracee stopped.
  ASSERT_EQ(ptrace(PTRACE_INTERRUPT, s->pid, 0, 0), 0);
  int status;
  ASSERT_EQ(waitpid(s->pid, &status, 0), s->pid);
  ASSERT_EQ(ptrace(PTRACE_DETACH, s->pid, 0, 0), 0);
  long before = LastCount(ReadOutput(*s));
  ASSERT_OK(WaitForOutput(*s, absl::StrCat("COUNT ", before + 3)));
  ExpectPass(*s);
}

TEST(SingleProcessTest, FailedDumpLeavesTheProcessRunningUntouched) {
  // fpu spins with values in registers: a failed dump must give them back.
  absl::StatusOr<Subject> s = StartSubject("fpu");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_OK(WaitForOutput(*s, "READY"));
  usleep(50000);
  // A dump into a pipe whose reader is gone fails while writing.
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  close(p[0]);
  signal(SIGPIPE, SIG_IGN);
  Checkpointer dumper;
  absl::Status st = dumper.Dump(s->pid, p[1]);
  close(p[1]);
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("Broken pipe"));
  usleep(50000);
  EXPECT_EQ(TaskState(s->pid), 'R');
  ExpectPass(*s);
}

}  // namespace
}  // namespace ckpt::testing
