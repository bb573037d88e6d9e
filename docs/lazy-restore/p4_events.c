/* Q4b: MADV_DONTNEED / MADV_FREE / munmap / MAP_FIXED / mremap during the lazy phase,
 * with and without UFFD_FEATURE_EVENT_{REMOVE,UNMAP,REMAP}; UFFDIO_COPY error codes. */
#include "common.h"

enum { OP_CLOSE = 1, OP_READ, OP_DONTNEED, OP_FREE, OP_MUNMAP, OP_MAPFIXED, OP_MREMAP, OP_EXIT, OP_WRITE };
static int p2c[2], c2p[2];
static char *R; /* 64 pages */
static char *NEWADDR;

static void target(void) {
    int u = sys_userfaultfd(O_CLOEXEC | O_NONBLOCK);
    wr_u64(c2p[1], u);
    for (;;) {
        uint64_t c = rd_u64(p2c[0]); int op = c >> 56; uint64_t arg = c & 0xffffffff;
        uint64_t r = 0; double t0 = now_s();
        switch (op) {
        case OP_CLOSE: r = close(u); break;
        case OP_READ: r = *(volatile uint64_t *)(R + arg * PG); break;
        case OP_WRITE: *(volatile uint64_t *)(R + arg * PG) = 0x5555; break;
        case OP_DONTNEED: r = madvise(R + arg * PG, PG, MADV_DONTNEED); r = (uint64_t)((now_s() - t0) * 1e6); break;
        case OP_FREE: r = madvise(R + arg * PG, PG, MADV_FREE); r = (uint64_t)((now_s() - t0) * 1e6); break;
        case OP_MUNMAP: munmap(R + arg * PG, 4 * PG); r = (uint64_t)((now_s() - t0) * 1e6); break;
        case OP_MAPFIXED: mmap(R + arg * PG, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
                          r = (uint64_t)((now_s() - t0) * 1e6); break;
        case OP_MREMAP: { void *p = mremap(R + arg * PG, 8 * PG, 8 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, NEWADDR);
                          r = (uint64_t)((now_s() - t0) * 1e6); if (p == MAP_FAILED) r = (uint64_t)-1; break; }
        case OP_EXIT: _exit(0);
        }
        wr_u64(c2p[1], r);
    }
}
static void tcmd(int op, uint64_t arg) { wr_u64(p2c[1], ((uint64_t)op << 56) | arg); }
static uint64_t tres(void) { return rd_u64(c2p[0]); }
static int tready(int ms) { struct pollfd p = { c2p[0], POLLIN }; return poll(&p, 1, ms); }

static char src[64 * PG] __attribute__((aligned(4096)));
static const char *ename(int e) {
    switch (e) { case UFFD_EVENT_PAGEFAULT: return "PAGEFAULT"; case UFFD_EVENT_FORK: return "FORK";
    case UFFD_EVENT_REMAP: return "REMAP"; case UFFD_EVENT_REMOVE: return "REMOVE"; case UFFD_EVENT_UNMAP: return "UNMAP"; }
    return "?";
}
static void show_copy(const char *what, int u, unsigned long dst, unsigned long len) {
    int64_t c; int r = uffd_copy(u, dst, src, len, 0, &c);
    printf("   COPY %-44s rc=%d errno=%-7s copy=%ld\n", what, r, r ? strerrorname_np(errno) : "-", (long)c);
}

static void run(uint64_t feats) {
    R = mmap(NULL, 64 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    NEWADDR = mmap(NULL, 8 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); /* placeholder target for mremap */
    unsigned long A = (unsigned long)R;
    pipe(p2c); pipe(c2p);
    pid_t t = fork();
    if (t == 0) target();
    int cfd = tres(); int pfd = pidfd_open(t), u = pidfd_getfd(pfd, cfd);
    tcmd(OP_CLOSE, 0); tres();
    CHECK(uffd_api(u, feats, NULL) == 0, "api");
    CHECK(uffd_register(u, A, 64 * PG, UFFDIO_REGISTER_MODE_MISSING, NULL) == 0, "reg");
    printf("-- features: %s%s%s%s --\n", feats ? "" : "none", feats & UFFD_FEATURE_EVENT_REMOVE ? "REMOVE " : "",
           feats & UFFD_FEATURE_EVENT_UNMAP ? "UNMAP " : "", feats & UFFD_FEATURE_EVENT_REMAP ? "REMAP" : "");
    struct uffd_msg m; int r;
    for (int i = 0; i < 64; i++) *(uint64_t *)(src + i * PG) = 0x1000 + i;

    /* error codes */
    show_copy("page0 (missing)", u, A, PG);
    show_copy("page0 again (already present)", u, A, PG);
    { int64_t z; int rz = uffd_zero(u, A, PG, 0, &z);
      printf("   ZEROPAGE page0 (present)                         rc=%d errno=%s zeropage=%ld\n", rz, strerrorname_np(errno), (long)z); }
    show_copy("page4 (make it present)", u, A + 4 * PG, PG);
    show_copy("pages 2..5 where page4 present", u, A + 2 * PG, 4 * PG);
    show_copy("range crossing end of registered VMA", u, A + 62 * PG, 4 * PG);

    /* MADV_DONTNEED on a filled page (page0) */
    tcmd(OP_DONTNEED, 0);
    usleep(100000); int answered = tready(0);
    r = uffd_read_msg(u, &m, 200);
    if (r == 1) {
        printf("   T madvise(DONTNEED,page0): event %s start=%#llx end=%#llx (T answered before H read the event: %d)\n",
               ename(m.event), (unsigned long long)m.arg.remove.start - A, (unsigned long long)m.arg.remove.end - A, answered);
    }
    printf("   T madvise(DONTNEED) took %lu us; event=%d\n", (unsigned long)tres(), r);
    tcmd(OP_READ, 0);
    r = uffd_read_msg(u, &m, 200);
    printf("   T re-reads page0 after DONTNEED: fault event=%d (%s) (handler answers ZEROPAGE here)\n",
           r, r == 1 ? ename(m.event) : "-");
    if (r == 1) { int64_t z; uffd_zero(u, A, PG, 0, &z); }
    printf("   T read %#lx\n", (unsigned long)tres());

    /* MADV_FREE on a filled page (page4) */
    tcmd(OP_FREE, 4); r = uffd_read_msg(u, &m, 200);
    printf("   T madvise(FREE,page4): event=%d %s; took %lu us\n", r, r == 1 ? ename(m.event) : "", (unsigned long)tres());

    /* EAGAIN while a non-cooperative event is pending */
    if (feats & UFFD_FEATURE_EVENT_REMOVE) {
        tcmd(OP_DONTNEED, 5); usleep(50000);
        show_copy("page10 while REMOVE event unread", u, A + 10 * PG, PG);
        uffd_read_msg(u, &m, 200); tres();
        show_copy("page10 after reading the event", u, A + 10 * PG, PG);
    }

    /* munmap pages 8..11 */
    tcmd(OP_MUNMAP, 8); r = uffd_read_msg(u, &m, 200);
    if (r == 1) printf("   T munmap(8..11): event %s [%#llx,%#llx)\n", ename(m.event),
                       (unsigned long long)m.arg.remove.start - A, (unsigned long long)m.arg.remove.end - A);
    printf("   T munmap took %lu us, event=%d\n", (unsigned long)tres(), r);
    show_copy("page8 (unmapped)", u, A + 8 * PG, PG);
    /* MAP_FIXED over registered missing pages 12..13 */
    tcmd(OP_MAPFIXED, 12); r = uffd_read_msg(u, &m, 200);
    if (r == 1) printf("   T mmap(MAP_FIXED over 12..13): event %s [%#llx,%#llx)\n", ename(m.event),
                       (unsigned long long)m.arg.remove.start - A, (unsigned long long)m.arg.remove.end - A);
    printf("   T mmap(MAP_FIXED) took %lu us, event=%d\n", (unsigned long)tres(), r);
    show_copy("page12 (new unregistered anon VMA)", u, A + 12 * PG, PG);
    /* mremap pages 16..23 (17 filled first) to NEWADDR */
    show_copy("page17 before mremap", u, A + 17 * PG, PG);
    tcmd(OP_MREMAP, 16);
    int nev = 0;
    while ((r = uffd_read_msg(u, &m, 200)) == 1) {
        nev++;
        if (m.event == UFFD_EVENT_REMAP)
            printf("   T mremap(16..23 -> new): event %s from=+%#llx to=%p len=%#llx\n", ename(m.event),
                   (unsigned long long)m.arg.remap.from - A, (void *)(unsigned long)m.arg.remap.to,
                   (unsigned long long)m.arg.remap.len);
        else
            printf("   T mremap(16..23 -> new): event %s [%#llx,%#llx) (relative to R)\n", ename(m.event),
                   (unsigned long long)m.arg.remove.start - A, (unsigned long long)m.arg.remove.end - A);
    }
    printf("   T mremap took %lu us, events=%d\n", (unsigned long)tres(), nev);
    show_copy("old address page16 (moved away)", u, A + 16 * PG, PG);
    printf("   new VMA VmFlags=[%s]\n", smaps_vmflags(t, (unsigned long)NEWADDR, NULL));
    /* T reads moved page 18 (missing) and 17 (present) */
    tcmd(OP_READ, (NEWADDR - R) / PG + 1);
    printf("   T reads moved present page (was 17): %#lx\n", (unsigned long)tres());
    tcmd(OP_READ, (NEWADDR - R) / PG + 2);
    r = uffd_read_msg(u, &m, 200);
    printf("   T reads moved missing page (was 18): fault event=%d addr=%s\n", r,
           r == 1 && m.arg.pagefault.address == (unsigned long)NEWADDR + 2 * PG ? "NEW address" : "-");
    if (r == 1) { int64_t c; uffd_copy(u, (unsigned long)NEWADDR + 2 * PG, src + 18 * PG, PG, 0, &c); }
    printf("   T read %#lx\n", (unsigned long)tres());

    tcmd(OP_EXIT, 0); waitpid(t, NULL, 0);
    struct pollfd pp = { u, POLLIN };
    r = poll(&pp, 1, 100);
    printf("   after T exit: poll(uffd)=%d revents=%#x ; ", r, pp.revents);
    show_copy("after target exit", u, A + 30 * PG, PG);
    struct pollfd pq = { pfd, POLLIN }; r = poll(&pq, 1, 0);
    printf("   pidfd poll after exit: %d revents=%#x\n", r, pq.revents);
    close(u); close(pfd); close(p2c[1]); close(c2p[0]);
    munmap(R, 64 * PG); munmap(NEWADDR, 8 * PG);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    run(0);
    run(UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMAP);
    return 0;
}
