/*
 * Deliberately malicious test guest: issues one malformed hypercall chosen
 * by cmdline "case=NAME", or a stream of randomised ones ("case=fuzz
 * seed=N"). The tender must abort it cleanly (or return EINVAL for API-level
 * misuse), never crash or touch memory outside the guest.
 */
#include "solo5.h"
#include "solo5_hc.h"
#include "solo5_util.h"

static uint64_t mem_size;
static uint8_t scratch[4096] __attribute__((aligned(64)));

static void say(const char *s)
{
    puts_console(s);
    puts_console("\n");
}

/* Result-returning cases end here: exit 0 means "tender handled it". */
static void expect(uint64_t got, uint64_t want, const char *what)
{
    if (got == want) {
        puts_console("OK ");
        say(what);
        solo5_exit(0);
    }
    puts_console("UNEXPECTED ");
    say(what);
    solo5_exit(3);
}

static uint64_t rng;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Values biased toward boundaries, where bounds checks go wrong. */
static uint64_t pick(void)
{
    switch (rnd() % 10) {
    case 0: return 0;
    case 1: return mem_size - (rnd() % 64);
    case 2: return mem_size + (rnd() % 64);
    case 3: return ~0ull - (rnd() % 4096);
    case 4: return (uint64_t)(uintptr_t)scratch + (rnd() % 4096);
    case 5: return 512 * (rnd() % 4096);
    case 6: return 1ull << (rnd() % 64);
    case 7: return rnd() % 2048;
    case 8: return 0x100000 + rnd() % 0x100000;
    default: return rnd();
    }
}

/* A length that fits in scratch most of the time, a boundary value rarely. */
static int tame;    /* 1: never send wild pointers (run must survive) */

static uint64_t small_len(void)
{
    if (!tame && rnd() % 16 == 0)
        return pick();
    return (rnd() % 2) ? 512 * (rnd() % 5) : rnd() % 2048;
}

/* A pointer into scratch most of the time, a boundary value rarely. */
static uint64_t ptr_for(uint64_t len)
{
    if (!tame && (rnd() % 16 == 0 || len > 2048))
        return pick();
    return (uint64_t)(uintptr_t)scratch + rnd() % (2048 - len + 1);
}

/*
 * Mostly well-formed pointers with boundary values in the other fields, so
 * that calls get past the pointer checks into the deeper validation; now
 * and then a wild pointer, which must end in a clean abort.
 */
static void fuzz(uint64_t seed)
{
    rng = seed * 0x9e3779b97f4a7c15ull + 1;
    struct hc_block_io *bio = (struct hc_block_io *)(scratch + 2048);
    struct hc_net_io *nio = (struct hc_net_io *)(scratch + 2048);
    struct hc_block_acquire *ba = (struct hc_block_acquire *)(scratch + 2048);
    struct hc_net_acquire *na = (struct hc_net_acquire *)(scratch + 2048);
    for (int i = 0; i < 3000; i++) {
        unsigned nr;
        uint64_t len;
        switch (rnd() % 6) {
        case 0:
        case 1:
            nr = (rnd() % 2) ? HC_BLOCK_READ : HC_BLOCK_WRITE;
            len = small_len();
            bio->handle = (rnd() % 4 == 0) ? pick() : rnd() % 3;
            bio->offset = (rnd() % 2) ? 512 * (rnd() % 2100) : pick();
            bio->len = len;
            bio->data = ptr_for(len);
            break;
        case 2:
            nr = (rnd() % 2) ? HC_NET_READ : HC_NET_WRITE;
            len = small_len();
            nio->handle = (rnd() % 4 == 0) ? pick() : rnd() % 3;
            nio->len = len;
            nio->data = ptr_for(len);
            break;
        case 3:
            nr = HC_BLOCK_ACQUIRE;
            for (int k = 0; k < 80; k++)
                scratch[k] = (uint8_t)(rnd() % 4 ? 's' : 0);
            ba->name = ptr_for(1);
            break;
        case 4:
            nr = HC_NET_ACQUIRE;
            na->name = ptr_for(1);
            break;
        default:
            nr = (rnd() % 2) ? HC_CLOCK_MONO : HC_CLOCK_WALL;
            break;
        }
        uint64_t gpa = (uint64_t)(uintptr_t)(scratch + 2048);
        if (!tame && rnd() % 64 == 0)
            gpa = pick() & 0xffffffffull;
        hc_raw(nr, (uint32_t)gpa);
    }
    say("fuzz survived");
    solo5_exit(0);
}

int solo5_app_main(const struct solo5_start_info *si)
{
    const struct hc_bootinfo *bi =
        (const struct hc_bootinfo *)(uintptr_t)HC_BOOTINFO_GPA;
    mem_size = bi->mem_size;
    const char *c = cmdline_get(si->cmdline, "case");
    if (!c) {
        say("no case");
        return 2;
    }
#define IS(name) (strncmp(c, name, sizeof(name) - 1) == 0 && \
        (c[sizeof(name) - 1] == '\0' || c[sizeof(name) - 1] == ' '))

    struct hc_console_write cw;
    struct hc_block_io bio;
    struct hc_block_acquire ba;
    struct hc_net_io nio;
    struct hc_net_acquire na;
    solo5_handle_t h;
    struct solo5_block_info info;

    if (IS("arg_oob")) {
        hc_raw(HC_CONSOLE_WRITE, 0xfffffff0u);
    } else if (IS("arg_straddle")) {
        hc_raw(HC_CLOCK_MONO, (uint32_t)(mem_size - 4));
    } else if (IS("arg_at_end")) {
        hc_raw(HC_YIELD, (uint32_t)mem_size);
    } else if (IS("exit_oob")) {
        hc_raw(HC_EXIT, (uint32_t)(mem_size + 4096));
    } else if (IS("console_oob")) {
        cw.data = mem_size; cw.len = 16;
        hc_call(HC_CONSOLE_WRITE, &cw);
    } else if (IS("console_wrap")) {
        cw.data = 0x100000; cw.len = ~0ull - 0xfff;
        hc_call(HC_CONSOLE_WRITE, &cw);
    } else if (IS("console_huge")) {
        cw.data = 0x100000; cw.len = mem_size;
        hc_call(HC_CONSOLE_WRITE, &cw);
    } else if (IS("console_highbits")) {
        /* High address bits must not be silently dropped. */
        cw.data = (1ull << 32) | 0x100000; cw.len = 4;
        hc_call(HC_CONSOLE_WRITE, &cw);
    } else if (IS("blk_read_oob_buf") || IS("blk_write_oob_buf")) {
        bio.handle = 0; bio.offset = 0; bio.data = mem_size - 256;
        bio.len = 512;
        hc_call(IS("blk_read_oob_buf") ? HC_BLOCK_READ : HC_BLOCK_WRITE,
                &bio);
    } else if (IS("blk_read_wrap_buf")) {
        bio.handle = 0; bio.offset = 0; bio.data = ~0ull - 511;
        bio.len = 1024;
        hc_call(HC_BLOCK_READ, &bio);
    } else if (IS("blk_read_len_overflow")) {
        bio.handle = 0; bio.offset = 512; bio.data = 0x100000;
        bio.len = ~0ull - 511;
        hc_call(HC_BLOCK_READ, &bio);
    } else if (IS("blk_read_offset_overflow")) {
        if (solo5_block_acquire("storage", &h, &info) != SOLO5_R_OK)
            return 4;
        expect(solo5_block_read(h, ~0ull - 511, scratch, 512),
                SOLO5_R_EINVAL, "offset overflow -> EINVAL");
    } else if (IS("blk_read_past_end")) {
        if (solo5_block_acquire("storage", &h, &info) != SOLO5_R_OK)
            return 4;
        expect(solo5_block_read(h, info.capacity, scratch, 512),
                SOLO5_R_EINVAL, "read past end -> EINVAL");
    } else if (IS("blk_read_straddle_end")) {
        if (solo5_block_acquire("storage", &h, &info) != SOLO5_R_OK)
            return 4;
        expect(solo5_block_read(h, info.capacity - 512, scratch, 1024),
                SOLO5_R_EINVAL, "read straddling end -> EINVAL");
    } else if (IS("blk_read_unaligned")) {
        if (solo5_block_acquire("storage", &h, &info) != SOLO5_R_OK)
            return 4;
        expect(solo5_block_read(h, 100, scratch, 512),
                SOLO5_R_EINVAL, "unaligned offset -> EINVAL");
    } else if (IS("blk_bad_handle")) {
        expect(solo5_block_read(12345, 0, scratch, 512), SOLO5_R_EINVAL,
                "bad handle -> EINVAL");
    } else if (IS("blk_acquire_bad_name")) {
        ba.name = mem_size + 100;
        hc_call(HC_BLOCK_ACQUIRE, &ba);
    } else if (IS("blk_acquire_name_at_end")) {
        /* Unterminated name in the last byte: must not read past the end. */
        volatile char *last = (volatile char *)(uintptr_t)(mem_size - 1);
        *last = 's';
        ba.name = mem_size - 1;
        ba.ret = 99;
        hc_call(HC_BLOCK_ACQUIRE, &ba);
        expect(ba.ret, HC_R_EINVAL, "unterminated name -> EINVAL");
    } else if (IS("net_read_oob_buf") || IS("net_write_oob_buf")) {
        nio.handle = 0; nio.data = mem_size - 10; nio.len = 1514;
        hc_call(IS("net_read_oob_buf") ? HC_NET_READ : HC_NET_WRITE, &nio);
    } else if (IS("net_acquire_bad_name")) {
        na.name = ~0ull;
        hc_call(HC_NET_ACQUIRE, &na);
    } else if (IS("unknown_hc")) {
        hc_raw(HC_MAX + 5, 0x100000);
    } else if (IS("wild_write")) {
        *(volatile uint32_t *)(uintptr_t)0x80000000u = 1;
    } else if (IS("null_deref")) {
        return *(volatile int *)(uintptr_t)0;
    } else if (IS("fuzz")) {
        uint64_t seed = 1;
        const char *s = cmdline_get(si->cmdline, "seed");
        if (s)
            parse_u64(s, &seed);
        tame = cmdline_get(si->cmdline, "tame") != NULL;
        fuzz(seed);
    } else {
        say("unknown case");
        return 2;
    }
    say("tender returned from a bad hypercall");
    return 42;
}
