/*
 * An inotify instance (IN_NONBLOCK) watching a directory for IN_CREATE
 * and a file in it for IN_MODIFY, with watch descriptors 3 and 5: watches
 * on two other files were added and removed first (the kernel hands out
 * wds in increasing order and does not reuse them at once), and the
 * IN_IGNORED events of the removals read, so that nothing is queued.
 *
 *   event_inotify DIR        DIR: an empty directory of the test's
 *
 * After SIGUSR1: the watches as fdinfo shows them (wd, mask) are as
 * they were and no event is queued; creating DIR/created gives one
 * IN_CREATE on the directory's wd with that name, and writing to
 * DIR/watched one IN_MODIFY on the file's wd, in that order, and nothing
 * else; unlinking DIR/created gives nothing (not in the mask).
 * DIR/created is gone at the end (the copy restored after a dump that
 * left the tree running creates it again).
 */
#define _GNU_SOURCE
#include <poll.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>

#include "subject.h"

static char dir[4096], watched[4200], created[4200];

static int make_file(const char *path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return 0;
  int ok = write(fd, "v1\n", 3) == 3;
  close(fd);
  return ok;
}

/* The watches' "wd:N ... mask:M" pairs from fdinfo, sorted by wd. */
static int watches(int fd, int *wds, unsigned *masks, int max) {
  char path[64], buf[512];
  snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  int n = 0;
  while (n < max && fgets(buf, sizeof(buf), f) != NULL) {
    char *m = strstr(buf, " mask:");
    if (strncmp(buf, "inotify wd:", 11) != 0 || m == NULL) continue;
    wds[n] = atoi(buf + 11);
    masks[n] = (unsigned)strtoul(m + 6, NULL, 16);
    for (int i = n; i > 0 && wds[i - 1] > wds[i]; i--) {
      int w = wds[i];
      unsigned k = masks[i];
      wds[i] = wds[i - 1];
      masks[i] = masks[i - 1];
      wds[i - 1] = w;
      masks[i - 1] = k;
    }
    n++;
  }
  fclose(f);
  return n;
}

/* Reads every queued event (nothing is written meanwhile). */
static int drain(int fd) {
  char buf[4096];
  int events = 0;
  for (;;) {
    ssize_t r = read(fd, buf, sizeof(buf));
    if (r <= 0) return r < 0 && errno == EAGAIN ? events : -1;
    for (char *p = buf; p < buf + r;) {
      struct inotify_event *e = (struct inotify_event *)p;
      events++;
      p += sizeof(*e) + e->len;
    }
  }
}

struct event {
  int wd;
  uint32_t mask;
  char name[64];
};

/* The events that come within `ms` (each read waits that long for more). */
static int collect(int fd, struct event *out, int max, int ms) {
  char buf[4096] __attribute__((aligned(8)));
  int n = 0;
  for (;;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, ms) != 1) return n;
    ssize_t r = read(fd, buf, sizeof(buf));
    if (r <= 0) return n;
    for (char *q = buf; q < buf + r;) {
      struct inotify_event *e = (struct inotify_event *)q;
      if (n < max) {
        out[n].wd = e->wd;
        out[n].mask = e->mask;
        snprintf(out[n].name, sizeof(out[n].name), "%s", e->len ? e->name : "");
      }
      n++;
      q += sizeof(*e) + e->len;
    }
  }
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  snprintf(dir, sizeof(dir), "%s", argv[1]);
  snprintf(watched, sizeof(watched), "%s/watched", dir);
  snprintf(created, sizeof(created), "%s/created", dir);
  char other1[4200], other2[4200];
  snprintf(other1, sizeof(other1), "%s/other1", dir);
  snprintf(other2, sizeof(other2), "%s/other2", dir);
  if (!make_file(watched) || !make_file(other1) || !make_file(other2)) return 2;

  int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (in < 0) return 2;
  int w1 = inotify_add_watch(in, other1, IN_ATTRIB);
  int w2 = inotify_add_watch(in, other2, IN_ATTRIB);
  if (w1 < 0 || w2 < 0 || inotify_rm_watch(in, w1) || inotify_rm_watch(in, w2)) return 2;
  const int wd_dir = inotify_add_watch(in, dir, IN_CREATE);
  int w4 = inotify_add_watch(in, other1, IN_ATTRIB);
  if (wd_dir < 0 || w4 < 0 || inotify_rm_watch(in, w4)) return 2;
  const int wd_file = inotify_add_watch(in, watched, IN_MODIFY);
  if (drain(in) != 3) {
    printf("FAIL: setup: not three IN_IGNORED events\n");
    return 2;
  }
  int wds[8], after_wds[8];
  unsigned masks[8], after_masks[8];
  int n = watches(in, wds, masks, 8);
  if (wd_dir == 1 || wd_file == 2 || wd_file <= wd_dir + 1 || n != 2 || wds[0] != wd_dir || wds[1] != wd_file) {
    printf("FAIL: setup: wds %d and %d, fdinfo shows %d watches\n", wd_dir, wd_file, n);
    return 2;
  }
  printf("WDS %d %d\n", wd_dir, wd_file);
  subject_ready();
  subject_wait();

  int m = watches(in, after_wds, after_masks, 8);
  SUBJECT_CHECK(m == n, "fdinfo shows %d watches, not %d", m, n);
  for (int i = 0; i < n && i < m; i++) {
    SUBJECT_CHECK(after_wds[i] == wds[i] && after_masks[i] == masks[i], "watch wd %d mask %x is now wd %d mask %x",
                  wds[i], masks[i], after_wds[i], after_masks[i]);
  }
  SUBJECT_CHECK((fcntl(in, F_GETFL) & O_NONBLOCK) && fcntl(in, F_GETFD) == FD_CLOEXEC,
                "the inotify fd lost IN_NONBLOCK or IN_CLOEXEC");
  int queued = -1;
  SUBJECT_CHECK(ioctl(in, FIONREAD, &queued) == 0 && queued == 0, "%d bytes of events queued after the restore",
                queued);

  int fd = open(created, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  SUBJECT_CHECK(fd >= 0, "creating %s: %s", created, strerror(errno));
  if (fd >= 0) close(fd);
  fd = open(watched, O_WRONLY | O_APPEND | O_CLOEXEC);
  SUBJECT_CHECK(fd >= 0 && write(fd, "more\n", 5) == 5, "writing %s: %s", watched, strerror(errno));
  if (fd >= 0) close(fd);
  struct event evs[8];
  int got = collect(in, evs, 8, 500);
  SUBJECT_CHECK(got == 2, "%d events, want 2", got);
  if (got >= 1) {
    SUBJECT_CHECK(evs[0].wd == wd_dir && evs[0].mask == IN_CREATE && strcmp(evs[0].name, "created") == 0,
                  "event 1: wd %d mask %x name '%s', want wd %d IN_CREATE 'created'", evs[0].wd, evs[0].mask,
                  evs[0].name, wd_dir);
  }
  if (got >= 2) {
    SUBJECT_CHECK(evs[1].wd == wd_file && evs[1].mask == IN_MODIFY && evs[1].name[0] == 0,
                  "event 2: wd %d mask %x name '%s', want wd %d IN_MODIFY", evs[1].wd, evs[1].mask, evs[1].name,
                  wd_file);
  }
  SUBJECT_CHECK(unlink(created) == 0, "unlink %s: %s", created, strerror(errno));
  got = collect(in, evs, 8, 200);
  SUBJECT_CHECK(got == 0, "%d events after an unlink nothing watches (wd %d mask %x)", got, got ? evs[0].wd : 0,
                got ? evs[0].mask : 0);
  return subject_verdict();
}
