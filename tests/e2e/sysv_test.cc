// SysV IPC end to end: shared segments (one removed while attached), a
// message queue and a semaphore set, in an IPC namespace of the tree's own
// or in the dumper's, and a tree that spans two IPC namespaces. The test process first enters an IPC namespace of
// its own (the "current" namespace below), so the host's is never touched.

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/image/format.h"
#include "tests/e2e/harness.h"
#include "tests/e2e/image_edit.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kMiB = 1 << 20;

ino_t IpcNs(const std::string& proc_dir) {
  struct stat st;
  if (stat((proc_dir + "/ns/ipc").c_str(), &st) != 0) return 0;
  return st.st_ino;
}

// Lines of /proc/sysvipc/shm after the header.
int SegmentCount() {
  std::ifstream in("/proc/sysvipc/shm");
  std::string line;
  int n = -1;
  while (std::getline(in, line)) ++n;
  return n;
}

struct Ids {
  int shm_a = -1, shm_b = -1, msq = -1, sem = -1;
};

Ids ReadIds(const Subject& s) {
  Ids ids;
  std::string out = ReadOutput(s);
  size_t at = out.find("IDS ");
  if (at != std::string::npos) {
    std::istringstream in(out.substr(at + 4));
    in >> ids.shm_a >> ids.shm_b >> ids.msq >> ids.sem;
  }
  return ids;
}

absl::StatusOr<pid_t> RestoreWithIpcNs(const std::string& image, IpcNamespace ns) {
  RestoreOptions options;
  options.ipc_ns = ns;
  absl::StatusOr<pid_t> root = RestoreFromFile(image, options);
  return root;
}

class SysvTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    ASSERT_EQ(unshare(CLONE_NEWIPC), 0) << strerror(errno);
  }

  // Starts the subject, waits until both its processes are set, dumps
  // (killing it) and reaps it.
  void StartAndDump(const std::string& mode, const std::string& image, DumpStats* stats = nullptr) {
    absl::StatusOr<Subject> s = StartSubject("sysvipc", {mode, "4096"});
    ASSERT_TRUE(s.ok()) << s.status();
    subject_ = *s;
    ASSERT_TRUE(WaitForCount(subject_, "READY", 2).ok()) << ReadOutput(subject_);
    ids_ = ReadIds(subject_);
    ASSERT_GE(ids_.shm_a, 0) << ReadOutput(subject_);
    absl::Status st = DumpToFile(subject_.pid, image, {}, stats);
    ASSERT_TRUE(st.ok()) << st;
    KillAndReapAll(ReadyPids(subject_));
  }

  void ExpectPass(pid_t root) {
    kill(root, SIGUSR1);
    absl::StatusOr<int> code = WaitExit(root);
    ASSERT_TRUE(code.ok()) << code.status();
    EXPECT_EQ(*code, 0) << ReadOutput(subject_);
    EXPECT_THAT(ReadOutput(subject_), HasSubstr("PASS"));
    EXPECT_THAT(ReadOutput(subject_), HasSubstr("child ok"));
  }

  Subject subject_;
  Ids ids_;
};

TEST_F(SysvTest, OwnNamespaceComesBackWithSharingQueueAndSemaphores) {
  std::string image = TempPath("sysv-own.img");
  DumpStats stats;
  ASSERT_NO_FATAL_FAILURE(StartAndDump("own", image, &stats));
  // Segment A holds ~2 MiB of pattern and is attached three times (twice
  // by the child): saved once.
  EXPECT_GT(stats.image_bytes, 2 * kMiB);
  EXPECT_LT(stats.image_bytes, 3 * kMiB) << "segment contents saved more than once?";
  const ino_t mine = IpcNs("/proc/thread-self");
  absl::StatusOr<pid_t> root = RestoreFromFile(image);
  ASSERT_TRUE(root.ok()) << root.status();
  // A fresh namespace for the tree; this thread is back in its own.
  EXPECT_EQ(IpcNs("/proc/thread-self"), mine);
  EXPECT_NE(IpcNs(absl::StrCat("/proc/", *root)), mine);
  EXPECT_EQ(SegmentCount(), 0);
  ExpectPass(*root);
}

TEST_F(SysvTest, DumpersNamespaceNeedsTheIdsFree) {
  std::string image = TempPath("sysv-host.img");
  ASSERT_NO_FATAL_FAILURE(StartAndDump("host", image));
  // A outlives its processes (it was never removed); B went with them.
  ASSERT_EQ(SegmentCount(), 1);
  absl::StatusOr<pid_t> root = RestoreFromFile(image);
  ASSERT_FALSE(root.ok());
  EXPECT_EQ(root.status().code(), absl::StatusCode::kFailedPrecondition) << root.status();
  EXPECT_THAT(root.status().message(), HasSubstr("ipcrm"));
  // The failed restore removed what it made and left no task behind.
  EXPECT_EQ(SegmentCount(), 1);
  EXPECT_NE(kill(subject_.pid, 0), 0);

  ASSERT_EQ(shmctl(ids_.shm_a, IPC_RMID, nullptr), 0);
  const ino_t mine = IpcNs("/proc/thread-self");
  root = RestoreFromFile(image);
  ASSERT_TRUE(root.ok()) << root.status();
  EXPECT_EQ(IpcNs(absl::StrCat("/proc/", *root)), mine);
  ExpectPass(*root);
  EXPECT_EQ(SegmentCount(), 0);
}

TEST_F(SysvTest, IpcNsNewOverridesTheDefault) {
  std::string image = TempPath("sysv-host-new.img");
  ASSERT_NO_FATAL_FAILURE(StartAndDump("host", image));
  ASSERT_EQ(SegmentCount(), 1);  // the original A, still here
  absl::StatusOr<pid_t> root = RestoreWithIpcNs(image, IpcNamespace::kNew);
  ASSERT_TRUE(root.ok()) << root.status();
  EXPECT_NE(IpcNs(absl::StrCat("/proc/", *root)), IpcNs("/proc/thread-self"));
  ExpectPass(*root);
  EXPECT_EQ(shmctl(ids_.shm_a, IPC_RMID, nullptr), 0);
}

TEST_F(SysvTest, CorruptSegmentRecordIsRefusedByName) {
  std::string image = TempPath("sysv-bad.img");
  ASSERT_NO_FATAL_FAILURE(StartAndDump("own", image));
  std::string bad = TempPath("sysv-bad-edited.img");
  ASSERT_TRUE(RewriteImage(image, bad, [](uint32_t type, std::string* payload) {
                if (type != image::CKPT_HDR_SHM) return;
                image::ckpt_shm shm;
                std::memcpy(&shm, payload->data(), sizeof(shm));
                shm.size = 1ull << 60;
                std::memcpy(payload->data(), &shm, sizeof(shm));
              }).ok());
  absl::StatusOr<pid_t> root = RestoreFromFile(bad);
  ASSERT_FALSE(root.ok());
  EXPECT_THAT(root.status().message(), HasSubstr("SHM"));
  EXPECT_THAT(root.status().message(), HasSubstr("'size'"));
  EXPECT_EQ(SegmentCount(), 0);
}

// Two IPC namespaces in one tree (tests/e2e/programs/ipcns.c): each an
// object of the image, each restored fresh with its own objects under the
// same keys and ids, each task back in its own.
class IpcNsTest : public SysvTest {
 protected:
  struct Pids {
    pid_t root = 0, stay = 0, moved = 0, grand = 0;
  };
  // Starts ipcns, waits for its four processes, dumps and kills it.
  void StartAndDump(const std::string& image) {
    absl::StatusOr<Subject> s = StartSubject("ipcns", {});
    ASSERT_TRUE(s.ok()) << s.status();
    subject_ = *s;
    ASSERT_TRUE(WaitForCount(subject_, "READY", 4).ok()) << ReadOutput(subject_);
    std::vector<pid_t> ns = LinePids(subject_, "NS");
    ASSERT_EQ(ns.size(), 4u) << ReadOutput(subject_);
    pids_ = {ns[0], ns[1], ns[2], ns[3]};
    ASSERT_EQ(pids_.root, subject_.pid) << ReadOutput(subject_);
    // As built: two namespaces, neither the dumper's.
    const ino_t a = IpcNs(absl::StrCat("/proc/", pids_.root));
    const ino_t b = IpcNs(absl::StrCat("/proc/", pids_.moved));
    ASSERT_NE(a, b);
    ASSERT_NE(a, IpcNs("/proc/thread-self"));
    ASSERT_EQ(IpcNs(absl::StrCat("/proc/", pids_.grand)), b);
    absl::Status st = DumpToFile(subject_.pid, image);
    ASSERT_TRUE(st.ok()) << st;
    KillAndReapAll(ReadyPids(subject_));
  }
  Pids pids_;
};

TEST_F(IpcNsTest, TwoIpcNamespacesInOneTreeComeBackEachWithItsObjects) {
  std::string image = TempPath("ipcns.img");
  ASSERT_NO_FATAL_FAILURE(StartAndDump(image));
  const ino_t mine = IpcNs("/proc/thread-self");
  absl::StatusOr<pid_t> root = RestoreFromFile(image);
  ASSERT_TRUE(root.ok()) << root.status();
  ASSERT_EQ(*root, pids_.root);
  EXPECT_EQ(IpcNs("/proc/thread-self"), mine);
  EXPECT_EQ(SegmentCount(), 0) << "the restore left its objects in this namespace";
  const ino_t a = IpcNs(absl::StrCat("/proc/", pids_.root));
  const ino_t b = IpcNs(absl::StrCat("/proc/", pids_.moved));
  EXPECT_NE(a, mine);
  EXPECT_NE(b, mine);
  EXPECT_NE(a, b);
  EXPECT_EQ(IpcNs(absl::StrCat("/proc/", pids_.stay)), a);
  EXPECT_EQ(IpcNs(absl::StrCat("/proc/", pids_.grand)), b);
  kill(*root, SIGUSR1);
  absl::StatusOr<int> code = WaitExit(*root);
  ASSERT_TRUE(code.ok()) << code.status();
  const std::string out = ReadOutput(subject_);
  EXPECT_EQ(*code, 0) << out;
  EXPECT_THAT(out, ::testing::Not(HasSubstr("FAIL"))) << out;
  size_t passes = 0;
  for (size_t at = out.find("PASS"); at != std::string::npos; at = out.find("PASS", at + 1)) ++passes;
  EXPECT_EQ(passes, 4u) << out;
}

TEST_F(IpcNsTest, IntoTheCurrentNamespaceIsRefusedRatherThanMerged) {
  std::string image = TempPath("ipcns-current.img");
  ASSERT_NO_FATAL_FAILURE(StartAndDump(image));
  absl::StatusOr<pid_t> root = RestoreWithIpcNs(image, IpcNamespace::kCurrent);
  ASSERT_FALSE(root.ok());
  EXPECT_THAT(root.status().message(), HasSubstr("2 IPC namespaces")) << root.status();
  EXPECT_EQ(SegmentCount(), 0);
  EXPECT_NE(kill(pids_.root, 0), 0);
}

// A SysV attachment whose segment is another namespace's: shmat would take
// that id in the task's own namespace, a different segment; refused.
TEST_F(IpcNsTest, AnAttachmentOfAnotherNamespacesSegmentIsRefused) {
  std::string image = TempPath("ipcns-cross.img");
  ASSERT_NO_FATAL_FAILURE(StartAndDump(image));
  std::string bad = TempPath("ipcns-cross-edited.img");
  uint32_t first_shm = 0;
  ASSERT_TRUE(RewriteImage(image, bad, [&](uint32_t type, std::string* payload) {
                if (type == image::CKPT_HDR_SHM && first_shm == 0) {
                  image::ckpt_shm shm;
                  std::memcpy(&shm, payload->data(), sizeof(shm));
                  first_shm = shm.objref;
                }
                if (type != image::CKPT_HDR_VMA) return;
                image::ckpt_vma v;
                std::memcpy(&v, payload->data(), sizeof(v));
                if (v.kind != image::kVmaSysvShm) return;
                v.file_ref = first_shm;  // every attachment names namespace A's segment
                std::memcpy(payload->data(), &v, sizeof(v));
              }).ok());
  ASSERT_NE(first_shm, 0u);
  absl::StatusOr<pid_t> root = RestoreFromFile(bad);
  ASSERT_FALSE(root.ok());
  EXPECT_THAT(root.status().message(), HasSubstr("'file_ref'")) << root.status();
  EXPECT_THAT(root.status().message(), HasSubstr("IPC namespace")) << root.status();
  EXPECT_EQ(SegmentCount(), 0);
  EXPECT_NE(kill(pids_.root, 0), 0);
}

// An image that says it holds one IPC namespace in each of its two IPC
// records: refused (else --ipc-ns current would merge them).
TEST_F(IpcNsTest, ANamespaceCountThatDoesNotMatchItsRecordsIsRefused) {
  std::string image = TempPath("ipcns-count.img");
  ASSERT_NO_FATAL_FAILURE(StartAndDump(image));
  std::string bad = TempPath("ipcns-count-edited.img");
  ASSERT_TRUE(RewriteImage(image, bad, [](uint32_t type, std::string* payload) {
                if (type != image::CKPT_HDR_IPC) return;
                image::ckpt_ipc ipc;
                std::memcpy(&ipc, payload->data(), sizeof(ipc));
                ipc.nr_namespaces = 1;
                std::memcpy(payload->data(), &ipc, sizeof(ipc));
              }).ok());
  for (IpcNamespace ns : {IpcNamespace::kAsDumped, IpcNamespace::kCurrent}) {
    absl::StatusOr<pid_t> root = RestoreWithIpcNs(bad, ns);
    ASSERT_FALSE(root.ok());
    EXPECT_THAT(root.status().message(), HasSubstr("IPC")) << root.status();
    EXPECT_THAT(root.status().message(), HasSubstr("'nr_namespaces'")) << root.status();
    EXPECT_EQ(SegmentCount(), 0);
  }
}

}  // namespace
}  // namespace ckpt::testing
