/* Q6b: a thread faulting on the FIRST page of a big UFFDIO_COPY is woken only when the
 * whole ioctl returns (wake_userfault() runs after mfill_atomic_copy()). */
#include "common.h"

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    size_t L = 32UL << 20; /* 32 MiB chunk to make the effect obvious */
    char *src = aligned_alloc(2 << 20, L); memset(src, 7, L);
    for (int trial = 0; trial < 3; trial++) {
        char *R = mmap(NULL, L, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        uint64_t *res = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        int c2p[2], p2c[2]; pipe(c2p); pipe(p2c);
        pid_t t = fork();
        if (t == 0) {
            int u = sys_userfaultfd(O_CLOEXEC | O_NONBLOCK); wr_u64(c2p[1], u);
            rd_u64(p2c[0]);
            uint64_t t0 = now_ns(); (void)*(volatile char *)R; res[0] = now_ns() - t0; res[1] = now_ns();
            wr_u64(c2p[1], 0); for (;;) pause();
        }
        int cfd = rd_u64(c2p[0]); int pfd = pidfd_open(t), u = pidfd_getfd(pfd, cfd);
        uffd_api(u, 0, NULL); uffd_register(u, (unsigned long)R, L, UFFDIO_REGISTER_MODE_MISSING, NULL);
        wr_u64(p2c[1], 1); usleep(20000); /* T is now blocked on page 0 */
        int64_t c; uint64_t s0 = now_ns();
        int r = uffd_copy(u, (unsigned long)R, src, L, 0, &c);
        uint64_t s1 = now_ns();
        rd_u64(c2p[0]);
        printf("COPY of %zu MiB starting at the faulting page: rc=%d, ioctl %.2f ms; T resumed %.2f ms after ioctl start "
               "(%.3f ms after ioctl return)\n", L >> 20, r, (s1 - s0) / 1e6, ((int64_t)res[1] - (int64_t)s0) / 1e6,
               ((int64_t)res[1] - (int64_t)s1) / 1e6);
        kill(t, SIGKILL); waitpid(t, NULL, 0); close(u); close(pfd); munmap(R, L);
        close(c2p[0]); close(c2p[1]); close(p2c[0]); close(p2c[1]);
    }
    return 0;
}
