/*
 * A pseudo-terminal pair, both sides held by this process, with bytes
 * queued both ways. Modes:
 *  - "raw": the slave in raw mode with odd control characters and speeds,
 *    a window size, 100 bytes (every value 0..99: control characters
 *    too) typed to the master and unread by the slave, 60 bytes written
 *    by the slave and unread by the master; the master in packet mode, the
 *    slave in exclusive mode and locked.
 *  - "canon": the slave in canonical mode with echo, "first line\n", a
 *    line "eofl" ended by ^D, and an unfinished "second" typed (and echoed), "hello\n" written by the
 *    slave (ONLCR makes it "hello\r\n").
 *  - "quiet": as canon, nothing queued.
 *  - "closed": as canon, with "typed\n" typed and "bye\n" written, then
 *    the slave closed: the master reads what is queued, then EIO; the
 *    slave opened again reads the typed line.
 * After SIGUSR1: the same /dev/pts index, termios, window size, modes and
 * queued bytes, then the pair still carries bytes both ways.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>

#include "subject.h"

static int master_fd, slave_fd;
static char pts_name[64];
static struct termios saved;
static struct winsize saved_ws = {37, 111, 640, 480};
static int raw_mode;
static struct stat saved_st;

/* Reads what is there within 200 ms of quiet (non-blocking reads). */
static size_t read_some(int fd, unsigned char *buf, size_t cap) {
  size_t got = 0;
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0 || !(p.revents & POLLIN)) return got;
    ssize_t n = read(fd, buf + got, cap - got);
    if (n <= 0) return got;
    got += (size_t)n;
    if (got == cap) return got;
  }
}

static void check_bytes(const char *what, const unsigned char *got, size_t n, const unsigned char *want,
                        size_t wn) {
  if (n != wn || memcmp(got, want, wn) != 0) {
    subject_fail("%s: %zu bytes back, %zu expected (first differs at %zu)", what, n, wn,
                 n < wn ? n : wn);
  }
}

static void wait_lines(int fd, int bytes) {
  for (int i = 0; i < 200; i++) {
    int q = 0;
    if (ioctl(fd, FIONREAD, &q) == 0 && q >= bytes) return;
    usleep(5000);
  }
}

static int closed_mode(void) {
  if (write(master_fd, "typed\n", 6) != 6) return 2;
  wait_lines(slave_fd, 6);
  if (write(slave_fd, "bye\n", 4) != 4) return 2;
  usleep(100000);
  close(slave_fd);
  subject_ready();
  subject_wait();
  SUBJECT_CHECK(strcmp(ptsname(master_fd), pts_name) == 0, "ptsname %s, was %s", ptsname(master_fd), pts_name);
  struct pollfd p = {master_fd, POLLIN, 0};
  poll(&p, 1, 0);
  SUBJECT_CHECK(p.revents & POLLHUP, "the master does not see its slave closed (revents 0x%x)", p.revents);
  fcntl(master_fd, F_SETFL, O_NONBLOCK);
  unsigned char buf[256];
  ssize_t n = read(master_fd, buf, sizeof(buf));
  check_bytes("echo and output", buf, n > 0 ? (size_t)n : 0, (const unsigned char *)"typed\r\nbye\r\n", 12);
  n = read(master_fd, buf, sizeof(buf));
  SUBJECT_CHECK(n < 0 && errno == EIO, "the master read %zd (errno %d) after its queue, not EIO", n, errno);
  slave_fd = open(pts_name, O_RDWR | O_NOCTTY | O_NONBLOCK);
  SUBJECT_CHECK(slave_fd >= 0, "open %s again: %s", pts_name, strerror(errno));
  n = read(slave_fd, buf, sizeof(buf));
  check_bytes("typed line", buf, n > 0 ? (size_t)n : 0, (const unsigned char *)"typed\n", 6);
  if (subject_failures) return 1;
  printf("PASS\n");
  return 0;
}

/* Canonical, nothing queued: the termios stays (the dump changes it
 * while it reads the queues) and the pair works. */
static int quiet_mode(void) {
  subject_ready();
  subject_wait();
  struct termios now;
  tcgetattr(slave_fd, &now);
  SUBJECT_CHECK(now.c_lflag == saved.c_lflag && now.c_iflag == saved.c_iflag && now.c_oflag == saved.c_oflag &&
                    memcmp(now.c_cc, saved.c_cc, NCCS) == 0,
                "termios lflag %o iflag %o, were %o %o", now.c_lflag, now.c_iflag, saved.c_lflag, saved.c_iflag);
  if (write(master_fd, "one\ntw", 6) != 6) subject_fail("write master");
  usleep(50000);
  fcntl(slave_fd, F_SETFL, O_NONBLOCK);
  unsigned char buf[64];
  ssize_t n = read(slave_fd, buf, sizeof(buf));
  check_bytes("a canonical line", buf, n > 0 ? (size_t)n : 0, (const unsigned char *)"one\n", 4);
  n = read(slave_fd, buf, sizeof(buf));
  SUBJECT_CHECK(n < 0 && errno == EAGAIN, "an unended line read (%zd): not canonical", n);
  if (subject_failures) return 1;
  printf("PASS\n");
  return 0;
}

int main(int argc, char **argv) {
  raw_mode = argc > 1 && strcmp(argv[1], "raw") == 0;
  master_fd = posix_openpt(O_RDWR | O_NOCTTY);
  if (master_fd < 0 || grantpt(master_fd) || unlockpt(master_fd)) { perror("openpt"); return 2; }
  snprintf(pts_name, sizeof(pts_name), "%s", ptsname(master_fd));
  slave_fd = open(pts_name, O_RDWR | O_NOCTTY);
  if (slave_fd < 0) { perror(pts_name); return 2; }
  struct termios t;
  tcgetattr(slave_fd, &t);
  if (raw_mode) {
    cfmakeraw(&t);
    t.c_cc[VMIN] = 3;
    t.c_cc[VTIME] = 7;
    t.c_cc[VINTR] = 0x07;
    cfsetispeed(&t, B9600);
    cfsetospeed(&t, B9600);
  } else {
    t.c_lflag |= ICANON | ECHO | ECHOE | ISIG;
    t.c_cc[VERASE] = 0x08;
    t.c_cc[VKILL] = 0x15;
  }
  tcsetattr(slave_fd, TCSANOW, &t);
  tcgetattr(slave_fd, &saved);
  ioctl(master_fd, TIOCSWINSZ, &saved_ws);
  /* The slave's permissions (mesg n, chmod) and owner. */
  fchmod(slave_fd, 0604);
  fstat(slave_fd, &saved_st);
  if (argc > 1 && strcmp(argv[1], "closed") == 0) return closed_mode();
  if (argc > 1 && strcmp(argv[1], "quiet") == 0) return quiet_mode();

  unsigned char typed[100], written[60];
  for (int i = 0; i < 100; i++) typed[i] = (unsigned char)i;
  for (int i = 0; i < 60; i++) written[i] = (unsigned char)(200 + i % 50);
  const char *canon_typed = "first line\neofl\x04second";
  const char *canon_written = "hello\n";
  if (raw_mode) {
    if (write(master_fd, typed, sizeof(typed)) != sizeof(typed)) return 2;
    wait_lines(slave_fd, (int)sizeof(typed));
    if (write(slave_fd, written, sizeof(written)) != sizeof(written)) return 2;
    int on = 1;
    ioctl(master_fd, TIOCPKT, &on);
    ioctl(slave_fd, TIOCEXCL);
    ioctl(master_fd, TIOCSPTLCK, &on);
  } else {
    if (write(master_fd, canon_typed, strlen(canon_typed)) != (ssize_t)strlen(canon_typed)) return 2;
    wait_lines(slave_fd, 15); /* canonical FIONREAD counts whole lines */
    if (write(slave_fd, canon_written, strlen(canon_written)) != (ssize_t)strlen(canon_written)) return 2;
  }
  usleep(100000);
  subject_ready();
  subject_wait();

  /* Same index, same settings. */
  SUBJECT_CHECK(strcmp(ptsname(master_fd), pts_name) == 0, "ptsname %s, was %s", ptsname(master_fd), pts_name);
  struct stat st;
  SUBJECT_CHECK(fstat(slave_fd, &st) == 0 && st.st_rdev == saved_st.st_rdev, "fstat slave");
  SUBJECT_CHECK((st.st_mode & 07777) == 0604 && st.st_uid == saved_st.st_uid && st.st_gid == saved_st.st_gid,
                "slave mode 0%o owner %d:%d", st.st_mode & 07777, st.st_uid, st.st_gid);
  struct termios now;
  tcgetattr(slave_fd, &now);
  SUBJECT_CHECK(now.c_iflag == saved.c_iflag && now.c_oflag == saved.c_oflag && now.c_cflag == saved.c_cflag &&
                    now.c_lflag == saved.c_lflag, "termios flags %o %o %o %o, were %o %o %o %o", now.c_iflag,
                now.c_oflag, now.c_cflag, now.c_lflag, saved.c_iflag, saved.c_oflag, saved.c_cflag, saved.c_lflag);
  SUBJECT_CHECK(memcmp(now.c_cc, saved.c_cc, NCCS) == 0, "control characters differ");
  SUBJECT_CHECK(cfgetispeed(&now) == cfgetispeed(&saved) && cfgetospeed(&now) == cfgetospeed(&saved), "speeds");
  struct winsize ws;
  ioctl(slave_fd, TIOCGWINSZ, &ws);
  SUBJECT_CHECK(ws.ws_row == 37 && ws.ws_col == 111 && ws.ws_xpixel == 640 && ws.ws_ypixel == 480,
                "window %dx%d", ws.ws_row, ws.ws_col);
  int pkt = -1, lock = -1, excl = -1;
  ioctl(master_fd, TIOCGPKT, &pkt);
  ioctl(master_fd, TIOCGPTLCK, &lock);
  ioctl(slave_fd, TIOCGEXCL, &excl);
  SUBJECT_CHECK(pkt == raw_mode && lock == raw_mode && excl == raw_mode, "packet %d lock %d exclusive %d", pkt,
                lock, excl);

  fcntl(master_fd, F_SETFL, O_NONBLOCK);
  fcntl(slave_fd, F_SETFL, O_NONBLOCK);
  unsigned char buf[512];
  size_t n;
  if (raw_mode) {
    /* Packet mode: one status byte (TIOCPKT_DATA) before the data. */
    n = read_some(master_fd, buf, sizeof(buf));
    SUBJECT_CHECK(n >= 1 && buf[0] == TIOCPKT_DATA, "packet status byte %d", n ? buf[0] : -1);
    if (n >= 1) check_bytes("slave output", buf + 1, n - 1, written, sizeof(written));
    n = read_some(slave_fd, buf, sizeof(buf));
    check_bytes("typed input", buf, n, typed, sizeof(typed));
  } else {
    const char *echo_and_out = "first line\r\neoflsecondhello\r\n";
    n = read_some(master_fd, buf, sizeof(buf));
    check_bytes("echo and slave output", buf, n, (const unsigned char *)echo_and_out, strlen(echo_and_out));
    /* A canonical read gives the first line only. */
    ssize_t r = read(slave_fd, buf, sizeof(buf));
    check_bytes("first line", buf, r > 0 ? (size_t)r : 0, (const unsigned char *)"first line\n", 11);
    /* The line ^D ended, without a line end. */
    r = read(slave_fd, buf, sizeof(buf));
    check_bytes("line ended by ^D", buf, r > 0 ? (size_t)r : 0, (const unsigned char *)"eofl", 4);
    r = read(slave_fd, buf, sizeof(buf));
    SUBJECT_CHECK(r < 0 && errno == EAGAIN, "the unfinished line read as a line (%zd)", r);
    /* Finishing it ends the line with what was typed before. */
    if (write(master_fd, " part\n", 6) != 6) subject_fail("write master");
    usleep(100000);
    n = read_some(slave_fd, buf, sizeof(buf));
    check_bytes("second line", buf, n, (const unsigned char *)"second part\n", 12);
  }
  /* Still a working pair. */
  if (raw_mode) {
    int off = 0;
    ioctl(master_fd, TIOCPKT, &off);
  }
  if (write(master_fd, "ping\n", 5) != 5) subject_fail("write master");
  usleep(50000);
  n = read_some(slave_fd, buf, sizeof(buf));
  check_bytes("new input", buf, n, (const unsigned char *)"ping\n", 5);
  if (write(slave_fd, "pong", 4) != 4) subject_fail("write slave");
  n = read_some(master_fd, buf, sizeof(buf));
  if (raw_mode) {
    check_bytes("new output", buf, n, (const unsigned char *)"pong", 4);
  } else {
    /* The echoes of " part" and of ping, then pong. */
    check_bytes("new output", buf, n, (const unsigned char *)" part\r\nping\r\npong", 17);
  }
  if (subject_failures) return 1;
  printf("PASS\n");
  return 0;
}
