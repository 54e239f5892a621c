/*
 * lwIP system glue for a NO_SYS Solo5 guest: time, randomness, assertion
 * handler and the one libc function lwIP needs beyond util.c's.
 */
#include "lwip/opt.h"
#include "lwip/sys.h"

#include "solo5.h"
#include "solo5_util.h"
#include "lwip_solo5.h"

/* solo5_clock_monotonic is a hypercall (a VM exit): the main loop reads it
 * once per turn and lwIP's timer code reads the copy. */
static solo5_time_t now_ns;

void lwip_solo5_clock_update(void)
{
    now_ns = solo5_clock_monotonic();
}

solo5_time_t lwip_solo5_clock(void)
{
    return now_ns;
}

u32_t sys_now(void)
{
    /* Milliseconds, wrapping at 2^32 as lwIP's timer code expects. */
    return (u32_t)(now_ns / 1000000u);
}

/* xorshift64: enough for ports and initial sequence numbers of a test
 * guest; not for anything an attacker may predict. */
static uint64_t rand_state;

void lwip_solo5_rand_seed(uint64_t seed)
{
    rand_state = seed | 1u;   /* never zero, or xorshift stays at zero */
}

uint32_t lwip_solo5_rand(void)
{
    uint64_t x = rand_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rand_state = x;
    return (uint32_t)(x >> 32);
}

void lwip_solo5_assert(const char *msg, const char *file, int line)
{
    char buf[256];
    const size_t cap = sizeof buf - 1;     /* room for the newline */
    size_t n = str_append(buf, 0, cap, "lwIP assertion \"");
    n = str_append(buf, n, cap, msg);
    n = str_append(buf, n, cap, "\" failed at ");
    n = str_append(buf, n, cap, file);
    n = str_append(buf, n, cap, ":");
    n = u64_append(buf, n, cap, (uint64_t)line);
    buf[n++] = '\n';
    solo5_console_write(buf, n);
    solo5_abort();
}

/* netif.c parses interface numbers with atoi: decimal, optional sign. */
int atoi(const char *s)
{
    int sign = 1, v = 0;
    while (*s == ' ' || (*s >= '\t' && *s <= '\r'))
        s++;
    if (*s == '-' || *s == '+')
        sign = *s++ == '-' ? -1 : 1;
    while (*s >= '0' && *s <= '9')
        v = v * 10 + (*s++ - '0');
    return sign * v;
}
