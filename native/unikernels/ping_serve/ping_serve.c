/*
 * ping_serve: answers ARP requests for its IPv4 address and ICMPv4 echo
 * requests addressed to it on net device "service"; ignores everything
 * else. cmdline: ip=A.B.C.D (default 10.0.0.2).
 */
#include "solo5.h"
#include "solo5_util.h"

#define ETH_HLEN 14
#define ETHTYPE_ARP 0x0806
#define ETHTYPE_IP  0x0800
#define MAX_FRAME (65535 + ETH_HLEN)

static uint8_t frame[MAX_FRAME];
static uint8_t my_mac[6];
static uint8_t my_ip[4];
static solo5_handle_t net;

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/*
 * RFC 1071 ones'-complement checksum, four bytes per step. The sum does not
 * depend on byte order, so native-order loads need one swap at the end.
 * Few guest instructions per byte matter here: some hosts emulate guest
 * kernel-mode code instruction by instruction.
 */
static uint16_t inet_csum(const uint8_t *p, size_t len)
{
    uint64_t sum = 0;
    uint32_t word;
    uint16_t half;
    while (len >= 4) {
        memcpy(&word, p, 4);
        sum += word;
        p += 4;
        len -= 4;
    }
    if (len >= 2) {
        memcpy(&half, p, 2);
        sum += half;
        p += 2;
        len -= 2;
    }
    if (len) {
        const uint8_t last[2] = { p[0], 0 };
        memcpy(&half, last, 2);
        sum += half;
    }
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    uint16_t folded = (uint16_t)~sum;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    folded = __builtin_bswap16(folded);
#endif
    return folded;
}

/* RFC 1624: the checksum after one 16-bit word changed from old to new. */
static uint16_t csum_update(uint16_t csum, uint16_t old, uint16_t new)
{
    uint32_t sum = (uint16_t)~csum + (uint32_t)(uint16_t)~old + new;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static void handle_arp(uint8_t *f, size_t len)
{
    uint8_t *a = f + ETH_HLEN;
    if (len < ETH_HLEN + 28)
        return;
    /* Ethernet/IPv4 request for our address only. */
    if (get16(a) != 1 || get16(a + 2) != ETHTYPE_IP || a[4] != 6 ||
            a[5] != 4 || get16(a + 6) != 1 || memcmp(a + 24, my_ip, 4) != 0)
        return;
    memcpy(a + 18, a + 8, 6);       /* THA := requester's SHA */
    memcpy(a + 24, a + 14, 4);      /* TPA := requester's SPA */
    memcpy(a + 8, my_mac, 6);       /* SHA := us */
    memcpy(a + 14, my_ip, 4);       /* SPA := us */
    put16(a + 6, 2);                /* reply */
    memcpy(f, a + 18, 6);           /* eth dst := requester */
    memcpy(f + 6, my_mac, 6);
    solo5_net_write(net, f, ETH_HLEN + 28);
}

static void handle_ip(uint8_t *f, size_t len)
{
    uint8_t *ip = f + ETH_HLEN;
    if (len < ETH_HLEN + 20)
        return;
    size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
    size_t tot = get16(ip + 2);
    if ((ip[0] >> 4) != 4 || ihl < 20 || tot < ihl + 8 ||
            tot > len - ETH_HLEN)
        return;
    if (inet_csum(ip, ihl) != 0)
        return;                         /* corrupt header */
    if (ip[9] != 1 || memcmp(ip + 16, my_ip, 4) != 0)
        return;                         /* not ICMP to us */
    if ((get16(ip + 6) & 0x3fff) != 0)
        return;                         /* fragments: not handled */
    uint8_t *icmp = ip + ihl;
    /* The ICMP checksum is not verified, as that would sum the payload:
     * the incremental update below keeps a corrupt request's checksum
     * wrong in the reply, which icmp_bench then counts as corrupt (lost,
     * never timed). Touching every payload byte is what costs most on
     * hosts that emulate guest kernel code. */
    if (icmp[0] != 8 || icmp[1] != 0)
        return;                         /* not an echo request */

    uint8_t tmp[6];
    memcpy(tmp, f, 6);                  /* swap MACs */
    memcpy(f, f + 6, 6);
    memcpy(f + 6, tmp, 6);
    memcpy(ip + 16, ip + 12, 4);        /* dst := src, src := us */
    memcpy(ip + 12, my_ip, 4);
    ip[8] = 64;                         /* fresh TTL */
    put16(ip + 10, 0);
    put16(ip + 10, inet_csum(ip, ihl));
    /* Only the type changes (8 -> 0): update the checksum, don't resum the payload. */
    put16(icmp + 2, csum_update(get16(icmp + 2), get16(icmp), 0x0000));
    icmp[0] = 0;                        /* echo reply */
    /* Trailing Ethernet padding beyond tot is not echoed. */
    solo5_net_write(net, f, ETH_HLEN + tot);
}

int solo5_app_main(const struct solo5_start_info *si)
{
    struct solo5_net_info ni;
    const char *v = cmdline_get(si->cmdline, "ip");
    my_ip[0] = 10; my_ip[1] = 0; my_ip[2] = 0; my_ip[3] = 2;
    if (v && parse_ipv4(v, my_ip) != 0) {
        puts_console("ping_serve: bad ip= value\n");
        return 1;
    }
    if (solo5_net_acquire("service", &net, &ni) != SOLO5_R_OK) {
        puts_console("ping_serve: cannot acquire net device 'service'\n");
        return 1;
    }
    if (ni.mtu + ETH_HLEN > sizeof frame) {
        puts_console("ping_serve: MTU too large\n");
        return 1;
    }
    memcpy(my_mac, ni.mac_address, 6);
    puts_console("ping_serve: ready\n");

    size_t bufsz = ni.mtu + ETH_HLEN;
    for (;;) {
        solo5_handle_set_t ready = 0;
        solo5_yield(solo5_clock_monotonic() + 1000000000ull, &ready);
        if (!(ready & (1ull << net)))
            continue;
        for (;;) {
            size_t len;
            solo5_result_t r = solo5_net_read(net, frame, bufsz, &len);
            if (r != SOLO5_R_OK)
                break;      /* AGAIN: drained */
            if (len < ETH_HLEN)
                continue;
            uint16_t type = get16(frame + 12);
            if (type == ETHTYPE_ARP)
                handle_arp(frame, len);
            else if (type == ETHTYPE_IP)
                handle_ip(frame, len);
        }
    }
}
