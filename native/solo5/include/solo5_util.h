/*
 * Tiny freestanding helpers for guests (no libc on this platform).
 * Not part of the upstream Solo5 API; apps needing portability to upstream
 * should carry their own copies.
 */
#ifndef SOLO5_UTIL_H
#define SOLO5_UTIL_H

#include <stddef.h>
#include <stdint.h>

void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);

/* Format v in decimal into buf (no NUL); returns number of chars (<= 20). */
size_t u64_to_dec(uint64_t v, char *buf);

/* Append helpers on a bounded buffer; return new length, never overflow. */
size_t str_append(char *buf, size_t len, size_t cap, const char *s);
size_t u64_append(char *buf, size_t len, size_t cap, uint64_t v);

/* Write a NUL-terminated string to the console. */
void puts_console(const char *s);

/*
 * Find "key=" as a whitespace-separated word in cmdline; returns pointer to
 * the value (terminated by space or NUL) or NULL.
 */
const char *cmdline_get(const char *cmdline, const char *key);
/* Parse decimal up to space/NUL; returns 0 on success. */
int parse_u64(const char *s, uint64_t *out);
/* Parse dotted IPv4 up to space/NUL into network-order bytes. */
int parse_ipv4(const char *s, uint8_t out[4]);

#endif
