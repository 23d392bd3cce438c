/*
 * ctx_x86_64.S - the goroutine context switch for x86-64 (System V).
 *
 * rt__ctx_switch(void **save_sp, void *load_sp) pushes the callee-saved
 * registers plus the SSE/x87 control words on the current stack, stores the
 * stack pointer in *save_sp, loads load_sp and pops the same frame there.
 * No system call (unlike swapcontext, which saves the signal mask).
 *
 * A new goroutine's stack is prepared by sched.c so that the first switch
 * "returns" into rt__ctx_trampoline with r12 = argument, r13 = entry.
 */
#if defined(__x86_64__)
    .text
    .globl rt__ctx_switch
    .hidden rt__ctx_switch
    .type rt__ctx_switch, @function
    .p2align 4
rt__ctx_switch:
    .cfi_startproc
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    /* Loading MXCSR and the x87 control word stalls the pipeline; they
     * almost never differ between goroutines, so compare first (the red
     * zone below %rsp is free: this is a leaf). */
    movl (%rsp), %eax
    stmxcsr -8(%rsp)
    cmpl -8(%rsp), %eax
    je 1f
    ldmxcsr (%rsp)
1:
    movzwl 4(%rsp), %eax
    fnstcw -8(%rsp)
    cmpw -8(%rsp), %ax
    je 2f
    fldcw 4(%rsp)
2:
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .cfi_endproc
    .size rt__ctx_switch, .-rt__ctx_switch

    .globl rt__ctx_trampoline
    .hidden rt__ctx_trampoline
    .type rt__ctx_trampoline, @function
    .p2align 4
rt__ctx_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    movq %r12, %rdi
    callq *%r13
    ud2
    .cfi_endproc
    .size rt__ctx_trampoline, .-rt__ctx_trampoline

    .section .note.GNU-stack,"",@progbits
#endif
