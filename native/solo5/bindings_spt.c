/*
 * Solo5 API for spt guests: the guest is an ordinary Linux process under
 * spt_tender's seccomp filter, and each call is a direct system call on the
 * file descriptors the tender opened (see spt_abi.h). The filter, not this
 * code, is the isolation boundary; the checks here give API semantics
 * (SOLO5_R_EINVAL as upstream Solo5 and our hvt tender return it).
 */
#include "solo5.h"
#include "solo5_util.h"
#include "spt_abi.h"
#include "spt_syscall.h"

/* Linux syscall numbers (x86_64 table / asm-generic table). */
#if defined(__x86_64__)
#define NR_read          0
#define NR_write         1
#define NR_pread64       17
#define NR_pwrite64      18
#define NR_clock_gettime 228
#define NR_exit_group    231
#define NR_ppoll         271
#elif defined(__aarch64__)
#define NR_read          63
#define NR_write         64
#define NR_pread64       67
#define NR_pwrite64      68
#define NR_ppoll         73
#define NR_exit_group    94
#define NR_clock_gettime 113
#else
#error unsupported architecture
#endif

#define E_INTR  4
#define E_AGAIN 11
#define CLK_REALTIME  0
#define CLK_MONOTONIC 1
#define POLL_IN 0x0001

struct k_timespec { int64_t tv_sec; int64_t tv_nsec; };
struct k_pollfd { int32_t fd; int16_t events; int16_t revents; };

#define sys1(n, a)          sys6((n), (long)(a), 0, 0, 0, 0)
#define sys2(n, a, b)       sys6((n), (long)(a), (long)(b), 0, 0, 0)
#define sys3(n, a, b, c)    sys6((n), (long)(a), (long)(b), (long)(c), 0, 0)
#define sys4(n, a, b, c, d) \
    sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0)

void _start(const struct spt_bootinfo *bi)
    __attribute__((noreturn, used, section(".text.boot")));

static struct solo5_start_info start_info;
static struct spt_device devs[SPT_MAX_DEVICES];
static unsigned ndevs;
static struct spt_acct *acct;
static uint8_t *bounce;
static int (*vdso_gettime)(long, struct k_timespec *);
static struct k_pollfd net_pfds[SPT_MAX_DEVICES];
static unsigned net_pfd_handle[SPT_MAX_DEVICES];
static unsigned n_net;

static void sys_exit(int status) __attribute__((noreturn));
static void sys_exit(int status)
{
    for (;;)
        sys1(NR_exit_group, status);
}

void _start(const struct spt_bootinfo *bi)
{
    /* A tender of another ABI version would mean a mis-built guest. */
    if (bi->magic != SPT_BOOT_MAGIC || bi->version != SPT_ABI_VERSION ||
            bi->ndevices > SPT_MAX_DEVICES)
        sys_exit(255);
    ndevs = bi->ndevices;
    memcpy(devs, bi->dev, ndevs * sizeof devs[0]);
    for (unsigned i = 0; i < ndevs; i++) {
        devs[i].name[SPT_NAME_MAX - 1] = '\0';
        if (devs[i].type == SPT_DEV_NET) {
            net_pfds[n_net].fd = devs[i].fd;
            net_pfds[n_net].events = POLL_IN;
            net_pfd_handle[n_net] = i;
            n_net++;
        }
    }
    acct = (struct spt_acct *)(uintptr_t)bi->acct;
    bounce = (uint8_t *)(uintptr_t)bi->bounce;
    vdso_gettime = (int (*)(long, struct k_timespec *))(uintptr_t)
        bi->vdso_clock_gettime;
    start_info.cmdline = (const char *)(uintptr_t)bi->cmdline;
    start_info.heap_start = (uintptr_t)bi->heap_start;
    start_info.heap_size = (size_t)bi->heap_size;
    solo5_exit(solo5_app_main(&start_info));
}

static inline uint64_t clock_ns(long clk)
{
    struct k_timespec ts = { 0, 0 };
    /* The vDSO keeps the hot path (two reads of the clock per block read)
     * free of syscalls; without one the syscall is allowed too. */
    if (vdso_gettime)
        vdso_gettime(clk, &ts);
    else
        sys2(NR_clock_gettime, clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void solo5_exit(int status)
{
    sys_exit(status & 0xff);
}

void solo5_abort(void)
{
    acct->aborted = 1;
    sys_exit(255);
}

void solo5_console_write(const char *buf, size_t size)
{
    while (size > 0) {
        long n = sys3(NR_write, 1, buf, size);
        if (n == -E_INTR)
            continue;
        if (n <= 0)
            return;     /* console gone: drop output, keep running */
        buf += n;
        size -= (size_t)n;
    }
}

solo5_time_t solo5_clock_monotonic(void)
{
    return clock_ns(CLK_MONOTONIC);
}

solo5_time_t solo5_clock_wall(void)
{
    return clock_ns(CLK_REALTIME);
}

void solo5_yield(solo5_time_t deadline, solo5_handle_set_t *ready_set)
{
    uint64_t now = clock_ns(CLK_MONOTONIC);
    uint64_t wait = deadline > now ? deadline - now : 0;
    struct k_timespec ts = {
        .tv_sec = (int64_t)(wait / 1000000000ull),
        .tv_nsec = (int64_t)(wait % 1000000000ull),
    };
    solo5_handle_set_t ready = 0;
    /* With no net device this is a plain sleep until the deadline. */
    long r = sys4(NR_ppoll, n_net ? net_pfds : 0, n_net, &ts, 0);
    if (r > 0) {
        for (unsigned i = 0; i < n_net; i++)
            if (net_pfds[i].revents & POLL_IN)
                ready |= 1ull << net_pfd_handle[i];
    }
    if (ready_set)
        *ready_set = ready;
}

solo5_result_t solo5_set_tls_base(uintptr_t base)
{
    (void)base;
    return SOLO5_R_EUNSPEC;   /* as our hvt bindings: guests use no TLS */
}

static const struct spt_device *lookup(const char *name, uint32_t type,
        solo5_handle_t *handle)
{
    for (unsigned i = 0; i < ndevs; i++) {
        if (devs[i].type != type)
            continue;
        size_t n = strlen(devs[i].name);
        if (strncmp(devs[i].name, name, n + 1) == 0) {
            *handle = i;
            return &devs[i];
        }
    }
    return 0;
}

static inline const struct spt_device *dev_of(solo5_handle_t h, uint32_t type)
{
    if (h >= ndevs || devs[h].type != type)
        return 0;
    return &devs[h];
}

solo5_result_t solo5_block_acquire(const char *name, solo5_handle_t *handle,
        struct solo5_block_info *info)
{
    const struct spt_device *d = lookup(name, SPT_DEV_BLOCK, handle);
    if (!d)
        return SOLO5_R_EINVAL;
    info->capacity = d->capacity;
    info->block_size = d->block_size;
    return SOLO5_R_OK;
}

/*
 * One block, as the tender's filter requires of every pread64/pwrite64:
 * count == block size at an aligned offset inside the device (anything
 * else kills the guest). True iff the whole block moved. Each pread is
 * timed and counted on its own, with nothing but the syscall inside the
 * time. Always inlined: wr is a constant at each call, so the read path
 * keeps no test of it.
 *
 * A short transfer is an error (SOLO5_R_EUNSPEC), as upstream Solo5's spt
 * has it: retrying the remainder would need a shorter count, which the
 * filter refuses, and for a whole in-bounds block of a file or block
 * device it only happens when the backing file shrank under us or on an
 * I/O error, which a retry would not cure. Only EINTR (nothing moved) is
 * retried, with the same allowed arguments.
 */
static inline __attribute__((always_inline)) bool pio_block(int fd, bool wr,
        uintptr_t buf, size_t bs, uint64_t off)
{
    long n;
    do {
        if (wr) {
            n = sys4(NR_pwrite64, fd, buf, bs, off);
        } else {
            uint64_t t0 = clock_ns(CLK_MONOTONIC);
            n = sys4(NR_pread64, fd, buf, bs, off);
            uint64_t t1 = clock_ns(CLK_MONOTONIC);
            acct->win_ns += t1 - t0;
            acct->win_calls++;
        }
    } while (n == -E_INTR);
    return n == (long)bs;
}

static const struct spt_device *block_args(solo5_handle_t h,
        solo5_off_t offset, size_t size)
{
    const struct spt_device *d = dev_of(h, SPT_DEV_BLOCK);
    /* Overflow-safe: offset is checked before offset + size is formed. */
    if (!d || size == 0 || size % d->block_size != 0 ||
            offset % d->block_size != 0 || offset > d->capacity ||
            size > d->capacity - offset)
        return 0;
    return d;
}

static inline bool needs_bounce(const struct spt_device *d, const void *buf)
{
    return d->dio_mem_align > 1 && ((uintptr_t)buf % d->dio_mem_align) != 0;
}

/* Multi-block requests are one syscall per block (see pio_block). The
 * bounce test is per block: dio_mem_align may exceed the block size. */
solo5_result_t solo5_block_read(solo5_handle_t handle, solo5_off_t offset,
        uint8_t *buf, size_t size)
{
    const struct spt_device *d = block_args(handle, offset, size);
    if (!d)
        return SOLO5_R_EINVAL;
    size_t bs = (size_t)d->block_size;
    for (size_t done = 0; done < size; done += bs) {
        if (!needs_bounce(d, buf + done)) {
            if (!pio_block(d->fd, false, (uintptr_t)(buf + done), bs,
                           offset + done))
                return SOLO5_R_EUNSPEC;
            continue;
        }
        /* O_DIRECT wants an aligned buffer: read into the bounce buffer,
         * copy out after the timed syscall. */
        if (!bounce || !pio_block(d->fd, false, (uintptr_t)bounce, bs,
                                  offset + done))
            return SOLO5_R_EUNSPEC;
        memcpy(buf + done, bounce, bs);
    }
    return SOLO5_R_OK;
}

solo5_result_t solo5_block_write(solo5_handle_t handle, solo5_off_t offset,
        const uint8_t *buf, size_t size)
{
    const struct spt_device *d = block_args(handle, offset, size);
    if (!d)
        return SOLO5_R_EINVAL;
    size_t bs = (size_t)d->block_size;
    for (size_t done = 0; done < size; done += bs) {
        uintptr_t src = (uintptr_t)(buf + done);
        if (needs_bounce(d, buf + done)) {
            if (!bounce)
                return SOLO5_R_EUNSPEC;
            memcpy(bounce, buf + done, bs);
            src = (uintptr_t)bounce;
        }
        /* A failure part-way leaves the earlier blocks written, as
         * upstream; the window stays as it was. */
        if (!pio_block(d->fd, true, src, bs, offset + done))
            return SOLO5_R_EUNSPEC;
    }
    /* A completed write restarts the benchmark window (as the hvt tender). */
    acct->setup_calls += acct->win_calls;
    acct->setup_ns += acct->win_ns;
    acct->win_calls = 0;
    acct->win_ns = 0;
    return SOLO5_R_OK;
}

solo5_result_t solo5_net_acquire(const char *name, solo5_handle_t *handle,
        struct solo5_net_info *info)
{
    const struct spt_device *d = lookup(name, SPT_DEV_NET, handle);
    if (!d)
        return SOLO5_R_EINVAL;
    memcpy(info->mac_address, d->mac, SOLO5_NET_ALEN);
    info->mtu = (size_t)d->mtu;
    return SOLO5_R_OK;
}

solo5_result_t solo5_net_read(solo5_handle_t handle, uint8_t *buf,
        size_t size, size_t *read_size)
{
    const struct spt_device *d = dev_of(handle, SPT_DEV_NET);
    /* Upstream semantics: a read needs room for a full frame. */
    if (!d || size < d->mtu + SOLO5_NET_HLEN)
        return SOLO5_R_EINVAL;
    long n;
    do {
        n = sys3(NR_read, d->fd, buf, size);
    } while (n == -E_INTR);
    if (n == -E_AGAIN)
        return SOLO5_R_AGAIN;
    if (n < 0)
        return SOLO5_R_EUNSPEC;
    *read_size = (size_t)n;
    return SOLO5_R_OK;
}

solo5_result_t solo5_net_write(solo5_handle_t handle, const uint8_t *buf,
        size_t size)
{
    const struct spt_device *d = dev_of(handle, SPT_DEV_NET);
    if (!d || size == 0 || size > d->mtu + SOLO5_NET_HLEN)
        return SOLO5_R_EINVAL;
    long n;
    do {
        n = sys3(NR_write, d->fd, buf, size);
    } while (n == -E_INTR);
    return (n >= 0 && (size_t)n == size) ? SOLO5_R_OK : SOLO5_R_EUNSPEC;
}
