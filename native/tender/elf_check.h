/*
 * Reading and checking a guest ELF, shared by the hvt tender and
 * spt_tender. The file is untrusted input: every header and program header
 * field used is checked first, with overflow-safe arithmetic. Placing the
 * segments (guest-physical memory, or mappings in the tender's own address
 * space) stays in each tender.
 */
#ifndef ELF_CHECK_H
#define ELF_CHECK_H

#include <elf.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ELF_MAX_PHDRS 64

/* What a tender demands beyond the common checks. */
enum elf_rules {
    ELF_IDENTITY = 1,   /* p_vaddr == p_paddr (the hvt identity mapping) */
    ELF_NO_TLS = 2,     /* no PT_TLS (spt sets up no thread pointer) */
};

struct elf_image {
    uint8_t *file;      /* the whole file (malloc'd) */
    size_t size;
    Elf64_Ehdr eh;
    Elf64_Phdr ph[ELF_MAX_PHDRS];   /* eh.e_phnum of them */
    uint64_t end;       /* highest loaded address (exclusive) */
};

/* A segment that occupies memory: the only ones to place. */
static inline bool elf_loaded(const Elf64_Phdr *p)
{
    return p->p_type == PT_LOAD && p->p_memsz != 0;
}

/*
 * Read the guest ELF at path (a regular file of at most max bytes) and
 * check it: a static little-endian ELF64 executable for machine whose
 * loaded segments lie in [lo, hi) by p_vaddr, do not overlap, stay within
 * the file, and one of them, executable, holds the entry point. Any fault
 * ends the process with one line, "bad ELF <path>: ..." for the ELF's own.
 */
void elf_read_checked(const char *path, size_t max, uint16_t machine,
        uint64_t lo, uint64_t hi, unsigned rules, struct elf_image *img);

#endif
