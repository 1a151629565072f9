/*
 * vcpu_state.h - the complete architectural state of a vCPU and of the
 * platform (PICs, IOAPIC, PIT, KVM clock), captured from KVM and put back.
 *
 * These are in-memory images of what KVM reports: the fast-reset path keeps
 * them as they are, and ckpt/ serialises them field by field into records.
 * Capture and apply require the vCPU to be outside KVM_RUN (its own thread
 * in an exit handler, or parked by the pause barrier).
 */
#ifndef RW_VMM_VCPU_STATE_H
#define RW_VMM_VCPU_STATE_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"

struct vm;
struct vcpu;

#define VCPU_MAX_MSRS 256
#define VCPU_XSAVE_MAX (64 * 1024)

struct vcpu_state {
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	struct kvm_sregs2 sregs;      /* from KVM_GET_SREGS2, or converted */
	struct kvm_xcrs xcrs;
	struct kvm_debugregs dregs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	/* laid out as struct kvm_msrs, so it is passed to KVM_[GS]ET_MSRS as is */
	uint32_t nr_msrs;
	uint32_t msrs_pad;
	struct kvm_msr_entry msrs[VCPU_MAX_MSRS]; /* TSC first, TSC_DEADLINE last */
	uint32_t xsave_size;          /* bytes used in xsave */
	uint8_t xsave[VCPU_XSAVE_MAX] __attribute__((aligned(64)));
};

struct platform_state {
	struct kvm_irqchip pic_master;
	struct kvm_irqchip pic_slave;
	struct kvm_irqchip ioapic;
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
};

/*
 * Work out, once per VM, which MSRs of KVM_GET_MSR_INDEX_LIST can be read
 * and written back, and the XSAVE size. Called by vm_create.
 */
int vcpu_state_probe(struct vm *vm) RW_MUST_CHECK;

/* Capture every piece of a vCPU's state. Returns 0 or -errno. */
int vcpu_state_save(struct vcpu *vcpu, struct vcpu_state *st) RW_MUST_CHECK;

/*
 * vcpu_state_save() on the vCPU's own thread right after KVM_RUN returned
 * (as a kicked vCPU parks): REGS, SREGS and EVENTS come from the kvm_run
 * sync area, which KVM filled on that return with what the ioctls would
 * give, if run->kvm_valid_regs asked for all three. Otherwise, and where
 * that area may not stand for them (see synced_state_usable), the ioctls.
 */
int vcpu_state_save_after_run(struct vcpu *vcpu, struct vcpu_state *st) RW_MUST_CHECK;
/*
 * Put a captured state back, in the order documented in vcpu_state.c.
 * Returns 0 or -errno, and on failure names the step in *step.
 */
int vcpu_state_load(struct vcpu *vcpu, const struct vcpu_state *st, const char **step) RW_MUST_CHECK;

/*
 * vcpu_state_load() for a vCPU stopped at an exit on the caller's thread,
 * with shortcuts that leave the result identical:
 *   VCPU_LOAD_RUNNABLE  the vCPU is known runnable (it just made an exit):
 *                       KVM_SET_MP_STATE is skipped when st is runnable too
 *   VCPU_LOAD_SYNC      REGS, SREGS and EVENTS go through the kvm_run sync
 *                       area (applied at the next KVM_RUN, in that order,
 *                       with no ioctl), provided KVM offers it, the vCPU's
 *                       run->kvm_valid_regs carries its current SREGS, and
 *                       those agree with st on APIC base, CR0, CR4 and EFER
 *                       (so the steps that run before them see the same
 *                       control state); otherwise the ioctls are used.
 *   VCPU_LOAD_UNTRAPPED the vCPU's XCRs and debug registers still hold st's
 *                       values, so XCRS and DEBUGREGS are skipped. The guest
 *                       changes those only through exits KVM always
 *                       intercepts (XSETBV, MOV to a debug register while
 *                       KVM intercepts it, as it does on every entry after a
 *                       VMM exit, and #DB), so a caller that loaded st
 *                       before and saw, with vcpu_exits_all_seen(), that
 *                       the guest made no other exit since, may pass it.
 */
#define VCPU_LOAD_RUNNABLE 1u
#define VCPU_LOAD_SYNC 2u
#define VCPU_LOAD_UNTRAPPED 4u
/*
 *   VCPU_LOAD_KEEP_LAPIC the vCPU's local APIC still holds st's state, so
 *                       KVM_SET_LAPIC is skipped. It changes only by guest
 *                       accesses (exits, or TPR through CR8, which every
 *                       exit reports in run->cr8), by interrupts (injected,
 *                       and counted, unless the host posts them: see
 *                       kvm_host.apic_virt) and by its own timer. So the
 *                       caller must know: st's timer is idle
 *                       (vcpu_state_lapic_timer_idle), the host has no
 *                       APIC virtualization, every exit since st was
 *                       loaded was an MMIO exit handled by the caller with
 *                       no interrupt raised, none injected, and run->cr8
 *                       and run->apic_base still match st.
 */
#define VCPU_LOAD_KEEP_LAPIC 8u

/* Is st's LAPIC timer stopped (no initial count, or no TSC deadline)? */
bool vcpu_state_lapic_timer_idle(const struct vcpu_state *st);
int vcpu_state_load_flags(struct vcpu *vcpu, const struct vcpu_state *st, unsigned flags,
			  const char **step) RW_MUST_CHECK;

int platform_state_save(struct vm *vm, struct platform_state *st) RW_MUST_CHECK;
int platform_state_load(struct vm *vm, const struct platform_state *st, const char **step) RW_MUST_CHECK;

/*
 * platform_state_load() for a caller that knows the interrupt controllers
 * and the PIT still hold st's state: only the clock is loaded. They change
 * only by guest port and MMIO accesses, interrupt lines, interrupt
 * acknowledgement (an injection) and the PIT's own timer; so the caller
 * must know that every exit since st was loaded was one it handled itself
 * with no interrupt raised or injected, and that st's PIT is idle
 * (platform_state_pit_idle).
 */
int platform_state_load_clock(struct vm *vm, const struct platform_state *st,
			      const char **step) RW_MUST_CHECK;

/* Is st's PIT channel 0 stopped (no mode that runs KVM's PIT timer)? */
bool platform_state_pit_idle(const struct platform_state *st);

#endif
