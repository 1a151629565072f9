/*
 * The rewind command line: exact guest output, exit codes, and a one-line
 * error with status 2 for every bad input.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "testutil.h"

#define HELLO_OUTPUT "Hello from the rewind guest SDK!\n"

static struct cli_result run(const char *const *argv)
{
	struct cli_result r;

	cr_assert_eq(cli_run(argv, NULL, 60, 0, &r), 0);
	return r;
}

/* status 2, nothing on stdout, exactly one line on stderr containing want */
static void expect_usage_error(const char *const *argv, const char *want)
{
	struct cli_result r = run(argv);

	cr_expect_eq(r.status, 2, "status %d, stderr: %s", r.status, r.err);
	cr_expect_eq(r.out_len, 0, "stdout not empty: %s", r.out);
	cr_expect_eq(cli_count_lines(r.err), 1, "stderr is not one line: %s", r.err);
	cr_expect(strstr(r.err, want) != NULL, "stderr lacks '%s': %s", want, r.err);
	cli_result_free(&r);
}

Test(cli, hello_output_is_exact)
{
	rw_test_require_kvm();
	const char *argv[] = { "rewind", "run", "--kernel", rw_test_guest("hello"), NULL };
	struct cli_result r = run(argv);

	cr_assert_eq(r.status, 0, "status %d, stderr: %s", r.status, r.err);
	cr_assert_str_eq(r.out, HELLO_OUTPUT);
	cr_assert_eq(r.err_len, 0, "stderr: %s", r.err);
	cli_result_free(&r);
}

Test(cli, hello_user_entry_is_exact)
{
	rw_test_require_kvm();
	const char *argv[] = { "rewind", "run", "--entry", "user", "--kernel", rw_test_guest("hello"), NULL };
	struct cli_result r = run(argv);

	cr_assert_eq(r.status, 0, "status %d, stderr: %s", r.status, r.err);
	cr_assert_str_eq(r.out, HELLO_OUTPUT);
	cli_result_free(&r);
}

Test(cli, serial_out_file)
{
	rw_test_require_kvm();
	const char *dir = rw_test_tmpdir("serial-out");
	char path[4200], buf[256] = { 0 };
	snprintf(path, sizeof(path), "%s/console.txt", dir);
	const char *argv[] = { "rewind", "run", "--serial-out", path, "--kernel", rw_test_guest("hello"), NULL };
	struct cli_result r = run(argv);

	cr_assert_eq(r.status, 0, "stderr: %s", r.err);
	cr_assert_eq(r.out_len, 0);
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_gt(read(fd, buf, sizeof(buf) - 1), 0);
	close(fd);
	cr_assert_str_eq(buf, HELLO_OUTPUT);
	cli_result_free(&r);
}

Test(cli, crash_is_reported)
{
	rw_test_require_kvm();
	const char *argv[] = { "rewind", "run", "--kernel", rw_test_guest("crash"), NULL };
	struct cli_result r = run(argv);

	cr_assert_eq(r.status, 3, "status %d, stderr: %s", r.status, r.err);
	cr_assert(strstr(r.err, "crash") != NULL, "%s", r.err);
	cr_assert(strstr(r.err, "vector 14") != NULL, "%s", r.err);
	cr_assert(strstr(r.err, "RIP 0x") != NULL, "%s", r.err);
	cli_result_free(&r);
}

Test(cli, echo_reads_stdin_with_interrupts)
{
	rw_test_require_kvm();
	const char *argv[] = { "rewind", "run", "--kernel", rw_test_guest("echo"), NULL };
	struct cli_result r;

	cr_assert_eq(cli_run(argv, "ping over the uart\n", 60, 0, &r), 0);
	cr_assert_eq(r.status, 0, "status %d, stderr: %s", r.status, r.err);
	cr_assert(strstr(r.out, "ping over the uart") != NULL, "stdout: %s", r.out);
	cli_result_free(&r);
}

Test(cli, version_and_help)
{
	const char *v[] = { "rewind", "--version", NULL };
	struct cli_result r = run(v);
	cr_assert_eq(r.status, 0);
	cr_assert(strncmp(r.out, "rewind ", 7) == 0);
	cli_result_free(&r);

	const char *h[] = { "rewind", "--help", NULL };
	r = run(h);
	cr_assert_eq(r.status, 0);
	cr_assert(strstr(r.out, "--kernel") != NULL);
	cli_result_free(&r);
}

Test(cli, bad_flag)
{
	const char *a[] = { "rewind", "run", "--kernel", "/nonexistent", "--frobnicate", NULL };
	expect_usage_error(a, "--frobnicate");
	const char *b[] = { "rewind", "frobnicate", NULL };
	expect_usage_error(b, "frobnicate");
	const char *c[] = { "rewind", "run", "--kernel", NULL };
	expect_usage_error(c, "--kernel");
	const char *d[] = { "rewind", "run", NULL };
	expect_usage_error(d, "--kernel");
	const char *e[] = { "rewind", "run", "--entry", "sideways", "--kernel", "x", NULL };
	expect_usage_error(e, "--entry");
}

Test(cli, bad_sizes)
{
	const char *g = rw_test_guest("hello");
	const char *a[] = { "rewind", "run", "--mem", "8M", "--kernel", g, NULL };
	expect_usage_error(a, "--mem");
	const char *b[] = { "rewind", "run", "--mem", "65G", "--kernel", g, NULL };
	expect_usage_error(b, "--mem");
	const char *c[] = { "rewind", "run", "--mem", "12Q", "--kernel", g, NULL };
	expect_usage_error(c, "--mem");
	const char *d[] = { "rewind", "run", "--cpus", "0", "--kernel", g, NULL };
	expect_usage_error(d, "--cpus");
	const char *e[] = { "rewind", "run", "--cpus", "65", "--kernel", g, NULL };
	expect_usage_error(e, "--cpus");
	const char *f[] = { "rewind", "run", "--cpus", "two", "--kernel", g, NULL };
	expect_usage_error(f, "--cpus");
}

Test(cli, missing_kernel_file)
{
	const char *a[] = { "rewind", "run", "--kernel", "/nonexistent/kernel.elf", NULL };
	expect_usage_error(a, "/nonexistent/kernel.elf");
}

Test(cli, unreadable_kernel_file)
{
	const char *dir = rw_test_tmpdir("unreadable");
	char path[4200];
	snprintf(path, sizeof(path), "%s/secret.elf", dir);
	int fd = open(path, O_CREAT | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	chmod(dir, 0755);
	const char *a[] = { "rewind", "run", "--kernel", path, NULL };
	struct cli_result r;
	/* as root every file is readable: run as nobody */
	cr_assert_eq(cli_run(a, NULL, 30, getuid() == 0 ? 65534 : 0, &r), 0);
	cr_expect_eq(r.status, 2, "status %d: %s", r.status, r.err);
	cr_expect_eq(cli_count_lines(r.err), 1, "%s", r.err);
	cr_expect(strstr(r.err, "secret.elf") && strstr(r.err, "ermission"), "%s", r.err);
	cli_result_free(&r);
}

Test(cli, not_a_kernel)
{
	rw_test_require_kvm();
	const char *dir = rw_test_tmpdir("notkernel");
	char path[4200];
	snprintf(path, sizeof(path), "%s/notes.txt", dir);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f, "this is not an ELF file\n");
	fclose(f);
	const char *a[] = { "rewind", "run", "--kernel", path, NULL };
	expect_usage_error(a, "notes.txt");
	/* a directory is not a kernel either */
	const char *b[] = { "rewind", "run", "--kernel", dir, NULL };
	expect_usage_error(b, dir);
	/* a truncated ELF: the first 100 bytes of a real image */
	char trunc[4200];
	snprintf(trunc, sizeof(trunc), "%s/trunc.elf", dir);
	int in = open(rw_test_guest("hello"), O_RDONLY), out = open(trunc, O_CREAT | O_WRONLY, 0644);
	char buf[100];
	cr_assert_eq(read(in, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	cr_assert_eq(write(out, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	close(in);
	close(out);
	const char *c[] = { "rewind", "run", "--kernel", trunc, NULL };
	expect_usage_error(c, "trunc.elf");
}

Test(cli, memory_above_the_pci_hole)
{
	rw_test_require_kvm();
	/* 5 GiB: 3 GiB below the hole, 2 GiB from 4 GiB up */
	const char *argv[] = { "rewind", "run", "--mem", "5G", "--kernel", rw_test_guest("hello"), NULL };
	struct cli_result r = run(argv);

	cr_assert_eq(r.status, 0, "status %d, stderr: %s", r.status, r.err);
	cr_assert_str_eq(r.out, HELLO_OUTPUT);
	cli_result_free(&r);
}
