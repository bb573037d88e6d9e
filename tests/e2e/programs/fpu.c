/*
 * SSE/AVX and x87 state held in registers across the checkpoint: an
 * assembly loop loads ymm0-ymm15 and the x87 stack, spins until SIGUSR1
 * sets a flag (never leaving the loop, so the values live only in
 * registers), then stores them back for checking. MXCSR and the x87
 * control word carry non-default rounding.
 */
#include <immintrin.h>
#include <stdint.h>

#include "subject.h"

static volatile int flag;
static void on_usr1(int sig) {
  (void)sig;
  flag = 1;
}

static uint8_t in[16][32] __attribute__((aligned(32)));
static uint8_t out[16][32] __attribute__((aligned(32)));
static double x87_in[4] = {1.25, -3.5, 1e300, 0.1};
static double x87_out[4];

int main(void) {
  for (int r = 0; r < 16; r++) {
    for (int b = 0; b < 32; b++) in[r][b] = (uint8_t)(r * 31 + b * 7 + 1);
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  unsigned int mxcsr = (_mm_getcsr() & ~0x6000u) | 0x4000u;  /* round up */
  unsigned short cw_in = 0x0f7f, cw_out = 0;                    /* round toward zero, mask all */
  unsigned int mxcsr_out = 0;
  printf("READY %d\n", getpid());
  fflush(stdout);
  __asm__ volatile(
      "ldmxcsr %[mxcsr]\n"
      "fldcw %[cw]\n"
      "fldl 24(%[x87])\n"
      "fldl 16(%[x87])\n"
      "fldl 8(%[x87])\n"
      "fldl 0(%[x87])\n"
      "vmovdqa 0(%[in]), %%ymm0\n"
      "vmovdqa 32(%[in]), %%ymm1\n"
      "vmovdqa 64(%[in]), %%ymm2\n"
      "vmovdqa 96(%[in]), %%ymm3\n"
      "vmovdqa 128(%[in]), %%ymm4\n"
      "vmovdqa 160(%[in]), %%ymm5\n"
      "vmovdqa 192(%[in]), %%ymm6\n"
      "vmovdqa 224(%[in]), %%ymm7\n"
      "vmovdqa 256(%[in]), %%ymm8\n"
      "vmovdqa 288(%[in]), %%ymm9\n"
      "vmovdqa 320(%[in]), %%ymm10\n"
      "vmovdqa 352(%[in]), %%ymm11\n"
      "vmovdqa 384(%[in]), %%ymm12\n"
      "vmovdqa 416(%[in]), %%ymm13\n"
      "vmovdqa 448(%[in]), %%ymm14\n"
      "vmovdqa 480(%[in]), %%ymm15\n"
      "1: pause\n"
      "cmpl $0, %[flag]\n"
      "je 1b\n"
      "vmovdqa %%ymm0, 0(%[out])\n"
      "vmovdqa %%ymm1, 32(%[out])\n"
      "vmovdqa %%ymm2, 64(%[out])\n"
      "vmovdqa %%ymm3, 96(%[out])\n"
      "vmovdqa %%ymm4, 128(%[out])\n"
      "vmovdqa %%ymm5, 160(%[out])\n"
      "vmovdqa %%ymm6, 192(%[out])\n"
      "vmovdqa %%ymm7, 224(%[out])\n"
      "vmovdqa %%ymm8, 256(%[out])\n"
      "vmovdqa %%ymm9, 288(%[out])\n"
      "vmovdqa %%ymm10, 320(%[out])\n"
      "vmovdqa %%ymm11, 352(%[out])\n"
      "vmovdqa %%ymm12, 384(%[out])\n"
      "vmovdqa %%ymm13, 416(%[out])\n"
      "vmovdqa %%ymm14, 448(%[out])\n"
      "vmovdqa %%ymm15, 480(%[out])\n"
      "fstpl 0(%[x87o])\n"
      "fstpl 8(%[x87o])\n"
      "fstpl 16(%[x87o])\n"
      "fstpl 24(%[x87o])\n"
      "fnstcw %[cwo]\n"
      "stmxcsr %[mxo]\n"
      "vzeroupper\n"
      : [cwo] "=m"(cw_out), [mxo] "=m"(mxcsr_out)
      : [mxcsr] "m"(mxcsr), [cw] "m"(cw_in), [x87] "r"(x87_in), [in] "r"(in), [out] "r"(out),
        [x87o] "r"(x87_out), [flag] "m"(flag)
      : "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
        "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "st", "st(1)", "st(2)", "st(3)");
  for (int r = 0; r < 16; r++) {
    SUBJECT_CHECK(memcmp(in[r], out[r], 32) == 0, "ymm%d changed", r);
  }
  for (int i = 0; i < 4; i++) {
    SUBJECT_CHECK(x87_out[i] == x87_in[i], "st(%d) is %g, want %g", i, x87_out[i], x87_in[i]);
  }
  SUBJECT_CHECK(cw_out == cw_in, "x87 control word 0x%x, want 0x%x", cw_out, cw_in);
  SUBJECT_CHECK(mxcsr_out == mxcsr, "MXCSR 0x%x, want 0x%x", mxcsr_out, mxcsr);
  return subject_verdict();
}
