/*
 * Freestanding libc subset. Built with -fno-tree-loop-distribute-patterns
 * so GCC does not turn these loops back into calls to themselves.
 */
#include "solo5.h"
#include "solo5_util.h"

void *memcpy(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    if (d == s || n == 0)
        return dst;
    if ((uintptr_t)d < (uintptr_t)s) {
        while (n--)
            *d++ = *s++;
    } else {
        while (n--)
            d[n] = s[n];
    }
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    uint8_t *d = dst;
    while (n--)
        *d++ = (uint8_t)c;
    return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

int strncmp(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i] != b[i])
            return (unsigned char)a[i] < (unsigned char)b[i] ? -1 : 1;
        if (a[i] == '\0')
            return 0;
    }
    return 0;
}

size_t u64_to_dec(uint64_t v, char *buf)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

size_t str_append(char *buf, size_t len, size_t cap, const char *s)
{
    while (*s && len < cap)
        buf[len++] = *s++;
    return len;
}

size_t u64_append(char *buf, size_t len, size_t cap, uint64_t v)
{
    char tmp[20];
    size_t n = u64_to_dec(v, tmp);
    for (size_t i = 0; i < n && len < cap; i++)
        buf[len++] = tmp[i];
    return len;
}

void puts_console(const char *s)
{
    solo5_console_write(s, strlen(s));
}

static int is_end(char c)
{
    return c == '\0' || c == ' ' || c == '\t' || c == '\n';
}

const char *cmdline_get(const char *cmdline, const char *key)
{
    size_t klen = strlen(key);
    const char *p = cmdline;
    if (!p)
        return NULL;
    while (*p) {
        while (*p && is_end(*p))
            p++;
        if (!*p)
            break;
        if (strncmp(p, key, klen) == 0 && p[klen] == '=')
            return p + klen + 1;
        while (*p && !is_end(*p))
            p++;
    }
    return NULL;
}

int parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!s || is_end(*s))
        return -1;
    for (; !is_end(*s); s++) {
        if (*s < '0' || *s > '9')
            return -1;
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;   /* overflow */
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int parse_ipv4(const char *s, uint8_t out[4])
{
    for (int i = 0; i < 4; i++) {
        unsigned v = 0, digits = 0;
        while (*s >= '0' && *s <= '9') {
            v = v * 10 + (unsigned)(*s - '0');
            if (++digits > 3 || v > 255)
                return -1;
            s++;
        }
        if (digits == 0)
            return -1;
        out[i] = (uint8_t)v;
        if (i < 3) {
            if (*s != '.')
                return -1;
            s++;
        }
    }
    return is_end(*s) ? 0 : -1;
}
