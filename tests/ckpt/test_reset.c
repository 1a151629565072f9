/*
 * The fast-reset harness (librewind): resets leave guest memory identical to
 * the root, with and without the hot set, and the fuzzing protocol delivers
 * inputs, "done" and crashes.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "rewind.h"
#include "testutil.h"

static struct rewind_vm *make(const char *guest, const char *args, int no_hot, int ring)
{
	struct rewind_config c = { 0 };
	struct rewind_vm *vm;
	struct rewind_event ev;

	rw_test_require_kvm();
	c.kernel = rw_test_guest(guest);
	c.args = args;
	c.mem_size = 16 << 20;
	c.no_hot_set = no_hot;
	c.dirty_ring = ring;
	c.timeout_us = 60 * 1000000; /* a guest that hangs fails the test, with its iteration */
	cr_assert_eq(rewind_create(&c, &vm), 0);
	cr_assert_eq(rewind_run(vm, &ev), 0);
	cr_assert_eq(ev.kind, REWIND_EV_SNAPSHOT, "first event %d: %s", ev.kind, ev.message);
	return vm;
}

static uint64_t mem_hash(struct rewind_vm *vm)
{
	size_t len;
	const void *m = rewind_memory(vm, &len);

	return XXH3_64bits(m, len);
}

/* Run to "done" and reset, iters times: memory is the root's after each. */
static void reset_loop(struct rewind_vm *vm, uint64_t root, unsigned iters)
{
	struct rewind_event ev;

	for (unsigned i = 0; i < iters; i++) {
		cr_assert_eq(rewind_run(vm, &ev), 0);
		cr_assert_eq(ev.kind, REWIND_EV_DONE, "iteration %u: event %d %s", i, ev.kind, ev.message);
		if (i % 100 == 0)
			cr_assert_neq(mem_hash(vm), root, "iteration %u: the guest wrote nothing", i);
		cr_assert_eq(rewind_reset(vm), 0);
		cr_assert_eq(mem_hash(vm), root, "iteration %u: memory differs from the root after reset", i);
	}
}

static void resets_keep_memory(int no_hot, int ring, unsigned iters)
{
	struct rewind_vm *vm = make("dirtier", "pages=64 snapshot", no_hot, ring);
	struct rewind_stats st;
	uint64_t root = mem_hash(vm);

	iters = rw_test_iters(iters, 100);

	reset_loop(vm, root, iters);
	rewind_get_stats(vm, &st);
	cr_assert_eq(st.resets, iters);
	cr_assert_geq(st.pages_restored, 64, "restored %llu pages, the guest dirties 64",
		      (unsigned long long)st.pages_restored);
	if (!no_hot && !ring)
		cr_assert_geq(st.hot_pages, 64, "the 64 pages written every time were not learned");
	else
		cr_assert_eq(st.hot_pages, 0);
	rewind_destroy(vm);
}

Test(reset, ten_thousand_resets_hot_set, .timeout = 600) { resets_keep_memory(0, 0, 10000); }

/*
 * Resets skip reloading the XCRs, debug registers and LAPIC only when the
 * guest provably left them alone. dirtier computes and makes hypercalls:
 * once its hot set is learned, resets are lean. With sleep=, every
 * iteration enters the SDK kernel, arms the LAPIC timer and takes its
 * interrupt: no reset may skip anything, and each iteration's sleep must
 * still end (the timer works after every reset).
 */
static void lean_resets(const char *args, unsigned iters, bool expect_lean)
{
	struct rewind_vm *vm = make("dirtier", args, 0, 0);
	struct rewind_stats st;
	uint64_t root = mem_hash(vm);

	iters = rw_test_iters(iters, 30);

	reset_loop(vm, root, iters);
	rewind_get_stats(vm, &st);
	cr_assert_leq(st.lapic_kept_resets, st.lean_resets);
	if (expect_lean) {
		cr_assert_geq(st.lean_resets, iters / 2, "only %llu of %u resets were lean",
			      (unsigned long long)st.lean_resets, iters);
		/* PVM has no APIC virtualization: the LAPIC is kept too */
		if (access("/sys/module/kvm_pvm", F_OK) == 0)
			cr_assert_geq(st.lapic_kept_resets, iters / 2, "LAPIC kept in only %llu of %u",
				      (unsigned long long)st.lapic_kept_resets, iters);
	} else {
		cr_assert_eq(st.lean_resets, 0, "%llu resets skipped state the guest changed",
			     (unsigned long long)st.lean_resets);
	}
	rewind_destroy(vm);
}

Test(reset, lean_when_guest_only_computes, .timeout = 120) { lean_resets("pages=8 snapshot", 300, true); }
Test(reset, full_when_guest_uses_kernel_and_timer, .timeout = 120)
{
	lean_resets("pages=8 snapshot sleep=20000", 300, false);
}
Test(reset, resets_without_hot_set, .timeout = 300) { resets_keep_memory(1, 0, 500); }
Test(reset, resets_with_dirty_ring, .timeout = 300) { resets_keep_memory(1, 1, 500); }

Test(reset, fuzz_protocol, .timeout = 120)
{
	struct rewind_vm *vm = make("fuzzme", "", 0, 0);
	struct rewind_event ev;
	static const struct {
		const char *input;
		enum rewind_event_kind kind;
		int64_t status;
		uint64_t code;
	} cases[] = {
		{ "AAAABBBB", REWIND_EV_DONE, 8, 0 },
		{ "xyz", REWIND_EV_DONE, 0, 0 },
		{ "AAAABUG!", REWIND_EV_CRASH, 0, 0xb06 },
		{ "CCCCDDDDEEEE", REWIND_EV_DONE, 12, 0 },
		{ "NULL", REWIND_EV_CRASH, 0, 14 }, /* #PF from the CPU */
		{ "FFFF", REWIND_EV_DONE, 4, 0 },
	};

	for (unsigned round = 0; round < 3; round++) {
		for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			cr_assert_eq(rewind_set_payload(vm, cases[i].input, strlen(cases[i].input)), 0);
			cr_assert_eq(rewind_run(vm, &ev), 0);
			cr_assert_eq(ev.kind, cases[i].kind, "input '%s': event %d (%s)", cases[i].input,
				     ev.kind, ev.message);
			if (ev.kind == REWIND_EV_DONE)
				/* a state leak across resets would add 1000 per input */
				cr_assert_eq(ev.status, cases[i].status, "input '%s': status %lld",
					     cases[i].input, (long long)ev.status);
			else
				cr_assert_eq(ev.code, cases[i].code, "input '%s': code 0x%llx",
					     cases[i].input, (unsigned long long)ev.code);
			cr_assert_eq(rewind_reset(vm), 0);
		}
	}
	rewind_destroy(vm);
}

Test(reset, host_writes_are_undone, .timeout = 60)
{
	struct rewind_vm *vm = make("dirtier", "pages=4 snapshot", 0, 0);
	uint64_t root = mem_hash(vm);
	uint8_t junk[8192];

	memset(junk, 0xee, sizeof(junk));
	cr_assert_eq(rewind_write(vm, 12 << 20, junk, sizeof(junk)), 0);
	cr_assert_neq(mem_hash(vm), root);
	cr_assert_eq(rewind_reset(vm), 0);
	cr_assert_eq(mem_hash(vm), root);
	cr_assert_eq(rewind_read(vm, 12 << 20, junk, 16), 0);
	cr_assert_neq(junk[0], 0xee);
	rewind_destroy(vm);
}

Test(reset, no_root_no_reset)
{
	struct rewind_config c = { 0 };
	struct rewind_vm *vm;

	rw_test_require_kvm();
	c.kernel = rw_test_guest("hello");
	cr_assert_eq(rewind_create(&c, &vm), 0);
	cr_assert_eq(rewind_reset(vm), -ENOENT);
	struct rewind_event ev;
	cr_assert_eq(rewind_run(vm, &ev), 0);
	cr_assert_eq(ev.kind, REWIND_EV_EXIT);
	cr_assert_eq(ev.status, 0);
	rewind_destroy(vm);
	c.kernel = "/nonexistent.elf";
	cr_assert_neq(rewind_create(&c, &vm), 0);
}
