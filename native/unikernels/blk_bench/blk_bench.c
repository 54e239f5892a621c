/*
 * blk_bench: time N single-block reads through the Solo5 block API.
 * cmdline: reads=N (default 100000), misalign=K (default 0: offset the
 * buffer by K bytes; unless K is a multiple of the device's O_DIRECT memory
 * alignment, the tender's O_DIRECT reads then go through its bounce buffer).
 * Prints: RESULT blk reads=<N> block_size=<B> total_ns=<T>
 *
 * Right before the timed loop it reads block 0 and writes the same bytes
 * back, untimed: every monitor of the study counts only the reads after the
 * guest's last block write, which keeps firmware, kernel and probe reads
 * before the benchmark out of its pread counters. Nothing is written after.
 */
#include "solo5.h"
#include "solo5_util.h"

/* Largest block size a tender may report (--block-sector-size). */
#define MAX_BLOCK 32768

static uint8_t buf[2 * MAX_BLOCK] __attribute__((aligned(MAX_BLOCK)));

static void __attribute__((noreturn)) fail(const char *msg)
{
    puts_console("blk_bench: ");
    puts_console(msg);
    puts_console("\n");
    solo5_exit(1);
}

int solo5_app_main(const struct solo5_start_info *si)
{
    uint64_t reads = 100000, misalign = 0;
    const char *v;

    if ((v = cmdline_get(si->cmdline, "reads")) && parse_u64(v, &reads) != 0)
        fail("bad reads= value");
    if ((v = cmdline_get(si->cmdline, "misalign")) &&
            (parse_u64(v, &misalign) != 0 || misalign >= MAX_BLOCK))
        fail("bad misalign= value");

    solo5_handle_t h;
    struct solo5_block_info bi;
    if (solo5_block_acquire("storage", &h, &bi) != SOLO5_R_OK)
        fail("cannot acquire block device 'storage'");
    if (bi.block_size == 0 || bi.block_size > MAX_BLOCK)
        fail("unsupported block size");
    if (bi.capacity < bi.block_size)
        fail("device smaller than one block");

    uint8_t *b = buf + misalign;
    /* Mark the benchmark window (see above); the disk stays unchanged. */
    if (solo5_block_read(h, 0, b, bi.block_size) != SOLO5_R_OK)
        fail("setup read of block 0 failed");
    if (solo5_block_write(h, 0, b, bi.block_size) != SOLO5_R_OK)
        fail("setup write of block 0 failed");

    /* Running byte offset (no multiply in the loop: guest code is cheap on
     * real hardware but emulated instruction-by-instruction on some hosts). */
    uint64_t end = bi.capacity - bi.capacity % bi.block_size;
    uint64_t off = 0;

    /* Each read is a hypercall (volatile asm), so the loop can't be elided
     * although nothing uses the data. */
    solo5_time_t t0 = solo5_clock_monotonic();
    for (uint64_t i = 0; i < reads; i++) {
        if (solo5_block_read(h, off, b, bi.block_size) != SOLO5_R_OK)
            fail("block read failed");
        off += bi.block_size;
        if (off == end)
            off = 0;    /* wrap at capacity */
    }
    solo5_time_t t1 = solo5_clock_monotonic();

    char line[128];
    size_t n = 0;
    n = str_append(line, n, sizeof line, "RESULT blk reads=");
    n = u64_append(line, n, sizeof line, reads);
    n = str_append(line, n, sizeof line, " block_size=");
    n = u64_append(line, n, sizeof line, bi.block_size);
    n = str_append(line, n, sizeof line, " total_ns=");
    n = u64_append(line, n, sizeof line, t1 - t0);
    n = str_append(line, n, sizeof line, "\n");
    solo5_console_write(line, n);
    return 0;
}
