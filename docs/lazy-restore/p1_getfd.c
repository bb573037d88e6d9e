/* Q1: uffd created by the target task, used from another process via pidfd_getfd.
 * Child T creates the uffd (as an injected syscall would), parent H (the "restorer")
 * takes a dup with pidfd_getfd and does everything else.
 */
#include "common.h"
#include <pthread.h>
#include <sys/uio.h>

enum { OP_CLOSE = 1, OP_READ, OP_WRITE, OP_EXIT, OP_SYSREAD, OP_MMAP2 };
#define CMD(op, arg) (((uint64_t)(op) << 56) | (arg))

static int p2c[2], c2p[2];
static int bigpipe[2];

static void child(int mode_flags, int drop_privs) {
    close(p2c[1]); close(c2p[0]);
    if (drop_privs) {
        CHECK(setresgid(65534, 65534, 65534) == 0 && setresuid(65534, 65534, 65534) == 0, "setuid");
    }
    /* region the parent does not have mapped (mmap after fork) */
    char *a = mmap(NULL, 64 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(a != MAP_FAILED, "mmap");
    int u = sys_userfaultfd(O_CLOEXEC | O_NONBLOCK | mode_flags);
    int e = errno;
    wr_u64(c2p[1], (uint64_t)a);
    wr_u64(c2p[1], (uint64_t)(u < 0 ? -e : u));
    for (;;) {
        uint64_t c = rd_u64(p2c[0]);
        int op = c >> 56; uint64_t arg = c & ((1ull << 56) - 1);
        uint64_t r = 0;
        switch (op) {
        case OP_CLOSE: r = close(u); break;
        case OP_READ: r = *(volatile uint64_t *)(a + arg * PG); break;
        case OP_WRITE: *(volatile uint64_t *)(a + arg * PG) = 0xC0FFEE00 + arg; r = 0; break;
        case OP_SYSREAD: { /* kernel-mode fault: read(2) into a missing page */
            ssize_t n = read(bigpipe[0], a + arg * PG, 16);
            r = n < 0 ? (uint64_t)-errno : (uint64_t)n; break; }
        case OP_EXIT: _exit(0);
        }
        wr_u64(c2p[1], r);
    }
}

struct rv_args { pid_t pid; unsigned long addr; ssize_t ret; int err; double t; };
static void *remote_read_thread(void *p) {
    struct rv_args *r = p; uint64_t v;
    struct iovec l = { &v, 8 }, rm = { (void *)r->addr, 8 };
    double t0 = now_s();
    r->ret = process_vm_readv(r->pid, &l, 1, &rm, 1, 0);
    r->err = errno; r->t = now_s() - t0;
    return NULL;
}

static pid_t spawn(int mode_flags, int drop, unsigned long *addr, int64_t *cfd) {
    CHECK(pipe(p2c) == 0 && pipe(c2p) == 0 && pipe(bigpipe) == 0, "pipe");
    pid_t pid = fork();
    if (pid == 0) child(mode_flags, drop);
    close(p2c[0]); close(c2p[1]);
    *addr = rd_u64(c2p[0]);
    *cfd = (int64_t)rd_u64(c2p[0]);
    return pid;
}
static uint64_t cmd(int op, uint64_t arg) { wr_u64(p2c[1], CMD(op, arg)); return rd_u64(c2p[0]); }
static void cmd_async(int op, uint64_t arg) { wr_u64(p2c[1], CMD(op, arg)); }
static uint64_t cmd_result(void) { return rd_u64(c2p[0]); }

int main(void) {
    static char src[PG] __attribute__((aligned(4096)));
    unsigned long a; int64_t cfd; struct uffd_msg m; int64_t res; uint64_t feat, ioctls;
    char path[128], line[256];

    printf("== A: uffd created in child T, driven from parent via pidfd_getfd ==\n");
    pid_t t = spawn(0, 0, &a, &cfd);
    CHECK(cfd >= 0, "child userfaultfd: %ld", (long)cfd);
    int pfd = pidfd_open(t);
    int u = pidfd_getfd(pfd, (int)cfd);
    CHECK(u >= 0, "pidfd_getfd");
    printf("child %d: region %#lx, its uffd fd=%ld; parent dup fd=%d\n", t, a, (long)cfd, u);
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", u);
    FILE *f = fopen(path, "r");
    printf("fdinfo of dup before API:\n"); while (fgets(line, sizeof line, f)) printf("   %s", line); fclose(f);
    /* flags of the dup: O_NONBLOCK is shared (same struct file) */
    printf("dup fcntl F_GETFL=%#x (O_NONBLOCK=%#x) F_GETFD=%d (pidfd_getfd sets CLOEXEC)\n",
           fcntl(u, F_GETFL), O_NONBLOCK, fcntl(u, F_GETFD));

    int r = uffd_api(u, UFFD_FEATURE_THREAD_ID, &feat);
    printf("UFFDIO_API from parent: rc=%d features-avail=%#lx\n", r, (unsigned long)feat);
    r = uffd_register(u, a, 16 * PG, UFFDIO_REGISTER_MODE_MISSING, &ioctls);
    printf("UFFDIO_REGISTER(child range, MISSING) from parent: rc=%d ioctls=%#lx\n", r, (unsigned long)ioctls);
    CHECK(r == 0, "register");
    /* negative: a uffd created by the parent is bound to the parent's mm */
    int own = sys_userfaultfd(O_CLOEXEC | O_NONBLOCK);
    uffd_api(own, 0, NULL);
    r = uffd_register(own, a, 16 * PG, UFFDIO_REGISTER_MODE_MISSING, NULL);
    printf("negative: parent's OWN uffd REGISTER at child's address: rc=%d errno=%s (ctx->mm is parent's mm)\n",
           r, r ? strerror(errno) : "-");
    close(own);

    printf("child closes its own uffd fd: rc=%ld\n", (long)cmd(OP_CLOSE, 0));
    snprintf(path, sizeof path, "/proc/%d/fd/%ld", t, (long)cfd);
    printf("  /proc/%d/fd/%ld exists: %s\n", t, (long)cfd, access(path, F_OK) == 0 ? "yes" : "no");
    printf("  child smaps VmFlags (registered range): %s\n", smaps_vmflags(t, a, NULL));

    /* page 0: COPY */
    memset(src, 0x5a, PG); *(uint64_t *)src = 0x1111;
    cmd_async(OP_READ, 0);
    CHECK(uffd_read_msg(u, &m, 2000) == 1, "no fault event for page 0");
    printf("event: type=%#x addr=%#llx flags=%#llx ptid=%u (child pid %d)\n", m.event,
           (unsigned long long)m.arg.pagefault.address, (unsigned long long)m.arg.pagefault.flags,
           m.arg.pagefault.feat.ptid, t);
    r = uffd_copy(u, a, src, PG, 0, &res);
    printf("UFFDIO_COPY page0: rc=%d copy=%ld ; child read %#lx\n", r, (long)res, (unsigned long)cmd_result());
    /* page 1: ZEROPAGE on write fault */
    cmd_async(OP_WRITE, 1);
    CHECK(uffd_read_msg(u, &m, 2000) == 1, "no fault event page 1");
    printf("event: addr=%#llx flags=%#llx (WRITE=%d)\n", (unsigned long long)m.arg.pagefault.address,
           (unsigned long long)m.arg.pagefault.flags, UFFD_PAGEFAULT_FLAG_WRITE);
    r = uffd_zero(u, a + PG, PG, 0, &res);
    { uint64_t wr = cmd_result(); uint64_t rb = cmd(OP_READ, 1);
    printf("UFFDIO_ZEROPAGE page1: rc=%d zeropage=%ld ; child write done rc=%lu; read back %#lx\n", r, (long)res,
           (unsigned long)wr, (unsigned long)rb); }
    /* page 2: COPY with DONTWAKE, then WAKE */
    *(uint64_t *)src = 0x2222;
    cmd_async(OP_READ, 2);
    CHECK(uffd_read_msg(u, &m, 2000) == 1, "no fault page 2");
    r = uffd_copy(u, a + 2 * PG, src, PG, UFFDIO_COPY_MODE_DONTWAKE, &res);
    usleep(200000);
    struct pollfd pp = { c2p[0], POLLIN };
    int ready = poll(&pp, 1, 0);
    char wchan[64]; proc_wchan(t, wchan, sizeof wchan);
    printf("COPY page2 with DONTWAKE: rc=%d; 200ms later child answered=%d state=%c wchan=%s\n", r, ready, proc_state(t), wchan);
    r = uffd_wake(u, a + 2 * PG, PG);
    printf("UFFDIO_WAKE: rc=%d ; child read %#lx\n", r, (unsigned long)cmd_result());
    /* page 3: kernel-mode fault (read(2) into missing page) */
    CHECK(write(bigpipe[1], "hello-from-pipe!", 16) == 16, "w");
    cmd_async(OP_SYSREAD, 3);
    r = uffd_read_msg(u, &m, 2000);
    printf("read(2) into missing page3: event=%d addr=%#llx flags=%#llx\n", r,
           (unsigned long long)m.arg.pagefault.address, (unsigned long long)m.arg.pagefault.flags);
    memset(src, 0x77, PG);
    uffd_copy(u, a + 3 * PG, src, PG, 0, &res);
    printf("  after COPY: read(2) returned %ld\n", (long)cmd_result());
    /* restorer's own process_vm_readv of a missing page (remote GUP) */
    struct rv_args ra = { t, a + 4 * PG };
    pthread_t th; pthread_create(&th, NULL, remote_read_thread, &ra);
    r = uffd_read_msg(u, &m, 2000);
    printf("parent thread process_vm_readv(missing page4): event=%d addr=%#llx flags=%#llx (parent thread blocked in GUP)\n",
           r, (unsigned long long)m.arg.pagefault.address, (unsigned long long)m.arg.pagefault.flags);
    usleep(100000);
    *(uint64_t *)src = 0x4444;
    uffd_copy(u, a + 4 * PG, src, PG, 0, &res);
    pthread_join(th, NULL);
    printf("  after COPY: process_vm_readv ret=%zd after %.3fs\n", ra.ret, ra.t);
    /* UNREGISTER, then touch page 5 => plain zero page, no event */
    r = uffd_unregister(u, a, 16 * PG);
    printf("UFFDIO_UNREGISTER from parent: rc=%d ; VmFlags now: %s\n", r, smaps_vmflags(t, a, NULL));
    uint64_t v5 = cmd(OP_READ, 5);
    r = uffd_read_msg(u, &m, 200);
    printf("child reads page5 after unregister: value=%#lx, event=%d\n", (unsigned long)v5, r);
    cmd_async(OP_EXIT, 0); waitpid(t, NULL, 0); close(u); close(pfd);

    printf("\n== B: child without CAP_SYS_PTRACE (uid 65534) ==\n");
    t = spawn(0, 1, &a, &cfd);
    printf("userfaultfd(0) in unprivileged child: %s\n", cfd < 0 ? strerror(-cfd) : "ok");
    cmd_async(OP_EXIT, 0); waitpid(t, NULL, 0);
    t = spawn(UFFD_USER_MODE_ONLY, 1, &a, &cfd);
    printf("userfaultfd(UFFD_USER_MODE_ONLY) in unprivileged child: %s\n", cfd < 0 ? strerror(-cfd) : "ok");
    if (cfd >= 0) {
        pfd = pidfd_open(t); u = pidfd_getfd(pfd, (int)cfd);
        printf("pidfd_getfd of unprivileged child's fd by root parent: %d\n", u);
        uffd_api(u, 0, NULL);
        r = uffd_register(u, a, 16 * PG, UFFDIO_REGISTER_MODE_MISSING, NULL);
        printf("register: %d\n", r);
        CHECK(write(bigpipe[1], "hello-from-pipe!", 16) == 16, "w");
        uint64_t rr = cmd(OP_SYSREAD, 3);
        r = uffd_read_msg(u, &m, 200);
        printf("USER_MODE_ONLY: read(2) into missing page -> ret=%ld (%s), uffd event=%d\n", (long)rr,
               (int64_t)rr < 0 ? strerror(-(int64_t)rr) : "ok", r);
        cmd_async(OP_READ, 5);
        r = uffd_read_msg(u, &m, 2000);
        memset(src, 0x33, PG);
        uffd_copy(u, a + 5 * PG, src, PG, 0, &res);
        printf("USER_MODE_ONLY: user-mode touch -> event=%d, value after COPY=%#lx\n", r, (unsigned long)cmd_result());
        close(u); close(pfd);
    }
    cmd_async(OP_EXIT, 0); waitpid(t, NULL, 0);
    return 0;
}
