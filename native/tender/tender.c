/*
 * tender: minimal KVM monitor for Solo5-API unikernels.
 *
 * Generic part: command line, ELF loading, devices, hypercall handlers and
 * pread accounting. The per-arch vCPU setup lives in setup_<arch>.c, the run
 * loop in run_<arch>.c, the KVM plumbing they share in kvm_common.c.
 *
 * Security model: the guest controls every byte of its memory, including
 * the hypercall argument structs. Every guest-physical address/length pair
 * is checked with gpa_ptr() (overflow-safe) before it is dereferenced, and
 * argument structs are copied to the host stack first so a value is only
 * ever read once.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <elf.h>
#include <linux/fs.h>
#include <linux/if_tun.h>

#include "tender.h"

#define MAX_DEVICES   64            /* handle set is a 64-bit mask */
#define BOUNCE_SIZE   (1u << 20)    /* O_DIRECT bounce buffer */
#define BOUNCE_ALIGN  4096u
#define DEFAULT_MEM_MB 32
#define MAX_MEM_MB    (HC_GUEST_MEM_MAX >> 20)
#define MIN_MEM_MB    4
#define SECTOR_MIN    512u          /* --block-sector-size range */
#define SECTOR_MAX    32768u

enum dev_type { DEV_BLOCK, DEV_NET };

struct device {
    enum dev_type type;
    char name[HC_NAME_MAX];
    const char *path;       /* block: file; net: tap name */
    int fd;
    /* block */
    uint64_t capacity, block_size;
    uint64_t sector_size;   /* --block-sector-size, 0 = device default */
    bool direct;
    uint64_t dio_mem_align;
    /* net */
    uint8_t mac[6];
    uint64_t mtu;
};

static struct device devices[MAX_DEVICES];
static unsigned ndevices;
static struct pollfd net_pfds[MAX_DEVICES];
static unsigned net_pfd_handle[MAX_DEVICES];
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
    const char *p = stats_path ? stats_path : getenv("PREAD_STATS_FILE");
    if (!p || !*p)
        return;
    FILE *f = fopen(p, "w");
    if (!f) {
        fprintf(stderr, "tender: warning: cannot write stats file %s: %s\n",
                p, strerror(errno));
        return;
    }
    fprintf(f, "pread_calls=%llu pread_ns=%llu setup_pread_calls=%llu "
            "setup_pread_ns=%llu\n", (unsigned long long)win.calls,
            (unsigned long long)win.ns, (unsigned long long)setup.calls,
            (unsigned long long)setup.ns);
    if (fclose(f) != 0)
        fprintf(stderr, "tender: warning: error writing stats file %s: %s\n",
                p, strerror(errno));
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
    if (!d->direct || ((uintptr_t)buf % d->dio_mem_align) == 0) {
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

/* ------------------------------------------------------------- devices */

static bool valid_dev_name(const char *s, size_t len)
{
    if (len == 0 || len >= HC_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static void add_device(enum dev_type type, const char *spec, const char *opt)
{
    const char *eq = strchr(spec, '=');
    if (!eq || !valid_dev_name(spec, (size_t)(eq - spec)) || !eq[1])
        die("bad %s argument '%s' (expected NAME=%s, NAME of 1-%d "
            "chars [A-Za-z0-9_-])", opt, spec,
            type == DEV_BLOCK ? "PATH" : "TAPIFNAME", HC_NAME_MAX - 1);
    if (ndevices >= MAX_DEVICES)
        die("too many devices (max %d)", MAX_DEVICES);
    struct device *d = &devices[ndevices];
    memcpy(d->name, spec, (size_t)(eq - spec));
    d->name[eq - spec] = '\0';
    for (unsigned i = 0; i < ndevices; i++)
        if (devices[i].type == type && strcmp(devices[i].name, d->name) == 0)
            die("duplicate device name '%s'", d->name);
    d->type = type;
    d->path = eq + 1;
    d->fd = -1;
    ndevices++;
}

/*
 * --block-sector-size:NAME=N (as upstream Solo5 hvt): the block size the
 * guest is told for NAME. Kept until all options are parsed so it may come
 * before or after its --block.
 */
struct sector_req {
    char name[HC_NAME_MAX];
    uint64_t size;
};
static struct sector_req sector_reqs[MAX_DEVICES];
static unsigned n_sector_reqs;

static void add_sector_req(const char *spec)
{
    const char *eq = strchr(spec, '=');
    if (!eq || !valid_dev_name(spec, (size_t)(eq - spec)))
        die("bad --block-sector-size argument '%s' (expected NAME=N, NAME "
            "of 1-%d chars [A-Za-z0-9_-])", spec, HC_NAME_MAX - 1);
    const char *v = eq + 1;
    char *endp;
    errno = 0;
    unsigned long long n = strtoull(v, &endp, 10);
    /* Digits only: strtoull would take "-512", " 512" and "+512". */
    if (*v < '0' || *v > '9' || errno || *endp || n < SECTOR_MIN ||
            n > SECTOR_MAX || (n & (n - 1)) != 0)
        die("bad --block-sector-size value '%s' for block '%.*s' (a power "
            "of two, %u..%u)", v, (int)(eq - spec), spec, SECTOR_MIN,
            SECTOR_MAX);
    if (n_sector_reqs >= MAX_DEVICES)
        die("too many --block-sector-size options (max %d)", MAX_DEVICES);
    struct sector_req *r = &sector_reqs[n_sector_reqs];
    memcpy(r->name, spec, (size_t)(eq - spec));
    r->name[eq - spec] = '\0';
    for (unsigned i = 0; i < n_sector_reqs; i++)
        if (strcmp(sector_reqs[i].name, r->name) == 0)
            die("duplicate --block-sector-size for block '%s'", r->name);
    r->size = n;
    n_sector_reqs++;
}

static void apply_sector_reqs(void)
{
    for (unsigned i = 0; i < n_sector_reqs; i++) {
        const struct sector_req *r = &sector_reqs[i];
        unsigned h = 0;
        while (h < ndevices && !(devices[h].type == DEV_BLOCK &&
                strcmp(devices[h].name, r->name) == 0))
            h++;
        if (h == ndevices)
            die("--block-sector-size:%s given, but no --block:%s",
                r->name, r->name);
        devices[h].sector_size = r->size;
    }
}

static void open_block(struct device *d, bool direct)
{
    int fd = open(d->path, O_RDWR | O_CLOEXEC | (direct ? O_DIRECT : 0));
    if (fd < 0)
        die("block '%s': cannot open %s%s: %s", d->name, d->path,
            direct ? " with O_DIRECT" : "", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0)
        die("block '%s': fstat %s: %s", d->name, d->path, strerror(errno));
    uint64_t size;
    uint64_t bs = 512;
    d->dio_mem_align = 1;
    if (S_ISBLK(st.st_mode)) {
        if (ioctl(fd, BLKGETSIZE64, &size) < 0)
            die("block '%s': BLKGETSIZE64 %s: %s", d->name, d->path,
                strerror(errno));
        int lbs = 0;
        if (direct && ioctl(fd, BLKSSZGET, &lbs) == 0 && lbs > 512)
            bs = (uint64_t)lbs;
        if (direct)
            d->dio_mem_align = bs;
    } else if (S_ISREG(st.st_mode)) {
        size = (uint64_t)st.st_size;
        if (direct) {
            d->dio_mem_align = 512;
#ifdef STATX_DIOALIGN
            /* Ask the filesystem what O_DIRECT needs (Linux >= 6.1). */
            struct statx sx;
            if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
                    (sx.stx_mask & STATX_DIOALIGN)) {
                if (sx.stx_dio_offset_align == 0)
                    die("block '%s': %s does not support O_DIRECT",
                        d->name, d->path);
                if (sx.stx_dio_offset_align > bs)
                    bs = sx.stx_dio_offset_align;
                if (sx.stx_dio_mem_align > 0)
                    d->dio_mem_align = sx.stx_dio_mem_align;
            }
#endif
        }
    } else {
        die("block '%s': %s is neither a regular file nor a block device",
            d->name, d->path);
    }
    if (bs > BOUNCE_ALIGN || d->dio_mem_align > BOUNCE_ALIGN)
        die("block '%s': unsupported O_DIRECT alignment", d->name);
    if (d->sector_size) {
        /* Every guest offset/length is a multiple of the sector size, so
         * this keeps each one valid for O_DIRECT. Without O_DIRECT, bs is
         * 512 and any accepted size passes. */
        if (d->sector_size % bs != 0)
            die("block '%s': --block-sector-size %llu is not a multiple of "
                "the %llu-byte alignment O_DIRECT needs on %s", d->name,
                (unsigned long long)d->sector_size,
                (unsigned long long)bs, d->path);
        bs = d->sector_size;
    }
    d->fd = fd;
    d->block_size = bs;
    d->capacity = size - size % bs;   /* a partial trailing block is unusable */
    d->direct = direct;
}

static void open_net(struct device *d, unsigned handle)
{
    if (strlen(d->path) >= IFNAMSIZ)
        die("net '%s': interface name '%s' too long", d->name, d->path);
    /* TUNSETIFF would silently create a missing tap; require it to exist. */
    if (if_nametoindex(d->path) == 0)
        die("net '%s': interface '%s' does not exist", d->name, d->path);
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        die("net '%s': open /dev/net/tun: %s", d->name, strerror(errno));
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    memcpy(ifr.ifr_name, d->path, strlen(d->path));
    if (ioctl(fd, TUNSETIFF, &ifr) < 0)
        die("net '%s': attach to tap '%s': %s", d->name, d->path,
            strerror(errno));
    if (strcmp(ifr.ifr_name, d->path) != 0)
        die("net '%s': attached to '%s' instead of '%s'", d->name,
            ifr.ifr_name, d->path);

    d->mtu = 1500;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s >= 0) {
        struct ifreq mr;
        memset(&mr, 0, sizeof mr);
        memcpy(mr.ifr_name, d->path, strlen(d->path));
        if (ioctl(s, SIOCGIFMTU, &mr) == 0 && mr.ifr_mtu >= 68)
            d->mtu = (uint64_t)mr.ifr_mtu;
        close(s);
    }
    /* Random locally-administered unicast MAC, as upstream does. */
    if (getrandom(d->mac, 6, 0) != 6)
        die("getrandom: %s", strerror(errno));
    d->mac[0] = (uint8_t)((d->mac[0] & 0xfc) | 0x02);
    d->fd = fd;
    net_pfds[n_net].fd = fd;
    net_pfds[n_net].events = POLLIN;
    net_pfd_handle[n_net] = handle;
    n_net++;
}

/* --------------------------------------------------------------- ELF */

struct load_result {
    uint64_t entry;
    uint64_t end;     /* highest loaded address (exclusive) */
};

static uint8_t *read_file(const char *path, size_t max, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die("cannot open guest %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0)
        die("fstat %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        die("guest %s: not a regular file", path);
    if ((uint64_t)st.st_size > max)
        die("guest %s: file too large (%lld bytes, guest memory %zu)",
            path, (long long)st.st_size, max);
    size_t sz = (size_t)st.st_size;
    uint8_t *buf = malloc(sz ? sz : 1);
    if (!buf)
        die("out of memory");
    size_t got = 0;
    while (got < sz) {
        ssize_t n = read(fd, buf + got, sz - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("read %s: %s", path, n < 0 ? strerror(errno) : "short read");
        got += (size_t)n;
    }
    close(fd);
    *len = sz;
    return buf;
}

#define BAD_ELF(...) do { \
        fprintf(stderr, "tender: error: bad ELF %s: ", path); \
        fprintf(stderr, __VA_ARGS__); \
        fputc('\n', stderr); \
        exit(1); \
    } while (0)

static void load_elf(const char *path, struct load_result *res)
{
    size_t fsz;
    uint8_t *f = read_file(path, (size_t)vm.mem_size, &fsz);
    Elf64_Ehdr eh;
    Elf64_Phdr ph[64];

    if (fsz < sizeof eh)
        BAD_ELF("file too short for an ELF header (%zu bytes)", fsz);
    memcpy(&eh, f, sizeof eh);   /* file buffer may be unaligned for structs */
    if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
        BAD_ELF("not an ELF file (bad magic)");
    if (eh.e_ident[EI_CLASS] != ELFCLASS64)
        BAD_ELF("not ELFCLASS64");
    if (eh.e_ident[EI_DATA] != ELFDATA2LSB)
        BAD_ELF("not little-endian");
    if (eh.e_ident[EI_VERSION] != EV_CURRENT || eh.e_version != EV_CURRENT)
        BAD_ELF("bad ELF version");
    if (eh.e_ident[EI_OSABI] != ELFOSABI_SYSV &&
            eh.e_ident[EI_OSABI] != ELFOSABI_STANDALONE)
        BAD_ELF("unsupported OS ABI %u", eh.e_ident[EI_OSABI]);
    if (eh.e_type != ET_EXEC)
        BAD_ELF("not a static executable (e_type %u; PIE/relocatable "
                "not supported)", eh.e_type);
    if (eh.e_machine != arch_elf_machine)
        BAD_ELF("wrong machine %u (this tender runs %u)", eh.e_machine,
                arch_elf_machine);
    if (eh.e_ehsize != sizeof(Elf64_Ehdr))
        BAD_ELF("bad e_ehsize %u", eh.e_ehsize);
    if (eh.e_phentsize != sizeof(Elf64_Phdr))
        BAD_ELF("bad e_phentsize %u", eh.e_phentsize);
    if (eh.e_phnum == 0 || eh.e_phnum > 64)
        BAD_ELF("bad e_phnum %u (1..64 supported)", eh.e_phnum);
    if (eh.e_phoff > fsz ||
            (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > fsz - eh.e_phoff)
        BAD_ELF("program headers outside file");
    memcpy(ph, f + eh.e_phoff, eh.e_phnum * sizeof(Elf64_Phdr));

    /* Loadable window: above the tender's fixed area, below the stack. */
    const uint64_t lo = HC_ELF_MIN_GPA, hi = vm.mem_size - HC_STACK_SIZE;
    uint64_t end = 0;
    bool entry_ok = false;
    unsigned nload = 0;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        const Elf64_Phdr *p = &ph[i];
        if (p->p_type == PT_INTERP || p->p_type == PT_DYNAMIC)
            BAD_ELF("dynamically linked (program header %u)", i);
        if (p->p_type != PT_LOAD || p->p_memsz == 0)
            continue;
        if (p->p_filesz > p->p_memsz)
            BAD_ELF("segment %u: p_filesz > p_memsz", i);
        if (p->p_offset > fsz || p->p_filesz > fsz - p->p_offset)
            BAD_ELF("segment %u: file range outside file", i);
        if (p->p_vaddr != p->p_paddr)
            BAD_ELF("segment %u: vaddr != paddr (identity mapping required)",
                    i);
        if (p->p_paddr < lo || p->p_paddr > hi || p->p_memsz > hi - p->p_paddr)
            BAD_ELF("segment %u [0x%llx, +0x%llx) outside loadable guest "
                    "memory [0x%llx, 0x%llx) (try a larger --mem)", i,
                    (unsigned long long)p->p_paddr,
                    (unsigned long long)p->p_memsz,
                    (unsigned long long)lo, (unsigned long long)hi);
        if (p->p_align > 1 && (p->p_align & (p->p_align - 1)) != 0)
            BAD_ELF("segment %u: p_align not a power of two", i);
        for (unsigned j = 0; j < i; j++) {
            const Elf64_Phdr *q = &ph[j];
            if (q->p_type != PT_LOAD || q->p_memsz == 0)
                continue;
            /* Both ranges are validated in-bounds, so sums can't overflow. */
            if (p->p_paddr < q->p_paddr + q->p_memsz &&
                    q->p_paddr < p->p_paddr + p->p_memsz)
                BAD_ELF("segments %u and %u overlap", j, i);
        }
        if ((p->p_flags & PF_X) && eh.e_entry >= p->p_paddr &&
                eh.e_entry - p->p_paddr < p->p_memsz)
            entry_ok = true;
        memcpy(vm.mem + p->p_paddr, f + p->p_offset, p->p_filesz);
        memset(vm.mem + p->p_paddr + p->p_filesz, 0, p->p_memsz - p->p_filesz);
        if (p->p_paddr + p->p_memsz > end)
            end = p->p_paddr + p->p_memsz;
        nload++;
    }
    if (nload == 0)
        BAD_ELF("no loadable segments");
    if (!entry_ok)
        BAD_ELF("entry point 0x%llx not inside an executable segment",
                (unsigned long long)eh.e_entry);
    free(f);
    res->entry = eh.e_entry;
    res->end = end;
}

/* --------------------------------------------------------------- main */

static void usage(void)
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
        DEFAULT_MEM_MB, MIN_MEM_MB, (unsigned long long)MAX_MEM_MB,
        SECTOR_MIN, SECTOR_MAX);
    exit(1);
}

int main(int argc, char **argv)
{
    uint64_t mem_mb = DEFAULT_MEM_MB;
    bool direct = false;
    int i;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0)
            break;
        if (strncmp(a, "--mem=", 6) == 0) {
            char *endp;
            errno = 0;
            unsigned long long v = strtoull(a + 6, &endp, 10);
            if (errno || endp == a + 6 || *endp || a[6] == '-' ||
                    v < MIN_MEM_MB || v > MAX_MEM_MB)
                die("bad --mem value '%s' (%d..%llu MiB)", a + 6,
                    MIN_MEM_MB, (unsigned long long)MAX_MEM_MB);
            mem_mb = v;
        } else if (strncmp(a, "--block:", 8) == 0) {
            add_device(DEV_BLOCK, a + 8, "--block");
        } else if (strcmp(a, "--block-direct") == 0) {
            direct = true;
        } else if (strncmp(a, "--block-sector-size:", 20) == 0) {
            add_sector_req(a + 20);
        } else if (strncmp(a, "--net:", 6) == 0) {
            add_device(DEV_NET, a + 6, "--net");
        } else if (strncmp(a, "--stats=", 8) == 0) {
            if (!a[8])
                die("empty --stats file name");
            stats_path = a + 8;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage();
        } else {
            fprintf(stderr, "tender: error: unknown option '%s'\n", a);
            usage();
        }
    }
    if (i >= argc) {
        fprintf(stderr, "tender: error: no guest ELF given\n");
        usage();
    }
    const char *elf_path = argv[i++];
    apply_sector_reqs();

    /* Guest command line: remaining args joined by single spaces. */
    char cmdline[HC_CMDLINE_MAX];
    size_t cl = 0;
    cmdline[0] = '\0';
    for (; i < argc; i++) {
        size_t n = strlen(argv[i]);
        if (cl + n + 2 > sizeof cmdline)
            die("guest command line too long (max %llu bytes)",
                (unsigned long long)HC_CMDLINE_MAX - 1);
        if (cl)
            cmdline[cl++] = ' ';
        memcpy(cmdline + cl, argv[i], n);
        cl += n;
        cmdline[cl] = '\0';
    }

    /* Round up to 2 MiB: page tables map RAM in 2 MiB units. */
    uint64_t mem_size = (mem_mb << 20);
    mem_size = (mem_size + 0x1fffff) & ~0x1fffffull;
    vm_create(&vm, mem_size);

    for (unsigned h = 0; h < ndevices; h++) {
        if (devices[h].type == DEV_BLOCK)
            open_block(&devices[h], direct);
        else
            open_net(&devices[h], h);
    }
    if (direct) {
        bounce = aligned_alloc(BOUNCE_ALIGN, BOUNCE_SIZE);
        if (!bounce)
            die("out of memory (bounce buffer)");
    }

    struct load_result lr;
    load_elf(elf_path, &lr);

    struct hc_bootinfo bi;
    uint64_t heap_start = (lr.end + 0xfff) & ~0xfffull;
    uint64_t stack_base = vm.mem_size - HC_STACK_SIZE;
    bi.cmdline = HC_CMDLINE_GPA;
    bi.heap_start = heap_start;
    bi.heap_size = heap_start < stack_base ? stack_base - heap_start : 0;
    bi.mem_size = vm.mem_size;
    memcpy(vm.mem + HC_BOOTINFO_GPA, &bi, sizeof bi);
    memcpy(vm.mem + HC_CMDLINE_GPA, cmdline, cl + 1);

    /* No SA_RESTART: KVM_RUN must return EINTR so we can write stats. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    arch_vcpu_init(&vm, lr.entry, vm.mem_size, HC_BOOTINFO_GPA);
    arch_run(&vm);
}
