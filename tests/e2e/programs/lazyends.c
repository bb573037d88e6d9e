/*
 * Subject for how a lazy restore ends: argv[1] MiB of private anonymous
 * memory of distinct pages, argv[2] the mode. A seccomp filter makes
 * close() of any fd >= 1024 fail with EPERM (the restore's userfaultfd
 * sits that high: what the restore injects must pass by the filter).
 * Prints READY, waits for SIGUSR1 (restored lazily meanwhile), then:
 *  - "forks": three threads fork, again and again for 1.5 s, children
 *    that check pages of their copy and that no userfaultfd is open in
 *    them; the main thread reads pages meanwhile. Then it waits (up to
 *    10 s) until it is no longer traced and has no userfaultfd open, no
 *    mapping registered (smaps "um"), and checks every page. PASS or FAIL.
 *  - "exit": exits with status 7 at once (long before its pages are in).
 *  - "forkprint": like "forks" but prints "CHILD pid" for each child (the
 *    test kills the restore midway and looks for them).
 *  - "spawn": a thread runs /bin/true with posix_spawn (vfork) again and
 *    again for 1.5 s while the main thread exits (pthread_exit: the
 *    leader a zombie while the other thread runs); that thread then checks
 *    it is not traced, has no userfaultfd and every page, and exits.
 *  - "listen": listens on 127.0.0.1 (an ephemeral port, printed as "PORT n"
 *    before READY); after SIGUSR1 accepts one client (5 s at most), reads
 *    "ping", answers "pong", then checks every page.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <spawn.h>
#include <stddef.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "subject.h"

#define PAGE 4096ul

static uint8_t *mem;
static size_t pages;
static int print_children;
static volatile int forks_bad, forks_done;

static uint64_t word_of(uint64_t page, uint64_t w) {
  return (page * 0x9E3779B97F4A7C15ull) ^ (w * 0x2545F4914F6CDD1Dull) ^ 0x5eed;
}

static int page_ok(uint64_t page) {
  const uint64_t *w = (const uint64_t *)(mem + page * PAGE);
  for (uint64_t i = 0; i < PAGE / 8; i++) {
    if (w[i] != word_of(page, i)) return 0;
  }
  return 1;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* How many fds of this process are userfaultfds. */
static int uffds_open(void) {
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL) return -1;
  int n = 0;
  struct dirent *e;
  char path[300], link[256];
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
    ssize_t len = readlink(path, link, sizeof(link) - 1);
    if (len <= 0) continue;
    link[len] = 0;
    if (strstr(link, "userfaultfd") != NULL) n++;
  }
  closedir(d);
  return n;
}

static int tracer_pid(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) return -1;
  char line[256];
  int pid = -1;
  while (fgets(line, sizeof(line), f)) {
    if (sscanf(line, "TracerPid: %d", &pid) == 1) break;
  }
  fclose(f);
  return pid;
}

/* Mappings still registered with a userfaultfd (VmFlags um). */
static int registered_vmas(void) {
  FILE *f = fopen("/proc/self/smaps", "r");
  if (f == NULL) return -1;
  char line[512];
  int n = 0;
  while (fgets(line, sizeof(line), f)) {
    if (strncmp(line, "VmFlags:", 8) == 0 && strstr(line, " um") != NULL) n++;
  }
  fclose(f);
  return n;
}

static void *forker(void *arg) {
  unsigned seed = (unsigned)(uintptr_t)arg;
  subject_block_usr1();
  const double end = now() + 1.5;
  while (now() < end) {
    const uint64_t p = rand_r(&seed) % pages;
    pid_t c = fork();
    if (c == 0) _exit(page_ok(p) && uffds_open() == 0 ? 0 : 1);
    if (c < 0) {
      __sync_fetch_and_add(&forks_bad, 1);
      break;
    }
    if (print_children) {
      printf("CHILD %d\n", c);
      fflush(stdout);
    }
    int status = 0;
    if (waitpid(c, &status, 0) != c || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      __sync_fetch_and_add(&forks_bad, 1);
    }
    __sync_fetch_and_add(&forks_done, 1);
  }
  return NULL;
}

extern char **environ;

static void *spawner(void *arg) {
  (void)arg;
  subject_block_usr1();
  const double end = now() + 1.5;
  int runs = 0, bad = 0;
  while (now() < end) {
    pid_t c;
    char *args[] = {"/bin/true", NULL};
    if (posix_spawn(&c, "/bin/true", NULL, NULL, args, environ) != 0) {
      bad++;
      break;
    }
    int status = 0;
    if (waitpid(c, &status, 0) != c || !WIFEXITED(status) || WEXITSTATUS(status) != 0) bad++;
    runs++;
  }
  SUBJECT_CHECK(bad == 0 && runs > 0, "%d of %d spawns failed", bad, runs);
  const double until = now() + 10;
  while (now() < until && (tracer_pid() != 0 || uffds_open() != 0 || registered_vmas() != 0)) usleep(1000);
  SUBJECT_CHECK(tracer_pid() == 0, "still traced by %d", tracer_pid());
  SUBJECT_CHECK(uffds_open() == 0, "%d userfaultfds still open", uffds_open());
  uint64_t wrong = 0;
  for (uint64_t p = 0; p < pages; p++) wrong += !page_ok(p);
  SUBJECT_CHECK(wrong == 0, "%llu pages wrong", (unsigned long long)wrong);
  printf("spawned %d\n", runs);
  exit(subject_verdict());
}

static int install_filter(void) {
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_close, 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
      BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 1024, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof(f) / sizeof(f[0]), f};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
  return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

int main(int argc, char **argv) {
  size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 256;
  const char *mode = argc > 2 ? argv[2] : "forks";
  print_children = strcmp(mode, "forkprint") == 0;
  pages = mib * 256;
  mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return 2;
  for (uint64_t p = 0; p < pages; p++) {
    uint64_t *w = (uint64_t *)(mem + p * PAGE);
    for (uint64_t i = 0; i < PAGE / 8; i++) w[i] = word_of(p, i);
  }
  int listener = -1;
  if (strcmp(mode, "listen") == 0) {
    listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (listener < 0 || bind(listener, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(listener, 4) != 0 ||
        getsockname(listener, (struct sockaddr *)&a, &len) != 0) {
      printf("FAIL: listen: %s\n", strerror(errno));
      return 1;
    }
    printf("PORT %d\n", ntohs(a.sin_port));
  }
  if (install_filter() != 0) {
    printf("FAIL: seccomp filter: %s\n", strerror(errno));
    return 1;
  }
  subject_ready();
  subject_wait();
  if (strcmp(mode, "exit") == 0) _exit(7);
  if (strcmp(mode, "spawn") == 0) {
    pthread_t t;
    pthread_create(&t, NULL, spawner, NULL);
    pthread_exit(NULL);
  }
  if (listener >= 0) {
    struct pollfd p = {listener, POLLIN, 0};
    SUBJECT_CHECK(poll(&p, 1, 5000) == 1, "no client came in 5 s");
    int c = accept(listener, NULL, NULL);
    char buf[8] = {0};
    SUBJECT_CHECK(c >= 0 && read(c, buf, 4) == 4 && memcmp(buf, "ping", 4) == 0, "no ping");
    SUBJECT_CHECK(c >= 0 && write(c, "pong", 4) == 4, "pong: %s", strerror(errno));
    uint64_t wrong = 0;
    for (uint64_t p = 0; p < pages; p++) wrong += !page_ok(p);
    SUBJECT_CHECK(wrong == 0, "%llu pages wrong", (unsigned long long)wrong);
    return subject_verdict();
  }

  pthread_t th[3];
  for (int i = 0; i < 3; i++) pthread_create(&th[i], NULL, forker, (void *)(uintptr_t)(17 + i));
  unsigned seed = 5;
  int bad = 0;
  for (int i = 0; i < 5000; i++) bad += !page_ok(rand_r(&seed) % pages);
  for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
  SUBJECT_CHECK(bad == 0, "%d random pages wrong", bad);
  SUBJECT_CHECK(forks_bad == 0, "%d of %d forked children saw wrong pages or a userfaultfd",
                forks_bad, forks_done);
  SUBJECT_CHECK(forks_done > 0, "no child was forked");
  const double end = now() + 10;
  while (now() < end && (tracer_pid() != 0 || uffds_open() != 0 || registered_vmas() != 0)) {
    usleep(1000);
  }
  SUBJECT_CHECK(tracer_pid() == 0, "still traced by %d", tracer_pid());
  SUBJECT_CHECK(uffds_open() == 0, "%d userfaultfds still open", uffds_open());
  SUBJECT_CHECK(registered_vmas() == 0, "%d mappings still registered", registered_vmas());
  uint64_t wrong = 0;
  for (uint64_t p = 0; p < pages; p++) wrong += !page_ok(p);
  SUBJECT_CHECK(wrong == 0, "%llu pages wrong at the end", (unsigned long long)wrong);
  printf("forked %d children\n", forks_done);
  return subject_verdict();
}
