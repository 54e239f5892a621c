/*
 * Raw hypercall entry, exposed for test guests that must issue deliberately
 * malformed hypercalls. Normal apps use solo5.h only.
 */
#ifndef SOLO5_HC_H
#define SOLO5_HC_H

#include <stdint.h>
#include "hc_abi.h"

static inline void hc_raw(unsigned nr, uint32_t arg_gpa)
{
#if defined(__x86_64__)
    /* One OUT = one exit; the port encodes nr, EAX carries the argument. */
    __asm__ __volatile__("outl %0, %w1"
            :
            : "a"(arg_gpa), "Nd"((uint16_t)(HC_PIO_BASE + nr))
            : "memory");
#elif defined(__aarch64__)
    /*
     * Plain STR (no writeback) so the data abort has a valid syndrome and
     * KVM can report it as an MMIO exit.
     */
    volatile uint32_t *p = (volatile uint32_t *)(uintptr_t)
        (HC_MMIO_BASE + nr * HC_MMIO_STRIDE);
    __asm__ __volatile__("str %w0, [%1]"
            :
            : "r"(arg_gpa), "r"(p)
            : "memory");
#else
#error unsupported architecture
#endif
}

/*
 * Typed hypercall: argp points to an hc_* struct. The "+m" operand tells the
 * compiler the tender reads and writes *argp, so the stores before and the
 * loads after the exit can't be elided or reordered even when inlined (the
 * address alone, truncated to 32 bits, would not make the struct escape).
 * Identity-mapped guest below 4 GiB: the pointer is the GPA.
 */
#if defined(__x86_64__)
#define hc_call(nr, argp) \
    __asm__ __volatile__("outl %1, %w2" \
            : "+m"(*(argp)) \
            : "a"((uint32_t)(uintptr_t)(argp)), \
              "Nd"((uint16_t)(HC_PIO_BASE + (nr))) \
            : "memory")
#elif defined(__aarch64__)
#define hc_call(nr, argp) \
    __asm__ __volatile__("str %w1, [%2]" \
            : "+m"(*(argp)) \
            : "r"((uint32_t)(uintptr_t)(argp)), \
              "r"((uintptr_t)(HC_MMIO_BASE + (nr) * HC_MMIO_STRIDE)) \
            : "memory")
#endif

#endif
