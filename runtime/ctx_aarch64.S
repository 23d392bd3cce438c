/*
 * ctx_aarch64.S - the goroutine context switch for AArch64 (AAPCS64).
 *
 * Same contract as ctx_x86_64.S: save x19-x30 and d8-d15 on the current
 * stack, store sp in *save_sp (x0), load sp from x1, restore, return.  A new
 * goroutine starts in rt__ctx_trampoline with x19 = argument, x20 = entry.
 * Untested on hardware here; it is assembled only on aarch64.
 */
#if defined(__aarch64__)
    .text
    .globl rt__ctx_switch
    .hidden rt__ctx_switch
    .type rt__ctx_switch, %function
    .p2align 4
rt__ctx_switch:
    sub sp, sp, #176
    stp x19, x20, [sp, #0]
    stp x21, x22, [sp, #16]
    stp x23, x24, [sp, #32]
    stp x25, x26, [sp, #48]
    stp x27, x28, [sp, #64]
    stp x29, x30, [sp, #80]
    stp d8, d9, [sp, #96]
    stp d10, d11, [sp, #112]
    stp d12, d13, [sp, #128]
    stp d14, d15, [sp, #144]
    mrs x2, fpcr
    str x2, [sp, #160]
    mov x2, sp
    str x2, [x0]
    mov sp, x1
    ldr x2, [sp, #160]
    msr fpcr, x2
    ldp x19, x20, [sp, #0]
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]
    ldp d8, d9, [sp, #96]
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    add sp, sp, #176
    ret
    .size rt__ctx_switch, .-rt__ctx_switch

    .globl rt__ctx_trampoline
    .hidden rt__ctx_trampoline
    .type rt__ctx_trampoline, %function
    .p2align 4
rt__ctx_trampoline:
    mov x0, x19
    blr x20
    brk #0
    .size rt__ctx_trampoline, .-rt__ctx_trampoline

    .section .note.GNU-stack,"",%progbits
#endif
