/*
 * Test driver of native/bench/rtt_histogram.c: the Python test feeds it
 * samples and checks what it prints.
 *
 *   rtt_histogram_driver layout             -> buckets=B bytes=S
 *   rtt_histogram_driver buckets < values   -> "index value" per sample
 *   rtt_histogram_driver samples P.. < values
 *       -> n=N min=m max=M then pP=V for each percentile argument P
 *
 * Values are decimal nanoseconds, one per line.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rtt_histogram.h"

static int read_value(uint64_t *v)
{
    return scanf("%" SCNu64, v) == 1;
}

int main(int argc, char **argv)
{
    /* static: the histogram is 14 KiB, no need to put it on the stack */
    static struct rtt_hist h;

    if (argc == 2 && strcmp(argv[1], "layout") == 0) {
        printf("buckets=%d bytes=%zu\n", RTT_HIST_BUCKETS, sizeof(h));
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "buckets") == 0) {
        uint64_t v;
        while (read_value(&v)) {
            size_t b = rtt_hist_bucket(v);
            printf("%zu %" PRIu64 "\n", b, rtt_hist_bucket_value(b));
        }
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "samples") == 0) {
        uint64_t v;
        rtt_hist_init(&h);
        while (read_value(&v))
            rtt_hist_add(&h, v);
        printf("n=%" PRIu64 " min=%" PRIu64 " max=%" PRIu64, h.count,
               h.min_ns, h.max_ns);
        for (int i = 2; i < argc; i++) {
            unsigned pct = (unsigned)strtoul(argv[i], NULL, 10);
            printf(" p%s=%" PRIu64, argv[i], rtt_hist_percentile(&h, pct));
        }
        printf("\n");
        return 0;
    }
    fprintf(stderr, "usage: rtt_histogram_driver layout|buckets|samples P..\n");
    return 2;
}
