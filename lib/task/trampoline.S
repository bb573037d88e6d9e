/*
 * The trampoline: position-independent code that libckpt copies into a
 * stopped task and runs there to execute a batch of syscalls with one
 * ptrace round trip.
 *
 * Entry (registers set by the tracer):
 *   %rbx  first entry of the table, %r12  end of the table.
 * Each 64-byte entry (struct InjectedCall): u32 nr, u32 flags, u64 args[6],
 * i64 ret. The syscalls run in order; each result is stored in its entry.
 * The batch stops at the first error (-4095..-1) of an entry that lacks
 * flag bit 0 (kMayFail), with %rbx pointing at that entry, and always ends
 * on int3, which the tracer sees as a SIGTRAP signal-delivery stop.
 */
    .section .rodata.ckpt_trampoline, "a"
    .balign 64
    .globl ckpt_trampoline_code
    .globl ckpt_trampoline_trap
    .globl ckpt_trampoline_code_end
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
ckpt_trampoline_trap:
    int3
    /* never reached: the tracer moves the task elsewhere */
    ud2
ckpt_trampoline_code_end:
    .section .note.GNU-stack, "", @progbits
