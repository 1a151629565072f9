/*
 * Periodic checkpoints with retention, through the rewind binary: the
 * schedule keeps going, --keep prunes, the store verifies clean, and the
 * control socket reports the schedule.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "testutil.h"

extern char **environ;

static pid_t spawn_rewind(const char *const argv[], const char *err_path)
{
	posix_spawn_file_actions_t fa;
	pid_t pid;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_eq(posix_spawn(&pid, REWIND_BIN, &fa, NULL, (char *const *)argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	return pid;
}

/* `rewind ctl SOCK status --json`, parsed; NULL while the socket is not up */
static json_t *status(const char *sock)
{
	const char *argv[] = { "rewind", "ctl", sock, "status", "--json", NULL };
	struct cli_result r;
	json_t *j = NULL;

	cr_assert_eq(cli_run(argv, NULL, 30, 0, &r), 0);
	if (r.status == 0)
		j = json_loads(r.out, 0, NULL);
	cli_result_free(&r);
	return j;
}

/* The paths of a scheduled run in a new scratch directory. */
struct sched_run {
	char store[4200], sock[4200], err[4200];
	pid_t pid;
};

/* `rewind run` of a long counter guest, checkpointing every 50ms, keeping keep. */
static void start_scheduled(struct sched_run *r, const char *tag, const char *keep)
{
	const char *dir;

	rw_test_require_kvm();
	dir = rw_test_tmpdir(tag);
	snprintf(r->store, sizeof(r->store), "%s/store", dir);
	snprintf(r->sock, sizeof(r->sock), "%s/ctl", dir);
	snprintf(r->err, sizeof(r->err), "%s/stderr.txt", dir);
	const char *argv[] = { REWIND_BIN, "run", "--kernel", rw_test_guest("counter"), "--args",
			       "n=4000000000", "--no-stdin", "--store", r->store, "--checkpoint-every",
			       "50ms", "--keep", keep, "--control", r->sock, NULL };
	r->pid = spawn_rewind(argv, r->err);
}

/* Poll status until n checkpoints were taken; the last status (caller frees). */
static json_t *wait_checkpoints(const char *sock, json_int_t n)
{
	json_int_t got = 0;
	json_t *st = NULL;

	for (int i = 0; i < 1200 && got < n; i++) {
		usleep(100 * 1000);
		json_decref(st);
		st = status(sock);
		if (st)
			got = json_integer_value(json_object_get(st, "checkpoints"));
	}
	cr_assert_geq(got, n, "only %lld checkpoints were taken", (long long)got);
	return st;
}

/* Ask the VM to quit and expect rewind to exit 0. */
static void quit_rewind(const char *sock, pid_t pid)
{
	const char *quit[] = { "rewind", "ctl", sock, "quit", NULL };
	struct cli_result r;
	int ws;

	cr_assert_eq(cli_run(quit, NULL, 30, 0, &r), 0);
	cli_result_free(&r);
	cr_assert_eq(waitpid(pid, &ws, 0), pid);
	cr_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "rewind exited with %d", ws);
}

Test(schedule, keep_3_of_20_and_verify, .timeout = 300)
{
	struct sched_run run;
	start_scheduled(&run, "sched", "3");
	const char *store = run.store, *sock = run.sock;
	pid_t pid = run.pid;
	json_t *st = wait_checkpoints(sock, 20);
	json_t *sch = json_object_get(st, "schedule");
	cr_assert_not_null(sch, "status has no schedule");
	cr_assert_eq(json_integer_value(json_object_get(sch, "keep")), 3);
	cr_assert_gt(json_real_value(json_object_get(sch, "every_ms")), 49.0);
	cr_assert_gt(json_integer_value(json_object_get(st, "store_bytes")), 0);
	json_decref(st);
	quit_rewind(sock, pid);

	struct cli_result r;
	const char *ls[] = { "rewind", "ls", "--store", store, "--json", NULL };
	cr_assert_eq(cli_run(ls, NULL, 30, 0, &r), 0);
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *l = json_loads(r.out, 0, NULL);
	cr_assert_not_null(l, "ls --json: %s", r.out);
	json_t *arr = json_is_array(l) ? l : json_object_get(l, "checkpoints");
	cr_assert(json_is_array(arr), "ls --json: %s", r.out);
	cr_assert_eq(json_array_size(arr), 3, "%zu checkpoints left, --keep 3", json_array_size(arr));
	json_decref(l);
	cli_result_free(&r);

	const char *verify[] = { "rewind", "verify", "--store", store, NULL };
	cr_assert_eq(cli_run(verify, NULL, 60, 0, &r), 0);
	cr_assert_eq(r.status, 0, "verify: %s%s", r.out, r.err);
	cli_result_free(&r);
	const char *gc[] = { "rewind", "gc", "--store", store, "--dry-run", "--json", NULL };
	cr_assert_eq(cli_run(gc, NULL, 60, 0, &r), 0);
	cr_assert_eq(r.status, 0, "gc: %s%s", r.out, r.err);
	cli_result_free(&r);
}

Test(schedule, flags_need_a_store)
{
	const char *a[] = { "rewind", "run", "--kernel", rw_test_guest("hello"), "--checkpoint-every", "1s", NULL };
	struct cli_result r;
	cr_assert_eq(cli_run(a, NULL, 30, 0, &r), 0);
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "--store"), "%s", r.err);
	cli_result_free(&r);
	const char *b[] = { "rewind", "run", "--kernel", rw_test_guest("hello"), "--store", "/tmp/x",
			    "--checkpoint-every", "soon", NULL };
	cr_assert_eq(cli_run(b, NULL, 30, 0, &r), 0);
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "--checkpoint-every"), "%s", r.err);
	cli_result_free(&r);
}

/* `rewind ctl SOCK ARGS... --json`, parsed; the reply must be ok. */
static json_t *ctl_ok(const char *sock, const char *cmd, const char *arg)
{
	const char *argv[] = { "rewind", "ctl", sock, cmd, arg ? arg : "--json", arg ? "--json" : NULL,
			       NULL };
	struct cli_result r;

	cr_assert_eq(cli_run(argv, NULL, 60, 0, &r), 0);
	cr_assert_eq(r.status, 0, "ctl %s: %s%s", cmd, r.out, r.err);
	json_t *j = json_loads(r.out, 0, NULL);
	cr_assert_not_null(j, "ctl %s --json: %s", cmd, r.out);
	cli_result_free(&r);
	return j;
}

/* The ids and labels `rewind ls --json` lists. */
static json_t *list(const char *store)
{
	const char *ls[] = { "rewind", "ls", "--store", store, "--json", NULL };
	struct cli_result r;

	cr_assert_eq(cli_run(ls, NULL, 30, 0, &r), 0);
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *l = json_loads(r.out, 0, NULL);
	cr_assert_not_null(l, "ls --json: %s", r.out);
	cli_result_free(&r);
	json_t *arr = json_is_array(l) ? l : json_object_get(l, "checkpoints");
	cr_assert(json_is_array(arr), "ls --json");
	json_incref(arr);
	json_decref(l);
	return arr;
}

static bool listed(json_t *arr, json_int_t id)
{
	size_t i;
	json_t *c;

	json_array_foreach(arr, i, c)
		if (json_integer_value(json_object_get(c, "id")) == id)
			return true;
	return false;
}

Test(schedule, retention_keeps_what_the_user_chose, .timeout = 300)
{
	struct sched_run run;
	char id[32];
	start_scheduled(&run, "sched-keep", "2");
	const char *store = run.store, *sock = run.sock;
	pid_t pid = run.pid;
	json_t *st = NULL;

	for (int i = 0; i < 600 && !st; i++) {
		usleep(50 * 1000);
		st = status(sock);
	}
	cr_assert_not_null(st, "the control socket never came up");
	json_decref(st);

	/* one by hand with a label, one by hand without, and a pinned periodic one */
	json_t *a = ctl_ok(sock, "checkpoint", "mine");
	json_int_t labelled = json_integer_value(json_object_get(a, "id"));
	json_decref(a);
	a = ctl_ok(sock, "checkpoint", NULL);
	json_int_t by_hand = json_integer_value(json_object_get(a, "id"));
	json_decref(a);
	/*
	 * Pin the newest periodic checkpoint. Retention (--keep 2) may delete
	 * it between `ls` and `pin` on a slow machine: the pin is then refused
	 * as RW_ENOTFOUND, and the next newest is tried.
	 */
	json_int_t periodic = 0;
	for (int i = 0; i < 200 && !periodic; i++) {
		json_t *l = list(store);
		json_int_t newest = 0;
		size_t k;
		json_t *c;
		json_array_foreach(l, k, c) {
			json_int_t cid = json_integer_value(json_object_get(c, "id"));
			if (cid > by_hand && cid > newest)
				newest = cid;
		}
		json_decref(l);
		if (newest) {
			const char *pin[] = { "rewind", "ctl", sock, "pin", id, "--json", NULL };
			struct cli_result r;

			snprintf(id, sizeof(id), "%lld", (long long)newest);
			cr_assert_eq(cli_run(pin, NULL, 60, 0, &r), 0);
			if (r.status == 0)
				periodic = newest;
			else
				cr_assert(strstr(r.out, "RW_ENOTFOUND") || strstr(r.err, "RW_ENOTFOUND"),
					  "ctl pin %s: %s%s", id, r.out, r.err);
			cli_result_free(&r);
		}
		if (!periodic)
			usleep(50 * 1000);
	}
	cr_assert_gt(periodic, 0, "no periodic checkpoint could be pinned after the manual ones");

	/* many periods later, retention has deleted older periodic ones only */
	json_decref(wait_checkpoints(sock, 25));
	json_t *l = list(store);
	cr_assert(listed(l, labelled), "retention deleted the labelled checkpoint %lld", (long long)labelled);
	cr_assert(listed(l, by_hand), "retention deleted the checkpoint taken by hand %lld", (long long)by_hand);
	cr_assert(listed(l, periodic), "retention deleted the pinned checkpoint %lld", (long long)periodic);
	/* the three kept ones, the 2 most recent periodic ones, maybe the head */
	cr_assert_leq(json_array_size(l), 6, "%zu checkpoints left", json_array_size(l));
	json_decref(l);
	quit_rewind(sock, pid);
}
