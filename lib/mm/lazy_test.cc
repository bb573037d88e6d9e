// The lazy fill engine on a real process: a forked child makes the
// userfaultfd of its own memory (as a restored task would), this process
// takes it with pidfd_getfd and fills the child's pages from an "image"
// (a memfd of distinct pages) while the child's threads touch them in
// random order, write some, drop some (MADV_DONTNEED), unmap some, move
// some (mremap) and fork. The child checks every page it can see and
// exits 0 only if all are right.

#include "lib/mm/lazy.h"
#include "lib/mm/maps.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>

#include "gtest/gtest.h"

namespace ckpt::mm {
namespace {

constexpr uint64_t kPage = 4096;

uint64_t Word(uint64_t page, uint64_t word) { return (page * 0x9e3779b97f4a7c15ull) ^ (word * 0x2545f4914f6cdd1dull) ^ 0x5a5a; }

// Page `page` of the image: distinct words.
void FillImagePage(uint64_t page, uint8_t* out) {
  auto* w = reinterpret_cast<uint64_t*>(out);
  for (uint64_t i = 0; i < kPage / 8; ++i) w[i] = Word(page, i);
}

bool PageIsImage(const uint8_t* p, uint64_t page) {
  const auto* w = reinterpret_cast<const uint64_t*>(p);
  for (uint64_t i = 0; i < kPage / 8; ++i) {
    if (w[i] != Word(page, i)) return false;
  }
  return true;
}

bool PageIsZero(const uint8_t* p) {
  for (uint64_t i = 0; i < kPage; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

struct Child {
  uint8_t* base;
  uint64_t pages;
  int failures = 0;
};

struct Toucher {
  Child* c;
  unsigned seed;
  int bad = 0;
};

void* Touch(void* arg) {
  auto* t = static_cast<Toucher*>(arg);
  std::mt19937_64 rng(t->seed);
  // Only the first half: the second half is dropped, unmapped and moved.
  const uint64_t half = t->c->pages / 2;
  for (int i = 0; i < 3000; ++i) {
    uint64_t page = rng() % half;
    if (page >= 1 && (page - 1) % 97 == 0) continue;  // written by the child
    if (!PageIsImage(t->c->base + page * kPage, page)) ++t->bad;
  }
  return nullptr;
}

// The child's part; returns its exit code (0: every check passed).
// Pages [kSplit, kSplit + 5) are read-only: their VMA is split in three
// (as by an mprotect after the registration), and one UFFDIO_COPY may not
// cross the edges.
constexpr uint64_t kSplit = 301;

int RunChildChecks(uint8_t* base, uint64_t pages, int to_parent, int from_parent);

int RunChild(uint8_t* base, uint64_t pages, int to_parent, int from_parent) {
  int code = RunChildChecks(base, pages, to_parent, from_parent);
  // Then it waits, alive, while the parent ends the fill and looks at its
  // map; then touches a dropped page once more (no longer registered: a
  // plain zero page, not a fault that no one answers).
  if (write(to_parent, &code, sizeof(code)) != sizeof(code)) return 20;
  char done;
  if (read(from_parent, &done, 1) != 1) return 21;
  const uint64_t half = pages / 2;
  uint8_t* drop = base + (half + 10) * kPage;
  if (madvise(drop, kPage, MADV_DONTNEED) != 0 || !PageIsZero(drop)) return 22;
  return code;
}

int RunChildChecks(uint8_t* base, uint64_t pages, int to_parent, int from_parent) {
  int uffd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (uffd < 0) return 10;
  if (mprotect(base + kSplit * kPage, 5 * kPage, PROT_READ) != 0) return 17;
  if (write(to_parent, &uffd, sizeof(uffd)) != sizeof(uffd)) return 11;
  char go;
  if (read(from_parent, &go, 1) != 1) return 12;
  Child c{base, pages};
  int fails = 0;
  // Writes first: a write fault fills the page, then the write lands.
  const uint64_t half = pages / 2;
  for (uint64_t p = 1; p < half; p += 97) {
    base[p * kPage] = 0xEE;
  }
  // Four threads read random pages of the first half while the fill runs.
  Toucher t[4];
  pthread_t th[4];
  for (int i = 0; i < 4; ++i) {
    t[i] = {&c, 1234u + i};
    pthread_create(&th[i], nullptr, Touch, &t[i]);
  }
  // Meanwhile: drop a range of the second half (zeros from then on, never
  // the image's), unmap another, move a third.
  uint8_t* drop = base + (half + 10) * kPage;
  if (madvise(drop, 32 * kPage, MADV_DONTNEED) != 0) return 13;
  uint8_t* gone = base + (half + 100) * kPage;
  if (munmap(gone, 16 * kPage) != 0) return 14;
  uint8_t* from = base + (half + 200) * kPage;
  void* to = mmap(nullptr, 64 * kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (to == MAP_FAILED) return 15;
  void* moved = mremap(from, 64 * kPage, 64 * kPage, MREMAP_MAYMOVE | MREMAP_FIXED, to);
  if (moved != to) return 16;
  // A range moved and grown: its first 8 pages keep their contents, the 8
  // new ones (registered too, which the REMAP event does not say) read as
  // zeros.
  auto* grown = static_cast<uint8_t*>(
      mremap(base + (half + 500) * kPage, 8 * kPage, 16 * kPage, MREMAP_MAYMOVE));
  if (grown == MAP_FAILED) return 18;
  for (uint64_t p = 8; p < 16; ++p) fails += !PageIsZero(grown + p * kPage);
  // A fork: the grandchild sees the pages as they are, pending or not.
  pid_t g = fork();
  if (g == 0) {
    int bad = 0;
    for (uint64_t p = half + 300; p < half + 400; ++p) bad += !PageIsImage(base + p * kPage, p);
    for (uint64_t p = 0; p < 64; ++p) {
      bad += !PageIsImage(static_cast<uint8_t*>(moved) + p * kPage, half + 200 + p);
    }
    _exit(bad == 0 ? 0 : 1);
  }
  int gs = 0;
  if (g < 0 || waitpid(g, &gs, 0) != g || !WIFEXITED(gs) || WEXITSTATUS(gs) != 0) {
    std::fprintf(stderr, "child: grandchild saw wrong pages (status %d)\n", gs);
    ++fails;
  }
  for (int i = 0; i < 4; ++i) {
    pthread_join(th[i], nullptr);
    if (t[i].bad) {
      std::fprintf(stderr, "child: toucher %d saw %d wrong pages\n", i, t[i].bad);
      ++fails;
    }
  }
  // Every page it still has, once more.
  int wrong = 0;
  for (uint64_t p = 0; p < pages; ++p) {
    uint8_t* at = base + p * kPage;
    if (p >= half + 100 && p < half + 116) continue;  // unmapped
    if (p >= half + 200 && p < half + 264) at = static_cast<uint8_t*>(moved) + (p - half - 200) * kPage;
    if (p >= half + 500 && p < half + 508) at = grown + (p - half - 500) * kPage;
    if (p >= half + 10 && p < half + 42) {
      wrong += !PageIsZero(at);
      continue;
    }
    if (p >= 1 && p < half && (p - 1) % 97 == 0) {
      uint8_t copy[kPage];
      std::memcpy(copy, at, kPage);
      if (copy[0] != 0xEE) ++wrong;
      FillImagePage(p, copy + 0);  // compare the rest
      wrong += std::memcmp(copy + 8, at + 8, kPage - 8) != 0;
      continue;
    }
    wrong += !PageIsImage(at, p);
  }
  if (wrong) {
    std::fprintf(stderr, "child: %d wrong pages at the end\n", wrong);
    ++fails;
  }
  return fails == 0 ? 0 : 1;
}

struct Setup {
  pid_t child = -1;
  UniqueFd uffd;
  UniqueFd image;
  uint8_t* base = nullptr;
  uint64_t pages = 0;
  int go = -1;
  int up = -1;
};

// Maps `pages` untouched pages (the child inherits them, still missing),
// writes the image, forks the child and takes its userfaultfd.
void StartChild(uint64_t pages, Setup* s) {
  s->pages = pages;
  s->base = static_cast<uint8_t*>(
      mmap(nullptr, pages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(s->base, MAP_FAILED);
  s->image.reset(static_cast<int>(syscall(SYS_memfd_create, "image", MFD_CLOEXEC)));
  ASSERT_GE(s->image.get(), 0);
  std::vector<uint8_t> page(kPage);
  for (uint64_t p = 0; p < pages; ++p) {
    FillImagePage(p, page.data());
    ASSERT_EQ(pwrite(s->image.get(), page.data(), kPage, static_cast<off_t>(p * kPage)),
              static_cast<ssize_t>(kPage));
  }
  int up[2], down[2];
  ASSERT_EQ(pipe(up), 0);
  ASSERT_EQ(pipe(down), 0);
  s->child = fork();
  ASSERT_GE(s->child, 0);
  if (s->child == 0) {
    close(up[0]);
    close(down[1]);
    _exit(RunChild(s->base, pages, up[1], down[0]));
  }
  close(up[1]);
  close(down[0]);
  s->go = down[1];
  int remote = -1;
  ASSERT_EQ(read(up[0], &remote, sizeof(remote)), static_cast<ssize_t>(sizeof(remote)));
  s->up = up[0];
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, s->child, 0));
  ASSERT_GE(pidfd, 0);
  s->uffd.reset(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, remote, 0)));
  close(pidfd);
  ASSERT_GE(s->uffd.get(), 0) << "pidfd_getfd: " << std::strerror(errno);
}

LazyFill::Options ImageReader(int image) {
  LazyFill::Options o;
  o.read = [image](uint64_t off, void* buf, size_t len) -> absl::Status {
    ssize_t n = pread(image, buf, len, static_cast<off_t>(off));
    if (n != static_cast<ssize_t>(len)) return absl::DataLossError("short read of the image");
    return absl::OkStatus();
  };
  return o;
}

void RunCase(uint64_t pages, bool no_fill) {
  Setup s;
  StartChild(pages, &s);
  if (::testing::Test::HasFatalFailure()) return;
  LazyFill::Options o = ImageReader(s.image.get());
  o.no_fill = no_fill;
  o.pid = s.child;
  const uint64_t start = reinterpret_cast<uint64_t>(s.base);
  absl::StatusOr<std::unique_ptr<LazyFill>> fill =
      LazyFill::Start(std::move(s.uffd), {{start, start + pages * kPage}}, {{start, pages, 0}}, o);
  ASSERT_TRUE(fill.ok()) << fill.status();
  char go = 'g';
  ASSERT_EQ(write(s.go, &go, 1), 1);
  int code = -1;
  ASSERT_EQ(read(s.up, &code, sizeof(code)), static_cast<ssize_t>(sizeof(code)));
  EXPECT_EQ(code, 0) << "the child's checks";
  if (!no_fill) {
    EXPECT_TRUE((*fill)->Wait().ok());
    EXPECT_EQ((*fill)->pending_pages(), 0u);
    // Nothing of the child is registered any more: not the split parts,
    // not the moved range, not the part mremap grew.
    absl::StatusOr<std::vector<Vma>> vmas = ReadVmas(s.child);
    ASSERT_TRUE(vmas.ok()) << vmas.status();
    for (const Vma& v : *vmas) {
      EXPECT_FALSE(v.vm_flags & kVmUffd) << std::hex << v.start << "-" << v.end << " still registered";
    }
  }
  ASSERT_EQ(write(s.go, &go, 1), 1);
  int status = 0;
  ASSERT_EQ(waitpid(s.child, &status, 0), s.child);
  LazyStats st = (*fill)->stats();
  std::printf("pages %lu: faults %lu (pages %lu), fill %lu, zeros %lu, events %lu, slowest fault "
              "%.1f us, mean %.1f us\n",
              pages, st.faults, st.fault_pages, st.fill_pages, st.zero_pages, st.events,
              st.fault_ns_max / 1e3, st.faults ? st.fault_ns_total / 1e3 / st.faults : 0.0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  if (no_fill) {
    // The child is gone: what it never touched stays pending.
    (*fill)->Abort();
  }
  EXPECT_GT(st.faults, 0u);
  EXPECT_GE(st.events, 3u);  // remove, unmap (twice: munmap, mremap's old range), remap, fork
  close(s.go);
  close(s.up);
  munmap(s.base, pages * kPage);
}

TEST(LazyFillTest, PagesTouchedDroppedMovedAndForkedWhileTheFillRunsAreRight) {
  RunCase(16384, /*no_fill=*/false);  // 64 MiB
}

TEST(LazyFillTest, WithoutTheBackgroundFillEveryTouchedPageIsServedByTheFaultPath) {
  RunCase(4096, /*no_fill=*/true);
}

TEST(LazyFillTest, RunsOutsideTheRegisteredVmasAreRefused) {
  int uffd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  ASSERT_GE(uffd, 0);
  LazyFill::Options o;
  o.read = [](uint64_t, void*, size_t) { return absl::OkStatus(); };
  absl::StatusOr<std::unique_ptr<LazyFill>> fill =
      LazyFill::Start(UniqueFd(uffd), {{0x100000, 0x200000}}, {{0x1ff000, 2, 0}}, o);
  EXPECT_FALSE(fill.ok());
  EXPECT_NE(fill.status().message().find("not inside one registered VMA"), std::string::npos)
      << fill.status();
}

}  // namespace
}  // namespace ckpt::mm
