/*
 * kernel.c - the SDK kernel: tables, traps, syscalls, UART, LAPIC timer.
 *
 * Runs at CPL0, which PVM emulates one instruction at a time: every line
 * here is paid for in microseconds, so the code does the least it can and
 * touches no FP/SSE state (compiled with -mgeneral-regs-only), leaving that
 * state entirely to the CPL3 program.
 *
 * All kernel state lives in this file's statics, in guest RAM: it is part of
 * the guest, checkpointed and restored with it.
 */
#include "kernel.h"

#define ENOSYS 38

#define KSTACK RW_KSTACK_SIZE
#define CPU_STRIDE (RW_KSTACK_SIZE + RW_USTACK_SIZE)

/* 16550 UART (COM1) */
#define UART RW_CONSOLE_PORT
#define UART_RBR (UART + 0)
#define UART_IER (UART + 1)
#define UART_IIR (UART + 2)
#define UART_LCR (UART + 3)
#define UART_MCR (UART + 4)
#define UART_LSR (UART + 5)
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define UART_FIFO 16
#define UART_IRQ RW_CONSOLE_IRQ
#define IIR_FIFOS 0xc0

/* xAPIC registers */
#define LAPIC_ID 0x020
#define LAPIC_EOI 0x0b0
#define LAPIC_SVR 0x0f0
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_TMICT 0x380
#define LAPIC_TDCR 0x3e0
#define LVT_MASKED 0x10000
#define SVR_ENABLE 0x100

#define IOAPIC_SEL 0x00
#define IOAPIC_WIN 0x10
#define IOAPIC_REDIR(pin) (0x10 + 2 * (pin))

#define RX_RING 1024

typedef uint64_t u64_a4 __attribute__((aligned(4), may_alias));

extern const u64_a4 rw_k_note_desc[];

struct kcpu {
	uint64_t ticks;
	uint32_t timer_fired;
	uint32_t apic_ready;
};

static struct kcpu kcpu[RW_MAX_VCPUS];
static uint32_t console_lock;
static uint32_t uart_ready;
static uint32_t uart_burst; /* bytes per THRE: 16 with FIFOs, else 1 */

static struct {
	uint32_t lock;
	uint32_t enabled;
	uint32_t dest;    /* APIC id the UART interrupt goes to */
	uint32_t head, tail;
	uint8_t buf[RX_RING];
} rx;

/* ------------------------------------------------------------ primitives */

static inline const volatile struct rw_boot_info *boot_info(void)
{
	return (const volatile struct rw_boot_info *)RW_GPA_BOOT_INFO;
}

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;

	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline void mmio_w32(uint64_t addr, uint32_t v)
{
	*(volatile uint32_t *)addr = v;
}

static inline uint32_t mmio_r32(uint64_t addr)
{
	return *(volatile uint32_t *)addr;
}

static inline void lapic_w(uint32_t reg, uint32_t v)
{
	mmio_w32(RW_GPA_LAPIC + reg, v);
}

static inline void ioapic_w(uint32_t reg, uint32_t v)
{
	mmio_w32(RW_GPA_IOAPIC + IOAPIC_SEL, reg);
	mmio_w32(RW_GPA_IOAPIC + IOAPIC_WIN, v);
}

static inline void lock(uint32_t *l)
{
	for (;;) {
		uint32_t expected = 0;

		if (__atomic_compare_exchange_n(l, &expected, 1, 0, __ATOMIC_ACQUIRE,
						__ATOMIC_RELAXED))
			return;
		while (__atomic_load_n(l, __ATOMIC_RELAXED))
			__asm__ volatile("pause");
	}
}

static inline void unlock(uint32_t *l)
{
	__atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

/*
 * Wait for an interrupt with IF set only while halted. The STI shadow keeps
 * an interrupt from arriving between sti and hlt; a hypervisor that loses
 * the shadow across an exit (nested SVM under an emulator does) delivers it
 * there, and the hlt after it then waits for an interrupt that may never
 * come. rw_k_trap() returns from an interrupt taken at rw_k_wait_hlt past the
 * hlt, so the wait ends either way.
 */
void rw_k_wait_irq(void);
extern const char rw_k_wait_hlt[];
__asm__(".pushsection .text\n"
	".globl rw_k_wait_irq\n"
	".type rw_k_wait_irq, @function\n"
	"rw_k_wait_irq:\n"
	"\tsti\n"
	"rw_k_wait_hlt:\n"
	"\thlt\n"
	"\tcli\n"
	"\tret\n"
	".size rw_k_wait_irq, .-rw_k_wait_irq\n"
	".popsection");

static inline void wait_irq(void)
{
	rw_k_wait_irq();
}

static __attribute__((noreturn)) void park(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

static inline int64_t hypercall4(unsigned nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3)
{
	int64_t ret;

	__asm__ volatile("movq (%1), %0"
			 : "=a"(ret)
			 : "r"(RW_GPA_HYPERCALL + 8ULL * nr), "D"(a0), "S"(a1), "d"(a2), "c"(a3)
			 : "memory");
	return ret;
}

/* The one-way form: a store, nothing to complete (rw/abi.h). */
static inline void hypercall4_oneway(unsigned nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3)
{
	__asm__ volatile("movq %%rax, (%0)"
			 :
			 : "r"(RW_GPA_HYPERCALL + 8ULL * nr), "a"(0ULL), "D"(a0), "S"(a1), "d"(a2),
			   "c"(a3)
			 : "memory");
}

/*
 * The calling vCPU, from the kernel stack we are on: vCPU n's kernel stack
 * is [stacks_base + n * CPU_STRIDE, + KSTACK). Costs no exit.
 */
static inline struct kcpu *this_cpu(void)
{
	uint64_t rsp;

	__asm__("mov %%rsp, %0" : "=r"(rsp));
	return &kcpu[((rsp - boot_info()->stacks_base) / CPU_STRIDE) & (RW_MAX_VCPUS - 1)];
}

static inline uint32_t apic_id(void)
{
	return mmio_r32(RW_GPA_LAPIC + LAPIC_ID) >> 24;
}

/* -------------------------------------------------------------- start-up */

static inline void set_gate(unsigned v, uint32_t attr)
{
	volatile uint64_t *e = (volatile uint64_t *)(RW_GPA_IDT + 16ULL * v);
	uint64_t a = rw_k_note_desc[3 + v]; /* vectors[] follows magic/version/entries */

	e[0] = (a & 0xffff) | ((uint64_t)RW_SEL_KCODE << 16) | ((uint64_t)attr << 32) |
	       ((a & 0xffff0000) << 32);
	e[1] = a >> 32;
}

/*
 * Build what the VMM builds for --entry user (vmm/boot.c writes the same
 * bytes): the flat descriptors, this vCPU's TSS and its descriptor, and the
 * IDT gates. Every vCPU writes the shared tables itself, with identical
 * values, so no vCPU waits for another. Returns this vCPU's user stack top.
 */
uint64_t rw_k_setup(uint64_t cpu)
{
	volatile uint64_t *gdt = (volatile uint64_t *)RW_GPA_GDT;
	uint64_t base = boot_info()->stacks_base + cpu * CPU_STRIDE;
	uint64_t tss = RW_GPA_TSS + cpu * RW_TSS_STRIDE;
	uint64_t ksp = base + KSTACK;

	gdt[0] = 0;
	gdt[RW_SEL_KCODE / 8] = RW_DESC_KCODE;
	gdt[RW_SEL_KDATA / 8] = RW_DESC_KDATA;
	gdt[RW_SEL_UDATA / 8] = RW_DESC_UDATA;
	gdt[RW_SEL_UCODE / 8] = RW_DESC_UCODE;
	/* 64-bit TSS, available (ltr marks it busy) */
	gdt[RW_SEL_TSS0 / 8 + 2 * cpu] = RW_TSS_LIMIT | ((tss & 0xffffff) << 16) |
					 (0x89ULL << 40) | (((tss >> 24) & 0xff) << 56);
	gdt[RW_SEL_TSS0 / 8 + 2 * cpu + 1] = tss >> 32;

	*(volatile uint32_t *)(tss + 4) = (uint32_t)ksp; /* RSP0 */
	*(volatile uint32_t *)(tss + 8) = (uint32_t)(ksp >> 32);
	*(volatile uint16_t *)(tss + 0x66) = RW_TSS_IOMAP;

	for (unsigned v = 0; v <= RW_VEC_TIMER; v++)
		set_gate(v, RW_GATE_ATTR);
	set_gate(RW_VEC_SERIAL, RW_GATE_ATTR);
	set_gate(RW_VEC_SYSCALL, RW_GATE_ATTR_DPL3);
	set_gate(RW_VEC_SPURIOUS, RW_GATE_ATTR);

	return base + CPU_STRIDE;
}

/* ----------------------------------------------------------------- LAPIC */

/* Software-enable this vCPU's LAPIC once: timer on RW_VEC_TIMER, LINT0 off. */
static void apic_enable(struct kcpu *c)
{
	if (c->apic_ready)
		return;
	lapic_w(LAPIC_SVR, SVR_ENABLE | RW_VEC_SPURIOUS);
	lapic_w(LAPIC_LVT_LINT0, LVT_MASKED);
	lapic_w(LAPIC_TDCR, 0xb); /* divide by 1: KVM's timer then counts nanoseconds */
	lapic_w(LAPIC_LVT_TIMER, LVT_MASKED | RW_VEC_TIMER);
	c->apic_ready = 1;
}

/* One-shot LAPIC timer, halting until it fires; longer sleeps in chunks. */
static void sleep_ns(uint64_t ns)
{
	struct kcpu *c = this_cpu();

	apic_enable(c);
	while (ns) {
		uint32_t chunk = ns > 0x80000000ULL ? 0x80000000u : (uint32_t)ns;

		c->timer_fired = 0;
		lapic_w(LAPIC_LVT_TIMER, RW_VEC_TIMER);
		lapic_w(LAPIC_TMICT, chunk);
		while (!__atomic_load_n(&c->timer_fired, __ATOMIC_RELAXED))
			wait_irq();
		ns -= chunk;
	}
}

/* --------------------------------------------------------------- console */

/*
 * First use of the UART, under console_lock: 8N1, DTR, RTS and OUT2 (which
 * gates the IRQ line on PCs). FCR is left as the VMM set it (rw/abi.h):
 * writing it would discard input that is already waiting. IIR tells whether
 * the FIFOs are on, and so how many bytes one THRE allows.
 */
static void uart_init(void)
{
	outb(UART_LCR, 0x03);
	outb(UART_MCR, 0x0b);
	uart_burst = (inb(UART_IIR) & IIR_FIFOS) == IIR_FIFOS ? UART_FIFO : 1;
	uart_ready = 1;
}

/*
 * Write under a lock shared by all vCPUs, so one call's bytes stay
 * together. Like a 16550 driver: wait for THRE, then fill the transmit
 * FIFO (or the holding register, without FIFOs).
 */
static uint64_t console_write(const uint8_t *p, uint64_t len)
{
	uint64_t left = len;

	lock(&console_lock);
	if (!uart_ready)
		uart_init();
	while (left) {
		uint64_t n = left < uart_burst ? left : uart_burst;

		for (unsigned spin = 0; !(inb(UART_LSR) & LSR_THRE) && spin < 100000; spin++)
			__asm__ volatile("pause");
		left -= n;
		__asm__ volatile("rep outsb" : "+S"(p), "+c"(n) : "d"(UART) : "memory");
	}
	unlock(&console_lock);
	return len;
}

/* Move received bytes from the UART into the ring while it has room. */
static void rx_drain(void)
{
	while (rx.head - rx.tail < RX_RING && (inb(UART_LSR) & LSR_DR))
		rx.buf[rx.head++ % RX_RING] = inb(UART_RBR);
}

static void rx_route(uint32_t dest)
{
	ioapic_w(IOAPIC_REDIR(UART_IRQ) + 1, dest << 24);
	ioapic_w(IOAPIC_REDIR(UART_IRQ), RW_VEC_SERIAL); /* fixed, edge, high, unmasked */
	rx.dest = dest;
}

/*
 * First use of the console input: mask the 8259 PICs (in their power-on
 * state they would deliver IRQ 4 as vector 4), send IOAPIC pin 4 to this
 * vCPU and turn on the UART's receive interrupt.
 */
static void rx_enable(void)
{
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
	apic_enable(this_cpu());
	rx_route(apic_id());
	lock(&console_lock);
	if (!uart_ready)
		uart_init();
	outb(UART_IER, 0x01); /* received data available */
	unlock(&console_lock);
	rx.enabled = 1;
}

static uint64_t console_read(uint8_t *buf, uint64_t cap, uint64_t block)
{
	for (;;) {
		uint64_t n = 0;

		lock(&rx.lock);
		if (!rx.enabled)
			rx_enable();
		rx_drain();
		while (n < cap && rx.tail != rx.head)
			buf[n++] = rx.buf[rx.tail++ % RX_RING];
		if (n || !block || !cap) {
			unlock(&rx.lock);
			return n;
		}
		apic_enable(this_cpu());
		uint32_t me = apic_id();
		if (rx.dest != me)
			rx_route(me);
		unlock(&rx.lock);
		wait_irq();
	}
}

/* ----------------------------------------------------------------- traps */

static uint64_t sys_dispatch(struct rw_k_frame *f)
{
	switch (f->rax) {
	case RW_SYS_CONSOLE_WRITE:
		return console_write((const uint8_t *)f->rdi, f->rsi);
	case RW_SYS_CONSOLE_READ:
		return console_read((uint8_t *)f->rdi, f->rsi, f->rdx);
	case RW_SYS_SLEEP_NS:
		sleep_ns(f->rdi);
		return 0;
	case RW_SYS_APIC_ID:
		return apic_id();
	case RW_SYS_HALT:
		park();
	case RW_SYS_TICKS:
		return this_cpu()->ticks;
	case RW_SYS_SPIN:
		__asm__ volatile("cli");
		for (;;)
			__asm__ volatile("" ::: "memory");
	default:
		return (uint64_t)-ENOSYS;
	}
}

static __attribute__((noreturn)) void crash(struct rw_k_frame *f)
{
	uint64_t cr2 = 0;

	if (f->vector == 14)
		__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	/* one-way: a harness replaces this vCPU's state at once */
	hypercall4_oneway(RW_HC_CRASH, f->vector, f->rip, f->error, cr2);
	park();
}

void rw_k_trap(struct rw_k_frame *f)
{
	if (f->rip == (uintptr_t)rw_k_wait_hlt)
		f->rip++; /* taken in the STI shadow: do not halt after it */
	switch (f->vector) {
	case RW_VEC_SYSCALL:
		f->rax = sys_dispatch(f);
		return;
	case 6:
		/* PVM turns `int $0x80` at CPL3 into #UD: run the syscall here */
		if ((f->cs & 3) == 3 && *(const volatile uint16_t *)f->rip == 0x80cd) {
			f->rip += 2;
			f->rax = sys_dispatch(f);
			return;
		}
		break;
	case 2: /* NMI: nothing sends one; ignore it rather than die */
		return;
	case RW_VEC_TIMER: {
		struct kcpu *c = this_cpu();

		c->ticks++;
		c->timer_fired = 1;
		lapic_w(LAPIC_EOI, 0);
		return;
	}
	case RW_VEC_SERIAL:
		lock(&rx.lock);
		rx_drain();
		unlock(&rx.lock);
		lapic_w(LAPIC_EOI, 0);
		return;
	case RW_VEC_SPURIOUS:
		return;
	}
	crash(f);
}
