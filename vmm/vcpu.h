/*
 * vcpu.h - one vCPU: its fd, its kvm_run page and its thread.
 */
#ifndef RW_VMM_VCPU_H
#define RW_VMM_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"

struct vm;
struct vcpu;

/* Exit counters read from the stats fd (struct vcpu_exit_counts). */
#define VCPU_EXIT_STATS 6

/* Signal that gets a vCPU thread out of KVM_RUN (with run->immediate_exit). */
#define VCPU_KICK_SIGNAL (SIGRTMIN)

/*
 * Work an exit handler asks to run once the exit's I/O has completed: the
 * vCPU's registers are then consistent (RIP past the instruction, a load's
 * value in its register), so the work may save or change vCPU state.
 */
typedef void (*vcpu_deferred_fn)(struct vcpu *vcpu, void *opaque);

struct vcpu {
	struct vm *vm;
	unsigned index;         /* also the APIC id */
	int fd;
	struct kvm_run *run;    /* mmap'ed, vm->kvm.run_size bytes */
	pthread_t thread;
	bool thread_started;
	bool parked;            /* counted in vm->parked */
	bool in_park;           /* its thread waits in the park loop */
	bool state_saved;       /* saved for the current vm_pause_capture */
	bool finished;
	uint64_t exits;         /* KVM_RUN returns, for statistics */
	struct kvm_dirty_gfn *ring; /* dirty ring (vm->cfg.dirty_ring_entries), or NULL */
	uint32_t ring_fetch;    /* next ring entry to harvest */
	vcpu_deferred_fn deferred;
	void *deferred_opaque;
	bool yield;             /* an exit handler asks vcpu_run_here() to return */
	bool cancel;            /* vcpu_cancel_here(): vcpu_run_here() returns */
	int stats_fd;           /* KVM_GET_STATS_FD, opened on first use; -1 if none */
	uint32_t stat_lo, stat_span; /* the bytes of the stats fd that hold them */
	uint32_t stat_off[VCPU_EXIT_STATS]; /* each counter's offset in that span */
	bool stats_tried;
	bool sync_fresh;        /* run->s.regs is what the last KVM_RUN exported:
				 * no state was loaded since */
};

/*
 * Exit counters KVM keeps for a vCPU, read from its binary stats fd with
 * one pread (no ioctl, so the vCPU is not loaded):
 *   exits      every VM exit, whether KVM handled it or returned to the VMM
 *   mmio, io   exits that came out to the VMM as KVM_EXIT_MMIO / KVM_EXIT_IO
 *   emulated   instructions KVM's emulator ran
 *   irqs, nmis interrupts and NMIs KVM injected
 * mmio counts MMIO exits to the VMM only; io counts every port exit, also
 * those KVM handles itself (PIC, PIT). If, between two readings,
 * exits == mmio + io and emulated <= mmio + io, every VM exit in between
 * was an MMIO exit to the VMM or a port access: no XSETBV, no MOV to a
 * debug register, no #DB, no WRMSR, no halt, no external interrupt. (On a
 * host that emulates guest kernel code, as PVM does, that code's
 * instructions count as emulated, so it is ruled out as well.) Returns 0,
 * or -ENOTSUP when KVM has no stats fd or lacks one of these counters.
 */
struct vcpu_exit_counts {
	uint64_t exits, mmio, io, emulated, irqs, nmis;
};

int vcpu_exit_counts(struct vcpu *vcpu, struct vcpu_exit_counts *c) RW_MUST_CHECK;

/* True if only VMM-visible MMIO/port exits happened between a and b. */
static inline bool vcpu_exits_all_seen(const struct vcpu_exit_counts *a,
				       const struct vcpu_exit_counts *b)
{
	uint64_t seen = (b->mmio - a->mmio) + (b->io - a->io);

	return b->exits - a->exits == seen && b->emulated - a->emulated <= seen;
}

/*
 * Run vcpu on the calling thread (no vCPU thread: the VM is never
 * vm_start()ed) until an exit handler sets vcpu->yield or the VM stops.
 * Returns 0 on a yield, RW_ESTOPPED when the VM stopped (vm->stop says why),
 * or -errno from KVM_RUN. For harnesses that want no thread hand-offs.
 */
int vcpu_run_here(struct vcpu *vcpu) RW_MUST_CHECK;

/*
 * Make the calling thread ready for vcpu_run_here() to be cancelled: the
 * kick signal's handler is installed and the signal unblocked on it. Once
 * per thread is enough.
 */
void vcpu_here_prepare(void);

/*
 * From another thread: make the vcpu_run_here() that thread runs return
 * -ECANCELED, whatever the guest does (spins at any privilege level, or
 * halts with interrupts off). The vCPU leaves KVM_RUN at once (the kick
 * signal, and immediate_exit if it is about to enter), with every exit
 * completed, so its state can be saved or replaced. The caller must know
 * that thread is inside vcpu_run_here() for this vCPU (the flag stays set
 * otherwise, and the next run returns at once): clear it with
 * vcpu_cancel_clear() before a run.
 */
void vcpu_cancel_here(struct vcpu *vcpu, pthread_t thread);
void vcpu_cancel_clear(struct vcpu *vcpu);

/*
 * Finish the exit the vCPU last returned with (a pending MMIO load or port
 * read) without entering the guest, so that its state can be saved or
 * replaced: KVM completes such an exit on the next KVM_RUN, which would
 * otherwise land on top of the new state.
 */
int vcpu_complete_io(struct vcpu *vcpu) RW_MUST_CHECK;

/* From an exit handler on vcpu's own thread: run fn after the exit completes. */
void vcpu_defer(struct vcpu *vcpu, vcpu_deferred_fn fn, void *opaque);

/* Create vCPU index (KVM_CREATE_VCPU, mmap run, CPUID). */
int vcpu_create(struct vm *vm, unsigned index, struct vcpu **out) RW_MUST_CHECK;
void vcpu_destroy(struct vcpu *vcpu);
int vcpu_start_thread(struct vcpu *vcpu) RW_MUST_CHECK;

/*
 * Registers of a vCPU whose thread is in an exit handler (the calling
 * thread) or parked. Uses the kvm_run sync area when KVM offers it.
 */
int vcpu_get_regs(struct vcpu *vcpu, struct kvm_regs *regs) RW_MUST_CHECK;
int vcpu_set_regs(struct vcpu *vcpu, const struct kvm_regs *regs) RW_MUST_CHECK;

/* One line describing the vCPU's registers, for fatal-exit reports. */
void vcpu_describe(struct vcpu *vcpu, char *buf, unsigned len);

/* Human name of a KVM exit reason ("KVM_EXIT_SHUTDOWN"). */
const char *vcpu_exit_name(uint32_t reason);

#endif
