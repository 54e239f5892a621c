/*
 * tender: minimal KVM monitor for Solo5-API unikernels.
 *
 * Generic part: hypercall handlers, pread accounting and placing the guest
 * in guest-physical memory. The command line, host devices and ELF checks,
 * shared with spt_tender, are in devices.c and elf_check.c; the per-arch
 * vCPU setup lives in setup_<arch>.c, the run loop in run_<arch>.c, the KVM
 * plumbing they share in kvm_common.c.
 *
 * Security model: the guest controls every byte of its memory, including
 * the hypercall argument structs. Every guest-physical address/length pair
 * is checked with gpa_ptr() (overflow-safe) before it is dereferenced, and
 * argument structs are copied to the host stack first so a value is only
 * ever read once.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "devices.h"
#include "elf_check.h"
#include "tender.h"

#define BOUNCE_SIZE   (1u << 20)    /* O_DIRECT bounce buffer */

/* The shared command line's limits are this ABI's. */
_Static_assert(DEV_NAME_MAX == HC_NAME_MAX, "device name length");
_Static_assert(CMDLINE_MAX == HC_CMDLINE_MAX, "command line length");
_Static_assert(MEM_MB_MAX == HC_GUEST_MEM_MAX >> 20, "guest memory size");

static struct pollfd net_pfds[DEV_MAX];
static unsigned net_pfd_handle[DEV_MAX];
static unsigned n_net;

static struct vm vm;
static uint8_t *bounce;

/*
 * Block-read accounting, one definition for every monitor of the study:
 * calls = host read syscalls serving guest block reads (a short read that
 * needs a second pread() counts 2), ns = CLOCK_MONOTONIC time inside those
 * syscalls only. Each successful guest block write adds the window to
 * `setup` and restarts it, so `win` holds the reads after the guest's last
 * write: the benchmarks write once right before their timed loop, which
 * keeps the reads of their setup out of the window.
 */
struct pread_acct { uint64_t calls, ns; };
static struct pread_acct win, setup;
static const char *stats_path;

volatile int tender_signalled;

static const char *const hc_names[HC_MAX] = {
    [HC_CONSOLE_WRITE] = "console_write",
    [HC_CLOCK_MONO] = "clock_monotonic",
    [HC_CLOCK_WALL] = "clock_wall",
    [HC_BLOCK_ACQUIRE] = "block_acquire",
    [HC_BLOCK_READ] = "block_read",
    [HC_BLOCK_WRITE] = "block_write",
    [HC_NET_ACQUIRE] = "net_acquire",
    [HC_NET_READ] = "net_read",
    [HC_NET_WRITE] = "net_write",
    [HC_YIELD] = "yield",
    [HC_EXIT] = "exit",
    [HC_ABORT] = "abort",
    [HC_EXCEPTION] = "exception",
};
static unsigned cur_hc;     /* for error messages only */

/* ---------------------------------------------------------------- utils */

static void write_stats(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    const char *p = stats_file(stats_path);
    if (p)
        write_pread_stats(p, win.calls, win.ns, setup.calls, setup.ns);
}

void guest_fault(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fputs("tender: guest fault: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("; guest aborted\n", stderr);
    write_stats();
    exit(255);
}

void tender_signal_exit(void)
{
    fprintf(stderr, "tender: terminated by signal %d\n", tender_signalled);
    write_stats();
    exit(128 + tender_signalled);
}

void kvm_run_vcpu(struct vm *vm)
{
    while (__builtin_expect(ioctl(vm->vcpu_fd, KVM_RUN, 0) < 0, 0)) {
        if (errno != EINTR && errno != EAGAIN)
            die("KVM_RUN: %s", strerror(errno));
        if (tender_signalled)
            tender_signal_exit();
    }
}

static void on_signal(int sig)
{
    tender_signalled = sig;
    /*
     * A signal that lands outside KVM_RUN (e.g. in the ppoll of a yield,
     * where an idle network guest spends its time) would otherwise be lost:
     * immediate_exit makes the next KVM_RUN return EINTR at once.
     */
    if (vm.run)
        vm.run->immediate_exit = 1;
}

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    /* vDSO on x86_64/arm64: no syscall on the hot path. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * Host pointer for guest range [gpa, gpa+len), or NULL if any byte falls
 * outside guest memory. Written so no intermediate sum can overflow.
 */
static inline void *gpa_ptr(uint64_t gpa, uint64_t len)
{
    if (gpa > vm.mem_size || len > vm.mem_size - gpa)
        return NULL;
    return vm.mem + gpa;
}

/* Copy the argument struct in (a single read of guest memory). */
static inline void arg_in(uint64_t gpa, void *dst, size_t len)
{
    const void *p = gpa_ptr(gpa, len);
    if (__builtin_expect(p == NULL, 0))
        guest_fault("%s: argument struct at 0x%llx (+%zu) outside guest "
                "memory (0x%llx bytes)", hc_names[cur_hc],
                (unsigned long long)gpa, len,
                (unsigned long long)vm.mem_size);
    memcpy(dst, p, len);
}

/* Copy results back; range already validated by arg_in(). */
static inline void arg_out(uint64_t gpa, const void *src, size_t len)
{
    memcpy(vm.mem + gpa, src, len);
}

static void *guest_buf(uint64_t gpa, uint64_t len, const char *what)
{
    void *p = gpa_ptr(gpa, len);
    if (__builtin_expect(p == NULL, 0))
        guest_fault("%s: %s [0x%llx, +0x%llx) outside guest memory "
                "(0x%llx bytes)", hc_names[cur_hc], what,
                (unsigned long long)gpa, (unsigned long long)len,
                (unsigned long long)vm.mem_size);
    return p;
}

/* Look up a NUL-terminated device name in guest memory. */
static struct device *lookup_name(uint64_t gpa, enum dev_type type,
        unsigned *handle)
{
    const char *s = guest_buf(gpa, 1, "device name");
    uint64_t max = vm.mem_size - gpa;   /* >= 1 after guest_buf() */
    if (max > HC_NAME_MAX)
        max = HC_NAME_MAX;
    if (memchr(s, '\0', max) == NULL)
        return NULL;    /* unterminated or too long: no such device */
    for (unsigned i = 0; i < ndevices; i++) {
        if (devices[i].type == type && strcmp(devices[i].name, s) == 0) {
            *handle = i;
            return &devices[i];
        }
    }
    return NULL;
}

static inline struct device *lookup_handle(uint64_t h, enum dev_type type)
{
    if (h >= ndevices || devices[h].type != type)
        return NULL;
    return &devices[h];
}

/* ----------------------------------------------------------- hypercalls */

static void hc_console_write(uint64_t gpa)
{
    struct hc_console_write a;
    arg_in(gpa, &a, sizeof a);
    const uint8_t *p = guest_buf(a.data, a.len, "console buffer");
    uint64_t left = a.len;
    while (left > 0) {
        ssize_t n = write(STDOUT_FILENO, p, left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;      /* console gone: drop output, keep running */
        }
        p += n;
        left -= (uint64_t)n;
    }
}

static void hc_clock(uint64_t gpa, clockid_t clk)
{
    struct hc_clock a;
    struct timespec ts;
    arg_in(gpa, &a, sizeof a);
    clock_gettime(clk, &ts);
    a.ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    arg_out(gpa, &a, sizeof a);
}

static void hc_block_acquire(uint64_t gpa)
{
    struct hc_block_acquire a;
    unsigned h;
    arg_in(gpa, &a, sizeof a);
    struct device *d = lookup_name(a.name, DEV_BLOCK, &h);
    if (!d) {
        a.ret = HC_R_EINVAL;
    } else {
        a.handle = h;
        a.capacity = d->capacity;
        a.block_size = d->block_size;
        a.ret = HC_R_OK;
    }
    arg_out(gpa, &a, sizeof a);
}

/*
 * Full-length positioned I/O; returns false on error or EOF. Each pread()
 * is counted and timed on its own (see struct pread_acct), so the loop over
 * short reads counts every syscall and nothing else is in the time.
 */
static bool pio_full(int fd, bool wr, uint8_t *buf, size_t len, off_t off)
{
    while (len > 0) {
        ssize_t n;
        if (wr) {
            n = pwrite(fd, buf, len, off);
        } else {
            uint64_t t0 = now_ns();
            n = pread(fd, buf, len, off);
            int err = errno;            /* for the checks below */
            win.ns += now_ns() - t0;
            win.calls++;
            errno = err;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        if (n == 0)
            return false;
        buf += n;
        len -= (size_t)n;
        off += n;
    }
    return true;
}

static void hc_block_io(uint64_t gpa, bool wr)
{
    struct hc_block_io a;
    arg_in(gpa, &a, sizeof a);
    /* Pointer errors abort (as upstream); API misuse returns EINVAL. */
    uint8_t *buf = guest_buf(a.data, a.len, "block buffer");
    struct device *d = lookup_handle(a.handle, DEV_BLOCK);
    if (!d || a.len == 0 || (a.len % d->block_size) != 0 ||
            (a.offset % d->block_size) != 0 ||
            a.offset > d->capacity || a.len > d->capacity - a.offset) {
        a.ret = HC_R_EINVAL;
        arg_out(gpa, &a, sizeof a);
        return;
    }

    bool ok = true;
    if (d->dio_mem_align == 0 ||
            ((uintptr_t)buf % d->dio_mem_align) == 0) {
        /* Buffered fd, or guest buffer happens to satisfy O_DIRECT. */
        ok = pio_full(d->fd, wr, buf, a.len, (off_t)a.offset);
    } else {
        /*
         * O_DIRECT needs an aligned user buffer; guest buffers need not be,
         * so go through the preallocated bounce buffer. offset and length are
         * multiples of block_size, itself a multiple of the device's DIO
         * alignment, and so is BOUNCE_SIZE (a power of two above both).
         */
        uint64_t done = 0;
        while (ok && done < a.len) {
            size_t chunk = (a.len - done) > BOUNCE_SIZE ? BOUNCE_SIZE
                                                        : (size_t)(a.len - done);
            if (wr)
                memcpy(bounce, buf + done, chunk);
            ok = pio_full(d->fd, wr, bounce, chunk,
                    (off_t)(a.offset + done));
            if (ok && !wr)
                memcpy(buf + done, bounce, chunk);
            done += chunk;
        }
    }
    if (wr && ok) {
        /* Completed write: what was read so far becomes setup. */
        setup.calls += win.calls;
        setup.ns += win.ns;
        win.calls = win.ns = 0;
    }
    a.ret = ok ? HC_R_OK : HC_R_EUNSPEC;
    arg_out(gpa, &a, sizeof a);
}

static void hc_net_acquire(uint64_t gpa)
{
    struct hc_net_acquire a;
    unsigned h;
    arg_in(gpa, &a, sizeof a);
    struct device *d = lookup_name(a.name, DEV_NET, &h);
    if (!d) {
        a.ret = HC_R_EINVAL;
    } else {
        a.handle = h;
        memset(a.mac, 0, sizeof a.mac);
        memcpy(a.mac, d->mac, 6);
        a.mtu = d->mtu;
        a.ret = HC_R_OK;
    }
    arg_out(gpa, &a, sizeof a);
}

static void hc_net_io(uint64_t gpa, bool wr)
{
    struct hc_net_io a;
    arg_in(gpa, &a, sizeof a);
    uint8_t *buf = guest_buf(a.data, a.len, "net buffer");
    struct device *d = lookup_handle(a.handle, DEV_NET);
    uint64_t frame_max = d ? d->mtu + 14 : 0;
    if (!d || (wr && (a.len == 0 || a.len > frame_max)) ||
            (!wr && a.len < frame_max)) {
        /* Upstream semantics: reads need room for a full frame. */
        a.ret = HC_R_EINVAL;
        arg_out(gpa, &a, sizeof a);
        return;
    }
    ssize_t n;
    do {
        n = wr ? write(d->fd, buf, a.len) : read(d->fd, buf, a.len);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        a.ret = (errno == EAGAIN || errno == EWOULDBLOCK) ? HC_R_AGAIN
                                                          : HC_R_EUNSPEC;
    } else if (wr && (uint64_t)n != a.len) {
        a.ret = HC_R_EUNSPEC;
    } else {
        a.read_len = (uint64_t)n;
        a.ret = HC_R_OK;
    }
    arg_out(gpa, &a, sizeof a);
}

static void hc_yield(uint64_t gpa)
{
    struct hc_yield a;
    arg_in(gpa, &a, sizeof a);
    uint64_t now = now_ns();
    uint64_t wait = a.deadline > now ? a.deadline - now : 0;
    struct timespec ts = {
        .tv_sec = (time_t)(wait / 1000000000ull),
        .tv_nsec = (long)(wait % 1000000000ull),
    };
    a.ready_set = 0;
    if (n_net == 0) {
        /* Nothing can become ready: just sleep until the deadline. */
        if (wait > 0)
            nanosleep(&ts, NULL);
    } else {
        int r = ppoll(net_pfds, n_net, &ts, NULL);
        if (r > 0) {
            for (unsigned i = 0; i < n_net; i++)
                if (net_pfds[i].revents & POLLIN)
                    a.ready_set |= 1ull << net_pfd_handle[i];
        }
    }
    arg_out(gpa, &a, sizeof a);
}

static void hc_exit(uint64_t gpa)
{
    struct hc_exit a;
    arg_in(gpa, &a, sizeof a);
    fflush(stdout);
    write_stats();
    exit((int)(a.status & 0xff));
}

void hc_dispatch(unsigned nr, uint64_t gpa)
{
    cur_hc = nr;
    switch (nr) {
    case HC_BLOCK_READ:    hc_block_io(gpa, false); break;  /* hot path */
    case HC_BLOCK_WRITE:   hc_block_io(gpa, true); break;
    case HC_CONSOLE_WRITE: hc_console_write(gpa); break;
    case HC_CLOCK_MONO:    hc_clock(gpa, CLOCK_MONOTONIC); break;
    case HC_CLOCK_WALL:    hc_clock(gpa, CLOCK_REALTIME); break;
    case HC_BLOCK_ACQUIRE: hc_block_acquire(gpa); break;
    case HC_NET_ACQUIRE:   hc_net_acquire(gpa); break;
    case HC_NET_READ:      hc_net_io(gpa, false); break;
    case HC_NET_WRITE:     hc_net_io(gpa, true); break;
    case HC_YIELD:         hc_yield(gpa); break;
    case HC_EXIT:          hc_exit(gpa); break;
    case HC_ABORT:
        fflush(stdout);
        fputs("tender: guest called solo5_abort()\n", stderr);
        write_stats();
        exit(255);
    default:
        guest_fault("unknown hypercall %u", nr);
    }
}

/* --------------------------------------------------------------- ELF */

/* Check the guest ELF and copy its segments into guest memory; returns the
 * end of the loaded image. */
static uint64_t load_elf(const char *path, uint64_t *entry)
{
    /* Loadable window: above the tender's fixed area, below the stack. */
    struct elf_image img;
    elf_read_checked(path, (size_t)vm.mem_size, arch_elf_machine,
            HC_ELF_MIN_GPA, vm.mem_size - HC_STACK_SIZE, ELF_IDENTITY, &img);
    for (unsigned i = 0; i < img.eh.e_phnum; i++) {
        const Elf64_Phdr *p = &img.ph[i];
        if (!elf_loaded(p))
            continue;
        memcpy(vm.mem + p->p_paddr, img.file + p->p_offset, p->p_filesz);
        memset(vm.mem + p->p_paddr + p->p_filesz, 0,
               p->p_memsz - p->p_filesz);
    }
    free(img.file);
    *entry = img.eh.e_entry;
    return img.end;
}

/* --------------------------------------------------------------- main */

static void __attribute__((noreturn)) usage(void)
{
    fprintf(stderr,
        "usage: tender [--mem=MB] [--block:NAME=PATH] [--block-direct]\n"
        "              [--block-sector-size:NAME=N] [--net:NAME=TAPIFNAME]\n"
        "              [--stats=FILE] GUEST.elf [ARGS...]\n"
        "  --mem=MB          guest memory in MiB (default %d, %d..%llu)\n"
        "  --block:NAME=PATH attach file/block device PATH as block NAME\n"
        "  --block-direct    open block devices with O_DIRECT\n"
        "  --block-sector-size:NAME=N\n"
        "                    block size reported for NAME: a power of two,\n"
        "                    %u..%u, a multiple of the O_DIRECT alignment\n"
        "                    (default 512, or that alignment if larger)\n"
        "  --net:NAME=TAP    attach existing tap interface TAP as net NAME\n"
        "  --stats=FILE      at exit, write one line 'pread_calls=N pread_ns=T\n"
        "                    setup_pread_calls=N0 setup_pread_ns=T0': host\n"
        "                    reads for guest block reads after / before the\n"
        "                    guest's last block write (also: env\n"
        "                    PREAD_STATS_FILE)\n",
        MEM_MB_DEFAULT, MEM_MB_MIN, (unsigned long long)MEM_MB_MAX,
        SECTOR_MIN, SECTOR_MAX);
    exit(1);
}

int main(int argc, char **argv)
{
    static struct tender_args args;     /* 8 KiB of command line */
    parse_args(argc, argv, &args, usage);
    stats_path = args.stats;

    vm_create(&vm, args.mem_size);

    open_devices(args.direct);
    for (unsigned h = 0; h < ndevices; h++) {
        if (devices[h].type != DEV_NET)
            continue;
        net_pfds[n_net].fd = devices[h].fd;
        net_pfds[n_net].events = POLLIN;
        net_pfd_handle[n_net] = h;
        n_net++;
    }
    if (args.direct) {
        bounce = aligned_alloc(DIO_ALIGN_MAX, BOUNCE_SIZE);
        if (!bounce)
            die("out of memory (bounce buffer)");
    }

    uint64_t entry;
    uint64_t end = load_elf(args.guest, &entry);

    struct hc_bootinfo bi;
    uint64_t heap_start = (end + 0xfff) & ~0xfffull;
    uint64_t stack_base = vm.mem_size - HC_STACK_SIZE;
    bi.cmdline = HC_CMDLINE_GPA;
    bi.heap_start = heap_start;
    bi.heap_size = heap_start < stack_base ? stack_base - heap_start : 0;
    bi.mem_size = vm.mem_size;
    memcpy(vm.mem + HC_BOOTINFO_GPA, &bi, sizeof bi);
    memcpy(vm.mem + HC_CMDLINE_GPA, args.cmdline, args.cmdline_len + 1);

    /* No SA_RESTART: KVM_RUN must return EINTR so we can write stats. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    arch_vcpu_init(&vm, entry, vm.mem_size, HC_BOOTINFO_GPA);
    arch_run(&vm);
}
