/*
 * A non-blocking signalfd for SIGUSR1 and SIGRTMIN+1, both blocked and
 * pending, each sent with sigqueue() with a value: SIGUSR1 an int,
 * SIGRTMIN+1 a 64-bit pointer.
 *
 * SIGUSR1 is the state under test here, so this subject waits for
 * SIGWINCH instead (SIGUSR1 from the harness would merge into the pending
 * one). After SIGWINCH: the signalfd's mask (fdinfo "sigmask") and flags
 * are as made; two reads give the two signals, each once, with SI_QUEUE,
 * its value, this process's pid and uid; SIGUSR2, blocked and sent now, is
 * not for this signalfd: a third read fails EAGAIN and SIGUSR2 stays
 * pending.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/signalfd.h>

#include "subject.h"

#define INT_VALUE 0x51651
#define PTR_VALUE 0x7f00deadbeefcafeULL

static volatile sig_atomic_t go;

static void on_winch(int sig) {
  (void)sig;
  go = 1;
}

static int sigmask_line(int fd, char *out, size_t len) {
  char path[64], buf[256];
  snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0;
  int found = 0;
  while (!found && fgets(buf, sizeof(buf), f) != NULL) {
    if (strncmp(buf, "sigmask:", 8) == 0) {
      snprintf(out, len, "%s", buf);
      found = 1;
    }
  }
  fclose(f);
  return found;
}

int main(void) {
  const int rt = SIGRTMIN + 1;
  sigset_t mask, wait_mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGUSR1);
  sigaddset(&mask, rt);
  sigset_t blocked = mask;
  sigaddset(&blocked, SIGUSR2);
  sigprocmask(SIG_BLOCK, &blocked, NULL);
  int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  union sigval iv = {.sival_int = INT_VALUE};
  union sigval pv = {.sival_ptr = (void *)(uintptr_t)PTR_VALUE};
  if (sfd < 0 || sigqueue(getpid(), SIGUSR1, iv) || sigqueue(getpid(), rt, pv)) return 2;
  char before[128], after[128];
  if (!sigmask_line(sfd, before, sizeof(before))) return 2;

  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_winch;
  sigaction(SIGWINCH, &sa, NULL);
  sigprocmask(SIG_BLOCK, NULL, &wait_mask); /* the signals above blocked, SIGWINCH not */
  sigset_t winch;
  sigemptyset(&winch);
  sigaddset(&winch, SIGWINCH);
  sigprocmask(SIG_BLOCK, &winch, NULL);
  printf("READY %d\n", getpid());
  fflush(stdout);
  while (!go) sigsuspend(&wait_mask);

  SUBJECT_CHECK(sigmask_line(sfd, after, sizeof(after)) && strcmp(before, after) == 0,
                "the signalfd's mask was %s and is now %s", before, after);
  SUBJECT_CHECK((fcntl(sfd, F_GETFL) & O_NONBLOCK) && fcntl(sfd, F_GETFD) == FD_CLOEXEC,
                "the signalfd lost SFD_NONBLOCK or SFD_CLOEXEC");
  int seen_usr1 = 0, seen_rt = 0;
  for (int i = 0; i < 2; i++) {
    struct signalfd_siginfo si;
    memset(&si, 0, sizeof(si));
    ssize_t r = read(sfd, &si, sizeof(si)); /* room for one: one signal a read */
    if (r != (ssize_t)sizeof(si)) {
      subject_fail("read %d: %zd (%s)", i + 1, r, r < 0 ? strerror(errno) : "short");
      continue;
    }
    SUBJECT_CHECK(si.ssi_code == SI_QUEUE && si.ssi_pid == (uint32_t)getpid() && si.ssi_uid == getuid(),
                  "signal %u: code %d pid %u uid %u, want SI_QUEUE from %d, uid %d", si.ssi_signo, si.ssi_code,
                  si.ssi_pid, si.ssi_uid, getpid(), getuid());
    if (si.ssi_signo == SIGUSR1) {
      seen_usr1++;
      SUBJECT_CHECK(si.ssi_int == INT_VALUE, "SIGUSR1's value is %#x, want %#x", si.ssi_int, INT_VALUE);
    } else if (si.ssi_signo == (uint32_t)rt) {
      seen_rt++;
      SUBJECT_CHECK(si.ssi_ptr == PTR_VALUE, "SIGRTMIN+1's value is %#llx, want %#llx",
                    (unsigned long long)si.ssi_ptr, PTR_VALUE);
    } else {
      subject_fail("read %d gave signal %u", i + 1, si.ssi_signo);
    }
  }
  SUBJECT_CHECK(seen_usr1 == 1 && seen_rt == 1, "SIGUSR1 read %d times, SIGRTMIN+1 %d times", seen_usr1, seen_rt);

  SUBJECT_CHECK(kill(getpid(), SIGUSR2) == 0, "kill: %s", strerror(errno));
  struct signalfd_siginfo si;
  ssize_t r = read(sfd, &si, sizeof(si));
  SUBJECT_CHECK(r < 0 && errno == EAGAIN, "a third read gave %zd (signal %u), want EAGAIN", r,
                r > 0 ? si.ssi_signo : 0);
  sigset_t pending;
  sigpending(&pending);
  SUBJECT_CHECK(sigismember(&pending, SIGUSR2) && !sigismember(&pending, SIGUSR1) && !sigismember(&pending, rt),
                "pending afterwards: SIGUSR2 %d SIGUSR1 %d SIGRTMIN+1 %d, want 1 0 0", sigismember(&pending, SIGUSR2),
                sigismember(&pending, SIGUSR1), sigismember(&pending, rt));
  return subject_verdict();
}
