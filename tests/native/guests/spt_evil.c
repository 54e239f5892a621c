/*
 * Test guest for spt_tender's confinement: "case=NAME" makes one forbidden
 * system call (the seccomp filter must kill the guest and the tender name
 * the call), misuses the Solo5 API (must get SOLO5_R_EINVAL), faults, or
 * scribbles over the accounting page the tender's parent reads. The block
 * cases make raw pread64/pwrite64 calls on block device "storage" that the
 * filter must refuse (anything but one whole block inside the device) or
 * allow ("pread_at"/"pwrite_at off=N [len=N] [blk=K]" on the K-th block
 * device: OK iff all len bytes moved), and "multi blocks=N [misalign=M]" does multi-block reads and a
 * write through the bindings.
 * Prints "OK <case>" and exits 0 when the case ends normally; "UNEXPECTED
 * <case>" and exits 3 when a call that should have been stopped returned.
 */
#include "solo5.h"
#include "solo5_util.h"
#include "spt_abi.h"
#include "spt_syscall.h"

#if defined(__x86_64__)
#define NR_read 0
#define NR_write 1
#define NR_open 2
#define NR_mmap 9
#define NR_mprotect 10
#define NR_pread64 17
#define NR_pwrite64 18
#define NR_getpid 39
#define NR_socket 41
#define NR_execve 59
#define NR_openat 257
#define NR_ppoll 271
#elif defined(__aarch64__)
#define NR_openat 56
#define NR_read 63
#define NR_write 64
#define NR_pread64 67
#define NR_pwrite64 68
#define NR_ppoll 73
#define NR_getpid 172
#define NR_socket 198
#define NR_execve 221
#define NR_mmap 222
#define NR_mprotect 226
#endif

static uint8_t buf[8192] __attribute__((aligned(4096)));
static const char *case_name;

/* a, then b up to the end of its command-line word. */
static void say(const char *a, const char *b)
{
    size_t n = 0;
    while (b[n] && b[n] != ' ')
        n++;
    puts_console(a);
    solo5_console_write(b, n);
    puts_console("\n");
}

static void __attribute__((noreturn)) ok(void)
{
    say("OK ", case_name);
    solo5_exit(0);
}

static void __attribute__((noreturn)) unexpected(void)
{
    say("UNEXPECTED ", case_name);
    solo5_exit(3);
}

/* Command-line number key, or dflt when absent; a bad value is a test
 * bug. */
static uint64_t arg_u64(const struct solo5_start_info *si, const char *key,
        uint64_t dflt)
{
    uint64_t v = dflt;
    const char *s = cmdline_get(si->cmdline, key);
    if (s && parse_u64(s, &v) != 0)
        unexpected();
    return v;
}

/* The boot info sits at the top of the stack, above our frames: the first
 * 16-byte aligned magic below the top (the command line is above it). */
static struct spt_bootinfo *find_bootinfo(const struct solo5_start_info *si)
{
    uintptr_t top = si->heap_start + si->heap_size + SPT_STACK_SIZE;
    uintptr_t lowest = top - sizeof(struct spt_bootinfo) - SPT_CMDLINE_MAX -
        64;
    for (uintptr_t a = (top - sizeof(struct spt_bootinfo)) & ~(uintptr_t)15;
            a >= lowest; a -= 16) {
        struct spt_bootinfo *bi = (struct spt_bootinfo *)a;
        if (bi->magic == SPT_BOOT_MAGIC && bi->version == SPT_ABI_VERSION)
            return bi;
    }
    say("no boot info found: ", case_name);
    solo5_exit(4);
}

/* The fd of the k-th (from 0) device of this type. */
static long dev_fd_nth(const struct solo5_start_info *si, uint32_t type,
        uint64_t k)
{
    struct spt_bootinfo *bi = find_bootinfo(si);
    for (unsigned i = 0; i < bi->ndevices && i < SPT_MAX_DEVICES; i++)
        if (bi->dev[i].type == type && k-- == 0)
            return bi->dev[i].fd;
    say("no such device: ", case_name);
    solo5_exit(4);
}

static long dev_fd(const struct solo5_start_info *si, uint32_t type)
{
    return dev_fd_nth(si, type, 0);
}

static struct spt_acct *acct_page(const struct solo5_start_info *si)
{
    return (struct spt_acct *)(uintptr_t)find_bootinfo(si)->acct;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Each frame touches 4 KiB: runs into the stack's guard page. The limit
 * (4 GiB of frames) is never reached; it only keeps GCC from calling this
 * an infinite recursion. */
static uint64_t deep(uint64_t n)
{
    volatile uint8_t frame[4096];
    frame[0] = (uint8_t)n;
    frame[4095] = (uint8_t)n;
    if (n > (1u << 20))
        return n;
    return deep(n + 1) + frame[0] + frame[4095];
}

static bool is(const char *name)
{
    size_t n = strlen(name);
    return strncmp(case_name, name, n) == 0 &&
        (case_name[n] == '\0' || case_name[n] == ' ');
}

/* Solo5 API misuse on block device "storage" / net device "service". */
static void api_case(void)
{
    solo5_handle_t h;
    struct solo5_block_info bi;
    if (solo5_block_acquire("storage", &h, &bi) != SOLO5_R_OK)
        unexpected();
    uint64_t bs = bi.block_size, cap = bi.capacity;
    solo5_result_t r = SOLO5_R_OK;
    if (is("api_unaligned_offset"))
        r = solo5_block_read(h, 1, buf, bs);
    else if (is("api_unaligned_size"))
        r = solo5_block_read(h, 0, buf, bs + 1);
    else if (is("api_zero_size"))
        r = solo5_block_read(h, 0, buf, 0);
    else if (is("api_past_end"))
        r = solo5_block_read(h, cap, buf, bs);
    else if (is("api_straddle_end"))
        r = solo5_block_read(h, cap - bs, buf, 2 * bs);
    else if (is("api_offset_overflow"))
        r = solo5_block_read(h, ~0ull - bs + 1, buf, 2 * bs);
    else if (is("api_write_past_end"))
        r = solo5_block_write(h, cap, buf, bs);
    else if (is("api_bad_handle"))
        r = solo5_block_read(h + 7, 0, buf, bs);
    else if (is("api_unknown_name"))
        r = solo5_block_acquire("nosuch", &h, &bi);
    else if (is("api_net_as_block"))
        r = solo5_net_acquire("storage", &h, 0);
    else
        unexpected();
    if (r != SOLO5_R_EINVAL)
        unexpected();
    ok();
}

/* Raw pread64/pwrite64 on the block fd, past the bindings' checks: only
 * "*_at" cases may return (OK iff every byte moved); the filter must kill
 * every other one. */
static void block_case(const struct solo5_start_info *si)
{
    solo5_handle_t h;
    struct solo5_block_info bi;
    if (solo5_block_acquire("storage", &h, &bi) != SOLO5_R_OK)
        unexpected();
    long fd = dev_fd(si, SPT_DEV_BLOCK);
    uint64_t bs = bi.block_size, cap = bi.capacity;
    long nr = NR_pread64;
    uint64_t len = bs, off = 0;
    if (is("pwrite_past_end")) {
        nr = NR_pwrite64;
        off = cap;                      /* the first block past the end */
    } else if (is("pwrite_straddle_end")) {
        nr = NR_pwrite64;
        off = cap - bs;
        len = 2 * bs;
    } else if (is("pwrite_huge_offset")) {
        nr = NR_pwrite64;
        off = 1ull << 40;               /* low word 0: only hi tells */
    } else if (is("pwrite_short")) {
        nr = NR_pwrite64;
        len = bs / 2;
    } else if (is("pread_two_blocks")) {
        len = 2 * bs;
    } else if (is("pread_short")) {
        len = bs / 2;                   /* a partial read's retry */
    } else if (is("pread_unaligned")) {
        off = bs / 2;
    } else if (is("pread_len_highbits")) {
        len = 1ull << 32 | bs;          /* low word == bs */
    } else if (is("pread_negative_offset")) {
        off = -bs;
    } else if (is("pread_past_end")) {
        off = cap;
    } else if (is("pread_at") || is("pwrite_at")) {
        /* blk=K: the K-th block device's fd (its geometry is the test's) */
        fd = dev_fd_nth(si, SPT_DEV_BLOCK, arg_u64(si, "blk", 0));
        nr = is("pwrite_at") ? NR_pwrite64 : NR_pread64;
        off = arg_u64(si, "off", 0);
        len = arg_u64(si, "len", bs);
        if (len > sizeof buf)
            unexpected();
        long r = sys6(nr, fd, (long)buf, (long)len, (long)off, 0);
        if (r == (long)len)
            ok();
        unexpected();
    } else {
        say("unknown case ", case_name);
        solo5_exit(2);
    }
    sys6(nr, fd, (long)buf, (long)len, (long)off, 0);
    unexpected();
}

/* Multi-block I/O through the bindings, one syscall per block: a read of
 * blocks [0, n) (setup), a write of pattern blocks to [n, 2n) (restarts
 * the window), a read of [n, 2n) that must return them (the window). The
 * buffer is misaligned by misalign bytes (O_DIRECT: the bounce path). */
static void multi_case(const struct solo5_start_info *si)
{
    static uint8_t big[2 * 16 * 4096 + 4096] __attribute__((aligned(4096)));
    solo5_handle_t h;
    struct solo5_block_info bi;
    if (solo5_block_acquire("storage", &h, &bi) != SOLO5_R_OK)
        unexpected();
    uint64_t bs = bi.block_size;
    uint64_t n = arg_u64(si, "blocks", 2), mis = arg_u64(si, "misalign", 0);
    if (n == 0 || n * bs > 16 * 4096 || mis >= 4096 || 2 * n * bs > bi.capacity)
        unexpected();
    uint8_t *rd = big + mis, *wr = big + 16 * 4096 + mis;
    if (solo5_block_read(h, 0, rd, n * bs) != SOLO5_R_OK)
        unexpected();
    for (uint64_t i = 0; i < n * bs; i++)
        wr[i] = (uint8_t)(i * 13 % 251 + 1);
    if (solo5_block_write(h, n * bs, wr, n * bs) != SOLO5_R_OK)
        unexpected();
    memset(rd, 0, n * bs);
    if (solo5_block_read(h, n * bs, rd, n * bs) != SOLO5_R_OK ||
            memcmp(rd, wr, n * bs) != 0)
        unexpected();
    ok();
}

int solo5_app_main(const struct solo5_start_info *si)
{
    case_name = cmdline_get(si->cmdline, "case");
    if (!case_name) {
        puts_console("usage: case=NAME\n");
        return 2;
    }
    long r = 0;
    if (is("ok")) {
        ok();
    } else if (is("openat")) {
        r = sys6(NR_openat, -100, (long)"/etc/passwd", 0, 0, 0);
#ifdef NR_open
    } else if (is("open")) {
        r = sys6(NR_open, (long)"/etc/passwd", 0, 0, 0, 0);
#endif
    } else if (is("execve")) {
        static const char *argv[] = { "/bin/sh", 0 };
        r = sys6(NR_execve, (long)argv[0], (long)argv, 0, 0, 0);
    } else if (is("socket")) {
        r = sys6(NR_socket, 2, 1, 0, 0, 0);
    } else if (is("getpid")) {
        r = sys6(NR_getpid, 0, 0, 0, 0, 0);
    } else if (is("write_stderr")) {
        r = sys6(NR_write, 2, (long)"x\n", 2, 0, 0);
    } else if (is("write_fd")) {
        uint64_t fd = 0;
        const char *v = cmdline_get(si->cmdline, "fd");
        if (!v || parse_u64(v, &fd) != 0)
            unexpected();
        r = sys6(NR_write, (long)fd, (long)"x\n", 2, 0, 0);
    } else if (is("write_fd_highbits")) {
        /* stdout in the low half: only the full 64-bit value may pass. */
        r = sys6(NR_write, (long)(1ull << 32 | 1), (long)"x\n", 2, 0, 0);
    } else if (is("write_block")) {
        r = sys6(NR_write, dev_fd(si, SPT_DEV_BLOCK), (long)buf, 512, 0, 0);
    } else if (is("read_block")) {
        r = sys6(NR_read, dev_fd(si, SPT_DEV_BLOCK), (long)buf, 512, 0, 0);
    } else if (is("read_stdin")) {
        r = sys6(NR_read, 0, (long)buf, 1, 0, 0);
    } else if (is("pread_tap")) {
        r = sys6(NR_pread64, dev_fd(si, SPT_DEV_NET), (long)buf, 64, 0, 0);
    } else if (is("pread_stdout")) {
        r = sys6(NR_pread64, 1, (long)buf, 64, 0, 0);
    } else if (is("mmap")) {
        r = sys6(NR_mmap, 0, 4096, 3, 0x22, -1);
    } else if (is("mprotect")) {
        r = sys6(NR_mprotect, (long)si->heap_start, 4096, 7, 0, 0);
    } else if (is("ppoll_sigmask")) {
        static uint64_t mask = ~0ull;
        static int64_t ts[2] = { 0, 0 };
        r = sys6(NR_ppoll, 0, 0, (long)ts, (long)&mask, 8);
#if defined(__x86_64__)
    } else if (is("int80")) {
        /* i386 getpid through the compat entry: another ABI's numbers. */
        __asm__ __volatile__("int $0x80" : "=a"(r) : "a"(20) : "memory");
    } else if (is("x32")) {
        r = sys6(0x40000000 | NR_getpid, 0, 0, 0, 0, 0);
#endif
    } else if (is("segv")) {
        *(volatile uint64_t *)8 = 1;
    } else if (is("stack_overflow")) {
        r = (long)deep(0);
    } else if (is("abort")) {
        solo5_abort();
    } else if (is("exit")) {
        uint64_t st = 0;
        const char *v = cmdline_get(si->cmdline, "status");
        if (!v || parse_u64(v, &st) != 0)
            unexpected();
        solo5_exit((int)st);
    } else if (strncmp(case_name, "api_", 4) == 0) {
        api_case();
    } else if (strncmp(case_name, "pread_", 6) == 0 ||
            strncmp(case_name, "pwrite_", 7) == 0) {
        block_case(si);
    } else if (is("multi")) {
        multi_case(si);
    } else if (is("acct_garbage")) {
        memset(acct_page(si), 0xa5, sizeof(struct spt_acct));
        ok();
    } else if (is("acct_huge")) {
        struct spt_acct *a = acct_page(si);
        a->win_calls = ~0ull;
        a->win_ns = ~0ull - 1;
        a->setup_calls = 1ull << 63;
        a->setup_ns = 12345;
        ok();
    } else if (is("acct_lie")) {
        /* Claims a seccomp kill (and an abort) but exits normally. */
        struct spt_acct *a = acct_page(si);
        a->sigsys_seen = 1;
        a->sigsys_nr = ~0ull;
        a->sigsys_arch = ~0ull;
        a->aborted = 1;
        solo5_exit(7);
    } else if (is("acct_fuzz")) {
        /* Random page contents, then a random way to end. */
        uint64_t seed = 1;
        const char *v = cmdline_get(si->cmdline, "seed");
        if (v && parse_u64(v, &seed) == 0)
            rng ^= seed * 0x9e3779b97f4a7c15ull;
        uint64_t *w = (uint64_t *)acct_page(si);
        for (size_t i = 0; i < sizeof(struct spt_acct) / 8; i++) {
            switch (rnd() % 4) {
            case 0: w[i] = rnd(); break;
            case 1: w[i] = ~0ull - (rnd() % 4); break;
            case 2: w[i] = rnd() % 4; break;
            default: break;
            }
        }
        switch (rnd() % 4) {
        case 0: solo5_exit((int)(rnd() % 256));
        case 1: solo5_abort();
        case 2: r = sys6(NR_getpid, 0, 0, 0, 0, 0); break;
        default: *(volatile uint64_t *)16 = 1; break;
        }
    } else {
        say("unknown case ", case_name);
        return 2;
    }
    (void)r;
    unexpected();
}
