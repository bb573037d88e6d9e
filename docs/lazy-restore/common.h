/* Shared helpers for the lazy-restore userfaultfd probes. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <linux/userfaultfd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

#define PG 4096UL

#define DIE(...) do { fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__); fprintf(stderr, " (errno=%d %s)\n", errno, strerror(errno)); \
        exit(1); } while (0)
#define CHECK(c, ...) do { if (!(c)) DIE(__VA_ARGS__); } while (0)

static inline int pidfd_open(pid_t pid) { return syscall(SYS_pidfd_open, pid, 0); }
static inline int pidfd_getfd(int pidfd, int fd) { return syscall(SYS_pidfd_getfd, pidfd, fd, 0); }
static inline int sys_userfaultfd(int flags) { return syscall(SYS_userfaultfd, flags); }

static inline double now_s(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
static inline uint64_t now_ns(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static inline int uffd_api(int fd, uint64_t features, uint64_t *got) {
    struct uffdio_api a = { .api = UFFD_API, .features = features };
    int r = ioctl(fd, UFFDIO_API, &a);
    if (got) *got = a.features;
    return r;
}
static inline int uffd_register(int fd, unsigned long start, unsigned long len, uint64_t mode, uint64_t *ioctls) {
    struct uffdio_register r = { .range = { start, len }, .mode = mode };
    int ret = ioctl(fd, UFFDIO_REGISTER, &r);
    if (ioctls) *ioctls = r.ioctls;
    return ret;
}
static inline int uffd_unregister(int fd, unsigned long start, unsigned long len) {
    struct uffdio_range r = { start, len };
    return ioctl(fd, UFFDIO_UNREGISTER, &r);
}
/* returns ioctl rc; *copied gets uffdio_copy.copy (bytes or -errno) */
static inline int uffd_copy(int fd, unsigned long dst, const void *src, unsigned long len, uint64_t mode, int64_t *copied) {
    struct uffdio_copy c = { .dst = dst, .src = (unsigned long)src, .len = len, .mode = mode };
    int r = ioctl(fd, UFFDIO_COPY, &c);
    if (copied) *copied = c.copy;
    return r;
}
static inline int uffd_zero(int fd, unsigned long dst, unsigned long len, uint64_t mode, int64_t *z) {
    struct uffdio_zeropage c = { .range = { dst, len }, .mode = mode };
    int r = ioctl(fd, UFFDIO_ZEROPAGE, &c);
    if (z) *z = c.zeropage;
    return r;
}
static inline int uffd_wake(int fd, unsigned long start, unsigned long len) {
    struct uffdio_range r = { start, len };
    return ioctl(fd, UFFDIO_WAKE, &r);
}
/* read one message with timeout (ms); returns 1 got msg, 0 timeout, -1 error */
static inline int uffd_read_msg(int fd, struct uffd_msg *m, int timeout_ms) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int r = poll(&p, 1, timeout_ms);
    if (r <= 0) return r;
    ssize_t n = read(fd, m, sizeof(*m));
    if (n == sizeof(*m)) return 1;
    if (n < 0 && errno == EAGAIN) return 0;
    return -1;
}

/* Return the VmFlags line for the smaps entry containing addr (static buffer). */
static inline const char *smaps_vmflags(pid_t pid, unsigned long addr, char *range_out) {
    static char out[512];
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/smaps", pid);
    FILE *f = fopen(path, "r");
    if (!f) return "?";
    int in = 0; out[0] = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long s, e;
        if (sscanf(line, "%lx-%lx ", &s, &e) == 2) {
            in = (addr >= s && addr < e);
            if (in && range_out) { sprintf(range_out, "%lx-%lx", s, e); }
            continue;
        }
        if (in && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(out, sizeof out, "%s", line + 9);
            out[strcspn(out, "\n")] = 0;
            break;
        }
    }
    fclose(f);
    return out;
}
/* Count /proc/pid/maps lines overlapping [a, b) */
static inline int maps_count(pid_t pid, unsigned long a, unsigned long b) {
    char path[64], line[512]; int n = 0;
    snprintf(path, sizeof path, "/proc/%d/maps", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long s, e;
        if (sscanf(line, "%lx-%lx", &s, &e) == 2 && s < b && e > a) n++;
    }
    fclose(f);
    return n;
}
static inline void maps_print(pid_t pid, unsigned long a, unsigned long b, const char *tag) {
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/maps", pid);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f)) {
        unsigned long s, e;
        if (sscanf(line, "%lx-%lx", &s, &e) == 2 && s < b && e > a) printf("   [%s] maps: %s", tag, line);
    }
    if (f) fclose(f);
}
static inline char proc_state(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r"); if (!f) return '?';
    size_t n = fread(buf, 1, sizeof buf - 1, f); fclose(f); buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p ? p[2] : '?';
}
static inline void proc_wchan(pid_t pid, char *out, size_t len) {
    char path[64]; snprintf(path, sizeof path, "/proc/%d/wchan", pid);
    FILE *f = fopen(path, "r"); out[0] = 0;
    if (f) { size_t n = fread(out, 1, len - 1, f); out[n] = 0; fclose(f); }
}
/* simple pipe-based command channel */
static inline void wr_u64(int fd, uint64_t v) { CHECK(write(fd, &v, 8) == 8, "write"); }
static inline uint64_t rd_u64(int fd) { uint64_t v; ssize_t n = read(fd, &v, 8); if (n != 8) { if (n==0) exit(0); DIE("read pipe n=%zd", n);} return v; }
