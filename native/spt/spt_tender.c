/*
 * spt_tender: runs a Solo5-API unikernel as an ordinary Linux process
 * confined by seccomp ("builtin spt"; the counterpart of our KVM tender).
 *
 * The tender opens the devices, maps the guest ELF, heap and stack into its
 * own address space, then forks. The child installs the seccomp filter and
 * jumps to the guest entry; from there on the guest's bindings
 * (solo5/bindings_spt.c) make the system calls themselves. The parent stays
 * unconfined: it forwards SIGINT/SIGTERM, waits, reports how the guest
 * ended and writes the --stats file from the shared accounting page, whose
 * contents (guest-writable) it treats as untrusted.
 *
 * Exit status: the guest's solo5_exit() status; 1 for setup errors;
 * 159 (128 + SIGSYS) when the seccomp filter killed the guest; 255 for a
 * guest fault (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP) or solo5_abort();
 * 128 + N when signal N ended it otherwise (e.g. SIGINT/SIGTERM sent to us
 * and forwarded).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "devices.h"
#include "spt.h"

/* The shared command line's limits are this ABI's. */
_Static_assert(DEV_MAX == SPT_MAX_DEVICES, "device count");
_Static_assert(DEV_NAME_MAX == SPT_NAME_MAX, "device name length");
_Static_assert(CMDLINE_MAX == SPT_CMDLINE_MAX, "command line length");
_Static_assert(SPT_EXIT_SETUP == 1, "die()'s exit status");
/* The bindings bounce one block at a time through it. */
_Static_assert(SPT_BOUNCE_SIZE >= SECTOR_MAX && SPT_BOUNCE_SIZE >= DIO_ALIGN_MAX,
               "bounce buffer holds a block");

const char *const tender_name = "spt_tender";

static const char *stats_path;

/* ------------------------------------------------------ stats, ending */

/* The page as it was when the guest died; magic_ok says whether it still
 * looks like ours. Only fixed-width integers are read, and each once. */
static struct spt_acct acct_snapshot(const struct spt_acct *page, bool *ok)
{
    struct spt_acct a;
    memcpy(&a, page, sizeof a);
    *ok = a.magic == SPT_ACCT_MAGIC;
    return a;
}

static void write_stats(const struct spt_acct *a, bool ok)
{
    const char *p = stats_file(stats_path);
    if (!p)
        return;
    if (!ok) {
        fprintf(stderr, "spt_tender: warning: the guest overwrote its "
                "accounting page; no stats file written\n");
        return;
    }
    write_pread_stats(p, a->win_calls, a->win_ns, a->setup_calls,
            a->setup_ns);
}

static const char *sig_name(int sig, char *buf, size_t len)
{
    const char *abbrev = sigabbrev_np(sig);
    if (abbrev)
        snprintf(buf, len, "SIG%s", abbrev);
    else
        snprintf(buf, len, "signal %d", sig);
    return buf;
}

static void report_seccomp(const struct spt_acct *a, bool ok)
{
    if (!ok || a->sigsys_seen != 1) {
        fputs("spt_tender: guest killed by the seccomp filter: it called a "
              "forbidden syscall (not recorded)\n", stderr);
        return;
    }
    unsigned long long nr = (unsigned long long)a->sigsys_nr;
    if (a->sigsys_arch != spt_audit_arch) {
        fprintf(stderr, "spt_tender: guest killed by the seccomp filter: it "
                "called syscall %llu of another ABI (audit arch 0x%llx)\n",
                nr, (unsigned long long)a->sigsys_arch);
        return;
    }
    const char *name = syscall_name(a->sigsys_nr);
    if (name)
        fprintf(stderr, "spt_tender: guest killed by the seccomp filter: it "
                "called %s (syscall %llu)\n", name, nr);
    else
        fprintf(stderr, "spt_tender: guest killed by the seccomp filter: it "
                "called syscall %llu\n", nr);
}

static int guest_outcome(int status, int forwarded, const struct spt_acct *a,
        bool ok)
{
    char buf[32];
    if (WIFEXITED(status)) {
        int code = WEXITSTATUS(status);
        if (code == 255 && ok && a->aborted == 1)
            fputs("spt_tender: guest called solo5_abort()\n", stderr);
        return code;
    }
    if (!WIFSIGNALED(status))
        return SPT_EXIT_FAULT;
    int sig = WTERMSIG(status);
    switch (sig) {
    case SIGSYS:
        report_seccomp(a, ok);
        return SPT_EXIT_SECCOMP;
    case SIGSEGV: case SIGBUS: case SIGILL: case SIGFPE: case SIGTRAP:
        fprintf(stderr, "spt_tender: guest fault: killed by %s; guest "
                "aborted\n", sig_name(sig, buf, sizeof buf));
        return SPT_EXIT_FAULT;
    default:
        if (forwarded == sig)
            fprintf(stderr, "spt_tender: terminated by signal %d\n", sig);
        else
            fprintf(stderr, "spt_tender: guest killed by %s\n",
                    sig_name(sig, buf, sizeof buf));
        return 128 + sig;
    }
}

/* ---------------------------------------------------- guest process */

static volatile sig_atomic_t got_signal;
static volatile pid_t child_pid;

static void on_signal(int sig)
{
    got_signal = sig;
    if (child_pid > 0)
        kill(child_pid, sig);
}

static void __attribute__((noreturn)) enter_guest(uint64_t entry,
        uint64_t sp, uint64_t arg)
{
#if defined(__x86_64__)
    /* As if called: RSP = 8 mod 16 with a zero return address. */
    __asm__ __volatile__(
            "mov %0, %%rsp\n\t"
            "xor %%ebp, %%ebp\n\t"
            "pushq $0\n\t"
            "jmp *%1"
            : : "r"(sp), "r"(entry), "D"(arg) : "memory");
#elif defined(__aarch64__)
    register uint64_t x0 __asm__("x0") = arg;
    register uint64_t x9 __asm__("x9") = sp;
    register uint64_t x10 __asm__("x10") = entry;
    __asm__ __volatile__(
            "mov sp, x9\n\t"
            "mov x29, xzr\n\t"
            "mov x30, xzr\n\t"
            "br x10"
            : : "r"(x0), "r"(x9), "r"(x10) : "memory");
#endif
    __builtin_unreachable();
}

static void __attribute__((noreturn)) run_child(pid_t parent,
        const struct guest_layout *gl, uint64_t bi_addr, uint64_t sp,
        struct spt_acct *acct, const sigset_t *old_mask)
{
    /* The guest must never outlive us (e.g. the parent SIGKILLed). */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
        _exit(SPT_EXIT_SETUP);
    struct sigaction dfl = { 0 };
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGINT, &dfl, NULL);
    sigaction(SIGTERM, &dfl, NULL);
    sigaction(SIGHUP, &dfl, NULL);
    /* A closed console then fails the write instead of killing the guest
     * (solo5_console_write drops the output, as the hvt tender does). */
    struct sigaction ign = { 0 };
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, NULL);
    sigprocmask(SIG_SETMASK, old_mask, NULL);
    /* A seccomp kill is a SIGSYS death: no core file for it. */
    struct rlimit no_core = { 0, 0 };
    setrlimit(RLIMIT_CORE, &no_core);
    prctl(PR_SET_DUMPABLE, 0);

    struct seccomp_block blk[SPT_MAX_DEVICES];
    int net[SPT_MAX_DEVICES];
    struct seccomp_fds fds = { .block = blk, .net = net,
                               .console = STDOUT_FILENO };
    for (unsigned i = 0; i < ndevices; i++) {
        if (devices[i].type == DEV_BLOCK)
            blk[fds.n_block++] = (struct seccomp_block){ devices[i].fd,
                devices[i].capacity, devices[i].block_size };
        else
            net[fds.n_net++] = devices[i].fd;
    }
    fflush(stdout);
    if (!confine(&fds, acct)) {
        fprintf(stderr, "spt_tender: error: cannot install the seccomp "
                "filter: %s\n", strerror(errno));
        _exit(SPT_EXIT_SETUP);
    }
    enter_guest(gl->entry, sp, bi_addr);
}

/* --------------------------------------------------------------- main */

static void __attribute__((noreturn)) usage(void)
{
    fprintf(stderr,
        "usage: spt_tender [--mem=MB] [--block:NAME=PATH] [--block-direct]\n"
        "              [--block-sector-size:NAME=N] [--net:NAME=TAPIFNAME]\n"
        "              [--stats=FILE] GUEST.spt [ARGS...]\n"
        "  --mem=MB          guest memory in MiB (default %d, %d..%d)\n"
        "  --block:NAME=PATH attach file/block device PATH as block NAME\n"
        "  --block-direct    open block devices with O_DIRECT\n"
        "  --block-sector-size:NAME=N\n"
        "                    block size reported for NAME: a power of two,\n"
        "                    %u..%u, a multiple of the O_DIRECT alignment\n"
        "  --net:NAME=TAP    attach existing tap interface TAP as net NAME\n"
        "  --stats=FILE      at exit, write one line 'pread_calls=N pread_ns=T\n"
        "                    setup_pread_calls=N0 setup_pread_ns=T0' (also:\n"
        "                    env PREAD_STATS_FILE)\n"
        "exit status: the guest's; 1 setup error; 159 killed by the seccomp\n"
        "filter; 255 guest fault or abort; 128+N ended by signal N\n",
        MEM_MB_DEFAULT, MEM_MB_MIN, MEM_MB_MAX, SECTOR_MIN, SECTOR_MAX);
    exit(SPT_EXIT_SETUP);
}

int main(int argc, char **argv)
{
    static struct tender_args args;     /* 8 KiB of command line */
    parse_args(argc, argv, &args, usage);
    stats_path = args.stats;

    /* The filter allows console writes on fd 1 by number: a device fd must
     * never land on 0-2 because one of them was closed when we started. */
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) < 0) {
            int n = open("/dev/null", O_RDWR);
            if (n != fd)
                die("cannot reopen closed fd %d on /dev/null", fd);
        }
    }

    open_devices(args.direct);

    struct guest_layout gl;
    load_guest(args.guest, args.mem_size, &gl);

    struct spt_acct *acct = mmap(NULL, sizeof *acct, PROT_READ | PROT_WRITE,
            MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (acct == MAP_FAILED)
        die("mmap accounting page: %s", strerror(errno));
    acct->magic = SPT_ACCT_MAGIC;

    /* Boot info and command line at the top of the guest stack. */
    size_t cl = args.cmdline_len;
    uint64_t bi_size = (sizeof(struct spt_bootinfo) + cl + 1 + 15) & ~15ull;
    uint64_t bi_addr = gl.mem_size - bi_size;
    struct spt_bootinfo *bi = (struct spt_bootinfo *)(uintptr_t)bi_addr;
    char *bi_cmdline = (char *)(bi + 1);
    memcpy(bi_cmdline, args.cmdline, cl + 1);
    bi->magic = SPT_BOOT_MAGIC;
    bi->version = SPT_ABI_VERSION;
    bi->ndevices = ndevices;
    bi->cmdline = (uint64_t)(uintptr_t)bi_cmdline;
    bi->heap_start = gl.heap_start;
    bi->heap_size = gl.heap_size;
    bi->acct = (uint64_t)(uintptr_t)acct;
    bi->vdso_clock_gettime = vdso_clock_gettime();
    if (args.direct) {
        /* mmap's page alignment covers every accepted DIO alignment. */
        void *b = mmap(NULL, SPT_BOUNCE_SIZE, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (b == MAP_FAILED)
            die("mmap bounce buffer: %s", strerror(errno));
        bi->bounce = (uint64_t)(uintptr_t)b;
    }
    for (unsigned h = 0; h < ndevices; h++) {
        const struct device *d = &devices[h];
        struct spt_device *o = &bi->dev[h];
        memcpy(o->name, d->name, sizeof o->name);
        o->type = d->type == DEV_BLOCK ? SPT_DEV_BLOCK : SPT_DEV_NET;
        o->fd = d->fd;
        o->capacity = d->capacity;
        o->block_size = d->block_size;
        o->dio_mem_align = d->dio_mem_align;
        memcpy(o->mac, d->mac, sizeof d->mac);
        o->mtu = d->mtu;
    }
    uint64_t sp = (bi_addr - 64) & ~15ull;

    /* Signals that arrive before the child exists are forwarded once it
     * does: they stay blocked across fork(). */
    sigset_t block, old_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    sigprocmask(SIG_BLOCK, &block, &old_mask);
    struct sigaction sa = { 0 };
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0)
        run_child(parent, &gl, bi_addr, sp, acct, &old_mask);
    child_pid = pid;
    sigprocmask(SIG_SETMASK, &old_mask, NULL);

    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            die("waitpid: %s", strerror(errno));
    }
    child_pid = 0;
    bool ok;
    struct spt_acct a = acct_snapshot(acct, &ok);
    int code = guest_outcome(status, got_signal, &a, ok);
    write_stats(&a, ok);
    return code;
}
