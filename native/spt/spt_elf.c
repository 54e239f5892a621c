/*
 * Guest ELF loading for spt_tender, and the vDSO lookup that lets guests
 * read the clock without a syscall.
 *
 * The guest ELF is untrusted input: elf_read_checked() (tender/elf_check.c,
 * the hvt tender's checks) validates every field used before anything is
 * mapped, and the whole guest range is reserved with MAP_FIXED_NOREPLACE
 * first, so nothing of the tender (text, data, heap, stack, vDSO) can be
 * replaced by a guest mapping.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

#include "elf_check.h"
#include "spt.h"

#if defined(__x86_64__)
#define ELF_MACHINE EM_X86_64
#define VDSO_GETTIME "__vdso_clock_gettime"
#elif defined(__aarch64__)
#define ELF_MACHINE EM_AARCH64
#define VDSO_GETTIME "__kernel_clock_gettime"
#else
#error unsupported architecture
#endif

/* Guest addresses are absolute process addresses. */
#define AT(a) ((uint8_t *)(uintptr_t)(a))

static inline uint64_t page_down(uint64_t a, uint64_t pg) { return a & ~(pg - 1); }
static inline uint64_t page_up(uint64_t a, uint64_t pg)
{
    return (a + pg - 1) & ~(pg - 1);   /* callers keep a far below 2^64 */
}

static int prot_of(uint32_t flags)
{
    return ((flags & PF_R) ? PROT_READ : 0) |
           ((flags & PF_W) ? PROT_WRITE : 0) |
           ((flags & PF_X) ? PROT_EXEC : 0);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void load_guest(const char *path, uint64_t mem_size, struct guest_layout *gl)
{
    const uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);
    const uint64_t lo = SPT_ELF_MIN_ADDR, hi = mem_size - SPT_STACK_SIZE;
    if (pg == 0 || (pg & (pg - 1)) || lo % pg || mem_size % pg || hi <= lo)
        die("unsupported page size %llu or memory size",
            (unsigned long long)pg);

    /* No PT_TLS: spt guests get no thread pointer to reach it by. */
    struct elf_image img;
    elf_read_checked(path, (size_t)mem_size, ELF_MACHINE, lo, hi, ELF_NO_TLS,
            &img);
    const Elf64_Phdr *ph = img.ph;
    const unsigned phnum = img.eh.e_phnum;

    /* One reservation for the whole guest space: the kernel refuses it if
     * any mapping of ours (or the vDSO, or our stack) lies inside. */
    void *want = (void *)(uintptr_t)lo;
    void *m = mmap(want, mem_size - lo, PROT_NONE,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE,
            -1, 0);
    if (m == MAP_FAILED || m != want) {
        int err = errno;
        if (m != MAP_FAILED)        /* kernel without MAP_FIXED_NOREPLACE */
            munmap(m, mem_size - lo);
        die("guest memory [0x%llx, 0x%llx) overlaps the tender's own "
            "mappings: %s", (unsigned long long)lo,
            (unsigned long long)mem_size,
            m == MAP_FAILED ? strerror(err) : "placed elsewhere");
    }

    /* Segments: copy with everything writable, then set each page's final
     * protection. Segments never share bytes, but may share a page (hosts
     * with 16/64 KiB pages): such a page gets the union of their rights. */
    uint64_t span_lo = hi, span_hi = 0;
    uint64_t bounds[2 * ELF_MAX_PHDRS];
    unsigned nb = 0;
    for (unsigned i = 0; i < phnum; i++) {
        const Elf64_Phdr *p = &ph[i];
        if (!elf_loaded(p))
            continue;
        uint64_t a = page_down(p->p_vaddr, pg);
        uint64_t b = page_up(p->p_vaddr + p->p_memsz, pg);
        if (a < span_lo)
            span_lo = a;
        if (b > span_hi)
            span_hi = b;
        bounds[nb++] = a;
        bounds[nb++] = b;
    }
    if (mprotect(AT(span_lo), span_hi - span_lo, PROT_READ | PROT_WRITE))
        die("mprotect guest image: %s", strerror(errno));
    for (unsigned i = 0; i < phnum; i++) {
        const Elf64_Phdr *p = &ph[i];
        if (elf_loaded(p))
            memcpy(AT(p->p_vaddr), img.file + p->p_offset, p->p_filesz);
        /* The rest up to p_memsz (.bss) is still zero from the mmap. */
    }
    qsort(bounds, nb, sizeof bounds[0], cmp_u64);
    for (unsigned k = 0; k + 1 < nb; k++) {
        uint64_t x = bounds[k], y = bounds[k + 1];
        if (x == y)
            continue;
        int prot = PROT_NONE;
        for (unsigned i = 0; i < phnum; i++) {
            const Elf64_Phdr *p = &ph[i];
            if (!elf_loaded(p))
                continue;
            if (page_down(p->p_vaddr, pg) <= x &&
                    y <= page_up(p->p_vaddr + p->p_memsz, pg))
                prot |= prot_of(p->p_flags);
        }
        if (mprotect(AT(x), y - x, prot))
            die("mprotect guest segment: %s", strerror(errno));
    }
    free(img.file);

    gl->mem_size = mem_size;
    gl->entry = img.eh.e_entry;
    gl->stack_base = hi;
    gl->heap_start = page_up(img.end, pg);  /* <= hi: hi is page aligned */
    gl->heap_size = hi - gl->heap_start;
    if (gl->heap_size &&
            mprotect(AT(gl->heap_start), gl->heap_size,
                     PROT_READ | PROT_WRITE))
        die("mprotect guest heap: %s", strerror(errno));
    /* The stack's lowest page stays PROT_NONE: an overflow faults instead
     * of silently running into the heap. */
    if (mprotect(AT(hi + pg), SPT_STACK_SIZE - pg, PROT_READ | PROT_WRITE))
        die("mprotect guest stack: %s", strerror(errno));
}

/*
 * The kernel's vDSO image: find clock_gettime through its dynamic symbol
 * table (DT_HASH gives the symbol count). Anything unexpected means "no
 * vDSO", and guests fall back to the (allowed) syscall.
 */
uint64_t vdso_clock_gettime(void)
{
    uintptr_t base = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
    if (!base)
        return 0;
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)base;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
            eh->e_phentsize != sizeof(Elf64_Phdr))
        return 0;
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(base + eh->e_phoff);
    uintptr_t bias = 0, dyn_addr = 0;
    bool have_load = false;
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type == PT_LOAD && !have_load) {
            bias = base + ph[i].p_offset - ph[i].p_vaddr;
            have_load = true;
        } else if (ph[i].p_type == PT_DYNAMIC) {
            dyn_addr = ph[i].p_vaddr;
        }
    }
    if (!have_load || !dyn_addr)
        return 0;
    const Elf64_Sym *sym = NULL;
    const char *str = NULL;
    const Elf32_Word *hash = NULL;
    for (const Elf64_Dyn *d = (const Elf64_Dyn *)(bias + dyn_addr);
            d->d_tag != DT_NULL; d++) {
        if (d->d_tag == DT_SYMTAB)
            sym = (const Elf64_Sym *)(bias + d->d_un.d_ptr);
        else if (d->d_tag == DT_STRTAB)
            str = (const char *)(bias + d->d_un.d_ptr);
        else if (d->d_tag == DT_HASH)
            hash = (const Elf32_Word *)(bias + d->d_un.d_ptr);
    }
    if (!sym || !str || !hash)
        return 0;
    for (Elf32_Word i = 0; i < hash[1]; i++) {     /* hash[1] = nchain */
        if (ELF64_ST_TYPE(sym[i].st_info) == STT_FUNC &&
                sym[i].st_shndx != SHN_UNDEF &&
                strcmp(str + sym[i].st_name, VDSO_GETTIME) == 0)
            return (uint64_t)(bias + sym[i].st_value);
    }
    return 0;
}
