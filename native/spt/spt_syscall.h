/*
 * Guest side of spt: a raw Linux system call, which is how an spt guest
 * reaches its devices (spt_tender's seccomp filter decides which calls
 * pass). Freestanding, no libc; used by solo5/bindings_spt.c and the spt
 * test guests (tests/native/guests).
 */
#ifndef SPT_SYSCALL_H
#define SPT_SYSCALL_H

/* System call n with arguments a..e; returns the result or -errno. */
static inline long sys6(long n, long a, long b, long c, long d, long e)
{
#if defined(__x86_64__)
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    __asm__ __volatile__("syscall"
            : "=a"(ret)
            : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
            : "rcx", "r11", "memory");
    return ret;
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    __asm__ __volatile__("svc #0"
            : "+r"(x0)
            : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4)
            : "memory");
    return x0;
#else
#error unsupported architecture
#endif
}

#endif
