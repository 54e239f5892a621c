/*
 * The guest's confinement: a classic-BPF seccomp filter built here (no
 * libseccomp) that allows exactly the system calls the Solo5 API needs, on
 * exactly the file descriptors the tender opened, and a SIGSYS handler that
 * records which call the filter stopped.
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

#define MAX_INSNS 1024
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

/* Opening "if (nr == NR) {" with nr in the accumulator: returns the index
 * to patch with the block's length once the block is emitted. Every block
 * ends in returns, so a non-matching nr skips it with the accumulator
 * unchanged. */
static unsigned if_nr(struct prog *p, uint32_t nr)
{
    emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 0, nr);
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
    emit(p, BPF_JMP | BPF_JEQ | BPF_K, 1, 0, 0);
    RET(p, TRAP);
    LD(p, ARG_LO(0));
    for (unsigned i = 0; i < k; i++) {
        uint32_t fd = (uint32_t)(i < n ? fds[i] : console);
        /* Jump over the remaining compares and the trap to the allow. */
        emit(p, BPF_JMP | BPF_JEQ | BPF_K, (uint8_t)(k - i), 0, fd);
    }
    RET(p, TRAP);
    RET(p, ALLOW);
}

static void build(struct prog *p, const struct seccomp_fds *fds)
{
    p->n = 0;
    /* Another ABI (i386 int $0x80, a compat task) has other numbers. */
    LD(p, offsetof(struct seccomp_data, arch));
    emit(p, BPF_JMP | BPF_JEQ | BPF_K, 1, 0, spt_audit_arch);
    RET(p, TRAP);
    LD(p, offsetof(struct seccomp_data, nr));
#ifdef X32_SYSCALL_BIT
    emit(p, BPF_JMP | BPF_JGE | BPF_K, 0, 1, X32_SYSCALL_BIT);
    RET(p, TRAP);
#endif
    unsigned at;

    at = if_nr(p, __NR_pread64);
    allow_fds(p, fds->block, fds->n_block, -1);
    end_if(p, at);

    at = if_nr(p, __NR_pwrite64);
    allow_fds(p, fds->block, fds->n_block, -1);
    end_if(p, at);

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
    emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 3, 0);
    LD(p, ARG_HI(3));
    emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0);
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
    build(&p, fds);

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
