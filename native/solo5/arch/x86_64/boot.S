/*
 * x86_64 entry. The tender enters us in 64-bit long mode with paging on,
 * RDI = GPA of struct hc_bootinfo, RSI = initial stack top.
 */
    .section .text.boot, "ax"
    .globl _start
    .type _start, @function
_start:
    mov %rsi, %rsp
    and $-16, %rsp          /* SysV ABI: 16-byte aligned before call */
    mov %rdi, %r12          /* callee-saved across the bss clear */

    /* Zero .bss ourselves rather than trusting the loader. */
    mov $__bss_start, %rdi
    mov $_end, %rcx
    sub %rdi, %rcx
    xor %eax, %eax
    cld
    rep stosb

    mov %r12, %rdi
    xor %ebp, %ebp          /* terminate frame-pointer chains */
    call _solo5_start_c
1:  hlt                     /* not reached: start_c never returns */
    jmp 1b
    .size _start, . - _start

    .section .note.GNU-stack, "", @progbits
