/* Q2: what happens to a task blocked on a uffd missing fault when the uffd holder
 * (restorer) dies; PTRACE_O_EXITKILL behaviour; TracerPid visibility.
 *
 * Processes: M (this main, real parent of T and H), T (target), H (holder/"restorer").
 */
#include "common.h"
#include <pthread.h>
#include <sys/ptrace.h>
#include <sys/user.h>

enum { OP_CLOSE = 1, OP_TOUCH, OP_TRACERPID, OP_EXIT, OP_SPIN };
static int p2c[2], c2p[2];
static unsigned long g_addr; static int g_cfd;

static volatile sig_atomic_t got_usr1;
static void on_usr1(int s) { (void)s; got_usr1++; }

static void tracer_pid_line(char *out, size_t n) {
    FILE *f = fopen("/proc/self/status", "r"); char l[256]; out[0] = 0;
    while (f && fgets(l, sizeof l, f)) if (!strncmp(l, "TracerPid:", 10)) { snprintf(out, n, "%s", l + 10); break; }
    if (f) fclose(f);
    out[strcspn(out, "\n")] = 0;
}

static pid_t spawn_target(void) {
    CHECK(pipe(p2c) == 0 && pipe(c2p) == 0, "pipe");
    pid_t t = fork();
    if (t == 0) {
        signal(SIGUSR1, on_usr1);
        close(p2c[1]); close(c2p[0]);
        char *a = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        int u = sys_userfaultfd(O_CLOEXEC | O_NONBLOCK);
        wr_u64(c2p[1], (uint64_t)a); wr_u64(c2p[1], u);
        for (;;) {
            uint64_t c = rd_u64(p2c[0]);
            int op = c >> 56; uint64_t arg = c & 0xffffffff;
            switch (op) {
            case OP_CLOSE: close(u); wr_u64(c2p[1], 0); break;
            case OP_TOUCH: { uint64_t v = *(volatile uint64_t *)(a + arg * PG);
                             wr_u64(c2p[1], 0xAB00000000000000ull | (got_usr1 << 16) | (v & 0xffff)); break; }
            case OP_TRACERPID: { char b[64]; tracer_pid_line(b, sizeof b); wr_u64(c2p[1], strtoul(b, 0, 10)); break; }
            case OP_SPIN: wr_u64(c2p[1], 0); for (;;) { volatile int x = 0; (void)x; } /* running, never stops */
            case OP_EXIT: _exit(0);
            }
        }
    }
    close(p2c[0]); close(c2p[1]);
    g_addr = rd_u64(c2p[0]); g_cfd = (int)rd_u64(c2p[0]);
    return t;
}
static void tcmd(int op, uint64_t arg) { wr_u64(p2c[1], ((uint64_t)op << 56) | arg); }
static int tresult(uint64_t *v, int ms) {
    struct pollfd p = { c2p[0], POLLIN };
    if (poll(&p, 1, ms) <= 0) return 0;
    if (read(c2p[0], v, 8) != 8) return -1; /* EOF: target died */
    return 1;
}

/* holder: takes uffd, registers, optionally PTRACE_SEIZE(EXITKILL); then sleeps.
 * mode bit0: seize with EXITKILL; bit1: do ptrace from a helper thread that exits. */
static int hready[2];
struct hthr { pid_t t; };
static void *seize_thread(void *p) {
    pid_t t = ((struct hthr *)p)->t;
    CHECK(ptrace(PTRACE_SEIZE, t, 0, PTRACE_O_EXITKILL) == 0, "seize (thread)");
    return NULL; /* thread exits -> its tracees get SIGKILL */
}
static pid_t spawn_holder(pid_t t, int mode) {
    CHECK(pipe(hready) == 0, "pipe");
    pid_t h = fork();
    if (h == 0) {
        close(hready[0]);
        int pfd = pidfd_open(t); int u = pidfd_getfd(pfd, g_cfd);
        CHECK(u >= 0, "getfd");
        CHECK(uffd_api(u, 0, NULL) == 0, "api");
        CHECK(uffd_register(u, g_addr, 16 * PG, UFFDIO_REGISTER_MODE_MISSING, NULL) == 0, "reg");
        if (mode & 1) CHECK(ptrace(PTRACE_SEIZE, t, 0, PTRACE_O_EXITKILL) == 0, "seize");
        if (mode & 2) { pthread_t th; struct hthr a = { t }; pthread_create(&th, NULL, seize_thread, &a); pthread_join(th, NULL); }
        wr_u64(hready[1], 1);
        for (;;) pause();
    }
    close(hready[1]);
    rd_u64(hready[0]); close(hready[0]);
    return h;
}

static const char *wstat(int st, char *b) {
    if (WIFSIGNALED(st)) sprintf(b, "killed by sig %d", WTERMSIG(st));
    else if (WIFEXITED(st)) sprintf(b, "exited %d", WEXITSTATUS(st));
    else sprintf(b, "st=%#x", st);
    return b;
}

/* one trial: T blocks on a fault while H is the holder; H is SIGKILLed.
 * keep_own: T keeps its own uffd fd. exitkill: H seizes T with EXITKILL.
 * Returns: 1 = T continued and ran user code (marker received, value in *val), 2 = T killed, 0 = T still blocked */
static int trial(int keep_own, int exitkill, uint64_t *val, int verbose) {
    pid_t t = spawn_target();
    pid_t h = spawn_holder(t, exitkill ? 1 : 0);
    if (!keep_own) { uint64_t x; tcmd(OP_CLOSE, 0); tresult(&x, 1000); }
    tcmd(OP_TOUCH, 3);
    usleep(50000);
    char wc[64]; proc_wchan(t, wc, sizeof wc);
    if (verbose) printf("  T blocked: state=%c wchan=%s\n", proc_state(t), wc);
    kill(h, SIGKILL); waitpid(h, NULL, 0);
    int r = tresult(val, 500), res;
    int st; pid_t w = waitpid(t, &st, WNOHANG);
    if (r == 1) res = 1;
    else if (r == -1 || w == t) res = 2;
    else res = 0;
    if (verbose) {
        char b[64];
        printf("  after holder SIGKILL: marker=%s value=%#lx ; T %s\n", r == 1 ? "YES (T ran on)" : "no",
               r == 1 ? (unsigned long)(*val & 0xffff) : 0UL,
               w == t ? wstat(st, b) : r == 1 ? "alive, ran user code" : "alive, no answer");
        if (w != t && res == 0) printf("  T wchan=%s state=%c\n", wc, proc_state(t));
    }
    if (w != t) {
        if (res == 0 && verbose) {
            /* blocked in handle_userfault: interruptible? deliver SIGUSR1 */
            kill(t, SIGUSR1); usleep(50000); proc_wchan(t, wc, sizeof wc);
            printf("  SIGUSR1 to blocked T: still blocked afterwards: state=%c wchan=%s (handler ran and fault retried)\n",
                   proc_state(t), wc);
        }
        kill(t, SIGKILL);
        double t0 = now_s(); waitpid(t, &st, 0);
        if (verbose) { char b[64]; printf("  SIGKILL to T: %s after %.1f ms\n", wstat(st, b), (now_s() - t0) * 1e3); }
    }
    close(p2c[1]); close(c2p[0]);
    return res;
}

int main(int argc, char **argv) {
    int N = argc > 1 ? atoi(argv[1]) : 200;
    uint64_t v; char b[64]; int st;
    setvbuf(stdout, NULL, _IONBF, 0);

    printf("== 2a: T closed its own fd; holder H (only uffd ref) SIGKILLed while T waits ==\n");
    trial(0, 0, &v, 1);
    printf("== 2b: T kept its own uffd fd; holder H SIGKILLed ==\n");
    trial(1, 0, &v, 1);

    printf("== 2c: holder closes its fd gracefully (no UNREGISTER) while T waits ==\n");
    {
        pid_t t = spawn_target();
        int pfd = pidfd_open(t); int u = pidfd_getfd(pfd, g_cfd);
        tcmd(OP_CLOSE, 0); tresult(&v, 1000);
        uffd_api(u, 0, NULL); uffd_register(u, g_addr, 16 * PG, UFFDIO_REGISTER_MODE_MISSING, NULL);
        tcmd(OP_TOUCH, 2); usleep(50000);
        printf("  smaps before close: %s\n", smaps_vmflags(t, g_addr, NULL));
        double t0 = now_s(); close(u);
        int r = tresult(&v, 1000);
        printf("  close(uffd): T continued=%d value=%#lx after %.3f ms; VmFlags now: %s\n", r,
               (unsigned long)(v & 0xffff), (now_s() - t0) * 1e3, smaps_vmflags(t, g_addr, NULL));
        tcmd(OP_EXIT, 0); waitpid(t, NULL, 0); close(pfd);
    }

    printf("== 2d: PTRACE_O_EXITKILL: T running (seized, never stopped), tracer H SIGKILLed ==\n");
    {
        pid_t t = spawn_target();
        pid_t h = spawn_holder(t, 1);
        tcmd(OP_TRACERPID, 0); tresult(&v, 1000);
        printf("  T sees TracerPid=%lu (H=%d) ; T state=%c\n", (unsigned long)v, h, proc_state(t));
        tcmd(OP_SPIN, 0); tresult(&v, 1000); usleep(50000);
        printf("  T spinning: state=%c\n", proc_state(t));
        kill(h, SIGKILL); waitpid(h, NULL, 0);
        double t0 = now_s(); waitpid(t, &st, 0);
        printf("  after tracer death: T %s (%.1f ms)\n", wstat(st, b), (now_s() - t0) * 1e3);
    }
    printf("== 2e: EXITKILL after stop/PTRACE_CONT cycle (PTRACE_INTERRUPT + CONT), tracer killed ==\n");
    {
        pid_t t = spawn_target();
        int go[2]; pipe(go);
        pid_t h = fork();
        if (h == 0) {
            CHECK(ptrace(PTRACE_SEIZE, t, 0, PTRACE_O_EXITKILL) == 0, "seize");
            ptrace(PTRACE_INTERRUPT, t, 0, 0); int s; waitpid(t, &s, __WALL);
            struct user_regs_struct rg; ptrace(PTRACE_GETREGS, t, 0, &rg);
            ptrace(PTRACE_CONT, t, 0, 0);
            wr_u64(go[1], rg.rip);
            for (;;) pause();
        }
        printf("  tracer interrupted T (rip=%#lx) and PTRACE_CONT'ed it\n", (unsigned long)rd_u64(go[0]));
        tcmd(OP_SPIN, 0); tresult(&v, 1000);
        kill(h, SIGKILL); waitpid(h, NULL, 0);
        double t0 = now_s(); waitpid(t, &st, 0);
        printf("  after tracer death: T %s (%.1f ms)\n", wstat(st, b), (now_s() - t0) * 1e3);
    }
    printf("== 2f: tracer *thread* exits (process lives) ==\n");
    {
        pid_t t = spawn_target();
        pid_t h = spawn_holder(t, 2);
        int r = waitpid(t, &st, 0);
        printf("  T after the seizing thread exited: %s (holder process still alive=%d)\n",
               r == t ? wstat(st, b) : "?", kill(h, 0) == 0);
        kill(h, SIGKILL); waitpid(h, NULL, 0);
    }
    printf("== 2g: PTRACE_INTERRUPT a task blocked in a uffd fault ==\n");
    {
        pid_t t = spawn_target();
        int pfd = pidfd_open(t); int u = pidfd_getfd(pfd, g_cfd);
        tcmd(OP_CLOSE, 0); tresult(&v, 1000);
        uffd_api(u, 0, NULL); uffd_register(u, g_addr, 16 * PG, UFFDIO_REGISTER_MODE_MISSING, NULL);
        CHECK(ptrace(PTRACE_SEIZE, t, 0, PTRACE_O_EXITKILL) == 0, "seize");
        tcmd(OP_TOUCH, 1); usleep(50000);
        struct uffd_msg m; int ev = uffd_read_msg(u, &m, 100);
        double t0 = now_s();
        ptrace(PTRACE_INTERRUPT, t, 0, 0); int s; pid_t w = waitpid(t, &s, __WALL);
        struct user_regs_struct rg; ptrace(PTRACE_GETREGS, t, 0, &rg);
        printf("  fault event read=%d; INTERRUPT -> stop after %.2f ms (w=%d stopped=%d sig=%d event=%d), rip=%#lx; State=%c\n",
               ev, (now_s() - t0) * 1e3, w, WIFSTOPPED(s), WSTOPSIG(s), s >> 16, (unsigned long)rg.rip, proc_state(t));
        ptrace(PTRACE_CONT, t, 0, 0); usleep(50000);
        char wc[64]; proc_wchan(t, wc, sizeof wc);
        printf("  after CONT: T state=%c wchan=%s (faults again)\n", proc_state(t), wc);
        ev = uffd_read_msg(u, &m, 100);
        static char src[PG] __attribute__((aligned(4096))); *(uint64_t *)src = 0x77;
        int64_t res; int r = uffd_copy(u, g_addr + PG, src, PG, 0, &res);
        tresult(&v, 1000);
        printf("  second fault event=%d; COPY rc=%d; T read %#lx\n", ev, r, (unsigned long)(v & 0xffff));
        kill(t, SIGKILL); waitpid(t, NULL, 0); close(u); close(pfd);
    }

    printf("== 2i: side effects of staying attached: signals stop the tracee; second tracer refused ==\n");
    {
        pid_t t = spawn_target();
        pid_t h = spawn_holder(t, 1);
        kill(t, SIGUSR1); usleep(100000);
        printf("  SIGUSR1 sent to seized T while tracer does not waitpid(): T state=%c (t = signal-delivery-stop, handler not run yet)\n",
               proc_state(t));
        long r = ptrace(PTRACE_ATTACH, t, 0, 0);
        printf("  second tracer PTRACE_ATTACH (like gdb/strace): rc=%ld errno=%s\n", r, r ? strerrorname_np(errno) : "-");
        kill(h, SIGKILL); waitpid(h, NULL, 0); waitpid(t, &st, 0);
        printf("  (tracer killed -> T %s)\n", wstat(st, b));
    }
    printf("== 2h: race: EXITKILL tracer is also the ONLY uffd holder; does T run with a zero page before SIGKILL? N=%d ==\n", N);
    int ran = 0, killed = 0, blocked = 0;
    for (int i = 0; i < N; i++) {
        int r = trial(0, 1, &v, 0);
        if (r == 1) ran++; else if (r == 2) killed++; else blocked++;
    }
    printf("  T closed own fd: ran-on-with-zero-page=%d killed-cleanly=%d still-blocked=%d\n", ran, killed, blocked);
    ran = killed = blocked = 0;
    for (int i = 0; i < N; i++) {
        int r = trial(1, 1, &v, 0);
        if (r == 1) ran++; else if (r == 2) killed++; else blocked++;
    }
    printf("  T kept own fd:   ran-on-with-zero-page=%d killed-cleanly=%d still-blocked=%d\n", ran, killed, blocked);
    return 0;
}
