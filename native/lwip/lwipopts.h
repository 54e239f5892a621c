/*
 * lwIP configuration of lwip_serve: a full IPv4 stack (ARP, ICMP, UDP, TCP)
 * in one single-threaded Solo5 guest. Everything not set here keeps
 * lwIP's default from src/include/lwip/opt.h.
 */
#ifndef LWIPOPTS_H
#define LWIPOPTS_H

/* No OS: one polling loop calls the stack and its timers. */
#define NO_SYS                      1
#define LWIP_TIMERS                 1
#define SYS_LIGHTWEIGHT_PROT        0
#define LWIP_SOCKET                 0
#define LWIP_NETCONN                0
#define LWIP_NETIF_API              0
#define LWIP_SINGLE_NETIF           1

/* Protocols: IPv4 with ARP and ICMP, and TCP and UDP so it is a whole stack. */
#define LWIP_IPV4                   1
#define LWIP_IPV6                   0
#define LWIP_ARP                    1
#define LWIP_ETHERNET               1
#define LWIP_ICMP                   1
#define LWIP_RAW                    0
#define LWIP_UDP                    1
#define LWIP_TCP                    1
#define LWIP_DHCP                   0
#define LWIP_AUTOIP                 0
#define LWIP_IGMP                   0
#define LWIP_DNS                    0
/* A reply waiting for ARP is held, not dropped. */
#define ARP_QUEUEING                1

/* Memory. Every buffer is 8-aligned: both targets are 64-bit. */
#define MEM_ALIGNMENT               8
#define MEM_SIZE                    (64 * 1024)
/* Two bytes before the Ethernet header align the IP header to 4. */
#define ETH_PAD_SIZE                2
/* One pool pbuf holds a whole 1514-byte frame (a 1472-byte ping), so a
 * received frame is read straight into one pbuf and an echo is answered
 * in place. */
#define PBUF_POOL_BUFSIZE           LWIP_MEM_ALIGN_SIZE(ETH_PAD_SIZE + 14 + 1500)
#define PBUF_POOL_SIZE              32
#define MEMP_NUM_PBUF               16
#define MEMP_NUM_UDP_PCB            4
#define MEMP_NUM_TCP_PCB            8
#define MEMP_NUM_TCP_PCB_LISTEN     4
#define MEMP_NUM_TCP_SEG            32

#define TCP_MSS                     1460
#define TCP_WND                     (4 * TCP_MSS)
#define TCP_SND_BUF                 (4 * TCP_MSS)
#define TCP_SND_QUEUELEN            (4 * TCP_SND_BUF / TCP_MSS)

/* linkoutput gets one pbuf per frame whenever lwIP can arrange it. */
#define LWIP_NETIF_TX_SINGLE_PBUF   1

/* Checksums in software, generated and checked (there is no offload). */
#define CHECKSUM_GEN_IP             1
#define CHECKSUM_GEN_UDP            1
#define CHECKSUM_GEN_TCP            1
#define CHECKSUM_GEN_ICMP           1
#define CHECKSUM_CHECK_IP           1
#define CHECKSUM_CHECK_UDP          1
#define CHECKSUM_CHECK_TCP          1
#define CHECKSUM_CHECK_ICMP         1
/* lwIP's 32-bit-word variant: fewest guest instructions per byte, which is
 * what costs on hosts that emulate guest kernel code. */
#define LWIP_CHKSUM_ALGORITHM       3

/* No statistics, no debug output. */
#define LWIP_STATS                  0
#define LWIP_STATS_DISPLAY          0

/* Randomness for ports and TCP sequence numbers (port.c). */
#define LWIP_RAND()                 lwip_solo5_rand()

#endif
