/*
 * Small utilities of the base: the one size format, empty directories,
 * helper threads.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "util.h"

Test(util, sizes_read_the_same_everywhere)
{
	static const struct {
		uint64_t b;
		const char *s;
	} t[] = {
		{ 0, "0 B" },
		{ 812, "812 B" },
		{ 1023, "1023 B" },
		{ 1024, "1.0 KiB" },
		{ 8533832, "8.1 MiB" },
		{ 2202009, "2.1 MiB" },
		{ 1395864371, "1.3 GiB" },
		{ UINT64_MAX, "16777216.0 TiB" },
	};
	char buf[32];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		rw_format_size(t[i].b, buf, sizeof(buf));
		cr_expect_str_eq(buf, t[i].s, "%llu bytes", (unsigned long long)t[i].b);
	}
}

Test(util, empty_directories)
{
	const char *dir = rw_test_tmpdir("util-empty");
	char f[4200];

	cr_expect(rw_dir_is_empty(dir));
	snprintf(f, sizeof(f), "%s/x", dir);
	FILE *fp = fopen(f, "w");
	cr_assert_not_null(fp);
	fclose(fp);
	cr_expect(!rw_dir_is_empty(dir));
	cr_expect(!rw_dir_is_empty("/nonexistent/dir"), "a missing directory is not an empty one");
}

struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	bool ran;
};

static void *wait_for_stop(void *arg)
{
	struct waiter *w = arg;

	pthread_mutex_lock(&w->lock);
	w->ran = true;
	while (!w->stop)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

Test(util, helper_threads_start_and_stop, .timeout = 10)
{
	struct waiter w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false };
	pthread_t t;

	cr_assert_eq(rw_thread_start(&t, wait_for_stop, &w), 0);
	rw_thread_stop(t, &w.lock, &w.cond, &w.stop);
	cr_expect(w.stop);
}

Test(util, text_from_files_is_escaped)
{
	static const struct {
		const char *in, *out;
	} t[] = {
		{ "plain label", "plain label" },
		{ "tab\there", "tab\\x09here" },
		{ "\x1b[2J\x1b]0;owned\x07", "\\x1b[2J\\x1b]0;owned\\x07" },
		{ "back\\slash", "back\\x5cslash" },
		{ "caf\xc3\xa9", "caf\xc3\xa9" },                 /* valid UTF-8 stays */
		{ "csi \xc2\x9b" "31m", "csi \\xc2\\x9b31m" },     /* C1 control */
		{ "bad \xff\xfe", "bad \\xff\\xfe" },
		{ "cut \xe2\x82", "cut \\xe2\\x82" },              /* truncated sequence */
		{ "overlong \xc0\xaf", "overlong \\xc0\\xaf" },
		{ "del \x7f", "del \\x7f" },
	};
	char buf[128];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		cr_expect_str_eq(rw_escape(t[i].in, buf, sizeof(buf)), t[i].out, "case %zu", i);
	/* a short buffer is cut, never overrun, and always terminated */
	char small[6];
	cr_expect_str_eq(rw_escape("\x01\x02\x03", small, sizeof(small)), "\\x01");
	cr_expect_str_eq(rw_escape("abcdefgh", small, sizeof(small)), "abcde");
}
