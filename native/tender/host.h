/*
 * What every host program here shares (the hvt tender, kvm_exit_floor and
 * spt_tender): the one-line error exit and the --stats file.
 */
#ifndef HOST_H
#define HOST_H

#include <stdint.h>

/* The name messages start with ("tender", "spt_tender"): each program
 * defines it, so the shared code reports as the program it is part of. */
extern const char *const tender_name;

/* Print "<tender_name>: error: <msg>" and exit(1); for setup errors. */
void die(const char *fmt, ...)
    __attribute__((noreturn, format(printf, 1, 2)));

/* The stats file: the --stats value if given, else $PREAD_STATS_FILE;
 * NULL if neither names a file. */
const char *stats_file(const char *opt);

/*
 * Write the one line of the pread accounting, "pread_calls=N pread_ns=T
 * setup_pread_calls=N0 setup_pread_ns=T0", to path. Failures are warnings:
 * the guest's own exit status stays the program's.
 */
void write_pread_stats(const char *path, uint64_t calls, uint64_t ns,
        uint64_t setup_calls, uint64_t setup_ns);

#endif
