/*
 * vm.h - one virtual machine: KVM fds, guest RAM, buses, vCPUs, devices.
 *
 * Everything a VM owns hangs off struct vm; nothing VM-specific lives in a
 * static, so any number of VMs can run in one process.
 *
 * Life cycle:
 *   vm_create()      open /dev/kvm, check capabilities, create the VM, RAM,
 *                    irqchip, PIT and the vCPUs (not yet running)
 *   ... add devices (bus_register, vm_add_device), boot_load() an image ...
 *   vm_start()       start the event thread and one thread per vCPU
 *   vm_pause() / vm_resume()   stop every vCPU outside KVM_RUN and let go
 *   vm_wait()        block until the VM stops (guest exit, crash, error,
 *                    vm_request_stop) and collect why
 *   vm_destroy()     join threads, destroy devices, close every fd
 */
#ifndef RW_VMM_VM_H
#define RW_VMM_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus.h"
#include "config.h"
#include "device.h"
#include "err.h"
#include "kvm.h"
#include "memory.h"

struct vcpu;
struct vm;

/* Why a VM stopped. */
enum vm_stop_reason {
	VM_STOP_NONE = 0,
	VM_STOP_EXIT,    /* the guest called exit(code) */
	VM_STOP_CRASH,   /* the guest reported a fault (vector, rip) */
	VM_STOP_FATAL,   /* triple fault, emulation failure, failed entry */
	VM_STOP_ERROR,   /* the VMM failed (errno in .err) */
	VM_STOP_REQUEST, /* vm_request_stop() */
};

struct vm_stop_info {
	enum vm_stop_reason reason;
	int exit_code;      /* VM_STOP_EXIT */
	int err;            /* VM_STOP_ERROR: negative code */
	unsigned vcpu;      /* vCPU that stopped the VM */
	uint32_t kvm_exit;  /* KVM exit reason (VM_STOP_FATAL) */
	uint64_t rip;
	uint64_t vector;    /* VM_STOP_CRASH */
	uint64_t error_code;
	uint64_t cr2;
	char msg[512];      /* one human line, with registers for FATAL */
};

/*
 * Hooks the layers above the VMM install (checkpointing, fuzzing). Called on
 * the vCPU thread that made the hypercall. Return true if handled, with the
 * hypercall's result in *ret.
 */
struct vm_hooks {
	void *opaque;
	bool (*hypercall)(void *opaque, struct vcpu *vcpu, unsigned nr, const uint64_t args[4],
			  int64_t *ret);
	/* KVM_EXIT_DIRTY_RING_FULL on vcpu: harvest its ring (vcpu's thread) */
	void (*dirty_ring_full)(void *opaque, struct vcpu *vcpu);
	void *dirty_opaque;
};

/* Event thread callback: fd is readable (or has events). */
typedef void (*vm_event_fn)(void *opaque, int fd, uint32_t events);

struct vm_event {
	int fd;
	vm_event_fn fn;
	void *opaque;
};

/* Loaded image (boot.c). */
struct boot_image {
	bool sdk;               /* carries an rw_image_note */
	uint64_t kernel_entry;
	uint64_t user_entry;
	uint64_t image_start, image_end;
	uint64_t stacks_base;
	uint64_t free_start;
	uint64_t vectors_gpa;   /* not used by the VMM; informative */
};

struct vm {
	struct kvm_host kvm;    /* /dev/kvm fd and what it supports */
	int fd;                 /* VM fd */
	struct vm_config cfg;   /* owned copy */
	struct guest_mem mem;
	struct bus buses[BUS_NR];
	struct vcpu **vcpus;
	unsigned ncpus;
	struct device *devices; /* list, creation order */
	struct boot_image image;
	struct vm_hooks hooks;

	/* virtio-mmio devices, published to the guest in rw_boot_info.virtio[] */
	unsigned nr_virtio;
	struct {
		uint64_t base;
		uint32_t irq;
		uint32_t device_id;
	} virtio[16];
	uint64_t irq_line_calls; /* vm_irq_line() calls, atomic */

	/* capture while parking (vm_pause_capture) */
	struct vcpu_state **park_states;
	int park_err;

	/* machine-state shape, probed once (vcpu_state.c) */
	uint32_t xsave_size;
	bool sregs2;
	uint32_t nr_msrs;
	uint32_t msr_index[256];

	/* run state, under lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool started;
	bool stopping;
	unsigned pause_depth;   /* vm_pause nesting */
	unsigned parked;        /* vCPU threads parked or finished */
	unsigned running;       /* vCPU threads not yet finished */
	struct vm_stop_info stop;
	uint64_t pause_gen;     /* bumps on every resume */

	/* event thread */
	int epfd;
	int stop_efd;           /* wakes the event thread to exit */
	pthread_t event_thread;
	bool event_started;
	struct vm_event *events;
	unsigned nr_events;
};

/*
 * Create a VM from cfg (copied). On success *out owns every resource.
 * Errors: -ENOENT/-EACCES (/dev/kvm), RW_ENOKVMCAP (logged with the name of
 * the missing capability), -EINVAL (bad memory size or vCPU count), -ENOMEM.
 */
int vm_create(const struct vm_config *cfg, struct vm **out) RW_MUST_CHECK;
/* Stop (if running), join threads, destroy devices, free everything. */
void vm_destroy(struct vm *vm);

/*
 * Load cfg.kernel (boot_load) and put every vCPU in its entry state. Errors
 * are boot_load()'s, already logged.
 */
int vm_boot(struct vm *vm) RW_MUST_CHECK;

/*
 * Start the event thread and the vCPU threads. A VM that stopped may be
 * started again once vm_wait() returned (after its state was replaced, say).
 * Returns 0, -EBUSY (still running) or -errno.
 */
int vm_start(struct vm *vm) RW_MUST_CHECK;

/*
 * Pause barrier: returns once every vCPU thread is outside KVM_RUN, with any
 * pending I/O completed, and parked (or finished). Nests. From a vCPU thread
 * (a hypercall handler) use vm_pause_self(), which counts the caller as
 * parked. Returns 0 or RW_ESTOPPED if the VM has already stopped (the
 * barrier still holds: no vCPU runs).
 */
int vm_pause(struct vm *vm);
int vm_pause_self(struct vm *vm, struct vcpu *self);
/*
 * A vCPU thread about to block outside KVM_RUN (waiting for another thread
 * to do work on its behalf) counts itself as parked, so pauses do not wait
 * for it; block_end waits out any pause in progress before returning.
 */
void vm_vcpu_block_begin(struct vm *vm, struct vcpu *self);
void vm_vcpu_block_end(struct vm *vm, struct vcpu *self);
void vm_resume(struct vm *vm);
void vm_resume_self(struct vm *vm, struct vcpu *self);

/*
 * vm_pause(), and every vCPU saves its own state (vcpu_state_save) into
 * states[index] on its own thread as it parks, in parallel with each other
 * and with whatever the caller does next. vm_capture_finish() waits for
 * those saves, saves the vCPUs that were not parked by their thread
 * (finished, not started, blocked in a hypercall) itself, and returns the
 * first error. Call it before vm_resume().
 */
int vm_pause_capture(struct vm *vm, struct vcpu_state **states);
int vm_capture_finish(struct vm *vm) RW_MUST_CHECK;

/* Ask the VM to stop; the first stop reason recorded wins. Any thread. */
void vm_request_stop(struct vm *vm, const struct vm_stop_info *why);
/* Block until every vCPU thread has finished; copy the stop reason. */
void vm_wait(struct vm *vm, struct vm_stop_info *out);
/*
 * Forget a stop, for a VM driven with vcpu_run_here() (no vCPU threads):
 * its state is about to be replaced and it will run again.
 */
void vm_clear_stop(struct vm *vm);
/* True once the VM is stopping or stopped. */
bool vm_stopped(struct vm *vm);

/* Level-triggered interrupt line (GSI) through the in-kernel irqchip. */
int vm_irq_line(struct vm *vm, uint32_t gsi, int level);

/*
 * Register fd with the event thread (EPOLLIN). Only before vm_start. The
 * callback runs on the event thread. Returns 0 or -errno.
 */
int vm_event_add(struct vm *vm, int fd, vm_event_fn fn, void *opaque) RW_MUST_CHECK;

#endif
