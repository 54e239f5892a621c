/*
 * Boot ABI between spt_tender and the spt guest bindings (bindings_spt.c).
 *
 * The guest runs as an ordinary Linux process; the tender maps the guest
 * ELF, its heap and stack, then jumps to the ELF entry as if calling
 *     void _start(const struct spt_bootinfo *bi);
 * with a valid stack (x86_64: RSP = 8 mod 16, a zero return address;
 * aarch64: SP 16-aligned, LR = 0). All pointers are plain process virtual
 * addresses. Fixed-width fields only, so both sides agree on the layout
 * whatever the compiler flags.
 */
#ifndef SPT_ABI_H
#define SPT_ABI_H

#include <stdint.h>

#define SPT_BOOT_MAGIC   0x53505442554e494bull   /* "KINUBTPS" */
#define SPT_ACCT_MAGIC   0x535054414343540aull
/* 2: the filter allows block pread64/pwrite64 of exactly one block inside
 * the device, so guests built for 1 (any length) must not run. */
#define SPT_ABI_VERSION  2u

#define SPT_MAX_DEVICES  64     /* handle set is a 64-bit mask */
#define SPT_NAME_MAX     64     /* device names incl. NUL */
#define SPT_CMDLINE_MAX  8192   /* incl. NUL */
#define SPT_BOUNCE_SIZE  (1u << 20)  /* >= the largest block size */

/* Guest address space: the ELF loads at or above SPT_ELF_MIN_ADDR, the
 * stack takes the top SPT_STACK_SIZE bytes of [0, --mem) (its lowest page
 * is an inaccessible guard), the boot info and command line its top. */
#define SPT_ELF_MIN_ADDR 0x100000ull
#define SPT_STACK_SIZE   0x100000ull

enum spt_dev_type { SPT_DEV_BLOCK = 1, SPT_DEV_NET = 2 };

struct spt_device {
    char name[SPT_NAME_MAX];
    uint32_t type;          /* enum spt_dev_type */
    int32_t fd;
    /* block: each pread64/pwrite64 on fd must move exactly block_size
     * bytes at a multiple of block_size below capacity (the tender's
     * seccomp filter kills the guest otherwise) */
    uint64_t capacity;      /* bytes, a multiple of block_size */
    uint64_t block_size;    /* a power of two */
    uint64_t dio_mem_align; /* O_DIRECT buffer alignment, 0 = buffered fd */
    /* net */
    uint8_t mac[8];         /* first 6 bytes used */
    uint64_t mtu;           /* excluding the Ethernet header */
};

/*
 * The accounting page: MAP_SHARED between the guest process and the
 * unconfined tender parent, which writes the --stats file from it after the
 * guest is gone. The guest can write every byte of it, so the parent treats
 * it as untrusted input.
 */
struct spt_acct {
    uint64_t magic;         /* SPT_ACCT_MAGIC */
    /* Same metric as the hvt tender: host pread syscalls serving guest block
     * reads and CLOCK_MONOTONIC ns inside them; `win` holds the reads after
     * the guest's last successful block write, `setup` those before. */
    uint64_t win_calls, win_ns;
    uint64_t setup_calls, setup_ns;
    /* Filled in by the tender's SIGSYS handler in the guest process. */
    uint64_t sigsys_seen;
    uint64_t sigsys_nr;
    uint64_t sigsys_arch;   /* AUDIT_ARCH_* the syscall was made with */
    uint64_t aborted;       /* set by solo5_abort() before it exits 255 */
};

struct spt_bootinfo {
    uint64_t magic;         /* SPT_BOOT_MAGIC */
    uint32_t version;       /* SPT_ABI_VERSION */
    uint32_t ndevices;      /* <= SPT_MAX_DEVICES */
    uint64_t cmdline;       /* NUL-terminated */
    uint64_t heap_start;
    uint64_t heap_size;
    uint64_t acct;          /* struct spt_acct * */
    uint64_t bounce;        /* SPT_BOUNCE_SIZE bytes, 4 KiB aligned; 0 unless
                               --block-direct */
    uint64_t vdso_clock_gettime; /* int (*)(clockid_t, struct timespec *),
                                    0 = none: use the syscall */
    struct spt_device dev[SPT_MAX_DEVICES];
};

#endif
