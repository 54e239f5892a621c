/*
 * Guest ELF reading and checks shared by the hvt tender and spt_tender
 * (see elf_check.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "elf_check.h"
#include "host.h"

static uint8_t *read_file(const char *path, size_t max, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die("cannot open guest %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0)
        die("fstat %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        die("guest %s: not a regular file", path);
    if ((uint64_t)st.st_size > max)
        die("guest %s: file too large (%lld bytes, guest memory %zu)",
            path, (long long)st.st_size, max);
    size_t sz = (size_t)st.st_size;
    uint8_t *buf = malloc(sz ? sz : 1);
    if (!buf)
        die("out of memory");
    size_t got = 0;
    while (got < sz) {
        ssize_t n = read(fd, buf + got, sz - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("read %s: %s", path, n < 0 ? strerror(errno) : "short read");
        got += (size_t)n;
    }
    close(fd);
    *len = sz;
    return buf;
}

#define BAD_ELF(fmt, ...) die("bad ELF %s: " fmt, path, ##__VA_ARGS__)

void elf_read_checked(const char *path, size_t max, uint16_t machine,
        uint64_t lo, uint64_t hi, unsigned rules, struct elf_image *img)
{
    size_t fsz;
    uint8_t *f = read_file(path, max, &fsz);
    Elf64_Ehdr eh;
    Elf64_Phdr *ph = img->ph;

    if (fsz < sizeof eh)
        BAD_ELF("file too short for an ELF header (%zu bytes)", fsz);
    memcpy(&eh, f, sizeof eh);   /* file buffer may be unaligned for structs */
    if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
        BAD_ELF("not an ELF file (bad magic)");
    if (eh.e_ident[EI_CLASS] != ELFCLASS64)
        BAD_ELF("not ELFCLASS64");
    if (eh.e_ident[EI_DATA] != ELFDATA2LSB)
        BAD_ELF("not little-endian");
    if (eh.e_ident[EI_VERSION] != EV_CURRENT || eh.e_version != EV_CURRENT)
        BAD_ELF("bad ELF version");
    if (eh.e_ident[EI_OSABI] != ELFOSABI_SYSV &&
            eh.e_ident[EI_OSABI] != ELFOSABI_STANDALONE)
        BAD_ELF("unsupported OS ABI %u", eh.e_ident[EI_OSABI]);
    if (eh.e_type != ET_EXEC)
        BAD_ELF("not a static executable (e_type %u; PIE/relocatable "
                "not supported)", eh.e_type);
    if (eh.e_machine != machine)
        BAD_ELF("wrong machine %u (this tender runs %u)", eh.e_machine,
                machine);
    if (eh.e_ehsize != sizeof(Elf64_Ehdr))
        BAD_ELF("bad e_ehsize %u", eh.e_ehsize);
    if (eh.e_phentsize != sizeof(Elf64_Phdr))
        BAD_ELF("bad e_phentsize %u", eh.e_phentsize);
    if (eh.e_phnum == 0 || eh.e_phnum > ELF_MAX_PHDRS)
        BAD_ELF("bad e_phnum %u (1..%d supported)", eh.e_phnum,
                ELF_MAX_PHDRS);
    if (eh.e_phoff > fsz ||
            (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > fsz - eh.e_phoff)
        BAD_ELF("program headers outside file");
    memcpy(ph, f + eh.e_phoff, eh.e_phnum * sizeof(Elf64_Phdr));

    uint64_t end = 0;
    bool entry_ok = false;
    unsigned nload = 0;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        const Elf64_Phdr *p = &ph[i];
        if (p->p_type == PT_INTERP || p->p_type == PT_DYNAMIC)
            BAD_ELF("dynamically linked (program header %u)", i);
        if ((rules & ELF_NO_TLS) && p->p_type == PT_TLS)
            BAD_ELF("thread-local storage not supported (program header %u)",
                    i);
        if (!elf_loaded(p))
            continue;
        if (p->p_filesz > p->p_memsz)
            BAD_ELF("segment %u: p_filesz > p_memsz", i);
        if (p->p_offset > fsz || p->p_filesz > fsz - p->p_offset)
            BAD_ELF("segment %u: file range outside file", i);
        if ((rules & ELF_IDENTITY) && p->p_vaddr != p->p_paddr)
            BAD_ELF("segment %u: vaddr != paddr (identity mapping required)",
                    i);
        if (p->p_vaddr < lo || p->p_vaddr > hi || p->p_memsz > hi - p->p_vaddr)
            BAD_ELF("segment %u [0x%llx, +0x%llx) outside loadable guest "
                    "memory [0x%llx, 0x%llx) (try a larger --mem)", i,
                    (unsigned long long)p->p_vaddr,
                    (unsigned long long)p->p_memsz,
                    (unsigned long long)lo, (unsigned long long)hi);
        if (p->p_align > 1 && (p->p_align & (p->p_align - 1)) != 0)
            BAD_ELF("segment %u: p_align not a power of two", i);
        for (unsigned j = 0; j < i; j++) {
            const Elf64_Phdr *q = &ph[j];
            if (!elf_loaded(q))
                continue;
            /* Both ranges are validated in-bounds, so sums can't overflow. */
            if (p->p_vaddr < q->p_vaddr + q->p_memsz &&
                    q->p_vaddr < p->p_vaddr + p->p_memsz)
                BAD_ELF("segments %u and %u overlap", j, i);
        }
        if ((p->p_flags & PF_X) && eh.e_entry >= p->p_vaddr &&
                eh.e_entry - p->p_vaddr < p->p_memsz)
            entry_ok = true;
        if (p->p_vaddr + p->p_memsz > end)
            end = p->p_vaddr + p->p_memsz;
        nload++;
    }
    if (nload == 0)
        BAD_ELF("no loadable segments");
    if (!entry_ok)
        BAD_ELF("entry point 0x%llx not inside an executable segment",
                (unsigned long long)eh.e_entry);
    img->file = f;
    img->size = fsz;
    img->eh = eh;
    img->end = end;
}
