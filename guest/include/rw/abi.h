/*
 * rw/abi.h - the contract between rewind (the VMM) and guest images.
 *
 * This header is shared, byte for byte, by the VMM and the guest SDK. It is
 * plain C with fixed-width types only, so that it compiles freestanding in
 * the guest and hosted in the VMM. Everything here is ABI: change a value and
 * old images stop working, so bump RW_ABI_VERSION.
 *
 * Machine model (x86-64, long mode from the first instruction)
 * ------------------------------------------------------------
 * rewind loads the PT_LOAD segments of a static ELF64 image at their
 * physical addresses (p_paddr, at or above RW_GPA_IMAGE_MIN), builds the
 * page tables described below and starts every vCPU in 64-bit mode. There is
 * no real mode, no BIOS and no firmware.
 *
 * Guest-physical layout:
 *
 *   0x00000000  page 0: never mapped (a NULL dereference faults)
 *   0x00001000  struct rw_boot_info (one page, written by the VMM)
 *   0x00002000  GDT          (RW_GPA_GDT, one page)
 *   0x00003000  IDT          (RW_GPA_IDT, one page, 256 gates)
 *   0x00004000  TSS array    (RW_GPA_TSS, RW_TSS_STRIDE bytes per vCPU)
 *   0x00008000  args string  (RW_GPA_ARGS, NUL-terminated, < RW_ARGS_MAX)
 *   0x00010000  page tables  (RW_GPA_PGTABLE .. RW_GPA_PGTABLE_END)
 *   0x00100000  the image (RW_GPA_IMAGE_MIN), then per-vCPU stacks, then
 *               free RAM described by rw_boot_info.ram[] and .free_start
 *   0xd0000000  virtio-mmio windows (RW_GPA_VIRTIO_BASE, 4 KiB each)
 *   0xfe000000  hypercall doorbell page (RW_GPA_HYPERCALL)
 *   0xfec00000  IOAPIC,  0xfee00000  LAPIC (xAPIC MMIO)
 *   RAM above 3 GiB continues at 4 GiB (the 32-bit PCI hole is [3G, 4G)).
 *
 * Paging: an identity map (virtual == physical) of [0, 4 GiB) and of all RAM
 * above 4 GiB, 2 MiB pages except the first 2 MiB, which uses 4 KiB pages so
 * that page 0 can be left unmapped. Every mapping has U/S=1 and R/W=1: the
 * CPL3 program may touch all of RAM (it is the only program), and its MMIO
 * stores reach the hypercall page and virtio windows directly.
 *
 * Segments (RW_SEL_*): flat 64-bit kernel code/data at DPL0, user code/data
 * at DPL3 in the order SYSRET expects, then one 16-byte TSS descriptor per
 * vCPU. RSP0 in vCPU n's TSS is the top of its kernel stack.
 *
 * Entry. Two ways, chosen by the VMM (rewind run --entry kernel|user):
 *   kernel: every vCPU starts at CPL0 at rw_image_note.kernel_entry with
 *           RDI = vCPU index, RSI = RW_GPA_BOOT_INFO, RSP = its kernel stack
 *           top, interrupts off, and only paging set up (CR3, a bootstrap
 *           GDT). The kernel builds the GDT/IDT/TSS itself and iretq's to
 *           user_entry at CPL3.
 *   user:   the VMM writes the same GDT/IDT/TSS the kernel would have built
 *           (gate targets from rw_image_note.vectors), loads them through
 *           KVM_SET_SREGS and starts every vCPU at CPL3 at user_entry, skipping
 *           the CPL0 start-up code entirely.
 *   In both cases user_entry runs with RDI = vCPU index, RSI =
 *   RW_GPA_BOOT_INFO, RSP = the vCPU's user stack top (16-byte aligned),
 *   RFLAGS = 0x202 (IF=1, IOPL=0), CR4.OSFXSR/OSXMMEXCPT set and XCR0 =
 *   what the host allows, so user code may use SSE/AVX.
 *
 * The image note. An SDK image carries one ELF note (in a PT_NOTE segment)
 * with name "rewind" and type RW_NOTE_TYPE_IMAGE whose descriptor is a
 * struct rw_image_note. An image without it is a "bare" 64-bit kernel: it is
 * entered at CPL0 at e_entry as in "kernel" mode above.
 *
 * Hypercalls (guest -> VMM)
 * -------------------------
 * A hypercall is one 8-byte *load* from the doorbell page:
 *
 *     mov  RW_GPA_HYPERCALL + 8 * nr, %rax
 *
 * nr is the hypercall number (RW_HC_*), the arguments are in RDI, RSI, RDX
 * and RCX, and the value loaded (into RAX by the SDK's convention; any
 * register works) is the result: >= 0 on success, a negative errno on
 * failure. A load from CPL3 is the cheapest exit the platform offers, it
 * needs no privilege, and it works unchanged at CPL0.
 *
 * A one-way hypercall is an 8-byte *store* to the same address, with the
 * same arguments; the stored value is ignored and nothing is returned. The
 * VMM handles it exactly like the load form. It suits calls that hand
 * control to the host for good (RW_HC_DONE, RW_HC_CRASH_SOFT when a harness
 * is attached, RW_HC_EXIT): a store exit leaves nothing for the VMM to
 * complete, so the host can replace the vCPU's state at once.
 *
 * Any other access to the doorbell page (a size other than 8, an unaligned
 * offset) is ignored and reads return all ones, as for any unassigned
 * address.
 *
 * Guest syscalls (CPL3 -> the SDK's CPL0 kernel)
 * ---------------------------------------------
 * `int $0x80` with RAX = RW_SYS_* number, arguments in RDI, RSI, RDX; the
 * result comes back in RAX. Vector 0x80 is a DPL3 interrupt gate. On
 * platforms where `int n` at CPL3 raises #UD instead (PVM), the kernel's #UD
 * handler recognises the two bytes CD 80 at the faulting RIP and runs the
 * same syscall, so guests use one instruction everywhere.
 */
#ifndef RW_GUEST_ABI_H
#define RW_GUEST_ABI_H

/*
 * From assembly (.S files, or with __KERNEL_RW_ASM__ defined) only the
 * numeric constants are visible, without C integer suffixes.
 */
#if defined(__ASSEMBLER__) || defined(__KERNEL_RW_ASM__)
#define RW_ABI_ASM 1
#define RW_U64(x) x
#define RW_U32(x) x
#else
#include <stdint.h>
#define RW_U64(x) x##ULL
#define RW_U32(x) x##u
#endif

#define RW_ABI_VERSION 1

/* ---- guest-physical layout ---- */
#define RW_GPA_BOOT_INFO RW_U64(0x1000)
#define RW_GPA_GDT RW_U64(0x2000)
#define RW_GPA_IDT RW_U64(0x3000)
#define RW_GPA_TSS RW_U64(0x4000)
#define RW_TSS_STRIDE 0x80 /* 104-byte TSS, 128-byte slots: 64 vCPUs in 8 KiB */
#define RW_GPA_ARGS RW_U64(0x8000)
#define RW_ARGS_MAX 4096
#define RW_GPA_PGTABLE RW_U64(0x10000)
#define RW_GPA_PGTABLE_END RW_U64(0x100000) /* room for 240 table pages */
#define RW_GPA_IMAGE_MIN RW_U64(0x100000)
#define RW_GPA_VIRTIO_BASE RW_U64(0xd0000000)
#define RW_VIRTIO_WINDOW RW_U64(0x1000)
#define RW_VIRTIO_MAX 16
#define RW_GPA_HYPERCALL RW_U64(0xfe000000)
#define RW_GPA_IOAPIC RW_U64(0xfec00000)
#define RW_GPA_LAPIC RW_U64(0xfee00000)
#define RW_GPA_PCI_HOLE RW_U64(0xc0000000)  /* RAM stops at 3 GiB ... */
#define RW_GPA_HIGH_RAM RW_U64(0x100000000) /* ... and resumes at 4 GiB */

/* Per-vCPU stacks the VMM reserves right after the image (page aligned). */
#define RW_KSTACK_SIZE RW_U64(0x4000)  /* 16 KiB CPL0 stack (TSS.RSP0) */
#define RW_USTACK_SIZE RW_U64(0x10000) /* 64 KiB CPL3 stack */
#define RW_MAX_VCPUS 64

/* ---- segment selectors ---- */
#define RW_SEL_KCODE 0x08
#define RW_SEL_KDATA 0x10
#define RW_SEL_UDATA 0x1b /* 0x18 | RPL3 */
#define RW_SEL_UCODE 0x23 /* 0x20 | RPL3 */
#define RW_SEL_TSS0 0x28  /* vCPU n: RW_SEL_TSS0 + 16 * n */
#define RW_GDT_ENTRIES (5 + 2 * RW_MAX_VCPUS)

/*
 * Descriptor contents, identical whether the kernel or the VMM writes them.
 * Accessed bits are preset so that loading a selector never writes to the
 * GDT. The TSS descriptor of vCPU n (16 bytes at RW_SEL_TSS0 + 16 * n) has
 * base RW_GPA_TSS + n * RW_TSS_STRIDE, limit RW_TSS_LIMIT and type 0xB
 * (busy: the kernel writes 0x9 and its ltr sets busy; the VMM writes 0xB
 * and loads TR through KVM_SET_SREGS). Each TSS holds RSP0 (offset 4) and
 * an I/O map base of RW_TSS_IOMAP (offset 0x66: no I/O bitmap).
 * IDT gates are 64-bit interrupt gates to selector RW_SEL_KCODE with
 * attribute RW_GATE_ATTR, or RW_GATE_ATTR_DPL3 for RW_VEC_SYSCALL.
 */
#define RW_DESC_KCODE RW_U64(0x00af9b000000ffff) /* 64-bit code, DPL0 */
#define RW_DESC_KDATA RW_U64(0x00cf93000000ffff) /* data, DPL0 */
#define RW_DESC_UDATA RW_U64(0x00cff3000000ffff) /* data, DPL3 */
#define RW_DESC_UCODE RW_U64(0x00affb000000ffff) /* 64-bit code, DPL3 */
#define RW_TSS_LIMIT 0x67
#define RW_TSS_IOMAP 0x68
#define RW_GATE_ATTR 0x8e00
#define RW_GATE_ATTR_DPL3 0xee00

/*
 * ---- console ----
 * A 16550A UART. The VMM leaves it as PC firmware would, FIFOs enabled, so
 * a guest never needs to write FCR (enabling the FIFOs discards received
 * bytes, and input may be waiting from the first instant).
 */
#define RW_CONSOLE_PORT 0x3f8
#define RW_CONSOLE_IRQ 4 /* IOAPIC pin / GSI */

/* ---- interrupt vectors ---- */
#define RW_VEC_SYSCALL 0x80
#define RW_VEC_TIMER 0x20  /* LAPIC timer */
#define RW_VEC_SERIAL 0x24 /* IOAPIC pin 4 (COM1) */
#define RW_VEC_SPURIOUS 0xff
#define RW_NR_VECTORS 256

/* ---- hypercalls: RW_GPA_HYPERCALL + 8 * nr ---- */
#define RW_HC_VERSION 0     /* () -> RW_ABI_VERSION */
#define RW_HC_EXIT 1        /* (code) -> does not return */
#define RW_HC_CRASH 2       /* (vector, rip, error_code, cr2) -> does not return */
#define RW_HC_HOST_WRITE 3  /* (gpa, len, seed) -> 0: host writes
			       rw_host_pattern(seed, i) into [gpa, gpa+len) */
#define RW_HC_CHECKPOINT 4  /* (label_gpa, label_len) -> checkpoint id, or
			       -ENOSYS when the VM runs without a store */
#define RW_HC_GET_PAYLOAD 5 /* (buf_gpa, cap) -> bytes written into buf (kAFL
			       GET_PAYLOAD): the host's current input */
#define RW_HC_SNAPSHOT 6    /* () -> 0 the first time (reset root taken here),
			       then resumes here after every reset with 1 */
#define RW_HC_DONE 7        /* (status) -> the host resets to the root */
#define RW_HC_CRASH_SOFT 8  /* (code, pc) a fuzz target found a bug: record
			       it and reset (kAFL PANIC) */
#define RW_HC_LOG 9         /* (buf_gpa, len) -> 0: host-side log line, for
			       diagnostics that must not touch guest state */
#define RW_HC_COVERAGE 10   /* (map_gpa, map_size) -> 0: the guest's edge
			       coverage map, see below */
#define RW_HC_NR 16

/*
 * RW_HC_COVERAGE: where the guest keeps its coverage map, so that a fuzzing
 * harness can read it without looking up symbols in the image.
 *
 * The map is map_size bytes of guest RAM at map_gpa (virtual == physical).
 * map_gpa is a multiple of RW_COV_MAP_ALIGN and map_size a power of two of
 * at least RW_COV_MAP_ALIGN, so the map is whole pages that hold nothing
 * else. Each byte counts, modulo 256 but never wrapping to 0, the times
 * the target took one edge (AFL's layout: an AFL++ harness can compare it
 * as its shared memory map).
 *
 * The guest announces the map once, before RW_HC_SNAPSHOT, and makes it all
 * zero right before that snapshot. The reset root therefore holds a zero
 * map: after a run (RW_HC_DONE, RW_HC_CRASH_SOFT, a crash) the harness
 * reads the map, and the reset that copies back the pages the run wrote
 * zeroes it for the next run at no extra cost. The host never writes the
 * map. A later call replaces the earlier one.
 *
 * Result: 0; -EINVAL (map_gpa not aligned, map_size not a power of two or
 * too small); -EFAULT (the map is not all RAM); -ENOSYS (the VMM and its
 * harness do not use coverage: the guest just goes on, counting into a map
 * nobody reads).
 */
#define RW_COV_MAP_ALIGN 4096

#ifndef RW_ABI_ASM
/*
 * The bytes RW_HC_HOST_WRITE writes: a pure function of (seed, offset) that
 * both sides can compute, so a guest can check what the host wrote.
 */
static inline uint8_t rw_host_pattern(uint64_t seed, uint64_t i)
{
	uint64_t x = seed ^ (i * RW_U64(0x9e3779b97f4a7c15));

	x ^= x >> 29;
	x *= RW_U64(0xbf58476d1ce4e5b9);
	x ^= x >> 32;
	return (uint8_t)x;
}
#endif

/* ---- guest syscalls: int $0x80, RAX = nr ---- */
#define RW_SYS_CONSOLE_WRITE 1 /* (buf, len) -> len */
#define RW_SYS_CONSOLE_READ 2  /* (buf, cap, block) -> bytes read (0 if none
				  and !block) */
#define RW_SYS_SLEEP_NS 3      /* (ns) -> 0, sleeps on the LAPIC timer */
#define RW_SYS_APIC_ID 4       /* () -> this vCPU's LAPIC id */
#define RW_SYS_HALT 5          /* () -> never: park this vCPU */
#define RW_SYS_TICKS 6         /* () -> timer interrupts seen by this vCPU */
#define RW_SYS_SPIN 7          /* () -> never: spin in the kernel with
				  interrupts off (tests a host's watchdog) */

/* ---- boot info, at RW_GPA_BOOT_INFO ---- */
#define RW_BOOT_MAGIC RW_U32(0x49425752) /* "RWBI" */
#define RW_BOOT_MAX_RAM 4
#define RW_BOOT_FLAG_USER_ENTRY RW_U32(1) /* the VMM entered CPL3 directly */

#ifndef RW_ABI_ASM
struct rw_ram_range {
	uint64_t base;
	uint64_t size;
};

struct rw_virtio_slot {
	uint64_t base;      /* MMIO window */
	uint32_t irq;       /* IOAPIC pin / GSI */
	uint32_t device_id; /* virtio device id (2 = block) */
};

struct rw_boot_info {
	uint32_t magic;       /* RW_BOOT_MAGIC */
	uint32_t abi_version; /* RW_ABI_VERSION */
	uint32_t ncpus;
	uint32_t flags;       /* RW_BOOT_FLAG_* */
	uint64_t mem_size;    /* total RAM in bytes */
	uint64_t tsc_khz;     /* 0 if unknown */
	uint64_t image_start; /* physical extent of the loaded image */
	uint64_t image_end;
	uint64_t stacks_base; /* vCPU n: kernel stack [base + n*(K+U), +K),
				 user stack right above it */
	uint64_t free_start;  /* first free page of RAM after image and stacks */
	uint64_t args_gpa;    /* RW_GPA_ARGS */
	uint32_t args_len;    /* strlen of the args string */
	uint32_t nr_ram;
	struct rw_ram_range ram[RW_BOOT_MAX_RAM];
	uint32_t nr_virtio;
	uint32_t reserved0;
	struct rw_virtio_slot virtio[RW_VIRTIO_MAX];
};
#endif

/* ---- the image note ---- */
#define RW_NOTE_NAME "rewind"
#define RW_NOTE_TYPE_IMAGE 0x5257 /* "RW" */
#define RW_IMAGE_MAGIC RW_U32(0x474d4957) /* "WIMG" */

#ifndef RW_ABI_ASM
struct rw_image_note {
	uint32_t magic;       /* RW_IMAGE_MAGIC */
	uint32_t abi_version; /* RW_ABI_VERSION the image was built against */
	uint64_t kernel_entry; /* CPL0 entry (kernel mode) */
	uint64_t user_entry;   /* CPL3 entry */
	/* CPL0 entry points of the IDT gates; 0 = not present. The syscall
	 * gate (RW_VEC_SYSCALL) is DPL3, all others DPL0. */
	uint64_t vectors[RW_NR_VECTORS];
};
#endif

#endif
