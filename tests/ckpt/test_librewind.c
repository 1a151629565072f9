/*
 * librewind as a harness sees it: only rewind.h, linked against the shared
 * library, which must export the API and nothing else.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
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
