/*
 * lwIP arch port for Solo5 guests: freestanding (no libc headers beyond the
 * compiler's own stddef.h/stdint.h and our string.h/stdlib.h shims), GCC.
 */
#ifndef LWIP_ARCH_CC_H
#define LWIP_ARCH_CC_H

#include <stddef.h>
#include <stdint.h>

/* The compiler provides stddef.h and stdint.h; nothing else from a libc. */
#define LWIP_NO_INTTYPES_H  1
#define LWIP_NO_LIMITS_H    1
#define LWIP_NO_CTYPE_H     1
#define LWIP_NO_UNISTD_H    1

/* With SSIZE_MAX defined, arch.h takes ssize_t as given instead of using
 * INT_MAX (limits.h is not included). */
typedef __PTRDIFF_TYPE__ ssize_t;
#define SSIZE_MAX __PTRDIFF_MAX__

/* printf formats, only used by debug output (off), for both LP64 targets. */
#define X8_F  "02x"
#define U16_F "hu"
#define S16_F "hd"
#define X16_F "hx"
#define U32_F "u"
#define S32_F "d"
#define X32_F "x"
#define SZT_F "zu"

#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define BYTE_ORDER BIG_ENDIAN
#else
#define BYTE_ORDER LITTLE_ENDIAN
/* One instruction instead of lwIP's shifts and masks. */
#define lwip_htons(x) ((u16_t)__builtin_bswap16((u16_t)(x)))
#define lwip_htonl(x) ((u32_t)__builtin_bswap32((u32_t)(x)))
#endif

void lwip_solo5_assert(const char *msg, const char *file, int line)
    __attribute__((noreturn));
uint32_t lwip_solo5_rand(void);

/* No console formatting: debug messages are dropped (LWIP_DEBUG is off). */
#define LWIP_PLATFORM_DIAG(x) do { } while (0)
#define LWIP_PLATFORM_ASSERT(x) lwip_solo5_assert((x), __FILE__, __LINE__)

#endif
