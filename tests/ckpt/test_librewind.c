/*
 * librewind as a harness sees it: only rewind.h, linked against the shared
 * library, which must export the API and nothing else.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rewind.h"
#include "testutil.h"

Test(librewind, shared_library_runs_a_fuzz_loop, .timeout = 120)
{
	struct rewind_config c = { 0 };
	struct rewind_vm *vm;
	struct rewind_event ev;
	unsigned crashes = 0, done = 0;

	rw_test_require_kvm();
	c.kernel = rw_test_guest("fuzzme");
	cr_assert_eq(rewind_create(&c, &vm), 0);
	cr_assert_eq(rewind_run(vm, &ev), 0);
	cr_assert_eq(ev.kind, REWIND_EV_SNAPSHOT);
	for (unsigned i = 0; i < 300; i++) {
		const char *in = i % 3 == 0 ? "BUG!" : "AAAA";
		cr_assert_eq(rewind_set_payload(vm, in, 4), 0);
		cr_assert_eq(rewind_run(vm, &ev), 0);
		if (ev.kind == REWIND_EV_CRASH)
			crashes++;
		else if (ev.kind == REWIND_EV_DONE && ev.status == 4)
			done++;
		cr_assert_eq(rewind_reset(vm), 0);
	}
	cr_assert_eq(crashes, 100);
	cr_assert_eq(done, 200);
	rewind_destroy(vm);
}

Test(librewind, exports_only_its_api)
{
	void *h = dlopen(REWIND_LIBRARY, RTLD_NOW | RTLD_LOCAL);

	cr_assert_not_null(h, "dlopen %s: %s", REWIND_LIBRARY, dlerror());
	cr_assert_not_null(dlsym(h, "rewind_create"));
	cr_assert_not_null(dlsym(h, "rewind_reset"));
	cr_assert_null(dlsym(h, "vm_create"), "internal symbols leak out of librewind");
	cr_assert_null(dlsym(h, "store_open"), "internal symbols leak out of librewind");
	dlclose(h);
}

/* A VM of guest `name` at its root, and a copy of its RAM there. */
static struct rewind_vm *at_root(const char *name, uint64_t timeout_us, uint8_t **root, size_t *len)
{
	struct rewind_config c = { 0 };
	struct rewind_vm *vm;
	struct rewind_event ev;

	rw_test_require_kvm();
	c.kernel = rw_test_guest(name);
	c.timeout_us = timeout_us;
	cr_assert_eq(rewind_create(&c, &vm), 0);
	cr_assert_eq(rewind_run(vm, &ev), 0);
	cr_assert_eq(ev.kind, REWIND_EV_SNAPSHOT);
	const void *mem = rewind_memory(vm, len);
	*root = malloc(*len);
	cr_assert_not_null(*root);
	memcpy(*root, mem, *len);
	return vm;
}

static void run_input(struct rewind_vm *vm, const char *in, struct rewind_event *ev)
{
	cr_assert_eq(rewind_set_payload(vm, in, strlen(in)), 0);
	cr_assert_eq(rewind_run(vm, ev), 0);
}

/* After a reset, guest RAM equals the root, byte for byte. */
static void expect_root(struct rewind_vm *vm, const uint8_t *root, size_t len)
{
	size_t n;
	const uint8_t *mem = rewind_memory(vm, &n);

	cr_assert_eq(n, len);
	cr_assert(memcmp(mem, root, len) == 0, "guest RAM differs from the root after a reset");
}

Test(librewind, hangs_time_out_and_the_next_input_runs, .timeout = 120)
{
	static const char *const hangs[] = { "u", "k", "h" }; /* CPL3, CPL0, hlt with IF=0 */
	struct rewind_event ev;
	uint8_t *root;
	size_t len;
	struct rewind_vm *vm = at_root("hang", 50000, &root, &len);

	/* first set at creation, then changed between runs */
	for (unsigned round = 0; round < 3; round++) {
		if (round)
			cr_assert_eq(rewind_set_timeout(vm, 20000 * round), 0);
		for (unsigned i = 0; i < 3; i++) {
			run_input(vm, hangs[i], &ev);
			cr_assert_eq(ev.kind, REWIND_EV_TIMEOUT, "input '%s': event %d (%s)", hangs[i],
				     ev.kind, ev.message);
			cr_assert_eq(rewind_reset(vm), 0);
			expect_root(vm, root, len);
			run_input(vm, "normal", &ev);
			cr_assert_eq(ev.kind, REWIND_EV_DONE, "after '%s': event %d (%s)", hangs[i],
				     ev.kind, ev.message);
			cr_assert_eq(ev.status, 6);
			cr_assert_eq(rewind_reset(vm), 0);
			expect_root(vm, root, len);
		}
	}
	/* without a timeout the same VM runs normal inputs as before */
	cr_assert_eq(rewind_set_timeout(vm, 0), 0);
	run_input(vm, "abc", &ev);
	cr_assert_eq(ev.kind, REWIND_EV_DONE);
	cr_assert_eq(ev.status, 3);
	rewind_destroy(vm);
	free(root);
}

Test(librewind, crash_details_reach_the_event, .timeout = 60)
{
	struct rewind_event ev;
	uint8_t *root;
	size_t len;
	struct rewind_vm *vm = at_root("fuzzme", 0, &root, &len);

	run_input(vm, "NULL", &ev);
	cr_assert_eq(ev.kind, REWIND_EV_CRASH, "event %d (%s)", ev.kind, ev.message);
	cr_assert_eq(ev.vector, 14, "vector %u", ev.vector);
	cr_assert_eq(ev.code, 14);
	cr_assert_eq(ev.cr2, 0, "CR2 0x%llx", (unsigned long long)ev.cr2);
	cr_assert_eq(ev.error_code & 1, 0, "a read of an unmapped page: P clear");
	cr_assert_eq(ev.error_code & 4, 4, "from user mode: U set");
	cr_assert_neq(ev.pc, 0);
	cr_assert_eq(rewind_reset(vm), 0);
	expect_root(vm, root, len);

	run_input(vm, "BUG!", &ev);
	cr_assert_eq(ev.kind, REWIND_EV_CRASH);
	cr_assert_eq(ev.vector, REWIND_NO_VECTOR);
	cr_assert_eq(ev.code, 0xb06);
	cr_assert_eq(rewind_reset(vm), 0);

	run_input(vm, "AAAA", &ev);
	cr_assert_eq(ev.kind, REWIND_EV_DONE);
	cr_assert_eq(ev.vector, REWIND_NO_VECTOR);
	rewind_destroy(vm);
	free(root);
}

Test(librewind, no_coverage_map_without_announcement, .timeout = 60)
{
	uint8_t *root, *map = NULL;
	size_t len, size = 0;
	struct rewind_vm *vm = at_root("fuzzme", 0, &root, &len);

	cr_assert_eq(rewind_coverage(vm, &map, &size), -ENOENT);
	rewind_destroy(vm);
	free(root);
}

/* Run one input on the tlv target and copy its coverage map into out. */
static void cov_run(struct rewind_vm *vm, const void *in, size_t n, uint8_t *out, size_t size)
{
	struct rewind_event ev;
	uint8_t *map;
	size_t msize;

	cr_assert_eq(rewind_set_payload(vm, in, n), 0);
	cr_assert_eq(rewind_run(vm, &ev), 0);
	cr_assert(ev.kind == REWIND_EV_DONE || ev.kind == REWIND_EV_CRASH, "event %d (%s)", ev.kind,
		  ev.message);
	cr_assert_eq(rewind_coverage(vm, &map, &msize), 0);
	cr_assert_eq(msize, size);
	memcpy(out, map, size);
	cr_assert_eq(rewind_reset(vm), 0);
}

static size_t nonzero(const uint8_t *m, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		k += m[i] != 0;
	return k;
}

Test(librewind, coverage_is_stable_distinct_and_empty_at_the_root, .timeout = 300)
{
	/* INT 1, NAME "ab", CSUM: one path; a NEST with an INT inside: another */
	static const uint8_t a[] = { 0x01, 0x01, 0x05, 0x02, 0x02, 'a', 'b' };
	static const uint8_t b[] = { 0x03, 0x03, 0x01, 0x01, 0x07, 0xff, 0x00 };
	uint8_t *root, *map, *first, *m;
	size_t len, size;
	struct rewind_vm *vm = at_root("tlv", 1000000, &root, &len);

	cr_assert_eq(rewind_coverage(vm, &map, &size), 0, "the tlv target announced no map");
	cr_assert_geq(size, 4096);
	cr_assert_eq(nonzero(map, size), 0, "the map is not empty at the root");
	first = malloc(size);
	m = malloc(size);
	cr_assert(first && m);
	cov_run(vm, a, sizeof(a), first, size);
	cr_assert_gt(nonzero(first, size), 0, "the run recorded no edge");
	cr_assert_eq(nonzero(map, size), 0, "the reset did not clear the map");
	for (unsigned i = 0; i < 1000; i++) {
		cov_run(vm, a, sizeof(a), m, size);
		cr_assert(memcmp(m, first, size) == 0, "run %u of the same input gave another map", i);
	}
	cov_run(vm, b, sizeof(b), m, size);
	cr_assert(memcmp(m, first, size) != 0, "two inputs on different branches gave one map");
	expect_root(vm, root, len);
	rewind_destroy(vm);
	free(first);
	free(m);
	free(root);
}
