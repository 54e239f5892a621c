/*
 * KVM plumbing shared by the tender and kvm_exit_floor: VM, memory slot and
 * vCPU creation. Arch-specific register setup is in setup_<arch>.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tender.h"

/* The tender and kvm_exit_floor both report as "tender". */
const char *const tender_name = "tender";

void vm_create(struct vm *vm, uint64_t mem_size)
{
    memset(vm, 0, sizeof *vm);
    vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (vm->kvm_fd < 0)
        die("cannot open /dev/kvm: %s", strerror(errno));
    int ver = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
    if (ver != KVM_API_VERSION)
        die("unsupported KVM API version %d", ver);
    do {
        vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
    } while (vm->vm_fd < 0 && errno == EINTR);
    if (vm->vm_fd < 0)
        die("KVM_CREATE_VM: %s", strerror(errno));

    /* NORESERVE: untouched guest memory costs nothing on the host. */
    void *mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED)
        die("cannot allocate %llu bytes of guest memory: %s",
            (unsigned long long)mem_size, strerror(errno));
    vm->mem = mem;
    vm->mem_size = mem_size;

    struct kvm_userspace_memory_region region = {
        .slot = 0,
        .flags = 0,
        .guest_phys_addr = 0,
        .memory_size = mem_size,
        .userspace_addr = (uint64_t)(uintptr_t)mem,
    };
    if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
        die("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));

    vm->vcpu_fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, 0);
    if (vm->vcpu_fd < 0)
        die("KVM_CREATE_VCPU: %s", strerror(errno));
    int sz = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (sz < (int)sizeof(struct kvm_run))
        die("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
    vm->run_size = (size_t)sz;
    vm->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
            vm->vcpu_fd, 0);
    if (vm->run == MAP_FAILED)
        die("mmap kvm_run: %s", strerror(errno));
}
