/*
 * SysV IPC: a parent and a child share two shm segments, one of them
 * removed (IPC_RMID) while attached; with "own" the tree lives in an IPC
 * namespace of its own that also holds a message queue of 100 messages of
 * mixed types and a semaphore set.
 *
 *   sysvipc own|host [KIB]
 *
 * Segment A (KIB KiB + 123 bytes, mode 0640): page 0 holds one counter
 * per process, then a pattern in every other 64 KiB chunk (the rest never
 * touched). The child attaches A a second time, read-only. Segment B
 * (64 KiB) is removed while both attach it. After restore each process
 * bumps its counters and waits to see the other's bumps arrive through
 * both segments: one segment, shared, not two copies. The child stays
 * until the parent has counted the attachments.
 *
 * Prints "IDS <a> <b> <q> <s>" and READY once both processes are set.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <time.h>

#include "subject.h"

#define CHUNK (64 * 1024)
#define NMSG 100

static volatile uint64_t *a_ctl, *a_ro, *b_ctl;

static uint8_t pattern(uint64_t off) { return (uint8_t)((off * 7 + off / 4096 + 13) & 0xff); }

static int wait_for(volatile uint64_t *slot, uint64_t want) {
  for (int i = 0; i < 5000; i++) {
    if (*slot >= want) return 1;
    usleep(1000);
  }
  return 0;
}

static void msg_text(int i, char *buf, size_t *len) {
  int n = sprintf(buf, "message %d", i);
  size_t pad = (size_t)(i * 13 % 300);
  memset(buf + n, 'a' + i % 26, pad);
  *len = (size_t)n + pad;
}

static long msg_type(int i) { return (i * 7) % 5 + 1; }

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  int own = strcmp(argv[1], "own") == 0;
  long kib = argc > 2 ? atol(argv[2]) : 4096;
  if (own && unshare(CLONE_NEWIPC) != 0) {
    printf("FAIL: unshare(CLONE_NEWIPC): %s\n", strerror(errno));
    return 1;
  }
  subject_install();
  key_t base = getpid() & 0xfffff;
  key_t key_a = (0x4c4 << 20) | base, key_b = (0x4c5 << 20) | base;
  key_t key_q = (0x4c6 << 20) | base, key_s = (0x4c7 << 20) | base;
  size_t size_a = (size_t)kib * 1024 + 123;

  int id_a = shmget(key_a, size_a, IPC_CREAT | IPC_EXCL | 0640);
  int id_b = shmget(key_b, CHUNK, IPC_CREAT | IPC_EXCL | 0600);
  if (id_a < 0 || id_b < 0) {
    printf("FAIL: shmget: %s\n", strerror(errno));
    return 1;
  }
  uint8_t *a = shmat(id_a, NULL, 0);
  uint8_t *b = shmat(id_b, NULL, 0);
  if (a == (void *)-1 || b == (void *)-1) {
    printf("FAIL: shmat: %s\n", strerror(errno));
    return 1;
  }
  for (uint64_t off = CHUNK; off < size_a; off += 2 * CHUNK) {
    for (uint64_t i = off; i < off + CHUNK && i < size_a; i++) a[i] = pattern(i);
  }
  a_ctl = (volatile uint64_t *)a;
  b_ctl = (volatile uint64_t *)b;

  int id_q = -1, id_s = -1;
  if (own) {
    id_q = msgget(key_q, IPC_CREAT | IPC_EXCL | 0620);
    id_s = semget(key_s, 3, IPC_CREAT | IPC_EXCL | 0660);
    if (id_q < 0 || id_s < 0) {
      printf("FAIL: msgget/semget: %s\n", strerror(errno));
      return 1;
    }
    struct {
      long mtype;
      char text[512];
    } m;
    for (int i = 0; i < NMSG; i++) {
      size_t len;
      msg_text(i, m.text, &len);
      m.mtype = msg_type(i);
      if (msgsnd(id_q, &m, len, IPC_NOWAIT) != 0) {
        printf("FAIL: msgsnd %d: %s\n", i, strerror(errno));
        return 1;
      }
    }
    unsigned short vals[3] = {1, 7, 42};
    if (semctl(id_s, 0, SETALL, vals) != 0) {
      printf("FAIL: SETALL: %s\n", strerror(errno));
      return 1;
    }
  }

  pid_t child = fork();
  if (child == 0) {
    a_ro = shmat(id_a, NULL, SHM_RDONLY);
    if (a_ro == (void *)-1) _exit(3);
    a_ctl[8] = 1000;
    b_ctl[8] = 2000;
    printf("READY %d\n", getpid());
    fflush(stdout);
    subject_wait();
    int ok = a_ctl[0] == 100 || a_ctl[0] == 101;
    if (!ok) printf("FAIL: child: parent's counter in A is %lu\n", (unsigned long)a_ctl[0]);
    a_ctl[8] = 1001;
    b_ctl[8] = 2001;
    if (!wait_for(&a_ctl[0], 101)) { printf("FAIL: child: no bump from the parent in A\n"); ok = 0; }
    if (!wait_for(&a_ro[0], 101)) { printf("FAIL: child: the read-only attachment of A is not A\n"); ok = 0; }
    if (!wait_for(&b_ctl[0], 201)) { printf("FAIL: child: no bump from the parent in B\n"); ok = 0; }
    /* Stay attached until the parent has counted the attachments. */
    if (!wait_for(&a_ctl[0], 102)) { printf("FAIL: child: the parent never finished\n"); ok = 0; }
    printf("child %s\n", ok ? "ok" : "not ok");
    fflush(stdout);
    _exit(ok ? 0 : 1);
  }
  a_ctl[0] = 100;
  b_ctl[0] = 200;
  if (!wait_for(&a_ctl[8], 1000) || !wait_for(&b_ctl[8], 2000)) {
    printf("FAIL: the child did not start\n");
    return 1;
  }
  /* B goes away while both still attach it. */
  if (shmctl(id_b, IPC_RMID, NULL) != 0) {
    printf("FAIL: IPC_RMID: %s\n", strerror(errno));
    return 1;
  }
  printf("IDS %d %d %d %d\n", id_a, id_b, id_q, id_s);
  subject_ready();
  subject_wait();
  kill(child, SIGUSR1);

  SUBJECT_CHECK(a_ctl[8] == 1000 || a_ctl[8] == 1001, "child's counter in A is %lu",
                (unsigned long)a_ctl[8]);
  a_ctl[0] = 101;
  b_ctl[0] = 201;
  SUBJECT_CHECK(wait_for(&a_ctl[8], 1001), "no bump from the child in A");
  SUBJECT_CHECK(wait_for(&b_ctl[8], 2001), "no bump from the child in B");

  SUBJECT_CHECK(shmget(key_a, 0, 0) == id_a, "key of A no longer finds id %d", id_a);
  struct shmid_ds ds;
  SUBJECT_CHECK(shmctl(id_a, IPC_STAT, &ds) == 0, "IPC_STAT A: %s", strerror(errno));
  SUBJECT_CHECK((ds.shm_perm.mode & 0777) == 0640, "A's mode is 0%o", ds.shm_perm.mode);
  SUBJECT_CHECK(ds.shm_segsz == size_a, "A's size is %zu", (size_t)ds.shm_segsz);
  SUBJECT_CHECK(ds.shm_nattch == 3, "A has %lu attachments, not 3", (unsigned long)ds.shm_nattch);
  size_t bad = 0;
  for (uint64_t i = 4096; i < size_a; i++) {
    uint8_t want = ((i / CHUNK) % 2) ? pattern(i) : 0;
    if (a[i] != want && bad++ < 3) printf("FAIL: A[%lu] = %u, not %u\n", (unsigned long)i, a[i], want);
  }
  SUBJECT_CHECK(bad == 0, "%zu bytes of A differ", bad);

  errno = 0;
  SUBJECT_CHECK(shmget(key_b, 0, 0) == -1 && errno == ENOENT, "B's key is back");
  SUBJECT_CHECK(shmctl(id_b, IPC_STAT, &ds) == 0, "IPC_STAT B: %s", strerror(errno));
  SUBJECT_CHECK(ds.shm_perm.mode & SHM_DEST, "B is no longer marked removed");
  SUBJECT_CHECK(ds.shm_nattch == 2, "B has %lu attachments, not 2", (unsigned long)ds.shm_nattch);
  a_ctl[0] = 102; /* the child may go */

  if (own) {
    SUBJECT_CHECK(msgget(key_q, 0) == id_q, "the queue's key no longer finds id %d", id_q);
    struct {
      long mtype;
      char text[512];
    } m;
    for (long t = 1; t <= 5; t++) {
      for (int i = 0; i < NMSG; i++) {
        if (msg_type(i) != t) continue;
        char want[512];
        size_t len;
        msg_text(i, want, &len);
        ssize_t n = msgrcv(id_q, &m, sizeof(m.text), t, IPC_NOWAIT);
        if (n != (ssize_t)len || memcmp(m.text, want, len) != 0 || m.mtype != t) {
          subject_fail("message %d (type %ld): got %zd bytes of type %ld", i, t, n, m.mtype);
          break;
        }
      }
    }
    errno = 0;
    SUBJECT_CHECK(msgrcv(id_q, &m, sizeof(m.text), 0, IPC_NOWAIT) < 0 && errno == ENOMSG,
                  "the queue holds more than 100 messages");
    unsigned short vals[3] = {0, 0, 0};
    SUBJECT_CHECK(semctl(id_s, 0, GETALL, vals) == 0, "GETALL: %s", strerror(errno));
    SUBJECT_CHECK(vals[0] == 1 && vals[1] == 7 && vals[2] == 42, "semaphores are %u %u %u",
                  vals[0], vals[1], vals[2]);
    SUBJECT_CHECK(semget(key_s, 0, 0) == id_s, "the semaphores' key no longer finds id %d", id_s);
  }

  int status;
  SUBJECT_CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "the child did not pass");
  shmdt(a);
  shmdt(b);
  shmctl(id_a, IPC_RMID, NULL);
  if (own) {
    msgctl(id_q, IPC_RMID, NULL);
    semctl(id_s, 0, IPC_RMID);
  }
  return subject_verdict();
}
