/*
 * testutil.h - helpers shared by the Criterion tests.
 */
#ifndef RW_TESTS_TESTUTIL_H
#define RW_TESTS_TESTUTIL_H

#include <criterion/criterion.h>
#include <stdlib.h>
#include <unistd.h>

/*
 * Tests that need /dev/kvm call this first. Where KVM is required (CI sets
 * REWIND_REQUIRE_KVM=1) a missing /dev/kvm fails the test; on a user's
 * machine without it the test is skipped with a clear message.
 */
static inline void rw_test_require_kvm(void)
{
	if (access("/dev/kvm", R_OK | W_OK) == 0)
		return;
	if (getenv("REWIND_REQUIRE_KVM"))
		cr_assert_fail("/dev/kvm is missing or not accessible, and REWIND_REQUIRE_KVM is set");
	cr_skip_test("/dev/kvm is missing or not accessible: this test needs KVM");
}

/* Path of a guest image built by the SDK ("hello" -> .../hello.elf). */
static inline const char *rw_test_guest(const char *name)
{
	static __thread char buf[4096];

	snprintf(buf, sizeof(buf), "%s/%s.elf", REWIND_GUEST_DIR, name);
	return buf;
}

/* A fresh scratch directory for one test; the caller removes it. */
static inline char *rw_test_tmpdir(const char *tag)
{
	char tmpl[4096];

	snprintf(tmpl, sizeof(tmpl), "%s/%s-XXXXXX", REWIND_TEST_TMP, tag);
	char *d = mkdtemp(tmpl);
	cr_assert_not_null(d, "mkdtemp %s", tmpl);
	return strdup(d);
}

#endif
