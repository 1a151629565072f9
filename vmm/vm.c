#include "vm.h"

#include <errno.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "boot.h"
#include "hypercall.h"
#include "log.h"
#include "rw/abi.h"
#include "util.h"
#include "vcpu.h"
#include "vcpu_state.h"

/* KVM's x86 private pages (real-mode TSS, EPT identity map) sit in the hole. */
#define KVM_TSS_GPA 0xfffbd000ULL
#define KVM_IDMAP_GPA 0xfffbc000ULL

/* ------------------------------------------------------------------ create */

static int vm_setup_kvm(struct vm *vm)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	uint64_t idmap = KVM_IDMAP_GPA;

	if (ioctl(vm->fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap))
		return -errno;
	if (ioctl(vm->fd, KVM_SET_TSS_ADDR, KVM_TSS_GPA))
		return -errno;
	if (ioctl(vm->fd, KVM_CREATE_IRQCHIP, 0))
		return -errno;
	if (ioctl(vm->fd, KVM_CREATE_PIT2, &pit))
		return -errno;
	return 0;
}

/*
 * The dirty ring is a VM-wide mode that must be chosen before any vCPU
 * exists. It costs nothing until a memory slot logs dirty pages.
 */
static int vm_setup_dirty_ring(struct vm *vm)
{
	struct kvm_enable_cap cap = { 0 };
	uint64_t bytes = (uint64_t)vm->cfg.dirty_ring_entries * sizeof(struct kvm_dirty_gfn);

	if (!vm->cfg.dirty_ring_entries)
		return 0;
	if (!vm->kvm.dirty_ring_max) {
		rw_error("KVM lacks KVM_CAP_DIRTY_LOG_RING (use --dirty-log bitmap)");
		return RW_ENOKVMCAP;
	}
	if (bytes > vm->kvm.dirty_ring_max || (vm->cfg.dirty_ring_entries &
					       (vm->cfg.dirty_ring_entries - 1))) {
		rw_error("dirty ring of %u entries: KVM allows a power of two up to %u",
			 vm->cfg.dirty_ring_entries,
			 (unsigned)(vm->kvm.dirty_ring_max / sizeof(struct kvm_dirty_gfn)));
		return -EINVAL;
	}
	cap.cap = vm->kvm.dirty_ring_acq_rel ? KVM_CAP_DIRTY_LOG_RING_ACQ_REL : KVM_CAP_DIRTY_LOG_RING;
	cap.args[0] = bytes;
	return ioctl(vm->fd, KVM_ENABLE_CAP, &cap) ? -errno : 0;
}

int vm_create(const struct vm_config *cfg, struct vm **out)
{
	struct vm *vm;
	int ret = -ENOMEM;

	*out = NULL;
	if (cfg->ncpus < 1 || cfg->ncpus > RW_MAX_CPUS) {
		rw_error("--cpus must be between 1 and %d", RW_MAX_CPUS);
		return -EINVAL;
	}
	if (cfg->mem_size < RW_MEM_MIN || cfg->mem_size > RW_MEM_MAX || cfg->mem_size % (2 * MiB)) {
		rw_error("--mem must be a multiple of 2M between 16M and 64G");
		return -EINVAL;
	}
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		goto fail;
	vm->fd = -1;
	vm->epfd = -1;
	vm->stop_efd = -1;
	vm->mem.memfd = -1;
	vm->cfg = *cfg;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);

	ret = kvm_host_open(&vm->kvm);
	if (ret)
		goto fail_free;
	if (cfg->ncpus > vm->kvm.max_vcpus) {
		rw_error("KVM allows at most %u vCPUs", vm->kvm.max_vcpus);
		ret = -EINVAL;
		goto fail_kvm;
	}
	vm->fd = ioctl(vm->kvm.fd, KVM_CREATE_VM, 0);
	if (vm->fd < 0) {
		ret = -errno;
		rw_error("KVM_CREATE_VM: %s", strerror(errno));
		goto fail_kvm;
	}
	ret = vm_setup_kvm(vm);
	if (ret) {
		rw_error("setting up the VM (irqchip, PIT): %s", rw_strerror(ret));
		goto fail_vm;
	}
	ret = vm_setup_dirty_ring(vm);
	if (ret) {
		if (ret != RW_ENOKVMCAP && ret != -EINVAL)
			rw_error("enabling the dirty ring: %s", rw_strerror(ret));
		goto fail_vm;
	}
	ret = mem_init(&vm->mem, vm->fd, cfg->mem_size, 0);
	if (ret) {
		rw_error("allocating %llu bytes of guest RAM: %s",
			 (unsigned long long)cfg->mem_size, rw_strerror(ret));
		goto fail_vm;
	}
	vm->epfd = epoll_create1(EPOLL_CLOEXEC);
	vm->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->epfd < 0 || vm->stop_efd < 0) {
		ret = -errno;
		goto fail_mem;
	}
	vm->vcpus = calloc(cfg->ncpus, sizeof(vm->vcpus[0]));
	if (!vm->vcpus) {
		ret = -ENOMEM;
		goto fail_mem;
	}
	for (unsigned i = 0; i < cfg->ncpus; i++) {
		ret = vcpu_create(vm, i, &vm->vcpus[i]);
		if (ret) {
			rw_error("creating vCPU %u: %s", i, rw_strerror(ret));
			goto fail_vcpus;
		}
		vm->ncpus++;
	}
	ret = ioctl(vm->vcpus[0]->fd, KVM_GET_TSC_KHZ, 0);
	vm->kvm.tsc_khz = ret > 0 ? (uint64_t)ret : 0;
	ret = vcpu_state_probe(vm);
	if (ret) {
		rw_error("probing the vCPU state KVM can save: %s", rw_strerror(ret));
		goto fail_vcpus;
	}
	ret = hypercall_init(vm);
	if (ret)
		goto fail_vcpus;
	*out = vm;
	return 0;

fail_vcpus:
	for (unsigned i = 0; i < vm->ncpus; i++)
		vcpu_destroy(vm->vcpus[i]);
	free(vm->vcpus);
fail_mem:
	if (vm->epfd >= 0)
		close(vm->epfd);
	if (vm->stop_efd >= 0)
		close(vm->stop_efd);
	mem_free(&vm->mem);
fail_vm:
	close(vm->fd);
fail_kvm:
	kvm_host_close(&vm->kvm);
fail_free:
	pthread_mutex_destroy(&vm->lock);
	pthread_cond_destroy(&vm->cond);
	free(vm);
fail:
	return ret;
}

void vm_destroy(struct vm *vm)
{
	struct device *d, *next;

	if (!vm)
		return;
	if (vm->started) {
		struct vm_stop_info why = { .reason = VM_STOP_REQUEST };
		vm_request_stop(vm, &why);
		vm_wait(vm, NULL);
	}
	if (vm->event_started) {
		uint64_t one = 1;
		if (write(vm->stop_efd, &one, sizeof(one)) < 0)
			rw_warn("waking the event thread: %s", strerror(errno));
		pthread_join(vm->event_thread, NULL);
	}
	for (d = vm->devices; d; d = next) {
		next = d->next;
		if (d->type->ops && d->type->ops->destroy)
			d->type->ops->destroy(d);
	}
	for (unsigned i = 0; i < vm->ncpus; i++)
		vcpu_destroy(vm->vcpus[i]);
	free(vm->vcpus);
	for (unsigned b = 0; b < BUS_NR; b++)
		bus_free(&vm->buses[b]);
	free(vm->events);
	close(vm->epfd);
	close(vm->stop_efd);
	mem_free(&vm->mem);
	close(vm->fd);
	kvm_host_close(&vm->kvm);
	pthread_mutex_destroy(&vm->lock);
	pthread_cond_destroy(&vm->cond);
	free(vm);
}

int vm_boot(struct vm *vm)
{
	int ret = boot_load(vm);

	for (unsigned i = 0; ret == 0 && i < vm->ncpus; i++) {
		ret = boot_setup_vcpu(vm, vm->vcpus[i]);
		if (ret)
			rw_error("setting up vCPU %u: %s", i, rw_strerror(ret));
	}
	return ret;
}

/* ------------------------------------------------------------ event thread */

int vm_event_add(struct vm *vm, int fd, vm_event_fn fn, void *opaque)
{
	struct vm_event *ev;
	struct epoll_event ee = { .events = EPOLLIN };

	if (vm->event_started)
		return -EBUSY;
	ev = realloc(vm->events, (vm->nr_events + 1) * sizeof(*ev));
	if (!ev)
		return -ENOMEM;
	vm->events = ev;
	vm->events[vm->nr_events] = (struct vm_event){ fd, fn, opaque };
	ee.data.u64 = vm->nr_events;
	if (epoll_ctl(vm->epfd, EPOLL_CTL_ADD, fd, &ee))
		return -errno;
	vm->nr_events++;
	return 0;
}

static void *event_thread(void *arg)
{
	struct vm *vm = arg;
	struct epoll_event evs[16];

	for (;;) {
		int n = epoll_wait(vm->epfd, evs, 16, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rw_error("event loop: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			if (evs[i].data.u64 == UINT64_MAX)
				return NULL;
			struct vm_event *e = &vm->events[evs[i].data.u64];
			e->fn(e->opaque, e->fd, evs[i].events);
		}
	}
	return NULL;
}

/* ---------------------------------------------------------------- running */

int vm_start(struct vm *vm)
{
	struct epoll_event ee = { .events = EPOLLIN, .data.u64 = UINT64_MAX };
	int ret;

	if (!vm->event_started) {
		if (epoll_ctl(vm->epfd, EPOLL_CTL_ADD, vm->stop_efd, &ee))
			return -errno;
		ret = -pthread_create(&vm->event_thread, NULL, event_thread, vm);
		if (ret)
			return ret;
		vm->event_started = true;
	}
	/* thread_started is read by kick() under the lock */
	pthread_mutex_lock(&vm->lock);
	if (vm->started) {
		/* a restart: only once every vCPU thread has finished and been joined */
		bool joined = vm->running == 0;
		for (unsigned i = 0; i < vm->ncpus; i++)
			if (vm->vcpus[i]->thread_started)
				joined = false;
		if (!joined) {
			pthread_mutex_unlock(&vm->lock);
			return -EBUSY;
		}
		vm->stopping = false;
		memset(&vm->stop, 0, sizeof(vm->stop));
		for (unsigned i = 0; i < vm->ncpus; i++) {
			vm->vcpus[i]->finished = false;
			vm->vcpus[i]->run->immediate_exit = 0;
		}
	}
	vm->started = true;
	vm->running = vm->ncpus;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		ret = vcpu_start_thread(vm->vcpus[i]);
		if (ret) {
			vm->running -= vm->ncpus - i; /* these never started */
			pthread_mutex_unlock(&vm->lock);
			struct vm_stop_info why = { .reason = VM_STOP_ERROR, .err = ret };
			snprintf(why.msg, sizeof(why.msg), "starting vCPU %u: %s", i, rw_strerror(ret));
			vm_request_stop(vm, &why);
			return ret;
		}
	}
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

/* Get a vCPU out of KVM_RUN. Called with vm->lock held. */
static void kick(struct vcpu *v)
{
	if (v->finished || v->parked)
		return;
	v->run->immediate_exit = 1; /* a thread not yet in KVM_RUN sees this */
	if (v->thread_started)
		pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

static bool accounted(const struct vm *vm)
{
	return vm->parked + (vm->ncpus - vm->running) >= vm->ncpus;
}

/*
 * Wait, with vm->lock held, until every vCPU is parked or finished. Spin
 * briefly first: a vCPU leaves KVM_RUN within tens of microseconds of its
 * kick, sooner than a sleep on the condition variable and the wake-up
 * would take; the lock is dropped between looks so the vCPUs can park.
 */
static void wait_accounted(struct vm *vm)
{
	uint64_t t0 = rw_now_ns();

	while (!accounted(vm) && rw_now_ns() - t0 < 300000) {
		pthread_mutex_unlock(&vm->lock);
		__builtin_ia32_pause();
		pthread_mutex_lock(&vm->lock);
	}
	while (!accounted(vm))
		pthread_cond_wait(&vm->cond, &vm->lock);
}

int vm_pause_self(struct vm *vm, struct vcpu *self)
{
	int ret;

	pthread_mutex_lock(&vm->lock);
	vm->pause_depth++;
	if (self && !self->parked) {
		self->parked = true;
		vm->parked++;
	}
	for (unsigned i = 0; i < vm->ncpus; i++)
		kick(vm->vcpus[i]);
	wait_accounted(vm);
	ret = vm->stopping ? RW_ESTOPPED : 0;
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

int vm_pause(struct vm *vm)
{
	return vm_pause_self(vm, NULL);
}

void vm_resume_self(struct vm *vm, struct vcpu *self)
{
	pthread_mutex_lock(&vm->lock);
	if (self && self->parked) {
		self->parked = false;
		vm->parked--;
	}
	if (vm->pause_depth > 0 && --vm->pause_depth == 0) {
		vm->pause_gen++;
		pthread_cond_broadcast(&vm->cond);
	}
	pthread_mutex_unlock(&vm->lock);
}

int vm_pause_capture(struct vm *vm, struct vcpu_state **states)
{
	pthread_mutex_lock(&vm->lock);
	vm->park_states = states;
	vm->park_err = 0;
	for (unsigned i = 0; i < vm->ncpus; i++)
		vm->vcpus[i]->state_saved = false;
	pthread_cond_broadcast(&vm->cond); /* vCPUs already parked save too */
	pthread_mutex_unlock(&vm->lock);
	return vm_pause(vm);
}

int vm_capture_finish(struct vm *vm)
{
	int ret = 0;

	pthread_mutex_lock(&vm->lock);
	for (;;) {
		bool waiting = false;
		for (unsigned i = 0; i < vm->ncpus; i++)
			if (vm->vcpus[i]->in_park && !vm->vcpus[i]->state_saved)
				waiting = true;
		if (!waiting)
			break;
		pthread_cond_wait(&vm->cond, &vm->lock);
	}
	/* the rest are outside KVM_RUN and not in the park loop: save them here */
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = vm->vcpus[i];
		if (v->state_saved)
			continue;
		int r = vcpu_state_save(v, vm->park_states[i]);
		if (r && !vm->park_err)
			vm->park_err = r;
		v->state_saved = true;
	}
	ret = vm->park_err;
	vm->park_states = NULL;
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

void vm_vcpu_block_begin(struct vm *vm, struct vcpu *self)
{
	pthread_mutex_lock(&vm->lock);
	if (!self->parked) {
		self->parked = true;
		vm->parked++;
		pthread_cond_broadcast(&vm->cond);
	}
	pthread_mutex_unlock(&vm->lock);
}

void vm_vcpu_block_end(struct vm *vm, struct vcpu *self)
{
	pthread_mutex_lock(&vm->lock);
	while (vm->pause_depth > 0 && !vm->stopping)
		pthread_cond_wait(&vm->cond, &vm->lock);
	if (self->parked) {
		self->parked = false;
		vm->parked--;
	}
	pthread_mutex_unlock(&vm->lock);
}

void vm_resume(struct vm *vm)
{
	vm_resume_self(vm, NULL);
}

void vm_request_stop(struct vm *vm, const struct vm_stop_info *why)
{
	pthread_mutex_lock(&vm->lock);
	if (!vm->stopping) {
		vm->stopping = true;
		vm->stop = *why;
	}
	for (unsigned i = 0; i < vm->ncpus; i++)
		kick(vm->vcpus[i]);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

void vm_clear_stop(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->stopping = false;
	memset(&vm->stop, 0, sizeof(vm->stop));
	for (unsigned i = 0; i < vm->ncpus; i++)
		vm->vcpus[i]->run->immediate_exit = 0;
	pthread_mutex_unlock(&vm->lock);
}

bool vm_stopped(struct vm *vm)
{
	bool s;

	pthread_mutex_lock(&vm->lock);
	s = vm->stopping;
	pthread_mutex_unlock(&vm->lock);
	return s;
}

void vm_wait(struct vm *vm, struct vm_stop_info *out)
{
	pthread_mutex_lock(&vm->lock);
	while (vm->running > 0)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = vm->vcpus[i];
		if (v->thread_started) {
			pthread_join(v->thread, NULL);
			v->thread_started = false;
		}
	}
	if (out)
		*out = vm->stop;
}

int vm_irq_line(struct vm *vm, uint32_t gsi, int level)
{
	struct kvm_irq_level irq = { .irq = gsi, .level = (uint32_t)level };

	__atomic_add_fetch(&vm->irq_line_calls, 1, __ATOMIC_RELAXED);
	return ioctl(vm->fd, KVM_IRQ_LINE, &irq) ? -errno : 0;
}
