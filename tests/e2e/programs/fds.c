/*
 * Fd tables: a description shared by dup (fds 3 and 1005) and by fork
 * (the child's fd 3) shares its offset after the restore; O_APPEND (fd
 * 2000) and close-on-exec (fd 1005) are kept; the gaps stay closed.
 * argv[1] is a directory for the files.
 */
#include <fcntl.h>
#include <sys/wait.h>

#include "subject.h"

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "/tmp";
  char path[4096], log[4096];
  snprintf(path, sizeof(path), "%s/shared.txt", dir);
  snprintf(log, sizeof(log), "%s/append.log", dir);
  int f = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (f != 3) return 2;
  if (dup2(f, 1005) != 1005 || fcntl(1005, F_SETFD, FD_CLOEXEC)) return 2;
  int a = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
  if (dup2(a, 2000) != 2000) return 2;
  close(a);
  if (write(3, "0123456789", 10) != 10) return 2;  /* offset 10 */
  if (write(2000, "first\n", 6) != 6) return 2;
  subject_install();
  pid_t child = fork();
  if (child == 0) {
    sigset_t none;
    sigemptyset(&none);
    while (!subject_go) sigsuspend(&none);
    /* The shared description: this write moves the parent's offset too. */
    _exit(write(3, "child", 5) == 5 ? 0 : 1);
  }
  printf("CHILD %d\n", child);
  subject_ready();
  subject_wait();
  kill(child, SIGUSR1);
  int status;
  SUBJECT_CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) &&
                    WEXITSTATUS(status) == 0, "the child could not write");
  off_t pos = lseek(1005, 0, SEEK_CUR);
  SUBJECT_CHECK(pos == 15, "offset after the child's write is %ld, want 15", (long)pos);
  SUBJECT_CHECK(write(3, "abc", 3) == 3, "write through fd 3");
  SUBJECT_CHECK(lseek(1005, 0, SEEK_CUR) == 18, "fd 1005 does not share fd 3's offset");
  SUBJECT_CHECK(fcntl(1005, F_GETFD) == FD_CLOEXEC, "fd 1005 lost close-on-exec");
  SUBJECT_CHECK(fcntl(3, F_GETFD) == 0, "fd 3 gained close-on-exec");
  SUBJECT_CHECK(fcntl(2000, F_GETFL) & O_APPEND, "fd 2000 lost O_APPEND");
  lseek(2000, 0, SEEK_SET);
  SUBJECT_CHECK(write(2000, "second\n", 7) == 7, "write to the log");
  SUBJECT_CHECK(lseek(2000, 0, SEEK_CUR) == 13, "O_APPEND did not append");
  int open_fds = 0;
  for (int fd = 3; fd < 2100; fd++) open_fds += fcntl(fd, F_GETFD) >= 0;
  SUBJECT_CHECK(open_fds == 3, "%d fds above 2 are open, want 3 (3, 1005, 2000)", open_fds);
  char content[32] = {0};
  if (pread(3, content, sizeof(content) - 1, 0) < 0) subject_fail("pread");
  SUBJECT_CHECK(strcmp(content, "0123456789childabc") == 0, "file holds '%s'", content);
  return subject_verdict();
}
