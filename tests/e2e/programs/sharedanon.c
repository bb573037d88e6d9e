/*
 * Shared memory without a name: a parent and two children share a
 * MAP_SHARED|MAP_ANONYMOUS region (8 MiB, 6 MiB written), a memfd
 * ("ckpt-test", open and mapped, 3 MiB + 100 bytes, 2 MiB written) and a
 * memfd that is only mapped (its fd closed). Page 0 of each holds one
 * counter per process. After restore each process bumps its counters and
 * waits to see every other process's bumps arrive: the regions are still
 * shared, not copies. The memfd's fd still reads what the mappings wrote.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "subject.h"

#define MIB (1024 * 1024)
#define NPROC 3

static volatile uint64_t *anon, *named, *hidden;
static uint8_t *anon_bytes, *named_bytes;
static int mfd;

static uint8_t pattern(uint64_t off, int salt) { return (uint8_t)((off * 11 + off / 4096 + salt) & 0xff); }

static int wait_for(volatile uint64_t *slot, uint64_t want) {
  for (int i = 0; i < 5000; i++) {
    if (*slot == want) return 1;
    usleep(1000);
  }
  return 0;
}

/* Bumps this process's counters and waits for everyone else's. */
static int bump_and_check(int me) {
  int ok = 1;
  anon[me * 8] = 100 + me + 1;
  named[me * 8] = 200 + me + 1;
  hidden[me * 8] = 300 + me + 1;
  for (int i = 0; i < NPROC; i++) {
    if (!wait_for(&anon[i * 8], 100 + i + 1)) { printf("FAIL: %d: anon slot %d\n", me, i); ok = 0; }
    if (!wait_for(&named[i * 8], 200 + i + 1)) { printf("FAIL: %d: memfd slot %d\n", me, i); ok = 0; }
    if (!wait_for(&hidden[i * 8], 300 + i + 1)) { printf("FAIL: %d: mapped-only memfd slot %d\n", me, i); ok = 0; }
    uint64_t via_fd = 0;
    if (pread(mfd, &via_fd, 8, i * 64) != 8 || via_fd != 200 + (uint64_t)i + 1) {
      printf("FAIL: %d: the memfd's fd reads %lu in slot %d\n", me, (unsigned long)via_fd, i);
      ok = 0;
    }
  }
  return ok;
}

int main(void) {
  subject_install();
  anon_bytes = mmap(NULL, 8 * MIB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  mfd = memfd_create("ckpt-test", 0);
  int hfd = memfd_create("mapped-only", 0);
  if (anon_bytes == MAP_FAILED || mfd < 0 || hfd < 0 || ftruncate(mfd, 3 * MIB + 100) != 0 ||
      ftruncate(hfd, MIB) != 0) {
    printf("FAIL: setup: %s\n", strerror(errno));
    return 1;
  }
  named_bytes = mmap(NULL, 3 * MIB + 100, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  hidden = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_SHARED, hfd, 0);
  close(hfd);
  if (named_bytes == MAP_FAILED || hidden == MAP_FAILED) {
    printf("FAIL: mmap: %s\n", strerror(errno));
    return 1;
  }
  for (uint64_t i = 4096; i < 6 * MIB; i++) anon_bytes[i] = pattern(i, 1);
  for (uint64_t i = 4096; i < 2 * MIB; i++) named_bytes[i] = pattern(i, 2);
  anon = (volatile uint64_t *)anon_bytes;
  named = (volatile uint64_t *)named_bytes;

  pid_t kids[NPROC - 1];
  for (int k = 1; k < NPROC; k++) {
    pid_t pid = fork();
    if (pid == 0) {
      anon[k * 8] = 100 + k;
      named[k * 8] = 200 + k;
      hidden[k * 8] = 300 + k;
      printf("READY %d\n", getpid());
      fflush(stdout);
      subject_wait();
      int ok = bump_and_check(k);
      printf("child %d %s\n", k, ok ? "ok" : "not ok");
      fflush(stdout);
      _exit(ok ? 0 : 1);
    }
    kids[k - 1] = pid;
  }
  anon[0] = 100;
  named[0] = 200;
  hidden[0] = 300;
  for (int k = 1; k < NPROC; k++) {
    if (!wait_for(&anon[k * 8], 100 + k) || !wait_for(&hidden[k * 8], 300 + k)) {
      printf("FAIL: child %d did not start\n", k);
      return 1;
    }
  }
  subject_ready();
  subject_wait();
  for (int k = 0; k < NPROC - 1; k++) kill(kids[k], SIGUSR1);
  SUBJECT_CHECK(bump_and_check(0), "sharing broke");

  size_t bad = 0;
  for (uint64_t i = 4096; i < 8 * MIB; i++) {
    uint8_t want = i < 6 * MIB ? pattern(i, 1) : 0;
    if (anon_bytes[i] != want) bad++;
  }
  for (uint64_t i = 4096; i < 3 * MIB + 100; i++) {
    uint8_t want = i < 2 * MIB ? pattern(i, 2) : 0;
    if (named_bytes[i] != want) bad++;
  }
  SUBJECT_CHECK(bad == 0, "%zu bytes of the shared regions differ", bad);
  char link[128] = {0}, path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", mfd);
  SUBJECT_CHECK(readlink(path, link, sizeof(link) - 1) > 0 &&
                    strcmp(link, "/memfd:ckpt-test (deleted)") == 0,
                "the memfd's fd links to '%s'", link);
  struct stat st;
  SUBJECT_CHECK(fstat(mfd, &st) == 0 && st.st_size == 3 * MIB + 100, "the memfd's size is %ld",
                (long)st.st_size);
  for (int k = 0; k < NPROC - 1; k++) {
    int status;
    SUBJECT_CHECK(waitpid(kids[k], &status, 0) == kids[k] && WIFEXITED(status) &&
                      WEXITSTATUS(status) == 0,
                  "child %d did not pass", k + 1);
  }
  return subject_verdict();
}
