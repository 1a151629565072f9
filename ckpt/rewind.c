/*
 * rewind.c - librewind, the fast-reset harness API (rewind.h).
 *
 * The vCPU runs on the caller's thread (vcpu_run_here): a reset loop
 * iteration is one KVM_RUN to the guest's "done" hypercall, then the reset,
 * with no thread hand-off in between.
 */
#include "rewind.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/kvm.h>
#include <sys/mman.h>
#include <time.h>

#include "board.h"
#include "dirty.h"
#include "err.h"
#include "image.h"
#include "log.h"
#include "rw/abi.h"
#include "util.h"
#include "vcpu.h"
#include "vcpu_state.h"
#include "vm.h"

#define PAYLOAD_MAX (16u << 20)
/* Largest coverage map a guest may announce. */
#define COVERAGE_MAX (16u << 20)

/*
 * The timeout's watchdog. A run increments seq on entry (odd: running) and
 * on return (even), under lock: no system call. The thread wakes every
 * tick (a quarter of the timeout, at least 1 ms), and when it sees the same
 * odd seq for a whole timeout since it first saw it, it cancels the run.
 */
struct watchdog {
	pthread_t thread;
	bool started, stop;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t timeout_ns;
	uint64_t seq;
	pthread_t runner;         /* the thread inside the run */
	bool fired;               /* it cancelled run seq */
};

struct rewind_vm {
	struct vm *vm;
	struct vcpu *vcpu;
	struct dirty_tracker *dirty;
	bool hot_set;

	/* the root: its memory, and its vCPU, platform and device state */
	bool has_root;
	uint8_t *root_mem;
	size_t root_size;
	struct vm_image root;

	/* reset bookkeeping */
	uint64_t *pages;          /* scratch: dirty pages of one reset */
	uint32_t *last_seen;      /* per page: the reset it was last dirty in */
	uint8_t *streak;          /* per page: consecutive resets it was dirty in */
	uint64_t resets;
	uint64_t restored_last;
	uint64_t restored_total;
	/* state the guest provably did not touch is not reloaded (lean_flags) */
	uint64_t lean_loads;      /* resets that skipped XCRS and DEBUGREGS */
	uint64_t lapic_kept;      /* resets that skipped the LAPIC too */
	bool lapic_keepable;      /* root timer idle, no APIC virtualization */
	bool pit_idle;            /* the root's PIT runs no timer */
	struct vcpu_exit_counts counts; /* when the vCPU last held the root state */
	bool counts_valid;
	bool kicked;              /* the last run was forced out (timeout): the
				     vCPU may be halted, not at an exit */
	uint64_t hc_exits;        /* hypercall exits handled here */
	uint64_t hc_at_load, irqs_at_load; /* hc_exits, vm->irq_line_calls then */

	/* the event the hypercall hook saw */
	bool have_event;
	struct rewind_event ev;
	bool io_pending;          /* the last exit's I/O is not complete yet */

	uint8_t *payload;
	size_t payload_len;

	struct watchdog wd;
	uint8_t *cov_map;         /* announced by the guest, in guest RAM */
	size_t cov_size;
};

const char *rewind_strerror(int err)
{
	return rw_strerror(err);
}

/* --------------------------------------------------------------- hypercalls */

static void post(struct rewind_vm *h, struct vcpu *v, enum rewind_event_kind kind, int64_t status,
		 uint64_t code, uint64_t pc)
{
	memset(&h->ev, 0, sizeof(h->ev));
	h->ev.vector = REWIND_NO_VECTOR;
	h->ev.kind = kind;
	h->ev.status = status;
	h->ev.code = code;
	h->ev.pc = pc;
	h->have_event = true;
	v->yield = true;
}

static bool harness_call(struct rewind_vm *h, struct vcpu *v, unsigned nr, const uint64_t a[4],
			 int64_t *ret)
{
	switch (nr) {
	case RW_HC_SNAPSHOT:
		if (h->has_root) {
			*ret = 1;
		} else {
			post(h, v, REWIND_EV_SNAPSHOT, 0, 0, 0);
			*ret = 0;
		}
		return true;
	case RW_HC_DONE:
		post(h, v, REWIND_EV_DONE, (int64_t)a[0], 0, 0);
		*ret = 0;
		return true;
	case RW_HC_CRASH_SOFT:
		post(h, v, REWIND_EV_CRASH, 0, a[0], a[1]);
		h->ev.vector = REWIND_NO_VECTOR;
		snprintf(h->ev.message, sizeof(h->ev.message), "target reported crash code 0x%llx at 0x%llx",
			 (unsigned long long)a[0], (unsigned long long)a[1]);
		*ret = 0;
		return true;
	case RW_HC_CRASH:
		/* a CPU exception the SDK kernel reports: a crash like any other */
		post(h, v, REWIND_EV_CRASH, 0, a[0], a[1]);
		h->ev.vector = (uint32_t)a[0];
		h->ev.error_code = a[2];
		h->ev.cr2 = a[3];
		snprintf(h->ev.message, sizeof(h->ev.message),
			 "guest crashed: exception vector %llu at RIP 0x%llx (error code 0x%llx, CR2 0x%llx)",
			 (unsigned long long)a[0], (unsigned long long)a[1], (unsigned long long)a[2],
			 (unsigned long long)a[3]);
		*ret = 0;
		return true;
	case RW_HC_COVERAGE: {
		uint64_t gpa = a[0], size = a[1];
		bool shape = size >= RW_COV_MAP_ALIGN && size <= COVERAGE_MAX &&
			     !(size & (size - 1)) && gpa % RW_COV_MAP_ALIGN == 0;
		uint8_t *map = shape ? mem_gpa_to_hva(&h->vm->mem, gpa, size) : NULL;

		if (!map) {
			rw_error("the guest announced a coverage map %s: 0x%llx, %llu bytes",
				 shape ? "outside guest RAM" : "that is not whole aligned pages of a "
				 "power-of-two size", (unsigned long long)gpa, (unsigned long long)size);
			*ret = shape ? -EFAULT : -EINVAL;
			return true;
		}
		h->cov_map = map;
		h->cov_size = a[1];
		*ret = 0;
		return true;
	}
	case RW_HC_GET_PAYLOAD: {
		uint64_t n = MIN((uint64_t)h->payload_len, a[1]);
		*ret = (n && mem_write(&h->vm->mem, a[0], h->payload, n)) ? -EFAULT : (int64_t)n;
		return true;
	}
	default:
		return false;
	}
}

/* The VM's hypercall hook: the harness's calls, counted for lean_flags(). */
static bool harness_hypercall(void *opaque, struct vcpu *v, unsigned nr, const uint64_t a[4],
			      int64_t *ret)
{
	struct rewind_vm *h = opaque;

	if (!harness_call(h, v, nr, a, ret))
		return false;
	h->hc_exits++;
	return true;
}

/* -------------------------------------------------------------- timeout */

static uint64_t wd_tick_ns(const struct watchdog *wd)
{
	return MAX(wd->timeout_ns / 4, (uint64_t)1000000);
}

static void *watchdog_thread(void *arg)
{
	struct rewind_vm *h = arg;
	struct watchdog *wd = &h->wd;
	uint64_t seen = 0, since = 0;

	pthread_mutex_lock(&wd->lock);
	while (!wd->stop) {
		struct timespec at;
		uint64_t t = rw_now_ns() + wd_tick_ns(wd);

		at.tv_sec = (time_t)(t / 1000000000u);
		at.tv_nsec = (long)(t % 1000000000u);
		pthread_cond_timedwait(&wd->cond, &wd->lock, &at);
		if (wd->stop)
			break;
		if (!wd->timeout_ns || !(wd->seq & 1) || wd->fired) {
			seen = 0;
			continue;
		}
		uint64_t now = rw_now_ns();
		if (wd->seq != seen) {
			seen = wd->seq;
			since = now;
		} else if (now - since >= wd->timeout_ns) {
			wd->fired = true;
			vcpu_cancel_here(h->vcpu, wd->runner);
		}
	}
	pthread_mutex_unlock(&wd->lock);
	return NULL;
}

/* The watchdog's thread, started by the first run that has a timeout. */
static int watchdog_start(struct rewind_vm *h)
{
	struct watchdog *wd = &h->wd;
	pthread_condattr_t ca;
	int ret;

	pthread_mutex_init(&wd->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&wd->cond, &ca);
	pthread_condattr_destroy(&ca);
	ret = rw_thread_start(&wd->thread, watchdog_thread, h);
	if (ret) {
		pthread_cond_destroy(&wd->cond);
		pthread_mutex_destroy(&wd->lock);
		return ret;
	}
	wd->started = true;
	return 0;
}

static void watchdog_stop(struct rewind_vm *h)
{
	struct watchdog *wd = &h->wd;

	if (!wd->started)
		return;
	rw_thread_stop(wd->thread, &wd->lock, &wd->cond, &wd->stop);
	pthread_cond_destroy(&wd->cond);
	pthread_mutex_destroy(&wd->lock);
	wd->started = false;
}

int rewind_set_timeout(struct rewind_vm *h, uint64_t timeout_us)
{
	struct watchdog *wd = &h->wd;

	if (timeout_us > UINT64_MAX / 1000)
		return -EINVAL;
	if (!wd->started) {
		wd->timeout_ns = timeout_us * 1000;
		return 0;
	}
	pthread_mutex_lock(&wd->lock);
	wd->timeout_ns = timeout_us * 1000;
	pthread_cond_broadcast(&wd->cond);
	pthread_mutex_unlock(&wd->lock);
	return 0;
}

/* A run begins (or ends): the watchdog counts it; 0 or an error. */
static int watch_begin(struct rewind_vm *h)
{
	static __thread bool prepared;
	struct watchdog *wd = &h->wd;

	if (!wd->timeout_ns && !wd->started)
		return 0;
	if (!wd->started) {
		int ret = watchdog_start(h);
		if (ret)
			return ret;
	}
	if (!prepared) {
		vcpu_here_prepare();
		prepared = true;
	}
	pthread_mutex_lock(&wd->lock);
	wd->seq++;
	wd->runner = pthread_self();
	wd->fired = false;
	vcpu_cancel_clear(h->vcpu);
	pthread_mutex_unlock(&wd->lock);
	return 0;
}

/* The run is over; true if the watchdog cancelled it. */
static bool watch_end(struct rewind_vm *h)
{
	struct watchdog *wd = &h->wd;
	bool fired;

	if (!wd->started)
		return false;
	pthread_mutex_lock(&wd->lock);
	wd->seq++;
	fired = wd->fired;
	wd->fired = false;
	vcpu_cancel_clear(h->vcpu);
	pthread_mutex_unlock(&wd->lock);
	return fired;
}

/* --------------------------------------------------------------- create */

int rewind_create(const struct rewind_config *rc, struct rewind_vm **out)
{
	struct vm_config cfg;
	struct rewind_vm *h;
	int ret = -EINVAL;

	*out = NULL;
	if (!rc || !rc->kernel || strlen(rc->kernel) >= sizeof(cfg.kernel) ||
	    (rc->args && strlen(rc->args) >= sizeof(cfg.args)))
		return -EINVAL;
	config_init(&cfg);
	snprintf(cfg.kernel, sizeof(cfg.kernel), "%s", rc->kernel);
	snprintf(cfg.args, sizeof(cfg.args), "%s", rc->args ? rc->args : "");
	if (rc->mem_size)
		cfg.mem_size = rc->mem_size;
	cfg.serial_in = false;
	if (!rc->console)
		snprintf(cfg.serial_out, sizeof(cfg.serial_out), "/dev/null");
	else if (strcmp(rc->console, "-") != 0)
		snprintf(cfg.serial_out, sizeof(cfg.serial_out), "%s", rc->console);
	cfg.dirty_ring_entries = rc->dirty_ring ? DIRTY_RING_ENTRIES : 0;

	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->hot_set = !rc->no_hot_set && !rc->dirty_ring;
	if (rc->timeout_us > UINT64_MAX / 1000) {
		free(h);
		return -EINVAL;
	}
	h->wd.timeout_ns = rc->timeout_us * 1000;
	ret = vm_create(&cfg, &h->vm);
	if (ret)
		goto fail;
	h->vcpu = h->vm->vcpus[0];
	ret = board_build(h->vm);
	if (!ret)
		ret = vm_boot(h->vm);
	if (!ret)
		ret = dirty_start(h->vm, rc->dirty_ring != 0, &h->dirty);
	if (ret)
		goto fail;
	uint64_t np = dirty_npages(h->dirty);
	h->pages = malloc(np * sizeof(h->pages[0]));
	h->last_seen = calloc(np, sizeof(h->last_seen[0]));
	h->streak = calloc(np, 1);
	if (!h->pages || !h->last_seen || !h->streak) {
		ret = -ENOMEM;
		goto fail;
	}
	ret = image_init(&h->root, h->vm->ncpus);
	if (ret)
		goto fail;
	h->vm->hooks.hypercall = harness_hypercall;
	h->vm->hooks.opaque = h;
	*out = h;
	return 0;
fail:
	rewind_destroy(h);
	return ret;
}

void rewind_destroy(struct rewind_vm *h)
{
	if (!h)
		return;
	watchdog_stop(h);
	if (h->dirty)
		dirty_stop(h->dirty);
	vm_destroy(h->vm);
	if (h->root_mem)
		munmap(h->root_mem, h->root_size);
	image_free(&h->root);
	free(h->pages);
	free(h->last_seen);
	free(h->streak);
	free(h->payload);
	free(h);
}

/* ------------------------------------------------------------------ root */

/*
 * Finish the last exit so the vCPU's state is consistent and replaceable.
 * A store to the doorbell (the one-way hypercalls rw_done() and
 * rw_report_crash() use) leaves nothing to complete: KVM finished the
 * instruction before exiting.
 */
static int settle(struct rewind_vm *h)
{
	struct kvm_run *run = h->vcpu->run;

	if (!h->io_pending)
		return 0;
	h->io_pending = false;
	if (run->exit_reason == KVM_EXIT_MMIO && run->mmio.is_write)
		return 0;
	return vcpu_complete_io(h->vcpu);
}

/* The last exit finished, and what the guest wrote since known. */
static int settle_and_harvest(struct rewind_vm *h)
{
	int ret = settle(h);

	return ret ? ret : dirty_harvest(h->dirty);
}

/*
 * What the vCPU looked like when it last held the root state: the next
 * reset compares against it.
 */
static void note_loaded(struct rewind_vm *h, const struct vcpu_exit_counts *now, bool valid,
			uint64_t irqs)
{
	h->counts = *now;
	h->counts_valid = valid;
	h->hc_at_load = h->hc_exits;
	h->irqs_at_load = irqs;
}

/*
 * Which loads a reset may skip, because the guest cannot have changed that
 * state since the vCPU last held the root state (the conditions are those
 * of VCPU_LOAD_UNTRAPPED and VCPU_LOAD_KEEP_LAPIC in vcpu_state.h):
 *  - XCRS, DEBUGREGS: every exit since was an MMIO exit to this VMM or a
 *    port access (vcpu_exits_all_seen);
 *  - LAPIC as well: every exit since was one of the harness's hypercalls,
 *    nothing raised or injected an interrupt, TPR and APIC base are the
 *    root's, and the root's timer is idle on a host without APIC
 *    virtualization (h->lapic_keepable). Then the PICs, IOAPIC and PIT
 *    are untouched as well if the root's PIT is idle (the reset loads
 *    only the clock: platform_state_load_clock).
 * A fuzzing target that only computes and makes hypercalls between resets
 * gets both.
 */
static unsigned lean_flags(struct rewind_vm *h, const struct vcpu_exit_counts *now, uint64_t irqs)
{
	const struct vcpu_exit_counts *was = &h->counts;
	const struct kvm_run *run = h->vcpu->run;
	const struct kvm_sregs2 *root = &h->root.vcpus[0]->sregs;

	if (!vcpu_exits_all_seen(was, now))
		return 0;
	if (h->lapic_keepable && now->exits - was->exits == h->hc_exits - h->hc_at_load &&
	    now->io == was->io && now->irqs == was->irqs && now->nmis == was->nmis &&
	    irqs == h->irqs_at_load && run->cr8 == root->cr8 && run->apic_base == root->apic_base)
		return VCPU_LOAD_UNTRAPPED | VCPU_LOAD_KEEP_LAPIC;
	return VCPU_LOAD_UNTRAPPED;
}

int rewind_set_root(struct rewind_vm *h)
{
	struct vm *vm = h->vm;
	int ret;

	ret = settle_and_harvest(h);
	if (ret)
		return ret;
	if (!h->root_mem) {
		h->root_size = vm->mem.size;
		h->root_mem = mmap(NULL, h->root_size, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (h->root_mem == MAP_FAILED) {
			h->root_mem = NULL;
			return -ENOMEM;
		}
	}
	memcpy(h->root_mem, vm->mem.hva, h->root_size);
	dirty_clear(h->dirty, DIRTY_RESET);
	dirty_clear_hot(h->dirty);
	memset(h->last_seen, 0, dirty_npages(h->dirty) * sizeof(h->last_seen[0]));
	memset(h->streak, 0, dirty_npages(h->dirty));
	ret = image_save(&h->root, vm);
	if (ret)
		return ret;
	/* coming back here after a reset, rw_snapshot() returns 1 */
	h->root.vcpus[0]->regs.rax = 1;
	h->lapic_keepable = !vm->kvm.apic_virt && vcpu_state_lapic_timer_idle(h->root.vcpus[0]);
	h->pit_idle = platform_state_pit_idle(&h->root.platform);
	struct vcpu_exit_counts now;
	bool have_now = vcpu_exit_counts(h->vcpu, &now) == 0;
	note_loaded(h, &now, have_now, __atomic_load_n(&vm->irq_line_calls, __ATOMIC_RELAXED));
	h->has_root = true;
	h->resets = 0;
	return 0;
}

/* ----------------------------------------------------------------- reset */

int rewind_reset(struct rewind_vm *h)
{
	struct vm *vm = h->vm;
	struct image_apply_opts lean = { 0 };
	char why[320];
	uint64_t n, iter;
	int ret;

	if (!h->has_root)
		return -ENOENT;
	if (vm_stopped(vm))
		vm_clear_stop(vm);
	ret = settle_and_harvest(h);
	if (ret)
		return ret;
	iter = ++h->resets;
	if (h->hot_set && iter % REWIND_HOT_RELEARN == 0)
		dirty_clear_hot(h->dirty);
	n = dirty_take_into(h->dirty, DIRTY_RESET, h->pages, dirty_npages(h->dirty));
	for (uint64_t i = 0; i < n; i++) {
		uint64_t p = h->pages[i];

		memcpy(vm->mem.hva + p * RW_PAGE_SIZE, h->root_mem + p * RW_PAGE_SIZE, RW_PAGE_SIZE);
		if (!h->hot_set || dirty_is_hot(h->dirty, p))
			continue;
		/* learn: dirty in REWIND_HOT_AFTER resets in a row -> hot */
		h->streak[p] = h->last_seen[p] == (uint32_t)(iter - 1) ? h->streak[p] + 1 : 1;
		h->last_seen[p] = (uint32_t)iter;
		if (h->streak[p] >= REWIND_HOT_AFTER)
			dirty_set_hot(h->dirty, p, true);
	}
	h->restored_last = n;
	h->restored_total += n;

	/*
	 * The vCPU stopped at an exit, so it is runnable, unless a timeout
	 * forced it out: a kick out of hlt leaves it halted (KVM_MP_STATE_HALTED
	 * on a VMX or SVM host), and the next run would sleep again. Then its
	 * MP state is loaded too.
	 */
	unsigned flags = (h->kicked ? 0 : VCPU_LOAD_RUNNABLE) | VCPU_LOAD_SYNC;
	struct vcpu_exit_counts now;
	bool have_now = vcpu_exit_counts(h->vcpu, &now) == 0;
	uint64_t irqs = __atomic_load_n(&vm->irq_line_calls, __ATOMIC_RELAXED);

	if (have_now && h->counts_valid)
		flags |= lean_flags(h, &now, irqs);
	h->lean_loads += (flags & VCPU_LOAD_UNTRAPPED) != 0;
	h->lapic_kept += (flags & VCPU_LOAD_KEEP_LAPIC) != 0;
	h->counts_valid = false;
	lean.vcpu_flags = flags;
	lean.clock_only = (flags & VCPU_LOAD_KEEP_LAPIC) && h->pit_idle;
	ret = image_apply(&h->root, vm, &lean, why, sizeof(why));
	if (ret) {
		rw_error("reset: %s", why);
		return ret;
	}
	/* loading state makes no exits: now is where the next reset compares */
	note_loaded(h, &now, have_now, irqs);
	return 0;
}

/* ------------------------------------------------------------------- run */

int rewind_run(struct rewind_vm *h, struct rewind_event *ev)
{
	struct vm *vm = h->vm;
	int ret;

	memset(ev, 0, sizeof(*ev));
	ev->vector = REWIND_NO_VECTOR;
	if (vm_stopped(vm))
		return RW_ESTOPPED;
	ret = settle(h);
	if (ret)
		return ret;
	h->have_event = false;
	ret = watch_begin(h);
	if (ret)
		return ret;
	ret = vcpu_run_here(h->vcpu);
	bool timed_out = watch_end(h);
	h->io_pending = true;
	h->kicked = ret == -ECANCELED;
	if (ret == -ECANCELED && timed_out) {
		ev->kind = REWIND_EV_TIMEOUT;
		ev->vector = REWIND_NO_VECTOR;
		snprintf(ev->message, sizeof(ev->message), "the run took longer than %llu us",
			 (unsigned long long)(h->wd.timeout_ns / 1000));
		return 0;
	}
	if (ret == 0 && h->have_event) {
		*ev = h->ev;
		if (ev->kind == REWIND_EV_SNAPSHOT)
			return rewind_set_root(h);
		return 0;
	}
	if (ret != RW_ESTOPPED)
		return ret;
	/* the VM stopped: the guest exited, crashed or died */
	const struct vm_stop_info *st = &vm->stop;
	switch (st->reason) {
	case VM_STOP_EXIT:
		ev->kind = REWIND_EV_EXIT;
		ev->status = st->exit_code;
		break;
	case VM_STOP_CRASH:
		ev->kind = REWIND_EV_CRASH;
		ev->code = st->vector;
		ev->pc = st->rip;
		ev->vector = (uint32_t)st->vector;
		ev->error_code = st->error_code;
		ev->cr2 = st->cr2;
		break;
	default:
		ev->kind = REWIND_EV_FATAL;
		break;
	}
	snprintf(ev->message, sizeof(ev->message), "%s", st->msg);
	return 0;
}

/* ------------------------------------------------------------------ misc */

int rewind_set_payload(struct rewind_vm *h, const void *data, size_t len)
{
	uint8_t *p;

	if (len > PAYLOAD_MAX)
		return -E2BIG;
	p = realloc(h->payload, len ? len : 1);
	if (!p)
		return -ENOMEM;
	memcpy(p, data, len);
	h->payload = p;
	h->payload_len = len;
	return 0;
}

int rewind_read(struct rewind_vm *h, uint64_t gpa, void *buf, size_t len)
{
	return mem_read(&h->vm->mem, gpa, buf, len);
}

int rewind_write(struct rewind_vm *h, uint64_t gpa, const void *buf, size_t len)
{
	return mem_write(&h->vm->mem, gpa, buf, len);
}

int rewind_coverage(struct rewind_vm *h, uint8_t **map, size_t *size)
{
	if (!h->cov_map)
		return -ENOENT;
	*map = h->cov_map;
	*size = h->cov_size;
	return 0;
}

const void *rewind_memory(struct rewind_vm *h, size_t *len)
{
	*len = h->vm->mem.size;
	return h->vm->mem.hva;
}

void rewind_get_stats(struct rewind_vm *h, struct rewind_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->resets = h->resets;
	st->lean_resets = h->lean_loads;
	st->lapic_kept_resets = h->lapic_kept;
	st->pages_restored = h->restored_last;
	st->pages_restored_total = h->restored_total;
	st->hot_pages = dirty_hot_count(h->dirty);
	st->root_pages = dirty_npages(h->dirty);
}
