/*
 * Our glue between lwIP and the Solo5 API (port.c, netif_solo5.c).
 */
#ifndef LWIP_SOLO5_H
#define LWIP_SOLO5_H

#include "lwip/err.h"
#include "lwip/netif.h"
#include "solo5.h"

/* Time: sys_now() returns the copy taken by the last update, so that one
 * hypercall per loop turn serves every timer check. */
void lwip_solo5_clock_update(void);
solo5_time_t lwip_solo5_clock(void);
void lwip_solo5_rand_seed(uint64_t seed);

/* Per-netif state: the Solo5 device behind it. */
struct lwip_solo5_net {
    solo5_handle_t handle;
    struct solo5_net_info info;
    uint64_t rx_dropped;    /* frames read but not given to lwIP (no pbuf) */
};

/* netif_add() init callback; netif->state must point to a filled-in
 * struct lwip_solo5_net. */
err_t lwip_solo5_netif_init(struct netif *netif);
/* Read every pending frame into pbufs and hand each to netif->input;
 * returns the number read. */
unsigned lwip_solo5_netif_poll(struct netif *netif);

#endif
