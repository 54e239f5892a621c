/*
 * Internal interface of spt_tender: spt_tender.c (the parent/guest process
 * pair, boot info, stats), spt_elf.c (mapping the guest ELF, vDSO lookup),
 * spt_seccomp.c (the filter, the SIGSYS handler, syscall names). The
 * command line, host devices and ELF checks are the hvt tender's
 * (tender/devices.c, tender/elf_check.c), and so is die() (tender/host.c),
 * which prints "spt_tender: error: <msg>" and exits SPT_EXIT_SETUP.
 */
#ifndef SPT_H
#define SPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "host.h"
#include "spt_abi.h"

/* Exit statuses of spt_tender besides the guest's own solo5_exit status. */
#define SPT_EXIT_SETUP    1     /* bad command line, device, ELF, ...: die() */
#define SPT_EXIT_FAULT    255   /* guest fault signal, or solo5_abort() */
#define SPT_EXIT_SECCOMP  159   /* 128 + SIGSYS: killed by the filter */
/* Other signals that end the guest: 128 + signal number. */

struct guest_layout {
    uint64_t mem_size;      /* guest space is [SPT_ELF_MIN_ADDR, mem_size) */
    uint64_t entry;
    uint64_t heap_start, heap_size;
    uint64_t stack_base;    /* [stack_base, mem_size) */
};

/*
 * Validate the guest ELF at path, reserve [SPT_ELF_MIN_ADDR, mem_size) with
 * MAP_FIXED_NOREPLACE (refusing any overlap with our own mappings) and map
 * the segments, heap and stack in it. Errors end the process with a
 * one-line message.
 */
void load_guest(const char *path, uint64_t mem_size, struct guest_layout *gl);

/* Address of the vDSO's clock_gettime, or 0 if there is none. */
uint64_t vdso_clock_gettime(void);

/* A block device as the filter sees it: the fd and the geometry that pins
 * each pread64/pwrite64 to one whole block inside the device. */
struct seccomp_block {
    int fd;
    uint64_t capacity;      /* bytes, a multiple of block_size */
    uint64_t block_size;    /* a power of two */
};

struct seccomp_fds {
    const struct seccomp_block *block; unsigned n_block;
    const int *net; unsigned n_net;
    int console;
};

/*
 * In the guest process: install the SIGSYS handler (recording into acct)
 * and the filter allowing only the Solo5 API's syscalls on these fds.
 * Returns false (errno set) if the kernel refused the filter, or EINVAL
 * for a block size that is not a power of two up to 2^30.
 */
bool confine(const struct seccomp_fds *fds, struct spt_acct *acct);

/* Name of syscall nr of this tender's own ABI, or NULL if unknown. */
const char *syscall_name(uint64_t nr);
/* The AUDIT_ARCH_* value of this tender's own ABI. */
extern const uint32_t spt_audit_arch;

#endif
