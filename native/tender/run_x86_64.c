/*
 * x86_64 run loop. A hypercall is "outl %eax, $port": nr comes from the
 * port and the argument GPA from the exit data in the shared kvm_run page,
 * so the hot path is exactly one KVM_RUN ioctl per hypercall.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "tender.h"

static void __attribute__((noreturn))
fault_with_regs(struct vm *vm, const char *what)
{
    struct kvm_regs r;
    if (ioctl(vm->vcpu_fd, KVM_GET_REGS, &r) == 0)
        guest_fault("%s (rip=0x%llx rsp=0x%llx)", what,
                (unsigned long long)r.rip, (unsigned long long)r.rsp);
    guest_fault("%s", what);
}

void arch_run(struct vm *vm)
{
    struct kvm_run *run = vm->run;
    for (;;) {
        kvm_run_vcpu(vm);
        if (__builtin_expect(run->exit_reason == KVM_EXIT_IO, 1)) {
            unsigned nr = (unsigned)run->io.port - HC_PIO_BASE;
            if (__builtin_expect(nr >= HC_MAX ||
                    run->io.direction != KVM_EXIT_IO_OUT ||
                    run->io.size != 4 || run->io.count != 1, 0))
                guest_fault("unexpected port I/O: port 0x%x dir %u size %u "
                        "count %u", run->io.port, run->io.direction,
                        run->io.size, run->io.count);
            uint32_t gpa;
            memcpy(&gpa, (uint8_t *)run + run->io.data_offset, sizeof gpa);
            hc_dispatch(nr, gpa);
            continue;
        }
        switch (run->exit_reason) {
        case KVM_EXIT_HLT:
            fault_with_regs(vm, "guest executed HLT");
        case KVM_EXIT_SHUTDOWN:
            fault_with_regs(vm, "guest triple fault (unhandled exception, "
                    "e.g. access outside guest memory)");
        case KVM_EXIT_MMIO:
            guest_fault("guest accessed unbacked physical address 0x%llx",
                    (unsigned long long)run->mmio.phys_addr);
        case KVM_EXIT_FAIL_ENTRY:
            die("KVM entry failed, hardware reason 0x%llx",
                (unsigned long long)
                run->fail_entry.hardware_entry_failure_reason);
        case KVM_EXIT_INTERNAL_ERROR:
            fprintf(stderr, "tender: KVM internal error, suberror %u\n",
                    run->internal.suberror);
            fault_with_regs(vm, "KVM internal error (e.g. emulation failure)");
        default:
            guest_fault("unexpected KVM exit reason %u", run->exit_reason);
        }
    }
}
