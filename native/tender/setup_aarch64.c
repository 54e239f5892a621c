/*
 * aarch64 vCPU setup: start at EL1h with the MMU already on, using an
 * identity map built here (4 KiB granule, 32-bit VA). RAM is Normal WB
 * memory; 3..4 GiB is Device-nGnRnE so hypercall stores reach the tender as
 * MMIO exits with a valid syndrome.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <elf.h>

#include "tender.h"

const uint16_t arch_elf_machine = EM_AARCH64;

/* PSTATE: EL1h, all of D/A/I/F masked (guests take no interrupts). */
#define PSTATE_EL1H   0x5ull
#define PSTATE_DAIF   (0xfull << 6)

#define SYSREG(op0, op1, crn, crm, op2) ARM64_SYS_REG(op0, op1, crn, crm, op2)
#define REG_SCTLR_EL1 SYSREG(3, 0, 1, 0, 0)
#define REG_CPACR_EL1 SYSREG(3, 0, 1, 0, 2)
#define REG_TTBR0_EL1 SYSREG(3, 0, 2, 0, 0)
#define REG_TTBR1_EL1 SYSREG(3, 0, 2, 0, 1)
#define REG_TCR_EL1   SYSREG(3, 0, 2, 0, 2)
#define REG_MAIR_EL1  SYSREG(3, 0, 10, 2, 0)

#define CORE_REG(field) (KVM_REG_ARM64 | KVM_REG_SIZE_U64 | \
        KVM_REG_ARM_CORE | KVM_REG_ARM_CORE_REG(field))

/* MAIR: attr0 = Device-nGnRnE, attr1 = Normal, inner/outer WB RW-allocate. */
#define MAIR_VALUE    0xff00ull
#define ATTR_DEVICE   (0ull << 2)
#define ATTR_NORMAL   (1ull << 2)

/* Descriptor bits */
#define DESC_TABLE    0x3ull        /* L1/L2 table pointer */
#define DESC_BLOCK    0x1ull        /* L1/L2 block */
#define DESC_PAGE     0x3ull        /* L3 page */
#define DESC_AF       (1ull << 10)
#define DESC_SH_INNER (3ull << 8)
#define DESC_PXN      (1ull << 53)
#define DESC_UXN      (1ull << 54)

/*
 * TCR: T0SZ=32 (4 GiB, walk starts at level 1), inner/outer WB WA walks,
 * inner shareable, TG0=4K; TTBR1 walks disabled (EPD1) with a valid TG1;
 * IPS=0 (32-bit PA).
 */
#define TCR_VALUE ((32ull << 0) | (1ull << 8) | (1ull << 10) | (3ull << 12) | \
        (0ull << 14) | (32ull << 16) | (1ull << 23) | (2ull << 30))

/* SCTLR: RES1 bits of ARMv8.0 + M (MMU), C, SA, I. Alignment checks off. */
#define SCTLR_RES1    0x30d00800ull
#define SCTLR_VALUE   (SCTLR_RES1 | (1ull << 0) | (1ull << 2) | (1ull << 3) | \
        (1ull << 12))

#define CPACR_FPEN    (3ull << 20)  /* don't trap FP/SIMD (defensive) */

/* Page-table pages inside the fixed low area (see hc_abi.h). */
#define L1_GPA  (HC_PT_GPA + 0x0000)
#define L2_GPA  (HC_PT_GPA + 0x1000)   /* 3 tables: 3 GiB of RAM */
#define L3_GPA  (HC_PT_GPA + 0x5000)   /* 4 KiB pages for the first 2 MiB */

static void put64(struct vm *vm, uint64_t gpa, uint64_t v)
{
    memcpy(vm->mem + gpa, &v, sizeof v);
}

static void set_reg(struct vm *vm, uint64_t id, uint64_t v)
{
    struct kvm_one_reg r = { .id = id, .addr = (uint64_t)(uintptr_t)&v };
    if (ioctl(vm->vcpu_fd, KVM_SET_ONE_REG, &r) < 0)
        die("KVM_SET_ONE_REG 0x%llx: %s", (unsigned long long)id,
            strerror(errno));
}

static void build_page_tables(struct vm *vm)
{
    uint64_t n2m = vm->mem_size >> 21;   /* mem_size is 2 MiB aligned */
    memset(vm->mem + HC_PT_GPA, 0, 0x6000);
    for (uint64_t g = 0; g < (n2m + 511) / 512; g++)
        put64(vm, L1_GPA + g * 8, (L2_GPA + g * 0x1000) | DESC_TABLE);
    /* 3..4 GiB: device memory for the hypercall MMIO window. */
    put64(vm, L1_GPA + 3 * 8, 0xc0000000ull | DESC_BLOCK | ATTR_DEVICE |
            DESC_AF | DESC_PXN | DESC_UXN);
    /* First 2 MiB via 4 KiB pages so page 0 stays unmapped (NULL). */
    put64(vm, L2_GPA, L3_GPA | DESC_TABLE);
    for (uint64_t i = 1; i < 512; i++)
        put64(vm, L3_GPA + i * 8, (i << 12) | DESC_PAGE | ATTR_NORMAL |
                DESC_SH_INNER | DESC_AF);
    /* RAM only: a stray access past the end faults. */
    for (uint64_t i = 1; i < n2m; i++)
        put64(vm, L2_GPA + i * 8, (i << 21) | DESC_BLOCK | ATTR_NORMAL |
                DESC_SH_INNER | DESC_AF);
}

void arch_vcpu_init(struct vm *vm, uint64_t entry, uint64_t stack_top,
        uint64_t arg0)
{
    if (vm->mem_size > HC_GUEST_MEM_MAX || vm->mem_size < (4ull << 20))
        die("guest memory size out of range");

    struct kvm_vcpu_init init;
    memset(&init, 0, sizeof init);
    if (ioctl(vm->vm_fd, KVM_ARM_PREFERRED_TARGET, &init) < 0)
        die("KVM_ARM_PREFERRED_TARGET: %s", strerror(errno));
    if (ioctl(vm->vcpu_fd, KVM_ARM_VCPU_INIT, &init) < 0)
        die("KVM_ARM_VCPU_INIT: %s", strerror(errno));

    build_page_tables(vm);

    set_reg(vm, REG_MAIR_EL1, MAIR_VALUE);
    set_reg(vm, REG_TCR_EL1, TCR_VALUE);
    set_reg(vm, REG_TTBR0_EL1, L1_GPA);
    set_reg(vm, REG_TTBR1_EL1, 0);
    set_reg(vm, REG_CPACR_EL1, CPACR_FPEN);
    set_reg(vm, REG_SCTLR_EL1, SCTLR_VALUE);

    set_reg(vm, CORE_REG(regs.pstate), PSTATE_EL1H | PSTATE_DAIF);
    set_reg(vm, CORE_REG(sp_el1), stack_top);
    set_reg(vm, CORE_REG(regs.regs[0]), arg0);
    set_reg(vm, CORE_REG(regs.regs[1]), stack_top);
    set_reg(vm, CORE_REG(regs.pc), entry);
}
