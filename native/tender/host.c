/*
 * Error exit and --stats file, shared by the hvt tender, kvm_exit_floor
 * and spt_tender (see host.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"

void die(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "%s: error: ", tender_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

const char *stats_file(const char *opt)
{
    const char *p = opt ? opt : getenv("PREAD_STATS_FILE");
    return p && *p ? p : NULL;
}

void write_pread_stats(const char *path, uint64_t calls, uint64_t ns,
        uint64_t setup_calls, uint64_t setup_ns)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "%s: warning: cannot write stats file %s: %s\n",
                tender_name, path, strerror(errno));
        return;
    }
    fprintf(f, "pread_calls=%llu pread_ns=%llu setup_pread_calls=%llu "
            "setup_pread_ns=%llu\n", (unsigned long long)calls,
            (unsigned long long)ns, (unsigned long long)setup_calls,
            (unsigned long long)setup_ns);
    if (fclose(f) != 0)
        fprintf(stderr, "%s: warning: error writing stats file %s: %s\n",
                tender_name, path, strerror(errno));
}
