#include "vcpu_state.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "log.h"
#include "vcpu.h"
#include "vm.h"

#define MSR_IA32_TSC 0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0

/* ------------------------------------------------------------------ probe */

static int msr_roundtrip(int vcpu_fd, uint32_t index)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = { .hdr.nmsrs = 1, .e.index = index };

	if (ioctl(vcpu_fd, KVM_GET_MSRS, &m) != 1)
		return -1;
	return ioctl(vcpu_fd, KVM_SET_MSRS, &m) == 1 ? 0 : -1;
}

/*
 * Order the list so that a single KVM_SET_MSRS restores the TSC before
 * anything that is relative to it, and TSC_DEADLINE after everything (it is
 * a deadline in guest TSC units and only sticks in TSC-deadline mode, which
 * the LAPIC set just before establishes).
 */
static int msr_rank(uint32_t index)
{
	if (index == MSR_IA32_TSC)
		return 0;
	if (index == MSR_IA32_TSC_DEADLINE)
		return 2;
	return 1;
}

int vcpu_state_probe(struct vm *vm)
{
	struct kvm_msr_list probe = { .nmsrs = 0 }, *list = NULL;
	int v, ret;

	v = ioctl(vm->fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	vm->xsave_size = v > 0 ? (uint32_t)v : (uint32_t)sizeof(struct kvm_xsave);
	if (vm->xsave_size > VCPU_XSAVE_MAX) {
		rw_error("KVM's XSAVE area is %u bytes, more than rewind's %u", vm->xsave_size,
			 VCPU_XSAVE_MAX);
		return RW_ENOKVMCAP;
	}
	vm->sregs2 = ioctl(vm->fd, KVM_CHECK_EXTENSION, KVM_CAP_SREGS2) > 0;

	if (ioctl(vm->kvm.fd, KVM_GET_MSR_INDEX_LIST, &probe) && errno != E2BIG)
		return -errno;
	list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(uint32_t));
	if (!list)
		return -ENOMEM;
	list->nmsrs = probe.nmsrs;
	if (ioctl(vm->kvm.fd, KVM_GET_MSR_INDEX_LIST, list)) {
		ret = -errno;
		goto out;
	}
	vm->nr_msrs = 0;
	for (int rank = 0; rank < 3; rank++) {
		for (uint32_t i = 0; i < list->nmsrs; i++) {
			uint32_t idx = list->indices[i];
			if (msr_rank(idx) != rank || vm->nr_msrs >= VCPU_MAX_MSRS)
				continue;
			if (msr_roundtrip(vm->vcpus[0]->fd, idx) == 0)
				vm->msr_index[vm->nr_msrs++] = idx;
			else
				rw_debug("MSR 0x%x cannot be read back: not saved", idx);
		}
	}
	ret = 0;
out:
	free(list);
	return ret;
}

/* --------------------------------------------------------------- vCPU save */

_Static_assert(offsetof(struct vcpu_state, msrs) - offsetof(struct vcpu_state, nr_msrs) ==
		       offsetof(struct kvm_msrs, entries),
	       "vcpu_state's MSR block must be laid out as struct kvm_msrs");

static struct kvm_msrs *msrs_of(const struct vcpu_state *st)
{
	return (struct kvm_msrs *)&st->nr_msrs;
}

static void sregs_to_sregs2(const struct kvm_sregs *s, struct kvm_sregs2 *s2)
{
	memset(s2, 0, sizeof(*s2));
	s2->cs = s->cs;
	s2->ds = s->ds;
	s2->es = s->es;
	s2->fs = s->fs;
	s2->gs = s->gs;
	s2->ss = s->ss;
	s2->tr = s->tr;
	s2->ldt = s->ldt;
	s2->gdt = s->gdt;
	s2->idt = s->idt;
	s2->cr0 = s->cr0;
	s2->cr2 = s->cr2;
	s2->cr3 = s->cr3;
	s2->cr4 = s->cr4;
	s2->cr8 = s->cr8;
	s2->efer = s->efer;
	s2->apic_base = s->apic_base;
}

static void sregs2_to_sregs(const struct kvm_sregs2 *s2, struct kvm_sregs *s)
{
	memset(s, 0, sizeof(*s));
	s->cs = s2->cs;
	s->ds = s2->ds;
	s->es = s2->es;
	s->fs = s2->fs;
	s->gs = s2->gs;
	s->ss = s2->ss;
	s->tr = s2->tr;
	s->ldt = s2->ldt;
	s->gdt = s2->gdt;
	s->idt = s2->idt;
	s->cr0 = s2->cr0;
	s->cr2 = s2->cr2;
	s->cr3 = s2->cr3;
	s->cr4 = s2->cr4;
	s->cr8 = s2->cr8;
	s->efer = s2->efer;
	s->apic_base = s2->apic_base;
}

#define SYNC_ALL (KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS)
#define X86_CR0_PG (1ULL << 31)
#define X86_CR4_PAE (1ULL << 5)
#define EFER_LMA (1ULL << 10)

/*
 * May the sync area stand for REGS/SREGS/EVENTS (vcpu_state_save_after_run)?
 * Only if KVM filled it on the last KVM_RUN and nothing was loaded since,
 * outside PAE paging without long mode (the PDPTRs matter there, and only
 * SREGS2 has them), and if KVM_GET_MP_STATE, which accepts a pending INIT
 * or SIPI and may so reset the vCPU after the sync area was filled, cannot
 * have done that: the vCPU is runnable and alone in its VM, so that no
 * other vCPU sends it an INIT. (Left: a lone vCPU that sends itself an INIT
 * with the all-including-self shorthand in the very exit the pause cuts
 * off; its checkpoint then holds its registers from just before the INIT.)
 */
static bool synced_state_usable(const struct vcpu *v, const struct kvm_mp_state *mp)
{
	const struct kvm_sregs *s = &v->run->s.regs.sregs;

	if (!v->sync_fresh || (v->run->kvm_valid_regs & SYNC_ALL) != SYNC_ALL ||
	    v->vm->ncpus != 1 || mp->mp_state != KVM_MP_STATE_RUNNABLE)
		return false;
	return !(s->cr0 & X86_CR0_PG) || !(s->cr4 & X86_CR4_PAE) || (s->efer & EFER_LMA);
}

/*
 * Save order. KVM_GET_MP_STATE first: it processes pending INIT/SIPI events
 * and may change LAPIC and vCPU state, so everything read after it is
 * consistent with it. KVM_GET_VCPU_EVENTS last: the other GETs can still
 * settle pending state that events report.
 */
static int save(struct vcpu *v, struct vcpu_state *st, bool after_run)
{
	struct vm *vm = v->vm;
	bool synced;
	int n;

	if (ioctl(v->fd, KVM_GET_MP_STATE, &st->mp))
		return -errno;
	synced = after_run && synced_state_usable(v, &st->mp);
	if (synced) {
		st->regs = v->run->s.regs.regs;
		sregs_to_sregs2(&v->run->s.regs.sregs, &st->sregs);
		st->events = v->run->s.regs.events;
	} else if (ioctl(v->fd, KVM_GET_REGS, &st->regs)) {
		return -errno;
	} else if (vm->sregs2) {
		if (ioctl(v->fd, KVM_GET_SREGS2, &st->sregs))
			return -errno;
	} else {
		struct kvm_sregs s;
		if (ioctl(v->fd, KVM_GET_SREGS, &s))
			return -errno;
		sregs_to_sregs2(&s, &st->sregs);
	}
	st->xsave_size = vm->xsave_size;
	if (ioctl(v->fd, vm->xsave_size > sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE,
		  st->xsave))
		return -errno;
	if (ioctl(v->fd, KVM_GET_XCRS, &st->xcrs))
		return -errno;
	if (ioctl(v->fd, KVM_GET_DEBUGREGS, &st->dregs))
		return -errno;
	if (ioctl(v->fd, KVM_GET_LAPIC, &st->lapic))
		return -errno;

	st->nr_msrs = vm->nr_msrs;
	st->msrs_pad = 0;
	for (uint32_t i = 0; i < vm->nr_msrs; i++)
		st->msrs[i] = (struct kvm_msr_entry){ .index = vm->msr_index[i] };
	n = ioctl(v->fd, KVM_GET_MSRS, msrs_of(st));
	if (n != (int)vm->nr_msrs)
		return n < 0 ? -errno : -EIO;

	if (!synced && ioctl(v->fd, KVM_GET_VCPU_EVENTS, &st->events))
		return -errno;
	return 0;
}

int vcpu_state_save(struct vcpu *v, struct vcpu_state *st)
{
	return save(v, st, false);
}

int vcpu_state_save_after_run(struct vcpu *v, struct vcpu_state *st)
{
	return save(v, st, true);
}

/* -------------------------------------------------------------- vCPU load */

/*
 * Restore order, and why:
 *  1. MP state first: setting it can reset LAPIC and vCPU state (INIT),
 *     which everything after it then overwrites with the saved values.
 *  2. REGS before VCPU_EVENTS: KVM_SET_REGS drops any pending exception,
 *     which VCPU_EVENTS (last) brings back.
 *  3. SREGS before LAPIC: SREGS carries the APIC base MSR, and the LAPIC
 *     state is interpreted at that base.
 *  4. XSAVE then XCRS: XCR0 decides which XSAVE components are live; both
 *     after SREGS, which sets CR4.OSXSAVE.
 *  5. LAPIC before MSRS: the TSC-deadline MSR only takes a value while the
 *     LAPIC timer is in TSC-deadline mode.
 *  6. MSRS in one call, TSC first and TSC_DEADLINE last (see msr_rank): the
 *     deadline is an absolute guest-TSC value, meaningful only once the TSC
 *     is back where it was.
 *  7. VCPU_EVENTS last: pending exceptions, interrupts, NMI and SMI state
 *     and the interrupt shadow, which the steps above may have disturbed.
 */

#define APIC_LVTT 0x320
#define APIC_TMICT 0x380
#define APIC_LVT_TIMER_MODE(v) (((v) >> 17) & 3)
#define APIC_TIMER_TSC_DEADLINE 2

bool vcpu_state_lapic_timer_idle(const struct vcpu_state *st)
{
	uint32_t lvtt, tmict;

	memcpy(&lvtt, st->lapic.regs + APIC_LVTT, 4);
	memcpy(&tmict, st->lapic.regs + APIC_TMICT, 4);
	if (APIC_LVT_TIMER_MODE(lvtt) != APIC_TIMER_TSC_DEADLINE)
		return tmict == 0;
	for (uint32_t i = 0; i < st->nr_msrs && i < VCPU_MAX_MSRS; i++)
		if (st->msrs[i].index == MSR_IA32_TSC_DEADLINE)
			return st->msrs[i].data == 0;
	return false;
}

/* May REGS/SREGS/EVENTS of st go through the sync area (see the header)? */
static bool can_sync(struct vcpu *v, const struct vcpu_state *st)
{
	const struct kvm_sregs *cur = &v->run->s.regs.sregs;

	return (v->vm->kvm.sync_regs_mask & SYNC_ALL) == SYNC_ALL &&
	       (v->run->kvm_valid_regs & SYNC_ALL) == SYNC_ALL && cur->apic_base == st->sregs.apic_base &&
	       cur->cr0 == st->sregs.cr0 && cur->cr4 == st->sregs.cr4 && cur->efer == st->sregs.efer;
}

int vcpu_state_load_flags(struct vcpu *v, const struct vcpu_state *st, unsigned flags,
			  const char **step)
{
	struct vm *vm = v->vm;
	struct kvm_vcpu_events ev = st->events;
	bool sync = (flags & VCPU_LOAD_SYNC) && can_sync(v, st);
	int n;

#define STEP(name, call)                        \
	do {                                    \
		*step = name;                   \
		if (call)                       \
			return -errno;          \
	} while (0)

	if (st->xsave_size != vm->xsave_size || st->nr_msrs > VCPU_MAX_MSRS) {
		*step = "state shape";
		return -EINVAL;
	}
	v->sync_fresh = false;
	/* restore the NMI and SIPI state too, not only what KVM flags as valid */
	ev.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
	if (!((flags & VCPU_LOAD_RUNNABLE) && st->mp.mp_state == KVM_MP_STATE_RUNNABLE))
		STEP("KVM_SET_MP_STATE", ioctl(v->fd, KVM_SET_MP_STATE, &st->mp));
	if (sync) {
		v->run->s.regs.regs = st->regs;
		sregs2_to_sregs(&st->sregs, &v->run->s.regs.sregs);
		v->run->s.regs.events = ev;
		v->run->kvm_dirty_regs |= SYNC_ALL;
	} else {
		STEP("KVM_SET_REGS", ioctl(v->fd, KVM_SET_REGS, &st->regs));
		if (vm->sregs2) {
			STEP("KVM_SET_SREGS2", ioctl(v->fd, KVM_SET_SREGS2, &st->sregs));
		} else {
			struct kvm_sregs s;
			sregs2_to_sregs(&st->sregs, &s);
			STEP("KVM_SET_SREGS", ioctl(v->fd, KVM_SET_SREGS, &s));
		}
	}
	STEP("KVM_SET_XSAVE", ioctl(v->fd, KVM_SET_XSAVE, st->xsave));
	if (!(flags & VCPU_LOAD_UNTRAPPED)) {
		STEP("KVM_SET_XCRS", ioctl(v->fd, KVM_SET_XCRS, &st->xcrs));
		STEP("KVM_SET_DEBUGREGS", ioctl(v->fd, KVM_SET_DEBUGREGS, &st->dregs));
	}
	if (!(flags & VCPU_LOAD_KEEP_LAPIC))
		STEP("KVM_SET_LAPIC", ioctl(v->fd, KVM_SET_LAPIC, &st->lapic));
	*step = "KVM_SET_MSRS";
	n = ioctl(v->fd, KVM_SET_MSRS, msrs_of(st));
	if (n != (int)st->nr_msrs)
		return n < 0 ? -errno : -EIO;
	if (!sync)
		STEP("KVM_SET_VCPU_EVENTS", ioctl(v->fd, KVM_SET_VCPU_EVENTS, &ev));
#undef STEP
	*step = NULL;
	return 0;
}

/*
 * Restore order, and why:
 *  1. MP state first: setting it can reset LAPIC and vCPU state (INIT),
 *     which everything after it then overwrites with the saved values.
 *  2. REGS before VCPU_EVENTS: KVM_SET_REGS drops any pending exception,
 *     which VCPU_EVENTS (last) brings back.
 *  3. SREGS before LAPIC: SREGS carries the APIC base MSR, and the LAPIC
 *     state is interpreted at that base.
 *  4. XSAVE then XCRS: XCR0 decides which XSAVE components are live; both
 *     after SREGS, which sets CR4.OSXSAVE.
 *  5. LAPIC before MSRS: the TSC-deadline MSR only takes a value while the
 *     LAPIC timer is in TSC-deadline mode.
 *  6. MSRS in one call, TSC first and TSC_DEADLINE last (see msr_rank): the
 *     deadline is an absolute guest-TSC value, meaningful only once the TSC
 *     is back where it was.
 *  7. VCPU_EVENTS last: pending exceptions, interrupts, NMI and SMI state
 *     and the interrupt shadow, which the steps above may have disturbed.
 */
int vcpu_state_load(struct vcpu *v, const struct vcpu_state *st, const char **step)
{
	return vcpu_state_load_flags(v, st, 0, step);
}

/* --------------------------------------------------------------- platform */

static int get_chip(struct vm *vm, uint32_t id, struct kvm_irqchip *c)
{
	memset(c, 0, sizeof(*c));
	c->chip_id = id;
	return ioctl(vm->fd, KVM_GET_IRQCHIP, c) ? -errno : 0;
}

int platform_state_save(struct vm *vm, struct platform_state *st)
{
	int ret;

	if ((ret = get_chip(vm, KVM_IRQCHIP_PIC_MASTER, &st->pic_master)) ||
	    (ret = get_chip(vm, KVM_IRQCHIP_PIC_SLAVE, &st->pic_slave)) ||
	    (ret = get_chip(vm, KVM_IRQCHIP_IOAPIC, &st->ioapic)))
		return ret;
	if (ioctl(vm->fd, KVM_GET_PIT2, &st->pit))
		return -errno;
	if (ioctl(vm->fd, KVM_GET_CLOCK, &st->clock))
		return -errno;
	return 0;
}

/*
 * Interrupt controllers first (the PIT's output feeds PIC and IOAPIC pin 0),
 * then the PIT, then the clock, so that the clock's value is the last thing
 * to move before the guest runs.
 */
int platform_state_load_clock(struct vm *vm, const struct platform_state *st, const char **step)
{
	struct kvm_clock_data clock = { .clock = st->clock.clock };

	*step = "KVM_SET_CLOCK";
	if (ioctl(vm->fd, KVM_SET_CLOCK, &clock))
		return -errno;
	*step = NULL;
	return 0;
}

bool platform_state_pit_idle(const struct platform_state *st)
{
	/* KVM runs channel 0's timer in modes 0 to 4 only */
	return st->pit.channels[0].mode > 4;
}

int platform_state_load(struct vm *vm, const struct platform_state *st, const char **step)
{
	struct kvm_clock_data clock = { .clock = st->clock.clock };

	*step = "KVM_SET_IRQCHIP(pic master)";
	if (ioctl(vm->fd, KVM_SET_IRQCHIP, &st->pic_master))
		return -errno;
	*step = "KVM_SET_IRQCHIP(pic slave)";
	if (ioctl(vm->fd, KVM_SET_IRQCHIP, &st->pic_slave))
		return -errno;
	*step = "KVM_SET_IRQCHIP(ioapic)";
	if (ioctl(vm->fd, KVM_SET_IRQCHIP, &st->ioapic))
		return -errno;
	*step = "KVM_SET_PIT2";
	if (ioctl(vm->fd, KVM_SET_PIT2, &st->pit))
		return -errno;
	*step = "KVM_SET_CLOCK";
	if (ioctl(vm->fd, KVM_SET_CLOCK, &clock))
		return -errno;
	*step = NULL;
	return 0;
}
