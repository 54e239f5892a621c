/*
 * Test guest for the tender's block-read accounting: runs the block
 * operations listed in cmdline "ops=OP,OP,..." on device "storage", so a
 * test knows exactly which reads fall before and after the last write.
 *   rN  N reads of block 0 (must succeed)
 *   wK  write pattern K (see pattern()) to block K, K >= 1 (must succeed)
 *   x   write at offset 1 (must fail with EINVAL: no syscall, no write)
 *   y   write to block 1 that must fail in the host's pwrite() (the test
 *       made the device read-only)
 *   e   read at offset 1 (must fail with EINVAL: no syscall)
 *   pS  print "ready" and sleep S seconds (the test acts meanwhile)
 *   t   read the last two blocks, which must fail (the test truncated the
 *       file to end inside them: a short pread, then EOF)
 *   f   issue a hypercall with its argument outside guest memory (fault)
 * Prints "done" and exits 0, or "FAIL <op>" and exits 3.
 */
#include "solo5.h"
#include "solo5_hc.h"
#include "solo5_util.h"

#define MAX_BLOCK 32768

static uint8_t buf[2 * MAX_BLOCK] __attribute__((aligned(MAX_BLOCK)));

/* Never zero, different in every block: a lost or misplaced write shows. */
static uint8_t pattern(uint64_t k, uint64_t i)
{
    return (uint8_t)((i * 13 + k * 31) % 255 + 1);
}

static void __attribute__((noreturn)) fail(char op)
{
    char msg[] = "FAIL ?\n";
    msg[5] = op;
    solo5_console_write(msg, sizeof msg - 1);
    solo5_exit(3);
}

int solo5_app_main(const struct solo5_start_info *si)
{
    solo5_handle_t h;
    struct solo5_block_info bi;
    const char *p = cmdline_get(si->cmdline, "ops");
    if (!p)
        fail('?');
    if (solo5_block_acquire("storage", &h, &bi) != SOLO5_R_OK ||
            bi.block_size > MAX_BLOCK)
        fail('a');
    size_t bs = (size_t)bi.block_size;

    while (*p && *p != ' ') {
        char op = *p++;
        uint64_t n = 0;
        while (*p >= '0' && *p <= '9')
            n = n * 10 + (uint64_t)(*p++ - '0');
        if (*p == ',')
            p++;
        switch (op) {
        case 'r':
            for (uint64_t i = 0; i < n; i++)
                if (solo5_block_read(h, 0, buf, bs) != SOLO5_R_OK)
                    fail(op);
            break;
        case 'w':
            if (n == 0 || (n + 1) * bs > bi.capacity)
                fail(op);
            for (size_t i = 0; i < bs; i++)
                buf[i] = pattern(n, i);
            if (solo5_block_write(h, n * bs, buf, bs) != SOLO5_R_OK)
                fail(op);
            break;
        case 'x':
            if (solo5_block_write(h, 1, buf, bs) != SOLO5_R_EINVAL)
                fail(op);
            break;
        case 'y':
            if (solo5_block_write(h, bs, buf, bs) != SOLO5_R_EUNSPEC)
                fail(op);
            break;
        case 'e':
            if (solo5_block_read(h, 1, buf, bs) != SOLO5_R_EINVAL)
                fail(op);
            break;
        case 'p':
            puts_console("ready\n");
            solo5_yield(solo5_clock_monotonic() + n * 1000000000ull, NULL);
            break;
        case 't':
            if (solo5_block_read(h, bi.capacity - 2 * bs, buf, 2 * bs) !=
                    SOLO5_R_EUNSPEC)
                fail(op);
            break;
        case 'f':
            hc_raw(HC_CLOCK_MONO, 0xfffffff0u);
            fail(op);
        default:
            fail(op);
        }
    }
    puts_console("done\n");
    return 0;
}
