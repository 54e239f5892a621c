/*
 * kvm_exit_floor: the physical floor for a hypercall on this host. Runs a
 * tiny guest (long mode on x86_64, EL1 with MMU on aarch64) that does N
 * port-I/O writes (x86_64) / MMIO stores (aarch64) in a loop, with the host
 * doing nothing but re-entering. Prints:
 *   exit_floor n=<N> total_ns=<T> ns_per_exit=<X>
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "tender.h"

#define CODE_GPA 0x100000ull
#define MEM_SIZE (4ull << 20)

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#if defined(__x86_64__)
/* loop: out %eax,(%dx); dec %ecx; jnz loop; hlt */
static const uint8_t guest_code[] = {
    0xef, 0xff, 0xc9, 0x75, 0xfb, 0xf4,
};

static void setup_regs(struct vm *vm, uint64_t n)
{
    struct kvm_regs r;
    if (ioctl(vm->vcpu_fd, KVM_GET_REGS, &r) < 0)
        die("KVM_GET_REGS: %s", strerror(errno));
    r.rcx = n;
    r.rdx = HC_PIO_BASE;
    r.rax = 0;
    if (ioctl(vm->vcpu_fd, KVM_SET_REGS, &r) < 0)
        die("KVM_SET_REGS: %s", strerror(errno));
}

/* 1 = counted exit, 0 = done */
static int classify(struct kvm_run *run)
{
    if (run->exit_reason == KVM_EXIT_IO && run->io.port == HC_PIO_BASE)
        return 1;
    if (run->exit_reason == KVM_EXIT_HLT)
        return 0;
    die("unexpected exit reason %u", run->exit_reason);
}
#elif defined(__aarch64__)
/*
 * loop: str w1, [x0]; subs x2, x2, #1; b.ne loop; str w1, [x3]; b .
 * x0 = counted MMIO address, x3 = "done" MMIO address.
 */
static const uint32_t guest_code[] = {
    0xb9000001, 0xf1000442, 0x54ffffc1, 0xb9000061, 0x14000000,
};

static void set_xreg(struct vm *vm, unsigned idx, uint64_t v)
{
    struct kvm_one_reg reg = {
        .id = KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE |
              (KVM_REG_ARM_CORE_REG(regs.regs[0]) + idx * 2),
        .addr = (uint64_t)(uintptr_t)&v,
    };
    if (ioctl(vm->vcpu_fd, KVM_SET_ONE_REG, &reg) < 0)
        die("KVM_SET_ONE_REG x%u: %s", idx, strerror(errno));
}

static void setup_regs(struct vm *vm, uint64_t n)
{
    set_xreg(vm, 0, HC_MMIO_BASE);
    set_xreg(vm, 1, 0);
    set_xreg(vm, 2, n);
    set_xreg(vm, 3, HC_MMIO_BASE + HC_MMIO_STRIDE);
}

static int classify(struct kvm_run *run)
{
    if (run->exit_reason == KVM_EXIT_MMIO && run->mmio.is_write) {
        if (run->mmio.phys_addr == HC_MMIO_BASE)
            return 1;
        if (run->mmio.phys_addr == HC_MMIO_BASE + HC_MMIO_STRIDE)
            return 0;
    }
    die("unexpected exit reason %u", run->exit_reason);
}
#else
#error unsupported architecture
#endif

int main(int argc, char **argv)
{
    uint64_t n = 200000;
    if (argc > 2) {
        fprintf(stderr, "usage: kvm_exit_floor [N]\n");
        return 1;
    }
    if (argc == 2) {
        char *end;
        errno = 0;
        n = strtoull(argv[1], &end, 10);
        if (errno || end == argv[1] || *end || argv[1][0] == '-' || n == 0 ||
                n > 0xffffffffull)
            die("bad N '%s' (1..4294967295)", argv[1]);
    }

    struct vm vm;
    vm_create(&vm, MEM_SIZE);
    memcpy(vm.mem + CODE_GPA, guest_code, sizeof guest_code);
    arch_vcpu_init(&vm, CODE_GPA, MEM_SIZE, 0);
    setup_regs(&vm, n);

    uint64_t count = 0;
    uint64_t t0 = now_ns();
    for (;;) {
        if (ioctl(vm.vcpu_fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR)
                continue;
            die("KVM_RUN: %s", strerror(errno));
        }
        if (!classify(vm.run))
            break;
        count++;
    }
    uint64_t t = now_ns() - t0;
    if (count != n)
        die("expected %llu exits, saw %llu", (unsigned long long)n,
            (unsigned long long)count);
    printf("exit_floor n=%llu total_ns=%llu ns_per_exit=%.1f\n",
           (unsigned long long)n, (unsigned long long)t, (double)t / (double)n);
    return 0;
}
