/*
 * The stdlib.h lwIP includes (netif.c, for atoi), for a guest without a
 * libc: atoi comes from port.c.
 */
#ifndef LWIP_SOLO5_STDLIB_H
#define LWIP_SOLO5_STDLIB_H

int atoi(const char *s);

#endif
