/*
 * Two IPC namespaces in one tree. The root enters a namespace of its own
 * (A) and makes, in it, segment S (key K, 64 KiB, filled with 'A') and a
 * message queue Q (key K+1) holding "from A"; its child "stay" stays in A
 * and attaches S. Its other child "moved" enters another namespace (B)
 * and makes a segment and a queue with the same keys (so, most likely,
 * the same ids) holding 'B' and "from B"; its grandchild stays in B and
 * attaches B's S.
 *
 * After restore every process checks, in its own namespace: S's key finds
 * the id it had, S holds its namespace's letter and is shared within the
 * namespace (a write by the attacher is seen by the maker), Q holds its
 * one message. The root then compares the namespaces of all four
 * (/proc/PID/ns/ipc): A for the root and "stay", B for the other two, A
 * and B different.
 *
 *   ipcns      prints "NS <root> <stay> <moved> <grandchild>" then READY
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "subject.h"

#define SIZE (64 * 1024)
#define KEY 0x1c5e0001

struct msg {
  long mtype;
  char text[64];
};

static int make(char letter, int *shm, int *msq, char **mem) {
  *shm = shmget(KEY, SIZE, IPC_CREAT | IPC_EXCL | 0600);
  *msq = msgget(KEY + 1, IPC_CREAT | IPC_EXCL | 0600);
  if (*shm < 0 || *msq < 0) return -1;
  *mem = shmat(*shm, NULL, 0);
  if (*mem == (void *)-1) return -1;
  memset(*mem, letter, SIZE);
  struct msg m = {1, ""};
  snprintf(m.text, sizeof(m.text), "from %c", letter);
  return msgsnd(*msq, &m, strlen(m.text) + 1, IPC_NOWAIT);
}

static ino_t ns_of(pid_t pid) {
  char path[64];
  struct stat st;
  snprintf(path, sizeof(path), "/proc/%d/ns/ipc", pid);
  return stat(path, &st) == 0 ? st.st_ino : 0;
}


/* What every process checks after restore; `maker`: it made S. */
static void check(const char *who, char letter, int shm, int msq, char *mem, int maker) {
  SUBJECT_CHECK(shmget(KEY, 0, 0) == shm, "%s: S's key no longer finds id %d", who, shm);
  size_t bad = 0;
  for (size_t i = 64; i < SIZE; i++) bad += mem[i] != letter;
  SUBJECT_CHECK(bad == 0, "%s: %zu bytes of S are not '%c'", who, bad, letter);
  /* Byte 0: the attacher writes 1, the maker waits to see it. */
  if (!maker) {
    mem[0] = 1;
  } else {
    int seen = 0;
    for (int i = 0; i < 5000 && !seen; i++) {
      seen = ((volatile char *)mem)[0] == 1;
      if (!seen) usleep(1000);
    }
    SUBJECT_CHECK(seen, "%s: the attacher's write never showed: S is not shared", who);
    SUBJECT_CHECK(msgget(KEY + 1, 0) == msq, "%s: Q's key no longer finds id %d", who, msq);
    struct msg m;
    ssize_t n = msgrcv(msq, &m, sizeof(m.text), 0, IPC_NOWAIT);
    char want[16];
    snprintf(want, sizeof(want), "from %c", letter);
    SUBJECT_CHECK(n > 0 && strcmp(m.text, want) == 0, "%s: Q held '%s' (%zd), not '%s'", who,
                  n > 0 ? m.text : "", n, want);
  }
}

int main(void) {
  if (unshare(CLONE_NEWIPC) != 0) {
    printf("FAIL: unshare: %s\n", strerror(errno));
    return 1;
  }
  subject_install();
  int shm, msq;
  char *mem;
  if (make('A', &shm, &msq, &mem) != 0) {
    printf("FAIL: A: %s\n", strerror(errno));
    return 1;
  }
  int to_root[2];
  if (pipe(to_root) != 0) return 1;

  pid_t stay = fork();
  if (stay == 0) {
    char *m = shmat(shm, NULL, 0);
    if (m == (void *)-1) _exit(3);
    printf("READY %d\n", getpid());
    fflush(stdout);
    subject_wait();
    check("stay", 'A', shm, msq, m, 0);
    _exit(subject_verdict());
  }

  pid_t moved = fork();
  if (moved == 0) {
    int bshm, bmsq;
    char *bmem;
    if (unshare(CLONE_NEWIPC) != 0 || make('B', &bshm, &bmsq, &bmem) != 0) {
      printf("FAIL: B: %s\n", strerror(errno));
      _exit(1);
    }
    pid_t grand = fork();
    if (grand == 0) {
      char *m = shmat(bshm, NULL, 0);
      if (m == (void *)-1) _exit(3);
      printf("READY %d\n", getpid());
      fflush(stdout);
      subject_wait();
      check("grandchild", 'B', bshm, bmsq, m, 0);
      _exit(subject_verdict());
    }
    if (write(to_root[1], &grand, sizeof(grand)) != sizeof(grand)) _exit(1);
    printf("READY %d\n", getpid());
    fflush(stdout);
    subject_wait();
    kill(grand, SIGUSR1);
    check("moved", 'B', bshm, bmsq, bmem, 1);
    int status;
    SUBJECT_CHECK(waitpid(grand, &status, 0) == grand && WIFEXITED(status) &&
                      WEXITSTATUS(status) == 0,
                  "the grandchild failed");
    _exit(subject_verdict());
  }
  pid_t grand;
  if (read(to_root[0], &grand, sizeof(grand)) != sizeof(grand)) return 1;
  printf("NS %d %d %d %d\n", getpid(), stay, moved, grand);
  subject_ready();
  subject_wait();
  /* Before the others go on (an exited task has no namespaces to show). */
  ino_t a = ns_of(getpid()), b = ns_of(moved);
  SUBJECT_CHECK(a != 0 && b != 0 && a != b, "the root and 'moved' share an IPC namespace");
  SUBJECT_CHECK(ns_of(stay) == a, "'stay' is not in the root's IPC namespace");
  SUBJECT_CHECK(ns_of(grand) == b, "the grandchild is not in the namespace of 'moved'");
  kill(stay, SIGUSR1);
  kill(moved, SIGUSR1);
  check("root", 'A', shm, msq, mem, 1);
  int status;
  SUBJECT_CHECK(waitpid(stay, &status, 0) == stay && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "'stay' failed");
  SUBJECT_CHECK(waitpid(moved, &status, 0) == moved && WIFEXITED(status) &&
                    WEXITSTATUS(status) == 0,
                "'moved' failed");
  return subject_verdict();
}
