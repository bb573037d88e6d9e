/*
 * A unix stream socket connected to a process outside the tree: argv[1]
 * is the path of a listener the test holds. The subject connects, writes
 * "hello from the subject\n", says "SOCKFD <fd>" and READY. After SIGUSR1
 * (restored with the caller's socket in its place) it writes "after the
 * restore\n" through the same fd and expects "reply from the test\n" back.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "subject.h"

static int write_text(int fd, const char *text) {
  size_t n = strlen(text);
  return send(fd, text, n, MSG_NOSIGNAL) == (ssize_t)n;
}

int main(int argc, char **argv) {
  if (argc < 2 || strlen(argv[1]) >= sizeof(((struct sockaddr_un *)0)->sun_path)) return 2;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  strcpy(sa.sun_path, argv[1]);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
                                                                  strlen(sa.sun_path) + 1))) {
    printf("FAIL: setup: connect %s: %s\n", argv[1], strerror(errno));
    return 2;
  }
  if (!write_text(fd, "hello from the subject\n")) return 2;
  printf("SOCKFD %d\n", fd);
  subject_ready();
  subject_wait();
  struct stat st;
  SUBJECT_CHECK(fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode), "fd %d is not a socket", fd);
  SUBJECT_CHECK(write_text(fd, "after the restore\n"), "write after the restore: %s", strerror(errno));
  const char *want = "reply from the test\n";
  char buf[64] = {0};
  size_t at = 0, n = strlen(want);
  while (at < n) {
    ssize_t r = recv(fd, buf + at, n - at, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    at += (size_t)r;
  }
  SUBJECT_CHECK(at == n && memcmp(buf, want, n) == 0, "read '%s', want '%s'", buf, want);
  return subject_verdict();
}
