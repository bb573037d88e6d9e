/*
 * Pipes between processes:
 *  - a child wrote 60 KiB into a pipe the parent has not read;
 *  - another child is blocked in write() on a full pipe, 200 KiB to go.
 * After the restore (and SIGUSR1) the parent reads every byte, in order,
 * from both, and both children finish and exit 0.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/wait.h>

#include "subject.h"

#define UNREAD (60 * 1024)
#define BLOCKED (200 * 1024)

static unsigned char byte_at(int stream, size_t i) { return (unsigned char)(i * 31 + stream * 7 + i / 4096); }

static void write_all(int fd, int stream, size_t n) {
  static unsigned char buf[BLOCKED];
  for (size_t i = 0; i < n; i++) buf[i] = byte_at(stream, i);
  size_t at = 0;
  while (at < n) {  /* a write can be cut short (by a signal, or a freeze) */
    ssize_t w = write(fd, buf + at, n - at);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) _exit(3);
    at += (size_t)w;
  }
}

static int read_check(int fd, int stream, size_t n) {
  static unsigned char buf[BLOCKED];
  size_t at = 0;
  while (at < n) {
    ssize_t r = read(fd, buf + at, n - at);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return 0;
    at += (size_t)r;
  }
  for (size_t i = 0; i < n; i++) {
    if (buf[i] != byte_at(stream, i)) {
      printf("FAIL: stream %d byte %zu is %u, want %u\n", stream, i, buf[i], byte_at(stream, i));
      return 0;
    }
  }
  char extra;
  return read(fd, &extra, 1) == 0;  /* and then end of stream */
}

int main(void) {
  int unread[2], full[2], tuned[2];
  if (pipe(unread) || pipe(full) || pipe(tuned)) return 2;
  /* A third pipe with a larger capacity and a non-blocking read end. */
  if (fcntl(tuned[1], F_SETPIPE_SZ, 256 * 1024) < 256 * 1024) return 2;
  fcntl(tuned[0], F_SETFL, O_NONBLOCK);
  if (write(tuned[1], "tuned", 5) != 5) return 2;
  pid_t a = fork();
  if (a == 0) {
    close(tuned[0]);
    close(tuned[1]);
    close(unread[0]);
    close(full[0]);
    close(full[1]);
    write_all(unread[1], 1, UNREAD);
    close(unread[1]);
    for (;;) pause();
  }
  pid_t b = fork();
  if (b == 0) {
    close(tuned[0]);
    close(tuned[1]);
    close(unread[0]);
    close(unread[1]);
    close(full[0]);
    write_all(full[1], 2, BLOCKED);
    _exit(0);
  }
  close(unread[1]);
  close(full[1]);
  usleep(200000);  /* a's bytes are in, b is blocked on the full pipe */
  int queued = 0;
  printf("CHILDREN %d %d\n", a, b);
  subject_ready();
  subject_wait();
  SUBJECT_CHECK(read_check(unread[0], 1, UNREAD), "the 60 KiB of the first pipe");
  SUBJECT_CHECK(read_check(full[0], 2, BLOCKED), "the 200 KiB of the full pipe");
  SUBJECT_CHECK(fcntl(tuned[0], F_GETPIPE_SZ) == 256 * 1024, "capacity %d, want 256 KiB",
                fcntl(tuned[0], F_GETPIPE_SZ));
  SUBJECT_CHECK(fcntl(tuned[0], F_GETFL) & O_NONBLOCK, "the read end lost O_NONBLOCK");
  SUBJECT_CHECK(!(fcntl(tuned[1], F_GETFL) & O_NONBLOCK), "the write end gained O_NONBLOCK");
  char five[8] = {0};
  SUBJECT_CHECK(read(tuned[0], five, 8) == 5 && strcmp(five, "tuned") == 0, "the tuned pipe's bytes");
  SUBJECT_CHECK(read(tuned[0], five, 8) == -1 && errno == EAGAIN, "an empty non-blocking read");
  kill(a, SIGKILL);
  int status;
  waitpid(a, &status, 0);
  SUBJECT_CHECK(waitpid(b, &status, 0) == b && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "the blocked writer did not finish (status 0x%x)", status);
  (void)queued;
  return subject_verdict();
}
