/* Q6: background fill (UFFDIO_COPY in address order) racing with fault servicing while
 * target threads touch random pages; DONTWAKE/wake semantics. */
#include "common.h"
#include <pthread.h>
#include <stdatomic.h>

#define REG (128UL << 20)
#define NPG (REG / PG)
#define NTHR 2
#define NTOUCH 4000

static char *R;
static int p2c[2], c2p[2];
struct shared { _Atomic int done; uint32_t lat[NTHR][NTOUCH]; _Atomic long bad; };
static struct shared *S;
static char *src; /* NPG pages, page i word0 = 0xF11L0000 + i (image) */

/* ---------- target ---------- */
static void *toucher(void *p) {
    long id = (long)p; uint64_t x = 0x9E3779B97F4A7C15ull * (id + 1);
    for (int i = 0; i < NTOUCH; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        unsigned long pg = x % NPG;
        uint64_t t0 = now_ns();
        uint64_t v = *(volatile uint64_t *)(R + pg * PG);
        S->lat[id][i] = now_ns() - t0;
        if (v != 0xF1100000ull + pg) S->bad++;
    }
    S->done++;
    return NULL;
}
static void target(void) {
    int u = sys_userfaultfd(O_CLOEXEC | O_NONBLOCK);
    wr_u64(c2p[1], u);
    rd_u64(p2c[0]); close(u); wr_u64(c2p[1], 0);
    rd_u64(p2c[0]);
    pthread_t th[NTHR];
    for (long i = 0; i < NTHR; i++) pthread_create(&th[i], NULL, toucher, (void *)i);
    for (int i = 0; i < NTHR; i++) pthread_join(th[i], NULL);
    for (;;) pause();
}

/* ---------- handler ---------- */
struct cfg { const char *name; unsigned long chunk; int fill_dontwake, fill_wake_after, fault_wake_on_eexist; };
static int U;
static _Atomic int stop_faults;
static _Atomic long n_faults, n_fault_eexist, n_fill_eexist, n_fill_partial, n_fill_calls;
static struct cfg C;

static void *fault_thread(void *p) {
    (void)p; struct uffd_msg m;
    static char zero_src[PG] __attribute__((aligned(4096)));
    (void)zero_src;
    while (!stop_faults) {
        if (uffd_read_msg(U, &m, 20) != 1) continue;
        if (m.event != UFFD_EVENT_PAGEFAULT) continue;
        unsigned long a = m.arg.pagefault.address & ~(PG - 1);
        int64_t c; int r;
        do r = uffd_copy(U, a, src + (a - (unsigned long)R), PG, 0, &c); while (r && errno == EAGAIN && c <= 0);
        n_faults++;
        if (r && errno == EEXIST) {
            n_fault_eexist++;
            if (C.fault_wake_on_eexist) uffd_wake(U, a, PG);
        }
    }
    return NULL;
}
static void *fill_thread(void *p) {
    (void)p;
    unsigned long off = 0;
    while (off < REG) {
        unsigned long len = C.chunk; if (off + len > REG) len = REG - off;
        int64_t c;
        int r = uffd_copy(U, (unsigned long)R + off, src + off, len, C.fill_dontwake ? UFFDIO_COPY_MODE_DONTWAKE : 0, &c);
        n_fill_calls++;
        unsigned long adv;
        if (r == 0) adv = len;
        else if (errno == EAGAIN && c > 0) { n_fill_partial++; adv = c; }   /* stopped at a present page */
        else if (errno == EEXIST) { n_fill_eexist++; adv = PG; }          /* first page present: skip it */
        else if (errno == EAGAIN) continue;
        else DIE("fill off=%lu c=%ld", off, (long)c);
        if (C.fill_dontwake && C.fill_wake_after) uffd_wake(U, (unsigned long)R + off, adv);
        off += adv;
    }
    return NULL;
}

static int cmpu32(const void *a, const void *b) { uint32_t x = *(uint32_t *)a, y = *(uint32_t *)b; return x < y ? -1 : x > y; }

static void run(struct cfg cfg) {
    C = cfg; stop_faults = 0; n_faults = n_fault_eexist = n_fill_eexist = n_fill_partial = n_fill_calls = 0;
    R = mmap(NULL, REG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    memset(S, 0, sizeof *S);
    pipe(p2c); pipe(c2p);
    pid_t t = fork();
    if (t == 0) target();
    int cfd = rd_u64(c2p[0]); int pfd = pidfd_open(t); U = pidfd_getfd(pfd, cfd);
    wr_u64(p2c[1], 1); rd_u64(c2p[0]);
    uffd_api(U, 0, NULL);
    CHECK(uffd_register(U, (unsigned long)R, REG, UFFDIO_REGISTER_MODE_MISSING, NULL) == 0, "reg");
    pthread_t ft, lt;
    pthread_create(&ft, NULL, fault_thread, NULL);
    wr_u64(p2c[1], 2);         /* touchers start */
    usleep(2000);              /* let some faults happen first */
    double t0 = now_s();
    pthread_create(&lt, NULL, fill_thread, NULL);
    pthread_join(lt, NULL);
    double tfill = now_s() - t0;
    while (S->done < NTHR && now_s() - t0 < 3) usleep(1000);
    int hung = NTHR - S->done;
    char states[64] = "";
    if (hung) { /* inspect threads of T */
        char path[64], wc[64]; snprintf(path, sizeof path, "/proc/%d/task", t);
        FILE *f = popen(path[0] ? "true" : "", "r"); if (f) pclose(f);
        for (int k = 1; k < 4; k++) { snprintf(path, sizeof path, "%d", t + k); proc_wchan(t + k, wc, sizeof wc);
            if (!strcmp(wc, "handle_userfault")) strcat(states, "H"); }
        /* rescue: wake everything so the process can be reaped */
        uffd_wake(U, (unsigned long)R, REG);
        usleep(100000);
    }
    stop_faults = 1; pthread_join(ft, NULL);
    static uint32_t all[NTHR * NTOUCH]; int n = 0;
    for (int i = 0; i < NTHR; i++) for (int j = 0; j < NTOUCH; j++) all[n++] = S->lat[i][j];
    qsort(all, n, sizeof *all, cmpu32);
    int slow = 0; for (int i = 0; i < n; i++) if (all[i] > 3000) slow++;
    printf("%-52s fill %.0f ms (%ld calls, %ld partial-EAGAIN, %ld EEXIST) | faults %ld (EEXIST %ld) | "
           "touch>3us %d: p50 %.1f p99 %.1f max %.1f us | bad %ld | hung threads %d%s%s\n",
           cfg.name, tfill * 1e3, (long)n_fill_calls, (long)n_fill_partial, (long)n_fill_eexist, (long)n_faults,
           (long)n_fault_eexist, slow, all[n - slow / 2 - 1] / 1e3, all[n - slow / 100 - 1] / 1e3, all[n - 1] / 1e3,
           (long)S->bad, hung, hung ? " in " : "", states);
    kill(t, SIGKILL); waitpid(t, NULL, 0);
    close(U); close(pfd); close(p2c[1]); close(c2p[0]); close(p2c[0]); close(c2p[1]);
    munmap(R, REG);
}

/* Deterministic demo of wake semantics on one page */
static void wake_demo(void) {
    printf("\n-- wake semantics on a single page --\n");
    for (int variant = 0; variant < 3; variant++) {
        R = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        pipe(p2c); pipe(c2p);
        pid_t t = fork();
        if (t == 0) {
            int u = sys_userfaultfd(O_CLOEXEC | O_NONBLOCK); wr_u64(c2p[1], u);
            rd_u64(p2c[0]); wr_u64(c2p[1], *(volatile uint64_t *)(R + 3 * PG)); for (;;) pause();
        }
        int cfd = rd_u64(c2p[0]); int pfd = pidfd_open(t); int u = pidfd_getfd(pfd, cfd);
        uffd_api(u, 0, NULL); uffd_register(u, (unsigned long)R, 16 * PG, UFFDIO_REGISTER_MODE_MISSING, NULL);
        wr_u64(p2c[1], 1); usleep(50000);
        struct uffd_msg m; int64_t c; struct pollfd pp = { c2p[0], POLLIN };
        if (variant == 0) {
            /* fault message NOT read yet; fill copies the page (normal wake) */
            int r = uffd_copy(u, (unsigned long)R, src, 16 * PG, 0, &c);
            usleep(20000);
            int woke = poll(&pp, 1, 0);
            int ev = uffd_read_msg(u, &m, 50);
            printf("unread fault + fill COPY(16 pages, mode 0) rc=%d: T woke=%d; stale message still readable afterwards=%d\n",
                   r, woke, ev);
        } else {
            int ev = uffd_read_msg(u, &m, 200); /* message read (now on fault_wqh) */
            int r = uffd_copy(u, (unsigned long)R, src, 16 * PG, UFFDIO_COPY_MODE_DONTWAKE, &c);
            usleep(100000);
            int woke = poll(&pp, 1, 0);
            int r2 = uffd_copy(u, (unsigned long)R + 3 * PG, src + 3 * PG, PG, 0, &c);
            int e2 = errno;
            usleep(100000);
            int woke2 = poll(&pp, 1, 0);
            printf("read fault(ev=%d) + fill COPY DONTWAKE rc=%d: T woke=%d; handler COPY of faulting page rc=%d (%s): T woke=%d",
                   ev, r, woke, r2, r2 ? strerrorname_np(e2) : "-", woke2);
            if (variant == 2) {
                uffd_wake(u, (unsigned long)R + 3 * PG, PG); usleep(20000);
                printf("; after UFFDIO_WAKE: T woke=%d", poll(&pp, 1, 0));
            }
            printf("\n");
        }
        kill(t, SIGKILL); waitpid(t, NULL, 0); close(u); close(pfd);
        close(p2c[0]); close(p2c[1]); close(c2p[0]); close(c2p[1]); munmap(R, 16 * PG);
    }
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    S = mmap(NULL, sizeof *S, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    src = aligned_alloc(2 << 20, REG);
    for (unsigned long i = 0; i < NPG; i++) *(uint64_t *)(src + i * PG) = 0xF1100000ull + i;
    wake_demo();
    printf("\n-- %d target threads x %d random touches over %lu MiB while background fill runs --\n", NTHR, NTOUCH, REG >> 20);
    struct cfg cfgs[] = {
        { "fill 4K chunks, mode 0", PG, 0, 0, 0 },
        { "fill 64K chunks, mode 0", 16 * PG, 0, 0, 0 },
        { "fill 2M chunks, mode 0", 2 << 20, 0, 0, 0 },
        { "fill 2M DONTWAKE, no wakes anywhere (bug)", 2 << 20, 1, 0, 0 },
        { "fill 2M DONTWAKE + WAKE(range) after each call", 2 << 20, 1, 1, 0 },
        { "fill 2M DONTWAKE, no batch wake, WAKE on fault EEXIST", 2 << 20, 1, 0, 1 },
    };
    for (unsigned i = 0; i < sizeof cfgs / sizeof *cfgs; i++) run(cfgs[i]);
    return 0;
}
