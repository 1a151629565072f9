/*
 * kernel.h - definitions shared by the SDK kernel's assembly and C.
 *
 * The kernel is the only code of a guest image that runs at CPL0. On PVM
 * every CPL0 instruction is emulated (about 0.55 us each) and the emulator
 * has no SSE, x87, AVX, XSAVE, int3, int n, rdtscp or cmpxchg16b, so this
 * code is plain integer, short, and is checked for those instructions at
 * build time (tools/check-cpl0.sh).
 *
 * Nothing the kernel does may depend on its own start-up code having run:
 * with `--entry user` the VMM builds the GDT, IDT and TSS itself and starts
 * the program at CPL3 directly. Devices (LAPIC timer, UART interrupts) are
 * therefore set up lazily, on first use, by the syscalls that need them.
 */
#ifndef RW_GUEST_KERNEL_H
#define RW_GUEST_KERNEL_H

#include "rw/abi.h"

/* Interrupt stubs sit at rw_k_isr_table + vector * RW_K_STUB_SIZE. */
#define RW_K_STUB_SIZE 16

/*
 * The gates the kernel installs: exceptions 0..31, the LAPIC timer (0x20),
 * the UART (0x24), the syscall gate (0x80, DPL3) and the spurious vector.
 * entry.S emits a stub and a note entry for exactly these; kernel.c fills
 * the same gates. Anything else arriving on an absent gate becomes #GP,
 * which is reported as a crash.
 */
#define RW_K_VEC_PRESENT(v)                                                          \
	((v) <= RW_VEC_TIMER || (v) == RW_VEC_SERIAL || (v) == RW_VEC_SYSCALL ||     \
	 (v) == RW_VEC_SPURIOUS)

/* Exceptions whose frame carries an error code. */
#define RW_K_HAS_ERRCODE(v)                                                          \
	((v) == 8 || ((v) >= 10 && (v) <= 14) || (v) == 17 || (v) == 21 || (v) == 29 || \
	 (v) == 30)

/* Frame pushed by the interrupt stubs and rw_k_isr_common, in 8-byte slots. */
#define RW_K_FRAME_SIZE (16 * 8)

#ifndef RW_ABI_ASM
struct rw_k_frame {
	uint64_t r11, r10, r9, r8, rdi, rsi, rdx, rcx, rax;
	uint64_t vector, error;
	uint64_t rip, cs, rflags, rsp, ss; /* pushed by the CPU */
};

_Static_assert(sizeof(struct rw_k_frame) == RW_K_FRAME_SIZE, "frame layout");

void rw_k_trap(struct rw_k_frame *f);
uint64_t rw_k_setup(uint64_t cpu);
#endif

#endif
