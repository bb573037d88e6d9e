/*
 * seccomp strict mode: a child fills a buffer, enters strict mode and
 * blocks in read() on a pipe (read, write, exit and sigreturn are all it
 * may call). After SIGUSR1 the parent sends it a byte; it answers with its
 * buffer's checksum (write), then calls getpid(), which strict mode
 * answers with SIGKILL: the parent sees both, and /proc says "Seccomp: 1"
 * before.
 */
#define _GNU_SOURCE
#include <linux/seccomp.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "subject.h"

static unsigned char buf[1 << 16];

static unsigned sum(void) {
  unsigned s = 0;
  for (size_t i = 0; i < sizeof(buf); i++) s = s * 31 + buf[i];
  return s;
}

static int seccomp_field(pid_t pid) {
  char path[64], text[4096];
  snprintf(path, sizeof(path), "/proc/%d/status", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  size_t n = fread(text, 1, sizeof(text) - 1, f);
  fclose(f);
  text[n] = 0;
  char *p = strstr(text, "\nSeccomp:\t");
  return p ? atoi(p + 10) : -1;
}

int main(void) {
  subject_install();
  for (size_t i = 0; i < sizeof(buf); i++) buf[i] = (unsigned char)(i * 13 + 7);
  const unsigned want = sum();
  int to_child[2], from_child[2];
  if (pipe(to_child) != 0 || pipe(from_child) != 0) return 1;
  pid_t child = fork();
  if (child == 0) {
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_STRICT, 0, NULL) != 0) _exit(2);
    char c;
    if (syscall(SYS_read, to_child[0], &c, 1) != 1) syscall(SYS_exit, 3);
    unsigned s = sum();
    syscall(SYS_write, from_child[1], &s, sizeof(s));
    syscall(SYS_getpid);  /* strict mode kills here */
    syscall(SYS_exit, 4);
  }
  for (int i = 0; i < 5000 && seccomp_field(child) != 1; i++) usleep(1000);
  if (seccomp_field(child) != 1) {
    printf("FAIL: the child is not in strict mode\n");
    return 1;
  }
  printf("READY %d %d\n", getpid(), child);
  fflush(stdout);
  subject_wait();
  SUBJECT_CHECK(seccomp_field(child) == 1, "the child's Seccomp is %d, not 1", seccomp_field(child));
  if (write(to_child[1], "x", 1) != 1) return 1;
  unsigned got = 0;
  SUBJECT_CHECK(read(from_child[0], &got, sizeof(got)) == sizeof(got) && got == want,
                "the child answered %u, not %u", got, want);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  SUBJECT_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                "getpid() in strict mode did not kill the child (status 0x%x)", status);
  return subject_verdict();
}
