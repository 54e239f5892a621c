/*
 * An lwIP Ethernet netif over a Solo5 NET_BASIC device.
 */
#include "lwip/opt.h"
#include "lwip/etharp.h"
#include "lwip/pbuf.h"
#include "netif/ethernet.h"

#include "solo5.h"
#include "lwip_solo5.h"

/* Largest frame lwIP can hold: a pbuf's length is 16 bits, pad included. */
#define MAX_FRAME (0xffff - ETH_PAD_SIZE)

/* For frames that do not fit one pool pbuf: solo5_net_read and
 * solo5_net_write need contiguous memory. */
static uint8_t bounce[MAX_FRAME];

static err_t linkoutput(struct netif *netif, struct pbuf *p)
{
    struct lwip_solo5_net *net = netif->state;
    const uint8_t *frame;
    solo5_result_t r;

#if ETH_PAD_SIZE
    pbuf_remove_header(p, ETH_PAD_SIZE);
#endif
    if (p->tot_len > net->info.mtu + SOLO5_NET_HLEN) {
        r = SOLO5_R_EINVAL;
    } else {
        if (p->next == NULL) {
            /* One pbuf (the usual case, e.g. an echo reply built in the
             * request's pbuf): no copy needed. */
            frame = p->payload;
        } else {
            pbuf_copy_partial(p, bounce, p->tot_len, 0);
            frame = bounce;
        }
        r = solo5_net_write(net->handle, frame, p->tot_len);
    }
#if ETH_PAD_SIZE
    pbuf_add_header(p, ETH_PAD_SIZE);
#endif
    return r == SOLO5_R_OK ? ERR_OK : ERR_IF;
}

err_t lwip_solo5_netif_init(struct netif *netif)
{
    struct lwip_solo5_net *net = netif->state;

    netif->name[0] = 's';
    netif->name[1] = '5';
    netif->output = etharp_output;
    netif->linkoutput = linkoutput;
    /* The MTU excludes the Ethernet header, as in struct solo5_net_info. */
    netif->mtu = net->info.mtu > 65535 ? 65535 : (u16_t)net->info.mtu;
    netif->hwaddr_len = ETH_HWADDR_LEN;
    for (int i = 0; i < ETH_HWADDR_LEN; i++)
        netif->hwaddr[i] = net->info.mac_address[i];
    netif->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP |
        NETIF_FLAG_ETHERNET;
    return ERR_OK;
}

unsigned lwip_solo5_netif_poll(struct netif *netif)
{
    struct lwip_solo5_net *net = netif->state;
    size_t frame_max = net->info.mtu + SOLO5_NET_HLEN;
    unsigned frames = 0;

    if (frame_max > MAX_FRAME)
        frame_max = MAX_FRAME;
    for (;;) {
        size_t len;
        solo5_result_t r;
        struct pbuf *p = pbuf_alloc(PBUF_RAW, (u16_t)(frame_max + ETH_PAD_SIZE),
                                    PBUF_POOL);
        if (p != NULL && p->next == NULL) {
            /* Read straight into the pbuf, after the pad. */
            r = solo5_net_read(net->handle, (uint8_t *)p->payload + ETH_PAD_SIZE,
                               frame_max, &len);
        } else {
            r = solo5_net_read(net->handle, bounce, frame_max, &len);
            if (r == SOLO5_R_OK && p != NULL)
                pbuf_take_at(p, bounce, (u16_t)len, ETH_PAD_SIZE);
        }
        if (r != SOLO5_R_OK) {
            /* SOLO5_R_AGAIN: nothing left to read. */
            if (p != NULL)
                pbuf_free(p);
            break;
        }
        frames++;
        if (p == NULL) {
            net->rx_dropped++;      /* out of pbufs: the frame is lost */
            continue;
        }
        pbuf_realloc(p, (u16_t)(len + ETH_PAD_SIZE));
        if (netif->input(p, netif) != ERR_OK)
            pbuf_free(p);
    }
    return frames;
}
