/* Q5: UFFDIO_COPY throughput into another process (chunk sizes) and single-fault latency. */
#include "common.h"
#include <sched.h>
#include <sys/uio.h>

#define REG (256UL << 20)
#define CH2M (2UL << 20)
enum { OP_CLOSE = 1, OP_RESET, OP_LAT, OP_EXIT, OP_HUGE, OP_PIN };
static int p2c[2], c2p[2];
static char *R;
static uint32_t *lat; /* shared result buffer (ns per touch) */
#define NLAT 20000
static unsigned char first[NLAT];

static void pin(int cpu) { cpu_set_t s; CPU_ZERO(&s); if (cpu < 0) { CPU_SET(0, &s); CPU_SET(1, &s); } else CPU_SET(cpu, &s); sched_setaffinity(0, sizeof s, &s); }

static void target(void) {
    int u = sys_userfaultfd(O_CLOEXEC);
    wr_u64(c2p[1], u);
    for (;;) {
        uint64_t c = rd_u64(p2c[0]); int op = c >> 56; int64_t arg = (int32_t)(c & 0xffffffff);
        switch (op) {
        case OP_CLOSE: close(u); break;
        case OP_RESET: madvise(R, REG, MADV_DONTNEED); break;
        case OP_HUGE: madvise(R, REG, arg ? MADV_HUGEPAGE : MADV_NOHUGEPAGE); break;
        case OP_PIN: pin(arg); break;
        case OP_LAT: {
            /* touch NLAT random distinct pages, time each */
            uint64_t x = 88172645463325252ull; unsigned npages = REG / PG;
            for (int i = 0; i < NLAT; i++) {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                unsigned long off = (x % npages) * PG;
                uint64_t t0 = now_ns();
                (void)*(volatile uint64_t *)(R + off);
                lat[i] = now_ns() - t0;
            }
            break; }
        case OP_EXIT: _exit(0);
        }
        wr_u64(c2p[1], 0);
    }
}
static void tcmd(int op, int64_t arg) { wr_u64(p2c[1], ((uint64_t)op << 56) | (uint32_t)arg); rd_u64(c2p[0]); }
static void tcmd_async(int op, int64_t arg) { wr_u64(p2c[1], ((uint64_t)op << 56) | (uint32_t)arg); }

static int cmpu32(const void *a, const void *b) { uint32_t x = *(uint32_t *)a, y = *(uint32_t *)b; return x < y ? -1 : x > y; }
static void stats(const char *name, int n) {
    int k = 0; /* keep only first touches of a page (each one is a fault) */
    for (int i = 0; i < n; i++) if (first[i]) lat[k++] = lat[i];
    n = k;
    qsort(lat, n, sizeof *lat, cmpu32);
    printf("  %-52s n=%d median=%.1f us p90=%.1f p99=%.1f min=%.1f\n", name, n, lat[n / 2] / 1e3, lat[n * 9 / 10] / 1e3,
           lat[n * 99 / 100] / 1e3, lat[0] / 1e3);
}

static char *src;
static int g_expect; /* distinct pages touched by OP_LAT (same RNG as target) */
static void count_expected(void) {
    uint64_t x = 88172645463325252ull; unsigned npages = REG / PG;
    static unsigned char seen[(256UL << 20) / 4096];
    for (int i = 0; i < NLAT; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        unsigned long p = x % npages; if (!seen[p]) { seen[p] = 1; g_expect++; first[i] = 1; } }
}
static double fill(int u, unsigned long chunk, int zero) {
    double t0 = now_s();
    for (unsigned long off = 0; off < REG; off += chunk) {
        int64_t c; int r = zero ? uffd_zero(u, (unsigned long)R + off, chunk, 0, &c)
                                : uffd_copy(u, (unsigned long)R + off, src + (off % CH2M), chunk, 0, &c);
        if (r) DIE("copy off=%lu c=%ld", off, (long)c);
    }
    return now_s() - t0;
}

/* handler loop serving faults until target answers on c2p */
static int serve(int u, int use_poll) {
    int n = 0; struct uffd_msg m;
    struct pollfd pp[2] = { { u, POLLIN }, { c2p[0], POLLIN } };
    for (;;) {
        if (use_poll) {
            poll(pp, 2, -1);
            if (pp[1].revents) break;
            if (!(pp[0].revents & POLLIN)) continue;
        } else {
            /* blocking read; wake-up for the end comes from the target's final answer, so poll c2p quickly first */
            if (poll(&pp[1], 1, 0) > 0) break;
        }
        ssize_t k = read(u, &m, sizeof m);
        if (k != sizeof m) { if (errno == EAGAIN) continue; DIE("read"); }
        int64_t c; unsigned long a = m.arg.pagefault.address & ~(PG - 1);
        uffd_copy(u, a, src + (a % CH2M), PG, 0, &c);
        n++;
        if (!use_poll && n == g_expect) { poll(&pp[1], 1, -1); break; }
    }
    rd_u64(c2p[0]);
    return n;
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    R = mmap(NULL, REG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    madvise(R, REG, MADV_NOHUGEPAGE);
    lat = mmap(NULL, NLAT * 4, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    src = aligned_alloc(CH2M, CH2M);
    for (unsigned long i = 0; i < CH2M; i += 8) *(uint64_t *)(src + i) = i * 0x9E3779B97F4A7C15ull;
    pipe(p2c); pipe(c2p);
    pid_t t = fork();
    if (t == 0) target();
    int cfd = rd_u64(c2p[0]); int pfd = pidfd_open(t), u = pidfd_getfd(pfd, cfd);
    tcmd(OP_CLOSE, 0);
    CHECK(uffd_api(u, 0, NULL) == 0, "api");
    CHECK(uffd_register(u, (unsigned long)R, REG, UFFDIO_REGISTER_MODE_MISSING, NULL) == 0, "reg");

    printf("Throughput: fill 256 MiB registered range of another process (best / median of 3 runs)\n");
    unsigned long chunks[] = { PG, 16 * PG, 64 * PG, CH2M };
    for (int z = 0; z < 2; z++)
        for (int ci = 0; ci < 4; ci++) {
            if (z && chunks[ci] != PG && chunks[ci] != CH2M) continue;
            double ts[3];
            for (int k = 0; k < 3; k++) { tcmd(OP_RESET, 0); ts[k] = fill(u, chunks[ci], z); }
            double b = ts[0], mx = ts[0];
            for (int k = 1; k < 3; k++) { if (ts[k] < b) b = ts[k]; if (ts[k] > mx) mx = ts[k]; }
            double med = ts[0] + ts[1] + ts[2] - b - mx;
            printf("  %s chunk %7lu KiB: best %.3f s/GiB (%.0f MiB/s), median %.3f s/GiB, %.2f us per call\n",
                   z ? "ZEROPAGE" : "COPY    ", chunks[ci] >> 10, b * 4, 256 / b, med * 4, med * 1e6 / (REG / chunks[ci]));
        }
    /* baseline: eager restore-style process_vm_writev into an unregistered range */
    CHECK(uffd_unregister(u, (unsigned long)R, REG) == 0, "unreg");
    struct iovec l[128], rm = { R, REG };
    for (int i = 0; i < 128; i++) { l[i].iov_base = src; l[i].iov_len = CH2M; }
    for (int huge = 0; huge < 2; huge++) {
        tcmd(OP_HUGE, huge);
        double best = 1e9;
        for (int k = 0; k < 3; k++) {
            tcmd(OP_RESET, 0);
            double t0 = now_s(); ssize_t n = process_vm_writev(t, l, 128, &rm, 1, 0); double d = now_s() - t0;
            CHECK(n == (ssize_t)REG, "pvw %zd", n);
            if (d < best) best = d;
        }
        printf("  baseline process_vm_writev 256 MiB, unregistered%s: best %.3f s/GiB (%.0f MiB/s)\n",
               huge ? ", MADV_HUGEPAGE" : ", 4K pages   ", best * 4, 256 / best);
    }
    tcmd(OP_HUGE, 0);
    tcmd(OP_RESET, 0);
    /* plain anonymous fault latency (unregistered) */
    count_expected();
    tcmd(OP_LAT, 0); stats("plain anon fault (no uffd), random pages", NLAT);

    CHECK(uffd_register(u, (unsigned long)R, REG, UFFDIO_REGISTER_MODE_MISSING, NULL) == 0, "reg2");
    struct { const char *name; int tcpu, hcpu, use_poll; } cfgs[] = {
        { "uffd fault->read->COPY 4K->resume, unpinned, poll+read", -1, -1, 1 },
        { "same, blocking read()", -1, -1, 0 },
        { "same, both pinned to CPU0 (blocking read)", 0, 0, 0 },
        { "same, T on CPU0, handler on CPU1 (blocking read)", 0, 1, 0 },
    };
    int fl = fcntl(u, F_GETFL);
    for (int i = 0; i < 4; i++) {
        fcntl(u, F_SETFL, cfgs[i].use_poll ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK));
        tcmd(OP_RESET, 0); tcmd(OP_PIN, cfgs[i].tcpu); pin(cfgs[i].hcpu);
        tcmd_async(OP_LAT, 0);
        int n = serve(u, cfgs[i].use_poll);
        char nm[128]; snprintf(nm, sizeof nm, "%s [%d faults]", cfgs[i].name, n);
        stats(nm, NLAT);
    }
    pin(-1);
    wr_u64(p2c[1], (uint64_t)OP_EXIT << 56); waitpid(t, NULL, 0);
    return 0;
}
