/*
 * Round-trip-time histogram of icmp_bench: a fixed number of buckets, so the
 * percentiles come from the run's own samples in memory that does not grow
 * with --count.
 *
 * Log-linear buckets: each power of two [2^e, 2^(e+1)) ns, e = 6 .. 33, is
 * split into 64 equal buckets, covering 64 ns to 2^34 - 1 ns (about 17.2 s)
 * in 28 * 64 = 1792 buckets (14 KiB of counters). A bucket is at most 1/64 of
 * its lower bound wide and is represented by its midpoint, so the value
 * reported for a sample is within 1/128 (0.79 %) of it. Samples below 64 ns
 * count in the first bucket and samples of 2^34 ns or more in the last one;
 * only those lose that bound, and clamping to [min, max] (below) limits it.
 */
#ifndef RTT_HISTOGRAM_H
#define RTT_HISTOGRAM_H

#include <stddef.h>
#include <stdint.h>

/* 64 buckets per power of two: the width is 1/64 of the group's start. */
#define RTT_HIST_SUB_BITS 6
#define RTT_HIST_SUB (1u << RTT_HIST_SUB_BITS)
/* The first group starts at 2^6 = 64 ns, where buckets are exactly 1 ns
 * wide: a lower group would need buckets narrower than the clock's unit. */
#define RTT_HIST_MIN_EXP RTT_HIST_SUB_BITS
/* The last group is [2^33, 2^34) ns, about 8.6 s to 17.2 s. */
#define RTT_HIST_MAX_EXP 33
#define RTT_HIST_BUCKETS                                                      \
    ((RTT_HIST_MAX_EXP - RTT_HIST_MIN_EXP + 1) * RTT_HIST_SUB)

struct rtt_hist {
    uint64_t count, min_ns, max_ns; /* min and max are exact, not bucketed */
    uint64_t buckets[RTT_HIST_BUCKETS];
};

void rtt_hist_init(struct rtt_hist *h);
void rtt_hist_add(struct rtt_hist *h, uint64_t ns);
/* The pct-th percentile (pct 0..100, larger counts as 100); 0 if empty. */
uint64_t rtt_hist_percentile(const struct rtt_hist *h, unsigned pct);

/* The bucket of a sample and a bucket's representative value (tests). */
size_t rtt_hist_bucket(uint64_t ns);
uint64_t rtt_hist_bucket_value(size_t bucket);

#endif
