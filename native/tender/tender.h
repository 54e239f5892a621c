/*
 * Internal interface between the generic tender (tender.c: hypercall
 * handlers, guest loading) and the KVM code: kvm_common.c and the per-arch
 * setup_<arch>.c and run_<arch>.c. die() (host.h) prints "tender: error:".
 */
#ifndef TENDER_H
#define TENDER_H

#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>

#include "hc_abi.h"
#include "host.h"

struct vm {
    int kvm_fd, vm_fd, vcpu_fd;
    struct kvm_run *run;
    size_t run_size;
    uint8_t *mem;          /* host mapping of guest-physical [0, mem_size) */
    uint64_t mem_size;
};

/* Guest misbehaved: report, write stats, exit(255). */
void guest_fault(const char *fmt, ...)
    __attribute__((noreturn, format(printf, 1, 2)));

/* Open /dev/kvm, create VM + vCPU, map memory into slot 0. */
void vm_create(struct vm *vm, uint64_t mem_size);

/* Arch: build page tables and set the vCPU to start at entry. */
void arch_vcpu_init(struct vm *vm, uint64_t entry, uint64_t stack_top,
        uint64_t arg0);
/* ELF e_machine value this tender accepts. */
extern const uint16_t arch_elf_machine;

/*
 * Arch run loop: KVM_RUN until the guest exits. Calls hc_dispatch() for each
 * hypercall. Never returns.
 */
void arch_run(struct vm *vm) __attribute__((noreturn));

/* Generic: handle hypercall nr with argument GPA (already range-checked nr). */
void hc_dispatch(unsigned nr, uint64_t arg_gpa);

/* Set by the SIGINT/SIGTERM handler; checked when KVM_RUN returns EINTR. */
extern volatile int tender_signalled;
void tender_signal_exit(void) __attribute__((noreturn));
/* One KVM_RUN of the vCPU, retried on EINTR/EAGAIN; exits on a signal. */
void kvm_run_vcpu(struct vm *vm);

#endif
