/*
 * Hypercall ABI shared by the guest bindings and the tender.
 *
 * Every hypercall passes ONE 32-bit value: the guest-physical address of an
 * argument struct. All guest memory (and thus every argument struct) lies
 * below HC_GUEST_MEM_MAX, so 32 bits suffice and the value fits in the KVM
 * exit data without a KVM_GET_REGS round trip.
 *
 *   x86_64:  outl %eax, $(HC_PIO_BASE + nr)       -> KVM_EXIT_IO
 *   aarch64: str w, [HC_MMIO_BASE + nr * 8]       -> KVM_EXIT_MMIO
 *
 * All struct fields are fixed-width so the layout is identical on both sides
 * regardless of compiler flags. Pointers are guest-physical addresses.
 */
#ifndef HC_ABI_H
#define HC_ABI_H

#include <stdint.h>

#define HC_PIO_BASE      0x500u
#define HC_MMIO_BASE     0xfffff000u
#define HC_MMIO_STRIDE   8u

/* Guest memory must end below this (aarch64 maps 3..4 GiB as device). */
#define HC_GUEST_MEM_MAX 0xc0000000ull

/* Fixed guest-physical layout set up by the tender. */
#define HC_GDT_GPA        0x1000ull
#define HC_PT_GPA         0x2000ull   /* page tables: 0x2000..0x7fff */
#define HC_BOOTINFO_GPA   0x8000ull
#define HC_CMDLINE_GPA    0x9000ull
#define HC_CMDLINE_MAX    0x2000ull   /* incl. NUL */
#define HC_ELF_MIN_GPA    0x100000ull /* lowest address an ELF may load at */
#define HC_STACK_SIZE     0x100000ull /* top of memory, below mem end */

enum hc_nr {
    HC_CONSOLE_WRITE = 0,
    HC_CLOCK_MONO    = 1,
    HC_CLOCK_WALL    = 2,
    HC_BLOCK_ACQUIRE = 3,
    HC_BLOCK_READ    = 4,
    HC_BLOCK_WRITE   = 5,
    HC_NET_ACQUIRE   = 6,
    HC_NET_READ      = 7,
    HC_NET_WRITE     = 8,
    HC_YIELD         = 9,
    HC_EXIT          = 10,
    HC_ABORT         = 11,
    HC_EXCEPTION     = 12,  /* aarch64 vector stub: value is vector index */
    HC_MAX
};

/* Result codes written back by the tender; match solo5_result_t order. */
#define HC_R_OK      0
#define HC_R_AGAIN   1
#define HC_R_EINVAL  2
#define HC_R_EUNSPEC 3

#define HC_NAME_MAX 64   /* device names incl. NUL */

struct hc_bootinfo {
    uint64_t cmdline;      /* GPA of NUL-terminated string */
    uint64_t heap_start;
    uint64_t heap_size;
    uint64_t mem_size;
};

struct hc_console_write { uint64_t data; uint64_t len; };
struct hc_clock         { uint64_t ns; };

struct hc_block_acquire {
    uint64_t name;         /* in: GPA of NUL-terminated name */
    uint64_t handle;       /* out */
    uint64_t capacity;     /* out, bytes */
    uint64_t block_size;   /* out, bytes */
    uint64_t ret;          /* out */
};

struct hc_block_io {
    uint64_t handle;
    uint64_t offset;       /* bytes */
    uint64_t data;         /* GPA */
    uint64_t len;          /* bytes */
    uint64_t ret;          /* out */
};

struct hc_net_acquire {
    uint64_t name;
    uint64_t handle;       /* out */
    uint8_t  mac[8];       /* out, first 6 bytes used */
    uint64_t mtu;          /* out */
    uint64_t ret;          /* out */
};

struct hc_net_io {
    uint64_t handle;
    uint64_t data;         /* GPA */
    uint64_t len;          /* in: buffer size / frame size */
    uint64_t read_len;     /* out (read only) */
    uint64_t ret;          /* out */
};

struct hc_yield {
    uint64_t deadline;     /* absolute monotonic ns */
    uint64_t ready_set;    /* out: bit i set if net handle i readable */
};

struct hc_exit { int64_t status; };

#endif
