/* Q3: /proc/PID/maps and smaps VmFlags with uffd registration; VMA split/merge;
 * which mapping types can be registered; THP effect of lazy filling. */
#include "common.h"
#include <sys/uio.h>

static int p2c[2], c2p[2];

static unsigned long smaps_field(pid_t pid, unsigned long addr, const char *field) {
    char path[64], line[512]; int in = 0; unsigned long v = 0;
    snprintf(path, sizeof path, "/proc/%d/smaps", pid);
    FILE *f = fopen(path, "r");
    size_t fl = strlen(field);
    while (f && fgets(line, sizeof line, f)) {
        unsigned long s, e;
        if (sscanf(line, "%lx-%lx ", &s, &e) == 2) { in = addr >= s && addr < e; continue; }
        if (in && !strncmp(line, field, fl)) { sscanf(line + fl + 1, "%lu", &v); break; }
    }
    if (f) fclose(f);
    return v;
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    /* layout created before fork so the parent knows the addresses */
    char *a = mmap(NULL, 64 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *b = mmap(NULL, 64 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *d = mmap(NULL, 48 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *c = mmap(NULL, 32 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mprotect(c + 16 * PG, 16 * PG, PROT_READ); /* two adjacent VMAs with different prot */
    int fdf = open("/etc/passwd", O_RDONLY);
    char *fm = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fdf, 0);
    char *sh = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    /* 2 MiB aligned regions for THP comparison */
    char *raw = mmap(NULL, 10 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *h1 = (char *)(((unsigned long)raw + (2 << 20) - 1) & ~((2UL << 20) - 1));
    char *h2 = h1 + (4 << 20);
    munmap(h1 + (2 << 20), 2 << 20); /* separate h1 and h2 VMAs by a hole */
    madvise(h1, 2 << 20, MADV_HUGEPAGE); madvise(h2, 2 << 20, MADV_HUGEPAGE);
    printf("h1=%p h2=%p\n", h1, h2);

    CHECK(pipe(p2c) == 0 && pipe(c2p) == 0, "pipe");
    pid_t t = fork();
    if (t == 0) {
        int u = sys_userfaultfd(O_CLOEXEC | O_NONBLOCK);
        wr_u64(c2p[1], u);
        rd_u64(p2c[0]); close(u);      /* step 1: close own fd */
        wr_u64(c2p[1], 0);
        rd_u64(p2c[0]);               /* step 2: touch h1 (faults served by parent) */
        for (unsigned long i = 0; i < (2 << 20); i += PG) (void)*(volatile char *)(h1 + i);
        wr_u64(c2p[1], 0);
        rd_u64(p2c[0]);               /* step 3: touch D head (plain fault) and D middle (uffd) */
        d[0] = 1; d[20 * PG] = 2; d[40 * PG] = 3;
        wr_u64(c2p[1], 0);
        rd_u64(p2c[0]); _exit(0);
    }
    int cfd = rd_u64(c2p[0]);
    int pfd = pidfd_open(t), u = pidfd_getfd(pfd, cfd);
    wr_u64(p2c[1], 1); rd_u64(c2p[0]);
    uffd_api(u, 0, NULL);
    unsigned long A = (unsigned long)a, B = (unsigned long)b, C = (unsigned long)c;
    int r;

    printf("A (64 pages): maps lines=%d VmFlags=[%s]\n", maps_count(t, A, A + 64 * PG), smaps_vmflags(t, A, NULL));
    r = uffd_register(u, A, 64 * PG, UFFDIO_REGISTER_MODE_MISSING, NULL);
    printf("register whole A MISSING rc=%d: maps lines=%d VmFlags=[%s]\n", r, maps_count(t, A, A + 64 * PG), smaps_vmflags(t, A, NULL));
    maps_print(t, A, A + 64 * PG, "A");
    r = uffd_register(u, B + 16 * PG, 16 * PG, UFFDIO_REGISTER_MODE_MISSING, NULL);
    char f1[256], f2[256];
    snprintf(f1, sizeof f1, "%s", smaps_vmflags(t, B, NULL)); snprintf(f2, sizeof f2, "%s", smaps_vmflags(t, B + 20 * PG, NULL));
    printf("register middle 16 pages of B rc=%d: maps lines=%d ; VmFlags head=[%s] mid=[%s]\n", r,
           maps_count(t, B, B + 64 * PG), f1, f2);
    maps_print(t, B, B + 64 * PG, "B");
    r = uffd_unregister(u, B + 16 * PG, 16 * PG);
    printf("unregister middle of B rc=%d: maps lines=%d (merged back)\n", r, maps_count(t, B, B + 64 * PG));
    r = uffd_register(u, C, 32 * PG, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP, NULL);
    snprintf(f1, sizeof f1, "%s", smaps_vmflags(t, C, NULL)); snprintf(f2, sizeof f2, "%s", smaps_vmflags(t, C + 20 * PG, NULL));
    printf("register C (rw VMA + ro VMA) MISSING|WP rc=%d: lines=%d flags rw=[%s] ro=[%s]\n", r,
           maps_count(t, C, C + 32 * PG), f1, f2);
    r = uffd_register(u, B, PG, UFFDIO_REGISTER_MODE_MINOR, NULL);
    printf("register MINOR on private anon: rc=%d %s\n", r, r ? strerror(errno) : "");
    r = uffd_register(u, (unsigned long)fm, PG, UFFDIO_REGISTER_MODE_MISSING, NULL);
    printf("register MISSING on MAP_PRIVATE file mapping (/etc/passwd): rc=%d %s\n", r, r ? strerror(errno) : "");
    r = uffd_register(u, (unsigned long)sh, 16 * PG, UFFDIO_REGISTER_MODE_MISSING, NULL);
    printf("register MISSING on MAP_SHARED|MAP_ANONYMOUS (shmem) without UFFD_FEATURE_MISSING_SHMEM requested: rc=%d %s\n",
           r, r ? strerror(errno) : "");
    r = uffd_register(u, A, 64 * PG, UFFDIO_REGISTER_MODE_MISSING, NULL);
    printf("re-register A (same ctx): rc=%d\n", r);
    int u2 = sys_userfaultfd(O_CLOEXEC); (void)u2; /* parent's own: different mm, so can't test EBUSY here */

    /* THP: h1 lazily filled via 4K UFFDIO_COPY (faults), h2 eagerly via process_vm_writev */
    r = uffd_register(u, (unsigned long)h1, 2 << 20, UFFDIO_REGISTER_MODE_MISSING, NULL);
    printf("register h1 rc=%d\n", r);
    wr_u64(p2c[1], 2);
    static char src[PG] __attribute__((aligned(4096)));
    memset(src, 1, PG);
    int served = 0; struct uffd_msg m;
    struct pollfd pp = { c2p[0], POLLIN };
    while (poll(&pp, 1, 0) == 0) {
        if (uffd_read_msg(u, &m, 100) == 1) {
            int64_t res; uffd_copy(u, m.arg.pagefault.address & ~(PG - 1), src, PG, 0, &res); served++;
        }
    }
    rd_u64(c2p[0]);
    char *big = malloc(2 << 20); memset(big, 2, 2 << 20);
    struct iovec l = { big, 2 << 20 }, rm = { h2, 2 << 20 };
    ssize_t n = process_vm_writev(t, &l, 1, &rm, 1, 0);
    printf("h1 lazily filled by %d 4K faults: Rss=%lu kB AnonHugePages=%lu kB\n", served,
           smaps_field(t, (unsigned long)h1, "Rss:"), smaps_field(t, (unsigned long)h1, "AnonHugePages:"));
    printf("h2 eagerly written by process_vm_writev (%zd bytes): Rss=%lu kB AnonHugePages=%lu kB\n", n,
           smaps_field(t, (unsigned long)h2, "Rss:"), smaps_field(t, (unsigned long)h2, "AnonHugePages:"));
    r = uffd_unregister(u, (unsigned long)h1, 2 << 20);
    printf("after UNREGISTER h1: VmFlags=[%s] AnonHugePages=%lu kB (khugepaged may collapse later)\n",
           smaps_vmflags(t, (unsigned long)h1, NULL), smaps_field(t, (unsigned long)h1, "AnonHugePages:"));

    /* split registration with pages populated on both sides, then unregister */
    unsigned long D = (unsigned long)d;
    uffd_register(u, D + 16 * PG, 16 * PG, UFFDIO_REGISTER_MODE_MISSING, NULL);
    wr_u64(p2c[1], 3);
    while (uffd_read_msg(u, &m, 200) == 1) { int64_t res; uffd_copy(u, m.arg.pagefault.address & ~(PG - 1), src, PG, 0, &res); }
    rd_u64(c2p[0]);
    printf("D: middle registered, pages populated in all three parts: maps lines=%d", maps_count(t, D, D + 48 * PG));
    uffd_unregister(u, D + 16 * PG, 16 * PG);
    printf(" -> after UNREGISTER: %d\n", maps_count(t, D, D + 48 * PG));
    close(u);
    printf("after close of last uffd ref: A flags=[%s] ; C lines=%d flags=[%s]\n", smaps_vmflags(t, A, NULL),
           maps_count(t, C, C + 32 * PG), smaps_vmflags(t, C, NULL));
    wr_u64(p2c[1], 4); waitpid(t, NULL, 0);
    return 0;
}
