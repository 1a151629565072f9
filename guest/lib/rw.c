/*
 * rw.c - the SDK calls that are thin wrappers over hypercalls and syscalls,
 * and the checksum.
 */
#include "rw/rw.h"

#define CPU_STRIDE (RW_KSTACK_SIZE + RW_USTACK_SIZE)

/* ---------------------------------------------------------- life cycle */

RW_NORETURN void rw_halt(void)
{
	for (;;)
		rw_syscall0(RW_SYS_HALT);
}

RW_NORETURN void rw_exit(int code)
{
	rw_hypercall1(RW_HC_EXIT, (uint64_t)(code & 0xff));
	rw_halt();
}

RW_NORETURN __attribute__((noinline)) void rw_crash(uint64_t code)
{
	rw_hypercall4(RW_HC_CRASH, code, (uint64_t)__builtin_return_address(0), 0, 0);
	rw_halt();
}

/* ------------------------------------------------------------- console */

int64_t rw_write(const void *buf, size_t len)
{
	if (!len)
		return 0;
	return rw_syscall2(RW_SYS_CONSOLE_WRITE, (uint64_t)buf, len);
}

int64_t rw_print(const char *s)
{
	return rw_write(s, strlen(s));
}

/*
 * Console input read ahead by rw_read_line() and not yet consumed: served
 * first by both readers. Shared by all vCPUs, under inbuf.lock.
 */
static struct {
	struct rw_spinlock lock;
	size_t len;
	char buf[256];
} inbuf = { RW_SPINLOCK_INIT, 0, { 0 } };

static size_t inbuf_take(char *dst, size_t cap, int upto_newline)
{
	size_t n = 0;

	while (n < inbuf.len && n < cap) {
		dst[n] = inbuf.buf[n];
		if (dst[n++] == '\n' && upto_newline)
			break;
	}
	memmove(inbuf.buf, inbuf.buf + n, inbuf.len - n);
	inbuf.len -= n;
	return n;
}

int64_t rw_read(void *buf, size_t cap, int block)
{
	size_t n;

	rw_spin_lock(&inbuf.lock);
	n = inbuf_take(buf, cap, 0);
	rw_spin_unlock(&inbuf.lock);
	if (n)
		return (int64_t)n;
	return rw_syscall3(RW_SYS_CONSOLE_READ, (uint64_t)buf, cap, block != 0);
}

size_t rw_read_line(char *buf, size_t cap)
{
	size_t n = 0;

	if (!cap)
		return 0;
	rw_spin_lock(&inbuf.lock);
	while (n + 1 < cap && (n == 0 || buf[n - 1] != '\n')) {
		int64_t got;

		if (inbuf.len) {
			n += inbuf_take(buf + n, cap - 1 - n, 1);
			continue;
		}
		got = rw_syscall3(RW_SYS_CONSOLE_READ, (uint64_t)inbuf.buf, sizeof(inbuf.buf), 1);
		if (got <= 0)
			break;
		inbuf.len = (size_t)got;
	}
	rw_spin_unlock(&inbuf.lock);
	buf[n] = 0;
	return n;
}

int64_t rw_log(const char *msg)
{
	return rw_hypercall2(RW_HC_LOG, (uint64_t)msg, strlen(msg));
}

/* ---------------------------------------------------- host interaction */

uint64_t rw_checksum(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t a0 = rw_csum_lane_init(0, len), a1 = rw_csum_lane_init(1, len);
	uint64_t a2 = rw_csum_lane_init(2, len), a3 = rw_csum_lane_init(3, len);
	size_t nw = len / 8, i = 0;
	uint64_t a[4];

	for (; i + 4 <= nw; i += 4) {
		uint64_t w[4];

		__builtin_memcpy(w, p + 8 * i, 32);
		a0 = rw_csum_step(a0, w[0]);
		a1 = rw_csum_step(a1, w[1]);
		a2 = rw_csum_step(a2, w[2]);
		a3 = rw_csum_step(a3, w[3]);
	}
	a[0] = a0;
	a[1] = a1;
	a[2] = a2;
	a[3] = a3;
	for (; i < nw; i++)
		a[i & 3] = rw_csum_step(a[i & 3], rw_csum_load64(p + 8 * i, 8));
	if (len & 7)
		a[i & 3] = rw_csum_step(a[i & 3], rw_csum_load64(p + 8 * i, len & 7));
	return rw_csum_finish(a, len);
}

int64_t rw_host_write(void *dst, size_t len, uint64_t seed)
{
	return rw_hypercall3(RW_HC_HOST_WRITE, (uint64_t)dst, len, seed);
}

int64_t rw_checkpoint(const char *label)
{
	return rw_hypercall2(RW_HC_CHECKPOINT, (uint64_t)label, label ? strlen(label) : 0);
}

int64_t rw_payload(void *buf, size_t cap)
{
	return rw_hypercall2(RW_HC_GET_PAYLOAD, (uint64_t)buf, cap);
}

/*
 * Set once rw_snapshot() found a harness. Then done and crash reports use the
 * one-way hypercall: the host resets the VM right at the store, with no
 * load to complete first. Without a harness they use the load form, which
 * returns -ENOSYS.
 */
static int harness_attached;

/*
 * lib/cov.c, when the program was built with coverage (a weak reference: it
 * does not pull the runtime into other images). Zeroes the coverage map so
 * that the root holds an empty one (rw/abi.h RW_HC_COVERAGE).
 */
extern void rw_cov_prepare_root(void) __attribute__((weak));

int64_t rw_snapshot(void)
{
	int64_t r;

	/* Only before the root is taken: a run that calls it again keeps its map. */
	if (!harness_attached && rw_cov_prepare_root)
		rw_cov_prepare_root();
	r = rw_hypercall0(RW_HC_SNAPSHOT);

	if (r >= 0)
		harness_attached = 1;
	return r;
}

int64_t rw_done(int status)
{
	if (harness_attached) {
		rw_hypercall_oneway(RW_HC_DONE, (uint64_t)(int64_t)status, 0, 0, 0);
		return 0; /* the harness let the guest go on */
	}
	return rw_hypercall1(RW_HC_DONE, (uint64_t)(int64_t)status);
}

__attribute__((noinline)) int64_t rw_report_crash(uint64_t code)
{
	uint64_t pc = (uint64_t)__builtin_return_address(0);

	if (harness_attached) {
		rw_hypercall_oneway(RW_HC_CRASH_SOFT, code, pc, 0, 0);
		return 0;
	}
	return rw_hypercall2(RW_HC_CRASH_SOFT, code, pc);
}

int64_t rw_coverage_map(const void *map, size_t size)
{
	return rw_hypercall2(RW_HC_COVERAGE, (uint64_t)map, size);
}

/* ---------------------------------------------------------------- time */

void rw_sleep_ns(uint64_t ns)
{
	if (ns)
		rw_syscall1(RW_SYS_SLEEP_NS, ns);
}

void rw_sleep_ms(uint64_t ms)
{
	rw_sleep_ns(ms > UINT64_MAX / 1000000 ? UINT64_MAX : ms * 1000000);
}

uint64_t rw_ticks(void)
{
	return (uint64_t)rw_syscall0(RW_SYS_TICKS);
}

uint64_t rw_tsc_khz(void)
{
	return rw_boot_info()->tsc_khz;
}

/* ------------------------------------------------------------- machine */

const char *rw_args(void)
{
	const struct rw_boot_info *bi = rw_boot_info();

	return bi->args_gpa ? (const char *)bi->args_gpa : "";
}

unsigned rw_ncpus(void)
{
	return rw_boot_info()->ncpus;
}

unsigned rw_apic_id(void)
{
	return (unsigned)rw_syscall0(RW_SYS_APIC_ID);
}

unsigned rw_cpu_id(void)
{
	const struct rw_boot_info *bi = rw_boot_info();
	uint64_t sp;

	__asm__("mov %%rsp, %0" : "=r"(sp));
	if (sp > bi->stacks_base) {
		uint64_t off = sp - bi->stacks_base;
		uint64_t n = off / CPU_STRIDE;

		if (off % CPU_STRIDE >= RW_KSTACK_SIZE && n < bi->ncpus)
			return (unsigned)n;
	}
	return rw_apic_id();
}
