/*
 * A FIFO unlinked while open, with bytes in it: made with mode 0640,
 * opened O_RDWR by this process (its child shares the description),
 * written "abc", unlinked. After SIGUSR1 it is still a FIFO with no
 * links and its mode, its three bytes read back, and what the child
 * writes into it afterwards comes out here. argv[1] is a directory.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "subject.h"

int main(int argc, char **argv) {
  char path[4200];
  snprintf(path, sizeof(path), "%s/fifo", argc > 1 ? argv[1] : "/tmp");
  if (mkfifo(path, 0640) != 0) return 1;
  chmod(path, 0640);
  int fd = open(path, O_RDWR | O_NONBLOCK);
  if (fd < 0 || write(fd, "abc", 3) != 3 || unlink(path) != 0) return 1;
  subject_install();
  pid_t child = fork();
  if (child == 0) {
    subject_wait();
    _exit(write(fd, "xyz", 3) == 3 ? 0 : 1);
  }
  printf("READY %d %d\n", getpid(), child);
  fflush(stdout);
  subject_wait();

  struct stat st;
  SUBJECT_CHECK(fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode), "not a FIFO");
  SUBJECT_CHECK(st.st_nlink == 0, "%d links", (int)st.st_nlink);
  SUBJECT_CHECK((st.st_mode & 07777) == 0640, "mode %o", st.st_mode & 07777);
  char buf[8] = {0};
  SUBJECT_CHECK(read(fd, buf, sizeof(buf)) == 3 && memcmp(buf, "abc", 3) == 0, "its bytes: '%s'", buf);
  kill(child, SIGUSR1);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  SUBJECT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: status 0x%x", status);
  memset(buf, 0, sizeof(buf));
  SUBJECT_CHECK(read(fd, buf, sizeof(buf)) == 3 && memcmp(buf, "xyz", 3) == 0,
                "the child's bytes: '%s'", buf);
  return subject_verdict();
}
