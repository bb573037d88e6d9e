#include "lib/task/proc.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include "gtest/gtest.h"

namespace ckpt::task {
namespace {

TEST(ProcTest, StatusOfSelf) {
  auto st = ReadProcStatus(getpid());
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->tgid, getpid());
  EXPECT_EQ(st->pid, getpid());
  EXPECT_EQ(st->ppid, getppid());
  EXPECT_FALSE(st->nspid.empty());
  EXPECT_EQ(st->nspid.back(), getpid());
  EXPECT_EQ(st->threads, 1);
}

TEST(ProcTest, StatWithAnAwkwardComm) {
  std::string line = "42 (a) b) (c) S 1 42 42 0 -1 4194560";
  for (int i = 10; i <= 52; ++i) line += " " + std::to_string(i);
  auto st = ParseProcStat(line);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->comm, "a) b) (c");
  EXPECT_EQ(st->state, 'S');
  EXPECT_EQ(st->ppid, 1);
  EXPECT_EQ(st->flags, 4194560u);
  EXPECT_EQ(st->start_code, 26u);
  EXPECT_EQ(st->exit_signal, 38);
  EXPECT_EQ(st->env_end, 51u);
  EXPECT_EQ(st->exit_code, 52);
}

TEST(ProcTest, StatRejectsShortLines) {
  EXPECT_FALSE(ParseProcStat("1 (x) S 0 1").ok());
  EXPECT_FALSE(ParseProcStat("garbage").ok());
}

TEST(ProcTest, StatusRejectsGarbage) {
  EXPECT_FALSE(ParseProcStatus("Tgid: x\nPid: 1\n").ok());
  EXPECT_FALSE(ParseProcStatus("Name: a\n").ok());
}

TEST(ProcTest, ThreadsAndChildren) {
  auto tids = ListThreads(getpid());
  ASSERT_TRUE(tids.ok());
  EXPECT_EQ(tids->front(), getpid());
  pid_t child = fork();
  if (child == 0) {
    pause();
    _exit(0);
  }
  auto kids = ListChildren(getpid());
  ASSERT_TRUE(kids.ok());
  EXPECT_NE(std::find(kids->begin(), kids->end(), child), kids->end());
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
}

}  // namespace
}  // namespace ckpt::task
