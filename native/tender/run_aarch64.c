/*
 * aarch64 run loop. A hypercall is a 32-bit store to
 * HC_MMIO_BASE + nr * HC_MMIO_STRIDE (unbacked, so KVM exits with
 * KVM_EXIT_MMIO); the stored value is the argument GPA and is delivered in
 * the exit data, so the hot path is one KVM_RUN per hypercall.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "tender.h"

#define SYSREG(op0, op1, crn, crm, op2) ARM64_SYS_REG(op0, op1, crn, crm, op2)
#define REG_ESR_EL1 SYSREG(3, 0, 5, 2, 0)
#define REG_FAR_EL1 SYSREG(3, 0, 6, 0, 0)
#define REG_ELR_EL1 (KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | \
        KVM_REG_ARM_CORE_REG(elr_el1))
#define REG_PC      (KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | \
        KVM_REG_ARM_CORE_REG(regs.pc))

static uint64_t get_reg(struct vm *vm, uint64_t id)
{
    uint64_t v = 0;
    struct kvm_one_reg r = { .id = id, .addr = (uint64_t)(uintptr_t)&v };
    if (ioctl(vm->vcpu_fd, KVM_GET_ONE_REG, &r) < 0)
        return ~0ull;
    return v;
}

static void __attribute__((noreturn))
guest_exception(struct vm *vm, uint32_t vec)
{
    guest_fault("unhandled guest exception (vector %u): ESR_EL1=0x%llx "
            "ELR_EL1=0x%llx FAR_EL1=0x%llx", vec,
            (unsigned long long)get_reg(vm, REG_ESR_EL1),
            (unsigned long long)get_reg(vm, REG_ELR_EL1),
            (unsigned long long)get_reg(vm, REG_FAR_EL1));
}

void arch_run(struct vm *vm)
{
    struct kvm_run *run = vm->run;
    for (;;) {
        kvm_run_vcpu(vm);
        if (__builtin_expect(run->exit_reason == KVM_EXIT_MMIO, 1)) {
            uint64_t off = run->mmio.phys_addr - HC_MMIO_BASE;
            unsigned nr = (unsigned)(off / HC_MMIO_STRIDE);
            if (__builtin_expect(run->mmio.phys_addr < HC_MMIO_BASE ||
                    off % HC_MMIO_STRIDE != 0 || nr >= HC_MAX ||
                    !run->mmio.is_write || run->mmio.len != 4, 0))
                guest_fault("guest accessed unbacked address 0x%llx "
                        "(%s, %u bytes, pc=0x%llx)",
                        (unsigned long long)run->mmio.phys_addr,
                        run->mmio.is_write ? "write" : "read",
                        run->mmio.len,
                        (unsigned long long)get_reg(vm, REG_PC));
            uint32_t val;
            memcpy(&val, run->mmio.data, sizeof val);   /* little-endian */
            if (__builtin_expect(nr == HC_EXCEPTION, 0))
                guest_exception(vm, val);
            hc_dispatch(nr, val);
            continue;
        }
        switch (run->exit_reason) {
        case KVM_EXIT_SYSTEM_EVENT:
            guest_fault("guest system event %u (PSCI shutdown/reset?)",
                    run->system_event.type);
        case KVM_EXIT_FAIL_ENTRY:
            die("KVM entry failed, hardware reason 0x%llx",
                (unsigned long long)
                run->fail_entry.hardware_entry_failure_reason);
        case KVM_EXIT_INTERNAL_ERROR:
            guest_fault("KVM internal error, suberror %u",
                    run->internal.suberror);
        default:
            guest_fault("unexpected KVM exit reason %u (pc=0x%llx)",
                    run->exit_reason,
                    (unsigned long long)get_reg(vm, REG_PC));
        }
    }
}
