/*
 * eventfds in both modes:
 *
 *   sem      EFD_SEMAPHORE|EFD_NONBLOCK|EFD_CLOEXEC, count 3
 *   wide     EFD_NONBLOCK, count 0x123456789abcdef (above 32 bits)
 *   blocking a thread blocked in read() on it (count 0)
 *
 * Prints READY once the reader is inside read(). After SIGUSR1: sem's
 * flags are as made; three reads give 1, the fourth fails EAGAIN, and
 * after a write of 2 two more reads give 1. wide reads whole once, then
 * EAGAIN. The reader is still blocked; the main thread writes 2 and the
 * reader wakes (within 5 s) with 8 bytes holding 2, and the count is 0.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>

#include "subject.h"

#define WIDE 0x123456789abcdefULL

static int blocking_fd;
static volatile pid_t reader_tid;
static volatile int reader_done;
static ssize_t reader_result;
static int reader_errno;
static uint64_t reader_value;

static void *reader(void *arg) {
  (void)arg;
  subject_block_usr1();
  reader_tid = (pid_t)syscall(SYS_gettid);
  reader_result = read(blocking_fd, &reader_value, sizeof(reader_value));
  reader_errno = errno;
  __atomic_store_n(&reader_done, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

static int in_read(pid_t tid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", tid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0;
  long nr = -1;
  int n = fscanf(f, "%ld", &nr);
  fclose(f);
  return n == 1 && nr == SYS_read;
}

static void expect_read(int fd, int64_t want, const char *what) {
  uint64_t v = 0;
  ssize_t r = read(fd, &v, sizeof(v));
  if (want < 0) {
    SUBJECT_CHECK(r < 0 && errno == EAGAIN, "%s: read %zd (value %llu), want EAGAIN", what, r, (unsigned long long)v);
  } else {
    SUBJECT_CHECK(r == 8 && v == (uint64_t)want, "%s: read %zd, value %llu (%s), want %lld", what, r,
                  (unsigned long long)v, r < 0 ? strerror(errno) : "no error", (long long)want);
  }
}

int main(void) {
  int sem = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK | EFD_CLOEXEC);
  int wide = eventfd(0, EFD_NONBLOCK);
  blocking_fd = eventfd(0, 0);
  uint64_t w = WIDE;
  if (sem < 0 || wide < 0 || blocking_fd < 0 || write(wide, &w, 8) != 8) return 2;
  subject_install();
  pthread_t th;
  pthread_create(&th, NULL, reader, NULL);
  for (int i = 0; !(reader_tid && in_read(reader_tid)); i++) {
    if (i > 2000) {
      printf("FAIL: setup: the reader is not in read()\n");
      return 2;
    }
    usleep(1000);
  }
  subject_ready();
  subject_wait();

  SUBJECT_CHECK((fcntl(sem, F_GETFL) & O_NONBLOCK) && fcntl(sem, F_GETFD) == FD_CLOEXEC,
                "the semaphore eventfd lost O_NONBLOCK or FD_CLOEXEC");
  SUBJECT_CHECK(!(fcntl(blocking_fd, F_GETFL) & O_NONBLOCK), "the blocking eventfd is non-blocking");
  expect_read(sem, 1, "semaphore, read 1");
  expect_read(sem, 1, "semaphore, read 2");
  expect_read(sem, 1, "semaphore, read 3");
  expect_read(sem, -1, "semaphore, read 4");
  uint64_t two = 2;
  SUBJECT_CHECK(write(sem, &two, 8) == 8, "semaphore: write: %s", strerror(errno));
  expect_read(sem, 1, "semaphore after a write of 2, read 1");
  expect_read(sem, 1, "semaphore after a write of 2, read 2");
  expect_read(sem, -1, "semaphore after a write of 2, read 3");
  expect_read(wide, (int64_t)WIDE, "wide count");
  expect_read(wide, -1, "wide count, read 2");

  SUBJECT_CHECK(!__atomic_load_n(&reader_done, __ATOMIC_SEQ_CST),
                "the reader returned before anything was written: %zd (%s), value %llu", reader_result,
                strerror(reader_errno), (unsigned long long)reader_value);
  SUBJECT_CHECK(write(blocking_fd, &two, 8) == 8, "blocking eventfd: write: %s", strerror(errno));
  for (int i = 0; i < 5000 && !__atomic_load_n(&reader_done, __ATOMIC_SEQ_CST); i++) usleep(1000);
  if (!__atomic_load_n(&reader_done, __ATOMIC_SEQ_CST)) {
    subject_fail("the reader did not wake within 5 s of the write");
    return subject_verdict(); /* not joined: it is stuck */
  }
  pthread_join(th, NULL);
  SUBJECT_CHECK(reader_result == 8 && reader_value == 2, "the reader woke with %zd (%s), value %llu, want 8, 2",
                reader_result, reader_result < 0 ? strerror(reader_errno) : "no error",
                (unsigned long long)reader_value);
  struct pollfd p = {.fd = blocking_fd, .events = POLLIN};
  SUBJECT_CHECK(poll(&p, 1, 0) == 0, "the blocking eventfd is still readable after its reader took the count");
  return subject_verdict();
}
