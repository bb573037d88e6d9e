// The post-copy engine (mm::LazyFill) against its floors, in one run:
//
//   bazel run -c opt //bench:lazy_bench -- [MIB [RUNS [FILL_CHUNK_PAGES]]]
//
// fill:  a child holds MIB of untouched private memory and its own
//        userfaultfd; the engine fills all of it from an image (a memfd of
//        distinct pages) with no touches; timed from Start to Wait.
//        Floor: process_vm_writev of the same image into a fresh child
//        mapping of the same size, 8 MiB at a time.
// fault: the engine without its background fill; the child first-touches
//        4096 random pages, timing each touch (one page a fault, no window).
//        Floor: first touches of fresh anonymous memory without uffd.
// Every run the child checks every page it has and says FAIL if one is
// wrong; medians (and min/max) of RUNS.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "lib/mm/lazy.h"

namespace {

constexpr uint64_t kPage = 4096;

int64_t Now() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

uint64_t Word(uint64_t page) { return page * 0x9e3779b97f4a7c15ull + 7; }

// A child over `pages` untouched pages at `base` (inherited), with its own
// userfaultfd when `uffd` is set. It waits for a byte, then: mode 'w'
// waits for a second byte and checks every page; mode 't' times `touches`
// first touches of random pages and sends their times, then checks those.
struct Kid {
  pid_t pid = -1;
  int to = -1, from = -1;
  int remote_uffd = -1;
};

int KidMain(uint8_t* base, uint64_t pages, bool uffd, char mode, int in, int out) {
  int fd = uffd ? static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)) : -1;
  if (uffd && fd < 0) return 2;
  if (write(out, &fd, sizeof(fd)) != sizeof(fd)) return 3;
  char c;
  if (read(in, &c, 1) != 1) return 4;
  uint64_t bad = 0;
  if (mode == 't') {
    const int n = 4096;
    std::vector<uint64_t> order(pages);
    for (uint64_t i = 0; i < pages; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), std::mt19937_64(7));
    std::vector<int64_t> ns(n);
    for (int i = 0; i < n; ++i) {
      volatile uint64_t* w = reinterpret_cast<volatile uint64_t*>(base + order[i] * kPage);
      int64_t t0 = Now();
      uint64_t v = *w;
      ns[i] = Now() - t0;
      bad += uffd ? v != Word(order[i]) : v != 0;
    }
    if (write(out, ns.data(), n * sizeof(int64_t)) != static_cast<ssize_t>(n * sizeof(int64_t))) return 5;
  } else {
    if (read(in, &c, 1) != 1) return 6;
    for (uint64_t p = 0; p < pages; ++p) {
      const uint64_t* w = reinterpret_cast<const uint64_t*>(base + p * kPage);
      bad += w[0] != Word(p) || w[511] != Word(p) + 511;
    }
  }
  return bad == 0 ? 0 : 1;
}

Kid StartKid(uint8_t* base, uint64_t pages, bool uffd, char mode) {
  int a[2], b[2];
  if (pipe(a) || pipe(b)) std::abort();
  Kid k;
  k.pid = fork();
  if (k.pid == 0) _exit(KidMain(base, pages, uffd, mode, a[0], b[1]));
  close(a[0]);
  close(b[1]);
  k.to = a[1];
  k.from = b[0];
  if (read(k.from, &k.remote_uffd, sizeof(int)) != sizeof(int)) std::abort();
  return k;
}

bool EndKid(Kid& k) {
  int status = 0;
  waitpid(k.pid, &status, 0);
  close(k.to);
  close(k.from);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

ckpt::UniqueFd TakeUffd(const Kid& k) {
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, k.pid, 0));
  int fd = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, k.remote_uffd, 0));
  close(pidfd);
  if (fd < 0) {
    std::perror("pidfd_getfd");
    std::exit(1);
  }
  return ckpt::UniqueFd(fd);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t mib = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 256;
  const int runs = argc > 2 ? std::atoi(argv[2]) : 5;
  const uint64_t chunk =
      argc > 3 ? std::strtoull(argv[3], nullptr, 10) : ckpt::mm::LazyFill::Options{}.fill_chunk_pages;
  const uint64_t pages = mib * 256;
  int image = static_cast<int>(syscall(SYS_memfd_create, "image", MFD_CLOEXEC));
  std::vector<uint8_t> buf(8 << 20);
  for (uint64_t p = 0; p < pages; p += buf.size() / kPage) {
    const uint64_t n = std::min<uint64_t>(buf.size() / kPage, pages - p);
    for (uint64_t i = 0; i < n; ++i) {
      auto* w = reinterpret_cast<uint64_t*>(buf.data() + i * kPage);
      for (int j = 0; j < 512; ++j) w[j] = Word(p + i) + j;
    }
    if (pwrite(image, buf.data(), n * kPage, static_cast<off_t>(p * kPage)) != static_cast<ssize_t>(n * kPage)) return 1;
  }
  ckpt::mm::LazyFill::Options o;
  o.fill_chunk_pages = chunk;
  o.read = [image](uint64_t off, void* b, size_t len) -> absl::Status {
    if (pread(image, b, len, static_cast<off_t>(off)) != static_cast<ssize_t>(len)) {
      return absl::DataLossError("short read");
    }
    return absl::OkStatus();
  };
  std::vector<double> fill_s, floor_s, fault_us, touch_us;
  int failures = 0;
  for (int r = 0; r <= runs; ++r) {  // run 0 warms up
    // Floor: process_vm_writev into a fresh child mapping.
    auto* base = static_cast<uint8_t*>(mmap(nullptr, pages * kPage, PROT_READ | PROT_WRITE,
                                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    Kid k = StartKid(base, pages, false, 'w');
    char go = 'g';
    (void)!write(k.to, &go, 1);
    int64_t t0 = Now();
    for (uint64_t p = 0; p < pages; p += buf.size() / kPage) {
      const uint64_t n = std::min<uint64_t>(buf.size() / kPage, pages - p);
      (void)!pread(image, buf.data(), n * kPage, static_cast<off_t>(p * kPage));
      struct iovec l = {buf.data(), n * kPage}, rm = {base + p * kPage, n * kPage};
      if (process_vm_writev(k.pid, &l, 1, &rm, 1, 0) != static_cast<ssize_t>(n * kPage)) return 1;
    }
    const double floor = (Now() - t0) / 1e9;
    (void)!write(k.to, &go, 1);
    failures += !EndKid(k);
    munmap(base, pages * kPage);
    sleep(1);

    // The engine's background fill alone.
    base = static_cast<uint8_t*>(mmap(nullptr, pages * kPage, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    k = StartKid(base, pages, true, 'w');
    const uint64_t start = reinterpret_cast<uint64_t>(base);
    t0 = Now();
    auto fill = ckpt::mm::LazyFill::Start(TakeUffd(k), {{start, start + pages * kPage}},
                                          {{start, pages, 0}}, o);
    if (!fill.ok()) {
      std::fprintf(stderr, "%s\n", fill.status().ToString().c_str());
      return 1;
    }
    absl::Status st = (*fill)->Wait();
    const double filled = (Now() - t0) / 1e9;
    (void)!write(k.to, &go, 1);
    (void)!write(k.to, &go, 1);
    failures += !EndKid(k) || !st.ok();
    munmap(base, pages * kPage);
    sleep(1);

    // First touches: through the engine's fault path, and plain.
    for (bool uffd : {true, false}) {
      base = static_cast<uint8_t*>(mmap(nullptr, pages * kPage, PROT_READ | PROT_WRITE,
                                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
      k = StartKid(base, pages, uffd, 't');
      std::unique_ptr<ckpt::mm::LazyFill> f;
      if (uffd) {
        ckpt::mm::LazyFill::Options fo = o;
        fo.no_fill = true;
        fo.fault_window_pages = 1;
        const uint64_t at = reinterpret_cast<uint64_t>(base);
        f = *ckpt::mm::LazyFill::Start(TakeUffd(k), {{at, at + pages * kPage}}, {{at, pages, 0}}, fo);
      }
      (void)!write(k.to, &go, 1);
      std::vector<int64_t> ns(4096);
      size_t got = 0;
      while (got < ns.size() * sizeof(int64_t)) {
        ssize_t n = read(k.from, reinterpret_cast<char*>(ns.data()) + got, ns.size() * sizeof(int64_t) - got);
        if (n <= 0) break;
        got += static_cast<size_t>(n);
      }
      failures += !EndKid(k);
      if (f) f->Abort();
      std::vector<double> us(ns.begin(), ns.end());
      for (double& u : us) u /= 1e3;
      (uffd ? fault_us : touch_us).push_back(Median(us));
      munmap(base, pages * kPage);
    }
    if (r == 0) continue;
    fill_s.push_back(filled);
    floor_s.push_back(floor);
    std::printf("run %d: fill %.3f s (%.2f GB/s), floor %.3f s, fault median %.1f us, plain touch %.1f us\n",
                r, filled, pages * kPage / filled / 1e9, floor, fault_us.back(), touch_us.back());
  }
  fault_us.erase(fault_us.begin());
  touch_us.erase(touch_us.begin());
  auto mm = [](const std::vector<double>& v) {
    return std::make_pair(*std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()));
  };
  std::printf("%lu MiB, fill chunks of %lu pages, medians of %d: fill %.3f s [%.3f-%.3f] = %.2f GB/s; floor (process_vm_writev) "
              "%.3f s [%.3f-%.3f]; ratio %.2f; first touch through the fault path %.1f us [%.1f-%.1f], "
              "plain %.1f us; %s\n",
              mib, chunk, runs, Median(fill_s), mm(fill_s).first, mm(fill_s).second,
              pages * kPage / Median(fill_s) / 1e9, Median(floor_s), mm(floor_s).first,
              mm(floor_s).second, Median(fill_s) / Median(floor_s), Median(fault_us),
              mm(fault_us).first, mm(fault_us).second, Median(touch_us),
              failures ? "FAIL (a child saw a wrong page)" : "every page checked: PASS");
  return failures ? 1 : 0;
}
