/*
 * The command line and host devices, shared by the hvt tender (tender.c)
 * and spt_tender (spt/spt_tender.c): both take the same options, refuse
 * them with the same messages and open block devices and taps the same
 * way. How the guest then reaches a device (hypercalls into the tender, or
 * its own system calls on the fds) stays in each tender.
 */
#ifndef DEVICES_H
#define DEVICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits of the shared command line; each tender checks its guest ABI's
 * constants against these at compile time. */
#define DEV_MAX         64      /* handle set is a 64-bit mask */
#define DEV_NAME_MAX    64      /* device names incl. NUL */
#define CMDLINE_MAX     8192    /* guest command line incl. NUL */
#define MEM_MB_DEFAULT  32
#define MEM_MB_MIN      4
#define MEM_MB_MAX      3072
#define SECTOR_MIN      512u    /* --block-sector-size range */
#define SECTOR_MAX      32768u
#define DIO_ALIGN_MAX   4096u   /* the bounce buffers' alignment */

enum dev_type { DEV_BLOCK, DEV_NET };

struct device {
    enum dev_type type;
    char name[DEV_NAME_MAX];
    const char *path;       /* block: file; net: tap name */
    int fd;
    /* block */
    uint64_t capacity, block_size;
    uint64_t sector_size;   /* --block-sector-size, 0 = device default */
    uint64_t dio_mem_align; /* O_DIRECT buffer alignment, 0 = buffered fd */
    /* net */
    uint8_t mac[6];
    uint64_t mtu;
};

/* The devices in command-line order: a device's index is its handle. */
extern struct device devices[DEV_MAX];
extern unsigned ndevices;

struct tender_args {
    uint64_t mem_size;          /* --mem in bytes, rounded up to 2 MiB */
    bool direct;                /* --block-direct */
    const char *stats;          /* --stats=FILE, or NULL */
    const char *guest;          /* the guest ELF */
    char cmdline[CMDLINE_MAX];  /* the remaining arguments, space-joined */
    size_t cmdline_len;
};

/*
 * Parse the command line into a and the device table (with each
 * --block-sector-size applied to its block). Bad options end the process
 * with a one-line message, or the tender's usage text.
 */
void parse_args(int argc, char **argv, struct tender_args *a,
        void (*usage)(void) __attribute__((noreturn)));

/* Open every device: blocks (with O_DIRECT if direct) and taps. */
void open_devices(bool direct);

#endif
