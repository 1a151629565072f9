/*
 * test_cli_store.c - the store subcommands, run through cli_store_main() in
 * a child process with stdout and stderr captured.
 */
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "cli_store.h"
#include "helpers.h"

STORE_SUITE(store_cli, "store-cli", 60);

struct run {
	int status;
	char out[65536];
	char err[8192];
};

static void slurp_fd(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	ssize_t r;

	lseek(fd, 0, SEEK_SET);
	while (n + 1 < cap && (r = read(fd, buf + n, cap - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = 0;
}

/* Run `rewind <args...>` (args[0] is the subcommand), NULL-terminated. */
static void run(struct run *r, const char *const *args)
{
	char op[4200], ep[4200];
	int argc = 0;

	while (args[argc])
		argc++;
	snprintf(op, sizeof(op), "%s/out.txt", tmp);
	snprintf(ep, sizeof(ep), "%s/err.txt", tmp);
	int ofd = open(op, O_RDWR | O_CREAT | O_TRUNC, 0600);
	int efd = open(ep, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert(ofd >= 0 && efd >= 0);
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		char **argv = calloc((size_t)argc + 1, sizeof(char *));

		for (int i = 0; i < argc; i++)
			argv[i] = strdup(args[i]);
		dup2(ofd, 1);
		dup2(efd, 2);
		int st = cli_store_main(argv[0], argc, argv);
		fflush(stdout);
		fflush(stderr);
		_exit(st);
	}
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st), "cli crashed");
	r->status = WEXITSTATUS(st);
	slurp_fd(ofd, r->out, sizeof(r->out));
	slurp_fd(efd, r->err, sizeof(r->err));
	close(ofd);
	close(efd);
}

static json_t *run_json(const char *const *args)
{
	struct run r;
	json_error_t je;

	run(&r, args);
	cr_assert_eq(r.status, 0, "%s failed (%d): %s", args[0], r.status, r.err);
	json_t *j = json_loads(r.out, 0, &je);
	cr_assert_not_null(j, "%s --json printed no JSON: %s (%s)", args[0], je.text, r.out);
	/* exactly one line */
	cr_assert_eq(strchr(r.out, '\n'), r.out + strlen(r.out) - 1);
	return j;
}

/* Two checkpoints: 1 with memory, a disk, records; 2 a child of 1. */
static void populate(void)
{
	struct store *s = open_store(dir, 0);
	struct store_ckpt *c;
	uint8_t buf[4 * PG];
	uint64_t a, b;

	for (int i = 0; i < 4; i++)
		page_fill(buf + i * PG, 10 + (uint64_t)i);
	cr_assert_eq(store_ckpt_begin(s, 0, &c), 0);
	cr_assert_eq(store_ckpt_set_size(c, NULL, 256), 0);
	cr_assert_eq(store_ckpt_set_size(c, "data", 64), 0);
	cr_assert_eq(store_ckpt_set_label(c, "boot"), 0);
	cr_assert_eq(store_ckpt_add_range(c, NULL, 0, buf, 4), 0);
	cr_assert_eq(store_ckpt_add_range(c, "data", 8, buf, 2), 0);
	cr_assert_eq(store_ckpt_put_record(c, "vcpu/0", 2, "abcdef", 6), 0);
	cr_assert_eq(store_ckpt_put_record(c, "dev/serial/ttyS0", 1, "xy", 2), 0);
	cr_assert_eq(store_ckpt_commit(c, &a, NULL), 0);
	cr_assert_eq(store_ckpt_begin(s, a, &c), 0);
	page_fill(buf, 99);
	cr_assert_eq(store_ckpt_add_range(c, NULL, 100, buf, 1), 0);
	cr_assert_eq(store_ckpt_put_record(c, "vcpu/0", 2, "abcdeg", 6), 0);
	cr_assert_eq(store_ckpt_put_record(c, "vcpu/1", 2, "q", 1), 0);
	cr_assert_eq(store_ckpt_commit(c, &b, NULL), 0);
	store_close(s);
}

Test(store_cli, ls_and_inspect)
{
	populate();
	json_t *j = run_json((const char *[]){ "ls", "--store", dir, "--json", NULL });
	json_t *arr = json_object_get(j, "checkpoints");
	cr_assert_eq(json_array_size(arr), 2);
	json_t *c1 = json_array_get(arr, 0), *c2 = json_array_get(arr, 1);
	cr_assert_eq(json_integer_value(json_object_get(c1, "id")), 1);
	cr_assert(json_is_null(json_object_get(c1, "parent")));
	cr_assert_eq(json_integer_value(json_object_get(c2, "parent")), 1);
	cr_assert_str_eq(json_string_value(json_object_get(c1, "label")), "boot");
	json_decref(j);

	j = run_json((const char *[]){ "inspect", "2", "--store", dir, "--json", NULL });
	json_t *recs = json_object_get(j, "records");
	cr_assert_eq(json_array_size(recs), 2);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(recs, 0), "name")),
			 "vcpu/0");
	cr_assert_eq(json_integer_value(json_object_get(json_array_get(recs, 0), "size")), 6);
	cr_assert_eq(json_integer_value(json_object_get(json_array_get(recs, 0), "version")), 2);
	json_t *mem = json_object_get(j, "memory");
	cr_assert_eq(json_integer_value(json_object_get(mem, "pages")), 256);
	cr_assert_eq(json_integer_value(json_object_get(mem, "present")), 5);
	cr_assert_eq(json_array_size(json_object_get(j, "disks")), 1);
	cr_assert_eq(json_integer_value(json_object_get(j, "exclusive_chunks")), 1 + 2);
	json_decref(j);

	struct run r;
	run(&r, (const char *[]){ "ls", "--store", dir, NULL });
	cr_assert_eq(r.status, 0);
	cr_assert(strstr(r.out, "LABEL") && strstr(r.out, "boot"), "%s", r.out);
	run(&r, (const char *[]){ "inspect", "--store", dir, "1", NULL });
	cr_assert_eq(r.status, 0);
	cr_assert(strstr(r.out, "dev/serial/ttyS0"), "%s", r.out);
	cr_assert(strstr(r.out, "disk data"), "%s", r.out);
}

Test(store_cli, diff_rm_stats_verify_gc)
{
	populate();
	json_t *j = run_json((const char *[]){ "diff", "--store", dir, "1", "2", "--json", NULL });
	json_t *maps = json_object_get(j, "maps");
	json_t *m0 = json_array_get(maps, 0);
	cr_assert_str_eq(json_string_value(json_object_get(m0, "name")), "memory");
	cr_assert_eq(json_integer_value(json_object_get(m0, "changed_pages")), 1);
	json_t *r0 = json_array_get(json_object_get(m0, "ranges"), 0);
	cr_assert_eq(json_integer_value(json_array_get(r0, 0)), 100);
	json_t *recs = json_object_get(j, "records");
	cr_assert_eq(json_array_size(json_object_get(recs, "added")), 1);
	cr_assert_eq(json_array_size(json_object_get(recs, "removed")), 1);
	cr_assert_eq(json_array_size(json_object_get(recs, "changed")), 1);
	json_decref(j);

	j = run_json((const char *[]){ "stats", "--store", dir, "--json", NULL });
	cr_assert_eq(json_integer_value(json_object_get(j, "checkpoints")), 2);
	cr_assert_eq(json_integer_value(json_object_get(j, "page_chunks")), 5);
	json_t *per = json_object_get(j, "per_checkpoint");
	cr_assert_eq(json_array_size(per), 2);
	cr_assert_eq(json_integer_value(json_object_get(json_array_get(per, 1), "unique_chunks")),
		     3);
	json_decref(j);

	j = run_json((const char *[]){ "verify", "--store", dir, "--json", NULL });
	cr_assert(json_is_true(json_object_get(j, "ok")));
	cr_assert_eq(json_array_size(json_object_get(j, "problems")), 0);
	json_decref(j);

	j = run_json((const char *[]){ "rm", "--store", dir, "1", "--json", NULL });
	cr_assert_eq(json_array_size(json_object_get(j, "deleted")), 1);
	json_decref(j);
	j = run_json((const char *[]){ "gc", "--store", dir, "--json", NULL });
	cr_assert_eq(json_integer_value(json_object_get(j, "chunks_freed")), 0);
	cr_assert_eq(json_integer_value(json_object_get(j, "refs_fixed")), 0);
	json_decref(j);

	struct run r;
	run(&r, (const char *[]){ "verify", "--store", dir, NULL });
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "0 problems"), "%s", r.out);

	/* a leak makes verify fail with status 1 and name the problem */
	struct store *s = open_store(dir, 0);
	uint8_t pg[PG];
	struct store_hash h;
	page_fill(pg, 99);
	store_test_page_key(s, pg, &h);
	cr_assert_eq(store_test_ref(s, &h, 1), 0);
	store_close(s);
	run(&r, (const char *[]){ "verify", "--store", dir, NULL });
	cr_assert_eq(r.status, 1);
	cr_assert(strstr(r.out, "refcount"), "%s", r.out);
	cr_assert(strstr(r.out, "affects checkpoint 2"), "%s", r.out);
	cr_assert(strstr(r.err, "1 problem found"), "%s", r.err);
	run(&r, (const char *[]){ "gc", "--store", dir, NULL });
	cr_assert_eq(r.status, 0);
	run(&r, (const char *[]){ "verify", "--store", dir, NULL });
	cr_assert_eq(r.status, 0);
}

Test(store_cli, export_import)
{
	char *file, *other;

	populate();
	cr_assert(asprintf(&file, "%s/c2.rwx", tmp) > 0);
	cr_assert(asprintf(&other, "%s/other", tmp) > 0);
	json_t *j = run_json((const char *[]){ "export", "--store", dir, "2", file, "--json",
					       NULL });
	cr_assert_gt(json_integer_value(json_object_get(j, "chunks")), 5);
	json_decref(j);
	j = run_json((const char *[]){ "import", "--store", other, file, "--json", NULL });
	cr_assert_eq(json_integer_value(json_object_get(j, "id")), 2, "the import renumbered");
	cr_assert_eq(json_integer_value(json_object_get(j, "original_id")), 2);
	json_decref(j);
	j = run_json((const char *[]){ "inspect", "--store", other, "2", "--json", NULL });
	cr_assert_eq(json_array_size(json_object_get(j, "records")), 2);
	json_decref(j);

	/* a truncated file: one line saying where, status 1, store unchanged */
	struct run r;
	cr_assert_eq(truncate(file, 100), 0);
	run(&r, (const char *[]){ "import", "--store", other, file, NULL });
	cr_assert_eq(r.status, 1);
	cr_assert(strstr(r.err, "offset"), "%s", r.err);
	cr_assert(strstr(r.err, "truncated"), "%s", r.err);
	cr_assert_eq(strchr(r.err, '\n'), r.err + strlen(r.err) - 1, "%s", r.err);
	j = run_json((const char *[]){ "ls", "--store", other, "--json", NULL });
	cr_assert_eq(json_array_size(json_object_get(j, "checkpoints")), 1);
	json_decref(j);
	free(file);
	free(other);
}

Test(store_cli, errors)
{
	struct run r;
	char *file;

	/* no store there: a wrong argument */
	run(&r, (const char *[]){ "ls", "--store", dir, NULL });
	cr_assert_eq(r.status, 2, "%s", r.err);
	cr_assert(strstr(r.err, "no such store"), "%s", r.err);
	cr_assert_eq(access(dir, F_OK), -1, "ls created the store");
	populate();
	/* missing id */
	run(&r, (const char *[]){ "inspect", "--store", dir, "42", NULL });
	cr_assert_eq(r.status, 1);
	cr_assert(strstr(r.err, "no checkpoint 42"), "%s", r.err);
	run(&r, (const char *[]){ "rm", "--store", dir, "42", NULL });
	cr_assert_eq(r.status, 1);
	cr_assert(asprintf(&file, "%s/x.rwx", tmp) > 0);
	run(&r, (const char *[]){ "export", "--store", dir, "42", file, NULL });
	cr_assert_eq(r.status, 1);
	cr_assert(strstr(r.err, "no checkpoint 42"), "%s", r.err);
	free(file);
	/* usage errors */
	run(&r, (const char *[]){ "ls", "--store", dir, "--bogus", NULL });
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "--bogus"), "%s", r.err);
	run(&r, (const char *[]){ "ls", NULL });
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "--store"), "%s", r.err);
	run(&r, (const char *[]){ "inspect", "--store", dir, NULL });
	cr_assert_eq(r.status, 2);
	run(&r, (const char *[]){ "inspect", "--store", dir, "abc", NULL });
	cr_assert_eq(r.status, 2);
	run(&r, (const char *[]){ "diff", "--store", dir, "1", "2", "3", NULL });
	cr_assert_eq(r.status, 2);
	run(&r, (const char *[]){ "ls", "--store", dir, "--dry-run", NULL });
	cr_assert_eq(r.status, 2);
	run(&r, (const char *[]){ "ls", "--store", NULL });
	cr_assert_eq(r.status, 2);
	/* a store from a newer format */
	struct store *s = open_store(dir, 0);
	cr_assert_eq(store_test_set_format(s, STORE_FORMAT_VERSION + 1), 0);
	store_close(s);
	run(&r, (const char *[]){ "ls", "--store", dir, NULL });
	cr_assert_eq(r.status, 1);
	char want[64];

	snprintf(want, sizeof(want), "format version %u", STORE_FORMAT_VERSION + 1);
	cr_assert(strstr(r.err, want), "%s", r.err);
	cr_assert_eq(strchr(r.err, '\n'), r.err + strlen(r.err) - 1, "%s", r.err);
	cr_assert(cli_store_has("verify") && !cli_store_has("run"));
}

Test(store_cli, wrong_paths_are_usage_errors_and_leave_nothing)
{
	struct run r;
	char plain[4200], other[4200], newstore[4200], bad[4200], missing[4200], out[4200];

	snprintf(plain, sizeof(plain), "%s/plain", tmp);
	snprintf(other, sizeof(other), "%s/other", tmp);
	snprintf(newstore, sizeof(newstore), "%s/new", tmp);
	snprintf(bad, sizeof(bad), "%s/bad.rwx", tmp);
	snprintf(missing, sizeof(missing), "%s/none.rwx", tmp);
	snprintf(out, sizeof(out), "%s/nodir/x.rwx", tmp);
	FILE *fp = fopen(plain, "w");
	cr_assert_not_null(fp);
	fputs("not a store", fp);
	fclose(fp);
	cr_assert_eq(mkdir(other, 0700), 0);
	fp = fopen(bad, "w");
	cr_assert_not_null(fp);
	fputs("RWSTOREX but nothing else", fp);
	fclose(fp);

	run(&r, (const char *[]){ "ls", "--store", plain, NULL });
	cr_assert_eq(r.status, 2, "%s", r.err);
	cr_assert(strstr(r.err, "not a directory"), "%s", r.err);
	run(&r, (const char *[]){ "ls", "--store", other, NULL });
	cr_assert_eq(r.status, 2, "%s", r.err);
	cr_assert(strstr(r.err, "not a rewind store"), "%s", r.err);

	/* import: a missing file, a directory, a store among other files */
	run(&r, (const char *[]){ "import", "--store", newstore, missing, NULL });
	cr_assert_eq(r.status, 2, "%s", r.err);
	cr_assert(strstr(r.err, missing), "%s", r.err);
	run(&r, (const char *[]){ "import", "--store", newstore, other, NULL });
	cr_assert_eq(r.status, 2, "%s", r.err);
	cr_assert(strstr(r.err, "a directory"), "%s", r.err);
	cr_assert_eq(access(newstore, F_OK), -1, "a refused import created the store");
	fp = fopen(plain, "a");
	fclose(fp);
	char busy[4200];
	snprintf(busy, sizeof(busy), "%s/busy", tmp);
	cr_assert_eq(mkdir(busy, 0700), 0);
	snprintf(other, sizeof(other), "%s/busy/notes.txt", tmp);
	fp = fopen(other, "w");
	cr_assert_not_null(fp);
	fclose(fp);
	run(&r, (const char *[]){ "import", "--store", busy, bad, NULL });
	cr_assert_eq(r.status, 2, "%s", r.err);
	cr_assert(strstr(r.err, "not empty"), "%s", r.err);
	snprintf(other, sizeof(other), "%s/busy/data.mdb", tmp);
	cr_assert_eq(access(other, F_OK), -1, "a store was put among the user's files");

	/* a damaged file: the import fails and its new store is gone */
	run(&r, (const char *[]){ "import", "--store", newstore, bad, NULL });
	cr_assert_eq(r.status, 1, "%s", r.err);
	cr_assert_eq(access(newstore, F_OK), -1, "the failed import left its new store behind");

	/* export into a directory that does not exist */
	populate();
	run(&r, (const char *[]){ "export", "--store", dir, "1", out, NULL });
	cr_assert_eq(r.status, 2, "%s", r.err);
	cr_assert(strstr(r.err, "directory does not exist"), "%s", r.err);
}

Test(store_cli, names_from_the_store_are_printed_escaped)
{
	struct store *s = open_store(dir, 0);
	struct store_ckpt *c;
	uint8_t buf[PG];
	uint64_t id;
	struct run r;

	page_fill(buf, 7);
	cr_assert_eq(store_ckpt_begin(s, 0, &c), 0);
	cr_assert_eq(store_ckpt_set_size(c, NULL, 16), 0);
	cr_assert_eq(store_ckpt_set_label(c, "evil\x1b]0;owned\x07\xff"), 0);
	cr_assert_eq(store_ckpt_add_range(c, NULL, 0, buf, 1), 0);
	cr_assert_eq(store_ckpt_put_record(c, "dev/x/\x1b[2J", 1, "z", 1), 0);
	cr_assert_eq(store_ckpt_commit(c, &id, NULL), 0);
	store_close(s);

	run(&r, (const char *[]){ "ls", "--store", dir, NULL });
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_null(strchr(r.out, 0x1b), "a raw escape reached the terminal: %s", r.out);
	cr_assert(strstr(r.out, "evil\\x1b]0;owned\\x07\\xff"), "%s", r.out);
	run(&r, (const char *[]){ "inspect", "--store", dir, "1", NULL });
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_null(strchr(r.out, 0x1b), "a raw escape reached the terminal: %s", r.out);
	cr_assert(strstr(r.out, "dev/x/\\x1b[2J"), "%s", r.out);
	/* JSON carries the label even though it is not UTF-8 */
	json_t *j = run_json((const char *[]){ "ls", "--store", dir, "--json", NULL });
	json_t *c1 = json_array_get(json_object_get(j, "checkpoints"), 0);
	cr_assert(json_is_string(json_object_get(c1, "label")), "no label in ls --json");
	json_decref(j);
}

Test(store_cli, checkpoints_by_label)
{
	struct run r;
	char *file;

	populate(); /* 1 "boot", 2 unlabelled */
	json_t *j = run_json((const char *[]){ "inspect", "--store", dir, "boot", "--json", NULL });
	cr_assert_eq(json_integer_value(json_object_get(j, "id")), 1);
	json_decref(j);
	cr_assert(asprintf(&file, "%s/boot.rwx", tmp) > 0);
	j = run_json((const char *[]){ "export", "--store", dir, "boot", file, "--json", NULL });
	json_decref(j);
	run(&r, (const char *[]){ "inspect", "--store", dir, "nosuch", NULL });
	cr_assert_eq(r.status, 2, "%s", r.err);
	cr_assert(strstr(r.err, "neither a checkpoint id nor the label"), "%s", r.err);

	/* the same label twice: an id is needed */
	struct store *s = open_store(dir, 0);
	struct store_ckpt *c;
	uint64_t id;
	cr_assert_eq(store_ckpt_begin(s, 2, &c), 0);
	cr_assert_eq(store_ckpt_set_label(c, "boot"), 0);
	cr_assert_eq(store_ckpt_commit(c, &id, NULL), 0);
	store_close(s);
	run(&r, (const char *[]){ "rm", "--store", dir, "boot", NULL });
	cr_assert_eq(r.status, 2, "%s", r.err);
	cr_assert(strstr(r.err, "names 2 checkpoints (1, 3)"), "%s", r.err);
	j = run_json((const char *[]){ "ls", "--store", dir, "--json", NULL });
	cr_assert_eq(json_array_size(json_object_get(j, "checkpoints")), 3, "rm deleted on a guess");
	json_decref(j);
	free(file);
}
