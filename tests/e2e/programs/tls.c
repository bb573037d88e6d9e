/*
 * Thread-local storage (through fs_base) and errno survive: the subject
 * spins in user space with both set, so that the checkpoint catches it
 * outside any syscall.
 */
#include <asm/prctl.h>
#include <pthread.h>
#include <sys/syscall.h>

#include "subject.h"

static __thread long tls_value = 17;
static __thread char tls_text[64] = "thread-local";

int main(void) {
  tls_value = 0x1234567890ll;
  strcpy(tls_text, "changed before the checkpoint");
  unsigned long fs_before = 0;
  syscall(SYS_arch_prctl, ARCH_GET_FS, &fs_before);
  pthread_t self_before = pthread_self();
  subject_ready();
  errno = 4242;
  while (!subject_go) {
    __asm__ volatile("pause");
  }
  int errno_after = errno;
  unsigned long fs_after = 0;
  syscall(SYS_arch_prctl, ARCH_GET_FS, &fs_after);
  SUBJECT_CHECK(errno_after == 4242, "errno is %d, want 4242", errno_after);
  SUBJECT_CHECK(tls_value == 0x1234567890ll, "tls_value is %lx", tls_value);
  SUBJECT_CHECK(strcmp(tls_text, "changed before the checkpoint") == 0, "tls_text is '%s'", tls_text);
  SUBJECT_CHECK(fs_after == fs_before, "fs_base 0x%lx, want 0x%lx", fs_after, fs_before);
  SUBJECT_CHECK(pthread_equal(pthread_self(), self_before), "pthread_self changed");
  return subject_verdict();
}
