/*
 * lwip_serve: the lwIP TCP/IP stack on net device "service". lwIP itself
 * answers ARP and ICMP echo (and refuses TCP/UDP to closed ports); this
 * file only feeds it frames and runs its timers.
 * cmdline: ip=A.B.C.D (default 10.0.0.2), netmask 255.255.255.0.
 */
#include "lwip/init.h"
#include "lwip/ip4_addr.h"
#include "lwip/netif.h"
#include "lwip/timeouts.h"
#include "netif/ethernet.h"

#include "solo5.h"
#include "solo5_util.h"
#include "lwip_solo5.h"

/* Longest sleep between timer checks when lwIP has no timeout pending. */
#define MAX_SLEEP_MS 100u

static struct netif netif;
static struct lwip_solo5_net net;

int solo5_app_main(const struct solo5_start_info *si)
{
    uint8_t ip[4] = { 10, 0, 0, 2 };
    const char *v = cmdline_get(si->cmdline, "ip");
    ip4_addr_t addr, mask, gw;

    if (v && parse_ipv4(v, ip) != 0) {
        puts_console("lwip_serve: bad ip= value\n");
        return 1;
    }
    if (solo5_net_acquire("service", &net.handle, &net.info) != SOLO5_R_OK) {
        puts_console("lwip_serve: cannot acquire net device 'service'\n");
        return 1;
    }
    lwip_solo5_clock_update();
    lwip_solo5_rand_seed(lwip_solo5_clock());
    lwip_init();

    IP4_ADDR(&addr, ip[0], ip[1], ip[2], ip[3]);
    IP4_ADDR(&mask, 255, 255, 255, 0);
    ip4_addr_set_zero(&gw);
    if (netif_add(&netif, &addr, &mask, &gw, &net, lwip_solo5_netif_init,
                  ethernet_input) == NULL) {
        puts_console("lwip_serve: netif_add failed\n");
        return 1;
    }
    netif_set_default(&netif);
    netif_set_up(&netif);
    netif_set_link_up(&netif);
    puts_console("lwip_serve: ready\n");

    solo5_time_t deadline = lwip_solo5_clock() + MAX_SLEEP_MS * 1000000ull;
    for (;;) {
        solo5_handle_set_t ready = 0;
        solo5_yield(deadline, &ready);
        /* One clock read per turn serves the input and the timers. */
        lwip_solo5_clock_update();
        if (ready & (1ull << net.handle))
            lwip_solo5_netif_poll(&netif);
        sys_check_timeouts();
        u32_t sleep_ms = sys_timeouts_sleeptime();
        if (sleep_ms > MAX_SLEEP_MS)
            sleep_ms = MAX_SLEEP_MS;
        deadline = lwip_solo5_clock() + (solo5_time_t)sleep_ms * 1000000ull;
    }
}
