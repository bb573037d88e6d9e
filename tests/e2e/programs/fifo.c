/*
 * A FIFO between a parent (reader) and a child (writer) with 10 KiB in
 * flight. After the restore the parent reads them, then more the child
 * writes on SIGUSR1; the FIFO is still the one at its path. argv[1] is a
 * directory.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "subject.h"

#define FIRST (10 * 1024)

int main(int argc, char **argv) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/the.fifo", argc > 1 ? argv[1] : "/tmp");
  unlink(path);
  if (mkfifo(path, 0600)) return 2;
  subject_install();
  pid_t child = fork();
  if (child == 0) {
    int w = open(path, O_WRONLY);
    char buf[FIRST];
    for (int i = 0; i < FIRST; i++) buf[i] = (char)(i % 251);
    if (write(w, buf, FIRST) != FIRST) _exit(3);
    sigset_t none;
    sigemptyset(&none);
    while (!subject_go) sigsuspend(&none);
    _exit(write(w, "later", 5) == 5 ? 0 : 4);
  }
  int r = open(path, O_RDONLY);
  usleep(100000);
  printf("CHILD %d\n", child);
  subject_ready();
  subject_wait();
  kill(child, SIGUSR1);
  char buf[FIRST + 5];
  size_t at = 0;
  while (at < sizeof(buf)) {
    ssize_t n = read(r, buf + at, sizeof(buf) - at);
    if (n <= 0) break;
    at += (size_t)n;
  }
  SUBJECT_CHECK(at == sizeof(buf), "read %zu bytes from the FIFO, want %zu", at, sizeof(buf));
  for (int i = 0; i < FIRST && at == sizeof(buf); i++) {
    if (buf[i] != (char)(i % 251)) {
      subject_fail("FIFO byte %d", i);
      break;
    }
  }
  SUBJECT_CHECK(memcmp(buf + FIRST, "later", 5) == 0, "the later bytes");
  struct stat a, b;
  fstat(r, &a);
  SUBJECT_CHECK(stat(path, &b) == 0 && a.st_ino == b.st_ino, "the fd is not on the FIFO at its path");
  int status;
  SUBJECT_CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && !WEXITSTATUS(status),
                "the writer failed");
  return subject_verdict();
}
