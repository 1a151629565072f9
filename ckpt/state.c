/*
 * state.c - vCPU, platform, configuration and device records (layouts and
 * contract in state.h).
 *
 * Each decoder works in two steps: parse the record into the in-memory
 * struct, checking only the encoding (presence, bounds, string rules), then
 * check the values in the struct. The second step is shared with the
 * *_check() functions, so a state kept in memory (fast reset) and a state
 * read from a store pass the same rules.
 */
#include "state.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "memory.h"
#include "rw/abi.h"
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

/* KVM gives the PICs these edge/level masks and never changes them. */
#define PIC_MASTER_ELCR_MASK 0xf8
#define PIC_SLAVE_ELCR_MASK 0xde
#define PIT_MODE_UNSET 0xff /* KVM's value for a channel never programmed */
#define PIT_COUNT_MAX 0x10000
#define PIT_FLAGS_KNOWN (KVM_PIT_FLAGS_HPET_LEGACY | KVM_PIT_FLAGS_SPEAKER_DATA_ON)
#define CLOCK_FLAGS_KNOWN (KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC)

/* ---------------------------------------------------------------- refusals */

/* Where a refusal is explained: "<key>: <field>: <reason>". */
struct why {
	char *buf;
	size_t len;
	const char *key;
};

static void why_init(struct why *w, char *buf, size_t len, const char *key)
{
	w->buf = buf;
	w->len = buf ? len : 0;
	w->key = key;
	if (w->len)
		w->buf[0] = '\0';
}

/* Explain a refusal; fmt is "<field>: <reason>". Returns err. */
static int __attribute__((format(printf, 3, 4))) refuse(struct why *w, int err, const char *fmt, ...)
{
	char text[256];
	va_list ap;

	if (w->len) {
		va_start(ap, fmt);
		vsnprintf(text, sizeof(text), fmt, ap);
		va_end(ap);
		snprintf(w->buf, w->len, "%s: %s", w->key, text);
	}
	return err;
}

/*
 * Explain the sticky error of a reader: the field rec_fail() named, or else
 * the part of the record being read when it ran short or was malformed.
 */
static int refuse_reader(struct why *w, const struct rec_reader *r, const char *part)
{
	int err = rec_error(r) ? rec_error(r) : RW_ECORRUPT;
	const char *field = rec_error_field(r);

	if (field)
		return refuse(w, err, "%s: %s", field, rw_strerror(err));
	return refuse(w, err, "%s: truncated or malformed at payload offset %zu (%s)", part,
		      rec_error_offset(r), rw_strerror(err));
}

/* Name the part of a record about to be read, unless reading already failed. */
#define PART(r, var, name)              \
	do {                            \
		if (!rec_error(r))      \
			(var) = (name); \
	} while (0)

/* rec_open() with a message that says which header check failed. */
static int open_record(struct rec_reader *r, const void *buf, size_t len, const char *kind,
		       uint32_t min_version, uint32_t max_version, struct why *w)
{
	struct rec_header h;
	int ret = rec_open(r, buf, len, kind, min_version, max_version);

	if (!ret)
		return 0;
	if (rec_peek(buf, len, &h))
		return refuse(w, ret, "header: not a record (%zu bytes, bad magic or too short)", len);
	switch (ret) {
	case RW_ECHECKSUM:
		return refuse(w, ret, "header: checksum mismatch");
	case RW_EVERSION:
		return refuse(w, ret, "header: version %u, this build reads %u..%u", h.version,
			      min_version, max_version);
	case RW_ECORRUPT:
		if (h.length > REC_PAYLOAD_MAX || h.length != len - REC_HEADER_SIZE)
			return refuse(w, ret, "header: length %u, but %zu payload bytes present",
				      h.length, len - REC_HEADER_SIZE);
		return refuse(w, ret, "header: not a \"%s\" record", kind);
	default:
		return refuse(w, ret, "header: %s", rw_strerror(ret));
	}
}

/* Skip the tagged fields a reader does not know; refuse critical ones. */
static int skip_tags(struct rec_reader *r)
{
	struct rec_reader field;
	uint16_t tag;
	int ret;

	while ((ret = rec_next_tag(r, &tag, &field)) > 0)
		if (rec_tag_unknown(r, tag))
			return rec_error(r);
	if (ret < 0)
		return ret;
	return rec_expect_end(r);
}

/* ------------------------------------------------------------ small helpers */

static uint8_t g8(struct rec_reader *r)
{
	uint8_t v;

	rec_get_u8(r, &v);
	return v;
}

static uint16_t g16(struct rec_reader *r)
{
	uint16_t v;

	rec_get_u16(r, &v);
	return v;
}

static uint32_t g32(struct rec_reader *r)
{
	uint32_t v;

	rec_get_u32(r, &v);
	return v;
}

static uint64_t g64(struct rec_reader *r)
{
	uint64_t v;

	rec_get_u64(r, &v);
	return v;
}

static uint32_t rd_le32(const void *p)
{
	const uint8_t *b = p;

	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t rd_le64(const void *p)
{
	const uint8_t *b = p;

	return (uint64_t)rd_le32(b) | (uint64_t)rd_le32(b + 4) << 32;
}

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

static void put_segment(struct rec_writer *w, const struct kvm_segment *s)
{
	rec_put_u64(w, s->base);
	rec_put_u32(w, s->limit);
	rec_put_u16(w, s->selector);
	rec_put_u8(w, s->type);
	rec_put_u8(w, s->present);
	rec_put_u8(w, s->dpl);
	rec_put_u8(w, s->db);
	rec_put_u8(w, s->s);
	rec_put_u8(w, s->l);
	rec_put_u8(w, s->g);
	rec_put_u8(w, s->avl);
	rec_put_u8(w, s->unusable);
}

static void get_segment(struct rec_reader *r, struct kvm_segment *s)
{
	s->base = g64(r);
	s->limit = g32(r);
	s->selector = g16(r);
	s->type = g8(r);
	s->present = g8(r);
	s->dpl = g8(r);
	s->db = g8(r);
	s->s = g8(r);
	s->l = g8(r);
	s->g = g8(r);
	s->avl = g8(r);
	s->unusable = g8(r);
}

static void put_vcpu(struct rec_writer *w, const struct vcpu_state *st)
{
	const struct kvm_regs *g = &st->regs;
	const struct kvm_sregs2 *s = &st->sregs;
	const struct kvm_segment *segs[NR_SEGMENTS] = SEGMENTS(s);
	const struct kvm_vcpu_events *e = &st->events;

	rec_put_u32(w, st->mp.mp_state);

	rec_put_u64(w, g->rax);
	rec_put_u64(w, g->rbx);
	rec_put_u64(w, g->rcx);
	rec_put_u64(w, g->rdx);
	rec_put_u64(w, g->rsi);
	rec_put_u64(w, g->rdi);
	rec_put_u64(w, g->rsp);
	rec_put_u64(w, g->rbp);
	rec_put_u64(w, g->r8);
	rec_put_u64(w, g->r9);
	rec_put_u64(w, g->r10);
	rec_put_u64(w, g->r11);
	rec_put_u64(w, g->r12);
	rec_put_u64(w, g->r13);
	rec_put_u64(w, g->r14);
	rec_put_u64(w, g->r15);
	rec_put_u64(w, g->rip);
	rec_put_u64(w, g->rflags);

	for (unsigned i = 0; i < NR_SEGMENTS; i++)
		put_segment(w, segs[i]);
	rec_put_u64(w, s->gdt.base);
	rec_put_u16(w, s->gdt.limit);
	rec_put_u64(w, s->idt.base);
	rec_put_u16(w, s->idt.limit);
	rec_put_u64(w, s->cr0);
	rec_put_u64(w, s->cr2);
	rec_put_u64(w, s->cr3);
	rec_put_u64(w, s->cr4);
	rec_put_u64(w, s->cr8);
	rec_put_u64(w, s->efer);
	rec_put_u64(w, s->apic_base);
	rec_put_u64(w, s->flags);
	for (unsigned i = 0; i < 4; i++)
		rec_put_u64(w, s->pdptrs[i]);

	rec_put_u32(w, st->xcrs.flags);
	rec_put_u32(w, st->xcrs.nr_xcrs);
	for (uint32_t i = 0; i < st->xcrs.nr_xcrs; i++) {
		rec_put_u32(w, st->xcrs.xcrs[i].xcr);
		rec_put_u64(w, st->xcrs.xcrs[i].value);
	}

	for (unsigned i = 0; i < 4; i++)
		rec_put_u64(w, st->dregs.db[i]);
	rec_put_u64(w, st->dregs.dr6);
	rec_put_u64(w, st->dregs.dr7);
	rec_put_u64(w, st->dregs.flags);

	rec_put_bytes(w, st->lapic.regs, KVM_APIC_REG_SIZE);

	rec_put_u8(w, e->exception.injected);
	rec_put_u8(w, e->exception.nr);
	rec_put_u8(w, e->exception.has_error_code);
	rec_put_u8(w, e->exception.pending);
	rec_put_u32(w, e->exception.error_code);
	rec_put_u8(w, e->exception_has_payload);
	rec_put_u64(w, e->exception_payload);
	rec_put_u8(w, e->interrupt.injected);
	rec_put_u8(w, e->interrupt.nr);
	rec_put_u8(w, e->interrupt.soft);
	rec_put_u8(w, e->interrupt.shadow);
	rec_put_u8(w, e->nmi.injected);
	rec_put_u8(w, e->nmi.pending);
	rec_put_u8(w, e->nmi.masked);
	rec_put_u32(w, e->sipi_vector);
	rec_put_u32(w, e->flags);
	rec_put_u8(w, e->smi.smm);
	rec_put_u8(w, e->smi.pending);
	rec_put_u8(w, e->smi.smm_inside_nmi);
	rec_put_u8(w, e->smi.latched_init);
	rec_put_u8(w, e->triple_fault.pending);

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
	struct kvm_regs *g = &st->regs;
	struct kvm_sregs2 *s = &st->sregs;
	struct kvm_segment *segs[NR_SEGMENTS] = SEGMENTS(s);
	struct kvm_vcpu_events *e = &st->events;
	const char *part = "mp_state";
	uint32_t n;
	int ret;

	st->mp.mp_state = g32(r);

	PART(r, part, "regs");
	g->rax = g64(r);
	g->rbx = g64(r);
	g->rcx = g64(r);
	g->rdx = g64(r);
	g->rsi = g64(r);
	g->rdi = g64(r);
	g->rsp = g64(r);
	g->rbp = g64(r);
	g->r8 = g64(r);
	g->r9 = g64(r);
	g->r10 = g64(r);
	g->r11 = g64(r);
	g->r12 = g64(r);
	g->r13 = g64(r);
	g->r14 = g64(r);
	g->r15 = g64(r);
	g->rip = g64(r);
	g->rflags = g64(r);

	for (unsigned i = 0; i < NR_SEGMENTS; i++) {
		PART(r, part, "sregs.segments");
		get_segment(r, segs[i]);
	}
	PART(r, part, "sregs");
	s->gdt.base = g64(r);
	s->gdt.limit = g16(r);
	s->idt.base = g64(r);
	s->idt.limit = g16(r);
	s->cr0 = g64(r);
	s->cr2 = g64(r);
	s->cr3 = g64(r);
	s->cr4 = g64(r);
	s->cr8 = g64(r);
	s->efer = g64(r);
	s->apic_base = g64(r);
	s->flags = g64(r);
	for (unsigned i = 0; i < 4; i++)
		s->pdptrs[i] = g64(r);

	PART(r, part, "xcrs");
	st->xcrs.flags = g32(r);
	n = g32(r);
	if (rec_error(r))
		return refuse_reader(w, r, part);
	if (n > KVM_MAX_XCRS)
		return refuse(w, RW_ECORRUPT, "xcrs.nr_xcrs: %u, at most %u", n, KVM_MAX_XCRS);
	st->xcrs.nr_xcrs = n;
	for (uint32_t i = 0; i < n; i++) {
		st->xcrs.xcrs[i].xcr = g32(r);
		st->xcrs.xcrs[i].value = g64(r);
	}

	PART(r, part, "debugregs");
	for (unsigned i = 0; i < 4; i++)
		st->dregs.db[i] = g64(r);
	st->dregs.dr6 = g64(r);
	st->dregs.dr7 = g64(r);
	st->dregs.flags = g64(r);

	PART(r, part, "lapic");
	rec_get_bytes(r, st->lapic.regs, KVM_APIC_REG_SIZE);

	PART(r, part, "events");
	e->exception.injected = g8(r);
	e->exception.nr = g8(r);
	e->exception.has_error_code = g8(r);
	e->exception.pending = g8(r);
	e->exception.error_code = g32(r);
	e->exception_has_payload = g8(r);
	e->exception_payload = g64(r);
	e->interrupt.injected = g8(r);
	e->interrupt.nr = g8(r);
	e->interrupt.soft = g8(r);
	e->interrupt.shadow = g8(r);
	e->nmi.injected = g8(r);
	e->nmi.pending = g8(r);
	e->nmi.masked = g8(r);
	e->sipi_vector = g32(r);
	e->flags = g32(r);
	e->smi.smm = g8(r);
	e->smi.pending = g8(r);
	e->smi.smm_inside_nmi = g8(r);
	e->smi.latched_init = g8(r);
	e->triple_fault.pending = g8(r);

	PART(r, part, "msrs");
	n = g32(r);
	if (rec_error(r))
		return refuse_reader(w, r, part);
	if (n > VCPU_MAX_MSRS)
		return refuse(w, RW_ECORRUPT, "msrs.count: %u, at most %u", n, VCPU_MAX_MSRS);
	if (n > vm->nr_msrs)
		return refuse(w, RW_ENOKVMCAP, "msrs.count: %u, this KVM restores %u MSRs", n,
			      vm->nr_msrs);
	st->nr_msrs = n;
	for (uint32_t i = 0; i < n; i++) {
		st->msrs[i].index = g32(r);
		st->msrs[i].data = g64(r);
	}

	PART(r, part, "xsave");
	n = g32(r);
	if (rec_error(r))
		return refuse_reader(w, r, part);
	if (n != vm->xsave_size)
		return refuse(w, n > VCPU_XSAVE_MAX ? RW_ECORRUPT : RW_ENOKVMCAP,
			      "xsave.size: %u bytes, this KVM's XSAVE area is %u", n, vm->xsave_size);
	st->xsave_size = n;
	rec_get_bytes(r, st->xsave, n);

	PART(r, part, "tagged fields");
	ret = skip_tags(r);
	if (ret || rec_error(r))
		return refuse_reader(w, r, part);
	return 0;
}

/* ------------------------------------------------------------- vCPU checks */

static int check_segment(struct why *w, const char *name, const struct kvm_segment *s,
			 unsigned va_bits)
{
	if (s->type > 15)
		return refuse(w, RW_ECORRUPT, "sregs.%s.type: %u, at most 15", name, s->type);
	if (s->dpl > 3)
		return refuse(w, RW_ECORRUPT, "sregs.%s.dpl: %u, at most 3", name, s->dpl);
	if (s->present > 1 || s->db > 1 || s->s > 1 || s->l > 1 || s->g > 1 || s->avl > 1 ||
	    s->unusable > 1)
		return refuse(w, RW_ECORRUPT, "sregs.%s: an attribute flag is neither 0 nor 1", name);
	if (!canonical(s->base, va_bits))
		return refuse(w, RW_ECORRUPT, "sregs.%s.base: 0x%llx is not canonical", name,
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
		return refuse(w, RW_ECORRUPT, "sregs.%s.base: 0x%llx is not canonical", name,
			      (unsigned long long)t->base);
	if (paging && (t->base >> 63))
		return 0;
	if (!mem_range_ok(&vm->mem, t->base, (uint64_t)t->limit + 1))
		return refuse(w, RW_ECORRUPT,
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
		return refuse(w, RW_ECORRUPT, "sregs.cr0: reserved bits set (0x%llx)",
			      (unsigned long long)s->cr0);
	if (paging && !(s->cr0 & CR0_PE))
		return refuse(w, RW_ECORRUPT, "sregs.cr0: PG without PE");
	if ((s->cr0 & CR0_NW) && !(s->cr0 & CR0_CD))
		return refuse(w, RW_ECORRUPT, "sregs.cr0: NW without CD");
	if (s->cr4 & ~CR4_KNOWN)
		return refuse(w, RW_ECORRUPT, "sregs.cr4: reserved bits set (0x%llx)",
			      (unsigned long long)s->cr4);
	if (s->efer & ~EFER_KNOWN)
		return refuse(w, RW_ECORRUPT, "sregs.efer: reserved bits set (0x%llx)",
			      (unsigned long long)s->efer);
	if ((s->efer & EFER_LME) && paging) {
		if (!lma)
			return refuse(w, RW_ECORRUPT, "sregs.efer: LME and CR0.PG without LMA");
		if (!(s->cr4 & CR4_PAE))
			return refuse(w, RW_ECORRUPT, "sregs.cr4: long mode without PAE");
	} else {
		if (lma)
			return refuse(w, RW_ECORRUPT, "sregs.efer: LMA without LME and CR0.PG");
		if (s->cs.l)
			return refuse(w, RW_ECORRUPT, "sregs.cs.l: 64-bit code outside long mode");
	}
	if (s->cs.l && s->cs.db)
		return refuse(w, RW_ECORRUPT, "sregs.cs: L and D both set");
	if (s->cr8 > 15)
		return refuse(w, RW_ECORRUPT, "sregs.cr8: %llu, at most 15",
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
			return refuse(w, RW_ECORRUPT,
				      "sregs.cr3: page-table root 0x%llx is outside guest RAM",
				      (unsigned long long)root);
	}

	if (s->apic_base & ~(APIC_BASE_ADDR | APIC_BASE_BSP | APIC_BASE_X2APIC | APIC_BASE_ENABLE))
		return refuse(w, RW_ECORRUPT, "sregs.apic_base: reserved bits set (0x%llx)",
			      (unsigned long long)s->apic_base);
	if ((s->apic_base & APIC_BASE_ADDR) != RW_GPA_LAPIC)
		return refuse(w, RW_ECORRUPT, "sregs.apic_base: LAPIC at 0x%llx, not at 0x%llx",
			      (unsigned long long)(s->apic_base & APIC_BASE_ADDR),
			      (unsigned long long)RW_GPA_LAPIC);
	if ((s->apic_base & APIC_BASE_X2APIC) && !(s->apic_base & APIC_BASE_ENABLE))
		return refuse(w, RW_ECORRUPT, "sregs.apic_base: x2APIC mode with the APIC disabled");
	if (!!(s->apic_base & APIC_BASE_BSP) != (index == 0))
		return refuse(w, RW_ECORRUPT, "sregs.apic_base: BSP flag %s on vCPU %u",
			      index == 0 ? "clear" : "set", index);

	if (s->flags & ~(uint64_t)KVM_SREGS2_FLAGS_PDPTRS_VALID)
		return refuse(w, RW_ECORRUPT, "sregs.flags: unknown flags 0x%llx",
			      (unsigned long long)s->flags);
	if (s->flags & KVM_SREGS2_FLAGS_PDPTRS_VALID) {
		if (!paging || !(s->cr4 & CR4_PAE) || lma)
			return refuse(w, RW_ECORRUPT,
				      "sregs.pdptrs: marked valid outside PAE paging");
	} else if (s->pdptrs[0] | s->pdptrs[1] | s->pdptrs[2] | s->pdptrs[3]) {
		return refuse(w, RW_ECORRUPT, "sregs.pdptrs: set but not marked valid");
	}
	return 0;
}

static int check_xcr0(struct why *w, uint64_t v)
{
	if (!(v & XCR0_X87))
		return refuse(w, RW_ECORRUPT, "xcrs.xcr0: 0x%llx without x87", (unsigned long long)v);
	if ((v & XCR0_AVX) && !(v & XCR0_SSE))
		return refuse(w, RW_ECORRUPT, "xcrs.xcr0: 0x%llx has AVX without SSE",
			      (unsigned long long)v);
	if ((v & XCR0_AVX512) && ((v & XCR0_AVX512) != XCR0_AVX512 || !(v & XCR0_AVX)))
		return refuse(w, RW_ECORRUPT, "xcrs.xcr0: 0x%llx has a partial AVX-512 state",
			      (unsigned long long)v);
	if ((v & XCR0_AMX) && (v & XCR0_AMX) != XCR0_AMX)
		return refuse(w, RW_ECORRUPT, "xcrs.xcr0: 0x%llx has a partial AMX state",
			      (unsigned long long)v);
	return 0;
}

static int check_events(struct why *w, const struct kvm_vcpu_events *e)
{
	if (e->flags & ~(uint32_t)EVENTS_KNOWN)
		return refuse(w, RW_ECORRUPT, "events.flags: unknown flags 0x%x", e->flags);
	if (e->exception.injected > 1 || e->exception.pending > 1 ||
	    e->exception.has_error_code > 1 || e->exception_has_payload > 1)
		return refuse(w, RW_ECORRUPT, "events.exception: a flag is neither 0 nor 1");
	if ((e->exception.injected || e->exception.pending) &&
	    (e->exception.nr > 31 || e->exception.nr == NMI_VECTOR))
		return refuse(w, RW_ECORRUPT, "events.exception.nr: %u is not an exception vector",
			      e->exception.nr);
	if (e->interrupt.injected > 1 || e->interrupt.soft > 1)
		return refuse(w, RW_ECORRUPT, "events.interrupt: a flag is neither 0 nor 1");
	if (e->interrupt.shadow & ~SHADOW_KNOWN)
		return refuse(w, RW_ECORRUPT, "events.interrupt.shadow: unknown bits 0x%x",
			      e->interrupt.shadow);
	/* KVM reports how many NMIs are pending, and never keeps more than two */
	if (e->nmi.injected > 1 || e->nmi.masked > 1 || e->nmi.pending > 2)
		return refuse(w, RW_ECORRUPT, "events.nmi: injected %u, pending %u, masked %u",
			      e->nmi.injected, e->nmi.pending, e->nmi.masked);
	if (e->sipi_vector > 0xff)
		return refuse(w, RW_ECORRUPT, "events.sipi_vector: 0x%x, at most 0xff",
			      e->sipi_vector);
	if (e->smi.smm > 1 || e->smi.pending > 1 || e->smi.smm_inside_nmi > 1 ||
	    e->smi.latched_init > 1)
		return refuse(w, RW_ECORRUPT, "events.smi: a flag is neither 0 nor 1");
	if (e->triple_fault.pending > 1)
		return refuse(w, RW_ECORRUPT, "events.triple_fault.pending: %u, not 0 or 1",
			      e->triple_fault.pending);
	return 0;
}

static int check_msrs(const struct vm *vm, struct why *w, const struct vcpu_state *st)
{
	if (st->nr_msrs > vm->nr_msrs || st->nr_msrs > VCPU_MAX_MSRS)
		return refuse(w, RW_ENOKVMCAP, "msrs.count: %u, this KVM restores %u MSRs",
			      st->nr_msrs, vm->nr_msrs);
	for (uint32_t i = 0; i < st->nr_msrs; i++) {
		uint32_t idx = st->msrs[i].index;
		bool known = false;

		for (uint32_t k = 0; k < vm->nr_msrs && !known; k++)
			known = vm->msr_index[k] == idx;
		if (!known)
			return refuse(w, RW_ENOKVMCAP,
				      "msrs[%u].index: MSR 0x%x is not one this KVM can restore", i,
				      idx);
		for (uint32_t k = 0; k < i; k++)
			if (st->msrs[k].index == idx)
				return refuse(w, RW_ECORRUPT, "msrs[%u].index: MSR 0x%x appears twice",
					      i, idx);
	}
	return 0;
}

static int check_xsave(const struct vm *vm, struct why *w, const struct vcpu_state *st)
{
	const uint8_t *x = st->xsave;

	if (st->xsave_size != vm->xsave_size || st->xsave_size > VCPU_XSAVE_MAX)
		return refuse(w, RW_ENOKVMCAP, "xsave.size: %u bytes, this KVM's XSAVE area is %u",
			      st->xsave_size, vm->xsave_size);
	if (st->xsave_size < XSAVE_HDR_END)
		return 0;
	if (rd_le32(x + XSAVE_MXCSR) >> 16)
		return refuse(w, RW_ECORRUPT, "xsave.mxcsr: reserved bits set (0x%x)",
			      rd_le32(x + XSAVE_MXCSR));
	if (rd_le64(x + XSAVE_XCOMP_BV))
		return refuse(w, RW_ECORRUPT, "xsave.xcomp_bv: 0x%llx, KVM's layout is not compacted",
			      (unsigned long long)rd_le64(x + XSAVE_XCOMP_BV));
	for (unsigned i = XSAVE_HDR_RESERVED; i < XSAVE_HDR_END; i++)
		if (x[i])
			return refuse(w, RW_ECORRUPT, "xsave.header: reserved byte %u is not zero",
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
		return refuse(w, RW_ECORRUPT, "index: vCPU %u, the VM has %u", index, vm->ncpus);
	switch (st->mp.mp_state) {
	case KVM_MP_STATE_RUNNABLE:
	case KVM_MP_STATE_UNINITIALIZED:
	case KVM_MP_STATE_INIT_RECEIVED:
	case KVM_MP_STATE_HALTED:
	case KVM_MP_STATE_SIPI_RECEIVED:
		break;
	default:
		return refuse(w, RW_ECORRUPT, "mp_state: %u is not an x86 vCPU state",
			      st->mp.mp_state);
	}

	if ((g->rflags & ~RFLAGS_KNOWN) || !(g->rflags & RFLAGS_FIXED1))
		return refuse(w, RW_ECORRUPT, "regs.rflags: 0x%llx has reserved bits wrong",
			      (unsigned long long)g->rflags);
	if (!canonical(g->rip, va_bits))
		return refuse(w, RW_ECORRUPT, "regs.rip: 0x%llx is not canonical",
			      (unsigned long long)g->rip);

	if ((ret = check_sregs(vm, index, st, w)))
		return ret;

	if (st->xcrs.flags)
		return refuse(w, RW_ECORRUPT, "xcrs.flags: 0x%x, must be 0", st->xcrs.flags);
	if (st->xcrs.nr_xcrs > KVM_MAX_XCRS)
		return refuse(w, RW_ECORRUPT, "xcrs.nr_xcrs: %u, at most %u", st->xcrs.nr_xcrs,
			      KVM_MAX_XCRS);
	for (uint32_t i = 0; i < st->xcrs.nr_xcrs; i++) {
		if (st->xcrs.xcrs[i].xcr != 0)
			return refuse(w, RW_ECORRUPT, "xcrs[%u].xcr: XCR%u, KVM has only XCR0", i,
				      st->xcrs.xcrs[i].xcr);
		if (seen_xcr0)
			return refuse(w, RW_ECORRUPT, "xcrs[%u].xcr: XCR0 appears twice", i);
		seen_xcr0 = true;
		if ((ret = check_xcr0(w, st->xcrs.xcrs[i].value)))
			return ret;
	}

	if (st->dregs.flags)
		return refuse(w, RW_ECORRUPT, "debugregs.flags: 0x%llx, must be 0",
			      (unsigned long long)st->dregs.flags);
	if (st->dregs.dr6 >> 32 || st->dregs.dr7 >> 32)
		return refuse(w, RW_ECORRUPT, "debugregs: DR6 0x%llx / DR7 0x%llx upper half set",
			      (unsigned long long)st->dregs.dr6, (unsigned long long)st->dregs.dr7);

	/*
	 * KVM reports the ID in bits 31:24 (xAPIC layout) unless the VM opted
	 * into x2APIC's 32-bit IDs, which then apply in x2APIC mode.
	 */
	id = rd_le32(st->lapic.regs + APIC_REG_ID);
	if (id != (uint32_t)index << 24 && !((st->sregs.apic_base & APIC_BASE_X2APIC) && id == index))
		return refuse(w, RW_ECORRUPT, "lapic.id: 0x%08x belongs to vCPU %u, not vCPU %u", id,
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
	why_init(&w, why, whylen, key);
	memset(out, 0, sizeof(*out));
	if (index >= vm->ncpus)
		return refuse(&w, RW_ECORRUPT, "index: vCPU %u, the VM has %u", index, vm->ncpus);
	ret = open_record(&r, buf, len, STATE_KIND_VCPU, 1, STATE_VCPU_VERSION, &w);
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
	why_init(&w, why, whylen, key);
	return check_vcpu(vm, index, st, &w);
}

/* ---------------------------------------------------------------- platform */

static void put_pic(struct rec_writer *w, const struct kvm_pic_state *p)
{
	rec_put_u8(w, p->last_irr);
	rec_put_u8(w, p->irr);
	rec_put_u8(w, p->imr);
	rec_put_u8(w, p->isr);
	rec_put_u8(w, p->priority_add);
	rec_put_u8(w, p->irq_base);
	rec_put_u8(w, p->read_reg_select);
	rec_put_u8(w, p->poll);
	rec_put_u8(w, p->special_mask);
	rec_put_u8(w, p->init_state);
	rec_put_u8(w, p->auto_eoi);
	rec_put_u8(w, p->rotate_on_auto_eoi);
	rec_put_u8(w, p->special_fully_nested_mode);
	rec_put_u8(w, p->init4);
	rec_put_u8(w, p->elcr);
	rec_put_u8(w, p->elcr_mask);
}

static void get_pic(struct rec_reader *r, struct kvm_pic_state *p)
{
	p->last_irr = g8(r);
	p->irr = g8(r);
	p->imr = g8(r);
	p->isr = g8(r);
	p->priority_add = g8(r);
	p->irq_base = g8(r);
	p->read_reg_select = g8(r);
	p->poll = g8(r);
	p->special_mask = g8(r);
	p->init_state = g8(r);
	p->auto_eoi = g8(r);
	p->rotate_on_auto_eoi = g8(r);
	p->special_fully_nested_mode = g8(r);
	p->init4 = g8(r);
	p->elcr = g8(r);
	p->elcr_mask = g8(r);
}

static void put_pit_channel(struct rec_writer *w, const struct kvm_pit_channel_state *c)
{
	rec_put_u32(w, c->count);
	rec_put_u16(w, c->latched_count);
	rec_put_u8(w, c->count_latched);
	rec_put_u8(w, c->status_latched);
	rec_put_u8(w, c->status);
	rec_put_u8(w, c->read_state);
	rec_put_u8(w, c->write_state);
	rec_put_u8(w, c->write_latch);
	rec_put_u8(w, c->rw_mode);
	rec_put_u8(w, c->mode);
	rec_put_u8(w, c->bcd);
	rec_put_u8(w, c->gate);
	rec_put_u64(w, (uint64_t)c->count_load_time);
}

static void get_pit_channel(struct rec_reader *r, struct kvm_pit_channel_state *c)
{
	c->count = g32(r);
	c->latched_count = g16(r);
	c->count_latched = g8(r);
	c->status_latched = g8(r);
	c->status = g8(r);
	c->read_state = g8(r);
	c->write_state = g8(r);
	c->write_latch = g8(r);
	c->rw_mode = g8(r);
	c->mode = g8(r);
	c->bcd = g8(r);
	c->gate = g8(r);
	c->count_load_time = (__s64)g64(r);
}

int state_platform_encode(const struct vm *vm, const struct platform_state *st, uint8_t **buf,
			  size_t *len)
{
	const struct kvm_ioapic_state *io = &st->ioapic.chip.ioapic;
	struct rec_writer w;
	int ret;

	*buf = NULL;
	*len = 0;
	rec_writer_init(&w, STATE_KIND_PLATFORM, STATE_PLATFORM_VERSION);
	put_pic(&w, &st->pic_master.chip.pic);
	put_pic(&w, &st->pic_slave.chip.pic);
	rec_put_u64(&w, io->base_address);
	rec_put_u32(&w, io->ioregsel);
	rec_put_u32(&w, io->id);
	rec_put_u32(&w, io->irr);
	for (unsigned i = 0; i < KVM_IOAPIC_NUM_PINS; i++)
		rec_put_u64(&w, io->redirtbl[i].bits);
	for (unsigned i = 0; i < 3; i++)
		put_pit_channel(&w, &st->pit.channels[i]);
	rec_put_u32(&w, st->pit.flags);
	rec_put_u64(&w, st->clock.clock);
	rec_put_u32(&w, st->clock.flags);
	rec_put_u64(&w, st->clock.realtime);
	rec_put_u64(&w, st->clock.host_tsc);
	ret = rec_take(&w, buf, len);
	rec_writer_free(&w);
	return ret;
}

static int check_pic(struct why *w, const char *name, const struct kvm_pic_state *p,
		     uint8_t elcr_mask)
{
	if (p->irq_base & 7)
		return refuse(w, RW_ECORRUPT, "%s.irq_base: 0x%x is not a multiple of 8", name,
			      p->irq_base);
	if (p->priority_add > 7)
		return refuse(w, RW_ECORRUPT, "%s.priority_add: %u, at most 7", name,
			      p->priority_add);
	if (p->init_state > 3)
		return refuse(w, RW_ECORRUPT, "%s.init_state: %u, at most 3", name, p->init_state);
	if (p->read_reg_select > 1 || p->poll > 1 || p->special_mask > 1 || p->auto_eoi > 1 ||
	    p->rotate_on_auto_eoi > 1 || p->special_fully_nested_mode > 1 || p->init4 > 1)
		return refuse(w, RW_ECORRUPT, "%s: a mode flag is neither 0 nor 1", name);
	if (p->elcr_mask != elcr_mask)
		return refuse(w, RW_ECORRUPT, "%s.elcr_mask: 0x%02x, KVM's is 0x%02x", name,
			      p->elcr_mask, elcr_mask);
	if (p->elcr & ~elcr_mask)
		return refuse(w, RW_ECORRUPT, "%s.elcr: 0x%02x outside mask 0x%02x", name, p->elcr,
			      elcr_mask);
	return 0;
}

static int check_platform(const struct vm *vm, const struct platform_state *st, struct why *w)
{
	const struct kvm_ioapic_state *io = &st->ioapic.chip.ioapic;
	int ret;

	if (st->pic_master.chip_id != KVM_IRQCHIP_PIC_MASTER ||
	    st->pic_slave.chip_id != KVM_IRQCHIP_PIC_SLAVE || st->ioapic.chip_id != KVM_IRQCHIP_IOAPIC)
		return refuse(w, RW_ECORRUPT, "chip_id: irqchips out of order");
	if ((ret = check_pic(w, "pic_master", &st->pic_master.chip.pic, PIC_MASTER_ELCR_MASK)) ||
	    (ret = check_pic(w, "pic_slave", &st->pic_slave.chip.pic, PIC_SLAVE_ELCR_MASK)))
		return ret;

	if (io->base_address != RW_GPA_IOAPIC)
		return refuse(w, RW_ECORRUPT, "ioapic.base_address: 0x%llx, the board's is 0x%llx",
			      (unsigned long long)io->base_address,
			      (unsigned long long)RW_GPA_IOAPIC);
	if (io->id > 15)
		return refuse(w, RW_ECORRUPT, "ioapic.id: %u, at most 15", io->id);
	if (io->irr >> KVM_IOAPIC_NUM_PINS)
		return refuse(w, RW_ECORRUPT, "ioapic.irr: 0x%x names pins beyond %u", io->irr,
			      KVM_IOAPIC_NUM_PINS - 1);

	for (unsigned i = 0; i < 3; i++) {
		const struct kvm_pit_channel_state *c = &st->pit.channels[i];

		if (c->count > PIT_COUNT_MAX)
			return refuse(w, RW_ECORRUPT, "pit.channels[%u].count: 0x%x, at most 0x%x", i,
				      c->count, PIT_COUNT_MAX);
		if (c->mode > 5 && c->mode != PIT_MODE_UNSET)
			return refuse(w, RW_ECORRUPT, "pit.channels[%u].mode: %u, not 0..5", i,
				      c->mode);
		if (c->rw_mode > 3)
			return refuse(w, RW_ECORRUPT, "pit.channels[%u].rw_mode: %u, at most 3", i,
				      c->rw_mode);
		if (c->count_latched > 3)
			return refuse(w, RW_ECORRUPT, "pit.channels[%u].count_latched: %u, at most 3",
				      i, c->count_latched);
		if (c->read_state > 4 || c->write_state > 4)
			return refuse(w, RW_ECORRUPT,
				      "pit.channels[%u]: read/write state %u/%u, at most 4", i,
				      c->read_state, c->write_state);
		if (c->status_latched > 1 || c->bcd > 1 || c->gate > 1)
			return refuse(w, RW_ECORRUPT, "pit.channels[%u]: a flag is neither 0 nor 1",
				      i);
	}
	if (st->pit.flags & ~(uint32_t)PIT_FLAGS_KNOWN)
		return refuse(w, RW_ECORRUPT, "pit.flags: unknown flags 0x%x", st->pit.flags);
	if (st->clock.flags & ~(uint32_t)CLOCK_FLAGS_KNOWN)
		return refuse(w, RW_ECORRUPT, "clock.flags: unknown flags 0x%x", st->clock.flags);
	return 0;
}

int state_platform_decode(const struct vm *vm, const void *buf, size_t len,
			  struct platform_state *out, char *why, size_t whylen)
{
	struct kvm_ioapic_state *io = &out->ioapic.chip.ioapic;
	const char *part = "pic_master";
	struct rec_reader r;
	struct why w;
	int ret;

	why_init(&w, why, whylen, STATE_KEY_PLATFORM);
	memset(out, 0, sizeof(*out));
	ret = open_record(&r, buf, len, STATE_KIND_PLATFORM, 1, STATE_PLATFORM_VERSION, &w);
	if (ret)
		return ret;
	out->pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
	out->pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
	out->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	get_pic(&r, &out->pic_master.chip.pic);
	PART(&r, part, "pic_slave");
	get_pic(&r, &out->pic_slave.chip.pic);
	PART(&r, part, "ioapic");
	io->base_address = g64(&r);
	io->ioregsel = g32(&r);
	io->id = g32(&r);
	io->irr = g32(&r);
	for (unsigned i = 0; i < KVM_IOAPIC_NUM_PINS; i++)
		io->redirtbl[i].bits = g64(&r);
	PART(&r, part, "pit");
	for (unsigned i = 0; i < 3; i++)
		get_pit_channel(&r, &out->pit.channels[i]);
	out->pit.flags = g32(&r);
	PART(&r, part, "clock");
	out->clock.clock = g64(&r);
	out->clock.flags = g32(&r);
	out->clock.realtime = g64(&r);
	out->clock.host_tsc = g64(&r);
	PART(&r, part, "tagged fields");
	if (skip_tags(&r) || rec_error(&r))
		ret = refuse_reader(&w, &r, part);
	else
		ret = check_platform(vm, out, &w);
	if (ret)
		memset(out, 0, sizeof(*out));
	return ret;
}

int state_platform_check(const struct vm *vm, const struct platform_state *st, char *why,
			 size_t whylen)
{
	struct why w;

	why_init(&w, why, whylen, STATE_KEY_PLATFORM);
	return check_platform(vm, st, &w);
}

/* ----------------------------------------------------------- configuration */

#define CONFIG_KEY "config"

static bool bounded(const char *s, size_t cap)
{
	return strnlen(s, cap) < cap;
}

int state_config_encode_ext(const struct vm_config *cfg, const struct state_config_ext *ext,
			    uint8_t **buf, size_t *len)
{
	struct rec_writer w;
	int ret;

	*buf = NULL;
	*len = 0;
	if (!bounded(cfg->kernel, sizeof(cfg->kernel)) || !bounded(cfg->args, sizeof(cfg->args)) ||
	    !bounded(cfg->serial_out, sizeof(cfg->serial_out)))
		return -EINVAL;
	rec_writer_init(&w, STATE_KIND_CONFIG, STATE_CONFIG_VERSION);
	rec_put_u64(&w, cfg->mem_size);
	rec_put_u32(&w, cfg->ncpus);
	rec_put_u32(&w, (uint32_t)cfg->entry);
	rec_put_str(&w, cfg->kernel);
	rec_put_str(&w, cfg->args);
	rec_put_str(&w, cfg->serial_out);
	rec_put_u8(&w, cfg->serial_in ? 1 : 0);
	ret = 0;
	for (unsigned i = 0; i < cfg->ndisks && i < RW_MAX_DISKS; i++) {
		const struct vm_disk_config *d = &cfg->disks[i];
		uint8_t ro = d->ro ? 1 : 0, engine = (uint8_t)d->engine;

		if (!bounded(d->path, sizeof(d->path)) || !bounded(d->id, sizeof(d->id))) {
			ret = -EINVAL;
			break;
		}
		rec_tag_begin(&w, STATE_CFG_TAG_DISK);
		rec_put_tagged(&w, STATE_CFG_DISK_PATH, d->path, strlen(d->path));
		rec_put_tagged(&w, STATE_CFG_DISK_ID, d->id, strlen(d->id));
		rec_put_tagged(&w, STATE_CFG_DISK_RO, &ro, 1);
		rec_put_tagged(&w, STATE_CFG_DISK_ENGINE, &engine, 1);
		rec_tag_end(&w);
	}
	if (!ret && ext && ext->put)
		ret = ext->put(ext->arg, &w);
	if (!ret)
		ret = rec_take(&w, buf, len);
	rec_writer_free(&w);
	return ret;
}

int state_config_encode(const struct vm_config *cfg, uint8_t **buf, size_t *len)
{
	return state_config_encode_ext(cfg, NULL, buf, len);
}

/* Read a string field, naming it if it is missing, too long or has a NUL. */
static int get_str_field(struct rec_reader *r, struct why *w, const char *name, char *buf,
			 size_t cap)
{
	if (rec_error(r))
		return refuse_reader(w, r, "mem_size, ncpus, entry");
	if (rec_get_str(r, buf, cap))
		return refuse(w, rec_error(r),
			      "%s: truncated, longer than %zu bytes, or holding a NUL", name,
			      cap - 1);
	return 0;
}

/* A string field of a disk: its bytes, no NUL, shorter than cap. */
static int disk_str(struct rec_reader *f, char *buf, size_t cap, const char *name)
{
	size_t n = rec_remaining(f);

	if (n >= cap)
		return rec_fail(f, RW_ECORRUPT, name);
	if (rec_get_bytes(f, buf, n))
		return rec_fail(f, RW_ECORRUPT, name);
	buf[n] = 0;
	if (strlen(buf) != n)
		return rec_fail(f, RW_ECORRUPT, name);
	return 0;
}

/* One STATE_CFG_TAG_DISK field into the next slot of cfg->disks. */
static int parse_disk(struct rec_reader *field, struct vm_config *cfg, struct why *w)
{
	struct vm_disk_config d = { 0 };
	struct rec_reader f;
	uint16_t tag;
	uint8_t v;
	bool have_path = false;
	int ret;

	if (cfg->ndisks >= RW_MAX_DISKS)
		return refuse(w, RW_ECORRUPT, "disks: more than %d", RW_MAX_DISKS);
	while ((ret = rec_next_tag(field, &tag, &f)) > 0) {
		switch (tag) {
		case STATE_CFG_DISK_PATH:
			if (disk_str(&f, d.path, sizeof(d.path), "disk.path"))
				return refuse_reader(w, &f, "disk.path");
			have_path = d.path[0] != 0;
			break;
		case STATE_CFG_DISK_ID:
			if (disk_str(&f, d.id, sizeof(d.id), "disk.id"))
				return refuse_reader(w, &f, "disk.id");
			break;
		case STATE_CFG_DISK_RO:
			if (rec_get_u8(&f, &v) || v > 1)
				return refuse(w, RW_ECORRUPT, "disk %u: ro: not 0 or 1", cfg->ndisks);
			d.ro = v;
			break;
		case STATE_CFG_DISK_ENGINE:
			if (rec_get_u8(&f, &v) || v > DISK_ENGINE_SYNC)
				return refuse(w, RW_ECORRUPT, "disk %u: engine: unknown", cfg->ndisks);
			d.engine = (enum disk_engine)v;
			break;
		default:
			if (rec_tag_unknown(field, tag))
				return refuse(w, RW_EVERSION, "disk %u: tag 0x%04x: unknown critical field",
					      cfg->ndisks, tag);
		}
	}
	if (ret < 0)
		return refuse_reader(w, field, "disk");
	if (!have_path)
		return refuse(w, RW_ECORRUPT, "disk %u: path: missing or empty", cfg->ndisks);
	for (unsigned i = 0; d.id[0] && i < cfg->ndisks; i++)
		if (strcmp(cfg->disks[i].id, d.id) == 0)
			return refuse(w, RW_ECORRUPT, "disk %u: id '%s' used twice", cfg->ndisks, d.id);
	cfg->disks[cfg->ndisks++] = d;
	return 0;
}

static int parse_config(struct rec_reader *r, const struct state_config_ext *ext,
			struct vm_config *cfg, struct why *w)
{
	struct rec_reader field;
	uint32_t ncpus, entry;
	uint8_t serial_in;
	uint16_t tag;
	int ret;

	cfg->mem_size = g64(r);
	ncpus = g32(r);
	entry = g32(r);
	if ((ret = get_str_field(r, w, "kernel", cfg->kernel, sizeof(cfg->kernel))) ||
	    (ret = get_str_field(r, w, "args", cfg->args, sizeof(cfg->args))) ||
	    (ret = get_str_field(r, w, "serial_out", cfg->serial_out, sizeof(cfg->serial_out))))
		return ret;
	serial_in = g8(r);
	if (rec_error(r))
		return refuse_reader(w, r, "serial_in");

	while ((ret = rec_next_tag(r, &tag, &field)) > 0) {
		int took = 0;

		if (tag == STATE_CFG_TAG_DISK) {
			ret = parse_disk(&field, cfg, w);
			if (ret)
				return ret;
			continue;
		}
		if (ext && ext->tag) {
			took = ext->tag(ext->arg, tag, &field);
			if (took < 0) {
				if (!rec_error(r))
					rec_fail(r, took, "tagged field");
				return refuse_reader(w, r, "tagged fields");
			}
		}
		if (!took && rec_tag_unknown(r, tag))
			return refuse(w, RW_EVERSION,
				      "tag 0x%04x: a critical field this build does not know", tag);
		if (rec_error(r))
			return refuse_reader(w, r, "tagged fields");
	}
	if (ret < 0 || rec_expect_end(r))
		return refuse_reader(w, r, "tagged fields");

	if (cfg->mem_size < RW_MEM_MIN || cfg->mem_size > RW_MEM_MAX)
		return refuse(w, RW_ECORRUPT, "mem_size: %llu bytes, outside %llu MiB..%llu GiB",
			      (unsigned long long)cfg->mem_size, RW_MEM_MIN >> 20, RW_MEM_MAX >> 30);
	if (cfg->mem_size % (2 * MiB))
		return refuse(w, RW_ECORRUPT, "mem_size: %llu bytes, not a multiple of 2 MiB",
			      (unsigned long long)cfg->mem_size);
	if (ncpus < 1 || ncpus > RW_MAX_CPUS)
		return refuse(w, RW_ECORRUPT, "ncpus: %u, outside 1..%u", ncpus, RW_MAX_CPUS);
	cfg->ncpus = ncpus;
	if (entry != VM_ENTRY_KERNEL && entry != VM_ENTRY_USER)
		return refuse(w, RW_ECORRUPT, "entry: %u is not a known entry", entry);
	cfg->entry = (enum vm_entry)entry;
	if (serial_in > 1)
		return refuse(w, RW_ECORRUPT, "serial_in: %u, not 0 or 1", serial_in);
	cfg->serial_in = serial_in;
	return 0;
}

int state_config_decode_ext(const void *buf, size_t len, const struct state_config_ext *ext,
			    struct vm_config *out, char *why, size_t whylen)
{
	struct rec_reader r;
	struct why w;
	int ret;

	why_init(&w, why, whylen, CONFIG_KEY);
	config_init(out);
	ret = open_record(&r, buf, len, STATE_KIND_CONFIG, 1, STATE_CONFIG_VERSION, &w);
	if (!ret)
		ret = parse_config(&r, ext, out, &w);
	if (ret)
		config_init(out);
	return ret;
}

int state_config_decode(const void *buf, size_t len, struct vm_config *out, char *why,
			size_t whylen)
{
	return state_config_decode_ext(buf, len, NULL, out, why, whylen);
}

/* ----------------------------------------------------------------- devices */

static bool saves_state(const struct device *dev)
{
	return dev->type && dev->type->ops && dev->type->ops->save;
}

int state_devices_save(struct vm *vm, state_put_fn put, void *arg)
{
	for (struct device *dev = vm->devices; dev; dev = dev->next) {
		const struct device_type *t = dev->type;
		char key[STATE_KEY_MAX];
		struct rec_writer w;
		const uint8_t *data;
		size_t len;
		int ret;

		if (!saves_state(dev))
			continue;
		device_record_key(dev, key, sizeof(key));
		rec_writer_init(&w, t->name, t->state_version);
		ret = t->ops->save(dev, &w);
		if (!ret)
			ret = rec_finish(&w, &data, &len);
		if (ret) {
			rw_error("%s: saving the device's state: %s", key, rw_strerror(ret));
			rec_writer_free(&w);
			return ret;
		}
		ret = put(arg, key, t->state_version, data, len);
		rec_writer_free(&w);
		if (ret)
			return ret;
	}
	return 0;
}

/* Explain a device op's refusal, with the field it named if it named one. */
static int refuse_device(struct why *w, const struct rec_reader *r, int err, const char *op)
{
	if (rec_error(r) && rec_error_field(r))
		return refuse(w, err, "%s: %s", rec_error_field(r), rw_strerror(err));
	if (rec_error(r))
		return refuse(w, err, "payload offset %zu: %s (truncated or malformed)",
			      rec_error_offset(r), rw_strerror(err));
	return refuse(w, err, "%s: %s", op, rw_strerror(err));
}

/* Find and open dev's record; explains every failure. */
static int open_device_record(struct device *dev, state_lookup_fn lookup, void *arg,
			      struct rec_reader *r, struct why *w)
{
	const struct device_type *t = dev->type;
	const void *data = NULL;
	size_t len = 0;
	int ret;

	if (!t->ops->load)
		return refuse(w, -ENOSYS, "record: type \"%s\" saves state but cannot load it",
			      t->name);
	ret = lookup(arg, w->key, &data, &len);
	if (ret == RW_ENOTFOUND)
		return refuse(w, ret, "record: missing (the VM has this device, so the checkpoint "
				      "must hold its state)");
	if (ret)
		return refuse(w, ret, "record: cannot be read: %s", rw_strerror(ret));
	return open_record(r, data, len, t->name, t->min_version, t->state_version, w);
}

int state_devices_validate(struct vm *vm, state_lookup_fn lookup, void *arg, char *why,
			   size_t whylen)
{
	for (struct device *dev = vm->devices; dev; dev = dev->next) {
		char key[STATE_KEY_MAX];
		struct rec_reader r;
		struct why w;
		int ret;

		if (!saves_state(dev))
			continue;
		device_record_key(dev, key, sizeof(key));
		why_init(&w, why, whylen, key);
		ret = open_device_record(dev, lookup, arg, &r, &w);
		if (ret)
			return ret;
		if (dev->type->ops->validate) {
			ret = dev->type->ops->validate(dev, &r, rec_version(&r));
			if (ret)
				return refuse_device(&w, &r, ret, "validate");
		}
	}
	if (why && whylen)
		why[0] = '\0';
	return 0;
}

int state_devices_load(struct vm *vm, state_lookup_fn lookup, void *arg, char *why,
		       size_t whylen)
{
	for (struct device *dev = vm->devices; dev; dev = dev->next) {
		char key[STATE_KEY_MAX];
		struct rec_reader r;
		struct why w;
		int ret;

		if (!saves_state(dev))
			continue;
		device_record_key(dev, key, sizeof(key));
		why_init(&w, why, whylen, key);
		ret = open_device_record(dev, lookup, arg, &r, &w);
		if (ret)
			return ret;
		ret = dev->type->ops->load(dev, &r, rec_version(&r));
		if (ret)
			return refuse_device(&w, &r, ret, "load");
	}
	if (why && whylen)
		why[0] = '\0';
	return 0;
}

/* ------------------------------------------------------------ record names */

/* Index of name in names[0..n), or n. */
static size_t find_name(const char *const names[], size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (names[i] && strcmp(names[i], name) == 0)
			return i;
	return n;
}

static bool is_expected(const struct vm *vm, const char *name)
{
	char key[STATE_KEY_MAX];

	if (strcmp(name, STATE_KEY_PLATFORM) == 0)
		return true;
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (state_vcpu_key(i, key, sizeof(key)) == 0 && strcmp(name, key) == 0)
			return true;
	for (const struct device *dev = vm->devices; dev; dev = dev->next) {
		if (!saves_state(dev))
			continue;
		device_record_key(dev, key, sizeof(key));
		if (strcmp(name, key) == 0)
			return true;
	}
	return false;
}

int state_check_names(const struct vm *vm, const char *const names[], size_t n, char *why,
		      size_t whylen)
{
	char key[STATE_KEY_MAX];
	struct why w;

	why_init(&w, why, whylen, "checkpoint");
	for (size_t i = 0; i < n; i++) {
		if (!names[i])
			return refuse(&w, RW_ECORRUPT, "records[%zu]: no name", i);
		w.key = names[i];
		if (!is_expected(vm, names[i]))
			return refuse(&w, RW_ECORRUPT,
				      "record: not a vCPU, the platform or a device of this VM");
		if (find_name(names, i, names[i]) < i)
			return refuse(&w, RW_ECORRUPT, "record: appears twice");
	}

	for (unsigned i = 0; i < vm->ncpus; i++) {
		state_vcpu_key(i, key, sizeof(key));
		w.key = key;
		if (find_name(names, n, key) == n)
			return refuse(&w, RW_ENOTFOUND, "record: missing");
	}
	w.key = STATE_KEY_PLATFORM;
	if (find_name(names, n, STATE_KEY_PLATFORM) == n)
		return refuse(&w, RW_ENOTFOUND, "record: missing");
	for (const struct device *dev = vm->devices; dev; dev = dev->next) {
		if (!saves_state(dev))
			continue;
		device_record_key(dev, key, sizeof(key));
		w.key = key;
		if (find_name(names, n, key) == n)
			return refuse(&w, RW_ENOTFOUND, "record: missing");
	}
	if (why && whylen)
		why[0] = '\0';
	return 0;
}
