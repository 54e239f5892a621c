/* Round-trip-time histogram of icmp_bench: see rtt_histogram.h. */
#include "rtt_histogram.h"

#include <string.h>

void rtt_hist_init(struct rtt_hist *h)
{
    memset(h, 0, sizeof(*h));
}

size_t rtt_hist_bucket(uint64_t ns)
{
    if (ns < (UINT64_C(1) << RTT_HIST_MIN_EXP))
        return 0; /* clamp: below the first group */
    if (ns >> (RTT_HIST_MAX_EXP + 1))
        return RTT_HIST_BUCKETS - 1; /* clamp: past the last group */
    /* ns != 0 here, so clzll is defined; e is 6..33. */
    unsigned e = 63u - (unsigned)__builtin_clzll(ns);
    /* The 6 bits below the leading one pick the bucket in the group. */
    uint64_t sub = (ns >> (e - RTT_HIST_SUB_BITS)) - RTT_HIST_SUB;
    return (size_t)(e - RTT_HIST_MIN_EXP) * RTT_HIST_SUB + (size_t)sub;
}

uint64_t rtt_hist_bucket_value(size_t bucket)
{
    if (bucket >= RTT_HIST_BUCKETS)
        bucket = RTT_HIST_BUCKETS - 1;
    unsigned e = RTT_HIST_MIN_EXP + (unsigned)(bucket / RTT_HIST_SUB);
    uint64_t width = UINT64_C(1) << (e - RTT_HIST_SUB_BITS);
    uint64_t low = (RTT_HIST_SUB + bucket % RTT_HIST_SUB) * width;
    /* The midpoint halves the worst error; 1-ns buckets are exact. */
    return low + width / 2;
}

void rtt_hist_add(struct rtt_hist *h, uint64_t ns)
{
    if (h->count == 0 || ns < h->min_ns)
        h->min_ns = ns;
    if (ns > h->max_ns)
        h->max_ns = ns;
    h->count++;
    h->buckets[rtt_hist_bucket(ns)]++;
}

/*
 * Definition: the pct-th percentile of n samples is the representative value
 * of the bucket holding the ceil(pct * n / 100)-th smallest sample (at least
 * the 1st), clamped to [min_ns, max_ns]. That sample lies in [min, max], so
 * the clamp never moves the result away from it, and the result is
 * monotonic in pct (p50 <= p90 <= p99).
 */
uint64_t rtt_hist_percentile(const struct rtt_hist *h, unsigned pct)
{
    if (h->count == 0)
        return 0;
    if (pct > 100)
        pct = 100;
    /* ceil(pct * n / 100) without overflowing pct * n for any n. */
    uint64_t n = h->count;
    uint64_t rank = n / 100 * pct + ((n % 100) * pct + 99) / 100;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (size_t b = 0; b < RTT_HIST_BUCKETS; b++) {
        seen += h->buckets[b];
        if (seen >= rank) {
            uint64_t v = rtt_hist_bucket_value(b);
            if (v < h->min_ns)
                return h->min_ns;
            return v > h->max_ns ? h->max_ns : v;
        }
    }
    return h->max_ns; /* unreachable while count is the buckets' sum */
}
