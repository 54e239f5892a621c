/*
 * The guest's confinement: a classic-BPF seccomp filter built here (no
 * libseccomp) that allows exactly the system calls the Solo5 API needs, on
 * exactly the file descriptors the tender opened, and a SIGSYS handler that
 * records which call the filter stopped.
 *
 * The rules (all argument compares on full 64-bit values, hi and lo words):
 *   pread64, pwrite64  fd is a block device's, and the call is one whole
 *                      block inside it, as upstream Solo5's spt pins it:
 *                      count == block_size, offset <= capacity - block_size
 *                      and offset % block_size == 0 (block sizes are powers
 *                      of two: the low bits of the low word). So a guest
 *                      cannot grow a file-backed disk (filling the host's
 *                      disk) nor touch anything past the device's end. A
 *                      device smaller than one block allows neither call.
 *   read               fd is a tap's
 *   write              fd is a tap's or 1 (the console)
 *   ppoll              without a signal mask (args[3] == NULL)
 *   clock_gettime, exit_group
 * and only with this tender's own syscall ABI (audit arch; no x32).
 *
 * Every other call traps (SECCOMP_RET_TRAP). The handler, running with
 * SIGSYS blocked, writes the syscall number to the accounting page and then
 * makes another forbidden call: the kernel then resets SIGSYS to its
 * default action and the process dies *by SIGSYS*. The parent takes that
 * death, which the guest cannot fake (kill/tgkill are forbidden too), as the
 * evidence of a seccomp kill, and the recorded number (guest-writable) only
 * for the message.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include "spt.h"

#if defined(__x86_64__)
const uint32_t spt_audit_arch = AUDIT_ARCH_X86_64;
#define X32_SYSCALL_BIT 0x40000000u
#elif defined(__aarch64__)
const uint32_t spt_audit_arch = AUDIT_ARCH_AARCH64;
#else
#error unsupported architecture
#endif

/* Syscall names of this ABI, generated from the compiler's <asm/unistd.h>
 * (see the Makefile), so both architectures get their complete table. */
static const struct { uint32_t nr; const char *name; } sc_names[] = {
#define SC(n) { __NR_##n, #n },
#include "spt_syscalls.h"
#undef SC
};

const char *syscall_name(uint64_t nr)
{
    for (size_t i = 0; i < sizeof sc_names / sizeof sc_names[0]; i++)
        if (sc_names[i].nr == nr)
            return sc_names[i].name;
    return NULL;
}

/* ------------------------------------------------------------ the filter */

/* The kernel's limit; the largest filter (64 block devices) needs ~1100. */
#define MAX_INSNS BPF_MAXINSNS
#define ARG_LO(i) ((uint32_t)(offsetof(struct seccomp_data, args) + 8 * (i)))
#define ARG_HI(i) (ARG_LO(i) + 4)       /* both architectures little-endian */

struct prog {
    struct sock_filter insn[MAX_INSNS];
    unsigned n;
};

static void emit(struct prog *p, uint16_t code, uint8_t jt, uint8_t jf,
        uint32_t k)
{
    if (p->n >= MAX_INSNS)
        abort();    /* bounded by SPT_MAX_DEVICES: cannot happen */
    p->insn[p->n++] = (struct sock_filter){ code, jt, jf, k };
}

#define LD(p, off)   emit((p), BPF_LD | BPF_W | BPF_ABS, 0, 0, (off))
#define RET(p, v)    emit((p), BPF_RET | BPF_K, 0, 0, (v))
#define ALLOW        SECCOMP_RET_ALLOW
#define TRAP         SECCOMP_RET_TRAP

#define JMP(p, op, jt, jf, k) emit((p), BPF_JMP | (op) | BPF_K, (jt), (jf), (k))

/* Opening "if (nr == NR) {" with nr in the accumulator: returns the index
 * to patch with the block's length once the block is emitted. Every block
 * ends in returns, so a non-matching nr skips it with the accumulator
 * unchanged. */
static unsigned if_nr(struct prog *p, uint32_t nr)
{
    JMP(p, BPF_JEQ, 0, 0, nr);
    return p->n - 1;
}

static void end_if(struct prog *p, unsigned at)
{
    unsigned len = p->n - at - 1;
    if (len > 255)
        abort();    /* at most SPT_MAX_DEVICES + 8 instructions */
    p->insn[at].jf = (uint8_t)len;
}

/* Block body: allow iff the 64-bit args[0] is one of fds[0..n) (and, if
 * console >= 0, that too). */
static void allow_fds(struct prog *p, const int *fds, unsigned n, int console)
{
    unsigned k = n + (console >= 0);
    LD(p, ARG_HI(0));
    JMP(p, BPF_JEQ, 1, 0, 0);
    RET(p, TRAP);
    LD(p, ARG_LO(0));
    for (unsigned i = 0; i < k; i++) {
        uint32_t fd = (uint32_t)(i < n ? fds[i] : console);
        /* Jump over the remaining compares and the trap to the allow. */
        JMP(p, BPF_JEQ, (uint8_t)(k - i), 0, fd);
    }
    RET(p, TRAP);
    RET(p, ALLOW);
}

/* Instructions of one device's check in allow_blocks, after its fd
 * compare. */
#define BLOCK_CHECK_LEN 13

/* Body for pread64/pwrite64: allow iff the 64-bit args[0] is a block fd
 * and the call is one whole block inside that device (see the top of this
 * file). Each device costs its fd compare plus BLOCK_CHECK_LEN, so with 64
 * devices the body needs the long jump build() puts in front of it. False
 * for a block size the alignment test cannot express. */
static bool allow_blocks(struct prog *p, const struct seccomp_block *b,
        unsigned n)
{
    LD(p, ARG_HI(0));
    JMP(p, BPF_JEQ, 1, 0, 0);
    RET(p, TRAP);
    LD(p, ARG_LO(0));
    for (unsigned i = 0; i < n; i++) {
        uint64_t bs = b[i].block_size, cap = b[i].capacity;
        /* devices.c gives powers of two <= 32 KiB; anything up to 2^30
         * keeps bs and the alignment mask bs - 1 in the low word. */
        if (bs == 0 || bs > (1u << 30) || (bs & (bs - 1)) != 0)
            return false;
        if (cap < bs)
            continue;   /* no block fits: this fd traps like any other */
        uint64_t max = cap - bs;
        uint32_t max_hi = (uint32_t)(max >> 32), max_lo = (uint32_t)max;
        /* Not this device: skip its check, accumulator still args[0].lo. */
        JMP(p, BPF_JEQ, 0, BLOCK_CHECK_LEN, (uint32_t)b[i].fd);
        unsigned s = p->n;
        /* Jump offsets below are to s + 12, the trap, unless noted. */
        LD(p, ARG_HI(2));                           /* s+0 */
        JMP(p, BPF_JEQ, 0, 10, 0);                  /* count.hi == 0 */
        LD(p, ARG_LO(2));                           /* s+2 */
        JMP(p, BPF_JEQ, 0, 8, (uint32_t)bs);        /* count.lo == bs */
        LD(p, ARG_HI(3));                           /* s+4 */
        JMP(p, BPF_JGT, 6, 0, max_hi);              /* off.hi > max.hi */
        JMP(p, BPF_JEQ, 0, 2, max_hi);              /* <: to s+9 */
        LD(p, ARG_LO(3));                           /* s+7 */
        JMP(p, BPF_JGT, 3, 1, max_lo);              /* else to s+10 */
        LD(p, ARG_LO(3));                           /* s+9 */
        JMP(p, BPF_JSET, 1, 0, (uint32_t)(bs - 1)); /* off % bs != 0 */
        RET(p, ALLOW);                              /* s+11 */
        RET(p, TRAP);                               /* s+12 */
        if (p->n - s != BLOCK_CHECK_LEN)
            abort();    /* the offsets above are wrong */
    }
    RET(p, TRAP);
    return true;
}

static bool build(struct prog *p, const struct seccomp_fds *fds)
{
    p->n = 0;
    /* Another ABI (i386 int $0x80, a compat task) has other numbers. */
    LD(p, offsetof(struct seccomp_data, arch));
    JMP(p, BPF_JEQ, 1, 0, spt_audit_arch);
    RET(p, TRAP);
    LD(p, offsetof(struct seccomp_data, nr));
#ifdef X32_SYSCALL_BIT
    JMP(p, BPF_JGE, 0, 1, X32_SYSCALL_BIT);
    RET(p, TRAP);
#endif
    unsigned at;

    /* pread64 first and straight into its body: the benchmark's path. The
     * body can exceed a conditional jump's 255, hence the BPF_JA. */
    JMP(p, BPF_JEQ, 2, 0, __NR_pread64);
    JMP(p, BPF_JEQ, 1, 0, __NR_pwrite64);
    emit(p, BPF_JMP | BPF_JA, 0, 0, 0);
    at = p->n - 1;
    if (!allow_blocks(p, fds->block, fds->n_block))
        return false;
    p->insn[at].k = p->n - at - 1;

    at = if_nr(p, __NR_read);
    allow_fds(p, fds->net, fds->n_net, -1);
    end_if(p, at);

    at = if_nr(p, __NR_write);
    allow_fds(p, fds->net, fds->n_net, fds->console);
    end_if(p, at);

    /* ppoll only without a signal mask: the guest may not change its
     * signal mask, not even for the duration of a wait. */
    at = if_nr(p, __NR_ppoll);
    LD(p, ARG_LO(3));
    JMP(p, BPF_JEQ, 0, 3, 0);
    LD(p, ARG_HI(3));
    JMP(p, BPF_JEQ, 0, 1, 0);
    RET(p, ALLOW);
    RET(p, TRAP);
    end_if(p, at);

    at = if_nr(p, __NR_clock_gettime);
    RET(p, ALLOW);
    end_if(p, at);

    at = if_nr(p, __NR_exit_group);
    RET(p, ALLOW);
    end_if(p, at);

    RET(p, TRAP);
    return true;
}

/* ------------------------------------------------------ SIGSYS handler */

static struct spt_acct *sigsys_acct;

static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    struct spt_acct *a = sigsys_acct;
    a->sigsys_nr = (uint32_t)si->si_syscall;
    a->sigsys_arch = si->si_arch;
    a->sigsys_seen = 1;
    /* Forbidden, and SIGSYS is blocked in here: the kernel kills us with
     * SIGSYS (see the top of this file). */
    for (;;)
        syscall(SYS_getpid);
}

bool confine(const struct seccomp_fds *fds, struct spt_acct *acct)
{
    static struct prog p;
    if (!build(&p, fds)) {
        errno = EINVAL;
        return false;
    }

    /* The handler gets a stack of its own: the guest's may be broken. */
    size_t ss_size = 64 * 1024;
    void *ss = mmap(NULL, ss_size, PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ss == MAP_FAILED)
        return false;
    stack_t st = { .ss_sp = ss, .ss_size = ss_size, .ss_flags = 0 };
    if (sigaltstack(&st, NULL) < 0)
        return false;
    sigsys_acct = acct;
    struct sigaction sa = { 0 };
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigfillset(&sa.sa_mask);
    if (sigaction(SIGSYS, &sa, NULL) < 0)
        return false;

    struct sock_fprog fp = { .len = (unsigned short)p.n, .filter = p.insn };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return false;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fp) < 0)
        return false;
    return true;
}
