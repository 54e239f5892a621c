/*
 * Guest-side Solo5 API implemented as thin hypercall wrappers. All argument
 * checking that matters for isolation is done by the tender; the wrappers
 * only marshal arguments into fixed-layout structs on the stack.
 */
#include "solo5.h"
#include "solo5_hc.h"
#include "solo5_util.h"

void _solo5_start_c(const struct hc_bootinfo *bi) __attribute__((noreturn));

static struct solo5_start_info start_info;

/* Never let an out-of-range value alias SOLO5_R_OK via truncation. */
static inline solo5_result_t to_result(uint64_t r)
{
    return r <= HC_R_EUNSPEC ? (solo5_result_t)r : SOLO5_R_EUNSPEC;
}

void _solo5_start_c(const struct hc_bootinfo *bi)
{
    start_info.cmdline = (const char *)(uintptr_t)bi->cmdline;
    start_info.heap_start = (uintptr_t)bi->heap_start;
    start_info.heap_size = (size_t)bi->heap_size;
    solo5_exit(solo5_app_main(&start_info));
}

void solo5_exit(int status)
{
    struct hc_exit a = { .status = status };
    hc_call(HC_EXIT, &a);
    for (;;)
        ;   /* tender never resumes us after EXIT */
}

void solo5_abort(void)
{
    struct hc_exit a = { .status = 255 };
    hc_call(HC_ABORT, &a);
    for (;;)
        ;
}

void solo5_console_write(const char *buf, size_t size)
{
    struct hc_console_write a = { .data = (uintptr_t)buf, .len = size };
    hc_call(HC_CONSOLE_WRITE, &a);
}

solo5_time_t solo5_clock_monotonic(void)
{
    struct hc_clock a = { 0 };
    hc_call(HC_CLOCK_MONO, &a);
    return a.ns;
}

solo5_time_t solo5_clock_wall(void)
{
    struct hc_clock a = { 0 };
    hc_call(HC_CLOCK_WALL, &a);
    return a.ns;
}

void solo5_yield(solo5_time_t deadline, solo5_handle_set_t *ready_set)
{
    struct hc_yield a = { .deadline = deadline, .ready_set = 0 };
    hc_call(HC_YIELD, &a);
    if (ready_set)
        *ready_set = a.ready_set;
}

solo5_result_t solo5_set_tls_base(uintptr_t base)
{
    (void)base;
    return SOLO5_R_EUNSPEC;   /* guests here are single-threaded, no TLS */
}

solo5_result_t solo5_block_acquire(const char *name, solo5_handle_t *handle,
        struct solo5_block_info *info)
{
    struct hc_block_acquire a = { .name = (uintptr_t)name };
    hc_call(HC_BLOCK_ACQUIRE, &a);
    if (a.ret != HC_R_OK)
        return to_result(a.ret);
    *handle = a.handle;
    info->capacity = a.capacity;
    info->block_size = a.block_size;
    return SOLO5_R_OK;
}

solo5_result_t solo5_block_read(solo5_handle_t handle, solo5_off_t offset,
        uint8_t *buf, size_t size)
{
    struct hc_block_io a = {
        .handle = handle, .offset = offset,
        .data = (uintptr_t)buf, .len = size, .ret = HC_R_EUNSPEC
    };
    hc_call(HC_BLOCK_READ, &a);
    return to_result(a.ret);
}

solo5_result_t solo5_block_write(solo5_handle_t handle, solo5_off_t offset,
        const uint8_t *buf, size_t size)
{
    struct hc_block_io a = {
        .handle = handle, .offset = offset,
        .data = (uintptr_t)buf, .len = size, .ret = HC_R_EUNSPEC
    };
    hc_call(HC_BLOCK_WRITE, &a);
    return to_result(a.ret);
}

solo5_result_t solo5_net_acquire(const char *name, solo5_handle_t *handle,
        struct solo5_net_info *info)
{
    struct hc_net_acquire a = { .name = (uintptr_t)name };
    hc_call(HC_NET_ACQUIRE, &a);
    if (a.ret != HC_R_OK)
        return to_result(a.ret);
    *handle = a.handle;
    memcpy(info->mac_address, a.mac, SOLO5_NET_ALEN);
    info->mtu = (size_t)a.mtu;
    return SOLO5_R_OK;
}

solo5_result_t solo5_net_read(solo5_handle_t handle, uint8_t *buf,
        size_t size, size_t *read_size)
{
    struct hc_net_io a = {
        .handle = handle, .data = (uintptr_t)buf, .len = size,
        .ret = HC_R_EUNSPEC
    };
    hc_call(HC_NET_READ, &a);
    if (a.ret == HC_R_OK)
        *read_size = (size_t)a.read_len;
    return to_result(a.ret);
}

solo5_result_t solo5_net_write(solo5_handle_t handle, const uint8_t *buf,
        size_t size)
{
    struct hc_net_io a = {
        .handle = handle, .data = (uintptr_t)buf, .len = size,
        .ret = HC_R_EUNSPEC
    };
    hc_call(HC_NET_WRITE, &a);
    return to_result(a.ret);
}
