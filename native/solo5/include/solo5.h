/*
 * Public guest API, names and semantics following the upstream Solo5 v0.9
 * interface so that the same application source builds against either.
 * Freestanding: only <stddef.h>, <stdint.h>, <stdbool.h> (compiler-provided).
 */
#ifndef SOLO5_H_INCLUDED
#define SOLO5_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    SOLO5_R_OK,       /* success */
    SOLO5_R_AGAIN,    /* try again (e.g. no packet pending) */
    SOLO5_R_EINVAL,   /* invalid argument */
    SOLO5_R_EUNSPEC   /* unspecified error */
} solo5_result_t;

typedef uint64_t solo5_time_t;      /* nanoseconds */
typedef uint64_t solo5_handle_t;    /* device handle */
typedef uint64_t solo5_handle_set_t;/* bit i set <=> handle i */
typedef uint64_t solo5_off_t;       /* byte offset into a block device */

struct solo5_start_info {
    const char *cmdline;
    uintptr_t heap_start;
    size_t heap_size;
};

/* Application entry point; its return value becomes the exit status. */
int solo5_app_main(const struct solo5_start_info *info);

void solo5_exit(int status) __attribute__((noreturn));
void solo5_abort(void) __attribute__((noreturn));

void solo5_console_write(const char *buf, size_t size);

solo5_time_t solo5_clock_monotonic(void);
solo5_time_t solo5_clock_wall(void);

/*
 * Suspend until monotonic time reaches deadline or some device handle has
 * pending input. On return *ready_set (if non-NULL) holds the ready handles.
 */
void solo5_yield(solo5_time_t deadline, solo5_handle_set_t *ready_set);

/* TLS is not used by this platform's guests; provided for API parity. */
solo5_result_t solo5_set_tls_base(uintptr_t base);

/* Networking */
#define SOLO5_NET_ALEN 6
#define SOLO5_NET_HLEN 14

struct solo5_net_info {
    uint8_t mac_address[SOLO5_NET_ALEN];
    size_t mtu;                 /* excluding the Ethernet header */
};

solo5_result_t solo5_net_acquire(const char *name, solo5_handle_t *handle,
        struct solo5_net_info *info);
/* Returns SOLO5_R_AGAIN if nothing is pending. */
solo5_result_t solo5_net_read(solo5_handle_t handle, uint8_t *buf,
        size_t size, size_t *read_size);
solo5_result_t solo5_net_write(solo5_handle_t handle, const uint8_t *buf,
        size_t size);

/* Block devices */
struct solo5_block_info {
    solo5_off_t capacity;       /* bytes */
    solo5_off_t block_size;     /* bytes */
};

solo5_result_t solo5_block_acquire(const char *name, solo5_handle_t *handle,
        struct solo5_block_info *info);
/* offset and size must be multiples of block_size and inside the device. */
solo5_result_t solo5_block_write(solo5_handle_t handle, solo5_off_t offset,
        const uint8_t *buf, size_t size);
solo5_result_t solo5_block_read(solo5_handle_t handle, solo5_off_t offset,
        uint8_t *buf, size_t size);

#endif
