/*
 * rw/rw.h - the rewind guest SDK: what a guest program can call.
 *
 * A guest program is a freestanding x86-64 C program linked with the SDK
 * (see guest/README.md). It runs at CPL3 on every vCPU; a tiny CPL0 kernel
 * in the same image handles exceptions, interrupts and the few things that
 * need privilege (the UART, the LAPIC timer). Write:
 *
 *     #include <rw/rw.h>
 *
 *     int rw_main(const char *args)
 *     {
 *             rw_printf("hello, %s\n", args);
 *             return 0;
 *     }
 *
 * vCPU 0 calls rw_main() with the --args string; its return value becomes
 * rewind's exit status (0..255). Every other vCPU calls rw_ap_main(cpu),
 * whose default parks the vCPU; define your own to put it to work.
 *
 * Costs (PVM, the platform this SDK is tuned for): plain code runs at
 * native speed; a hypercall (rw_hypercall*, rw_exit, rw_checkpoint ...) is
 * one MMIO exit, about 13 us on an idle host; a syscall into the SDK kernel
 * (console, sleep, APIC id) is an exception plus emulated CPL0 code, about
 * 50-100 us, and console output adds 5-10 us per byte. Keep both out of hot
 * loops.
 *
 * Threading: every function here may be called from any vCPU at any time
 * unless its comment says otherwise. Nothing here allocates or blocks except
 * where documented.
 */
#ifndef RW_GUEST_RW_H
#define RW_GUEST_RW_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "abi.h"
#include "checksum.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RW_NORETURN __attribute__((noreturn))
#define RW_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define RW_PAGE_SIZE 4096UL

/* ======================================================== program entry */

/*
 * Provided by the program. Runs on vCPU 0 with the --args string (never
 * NULL, "" when none was given). The return value is passed to rw_exit().
 */
int rw_main(const char *args);

/*
 * Optional. Runs on every vCPU other than 0 with its index (1..ncpus-1) at
 * the same time as rw_main(). If it returns, the vCPU is parked with
 * rw_halt(). The default (weak) definition parks at once.
 */
void rw_ap_main(unsigned cpu);

/* ============================================================ hypercalls */

/*
 * rw_hypercallN(nr, args...): one hypercall to the VMM (RW_HC_* in
 * rw/abi.h): an 8-byte load from RW_GPA_HYPERCALL + 8 * nr with the
 * arguments in RDI, RSI, RDX, RCX. Returns the VMM's answer: >= 0 on
 * success, a negative errno on failure (-ENOSYS = 38 for a number the VMM or
 * its harness does not implement). Works at any CPL.
 */
static inline int64_t rw_hypercall4(unsigned nr, uint64_t a0, uint64_t a1, uint64_t a2,
				    uint64_t a3)
{
	int64_t ret;
	volatile const uint64_t *door = (volatile const uint64_t *)(RW_GPA_HYPERCALL + 8ULL * nr);

	__asm__ volatile("movq (%1), %0"
			 : "=a"(ret)
			 : "r"(door), "D"(a0), "S"(a1), "d"(a2), "c"(a3)
			 : "memory");
	return ret;
}

/*
 * rw_hypercall_oneway(nr, args...): the one-way form: an 8-byte store to the
 * same doorbell address, same arguments, no result (rw/abi.h). For calls
 * that hand control to the host for good.
 */
static inline void rw_hypercall_oneway(unsigned nr, uint64_t a0, uint64_t a1, uint64_t a2,
				       uint64_t a3)
{
	volatile uint64_t *door = (volatile uint64_t *)(RW_GPA_HYPERCALL + 8ULL * nr);

	__asm__ volatile("movq %%rax, (%1)"
			 :
			 : "a"(0), "r"(door), "D"(a0), "S"(a1), "d"(a2), "c"(a3)
			 : "memory");
}

static inline int64_t rw_hypercall0(unsigned nr)
{
	return rw_hypercall4(nr, 0, 0, 0, 0);
}

static inline int64_t rw_hypercall1(unsigned nr, uint64_t a0)
{
	return rw_hypercall4(nr, a0, 0, 0, 0);
}

static inline int64_t rw_hypercall2(unsigned nr, uint64_t a0, uint64_t a1)
{
	return rw_hypercall4(nr, a0, a1, 0, 0);
}

static inline int64_t rw_hypercall3(unsigned nr, uint64_t a0, uint64_t a1, uint64_t a2)
{
	return rw_hypercall4(nr, a0, a1, a2, 0);
}

/* ============================================================== syscalls */

/*
 * rw_syscallN(nr, args...): one call into the SDK kernel (RW_SYS_* in
 * rw/abi.h): `int $0x80` with RAX = nr and arguments in RDI, RSI, RDX; the
 * result comes back in RAX. Every other register is preserved. On PVM the
 * instruction raises #UD and the kernel's #UD handler runs the syscall, so
 * the same instruction works on every KVM.
 */
static inline int64_t rw_syscall3(uint64_t nr, uint64_t a0, uint64_t a1, uint64_t a2)
{
	int64_t ret;

	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(nr), "D"(a0), "S"(a1), "d"(a2)
			 : "memory");
	return ret;
}

static inline int64_t rw_syscall0(uint64_t nr)
{
	return rw_syscall3(nr, 0, 0, 0);
}

static inline int64_t rw_syscall1(uint64_t nr, uint64_t a0)
{
	return rw_syscall3(nr, a0, 0, 0);
}

static inline int64_t rw_syscall2(uint64_t nr, uint64_t a0, uint64_t a1)
{
	return rw_syscall3(nr, a0, a1, 0);
}

/* ======================================================= VM life cycle */

/*
 * End the VM: rewind exits with status code & 0xff. Any vCPU may call it;
 * the others are stopped. Does not return.
 */
RW_NORETURN void rw_exit(int code);

/*
 * Report a crash explicitly (RW_HC_CRASH), as the kernel does for a CPU
 * exception: rewind prints "guest crashed ... exception vector <code> at RIP
 * <caller>" and exits with status 3. Use codes >= 256 so a program-defined
 * crash cannot be mistaken for a CPU exception vector. Does not return.
 */
RW_NORETURN void rw_crash(uint64_t code);

/* Park this vCPU for good (RW_SYS_HALT). Does not return. */
RW_NORETURN void rw_halt(void);

/* The ABI version the VMM speaks (RW_HC_VERSION); RW_ABI_VERSION today. */
static inline int64_t rw_version(void)
{
	return rw_hypercall0(RW_HC_VERSION);
}

/* ============================================================== console */

/*
 * Write len bytes to the console (the 16550 UART at 0x3f8, through the
 * kernel). One call is written as a whole: output of concurrent calls from
 * other vCPUs never interleaves within it. Returns len.
 */
int64_t rw_write(const void *buf, size_t len);

/* rw_write() of a NUL-terminated string. Returns its length. */
int64_t rw_print(const char *s);

/*
 * Formatted output to the console: %d %i %u %x %X %o %c %s %p %% with the
 * length modifiers hh h l ll z j t, the flags - 0 + space #, a field width
 * and a precision (both may be '*'). No floating point. Output up to 512
 * bytes goes out in one rw_write(); longer output in several. Returns the
 * number of bytes written.
 */
int rw_printf(const char *fmt, ...) RW_PRINTF(1, 2);
int rw_vprintf(const char *fmt, va_list ap);

/*
 * Format into buf (always NUL-terminated when size > 0). Returns the length
 * the whole output would have had, as C99 snprintf does.
 */
int rw_snprintf(char *buf, size_t size, const char *fmt, ...) RW_PRINTF(3, 4);
int rw_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);

/*
 * Read up to cap bytes from the console (UART receive, interrupt driven).
 * With block = 0 returns at once with what is buffered (possibly 0); with
 * block != 0 waits (the vCPU halts, costing nothing) until at least one
 * byte arrived. Returns the number of bytes read. Bytes rw_read_line() read
 * ahead come first. Meant for one reading vCPU at a time: the UART
 * interrupt is routed to the vCPU that last blocked in a read.
 */
int64_t rw_read(void *buf, size_t cap, int block);

/*
 * Read one line: bytes up to and including '\n', or cap - 1 bytes; buf is
 * NUL-terminated. Blocks until the line is complete. Reads the UART in
 * bulk and keeps what follows the line (up to 256 bytes) for the next
 * rw_read_line() or rw_read(). Returns the length (without the NUL).
 */
size_t rw_read_line(char *buf, size_t cap);

/*
 * A line in the host's log (RW_HC_LOG, shown with --log-level info), not on
 * the guest console. Does not touch guest-visible state. Returns 0 or a
 * negative errno.
 */
int64_t rw_log(const char *msg);

/* ===================================================== host interaction */

/*
 * Checksum of [p, p+len): the function defined in rw/checksum.h, so host
 * code can recompute it with rw_checksum_ref(). About 1 byte per cycle.
 */
uint64_t rw_checksum(const void *p, size_t len);

/*
 * Ask the host to write len bytes into [dst, dst+len): byte i becomes
 * rw_host_pattern(seed, i) (rw/abi.h). Tests use it to check that
 * host-side writes to guest memory are tracked like the guest's own.
 * Returns 0, -EFAULT (not RAM) or -E2BIG (more than the VMM allows, 64 MiB).
 */
int64_t rw_host_write(void *dst, size_t len, uint64_t seed);

/*
 * "Checkpoint here" (RW_HC_CHECKPOINT): the VM pauses, rewind takes a
 * checkpoint labelled label (may be NULL) and the program continues.
 * Returns the checkpoint id (> 0), or -ENOSYS when the VM runs without a
 * store. A VM restored or rolled back to that checkpoint continues from this
 * call too, where it returns 0 (like fork()), so the program can tell.
 */
int64_t rw_checkpoint(const char *label);

/*
 * Copy the host's current input into buf (RW_HC_GET_PAYLOAD, kAFL's
 * GET_PAYLOAD). Returns the number of bytes written (<= cap), or a negative
 * errno (-ENOSYS without a fuzzing harness).
 */
int64_t rw_payload(void *buf, size_t cap);

/*
 * Fuzzing protocol (a reset harness is attached to the VM):
 *
 *   if (rw_snapshot() < 0) ...no harness...
 *   n = rw_payload(buf, sizeof(buf));   // a new input after every reset
 *   run_target(buf, n);                 // may call rw_report_crash()
 *   rw_done(0);                         // the host resets to the snapshot
 *
 * rw_snapshot() returns 0 when the harness takes its reset root here, and 1
 * each time the VM comes back here after a reset (memory, registers and
 * devices as they were at the first call). rw_done() and
 * rw_report_crash() do not return when a harness is attached; without one
 * they return a negative errno (-ENOSYS).
 */
int64_t rw_snapshot(void);
int64_t rw_done(int status);
int64_t rw_report_crash(uint64_t code);

/*
 * Tell the host where the coverage map is (RW_HC_COVERAGE, rw/abi.h): size
 * bytes at map, page aligned, size a power of two >= 4096. Returns 0 or a
 * negative errno (-ENOSYS when the host does not use coverage). Programs
 * built with coverage (rw/cov.h) need not call it: the runtime announces
 * its map at start-up.
 */
int64_t rw_coverage_map(const void *map, size_t size);

/* ================================================================= time */

/*
 * Sleep at least ns nanoseconds (RW_SYS_SLEEP_NS): the vCPU halts until its
 * LAPIC timer fires. Resolution about 1 us plus the syscall cost.
 */
void rw_sleep_ns(uint64_t ns);
void rw_sleep_ms(uint64_t ms);

/* LAPIC timer interrupts this vCPU has taken (RW_SYS_TICKS). */
uint64_t rw_ticks(void);

/* The time-stamp counter (rdtsc), and its rate from boot info (0: unknown). */
static inline uint64_t rw_rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

uint64_t rw_tsc_khz(void);

/* ============================================================ machine */

/* The boot info the VMM wrote at RW_GPA_BOOT_INFO (rw/abi.h). */
static inline const struct rw_boot_info *rw_boot_info(void)
{
	return (const struct rw_boot_info *)RW_GPA_BOOT_INFO;
}

/* The --args string (never NULL). */
const char *rw_args(void);

/* Number of vCPUs. */
unsigned rw_ncpus(void);

/*
 * Index of the calling vCPU (0..ncpus-1), computed from the stack pointer
 * (no exit), valid while the program runs on the stack the SDK gave the
 * vCPU; otherwise it falls back to rw_apic_id().
 */
unsigned rw_cpu_id(void);

/* This vCPU's LAPIC id, read by the kernel (RW_SYS_APIC_ID). rewind gives
 * vCPU n the APIC id n. */
unsigned rw_apic_id(void);

/* ======================================================= page allocator */

/*
 * Allocate npages contiguous 4 KiB pages of guest RAM (identity mapped, so
 * the pointer is also the guest-physical address). The contents are
 * undefined (zero the first time a page is handed out, since RAM starts
 * zeroed). Returns NULL when no run of npages pages is free, or npages is 0.
 * SMP-safe (a spinlock); O(number of free runs).
 */
void *rw_page_alloc(size_t npages);

/*
 * Return pages from rw_page_alloc(). npages must be the count they were
 * allocated with (or a sub-run of them). Adjacent free runs are merged.
 */
void rw_page_free(void *p, size_t npages);

/* Free pages left (for diagnostics). */
size_t rw_page_free_count(void);

/* ================================================================ locks */

struct rw_spinlock {
	volatile uint32_t locked;
};

#define RW_SPINLOCK_INIT { 0 }

static inline void rw_pause(void)
{
	__asm__ volatile("pause" ::: "memory");
}

static inline void rw_spin_lock(struct rw_spinlock *l)
{
	for (;;) {
		uint32_t expected = 0;

		if (__atomic_compare_exchange_n(&l->locked, &expected, 1, 0, __ATOMIC_ACQUIRE,
						__ATOMIC_RELAXED))
			return;
		while (__atomic_load_n(&l->locked, __ATOMIC_RELAXED))
			rw_pause();
	}
}

static inline void rw_spin_unlock(struct rw_spinlock *l)
{
	__atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE);
}

/* ====================================================== strings & memory */

void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
size_t strnlen(const char *s, size_t max);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strchr(const char *s, int c);

/*
 * Parse an unsigned integer like strtoul: leading blanks, an optional '+',
 * base 0 (auto: 0x.. hex, 0.. octal, else decimal), 2..36. Saturates at
 * UINT64_MAX on overflow. *end (if not NULL) points after the last digit
 * used, or at s when there was none.
 */
uint64_t rw_strtoul(const char *s, char **end, int base);

/* Decimal (optional sign) to int; 0 when there is no number. */
int rw_atoi(const char *s);

/*
 * Look up "key=value" in an args string of words separated by blanks or
 * commas ("pages=100 rounds=3"): returns the value
 * parsed with rw_strtoul(base 0) and an optional K/M/G suffix (powers of
 * 1024), or def when the key is absent or has no number.
 */
uint64_t rw_arg_u64(const char *args, const char *key, uint64_t def);

/* True if args contains the word (alone or as "word=..."). */
int rw_arg_has(const char *args, const char *word);

#ifdef __cplusplus
}
#endif

#endif
