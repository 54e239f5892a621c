/*
 * aarch64 entry. The tender enters us at EL1h with the MMU on,
 * x0 = GPA of struct hc_bootinfo, x1 = initial stack top.
 */
#define HC_EXC_ADDR 0xfffff060      /* HC_MMIO_BASE + HC_EXCEPTION * 8 */

    .section .text.boot, "ax"
    .globl _start
    .type _start, %function
_start:
    and x2, x1, #~15        /* AAPCS64: SP 16-byte aligned */
    mov sp, x2
    mov x19, x0             /* callee-saved across the bss clear */

    /* Zero .bss ourselves rather than trusting the loader. */
    adrp x2, __bss_start
    add x2, x2, :lo12:__bss_start
    adrp x3, _end
    add x3, x3, :lo12:_end
1:  cmp x2, x3
    b.hs 2f
    strb wzr, [x2], #1
    b 1b
2:
    /* Without vectors an exception would spin silently; report it instead. */
    adrp x2, _vectors
    add x2, x2, :lo12:_vectors
    msr vbar_el1, x2
    isb

    mov x0, x19
    mov x29, xzr            /* terminate frame chain */
    mov x30, xzr
    bl _solo5_start_c
3:  wfi                     /* not reached */
    b 3b
    .size _start, . - _start

/*
 * 16 vectors x 128 bytes. Each reports its index to the tender through a
 * plain MMIO store (no stack use, so it works even with a broken SP); the
 * tender then reads ESR/ELR/FAR itself.
 */
    .macro vec idx
    .balign 128
    mov w0, #\idx
    b exc_common
    .endm

    .balign 2048
_vectors:
    vec 0
    vec 1
    vec 2
    vec 3
    vec 4
    vec 5
    vec 6
    vec 7
    vec 8
    vec 9
    vec 10
    vec 11
    vec 12
    vec 13
    vec 14
    vec 15

exc_common:
    movz x1, #(HC_EXC_ADDR & 0xffff)
    movk x1, #(HC_EXC_ADDR >> 16), lsl #16
    str w0, [x1]
4:  b 4b

    .section .note.GNU-stack, "", %progbits
