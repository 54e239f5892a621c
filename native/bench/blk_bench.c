/*
 * Block-read benchmark of the study: N reads of B bytes with O_DIRECT at
 * increasing offsets (wrapping at the device's end), timed as one loop with
 * CLOCK_MONOTONIC. The same source runs on the host and inside Linux guests.
 *
 * Right before the timed loop it reads block 0 and writes the same bytes
 * back, untimed (so DEVICE is opened read-write): the monitors' counters
 * count only reads after the guest's last block write, which keeps firmware,
 * kernel and probe reads before the benchmark out of them.
 *
 * usage: blk_bench DEVICE READS BLOCK_SIZE [PROGRESS_S]
 * prints: RESULT blk reads=<N> block_size=<B> total_ns=<T>
 *
 * Progress: on stderr, `progress <done>/<N> reads` once at least PROGRESS_S
 * (default 10, 0 = never) seconds passed since the start or the last such
 * line. The clock is read only every 1024 reads, between reads, and the time
 * spent printing is left out of total_ns; none follows the last read.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* O_DIRECT needs the buffer aligned to the logical block size; a page
 * covers every device we meet. */
#define BUFFER_ALIGN 4096

/* A power of two, so the check is a mask; rare enough to cost nothing. */
#define PROGRESS_EVERY 1024
#define DEFAULT_PROGRESS_S 10

static int parse_count(const char *text, const char *what, uint64_t min,
                       uint64_t max, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    /* Digit first: strtoull would take " 5" and wrap "-1" around. */
    if (text[0] < '0' || text[0] > '9' || errno != 0 || *end != '\0' ||
        v < min || v > max) {
        fprintf(stderr, "blk_bench: %s must be an integer in %" PRIu64
                        "..%" PRIu64 ", got '%s'\n", what, min, max, text);
        return -1;
    }
    *out = v;
    return 0;
}

static uint64_t device_size(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return 0;
    if (S_ISBLK(st.st_mode)) {
        uint64_t bytes = 0;
        if (ioctl(fd, BLKGETSIZE64, &bytes) != 0)
            return 0;
        return bytes;
    }
    return (uint64_t)st.st_size;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    uint64_t reads, block_size, progress_s = DEFAULT_PROGRESS_S;
    if (argc != 4 && argc != 5) {
        fprintf(stderr,
                "usage: blk_bench DEVICE READS BLOCK_SIZE [PROGRESS_S]\n");
        return 2;
    }
    if (parse_count(argv[2], "READS", 1, UINT32_MAX, &reads) != 0 ||
        parse_count(argv[3], "BLOCK_SIZE", 1, 1u << 20, &block_size) != 0 ||
        (argc == 5 &&
         parse_count(argv[4], "PROGRESS_S", 0, 3600, &progress_s) != 0))
        return 2;
    if (block_size % 512 != 0) {
        fprintf(stderr, "blk_bench: BLOCK_SIZE must be a multiple of 512 for "
                        "O_DIRECT, got %" PRIu64 "\n", block_size);
        return 2;
    }

    int fd = open(argv[1], O_RDWR | O_DIRECT);
    if (fd < 0) {
        fprintf(stderr, "blk_bench: cannot open %s read-write with O_DIRECT: "
                        "%s\n",
                argv[1], strerror(errno));
        return 1;
    }
    uint64_t capacity = device_size(fd);
    if (capacity < block_size) {
        fprintf(stderr, "blk_bench: %s holds %" PRIu64 " bytes, less than one "
                        "block of %" PRIu64 "\n", argv[1], capacity, block_size);
        close(fd);
        return 1;
    }
    void *buf = NULL;
    if (posix_memalign(&buf, BUFFER_ALIGN, block_size) != 0) {
        fprintf(stderr, "blk_bench: out of memory\n");
        close(fd);
        return 1;
    }

    /* Mark the benchmark window (see above); the disk stays unchanged. */
    ssize_t n = pread(fd, buf, block_size, 0);
    const char *step = "setup read";
    if (n == (ssize_t)block_size) {
        n = pwrite(fd, buf, block_size, 0);
        step = "setup write";
    }
    if (n != (ssize_t)block_size) {
        fprintf(stderr, "blk_bench: %s of block 0 returned %zd: %s\n", step,
                n, n < 0 ? strerror(errno) : "short transfer");
        free(buf);
        close(fd);
        return 1;
    }

    uint64_t offset = 0;
    uint64_t progress_ns = progress_s * 1000000000ull;
    uint64_t printing_ns = 0; /* left out of total_ns */
    uint64_t start = now_ns();
    uint64_t last_progress = start;
    for (uint64_t i = 0; i < reads; i++) {
        /* Between reads and never after the last one (the loop ends). */
        if (progress_ns && i % PROGRESS_EVERY == 0 && i != 0) {
            uint64_t now = now_ns();
            if (now - last_progress >= progress_ns) {
                fprintf(stderr, "progress %" PRIu64 "/%" PRIu64 " reads\n",
                        i, reads);
                last_progress = now_ns();
                printing_ns += last_progress - now;
            }
        }
        ssize_t got = pread(fd, buf, block_size, (off_t)offset);
        if (got != (ssize_t)block_size) {
            fprintf(stderr, "blk_bench: read %" PRIu64 " at offset %" PRIu64
                            " returned %zd: %s\n", i, offset, got,
                    got < 0 ? strerror(errno) : "short read");
            free(buf);
            close(fd);
            return 1;
        }
        offset += block_size;
        if (offset + block_size > capacity)
            offset = 0;
    }
    uint64_t total = now_ns() - start - printing_ns;

    printf("RESULT blk reads=%" PRIu64 " block_size=%" PRIu64
           " total_ns=%" PRIu64 "\n", reads, block_size, total);
    fflush(stdout);
    free(buf);
    close(fd);
    return 0;
}
