/*
 * vCPU and platform records (ckpt/state.h) on real VMs: captured state
 * survives encode -> decode unchanged, re-encodes to the same bytes, and
 * still runs the guest when applied; every truncation, every flipped byte
 * and each kind of impossible value is refused with the field named.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "test_state_util.h"

#define WHY 512

static uint8_t *encode_vcpu(struct vm *vm, unsigned i, const struct vcpu_state *st, size_t *len)
{
	uint8_t *buf = NULL;

	cr_assert_eq(state_vcpu_encode(vm, i, st, &buf, len), 0);
	cr_assert_not_null(buf);
	return buf;
}

/* Decode and compare with st; then re-encode and compare with buf. */
static void expect_vcpu_roundtrip(struct vm *vm, unsigned i, const struct vcpu_state *st,
				  const uint8_t *buf, size_t len)
{
	struct vcpu_state *out = calloc(1, sizeof(*out));
	char why[WHY];
	uint8_t *again = NULL;
	size_t again_len = 0;
	long diff;

	cr_assert_eq(state_vcpu_decode(vm, i, buf, len, out, why, sizeof(why)), 0, "vcpu/%u: %s",
		     i, why);
	diff = st_first_diff(st, out, sizeof(*st));
	cr_assert_eq(diff, -1, "vcpu/%u: decoded state differs at byte %ld", i, diff);
	cr_assert_eq(state_vcpu_encode(vm, i, out, &again, &again_len), 0);
	cr_assert_eq(again_len, len);
	cr_assert_eq(memcmp(again, buf, len), 0, "vcpu/%u: re-encoding changed the bytes", i);
	free(again);
	free(out);
}

/* Decode buf as vCPU i; expect err and a message naming field. */
static void expect_vcpu_refused(struct vm *vm, unsigned i, const uint8_t *buf, size_t len, int err,
				const char *field, const char *what)
{
	struct vcpu_state *out = calloc(1, sizeof(*out));
	char why[WHY] = "";
	int ret = state_vcpu_decode(vm, i, buf, len, out, why, sizeof(why));

	cr_expect_eq(ret, err, "%s: got %s (%s), want %s", what, rw_errname(ret), why,
		     rw_errname(err));
	cr_expect_not_null(strstr(why, field), "%s: message '%s' does not name '%s'", what, why,
			   field);
	free(out);
}

/* ------------------------------------------------------------- round trip */

Test(state_vcpu, roundtrip_is_exact_and_stable, .timeout = 60)
{
	struct vm *vm = st_make_vm("hello", 1, NULL, NULL);
	struct vcpu_state *st = st_capture_vcpu(vm, 0);
	size_t len;
	uint8_t *buf = encode_vcpu(vm, 0, st, &len);
	char key[STATE_KEY_MAX];
	struct rec_header h;

	cr_assert_eq(rec_peek(buf, len, &h), 0);
	cr_assert_eq(h.kind, rec_kind_id(STATE_KIND_VCPU));
	cr_assert_eq(h.version, STATE_VCPU_VERSION);
	cr_assert_eq(state_vcpu_key(0, key, sizeof(key)), 0);
	cr_assert_str_eq(key, "vcpu/0");
	cr_assert_eq(state_vcpu_key(12, key, 7), -ERANGE);
	expect_vcpu_roundtrip(vm, 0, st, buf, len);

	/* the in-memory check accepts what KVM gave */
	char why[WHY];
	cr_assert_eq(state_vcpu_check(vm, 0, st, why, sizeof(why)), 0, "%s", why);
	free(buf);
	free(st);
	vm_destroy(vm);
}

Test(state_vcpu, smp_both_vcpus_roundtrip_and_run, .timeout = 60)
{
	const char *dir = rw_test_tmpdir("state-smp");
	char path[4200];
	struct vm *vm = st_make_vm("smp", 2, NULL, NULL);
	struct vcpu_state *st[2], *out[2];
	uint8_t *buf[2];
	size_t len[2];
	struct vm_stop_info stop;
	char why[WHY];

	for (unsigned i = 0; i < 2; i++) {
		st[i] = st_capture_vcpu(vm, i);
		buf[i] = encode_vcpu(vm, i, st[i], &len[i]);
		expect_vcpu_roundtrip(vm, i, st[i], buf[i], len[i]);
	}
	/* the two records are not interchangeable */
	expect_vcpu_refused(vm, 1, buf[0], len[0], RW_ECORRUPT, "sregs.apic_base", "vcpu/0 as 1");
	expect_vcpu_refused(vm, 0, buf[1], len[1], RW_ECORRUPT, "sregs.apic_base", "vcpu/1 as 0");
	expect_vcpu_refused(vm, 2, buf[1], len[1], RW_ECORRUPT, "index", "vcpu/1 as 2");
	vm_destroy(vm);

	/* apply both to a fresh VM: smp still runs to the end on both vCPUs */
	snprintf(path, sizeof(path), "%s/smp.txt", dir);
	vm = st_make_vm("smp", 2, NULL, path);
	for (unsigned i = 0; i < 2; i++) {
		const char *step = NULL;

		out[i] = calloc(1, sizeof(*out[i]));
		cr_assert_eq(state_vcpu_decode(vm, i, buf[i], len[i], out[i], why, sizeof(why)), 0,
			     "%s", why);
		cr_assert_eq(vcpu_state_load(vm->vcpus[i], out[i], &step), 0, "vcpu %u: %s", i,
			     step);
	}
	cr_assert_eq(vm_start(vm), 0);
	vm_wait(vm, &stop);
	vm_destroy(vm);
	cr_assert_eq(stop.reason, VM_STOP_EXIT, "%s", stop.msg);
	cr_assert_eq(stop.exit_code, 0);
	cr_assert_not_null(strstr(rw_test_slurp(path, NULL), "smp: all 2 cpus reported"), "%s",
			   rw_test_slurp(path, NULL));
	for (unsigned i = 0; i < 2; i++) {
		free(buf[i]);
		free(st[i]);
		free(out[i]);
	}
}

Test(state_vcpu, record_of_vcpu3_refused_as_vcpu1, .timeout = 60)
{
	struct vm *vm = st_make_vm("smp", 4, NULL, NULL);
	struct vcpu_state *st = st_capture_vcpu(vm, 3);
	size_t len;
	uint8_t *buf = encode_vcpu(vm, 3, st, &len);

	expect_vcpu_roundtrip(vm, 3, st, buf, len);
	expect_vcpu_refused(vm, 1, buf, len, RW_ECORRUPT, "lapic.id", "vcpu/3 as 1");
	/* and the message names the record it was decoded as */
	expect_vcpu_refused(vm, 1, buf, len, RW_ECORRUPT, "vcpu/1: ", "vcpu/3 as 1");
	free(buf);
	free(st);
	vm_destroy(vm);
}

/* The MSRs come back in the VM's order whatever order the record has. */
Test(state_vcpu, msrs_reordered_to_vm_order, .timeout = 60)
{
	struct vm *vm = st_make_vm("hello", 1, NULL, NULL);
	struct vcpu_state *st = st_capture_vcpu(vm, 0);
	struct vcpu_state *rev = malloc(sizeof(*rev)), *out = calloc(1, sizeof(*out));
	size_t len;
	uint8_t *buf;
	char why[WHY];

	cr_assert_gt(st->nr_msrs, 2);
	memcpy(rev, st, sizeof(*rev));
	for (uint32_t i = 0; i < st->nr_msrs; i++)
		rev->msrs[i] = st->msrs[st->nr_msrs - 1 - i];
	buf = encode_vcpu(vm, 0, rev, &len);
	cr_assert_eq(state_vcpu_decode(vm, 0, buf, len, out, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(st_first_diff(st, out, sizeof(*st)), -1);
	free(buf);
	free(rev);
	free(out);
	free(st);
	vm_destroy(vm);
}

/* ------------------------------------------------------------------ apply */

Test(state_vcpu, applied_state_runs_hello_to_completion, .timeout = 60)
{
	const char *dir = rw_test_tmpdir("state-hello");
	char path[4200], why[WHY];
	struct vm *vm = st_make_vm("hello", 1, NULL, NULL);
	struct vcpu_state *st = st_capture_vcpu(vm, 0), *out = calloc(1, sizeof(*out));
	struct platform_state *ps = st_capture_platform(vm), *pout = calloc(1, sizeof(*pout));
	size_t vlen, plen;
	uint8_t *vbuf = encode_vcpu(vm, 0, st, &vlen), *pbuf = NULL;
	const char *step = NULL;
	struct vm_stop_info stop;

	cr_assert_eq(state_platform_encode(vm, ps, &pbuf, &plen), 0);
	vm_destroy(vm);

	/* a second VM takes the first one's state from the records alone */
	snprintf(path, sizeof(path), "%s/hello.txt", dir);
	vm = st_make_vm("hello", 1, NULL, path);
	cr_assert_eq(state_platform_decode(vm, pbuf, plen, pout, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(state_vcpu_decode(vm, 0, vbuf, vlen, out, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(platform_state_load(vm, pout, &step), 0, "%s", step);
	cr_assert_eq(vcpu_state_load(vm->vcpus[0], out, &step), 0, "%s", step);
	cr_assert_eq(vm_start(vm), 0);
	vm_wait(vm, &stop);
	vm_destroy(vm);
	cr_assert_eq(stop.reason, VM_STOP_EXIT, "%s", stop.msg);
	cr_assert_eq(stop.exit_code, 0);
	cr_assert_not_null(strstr(rw_test_slurp(path, NULL), "Hello from the rewind guest SDK!"));
	free(vbuf);
	free(pbuf);
	free(st);
	free(out);
	free(ps);
	free(pout);
}

static unsigned long long counter_checksum(const char *path)
{
	const char *out = rw_test_slurp(path, NULL);
	const char *p = strstr(out, "checksum=0x");

	cr_assert_not_null(p, "no checksum in: %s", out);
	return strtoull(p + 11, NULL, 16);
}

/*
 * Mid-run: pause counter, put every vCPU and the platform through
 * encode -> decode -> load, resume. The result is the undisturbed one.
 */
Test(state_vcpu, mid_run_reload_keeps_counter_checksum, .timeout = 120)
{
	const char *dir = rw_test_tmpdir("state-counter");
	char p1[4200], p2[4200], why[WHY];
	struct vm_stop_info stop;
	struct vm *vm;
	const char *step = NULL;

	snprintf(p1, sizeof(p1), "%s/straight.txt", dir);
	snprintf(p2, sizeof(p2), "%s/reloaded.txt", dir);
	vm = st_make_vm("counter", 2, "n=20000000", p1);
	cr_assert_eq(vm_start(vm), 0);
	vm_wait(vm, &stop);
	vm_destroy(vm);
	cr_assert_eq(stop.reason, VM_STOP_EXIT, "%s", stop.msg);

	vm = st_make_vm("counter", 2, "n=20000000", p2);
	cr_assert_eq(vm_start(vm), 0);
	usleep(150 * 1000);
	cr_assert_eq(vm_pause(vm), 0, "the guest finished before the pause");
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu_state *st = st_capture_vcpu(vm, i), *out = calloc(1, sizeof(*out));
		size_t len;
		uint8_t *buf = encode_vcpu(vm, i, st, &len);

		cr_assert_eq(state_vcpu_decode(vm, i, buf, len, out, why, sizeof(why)), 0, "%s",
			     why);
		cr_assert_eq(st_first_diff(st, out, sizeof(*st)), -1);
		cr_assert_eq(vcpu_state_load(vm->vcpus[i], out, &step), 0, "%s", step);
		free(buf);
		free(st);
		free(out);
	}
	struct platform_state *ps = st_capture_platform(vm), *pout = calloc(1, sizeof(*pout));
	uint8_t *pbuf = NULL;
	size_t plen;
	cr_assert_eq(state_platform_encode(vm, ps, &pbuf, &plen), 0);
	cr_assert_eq(state_platform_decode(vm, pbuf, plen, pout, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(st_first_diff(ps, pout, sizeof(*ps)), -1);
	cr_assert_eq(platform_state_load(vm, pout, &step), 0, "%s", step);
	vm_resume(vm);
	vm_wait(vm, &stop);
	vm_destroy(vm);
	cr_assert_eq(stop.reason, VM_STOP_EXIT, "%s", stop.msg);
	cr_assert_eq(counter_checksum(p2), counter_checksum(p1));
	free(pbuf);
	free(ps);
	free(pout);
}

/* ------------------------------------------------------ structural damage */

Test(state_vcpu, every_truncation_refused, .timeout = 120)
{
	struct vm *vm = st_make_vm("hello", 1, NULL, NULL);
	struct vcpu_state *st = st_capture_vcpu(vm, 0), *out = calloc(1, sizeof(*out));
	size_t len, plen, wlen;
	uint8_t *buf = encode_vcpu(vm, 0, st, &len);
	char why[WHY];

	/* the record cut short: the header's length no longer matches */
	for (size_t cut = 0; cut < len; cut++) {
		int ret = state_vcpu_decode(vm, 0, buf, cut, out, why, sizeof(why));
		cr_assert_eq(ret, RW_ECORRUPT, "cut at %zu: %s", cut, rw_errname(ret));
	}
	/* a consistent record whose payload stops early: every field's bounds */
	plen = len - REC_HEADER_SIZE;
	for (size_t cut = 0; cut < plen; cut++) {
		uint8_t *w = st_wrap(STATE_KIND_VCPU, 1, st_payload(buf), cut, &wlen);
		int ret = state_vcpu_decode(vm, 0, w, wlen, out, why, sizeof(why));

		cr_assert_eq(ret, RW_ECORRUPT, "payload cut at %zu: %s (%s)", cut, rw_errname(ret),
			     why);
		cr_assert_not_null(strstr(why, "vcpu/0: "), "%s", why);
		cr_assert_not_null(strstr(why, ": truncated or malformed at payload offset"), "%s",
				   why);
		free(w);
	}
	free(buf);
	free(st);
	free(out);
	vm_destroy(vm);
}

Test(state_vcpu, flipped_bytes_refused, .timeout = 60)
{
	struct vm *vm = st_make_vm("hello", 1, NULL, NULL);
	struct vcpu_state *st = st_capture_vcpu(vm, 0), *out = calloc(1, sizeof(*out));
	size_t len;
	uint8_t *buf = encode_vcpu(vm, 0, st, &len);
	char why[WHY];

	for (size_t i = 0; i < len; i++) {
		buf[i] ^= 0x01;
		int ret = state_vcpu_decode(vm, 0, buf, len, out, why, sizeof(why));
		buf[i] ^= 0x01;
		if (i >= REC_HEADER_SIZE)
			cr_assert_eq(ret, RW_ECHECKSUM, "byte %zu: %s (%s)", i, rw_errname(ret), why);
		else
			cr_assert_neq(ret, 0, "header byte %zu flipped but accepted", i);
	}
	buf[len - 1] ^= 0x80;
	expect_vcpu_refused(vm, 0, buf, len, RW_ECHECKSUM, "checksum", "last byte");
	free(buf);
	free(st);
	free(out);
	vm_destroy(vm);
}

Test(state_vcpu, versions_and_tags, .timeout = 60)
{
	struct vm *vm = st_make_vm("hello", 1, NULL, NULL);
	struct vcpu_state *st = st_capture_vcpu(vm, 0), *out = calloc(1, sizeof(*out));
	size_t len, plen, wlen;
	uint8_t *buf = encode_vcpu(vm, 0, st, &len), *w, *grown;
	char why[WHY];
	static const uint8_t skippable[] = { 0x42, 0x00, 3, 0, 0, 0, 'a', 'b', 'c' };
	static const uint8_t critical[] = { 0x42, 0x80, 0, 0, 0, 0 };

	plen = len - REC_HEADER_SIZE;
	w = st_wrap(STATE_KIND_VCPU, 2, st_payload(buf), plen, &wlen);
	expect_vcpu_refused(vm, 0, w, wlen, RW_EVERSION, "header: version 2", "version 2");
	free(w);
	w = st_wrap(STATE_KIND_PLATFORM, 1, st_payload(buf), plen, &wlen);
	expect_vcpu_refused(vm, 0, w, wlen, RW_ECORRUPT, "not a \"vcpu\" record", "kind");
	free(w);

	/* a newer writer's skippable field is ignored; a critical one refused */
	grown = malloc(plen + sizeof(skippable));
	memcpy(grown, st_payload(buf), plen);
	memcpy(grown + plen, skippable, sizeof(skippable));
	w = st_wrap(STATE_KIND_VCPU, 1, grown, plen + sizeof(skippable), &wlen);
	cr_assert_eq(state_vcpu_decode(vm, 0, w, wlen, out, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(st_first_diff(st, out, sizeof(*st)), -1);
	free(w);
	memcpy(grown + plen, critical, sizeof(critical));
	w = st_wrap(STATE_KIND_VCPU, 1, grown, plen + sizeof(critical), &wlen);
	expect_vcpu_refused(vm, 0, w, wlen, RW_EVERSION, "critical", "critical tag");
	free(w);
	/* one stray byte after the fields */
	grown[plen] = 0;
	w = st_wrap(STATE_KIND_VCPU, 1, grown, plen + 1, &wlen);
	expect_vcpu_refused(vm, 0, w, wlen, RW_ECORRUPT, "vcpu/0: ", "trailing byte");
	free(w);
	free(grown);
	free(buf);
	free(st);
	free(out);
	vm_destroy(vm);
}

/* The XSAVE blob's size must be this KVM's; the encoder never writes another. */
Test(state_vcpu, xsave_size_mismatch_refused, .timeout = 60)
{
	struct vm *vm = st_make_vm("hello", 1, NULL, NULL);
	struct vcpu_state *st = st_capture_vcpu(vm, 0);
	size_t len, plen, wlen;
	uint8_t *buf = encode_vcpu(vm, 0, st, &len), *p, *w, *dummy = NULL;
	uint32_t xs = vm->xsave_size;
	size_t at;
	const uint32_t sizes[] = { xs + 64, xs - 64, 0, VCPU_XSAVE_MAX + 64 };

	/* the size word sits right before the XSAVE bytes, which end the payload */
	plen = len - REC_HEADER_SIZE;
	at = plen - xs - 4;
	for (unsigned k = 0; k < ARRAY_SIZE(sizes); k++) {
		uint32_t n = sizes[k];
		size_t newlen = at + 4 + n;

		p = calloc(1, newlen);
		memcpy(p, st_payload(buf), at);
		for (unsigned b = 0; b < 4; b++)
			p[at + b] = (uint8_t)(n >> (8 * b));
		memcpy(p + at + 4, st_payload(buf) + at + 4, MIN(n, xs));
		w = st_wrap(STATE_KIND_VCPU, 1, p, newlen, &wlen);
		expect_vcpu_refused(vm, 0, w, wlen, n > VCPU_XSAVE_MAX ? RW_ECORRUPT : RW_ENOKVMCAP,
				    "xsave.size", "xsave size");
		free(w);
		free(p);
	}

	/* a state of the wrong shape is not encoded at all */
	st->xsave_size = xs + 64;
	cr_assert_eq(state_vcpu_encode(vm, 0, st, &dummy, &wlen), -EINVAL);
	st->xsave_size = xs;
	st->nr_msrs = vm->nr_msrs + 1;
	cr_assert_eq(state_vcpu_encode(vm, 0, st, &dummy, &wlen), -EINVAL);
	st->nr_msrs = vm->nr_msrs;
	cr_assert_eq(state_vcpu_encode(vm, 1, st, &dummy, &wlen), -EINVAL);
	cr_assert_null(dummy);
	free(buf);
	free(st);
	vm_destroy(vm);
}

/* ------------------------------------------------------ impossible values */

struct vcpu_case {
	const char *name;
	void (*mutate)(struct vm *vm, struct vcpu_state *st);
	int err;
	const char *field;
};

static void m_rip(struct vm *vm, struct vcpu_state *st) { st->regs.rip = 0x0000800000000000ULL; }
static void m_rflags(struct vm *vm, struct vcpu_state *st) { st->regs.rflags = 0; }
static void m_mp(struct vm *vm, struct vcpu_state *st) { st->mp.mp_state = 99; }
static void m_gdt(struct vm *vm, struct vcpu_state *st) { st->sregs.gdt.base = vm->mem.size; }
static void m_gdt_end(struct vm *vm, struct vcpu_state *st)
{
	st->sregs.gdt.base = vm->mem.size - 8;
	st->sregs.gdt.limit = 0x427;
}
static void m_idt(struct vm *vm, struct vcpu_state *st) { st->sregs.idt.base = 1ULL << 40; }
static void m_idt_noncanon(struct vm *vm, struct vcpu_state *st)
{
	st->sregs.idt.base = 0x0000800000000000ULL;
}
static void m_cr3(struct vm *vm, struct vcpu_state *st) { st->sregs.cr3 = vm->mem.size; }
static void m_cr0(struct vm *vm, struct vcpu_state *st) { st->sregs.cr0 |= 1ULL << 20; }
static void m_cr0_pg(struct vm *vm, struct vcpu_state *st) { st->sregs.cr0 &= ~1ULL; }
static void m_cr4(struct vm *vm, struct vcpu_state *st) { st->sregs.cr4 |= 1ULL << 15; }
static void m_cr4_pae(struct vm *vm, struct vcpu_state *st) { st->sregs.cr4 &= ~(1ULL << 5); }
static void m_efer(struct vm *vm, struct vcpu_state *st) { st->sregs.efer |= 1ULL << 3; }
static void m_efer_lma(struct vm *vm, struct vcpu_state *st) { st->sregs.efer &= ~(1ULL << 10); }
static void m_cr8(struct vm *vm, struct vcpu_state *st) { st->sregs.cr8 = 16; }
static void m_dpl(struct vm *vm, struct vcpu_state *st) { st->sregs.cs.dpl = 4; }
static void m_seg_flag(struct vm *vm, struct vcpu_state *st) { st->sregs.ss.present = 2; }
static void m_fs_base(struct vm *vm, struct vcpu_state *st)
{
	st->sregs.fs.base = 0x0000900000000000ULL;
}
static void m_cs_ld(struct vm *vm, struct vcpu_state *st) { st->sregs.cs.db = 1; }
static void m_apic_addr(struct vm *vm, struct vcpu_state *st)
{
	st->sregs.apic_base = (st->sregs.apic_base & 0xfff) | 0xfec00000ULL;
}
static void m_apic_rsvd(struct vm *vm, struct vcpu_state *st) { st->sregs.apic_base |= 1; }
static void m_apic_bsp(struct vm *vm, struct vcpu_state *st) { st->sregs.apic_base &= ~0x100ULL; }
static void m_sregs_flags(struct vm *vm, struct vcpu_state *st) { st->sregs.flags = 4; }
static void m_xcr0(struct vm *vm, struct vcpu_state *st) { st->xcrs.xcrs[0].value = 0; }
static void m_xcr_index(struct vm *vm, struct vcpu_state *st) { st->xcrs.xcrs[0].xcr = 1; }
static void m_dr7(struct vm *vm, struct vcpu_state *st) { st->dregs.dr7 |= 1ULL << 40; }
static void m_dflags(struct vm *vm, struct vcpu_state *st) { st->dregs.flags = 1; }
static void m_lapic_id(struct vm *vm, struct vcpu_state *st) { st->lapic.regs[0x23] = 5; }
static void m_ev_flags(struct vm *vm, struct vcpu_state *st) { st->events.flags |= 0x80; }
static void m_ev_exc(struct vm *vm, struct vcpu_state *st)
{
	st->events.exception.injected = 1;
	st->events.exception.nr = 40;
}
static void m_ev_nmi(struct vm *vm, struct vcpu_state *st) { st->events.nmi.masked = 7; }
static void m_ev_shadow(struct vm *vm, struct vcpu_state *st) { st->events.interrupt.shadow = 4; }
static void m_ev_sipi(struct vm *vm, struct vcpu_state *st) { st->events.sipi_vector = 0x100; }
static void m_msr_unknown(struct vm *vm, struct vcpu_state *st) { st->msrs[1].index = 0x12345678; }
static void m_msr_twice(struct vm *vm, struct vcpu_state *st)
{
	st->msrs[2].index = st->msrs[1].index;
}
static void m_mxcsr(struct vm *vm, struct vcpu_state *st) { st->xsave[24 + 3] = 0x80; }
static void m_xcomp(struct vm *vm, struct vcpu_state *st) { st->xsave[520 + 7] = 0x80; }

static const struct vcpu_case vcpu_cases[] = {
	{ "rip non-canonical", m_rip, RW_ECORRUPT, "regs.rip" },
	{ "rflags bit 1 clear", m_rflags, RW_ECORRUPT, "regs.rflags" },
	{ "mp_state 99", m_mp, RW_ECORRUPT, "mp_state" },
	{ "gdt outside RAM", m_gdt, RW_ECORRUPT, "sregs.gdt" },
	{ "gdt across the end of RAM", m_gdt_end, RW_ECORRUPT, "sregs.gdt" },
	{ "idt outside RAM", m_idt, RW_ECORRUPT, "sregs.idt" },
	{ "idt non-canonical", m_idt_noncanon, RW_ECORRUPT, "sregs.idt.base" },
	{ "cr3 outside RAM", m_cr3, RW_ECORRUPT, "sregs.cr3" },
	{ "cr0 reserved bit", m_cr0, RW_ECORRUPT, "sregs.cr0" },
	{ "cr0 PG without PE", m_cr0_pg, RW_ECORRUPT, "sregs.cr0" },
	{ "cr4 reserved bit", m_cr4, RW_ECORRUPT, "sregs.cr4" },
	{ "long mode without PAE", m_cr4_pae, RW_ECORRUPT, "sregs.cr4" },
	{ "efer reserved bit", m_efer, RW_ECORRUPT, "sregs.efer" },
	{ "efer LME+PG without LMA", m_efer_lma, RW_ECORRUPT, "sregs.efer" },
	{ "cr8 16", m_cr8, RW_ECORRUPT, "sregs.cr8" },
	{ "cs dpl 4", m_dpl, RW_ECORRUPT, "sregs.cs.dpl" },
	{ "ss present 2", m_seg_flag, RW_ECORRUPT, "sregs.ss" },
	{ "fs base non-canonical", m_fs_base, RW_ECORRUPT, "sregs.fs.base" },
	{ "cs L and D", m_cs_ld, RW_ECORRUPT, "sregs.cs" },
	{ "apic base moved", m_apic_addr, RW_ECORRUPT, "sregs.apic_base" },
	{ "apic base reserved bit", m_apic_rsvd, RW_ECORRUPT, "sregs.apic_base" },
	{ "vcpu 0 without BSP flag", m_apic_bsp, RW_ECORRUPT, "sregs.apic_base" },
	{ "sregs2 unknown flag", m_sregs_flags, RW_ECORRUPT, "sregs.flags" },
	{ "xcr0 without x87", m_xcr0, RW_ECORRUPT, "xcrs.xcr0" },
	{ "xcr index 1", m_xcr_index, RW_ECORRUPT, "xcrs[0].xcr" },
	{ "dr7 upper half", m_dr7, RW_ECORRUPT, "debugregs" },
	{ "debugregs flags", m_dflags, RW_ECORRUPT, "debugregs.flags" },
	{ "lapic id of vcpu 5", m_lapic_id, RW_ECORRUPT, "lapic.id" },
	{ "events unknown flag", m_ev_flags, RW_ECORRUPT, "events.flags" },
	{ "exception vector 40", m_ev_exc, RW_ECORRUPT, "events.exception.nr" },
	{ "nmi masked 7", m_ev_nmi, RW_ECORRUPT, "events.nmi" },
	{ "interrupt shadow 4", m_ev_shadow, RW_ECORRUPT, "events.interrupt.shadow" },
	{ "sipi vector 0x100", m_ev_sipi, RW_ECORRUPT, "events.sipi_vector" },
	{ "unknown msr", m_msr_unknown, RW_ENOKVMCAP, "msrs[1].index" },
	{ "msr twice", m_msr_twice, RW_ECORRUPT, "msrs[2].index" },
	{ "mxcsr reserved bits", m_mxcsr, RW_ECORRUPT, "xsave.mxcsr" },
	{ "xsave compacted", m_xcomp, RW_ECORRUPT, "xsave.xcomp_bv" },
};

Test(state_vcpu, impossible_values_refused_naming_the_field, .timeout = 60)
{
	struct vm *vm = st_make_vm("hello", 1, NULL, NULL);
	struct vcpu_state *st = st_capture_vcpu(vm, 0), *bad = malloc(sizeof(*bad));
	char why[WHY];

	cr_assert_eq(st->xcrs.nr_xcrs, 1u, "the test expects XCR0 to be reported");
	cr_assert_geq(vm->xsave_size, 576u);
	for (unsigned k = 0; k < ARRAY_SIZE(vcpu_cases); k++) {
		const struct vcpu_case *c = &vcpu_cases[k];
		size_t len;
		uint8_t *buf;

		memcpy(bad, st, sizeof(*bad));
		c->mutate(vm, bad);
		buf = encode_vcpu(vm, 0, bad, &len);
		expect_vcpu_refused(vm, 0, buf, len, c->err, c->field, c->name);
		/* the in-memory check agrees */
		cr_expect_eq(state_vcpu_check(vm, 0, bad, why, sizeof(why)), c->err, "%s: check",
			     c->name);
		free(buf);
	}
	free(bad);
	free(st);
	vm_destroy(vm);
}

/* --------------------------------------------------------------- platform */

static void expect_platform_refused(struct vm *vm, const uint8_t *buf, size_t len, int err,
				    const char *field, const char *what)
{
	struct platform_state out;
	char why[WHY] = "";
	int ret = state_platform_decode(vm, buf, len, &out, why, sizeof(why));

	cr_expect_eq(ret, err, "%s: got %s (%s), want %s", what, rw_errname(ret), why,
		     rw_errname(err));
	cr_expect_not_null(strstr(why, field), "%s: message '%s' does not name '%s'", what, why,
			   field);
	cr_expect_not_null(strstr(why, "vm/platform: "), "%s: '%s'", what, why);
}

Test(state_platform, roundtrip_is_exact_and_stable, .timeout = 60)
{
	struct vm *vm = st_make_vm("hello", 1, NULL, NULL);
	struct platform_state *ps = st_capture_platform(vm), *out = calloc(1, sizeof(*out));
	uint8_t *buf = NULL, *again = NULL;
	size_t len, again_len;
	char why[WHY];
	struct rec_header h;

	cr_assert_eq(state_platform_encode(vm, ps, &buf, &len), 0);
	cr_assert_eq(rec_peek(buf, len, &h), 0);
	cr_assert_eq(h.kind, rec_kind_id(STATE_KIND_PLATFORM));
	cr_assert_eq(state_platform_decode(vm, buf, len, out, why, sizeof(why)), 0, "%s", why);
	long diff = st_first_diff(ps, out, sizeof(*ps));
	cr_assert_eq(diff, -1, "decoded platform differs at byte %ld", diff);
	cr_assert_eq(state_platform_encode(vm, out, &again, &again_len), 0);
	cr_assert_eq(again_len, len);
	cr_assert_eq(memcmp(again, buf, len), 0);
	cr_assert_eq(state_platform_check(vm, ps, why, sizeof(why)), 0, "%s", why);
	free(again);
	free(buf);
	free(ps);
	free(out);
	vm_destroy(vm);
}

Test(state_platform, truncation_and_flips_refused, .timeout = 60)
{
	struct vm *vm = st_make_vm("hello", 1, NULL, NULL);
	struct platform_state *ps = st_capture_platform(vm), out;
	uint8_t *buf = NULL, *w;
	size_t len, wlen;
	char why[WHY];

	cr_assert_eq(state_platform_encode(vm, ps, &buf, &len), 0);
	for (size_t cut = 0; cut < len; cut++)
		cr_assert_eq(state_platform_decode(vm, buf, cut, &out, why, sizeof(why)),
			     RW_ECORRUPT, "cut %zu", cut);
	for (size_t cut = 0; cut < len - REC_HEADER_SIZE; cut++) {
		w = st_wrap(STATE_KIND_PLATFORM, 1, st_payload(buf), cut, &wlen);
		cr_assert_eq(state_platform_decode(vm, w, wlen, &out, why, sizeof(why)),
			     RW_ECORRUPT, "payload cut %zu", cut);
		free(w);
	}
	for (size_t i = REC_HEADER_SIZE; i < len; i++) {
		buf[i] ^= 0x10;
		cr_assert_eq(state_platform_decode(vm, buf, len, &out, why, sizeof(why)),
			     RW_ECHECKSUM, "byte %zu", i);
		buf[i] ^= 0x10;
	}
	free(buf);
	free(ps);
	vm_destroy(vm);
}

struct platform_case {
	const char *name;
	void (*mutate)(struct platform_state *st);
	const char *field;
};

static void p_ioapic_base(struct platform_state *st) { st->ioapic.chip.ioapic.base_address = 0xfed00000; }
static void p_ioapic_id(struct platform_state *st) { st->ioapic.chip.ioapic.id = 16; }
static void p_ioapic_irr(struct platform_state *st) { st->ioapic.chip.ioapic.irr = 1u << 24; }
static void p_pit_mode(struct platform_state *st) { st->pit.channels[0].mode = 7; }
static void p_pit_count(struct platform_state *st) { st->pit.channels[2].count = 0x10001; }
static void p_pit_rw(struct platform_state *st) { st->pit.channels[1].rw_mode = 4; }
static void p_pit_state(struct platform_state *st) { st->pit.channels[1].read_state = 9; }
static void p_pit_gate(struct platform_state *st) { st->pit.channels[0].gate = 2; }
static void p_pit_flags(struct platform_state *st) { st->pit.flags = 0x100; }
static void p_pic_base(struct platform_state *st) { st->pic_master.chip.pic.irq_base = 0x21; }
static void p_pic_prio(struct platform_state *st) { st->pic_slave.chip.pic.priority_add = 8; }
static void p_pic_init(struct platform_state *st) { st->pic_slave.chip.pic.init_state = 4; }
static void p_pic_elcr(struct platform_state *st) { st->pic_master.chip.pic.elcr = 0x01; }
static void p_pic_mask(struct platform_state *st) { st->pic_slave.chip.pic.elcr_mask = 0xff; }
static void p_pic_flag(struct platform_state *st) { st->pic_master.chip.pic.auto_eoi = 3; }
static void p_clock(struct platform_state *st) { st->clock.flags = 0x100; }

static const struct platform_case platform_cases[] = {
	{ "ioapic moved", p_ioapic_base, "ioapic.base_address" },
	{ "ioapic id 16", p_ioapic_id, "ioapic.id" },
	{ "ioapic irr pin 24", p_ioapic_irr, "ioapic.irr" },
	{ "pit mode 7", p_pit_mode, "pit.channels[0].mode" },
	{ "pit count 0x10001", p_pit_count, "pit.channels[2].count" },
	{ "pit rw_mode 4", p_pit_rw, "pit.channels[1].rw_mode" },
	{ "pit read state 9", p_pit_state, "pit.channels[1]" },
	{ "pit gate 2", p_pit_gate, "pit.channels[0]" },
	{ "pit flags", p_pit_flags, "pit.flags" },
	{ "pic irq_base 0x21", p_pic_base, "pic_master.irq_base" },
	{ "pic priority 8", p_pic_prio, "pic_slave.priority_add" },
	{ "pic init_state 4", p_pic_init, "pic_slave.init_state" },
	{ "pic elcr outside mask", p_pic_elcr, "pic_master.elcr" },
	{ "pic elcr mask", p_pic_mask, "pic_slave.elcr_mask" },
	{ "pic auto_eoi 3", p_pic_flag, "pic_master" },
	{ "clock flags", p_clock, "clock.flags" },
};

Test(state_platform, impossible_values_refused_naming_the_field, .timeout = 60)
{
	struct vm *vm = st_make_vm("hello", 1, NULL, NULL);
	struct platform_state *ps = st_capture_platform(vm), bad;
	char why[WHY];

	for (unsigned k = 0; k < ARRAY_SIZE(platform_cases); k++) {
		const struct platform_case *c = &platform_cases[k];
		uint8_t *buf = NULL;
		size_t len;

		bad = *ps;
		c->mutate(&bad);
		cr_assert_eq(state_platform_encode(vm, &bad, &buf, &len), 0);
		expect_platform_refused(vm, buf, len, RW_ECORRUPT, c->field, c->name);
		cr_expect_eq(state_platform_check(vm, &bad, why, sizeof(why)), RW_ECORRUPT, "%s",
			     c->name);
		free(buf);
	}
	free(ps);
	vm_destroy(vm);
}

/* ------------------------------------------------- every byte, any value */

/*
 * Each payload byte replaced in turn (with a valid checksum, so the values
 * reach the checks): never a crash, and whatever is accepted passes the
 * in-memory check too.
 */
Test(state_vcpu, any_byte_value_decodes_safely, .timeout = 120)
{
	struct vm *vm = st_make_vm("hello", 1, NULL, NULL);
	struct vcpu_state *st = st_capture_vcpu(vm, 0), *out = calloc(1, sizeof(*out));
	size_t len, plen, wlen;
	uint8_t *buf = encode_vcpu(vm, 0, st, &len), *p;
	char why[WHY];
	unsigned accepted = 0, refused = 0;

	plen = len - REC_HEADER_SIZE;
	p = malloc(plen);
	for (size_t i = 0; i < plen; i++) {
		const uint8_t vals[3] = { 0x00, 0xff, (uint8_t)(st_payload(buf)[i] ^ 0x80) };

		for (unsigned k = 0; k < 3; k++) {
			memcpy(p, st_payload(buf), plen);
			p[i] = vals[k];
			uint8_t *w = st_wrap(STATE_KIND_VCPU, 1, p, plen, &wlen);
			if (state_vcpu_decode(vm, 0, w, wlen, out, why, sizeof(why)) == 0) {
				accepted++;
				cr_assert_eq(state_vcpu_check(vm, 0, out, why, sizeof(why)), 0,
					     "byte %zu = 0x%02x: %s", i, vals[k], why);
			} else {
				refused++;
				cr_assert_not_null(strstr(why, "vcpu/0: "), "%s", why);
			}
			free(w);
		}
	}
	cr_assert_gt(refused, 0);
	cr_assert_gt(accepted, 0);
	free(p);
	free(buf);
	free(st);
	free(out);
	vm_destroy(vm);
}

Test(state_platform, any_byte_value_decodes_safely, .timeout = 60)
{
	struct vm *vm = st_make_vm("hello", 1, NULL, NULL);
	struct platform_state *ps = st_capture_platform(vm), out;
	uint8_t *buf = NULL, *p;
	size_t len, plen, wlen;
	char why[WHY];

	cr_assert_eq(state_platform_encode(vm, ps, &buf, &len), 0);
	plen = len - REC_HEADER_SIZE;
	p = malloc(plen);
	for (size_t i = 0; i < plen; i++) {
		const uint8_t vals[3] = { 0x00, 0xff, (uint8_t)(st_payload(buf)[i] ^ 0x80) };

		for (unsigned k = 0; k < 3; k++) {
			memcpy(p, st_payload(buf), plen);
			p[i] = vals[k];
			uint8_t *w = st_wrap(STATE_KIND_PLATFORM, 1, p, plen, &wlen);
			if (state_platform_decode(vm, w, wlen, &out, why, sizeof(why)) == 0)
				cr_assert_eq(state_platform_check(vm, &out, why, sizeof(why)), 0,
					     "byte %zu: %s", i, why);
			else
				cr_assert_not_null(strstr(why, "vm/platform: "), "%s", why);
			free(w);
		}
	}
	free(p);
	free(buf);
	free(ps);
	vm_destroy(vm);
}
