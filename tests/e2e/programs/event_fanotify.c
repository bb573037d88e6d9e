/*
 * fanotify marks of every kind: on a directory (FAN_CREATE | FAN_ONDIR
 * reported for entries, with FAN_REPORT_FID), on a file (FAN_MODIFY |
 * FAN_CLOSE_WRITE) with an ignore mask on a second file that survives
 * modification, and on the filesystem of DIR (FAN_FS_ERROR: a mark that
 * never fires, where every deletion on a busy machine's filesystem would
 * be noise). Usage:
 * event_fanotify DIR. Says READY; after SIGUSR1: the group's fdinfo marks
 * and flags are what they were, nothing is queued, and a create in DIR, a
 * write to the watched file and a write to the ignored one produce
 * exactly the events those marks ask for.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <sys/fanotify.h>
#include <sys/stat.h>

#include "subject.h"

static void fdinfo_marks(int fd, char *out, size_t len) {
  char path[64], buf[8192];
  snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
  int f = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n = f < 0 ? -1 : read(f, buf, sizeof(buf) - 1);
  if (f >= 0) close(f);
  out[0] = 0;
  if (n <= 0) return;
  buf[n] = 0;
  /* Only the "fanotify ..." lines (flags, marks), without the handles'
   * mount-specific parts: they are compared as they are. */
  for (char *line = strtok(buf, "\n"); line != NULL; line = strtok(NULL, "\n")) {
    if (strncmp(line, "fanotify ", 9) != 0) continue;
    strncat(out, line, len - strlen(out) - 2);
    strncat(out, "\n", len - strlen(out) - 1);
  }
}

static void touch(const char *path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0) {
    if (write(fd, "x", 1) != 1) subject_fail("write %s", path);
    close(fd);
  }
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  char dir[4096], watched[4200], ignored[4200], created[4200];
  snprintf(dir, sizeof(dir), "%s/fan", argv[1]);
  snprintf(watched, sizeof(watched), "%s/watched", dir);
  snprintf(ignored, sizeof(ignored), "%s/ignored", dir);
  snprintf(created, sizeof(created), "%s/created", dir);
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) return 2;
  unlink(created);
  touch(watched);
  touch(ignored);
  int fan = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK | FAN_CLOEXEC | FAN_REPORT_FID, O_RDONLY | O_LARGEFILE);
  if (fan < 0) {
    printf("FAIL: fanotify_init: %s\n", strerror(errno));
    return 2;
  }
  if (fanotify_mark(fan, FAN_MARK_ADD, FAN_CREATE | FAN_ONDIR, AT_FDCWD, dir) != 0 ||
      fanotify_mark(fan, FAN_MARK_ADD, FAN_MODIFY | FAN_CLOSE_WRITE, AT_FDCWD, watched) != 0 ||
      fanotify_mark(fan, FAN_MARK_ADD, FAN_MODIFY, AT_FDCWD, ignored) != 0 ||
      fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY, FAN_MODIFY, AT_FDCWD,
                    ignored) != 0 ||
      fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_FS_ERROR, AT_FDCWD, dir) != 0) {
    printf("FAIL: fanotify_mark: %s\n", strerror(errno));
    return 2;
  }
  char before[4096], after[4096];
  fdinfo_marks(fan, before, sizeof(before));
  subject_ready();
  subject_wait();

  fdinfo_marks(fan, after, sizeof(after));
  SUBJECT_CHECK(strcmp(before, after) == 0, "fdinfo was\n%s\nis\n%s", before, after);
  int fl = fcntl(fan, F_GETFL);
  SUBJECT_CHECK(fl >= 0 && (fl & O_NONBLOCK), "the group lost O_NONBLOCK");
  char buf[8192];
  ssize_t n = read(fan, buf, sizeof(buf));
  SUBJECT_CHECK(n < 0 && errno == EAGAIN, "events were queued after the restore (%zd)", n);
  touch(created);
  touch(watched);
  touch(ignored);
  unlink(created);
  unsigned seen = 0;
  int events = 0;
  for (int round = 0; round < 20; ++round) {
    struct pollfd p = {fan, POLLIN, 0};
    if (poll(&p, 1, 100) != 1) {
      if (seen == (FAN_CREATE | FAN_MODIFY | FAN_CLOSE_WRITE)) break;
      continue;
    }
    n = read(fan, buf, sizeof(buf));
    if (n <= 0) break;
    /* With FID records, events are only 4-byte aligned: each header is
     * copied out rather than read in place. */
    for (ssize_t off = 0; off + (ssize_t)sizeof(struct fanotify_event_metadata) <= n;) {
      struct fanotify_event_metadata m;
      memcpy(&m, buf + off, sizeof(m));
      if (m.event_len < sizeof(m) || off + (ssize_t)m.event_len > n) break;
      seen |= (unsigned)m.mask & (FAN_CREATE | FAN_MODIFY | FAN_CLOSE_WRITE);
      SUBJECT_CHECK(m.fd == FAN_NOFD, "an event came with an fd (%d): FAN_REPORT_FID lost", m.fd);
      if (m.fd >= 0) close(m.fd);
      ++events;
      off += m.event_len;
    }
  }
  SUBJECT_CHECK(seen == (FAN_CREATE | FAN_MODIFY | FAN_CLOSE_WRITE), "events seen 0x%x", seen);
  /* the create on the directory, modify and close_write of the watched
   * file (possibly merged into one event); the ignored file's modify and
   * the unlink never come. */
  SUBJECT_CHECK(events >= 2 && events <= 3, "%d events", events);
  if (subject_failures == 0) printf("PASS\n");
  return subject_failures == 0 ? 0 : 1;
}
