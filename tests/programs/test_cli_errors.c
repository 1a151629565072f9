/*
 * The command line's answers to wrong arguments and unusable inputs: exit
 * status 2 with one line that names the input and what is wrong, nothing
 * left behind, and KVM trouble explained. None of this needs a VM.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "store.h"
#include "testutil.h"

/* Run rewind with argv; expect exit status want and err containing each of needles. */
static void expect(const char *const *argv, int want, const char *n1, const char *n2)
{
	struct cli_result r;

	cr_assert_eq(cli_run(argv, NULL, 60, 0, &r), 0);
	cr_expect_eq(r.status, want, "%s %s: exit %d, want %d; stderr: %s", argv[1], argv[2],
		     r.status, want, r.err);
	if (n1)
		cr_expect(strstr(r.err, n1), "stderr lacks '%s': %s", n1, r.err);
	if (n2)
		cr_expect(strstr(r.err, n2), "stderr lacks '%s': %s", n2, r.err);
	cr_expect_eq(cli_count_lines(r.err), 1, "not one line: %s", r.err);
	cli_result_free(&r);
}

/* An empty store at DIR/store in a new scratch directory tag; its path. */
static const char *empty_store(const char *tag, char *store, size_t len)
{
	const char *dir = rw_test_tmpdir(tag);
	struct store_open_opts so = { .flags = STORE_OPEN_CREATE };
	struct store *s;

	snprintf(store, len, "%s/store", dir);
	cr_assert_eq(store_open(store, &so, &s), 0);
	store_close(s);
	return dir;
}

/* Run rewind as nobody (skipped unless root); expect status and a phrase. */
static void expect_as_nobody(const char *const *argv, int want, const char *needle,
			     const char *absent)
{
	struct cli_result r;

	if (getuid() != 0)
		cr_skip_test("needs root to run rewind as another user");
	cr_assert_eq(cli_run(argv, NULL, 60, 65534, &r), 0);
	cr_expect_eq(r.status, want, "exit %d: %s", r.status, r.err);
	cr_expect(strstr(r.err, needle), "%s", r.err);
	if (absent)
		cr_expect(!strstr(r.err, absent), "%s", r.err);
	cli_result_free(&r);
}

/* An empty file dir/name; its path in buf. */
static const char *touch(const char *dir, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", dir, name);
	FILE *fp = fopen(buf, "w");
	cr_assert_not_null(fp, "create %s", buf);
	fclose(fp);
	return buf;
}

static bool exists(const char *dir, const char *name)
{
	char p[4200];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return access(p, F_OK) == 0;
}

Test(cli_errors, store_that_is_a_file)
{
	char f[4200];
	touch(rw_test_tmpdir("err-file"), "plain", f, sizeof(f));
	const char *a[] = { "rewind", "run", "--kernel", rw_test_guest("hello"), "--store", f, NULL };
	expect(a, 2, f, "not a directory");
}

Test(cli_errors, store_in_a_directory_of_other_files_is_refused)
{
	const char *dir = rw_test_tmpdir("err-busy");
	char f[4200];
	touch(dir, "notes.txt", f, sizeof(f));
	const char *a[] = { "rewind", "run", "--kernel", rw_test_guest("hello"), "--store", dir, NULL };
	expect(a, 2, "not a rewind store and not empty", NULL);
	cr_expect(!exists(dir, "data.mdb"), "a store was put among the user's files");
	cr_expect(!exists(dir, "lock.mdb"), "a store was put among the user's files");
}

Test(cli_errors, disks_that_cannot_be_used)
{
	const char *a[] = { "rewind", "run", "--kernel", rw_test_guest("hello"), "--disk", "", NULL };
	expect(a, 2, "--disk", "empty disk path");
	const char *b[] = { "rewind", "run", "--kernel", rw_test_guest("hello"), "--disk",
			    "/nonexistent/disk.img", NULL };
	expect(b, 2, "/nonexistent/disk.img", "No such file");
}

Test(cli_errors, control_socket_paths)
{
	const char *a[] = { "rewind", "run", "--kernel", rw_test_guest("hello"), "--control",
			    "/nonexistent/dir/ctl.sock", NULL };
	expect(a, 2, "/nonexistent/dir/ctl.sock", "directory does not exist");
	char longp[300];
	memset(longp, 'x', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = 0;
	const char *b[] = { "rewind", "run", "--kernel", rw_test_guest("hello"), "--control", longp,
			    NULL };
	expect(b, 2, "too long", NULL);
	const char *c[] = { "rewind", "ctl", "/nonexistent/ctl.sock", "status", NULL };
	expect(c, 2, "/nonexistent/ctl.sock", "No such file");
}

Test(cli_errors, restore_needs_the_store_and_the_checkpoint)
{
	char missing[4200], store[4200];
	const char *dir = empty_store("err-restore", store, sizeof(store));
	snprintf(missing, sizeof(missing), "%s/none", dir);
	const char *a[] = { "rewind", "restore", "--store", missing, "5", NULL };
	expect(a, 2, missing, "no such store");
	const char *b[] = { "rewind", "restore", "--store", store, "99999", NULL };
	expect(b, 2, "99999", "no such checkpoint");
}

Test(cli_errors, kvm_that_cannot_be_opened_is_explained)
{
	const char *dir = rw_test_tmpdir("err-kvm");
	char store[4200];
	snprintf(store, sizeof(store), "%s/store", dir);
	cr_assert_eq(setenv("REWIND_KVM_DEVICE", "/nonexistent/kvm", 1), 0);
	const char *a[] = { "rewind", "run", "--kernel", rw_test_guest("hello"), "--store", store, NULL };
	expect(a, 1, "/nonexistent/kvm does not exist", "KVM");
	unsetenv("REWIND_KVM_DEVICE");
	cr_expect(access(store, F_OK) != 0, "the failed run left its new store behind");
}

Test(cli_errors, kvm_without_permission_is_explained)
{
	const char *dir = rw_test_tmpdir("err-kvm-perm");
	char dev[4200];
	touch(dir, "kvm", dev, sizeof(dev));
	cr_assert_eq(chmod(dev, 0600), 0);
	cr_assert_eq(chmod(dir, 0755), 0);
	cr_assert_eq(setenv("REWIND_KVM_DEVICE", dev, 1), 0);
	const char *a[] = { "rewind", "run", "--kernel", rw_test_guest("hello"), NULL };
	expect_as_nobody(a, 1, "permission denied", NULL);
	unsetenv("REWIND_KVM_DEVICE");
}

Test(cli_errors, a_store_the_user_cannot_read)
{
	char store[4200];
	const char *dir = empty_store("err-perm", store, sizeof(store));
	cr_assert_eq(chmod(dir, 0755), 0);
	cr_assert_eq(chmod(store, 0700), 0);
	const char *a[] = { "rewind", "ls", "--store", store, NULL };
	expect_as_nobody(a, 2, "permission denied", "not a rewind store");
}

Test(cli_errors, restore_disk_overrides_are_checked)
{
	char store[4200];
	empty_store("err-rdisk", store, sizeof(store));
	const char *a[] = { "rewind", "restore", "--store", store, "1", "--disk", "plain.img", NULL };
	expect(a, 2, "NAME=PATH", NULL);
	const char *b[] = { "rewind", "restore", "--store", store, "1", "--disk",
			    "a=/nonexistent/a.img", NULL };
	expect(b, 2, "/nonexistent/a.img", "No such file");
}
