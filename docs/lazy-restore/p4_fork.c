/* Q4a: fork() in a task whose ranges are registered, with and without UFFD_FEATURE_EVENT_FORK. */
#include "common.h"

static int p2c[2], c2p[2];
static char *R;

/* T: create uffd, then on command fork a child G that reads page0 and page1 of R
 * and reports values + its VmFlags; T reports its fork() duration. */
static void target(void) {
    int u = sys_userfaultfd(O_CLOEXEC | O_NONBLOCK);
    wr_u64(c2p[1], u);
    rd_u64(p2c[0]); close(u); wr_u64(c2p[1], 0);
    rd_u64(p2c[0]);
    int g2t[2]; pipe(g2t);
    double t0 = now_s();
    pid_t g = fork();
    if (g == 0) {
        uint64_t v0 = *(volatile uint64_t *)R;
        uint64_t v1 = *(volatile uint64_t *)(R + PG);
        char fl[256]; snprintf(fl, sizeof fl, "%s", smaps_vmflags(getpid(), (unsigned long)R, NULL));
        printf("   G(%d): page0=%#lx page1=%#lx VmFlags=[%s]\n", getpid(), (unsigned long)v0, (unsigned long)v1, fl);
        fflush(stdout);
        _exit(0);
    }
    double dt = now_s() - t0;
    wr_u64(c2p[1], (uint64_t)(dt * 1e6));
    waitpid(g, NULL, 0);
    /* T itself still registered? read page 2 */
    uint64_t v2 = *(volatile uint64_t *)(R + 2 * PG);
    wr_u64(c2p[1], v2);
    rd_u64(p2c[0]); _exit(0);
}

static void run(int with_fork_event) {
    static char src[PG] __attribute__((aligned(4096)));
    R = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    pipe(p2c); pipe(c2p);
    pid_t t = fork();
    if (t == 0) target();
    int cfd = rd_u64(c2p[0]);
    int pfd = pidfd_open(t), u = pidfd_getfd(pfd, cfd);
    wr_u64(p2c[1], 1); rd_u64(c2p[0]);
    uint64_t feats = with_fork_event ? UFFD_FEATURE_EVENT_FORK : 0;
    CHECK(uffd_api(u, feats, NULL) == 0, "api");
    CHECK(uffd_register(u, (unsigned long)R, 16 * PG, UFFDIO_REGISTER_MODE_MISSING, NULL) == 0, "reg");
    int64_t res;
    *(uint64_t *)src = 0xAA; uffd_copy(u, (unsigned long)R, src, PG, 0, &res); /* page0 present before fork */
    printf("-- %s: page0 filled (0xAA) before fork, page1+ missing; T forks G --\n",
           with_fork_event ? "WITH UFFD_FEATURE_EVENT_FORK" : "WITHOUT EVENT_FORK");
    wr_u64(p2c[1], 2);
    struct uffd_msg m; int nu = -1;
    if (with_fork_event) {
        usleep(300000); /* delay reading the event: does fork() block? */
        CHECK(uffd_read_msg(u, &m, 2000) == 1, "no fork event");
        nu = m.arg.fork.ufd;
        printf("   H: event=%#x (FORK=%#x) new ufd=%d in H's fd table\n", m.event, UFFD_EVENT_FORK, nu);
        /* serve G's fault on page1 via new ufd */
        int r = uffd_read_msg(nu, &m, 2000);
        printf("   H: G fault on new ufd: got=%d addr=%#llx (page1=%p)\n", r, (unsigned long long)m.arg.pagefault.address, R + PG);
        *(uint64_t *)src = 0xBB; r = uffd_copy(nu, (unsigned long)R + PG, src, PG, 0, &res);
        printf("   H: COPY into G via new ufd rc=%d\n", r);
    }
    uint64_t fork_us = rd_u64(c2p[0]);
    printf("   T: fork() took %lu us\n", (unsigned long)fork_us);
    /* T reads page 2: must still fault to H on the old uffd */
    int r = uffd_read_msg(u, &m, 2000);
    *(uint64_t *)src = 0xCC; uffd_copy(u, (unsigned long)R + 2 * PG, src, PG, 0, &res);
    printf("   T's own fault on page2 delivered on original uffd: %d ; T read %#lx\n", r, (unsigned long)rd_u64(c2p[0]));
    if (!with_fork_event) {
        r = uffd_read_msg(u, &m, 100);
        printf("   (no other events on original uffd: %d)\n", r);
    }
    wr_u64(p2c[1], 3); waitpid(t, NULL, 0);
    close(u); if (nu >= 0) close(nu); close(pfd); close(p2c[1]); close(c2p[0]);
    munmap(R, 16 * PG);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    run(0);
    run(1);
    return 0;
}
