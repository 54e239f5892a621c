/*
 * x86_64 vCPU setup: enter the guest directly in 64-bit long mode with an
 * identity map built here, so guests need no real/protected-mode boot code.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <elf.h>

#include "tender.h"

const uint16_t arch_elf_machine = EM_X86_64;

#define CR0_PE (1ull << 0)
#define CR0_MP (1ull << 1)
#define CR0_ET (1ull << 4)
#define CR0_NE (1ull << 5)
#define CR0_WP (1ull << 16)
#define CR0_PG (1ull << 31)
#define CR4_PAE (1ull << 5)
#define CR4_OSFXSR (1ull << 9)
#define CR4_OSXMMEXCPT (1ull << 10)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)

#define PTE_P  (1ull << 0)
#define PTE_RW (1ull << 1)
#define PTE_PS (1ull << 7)

/* Page-table pages inside the fixed low area (see hc_abi.h). */
#define PML4_GPA (HC_PT_GPA + 0x0000)
#define PDPT_GPA (HC_PT_GPA + 0x1000)
#define PD_GPA   (HC_PT_GPA + 0x2000)   /* up to 3 PDs: 3 GiB */
#define PT0_GPA  (HC_PT_GPA + 0x5000)   /* 4 KiB pages for the first 2 MiB */

static void put64(struct vm *vm, uint64_t gpa, uint64_t v)
{
    memcpy(vm->mem + gpa, &v, sizeof v);
}

static void build_page_tables(struct vm *vm)
{
    uint64_t n2m = vm->mem_size >> 21;   /* mem_size is 2 MiB aligned */
    memset(vm->mem + HC_PT_GPA, 0, 0x6000);
    put64(vm, PML4_GPA, PDPT_GPA | PTE_P | PTE_RW);
    for (uint64_t g = 0; g < (n2m + 511) / 512; g++)
        put64(vm, PDPT_GPA + g * 8, (PD_GPA + g * 0x1000) | PTE_P | PTE_RW);
    /* First 2 MiB via 4 KiB pages so page 0 can be left unmapped (NULL). */
    put64(vm, PD_GPA, PT0_GPA | PTE_P | PTE_RW);
    for (uint64_t i = 1; i < 512; i++)
        put64(vm, PT0_GPA + i * 8, (i << 12) | PTE_P | PTE_RW);
    /* RAM only: a stray access past the end faults instead of exiting. */
    for (uint64_t i = 1; i < n2m; i++)
        put64(vm, PD_GPA + i * 8, (i << 21) | PTE_P | PTE_RW | PTE_PS);
}

static void set_cpuid(struct vm *vm)
{
    /* Expose host-supported features (SSE etc.) to the guest. */
    int n = 64;
    for (;;) {
        struct kvm_cpuid2 *c = calloc(1, sizeof *c +
                (size_t)n * sizeof(struct kvm_cpuid_entry2));
        if (!c)
            die("out of memory");
        c->nent = (uint32_t)n;
        if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
            if (ioctl(vm->vcpu_fd, KVM_SET_CPUID2, c) < 0)
                die("KVM_SET_CPUID2: %s", strerror(errno));
            free(c);
            return;
        }
        free(c);
        if (errno != E2BIG || n > 4096)
            die("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
        n *= 2;
    }
}

void arch_vcpu_init(struct vm *vm, uint64_t entry, uint64_t stack_top,
        uint64_t arg0)
{
    if (vm->mem_size > HC_GUEST_MEM_MAX || vm->mem_size < (4ull << 20))
        die("guest memory size out of range");
    /* Required on Intel before the first KVM_RUN; lies above guest RAM. */
    if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000ul) < 0)
        die("KVM_SET_TSS_ADDR: %s", strerror(errno));
    set_cpuid(vm);
    build_page_tables(vm);

    /* Flat GDT: null, 64-bit code (0x08), data (0x10). */
    put64(vm, HC_GDT_GPA + 0, 0);
    put64(vm, HC_GDT_GPA + 8, 0x00af9b000000ffffull);
    put64(vm, HC_GDT_GPA + 16, 0x00cf93000000ffffull);

    struct kvm_sregs sr;
    if (ioctl(vm->vcpu_fd, KVM_GET_SREGS, &sr) < 0)
        die("KVM_GET_SREGS: %s", strerror(errno));
    struct kvm_segment cs = {
        .base = 0, .limit = 0xffffffff, .selector = 0x08, .type = 11,
        .present = 1, .dpl = 0, .db = 0, .s = 1, .l = 1, .g = 1,
    };
    struct kvm_segment ds = {
        .base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 3,
        .present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1,
    };
    sr.cs = cs;
    sr.ds = sr.es = sr.fs = sr.gs = sr.ss = ds;
    /*
     * VMX requires a 64-bit busy TSS in TR for long mode; with the reset
     * value (16-bit TSS) KVM would fall back to (slow, partial) emulation.
     */
    struct kvm_segment tr = {
        .base = 0, .limit = 0x67, .selector = 0x18, .type = 11,
        .present = 1, .dpl = 0, .db = 0, .s = 0, .l = 0, .g = 0,
    };
    sr.tr = tr;
    sr.gdt.base = HC_GDT_GPA;
    sr.gdt.limit = 3 * 8 - 1;
    sr.idt.base = 0;
    sr.idt.limit = 0;   /* no IDT: any exception triple-faults -> SHUTDOWN */
    sr.cr3 = PML4_GPA;
    sr.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    sr.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    sr.efer = EFER_LME | EFER_LMA;
    if (ioctl(vm->vcpu_fd, KVM_SET_SREGS, &sr) < 0)
        die("KVM_SET_SREGS: %s", strerror(errno));

    struct kvm_regs r;
    memset(&r, 0, sizeof r);
    r.rip = entry;
    r.rsp = stack_top;
    r.rdi = arg0;
    r.rsi = stack_top;
    r.rflags = 0x2;     /* bit 1 is reserved-one; IF off */
    if (ioctl(vm->vcpu_fd, KVM_SET_REGS, &r) < 0)
        die("KVM_SET_REGS: %s", strerror(errno));
}
