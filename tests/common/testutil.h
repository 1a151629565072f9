/*
 * testutil.h - helpers shared by the Criterion tests.
 */
#ifndef RW_TESTS_TESTUTIL_H
#define RW_TESTS_TESTUTIL_H

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
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

/*
 * How many times to repeat a loop that checks an invariant over many
 * iterations: n, or n * REWIND_TEST_SCALE / 100 (at least min) when the
 * environment sets that percentage. .ci/with-kvm sets it where KVM itself
 * runs on emulated hardware and every iteration costs far more;
 * what each iteration asserts is unchanged.
 */
static inline unsigned rw_test_iters(unsigned n, unsigned min)
{
	const char *e = getenv("REWIND_TEST_SCALE");
	unsigned long pct;
	char *end;

	if (!e || !*e)
		return n;
	pct = strtoul(e, &end, 10);
	if (*end || pct == 0 || pct >= 100)
		return n;
	n = (unsigned)((unsigned long)n * pct / 100);
	return n < min ? min : n;
}

/* Path of a guest image built by the SDK ("hello" -> .../hello.elf). */
static inline const char *rw_test_guest(const char *name)
{
	static __thread char buf[4096];

	snprintf(buf, sizeof(buf), "%s/%s.elf", REWIND_GUEST_DIR, name);
	return buf;
}

#include <ftw.h>
#include <stdio.h>
#include <string.h>

/*
 * Scratch directories of this test process. Criterion runs every test in its
 * own process, so they are removed when the test's process exits.
 */
static char rw_test_dirs[8][4096];
static unsigned rw_test_ndirs;

static inline int rw_test_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static inline void rw_test_cleanup(void)
{
	if (getenv("REWIND_TEST_KEEP"))
		return;
	for (unsigned i = 0; i < rw_test_ndirs; i++)
		nftw(rw_test_dirs[i], rw_test_rm_one, 16, FTW_DEPTH | FTW_PHYS);
	rw_test_ndirs = 0;
}

/*
 * A fresh scratch directory for one test, removed when the test process
 * exits (set REWIND_TEST_KEEP=1 to keep it). The string lives until then.
 * It is made in the directory the environment's REWIND_TEST_TMP names, else
 * in the build tree's test-tmp (.ci/run points it at the VM's own /tmp when
 * the tests run in .ci/with-kvm: the build tree is shared over 9p there,
 * where a Unix socket cannot be connected to).
 */
static inline const char *rw_test_tmpdir(const char *tag)
{
	cr_assert_lt(rw_test_ndirs, 8, "too many scratch directories in one test");
	char *d = rw_test_dirs[rw_test_ndirs];
	const char *root = getenv("REWIND_TEST_TMP");

	if (!root || !*root)
		root = REWIND_TEST_TMP;
	snprintf(d, sizeof(rw_test_dirs[0]), "%s/%s-XXXXXX", root, tag);
	cr_assert_not_null(mkdtemp(d), "mkdtemp %s", d);
	if (rw_test_ndirs++ == 0)
		atexit(rw_test_cleanup);
	return d;
}

/* A small file (at most 64 KiB) as a string; *len (if len) its length. */
static inline char *rw_test_slurp(const char *path, size_t *len)
{
	static __thread char buf[65536];
	int fd = open(path, O_RDONLY);
	ssize_t n;

	cr_assert_geq(fd, 0, "open %s", path);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	cr_assert_geq(n, 0, "read %s", path);
	buf[n] = 0;
	if (len)
		*len = (size_t)n;
	return buf;
}

#endif
