/*
 * The shared command line and host devices of the hvt tender and
 * spt_tender (see devices.h). Every message goes through die(), so it
 * starts with the name of the tender it is part of.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>
#include <linux/if_tun.h>

#include "devices.h"
#include "host.h"

struct device devices[DEV_MAX];
unsigned ndevices;

/* ------------------------------------------------------- command line */

static bool valid_dev_name(const char *s, size_t len)
{
    if (len == 0 || len >= DEV_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static void add_device(enum dev_type type, const char *spec, const char *opt)
{
    const char *eq = strchr(spec, '=');
    if (!eq || !valid_dev_name(spec, (size_t)(eq - spec)) || !eq[1])
        die("bad %s argument '%s' (expected NAME=%s, NAME of 1-%d "
            "chars [A-Za-z0-9_-])", opt, spec,
            type == DEV_BLOCK ? "PATH" : "TAPIFNAME", DEV_NAME_MAX - 1);
    if (ndevices >= DEV_MAX)
        die("too many devices (max %d)", DEV_MAX);
    struct device *d = &devices[ndevices];
    memcpy(d->name, spec, (size_t)(eq - spec));
    d->name[eq - spec] = '\0';
    for (unsigned i = 0; i < ndevices; i++)
        if (devices[i].type == type && strcmp(devices[i].name, d->name) == 0)
            die("duplicate device name '%s'", d->name);
    d->type = type;
    d->path = eq + 1;
    d->fd = -1;
    ndevices++;
}

/*
 * --block-sector-size:NAME=N (as upstream Solo5 hvt): the block size the
 * guest is told for NAME. Kept until all options are parsed so it may come
 * before or after its --block.
 */
struct sector_req {
    char name[DEV_NAME_MAX];
    uint64_t size;
};
static struct sector_req sector_reqs[DEV_MAX];
static unsigned n_sector_reqs;

static void add_sector_req(const char *spec)
{
    const char *eq = strchr(spec, '=');
    if (!eq || !valid_dev_name(spec, (size_t)(eq - spec)))
        die("bad --block-sector-size argument '%s' (expected NAME=N, NAME "
            "of 1-%d chars [A-Za-z0-9_-])", spec, DEV_NAME_MAX - 1);
    const char *v = eq + 1;
    char *endp;
    errno = 0;
    unsigned long long n = strtoull(v, &endp, 10);
    /* Digits only: strtoull would take "-512", " 512" and "+512". */
    if (*v < '0' || *v > '9' || errno || *endp || n < SECTOR_MIN ||
            n > SECTOR_MAX || (n & (n - 1)) != 0)
        die("bad --block-sector-size value '%s' for block '%.*s' (a power "
            "of two, %u..%u)", v, (int)(eq - spec), spec, SECTOR_MIN,
            SECTOR_MAX);
    if (n_sector_reqs >= DEV_MAX)
        die("too many --block-sector-size options (max %d)", DEV_MAX);
    struct sector_req *r = &sector_reqs[n_sector_reqs];
    memcpy(r->name, spec, (size_t)(eq - spec));
    r->name[eq - spec] = '\0';
    for (unsigned i = 0; i < n_sector_reqs; i++)
        if (strcmp(sector_reqs[i].name, r->name) == 0)
            die("duplicate --block-sector-size for block '%s'", r->name);
    r->size = n;
    n_sector_reqs++;
}

static void apply_sector_reqs(void)
{
    for (unsigned i = 0; i < n_sector_reqs; i++) {
        const struct sector_req *r = &sector_reqs[i];
        unsigned h = 0;
        while (h < ndevices && !(devices[h].type == DEV_BLOCK &&
                strcmp(devices[h].name, r->name) == 0))
            h++;
        if (h == ndevices)
            die("--block-sector-size:%s given, but no --block:%s",
                r->name, r->name);
        devices[h].sector_size = r->size;
    }
}

void parse_args(int argc, char **argv, struct tender_args *a,
        void (*usage)(void) __attribute__((noreturn)))
{
    uint64_t mem_mb = MEM_MB_DEFAULT;
    int i;

    memset(a, 0, sizeof *a);
    for (i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (strncmp(o, "--", 2) != 0)
            break;
        if (strncmp(o, "--mem=", 6) == 0) {
            char *endp;
            errno = 0;
            unsigned long long v = strtoull(o + 6, &endp, 10);
            if (errno || endp == o + 6 || *endp || o[6] == '-' ||
                    v < MEM_MB_MIN || v > MEM_MB_MAX)
                die("bad --mem value '%s' (%d..%d MiB)", o + 6,
                    MEM_MB_MIN, MEM_MB_MAX);
            mem_mb = v;
        } else if (strncmp(o, "--block:", 8) == 0) {
            add_device(DEV_BLOCK, o + 8, "--block");
        } else if (strcmp(o, "--block-direct") == 0) {
            a->direct = true;
        } else if (strncmp(o, "--block-sector-size:", 20) == 0) {
            add_sector_req(o + 20);
        } else if (strncmp(o, "--net:", 6) == 0) {
            add_device(DEV_NET, o + 6, "--net");
        } else if (strncmp(o, "--stats=", 8) == 0) {
            if (!o[8])
                die("empty --stats file name");
            a->stats = o + 8;
        } else if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
            usage();
        } else {
            fprintf(stderr, "%s: error: unknown option '%s'\n", tender_name,
                    o);
            usage();
        }
    }
    if (i >= argc) {
        fprintf(stderr, "%s: error: no guest ELF given\n", tender_name);
        usage();
    }
    a->guest = argv[i++];
    apply_sector_reqs();

    /* Guest command line: remaining args joined by single spaces. */
    size_t cl = 0;
    for (; i < argc; i++) {
        size_t n = strlen(argv[i]);
        if (cl + n + 2 > sizeof a->cmdline)
            die("guest command line too long (max %d bytes)",
                CMDLINE_MAX - 1);
        if (cl)
            a->cmdline[cl++] = ' ';
        memcpy(a->cmdline + cl, argv[i], n);
        cl += n;
    }
    a->cmdline[cl] = '\0';
    a->cmdline_len = cl;

    /* Round up to 2 MiB: the hvt page tables map RAM in 2 MiB units, and
     * spt does the same so --mem gives the same heap size on both. */
    a->mem_size = ((mem_mb << 20) + 0x1fffff) & ~0x1fffffull;
}

/* ------------------------------------------------------------ devices */

static void open_block(struct device *d, bool direct)
{
    int fd = open(d->path, O_RDWR | O_CLOEXEC | (direct ? O_DIRECT : 0));
    if (fd < 0)
        die("block '%s': cannot open %s%s: %s", d->name, d->path,
            direct ? " with O_DIRECT" : "", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0)
        die("block '%s': fstat %s: %s", d->name, d->path, strerror(errno));
    uint64_t size;
    uint64_t bs = 512, mem_align = 0;
    if (S_ISBLK(st.st_mode)) {
        if (ioctl(fd, BLKGETSIZE64, &size) < 0)
            die("block '%s': BLKGETSIZE64 %s: %s", d->name, d->path,
                strerror(errno));
        int lbs = 0;
        if (direct && ioctl(fd, BLKSSZGET, &lbs) == 0 && lbs > 512)
            bs = (uint64_t)lbs;
        if (direct)
            mem_align = bs;
    } else if (S_ISREG(st.st_mode)) {
        size = (uint64_t)st.st_size;
        if (direct) {
            mem_align = 512;
#ifdef STATX_DIOALIGN
            /* Ask the filesystem what O_DIRECT needs (Linux >= 6.1). */
            struct statx sx;
            if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
                    (sx.stx_mask & STATX_DIOALIGN)) {
                if (sx.stx_dio_offset_align == 0)
                    die("block '%s': %s does not support O_DIRECT",
                        d->name, d->path);
                if (sx.stx_dio_offset_align > bs)
                    bs = sx.stx_dio_offset_align;
                if (sx.stx_dio_mem_align > 0)
                    mem_align = sx.stx_dio_mem_align;
            }
#endif
        }
    } else {
        die("block '%s': %s is neither a regular file nor a block device",
            d->name, d->path);
    }
    if (bs > DIO_ALIGN_MAX || mem_align > DIO_ALIGN_MAX)
        die("block '%s': unsupported O_DIRECT alignment", d->name);
    if (d->sector_size) {
        /* Every guest offset/length is a multiple of the sector size, so
         * this keeps each one valid for O_DIRECT. Without O_DIRECT, bs is
         * 512 and any accepted size passes. */
        if (d->sector_size % bs != 0)
            die("block '%s': --block-sector-size %llu is not a multiple of "
                "the %llu-byte alignment O_DIRECT needs on %s", d->name,
                (unsigned long long)d->sector_size,
                (unsigned long long)bs, d->path);
        bs = d->sector_size;
    }
    d->fd = fd;
    d->block_size = bs;
    d->capacity = size - size % bs;   /* a partial trailing block is unusable */
    d->dio_mem_align = mem_align;
}

static void open_tap(struct device *d)
{
    if (strlen(d->path) >= IFNAMSIZ)
        die("net '%s': interface name '%s' too long", d->name, d->path);
    /* TUNSETIFF would silently create a missing tap; require it to exist. */
    if (if_nametoindex(d->path) == 0)
        die("net '%s': interface '%s' does not exist", d->name, d->path);
    /* Non-blocking: a read with nothing queued must return AGAIN. */
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        die("net '%s': open /dev/net/tun: %s", d->name, strerror(errno));
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    memcpy(ifr.ifr_name, d->path, strlen(d->path));
    if (ioctl(fd, TUNSETIFF, &ifr) < 0)
        die("net '%s': attach to tap '%s': %s", d->name, d->path,
            strerror(errno));
    if (strcmp(ifr.ifr_name, d->path) != 0)
        die("net '%s': attached to '%s' instead of '%s'", d->name,
            ifr.ifr_name, d->path);

    d->mtu = 1500;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s >= 0) {
        struct ifreq mr;
        memset(&mr, 0, sizeof mr);
        memcpy(mr.ifr_name, d->path, strlen(d->path));
        if (ioctl(s, SIOCGIFMTU, &mr) == 0 && mr.ifr_mtu >= 68)
            d->mtu = (uint64_t)mr.ifr_mtu;
        close(s);
    }
    /* Random locally-administered unicast MAC, as upstream does. */
    if (getrandom(d->mac, 6, 0) != 6)
        die("getrandom: %s", strerror(errno));
    d->mac[0] = (uint8_t)((d->mac[0] & 0xfc) | 0x02);
    d->fd = fd;
}

void open_devices(bool direct)
{
    for (unsigned h = 0; h < ndevices; h++) {
        if (devices[h].type == DEV_BLOCK)
            open_block(&devices[h], direct);
        else
            open_tap(&devices[h]);
    }
}
