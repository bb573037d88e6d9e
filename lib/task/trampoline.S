/*
 * The trampoline: position-independent code that libckpt copies into a
 * stopped task and runs there to execute a batch of syscalls with one
 * ptrace round trip.
 *
 * Entry (registers set by the tracer):
 *   %rbx  first entry of the table, %r12  end of the table,
 *   %r13  this thread's recovery frame (an rt_sigframe that holds the
 *         thread's own registers, FPU state and signal mask),
 * Each 64-byte entry (struct InjectedCall): u32 nr, u32 flags, u64 args[6],
 * i64 ret. The syscalls run in order; each result is stored in its entry.
 * The batch stops at the first error (-4095..-1) of an entry that lacks
 * flag bit 0 (kMayFail), with %rbx pointing at that entry.
 *
 * The end of a batch, when %r13 is 0 (a restore), is int3: the tracer
 * sees a SIGTRAP signal-delivery stop at ckpt_trampoline_trap + 1.
 *
 * In a dump (%r13 set), the end is a SIGURG the thread sends itself
 * (unblocked first if its mask blocks it): the tracer sees a
 * signal-delivery stop at ckpt_trampoline_done or
 * ckpt_trampoline_done_unblocked, drops the signal and moves the thread on.
 * Nothing there traps: if the tracer vanishes (it was killed), the SIGURG
 * is delivered as any SIGURG would be (ignored by default), and the thread
 * falls through to ckpt_trampoline_recover, which puts back its own state
 * with rt_sigreturn from the frame at %r13 (see recovery.h). The same holds
 * for a single syscall run from ckpt_trampoline_single.
 */
    .section .rodata.ckpt_trampoline, "a"
    .balign 64
    .globl ckpt_trampoline_code
    .globl ckpt_trampoline_trap
    .globl ckpt_trampoline_done
    .globl ckpt_trampoline_done_unblocked
    .globl ckpt_trampoline_recover
    .globl ckpt_trampoline_single
    .globl ckpt_trampoline_code_end
    .hidden ckpt_trampoline_code
    .hidden ckpt_trampoline_trap
    .hidden ckpt_trampoline_done
    .hidden ckpt_trampoline_done_unblocked
    .hidden ckpt_trampoline_recover
    .hidden ckpt_trampoline_single
    .hidden ckpt_trampoline_code_end
ckpt_trampoline_code:
1:
    cmp     %r12, %rbx
    jae     3f
    movl    (%rbx), %eax
    mov     8(%rbx), %rdi
    mov     16(%rbx), %rsi
    mov     24(%rbx), %rdx
    mov     32(%rbx), %r10
    mov     40(%rbx), %r8
    mov     48(%rbx), %r9
    syscall
    mov     %rax, 56(%rbx)
    cmp     $-4095, %rax
    jb      2f
    testl   $1, 4(%rbx)
    jz      3f
2:
    add     $64, %rbx
    jmp     1b
3:
    test    %r13, %r13
    jnz     5f
    /* no recovery frame (a restore, whose tasks die with the restorer) */
ckpt_trampoline_trap:
    int3
    ud2
5:
    /* tgkill(getpid(), gettid(), SIGURG): its own ids, in its own pid
       namespace */
    mov     $39, %eax
    syscall
    mov     %rax, %r14
    mov     $186, %eax
    syscall
    mov     %rax, %rsi
    mov     %r14, %rdi
    mov     $234, %eax
    mov     $23, %edx
    syscall
ckpt_trampoline_done:
    /* rt_sigprocmask(SIG_UNBLOCK, {SIGURG}, NULL, 8) */
    mov     $14, %eax
    mov     $1, %edi
    lea     4f(%rip), %rsi
    xor     %edx, %edx
    mov     $8, %r10d
    syscall
ckpt_trampoline_done_unblocked:
ckpt_trampoline_recover:
    /* rt_sigreturn reads its frame at %rsp - 8 */
    lea     8(%r13), %rsp
    mov     $15, %eax
    syscall
    ud2
ckpt_trampoline_single:
    syscall
    jmp     ckpt_trampoline_recover
    .balign 8
4:
    .quad   1 << 22    /* SIGURG */
ckpt_trampoline_code_end:
    .section .note.GNU-stack, "", @progbits
