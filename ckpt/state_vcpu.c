/*
 * state_vcpu.c - the vCPU record ("vcpu/<index>"; layout and checks in
 * state.h).
 */
#include "state.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "memory.h"
#include "rw/abi.h"
#include "state_codec.h"
#include "util.h"
#include "vm.h"

/* ------------------------------------------------------- architecture bits */

#define RFLAGS_FIXED1 0x2ULL
#define RFLAGS_KNOWN 0x3f7fd7ULL /* CF..ID, bit 1 included; 3, 5, 15, 22+ reserved */

#define CR0_PE (1ULL << 0)
#define CR0_NW (1ULL << 29)
#define CR0_CD (1ULL << 30)
#define CR0_PG (1ULL << 31)
#define CR0_KNOWN 0xe005003fULL /* PE MP EM TS ET NE, WP, AM, NW CD PG */

#define CR4_PAE (1ULL << 5)
#define CR4_LA57 (1ULL << 12)
/* bits 0-14, 16-25, LAM_SUP (28), FRED (32) */
#define CR4_KNOWN (0x13ff7fffULL | (1ULL << 32))

#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)
/* SCE, LME, LMA, NXE, SVME, LMSLE, FFXSR, TCE, AUTOIBRS */
#define EFER_KNOWN 0x20fd01ULL

#define APIC_BASE_BSP (1ULL << 8)
#define APIC_BASE_X2APIC (1ULL << 10)
#define APIC_BASE_ENABLE (1ULL << 11)
#define APIC_BASE_ADDR 0x000ffffffffff000ULL
#define APIC_REG_ID 0x20

#define PHYS_ADDR_MASK 0x000ffffffffff000ULL

#define XCR0_X87 (1ULL << 0)
#define XCR0_SSE (1ULL << 1)
#define XCR0_AVX (1ULL << 2)
#define XCR0_AVX512 (7ULL << 5)
#define XCR0_AMX (3ULL << 17)

/* XSAVE area (standard layout): legacy region, then the 64-byte header. */
#define XSAVE_MXCSR 24
#define XSAVE_HDR 512
#define XSAVE_XCOMP_BV (XSAVE_HDR + 8)
#define XSAVE_HDR_RESERVED (XSAVE_HDR + 16)
#define XSAVE_HDR_END (XSAVE_HDR + 64)

#define NMI_VECTOR 2
#define EVENTS_KNOWN                                                                   \
	(KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |           \
	 KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM | KVM_VCPUEVENT_VALID_PAYLOAD | \
	 KVM_VCPUEVENT_VALID_TRIPLE_FAULT)
#define SHADOW_KNOWN (KVM_X86_SHADOW_INT_MOV_SS | KVM_X86_SHADOW_INT_STI)

/* Sign-extended from bit (bits - 1): a canonical linear address. */
static bool canonical(uint64_t v, unsigned bits)
{
	return (uint64_t)((int64_t)(v << (64 - bits)) >> (64 - bits)) == v;
}

int state_vcpu_key(unsigned index, char *buf, size_t len)
{
	int n = snprintf(buf, len, "vcpu/%u", index);

	return n < 0 || (size_t)n >= len ? -ERANGE : 0;
}

/* ------------------------------------------------------------- vCPU fields */

#define NR_SEGMENTS 8
static const char *const seg_names[NR_SEGMENTS] = { "cs", "ds", "es", "fs",
						    "gs", "ss", "tr", "ldt" };
#define SEGMENTS(s) { &(s)->cs, &(s)->ds, &(s)->es, &(s)->fs, &(s)->gs, &(s)->ss, &(s)->tr, &(s)->ldt }

/* The record's order of each struct's members (state.h). */
#define SEG(m) FIELD(struct kvm_segment, m)
static const struct field segment_fields[] = {
	SEG(base), SEG(limit), SEG(selector), SEG(type), SEG(present), SEG(dpl),
	SEG(db), SEG(s), SEG(l), SEG(g), SEG(avl), SEG(unusable),
};
#undef SEG

#define REG(m) FIELD(struct kvm_regs, m)
static const struct field regs_fields[] = {
	REG(rax), REG(rbx), REG(rcx), REG(rdx), REG(rsi), REG(rdi), REG(rsp), REG(rbp),
	REG(r8), REG(r9), REG(r10), REG(r11), REG(r12), REG(r13), REG(r14), REG(r15),
	REG(rip), REG(rflags),
};
#undef REG

/* What follows the segments. */
#define SREG(m) FIELD(struct kvm_sregs2, m)
static const struct field sregs_fields[] = {
	SREG(gdt.base), SREG(gdt.limit), SREG(idt.base), SREG(idt.limit),
	SREG(cr0), SREG(cr2), SREG(cr3), SREG(cr4), SREG(cr8), SREG(efer), SREG(apic_base),
	SREG(flags), SREG(pdptrs[0]), SREG(pdptrs[1]), SREG(pdptrs[2]), SREG(pdptrs[3]),
};
#undef SREG

#define DREG(m) FIELD(struct kvm_debugregs, m)
static const struct field dregs_fields[] = {
	DREG(db[0]), DREG(db[1]), DREG(db[2]), DREG(db[3]), DREG(dr6), DREG(dr7), DREG(flags),
};
#undef DREG

#define EV(m) FIELD(struct kvm_vcpu_events, m)
static const struct field events_fields[] = {
	EV(exception.injected), EV(exception.nr), EV(exception.has_error_code),
	EV(exception.pending), EV(exception.error_code),
	EV(exception_has_payload), EV(exception_payload),
	EV(interrupt.injected), EV(interrupt.nr), EV(interrupt.soft), EV(interrupt.shadow),
	EV(nmi.injected), EV(nmi.pending), EV(nmi.masked),
	EV(sipi_vector), EV(flags),
	EV(smi.smm), EV(smi.pending), EV(smi.smm_inside_nmi), EV(smi.latched_init),
	EV(triple_fault.pending),
};
#undef EV

static void put_vcpu(struct rec_writer *w, const struct vcpu_state *st)
{
	const struct kvm_sregs2 *s = &st->sregs;
	const struct kvm_segment *segs[NR_SEGMENTS] = SEGMENTS(s);

	rec_put_u32(w, st->mp.mp_state);
	PUT_FIELDS(w, &st->regs, regs_fields);

	for (unsigned i = 0; i < NR_SEGMENTS; i++)
		PUT_FIELDS(w, segs[i], segment_fields);
	PUT_FIELDS(w, s, sregs_fields);

	rec_put_u32(w, st->xcrs.flags);
	rec_put_u32(w, st->xcrs.nr_xcrs);
	for (uint32_t i = 0; i < st->xcrs.nr_xcrs; i++) {
		rec_put_u32(w, st->xcrs.xcrs[i].xcr);
		rec_put_u64(w, st->xcrs.xcrs[i].value);
	}

	PUT_FIELDS(w, &st->dregs, dregs_fields);
	rec_put_bytes(w, st->lapic.regs, KVM_APIC_REG_SIZE);
	PUT_FIELDS(w, &st->events, events_fields);

	rec_put_u32(w, st->nr_msrs);
	for (uint32_t i = 0; i < st->nr_msrs; i++) {
		rec_put_u32(w, st->msrs[i].index);
		rec_put_u64(w, st->msrs[i].data);
	}

	rec_put_u32(w, st->xsave_size);
	rec_put_bytes(w, st->xsave, st->xsave_size);
}

/*
 * Parse a vcpu record of version 1 into st (zeroed by the caller). Only the
 * encoding is checked here, and the two counts that size arrays.
 */
static int parse_vcpu(const struct vm *vm, struct rec_reader *r, struct vcpu_state *st,
		      struct why *w)
{
	struct kvm_sregs2 *s = &st->sregs;
	struct kvm_segment *segs[NR_SEGMENTS] = SEGMENTS(s);
	const char *part = "mp_state";
	uint32_t n;
	int ret;

	st->mp.mp_state = g32(r);

	PART(r, part, "regs");
	GET_FIELDS(r, &st->regs, regs_fields);

	for (unsigned i = 0; i < NR_SEGMENTS; i++) {
		PART(r, part, "sregs.segments");
		GET_FIELDS(r, segs[i], segment_fields);
	}
	PART(r, part, "sregs");
	GET_FIELDS(r, s, sregs_fields);

	PART(r, part, "xcrs");
	st->xcrs.flags = g32(r);
	n = g32(r);
	if (rec_error(r))
		return state_refuse_reader(w, r, part);
	if (n > KVM_MAX_XCRS)
		return state_refuse(w, RW_ECORRUPT, "xcrs.nr_xcrs: %u, at most %u", n, KVM_MAX_XCRS);
	st->xcrs.nr_xcrs = n;
	for (uint32_t i = 0; i < n; i++) {
		st->xcrs.xcrs[i].xcr = g32(r);
		st->xcrs.xcrs[i].value = g64(r);
	}

	PART(r, part, "debugregs");
	GET_FIELDS(r, &st->dregs, dregs_fields);

	PART(r, part, "lapic");
	rec_get_bytes(r, st->lapic.regs, KVM_APIC_REG_SIZE);

	PART(r, part, "events");
	GET_FIELDS(r, &st->events, events_fields);

	PART(r, part, "msrs");
	n = g32(r);
	if (rec_error(r))
		return state_refuse_reader(w, r, part);
	if (n > VCPU_MAX_MSRS)
		return state_refuse(w, RW_ECORRUPT, "msrs.count: %u, at most %u", n, VCPU_MAX_MSRS);
	if (n > vm->nr_msrs)
		return state_refuse(w, RW_ENOKVMCAP, "msrs.count: %u, this KVM restores %u MSRs", n,
			      vm->nr_msrs);
	st->nr_msrs = n;
	for (uint32_t i = 0; i < n; i++) {
		st->msrs[i].index = g32(r);
		st->msrs[i].data = g64(r);
	}

	PART(r, part, "xsave");
	n = g32(r);
	if (rec_error(r))
		return state_refuse_reader(w, r, part);
	if (n != vm->xsave_size)
		return state_refuse(w, n > VCPU_XSAVE_MAX ? RW_ECORRUPT : RW_ENOKVMCAP,
			      "xsave.size: %u bytes, this KVM's XSAVE area is %u", n, vm->xsave_size);
	st->xsave_size = n;
	rec_get_bytes(r, st->xsave, n);

	PART(r, part, "tagged fields");
	ret = state_skip_tags(r);
	if (ret || rec_error(r))
		return state_refuse_reader(w, r, part);
	return 0;
}

/* ------------------------------------------------------------- vCPU checks */

static int check_segment(struct why *w, const char *name, const struct kvm_segment *s,
			 unsigned va_bits)
{
	if (s->type > 15)
		return state_refuse(w, RW_ECORRUPT, "sregs.%s.type: %u, at most 15", name, s->type);
	if (s->dpl > 3)
		return state_refuse(w, RW_ECORRUPT, "sregs.%s.dpl: %u, at most 3", name, s->dpl);
	if (s->present > 1 || s->db > 1 || s->s > 1 || s->l > 1 || s->g > 1 || s->avl > 1 ||
	    s->unusable > 1)
		return state_refuse(w, RW_ECORRUPT, "sregs.%s: an attribute flag is neither 0 nor 1", name);
	if (!canonical(s->base, va_bits))
		return state_refuse(w, RW_ECORRUPT, "sregs.%s.base: 0x%llx is not canonical", name,
			      (unsigned long long)s->base);
	return 0;
}

/*
 * A descriptor table must be in guest RAM where its linear address is its
 * physical one: always with paging off; with paging on, rewind guests map
 * the lower canonical half one to one. An upper-half base (a Linux kernel's
 * tables) can only be placed by walking the guest's page tables, which a
 * restore has not brought back yet when records are validated.
 */
static int check_dtable(const struct vm *vm, struct why *w, const char *name,
			const struct kvm_dtable *t, bool paging, unsigned va_bits)
{
	if (!canonical(t->base, va_bits))
		return state_refuse(w, RW_ECORRUPT, "sregs.%s.base: 0x%llx is not canonical", name,
			      (unsigned long long)t->base);
	if (paging && (t->base >> 63))
		return 0;
	if (!mem_range_ok(&vm->mem, t->base, (uint64_t)t->limit + 1))
		return state_refuse(w, RW_ECORRUPT,
			      "sregs.%s: [0x%llx, 0x%llx] is outside guest RAM (%llu MiB)", name,
			      (unsigned long long)t->base, (unsigned long long)t->base + t->limit,
			      (unsigned long long)(vm->mem.size >> 20));
	return 0;
}

static int check_sregs(const struct vm *vm, unsigned index, const struct vcpu_state *st,
		       struct why *w)
{
	const struct kvm_sregs2 *s = &st->sregs;
	const struct kvm_segment *segs[NR_SEGMENTS] = SEGMENTS(s);
	unsigned va_bits = (s->cr4 & CR4_LA57) ? 57 : 48;
	bool paging = s->cr0 & CR0_PG;
	bool lma = s->efer & EFER_LMA;
	int ret;

	if (s->cr0 & ~CR0_KNOWN)
		return state_refuse(w, RW_ECORRUPT, "sregs.cr0: reserved bits set (0x%llx)",
			      (unsigned long long)s->cr0);
	if (paging && !(s->cr0 & CR0_PE))
		return state_refuse(w, RW_ECORRUPT, "sregs.cr0: PG without PE");
	if ((s->cr0 & CR0_NW) && !(s->cr0 & CR0_CD))
		return state_refuse(w, RW_ECORRUPT, "sregs.cr0: NW without CD");
	if (s->cr4 & ~CR4_KNOWN)
		return state_refuse(w, RW_ECORRUPT, "sregs.cr4: reserved bits set (0x%llx)",
			      (unsigned long long)s->cr4);
	if (s->efer & ~EFER_KNOWN)
		return state_refuse(w, RW_ECORRUPT, "sregs.efer: reserved bits set (0x%llx)",
			      (unsigned long long)s->efer);
	if ((s->efer & EFER_LME) && paging) {
		if (!lma)
			return state_refuse(w, RW_ECORRUPT, "sregs.efer: LME and CR0.PG without LMA");
		if (!(s->cr4 & CR4_PAE))
			return state_refuse(w, RW_ECORRUPT, "sregs.cr4: long mode without PAE");
	} else {
		if (lma)
			return state_refuse(w, RW_ECORRUPT, "sregs.efer: LMA without LME and CR0.PG");
		if (s->cs.l)
			return state_refuse(w, RW_ECORRUPT, "sregs.cs.l: 64-bit code outside long mode");
	}
	if (s->cs.l && s->cs.db)
		return state_refuse(w, RW_ECORRUPT, "sregs.cs: L and D both set");
	if (s->cr8 > 15)
		return state_refuse(w, RW_ECORRUPT, "sregs.cr8: %llu, at most 15",
			      (unsigned long long)s->cr8);

	for (unsigned i = 0; i < NR_SEGMENTS; i++)
		if ((ret = check_segment(w, seg_names[i], segs[i], va_bits)))
			return ret;
	if ((ret = check_dtable(vm, w, "gdt", &s->gdt, paging, va_bits)) ||
	    (ret = check_dtable(vm, w, "idt", &s->idt, paging, va_bits)))
		return ret;

	if (paging) {
		uint64_t root, size = RW_PAGE_SIZE;

		if (lma) {
			root = s->cr3 & PHYS_ADDR_MASK;
		} else if (s->cr4 & CR4_PAE) {
			root = s->cr3 & 0xffffffe0ULL; /* four 8-byte PDPTEs */
			size = 32;
		} else {
			root = s->cr3 & 0xfffff000ULL;
		}
		if (!mem_range_ok(&vm->mem, root, size))
			return state_refuse(w, RW_ECORRUPT,
				      "sregs.cr3: page-table root 0x%llx is outside guest RAM",
				      (unsigned long long)root);
	}

	if (s->apic_base & ~(APIC_BASE_ADDR | APIC_BASE_BSP | APIC_BASE_X2APIC | APIC_BASE_ENABLE))
		return state_refuse(w, RW_ECORRUPT, "sregs.apic_base: reserved bits set (0x%llx)",
			      (unsigned long long)s->apic_base);
	if ((s->apic_base & APIC_BASE_ADDR) != RW_GPA_LAPIC)
		return state_refuse(w, RW_ECORRUPT, "sregs.apic_base: LAPIC at 0x%llx, not at 0x%llx",
			      (unsigned long long)(s->apic_base & APIC_BASE_ADDR),
			      (unsigned long long)RW_GPA_LAPIC);
	if ((s->apic_base & APIC_BASE_X2APIC) && !(s->apic_base & APIC_BASE_ENABLE))
		return state_refuse(w, RW_ECORRUPT, "sregs.apic_base: x2APIC mode with the APIC disabled");
	if (!!(s->apic_base & APIC_BASE_BSP) != (index == 0))
		return state_refuse(w, RW_ECORRUPT, "sregs.apic_base: BSP flag %s on vCPU %u",
			      index == 0 ? "clear" : "set", index);

	if (s->flags & ~(uint64_t)KVM_SREGS2_FLAGS_PDPTRS_VALID)
		return state_refuse(w, RW_ECORRUPT, "sregs.flags: unknown flags 0x%llx",
			      (unsigned long long)s->flags);
	if (s->flags & KVM_SREGS2_FLAGS_PDPTRS_VALID) {
		if (!paging || !(s->cr4 & CR4_PAE) || lma)
			return state_refuse(w, RW_ECORRUPT,
				      "sregs.pdptrs: marked valid outside PAE paging");
	} else if (s->pdptrs[0] | s->pdptrs[1] | s->pdptrs[2] | s->pdptrs[3]) {
		return state_refuse(w, RW_ECORRUPT, "sregs.pdptrs: set but not marked valid");
	}
	return 0;
}

static int check_xcr0(struct why *w, uint64_t v)
{
	if (!(v & XCR0_X87))
		return state_refuse(w, RW_ECORRUPT, "xcrs.xcr0: 0x%llx without x87", (unsigned long long)v);
	if ((v & XCR0_AVX) && !(v & XCR0_SSE))
		return state_refuse(w, RW_ECORRUPT, "xcrs.xcr0: 0x%llx has AVX without SSE",
			      (unsigned long long)v);
	if ((v & XCR0_AVX512) && ((v & XCR0_AVX512) != XCR0_AVX512 || !(v & XCR0_AVX)))
		return state_refuse(w, RW_ECORRUPT, "xcrs.xcr0: 0x%llx has a partial AVX-512 state",
			      (unsigned long long)v);
	if ((v & XCR0_AMX) && (v & XCR0_AMX) != XCR0_AMX)
		return state_refuse(w, RW_ECORRUPT, "xcrs.xcr0: 0x%llx has a partial AMX state",
			      (unsigned long long)v);
	return 0;
}

static int check_events(struct why *w, const struct kvm_vcpu_events *e)
{
	if (e->flags & ~(uint32_t)EVENTS_KNOWN)
		return state_refuse(w, RW_ECORRUPT, "events.flags: unknown flags 0x%x", e->flags);
	if (e->exception.injected > 1 || e->exception.pending > 1 ||
	    e->exception.has_error_code > 1 || e->exception_has_payload > 1)
		return state_refuse(w, RW_ECORRUPT, "events.exception: a flag is neither 0 nor 1");
	if ((e->exception.injected || e->exception.pending) &&
	    (e->exception.nr > 31 || e->exception.nr == NMI_VECTOR))
		return state_refuse(w, RW_ECORRUPT, "events.exception.nr: %u is not an exception vector",
			      e->exception.nr);
	if (e->interrupt.injected > 1 || e->interrupt.soft > 1)
		return state_refuse(w, RW_ECORRUPT, "events.interrupt: a flag is neither 0 nor 1");
	if (e->interrupt.shadow & ~SHADOW_KNOWN)
		return state_refuse(w, RW_ECORRUPT, "events.interrupt.shadow: unknown bits 0x%x",
			      e->interrupt.shadow);
	/* KVM reports how many NMIs are pending, and never keeps more than two */
	if (e->nmi.injected > 1 || e->nmi.masked > 1 || e->nmi.pending > 2)
		return state_refuse(w, RW_ECORRUPT, "events.nmi: injected %u, pending %u, masked %u",
			      e->nmi.injected, e->nmi.pending, e->nmi.masked);
	if (e->sipi_vector > 0xff)
		return state_refuse(w, RW_ECORRUPT, "events.sipi_vector: 0x%x, at most 0xff",
			      e->sipi_vector);
	if (e->smi.smm > 1 || e->smi.pending > 1 || e->smi.smm_inside_nmi > 1 ||
	    e->smi.latched_init > 1)
		return state_refuse(w, RW_ECORRUPT, "events.smi: a flag is neither 0 nor 1");
	if (e->triple_fault.pending > 1)
		return state_refuse(w, RW_ECORRUPT, "events.triple_fault.pending: %u, not 0 or 1",
			      e->triple_fault.pending);
	return 0;
}

static int check_msrs(const struct vm *vm, struct why *w, const struct vcpu_state *st)
{
	if (st->nr_msrs > vm->nr_msrs || st->nr_msrs > VCPU_MAX_MSRS)
		return state_refuse(w, RW_ENOKVMCAP, "msrs.count: %u, this KVM restores %u MSRs",
			      st->nr_msrs, vm->nr_msrs);
	for (uint32_t i = 0; i < st->nr_msrs; i++) {
		uint32_t idx = st->msrs[i].index;
		bool known = false;

		for (uint32_t k = 0; k < vm->nr_msrs && !known; k++)
			known = vm->msr_index[k] == idx;
		if (!known)
			return state_refuse(w, RW_ENOKVMCAP,
				      "msrs[%u].index: MSR 0x%x is not one this KVM can restore", i,
				      idx);
		for (uint32_t k = 0; k < i; k++)
			if (st->msrs[k].index == idx)
				return state_refuse(w, RW_ECORRUPT, "msrs[%u].index: MSR 0x%x appears twice",
					      i, idx);
	}
	return 0;
}

static int check_xsave(const struct vm *vm, struct why *w, const struct vcpu_state *st)
{
	const uint8_t *x = st->xsave;

	if (st->xsave_size != vm->xsave_size || st->xsave_size > VCPU_XSAVE_MAX)
		return state_refuse(w, RW_ENOKVMCAP, "xsave.size: %u bytes, this KVM's XSAVE area is %u",
			      st->xsave_size, vm->xsave_size);
	if (st->xsave_size < XSAVE_HDR_END)
		return 0;
	if (get_le32(x + XSAVE_MXCSR) >> 16)
		return state_refuse(w, RW_ECORRUPT, "xsave.mxcsr: reserved bits set (0x%x)",
			      get_le32(x + XSAVE_MXCSR));
	if (get_le64(x + XSAVE_XCOMP_BV))
		return state_refuse(w, RW_ECORRUPT, "xsave.xcomp_bv: 0x%llx, KVM's layout is not compacted",
			      (unsigned long long)get_le64(x + XSAVE_XCOMP_BV));
	for (unsigned i = XSAVE_HDR_RESERVED; i < XSAVE_HDR_END; i++)
		if (x[i])
			return state_refuse(w, RW_ECORRUPT, "xsave.header: reserved byte %u is not zero",
				      i - XSAVE_HDR);
	return 0;
}

static int check_vcpu(const struct vm *vm, unsigned index, const struct vcpu_state *st,
		      struct why *w)
{
	const struct kvm_regs *g = &st->regs;
	unsigned va_bits = (st->sregs.cr4 & CR4_LA57) ? 57 : 48;
	bool seen_xcr0 = false;
	uint32_t id;
	int ret;

	if (index >= vm->ncpus)
		return state_refuse(w, RW_ECORRUPT, "index: vCPU %u, the VM has %u", index, vm->ncpus);
	switch (st->mp.mp_state) {
	case KVM_MP_STATE_RUNNABLE:
	case KVM_MP_STATE_UNINITIALIZED:
	case KVM_MP_STATE_INIT_RECEIVED:
	case KVM_MP_STATE_HALTED:
	case KVM_MP_STATE_SIPI_RECEIVED:
		break;
	default:
		return state_refuse(w, RW_ECORRUPT, "mp_state: %u is not an x86 vCPU state",
			      st->mp.mp_state);
	}

	if ((g->rflags & ~RFLAGS_KNOWN) || !(g->rflags & RFLAGS_FIXED1))
		return state_refuse(w, RW_ECORRUPT, "regs.rflags: 0x%llx has reserved bits wrong",
			      (unsigned long long)g->rflags);
	if (!canonical(g->rip, va_bits))
		return state_refuse(w, RW_ECORRUPT, "regs.rip: 0x%llx is not canonical",
			      (unsigned long long)g->rip);

	if ((ret = check_sregs(vm, index, st, w)))
		return ret;

	if (st->xcrs.flags)
		return state_refuse(w, RW_ECORRUPT, "xcrs.flags: 0x%x, must be 0", st->xcrs.flags);
	if (st->xcrs.nr_xcrs > KVM_MAX_XCRS)
		return state_refuse(w, RW_ECORRUPT, "xcrs.nr_xcrs: %u, at most %u", st->xcrs.nr_xcrs,
			      KVM_MAX_XCRS);
	for (uint32_t i = 0; i < st->xcrs.nr_xcrs; i++) {
		if (st->xcrs.xcrs[i].xcr != 0)
			return state_refuse(w, RW_ECORRUPT, "xcrs[%u].xcr: XCR%u, KVM has only XCR0", i,
				      st->xcrs.xcrs[i].xcr);
		if (seen_xcr0)
			return state_refuse(w, RW_ECORRUPT, "xcrs[%u].xcr: XCR0 appears twice", i);
		seen_xcr0 = true;
		if ((ret = check_xcr0(w, st->xcrs.xcrs[i].value)))
			return ret;
	}

	if (st->dregs.flags)
		return state_refuse(w, RW_ECORRUPT, "debugregs.flags: 0x%llx, must be 0",
			      (unsigned long long)st->dregs.flags);
	if (st->dregs.dr6 >> 32 || st->dregs.dr7 >> 32)
		return state_refuse(w, RW_ECORRUPT, "debugregs: DR6 0x%llx / DR7 0x%llx upper half set",
			      (unsigned long long)st->dregs.dr6, (unsigned long long)st->dregs.dr7);

	/*
	 * KVM reports the ID in bits 31:24 (xAPIC layout) unless the VM opted
	 * into x2APIC's 32-bit IDs, which then apply in x2APIC mode.
	 */
	id = get_le32((const uint8_t *)st->lapic.regs + APIC_REG_ID);
	if (id != (uint32_t)index << 24 && !((st->sregs.apic_base & APIC_BASE_X2APIC) && id == index))
		return state_refuse(w, RW_ECORRUPT, "lapic.id: 0x%08x belongs to vCPU %u, not vCPU %u", id,
			      id >> 24, index);

	if ((ret = check_events(w, &st->events)) || (ret = check_msrs(vm, w, st)) ||
	    (ret = check_xsave(vm, w, st)))
		return ret;
	return 0;
}

/* Put the MSRs in the VM's order (TSC first, TSC_DEADLINE last). */
static void order_msrs(const struct vm *vm, struct vcpu_state *st)
{
	struct kvm_msr_entry in[VCPU_MAX_MSRS];
	uint32_t n = 0;

	memcpy(in, st->msrs, st->nr_msrs * sizeof(in[0]));
	for (uint32_t k = 0; k < vm->nr_msrs; k++)
		for (uint32_t i = 0; i < st->nr_msrs; i++)
			if (in[i].index == vm->msr_index[k]) {
				st->msrs[n++] = in[i];
				break;
			}
}

int state_vcpu_encode(const struct vm *vm, unsigned index, const struct vcpu_state *st,
		      uint8_t **buf, size_t *len)
{
	struct rec_writer w;
	int ret;

	*buf = NULL;
	*len = 0;
	if (index >= vm->ncpus || st->xsave_size != vm->xsave_size ||
	    st->xsave_size > VCPU_XSAVE_MAX || st->nr_msrs > vm->nr_msrs ||
	    st->nr_msrs > VCPU_MAX_MSRS || st->xcrs.nr_xcrs > KVM_MAX_XCRS)
		return -EINVAL;
	rec_writer_init(&w, STATE_KIND_VCPU, STATE_VCPU_VERSION);
	put_vcpu(&w, st);
	ret = rec_take(&w, buf, len);
	rec_writer_free(&w);
	return ret;
}

int state_vcpu_decode(const struct vm *vm, unsigned index, const void *buf, size_t len,
		      struct vcpu_state *out, char *why, size_t whylen)
{
	char key[STATE_KEY_MAX];
	struct rec_reader r;
	struct why w;
	int ret;

	state_vcpu_key(index, key, sizeof(key));
	state_why_init(&w, why, whylen, key);
	memset(out, 0, sizeof(*out));
	if (index >= vm->ncpus)
		return state_refuse(&w, RW_ECORRUPT, "index: vCPU %u, the VM has %u", index, vm->ncpus);
	ret = state_open_record(&r, buf, len, STATE_KIND_VCPU, 1, STATE_VCPU_VERSION, &w);
	if (!ret)
		ret = parse_vcpu(vm, &r, out, &w);
	if (!ret)
		ret = check_vcpu(vm, index, out, &w);
	if (ret) {
		memset(out, 0, sizeof(*out));
		return ret;
	}
	order_msrs(vm, out);
	return 0;
}

int state_vcpu_check(const struct vm *vm, unsigned index, const struct vcpu_state *st, char *why,
		     size_t whylen)
{
	char key[STATE_KEY_MAX];
	struct why w;

	state_vcpu_key(index, key, sizeof(key));
	state_why_init(&w, why, whylen, key);
	return check_vcpu(vm, index, st, &w);
}
