#include "vcpu.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "boot.h"
#include "log.h"
#include "util.h"
#include "vcpu_state.h"
#include "vm.h"

/* ----------------------------------------------------------------- set-up */

static void kick_handler(int sig)
{
	(void)sig; /* its only job is to interrupt KVM_RUN */
}

/* The handler is process-wide and identical for every VM: install it once. */
static pthread_once_t kick_once = PTHREAD_ONCE_INIT;

static void install_kick_handler(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(VCPU_KICK_SIGNAL, &sa, NULL);
}

static int vcpu_set_cpuid(struct vcpu *v)
{
	const struct kvm_cpuid2 *sup = v->vm->kvm.cpuid;
	size_t sz = sizeof(*sup) + sup->nent * sizeof(sup->entries[0]);
	struct kvm_cpuid2 *c = malloc(sz);
	int ret = 0;

	if (!c)
		return -ENOMEM;
	memcpy(c, sup, sz);
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		switch (e->function) {
		case 1:
			/* initial APIC id, and the hypervisor-present bit */
			e->ebx = (e->ebx & 0x00ffffff) | (v->index << 24);
			e->ecx |= 1u << 31;
			break;
		case 0xb:
		case 0x1f:
			e->edx = v->index; /* x2APIC id */
			break;
		}
	}
	if (ioctl(v->fd, KVM_SET_CPUID2, c))
		ret = -errno;
	free(c);
	return ret;
}

/* KVM_RUN; on return the sync area holds the vCPU's registers again. */
static int kvm_run_once(struct vcpu *v)
{
	int r = ioctl(v->fd, KVM_RUN, 0);

	v->sync_fresh = true;
	return r;
}

int vcpu_create(struct vm *vm, unsigned index, struct vcpu **out)
{
	struct vcpu *v = calloc(1, sizeof(*v));
	int ret;

	if (!v)
		return -ENOMEM;
	v->vm = vm;
	v->index = index;
	v->stats_fd = -1;
	v->fd = ioctl(vm->fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (v->fd < 0) {
		ret = -errno;
		goto fail_free;
	}
	v->run = mmap(NULL, vm->kvm.run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		ret = -errno;
		goto fail_close;
	}
	if (vm->cfg.dirty_ring_entries) {
		v->ring = mmap(NULL, vm->cfg.dirty_ring_entries * sizeof(struct kvm_dirty_gfn),
			       PROT_READ | PROT_WRITE, MAP_SHARED, v->fd,
			       KVM_DIRTY_LOG_PAGE_OFFSET * RW_PAGE_SIZE);
		if (v->ring == MAP_FAILED) {
			ret = -errno;
			v->ring = NULL;
			goto fail_unmap;
		}
	}
	ret = vcpu_set_cpuid(v);
	if (ret)
		goto fail_unmap;
	/* every return from KVM_RUN exports these (a parking vCPU saves them) */
	if (vm->kvm.sync_regs)
		v->run->kvm_valid_regs = vm->kvm.sync_regs_mask &
			(KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS);
	*out = v;
	return 0;

fail_unmap:
	if (v->ring)
		munmap(v->ring, vm->cfg.dirty_ring_entries * sizeof(struct kvm_dirty_gfn));
	munmap(v->run, vm->kvm.run_size);
fail_close:
	close(v->fd);
fail_free:
	free(v);
	return ret;
}

void vcpu_destroy(struct vcpu *v)
{
	if (!v)
		return;
	if (v->ring)
		munmap(v->ring, v->vm->cfg.dirty_ring_entries * sizeof(struct kvm_dirty_gfn));
	munmap(v->run, v->vm->kvm.run_size);
	if (v->stats_fd >= 0)
		close(v->stats_fd);
	close(v->fd);
	free(v);
}

/* ---------------------------------------------------------- exit counters */

static const char *const exit_stat_names[VCPU_EXIT_STATS] = {
	"exits", "mmio_exits", "io_exits", "insn_emulation", "irq_injections", "nmi_injections",
};

/* The counters sit close together in KVM's stats: one read covers them all. */
#define EXIT_STATS_SPAN_MAX 512

/* Open the stats fd and find where in it each counter is. */
static int exit_stats_open(struct vcpu *v)
{
	struct kvm_stats_header hdr;
	struct kvm_stats_desc *d;
	uint32_t off[VCPU_EXIT_STATS], lo = UINT32_MAX, hi = 0;
	size_t dsz;
	char *descs = NULL;
	unsigned found = 0;
	int fd, ret = -ENOTSUP;

	if (!v->vm->kvm.stats_fd)
		return -ENOTSUP;
	fd = ioctl(v->fd, KVM_GET_STATS_FD, NULL);
	if (fd < 0)
		return -ENOTSUP;
	if (pread(fd, &hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) || hdr.num_desc > 4096 ||
	    hdr.name_size > 4096)
		goto out;
	dsz = sizeof(*d) + hdr.name_size;
	descs = malloc(dsz * hdr.num_desc);
	if (!descs || pread(fd, descs, dsz * hdr.num_desc, hdr.desc_offset) !=
			      (ssize_t)(dsz * hdr.num_desc))
		goto out;
	for (uint32_t i = 0; i < hdr.num_desc; i++) {
		d = (struct kvm_stats_desc *)(descs + i * dsz);
		if ((d->flags & KVM_STATS_TYPE_MASK) != KVM_STATS_TYPE_CUMULATIVE || d->size != 1)
			continue;
		for (unsigned k = 0; k < VCPU_EXIT_STATS; k++) {
			if (!(found & (1u << k)) &&
			    strncmp(d->name, exit_stat_names[k], hdr.name_size) == 0) {
				off[k] = hdr.data_offset + d->offset;
				lo = off[k] < lo ? off[k] : lo;
				hi = off[k] > hi ? off[k] : hi;
				found |= 1u << k;
			}
		}
	}
	if (found != (1u << VCPU_EXIT_STATS) - 1 || hi - lo + 8 > EXIT_STATS_SPAN_MAX)
		goto out;
	v->stat_lo = lo;
	v->stat_span = hi - lo + 8;
	for (unsigned k = 0; k < VCPU_EXIT_STATS; k++)
		v->stat_off[k] = off[k] - lo;
	v->stats_fd = fd;
	fd = -1;
	ret = 0;
out:
	free(descs);
	if (fd >= 0)
		close(fd);
	return ret;
}

int vcpu_exit_counts(struct vcpu *v, struct vcpu_exit_counts *c)
{
	uint64_t *out[VCPU_EXIT_STATS] = { &c->exits, &c->mmio, &c->io,
					   &c->emulated, &c->irqs, &c->nmis };
	uint8_t buf[EXIT_STATS_SPAN_MAX];

	if (v->stats_fd < 0) {
		if (v->stats_tried)
			return -ENOTSUP;
		v->stats_tried = true;
		if (exit_stats_open(v))
			return -ENOTSUP;
	}
	if (pread(v->stats_fd, buf, v->stat_span, v->stat_lo) != (ssize_t)v->stat_span)
		return -EIO;
	for (unsigned k = 0; k < VCPU_EXIT_STATS; k++)
		memcpy(out[k], buf + v->stat_off[k], 8);
	return 0;
}

/* -------------------------------------------------------------- registers */

int vcpu_get_regs(struct vcpu *v, struct kvm_regs *regs)
{
	return ioctl(v->fd, KVM_GET_REGS, regs) ? -errno : 0;
}

int vcpu_set_regs(struct vcpu *v, const struct kvm_regs *regs)
{
	v->sync_fresh = false;
	return ioctl(v->fd, KVM_SET_REGS, regs) ? -errno : 0;
}

void vcpu_describe(struct vcpu *v, char *buf, unsigned len)
{
	struct kvm_regs r;
	struct kvm_sregs s;

	if (ioctl(v->fd, KVM_GET_REGS, &r) || ioctl(v->fd, KVM_GET_SREGS, &s)) {
		snprintf(buf, len, "(registers unavailable: %s)", strerror(errno));
		return;
	}
	snprintf(buf, len,
		 "rip=0x%llx rsp=0x%llx rflags=0x%llx rax=0x%llx rbx=0x%llx rcx=0x%llx "
		 "rdx=0x%llx rsi=0x%llx rdi=0x%llx cs=0x%x(cpl%u) cr0=0x%llx cr2=0x%llx "
		 "cr3=0x%llx cr4=0x%llx efer=0x%llx",
		 r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, s.cs.selector,
		 s.cs.dpl, s.cr0, s.cr2, s.cr3, s.cr4, s.efer);
}

const char *vcpu_exit_name(uint32_t reason)
{
	static const char *const names[] = {
		[KVM_EXIT_UNKNOWN] = "KVM_EXIT_UNKNOWN",
		[KVM_EXIT_EXCEPTION] = "KVM_EXIT_EXCEPTION",
		[KVM_EXIT_IO] = "KVM_EXIT_IO",
		[KVM_EXIT_HYPERCALL] = "KVM_EXIT_HYPERCALL",
		[KVM_EXIT_DEBUG] = "KVM_EXIT_DEBUG",
		[KVM_EXIT_HLT] = "KVM_EXIT_HLT",
		[KVM_EXIT_MMIO] = "KVM_EXIT_MMIO",
		[KVM_EXIT_IRQ_WINDOW_OPEN] = "KVM_EXIT_IRQ_WINDOW_OPEN",
		[KVM_EXIT_SHUTDOWN] = "KVM_EXIT_SHUTDOWN",
		[KVM_EXIT_FAIL_ENTRY] = "KVM_EXIT_FAIL_ENTRY",
		[KVM_EXIT_INTR] = "KVM_EXIT_INTR",
		[KVM_EXIT_SET_TPR] = "KVM_EXIT_SET_TPR",
		[KVM_EXIT_TPR_ACCESS] = "KVM_EXIT_TPR_ACCESS",
		[KVM_EXIT_NMI] = "KVM_EXIT_NMI",
		[KVM_EXIT_INTERNAL_ERROR] = "KVM_EXIT_INTERNAL_ERROR",
		[KVM_EXIT_SYSTEM_EVENT] = "KVM_EXIT_SYSTEM_EVENT",
		[KVM_EXIT_IOAPIC_EOI] = "KVM_EXIT_IOAPIC_EOI",
		[KVM_EXIT_X86_RDMSR] = "KVM_EXIT_X86_RDMSR",
		[KVM_EXIT_X86_WRMSR] = "KVM_EXIT_X86_WRMSR",
		[KVM_EXIT_DIRTY_RING_FULL] = "KVM_EXIT_DIRTY_RING_FULL",
	};

	if (reason < ARRAY_SIZE(names) && names[reason])
		return names[reason];
	return "unknown exit";
}

/* ------------------------------------------------------------------- exits */

void vcpu_defer(struct vcpu *v, vcpu_deferred_fn fn, void *opaque)
{
	v->deferred = fn;
	v->deferred_opaque = opaque;
}

/* Stop the VM because of what this vCPU hit; fmt describes it. */
static void vcpu_fatal(struct vcpu *v, const char *what)
{
	struct vm_stop_info why = { .reason = VM_STOP_FATAL, .vcpu = v->index,
				    .kvm_exit = v->run->exit_reason };
	char regs[400];
	struct kvm_regs r;

	if (ioctl(v->fd, KVM_GET_REGS, &r) == 0)
		why.rip = r.rip;
	vcpu_describe(v, regs, sizeof(regs));
	snprintf(why.msg, sizeof(why.msg), "vCPU %u: %s (%s) at RIP 0x%llx; %s", v->index, what,
		 vcpu_exit_name(v->run->exit_reason), (unsigned long long)why.rip, regs);
	vm_request_stop(v->vm, &why);
}

static void vcpu_error(struct vcpu *v, int err, const char *what)
{
	struct vm_stop_info why = { .reason = VM_STOP_ERROR, .err = err, .vcpu = v->index };

	snprintf(why.msg, sizeof(why.msg), "vCPU %u: %s: %s", v->index, what, rw_strerror(err));
	vm_request_stop(v->vm, &why);
}

/* Handle one exit. Returns false when the vCPU must stop running. */
static bool handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	struct vm *vm = v->vm;
	char what[128];

	switch (run->exit_reason) {
	case KVM_EXIT_IO: {
		uint8_t *data = (uint8_t *)run + run->io.data_offset;
		bool out = run->io.direction == KVM_EXIT_IO_OUT;

		for (uint32_t i = 0; i < run->io.count; i++)
			bus_dispatch(&vm->buses[BUS_PIO], v, run->io.port, data + i * run->io.size,
				     run->io.size, out);
		return true;
	}
	case KVM_EXIT_MMIO:
		if (run->mmio.len > sizeof(run->mmio.data))
			run->mmio.len = sizeof(run->mmio.data);
		bus_dispatch(&vm->buses[BUS_MMIO], v, run->mmio.phys_addr, run->mmio.data,
			     run->mmio.len, run->mmio.is_write);
		return true;
	case KVM_EXIT_INTR:
	case KVM_EXIT_IRQ_WINDOW_OPEN:
		return true;
	case KVM_EXIT_DIRTY_RING_FULL:
		if (vm->hooks.dirty_ring_full) {
			vm->hooks.dirty_ring_full(vm->hooks.dirty_opaque, v);
			return true;
		}
		vcpu_fatal(v, "dirty ring full and nobody harvests it");
		return false;
	case KVM_EXIT_SHUTDOWN:
		vcpu_fatal(v, "triple fault");
		return false;
	case KVM_EXIT_HLT:
		vcpu_fatal(v, "halted with no way to wake up");
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		snprintf(what, sizeof(what), "KVM internal error, suberror %u%s",
			 run->internal.suberror,
			 run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION ?
				 " (instruction emulation failed)" : "");
		vcpu_fatal(v, what);
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(what, sizeof(what), "VM entry failed, reason 0x%llx",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		vcpu_fatal(v, what);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		snprintf(what, sizeof(what), "system event %u", run->system_event.type);
		vcpu_fatal(v, what);
		return false;
	default:
		snprintf(what, sizeof(what), "unhandled exit reason %u", run->exit_reason);
		vcpu_fatal(v, what);
		return false;
	}
}

/*
 * After KVM_RUN returned EINTR: park while a pause is requested. Any exit's
 * I/O has been completed by that KVM_RUN, so state is consistent. Returns
 * true when the VM is stopping.
 */
static bool vcpu_park(struct vcpu *v)
{
	struct vm *vm = v->vm;
	bool stopping;

	pthread_mutex_lock(&vm->lock);
	if (vm->pause_depth > 0 && !vm->stopping) {
		v->parked = true;
		v->in_park = true;
		vm->parked++;
		pthread_cond_broadcast(&vm->cond);
		while (vm->pause_depth > 0 && !vm->stopping) {
			/* a capture pause: save this vCPU's state here, in parallel */
			if (vm->park_states && !v->state_saved) {
				struct vcpu_state *st = vm->park_states[v->index];
				int r;

				pthread_mutex_unlock(&vm->lock);
				r = vcpu_state_save_after_run(v, st);
				pthread_mutex_lock(&vm->lock);
				if (r && !vm->park_err)
					vm->park_err = r;
				v->state_saved = true;
				pthread_cond_broadcast(&vm->cond);
				continue;
			}
			pthread_cond_wait(&vm->cond, &vm->lock);
		}
		v->in_park = false;
		v->parked = false;
		vm->parked--;
	}
	stopping = vm->stopping;
	if (!stopping)
		v->run->immediate_exit = 0;
	pthread_mutex_unlock(&vm->lock);
	return stopping;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	for (;;) {
		if (kvm_run_once(v) < 0) {
			int err = errno;

			v->exits++;
			if (err != EINTR && err != EAGAIN) {
				vcpu_error(v, -err, "KVM_RUN");
				break;
			}
			if (v->deferred) {
				vcpu_deferred_fn fn = v->deferred;

				v->deferred = NULL;
				fn(v, v->deferred_opaque);
			}
			if (vcpu_park(v))
				break;
			continue;
		}
		v->exits++;
		if (!handle_exit(v))
			break;
		if (v->deferred) {
			/* complete the exit's I/O first: the next KVM_RUN returns at once */
			pthread_mutex_lock(&vm->lock);
			v->run->immediate_exit = 1;
			pthread_mutex_unlock(&vm->lock);
		}
	}

	pthread_mutex_lock(&vm->lock);
	v->finished = true;
	vm->running--;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

int vcpu_run_here(struct vcpu *v)
{
	for (;;) {
		if (vm_stopped(v->vm))
			return RW_ESTOPPED;
		if (kvm_run_once(v) < 0) {
			v->exits++;
			if (errno == EINTR || errno == EAGAIN) {
				if (!__atomic_load_n(&v->cancel, __ATOMIC_ACQUIRE))
					continue;
				v->run->immediate_exit = 0;
				return -ECANCELED;
			}
			int err = -errno;
			vcpu_error(v, err, "KVM_RUN");
			return err;
		}
		v->exits++;
		if (!handle_exit(v))
			return RW_ESTOPPED;
		if (v->yield) {
			v->yield = false;
			return 0;
		}
	}
}

void vcpu_here_prepare(void)
{
	sigset_t set;

	pthread_once(&kick_once, install_kick_handler);
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

void vcpu_cancel_here(struct vcpu *v, pthread_t thread)
{
	__atomic_store_n(&v->cancel, true, __ATOMIC_RELEASE);
	/* not yet in KVM_RUN: it returns EINTR on entry */
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_RELEASE);
	pthread_kill(thread, VCPU_KICK_SIGNAL);
}

void vcpu_cancel_clear(struct vcpu *v)
{
	__atomic_store_n(&v->cancel, false, __ATOMIC_RELAXED);
	v->run->immediate_exit = 0;
}

int vcpu_complete_io(struct vcpu *v)
{
	int ret = 0;

	v->run->immediate_exit = 1;
	if (kvm_run_once(v) == 0 || (errno != EINTR && errno != EAGAIN))
		ret = errno ? -errno : -EIO;
	v->run->immediate_exit = 0;
	return ret;
}

int vcpu_start_thread(struct vcpu *v)
{
	sigset_t set, old;
	int ret;

	pthread_once(&kick_once, install_kick_handler);
	/* start with the kick signal blocked; the thread unblocks it itself */
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	ret = -pthread_create(&v->thread, NULL, vcpu_thread, v);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret == 0)
		v->thread_started = true;
	return ret;
}
