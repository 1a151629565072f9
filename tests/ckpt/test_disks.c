/*
 * Disks under checkpoints, through the rewind binary and the machine API:
 * restore into a new process brings each disk back to its own content, a
 * rollback brings back disk and memory (including what the device wrote into
 * guest memory), a malicious driver cannot stop rewind from answering, a
 * restore with another disk file is refused naming the disk, and the demo's
 * summary has its fields.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "machine.h"
#include "store.h"
#include "testutil.h"
#include "util.h"

extern char **environ;

struct t {
	const char *dir;
	char a[2048], b[2048], store[2048], sock[2048], con[2048], err[2048];
};

static void setup(struct t *t, const char *tag)
{
	rw_test_require_kvm();
	t->dir = rw_test_tmpdir(tag);
	snprintf(t->a, sizeof(t->a), "%s/a.img", t->dir);
	snprintf(t->b, sizeof(t->b), "%s/b.img", t->dir);
	snprintf(t->store, sizeof(t->store), "%s/store", t->dir);
	snprintf(t->sock, sizeof(t->sock), "%s/ctl", t->dir);
	snprintf(t->con, sizeof(t->con), "%s/console.txt", t->dir);
	snprintf(t->err, sizeof(t->err), "%s/stderr.txt", t->dir);
	/* two disks with distinct content of their own */
	uint8_t *buf = malloc(4 << 20);
	memset(buf, 0xaa, 4 << 20);
	FILE *f = fopen(t->a, "w");
	cr_assert_eq(fwrite(buf, 1, 4 << 20, f), 4 << 20);
	fclose(f);
	memset(buf, 0xbb, 4 << 20);
	f = fopen(t->b, "w");
	cr_assert_eq(fwrite(buf, 1, 4 << 20, f), 4 << 20);
	fclose(f);
	free(buf);
}

static pid_t spawn(const char *const argv[], const char *out, const char *err)
{
	posix_spawn_file_actions_t fa;
	pid_t pid;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_eq(posix_spawn(&pid, REWIND_BIN, &fa, NULL, (char *const *)argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	return pid;
}

static bool file_has(const char *path, const char *what)
{
	char buf[1 << 16];
	int fd = open(path, O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	return strstr(buf, what) != NULL;
}

static void wait_for(const char *path, const char *what, unsigned seconds)
{
	for (unsigned i = 0; i < seconds * 20; i++) {
		if (file_has(path, what))
			return;
		usleep(50000);
	}
	cr_assert_fail("'%s' never appeared in %s", what, path);
}

/* rewind ctl SOCK ARGS... --json; the parsed reply */
static json_t *ctl(const char *sock, const char *cmd, const char *arg)
{
	const char *argv[] = { "rewind", "ctl", sock, cmd, arg, arg ? "--json" : NULL, arg ? NULL : NULL,
			       NULL };
	if (!arg) {
		argv[4] = "--json";
		argv[5] = NULL;
	}
	struct cli_result r;
	cr_assert_eq(cli_run(argv, NULL, 60, 0, &r), 0);
	json_t *j = json_loads(r.out, 0, NULL);
	cr_assert_not_null(j, "ctl %s: %s %s", cmd, r.out, r.err);
	cli_result_free(&r);
	return j;
}

static void quit(const char *sock, pid_t pid, int want_status)
{
	json_decref(ctl(sock, "quit", NULL));
	int ws;
	cr_assert_eq(waitpid(pid, &ws, 0), pid);
	cr_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == want_status, "rewind ended with %d", ws);
}

Test(disks, each_disk_restored_in_a_new_process, .timeout = 180)
{
	struct t t;
	setup(&t, "disks-restore");
	const char *run[] = { REWIND_BIN, "run", "--kernel", rw_test_guest("disktest"), "--no-stdin",
			      "--disk", NULL, "--disk", NULL, "--store", t.store, "--control", t.sock, NULL };
	char da[2100], db[2100];
	snprintf(da, sizeof(da), "%s,id=a", t.a);
	snprintf(db, sizeof(db), "%s,id=b,engine=sync", t.b);
	run[6] = da;
	run[8] = db;
	pid_t pid = spawn(run, t.con, t.err);
	wait_for(t.con, "verify ok 1", 60);
	json_t *r = ctl(t.sock, "checkpoint", "disks");
	cr_assert(json_is_true(json_object_get(r, "ok")), "%s", json_dumps(r, 0));
	json_int_t id = json_integer_value(json_object_get(r, "id"));
	json_decref(r);
	quit(t.sock, pid, 0);

	/* the disk files themselves were never written */
	uint8_t byte;
	int fd = open(t.a, O_RDONLY);
	cr_assert_eq(pread(fd, &byte, 1, 0), 1);
	close(fd);
	cr_assert_eq(byte, 0xaa, "rewind wrote the disk file");

	char ids[32], con2[2100];
	snprintf(ids, sizeof(ids), "%lld", (long long)id);
	snprintf(con2, sizeof(con2), "%s/restored.txt", t.dir);
	const char *restore[] = { REWIND_BIN, "restore", "--store", t.store, ids, "--no-stdin",
				  "--control", t.sock, NULL };
	pid = spawn(restore, con2, t.err);
	/* the restored guest keeps checking both disks: overlay and disk file */
	wait_for(con2, "verify ok", 60);
	cr_assert(!file_has(con2, "FAILED"), "a disk came back wrong");
	quit(t.sock, pid, 0);
}

Test(disks, different_disk_file_refused, .timeout = 120)
{
	struct t t;
	setup(&t, "disks-other");
	char da[2100];
	snprintf(da, sizeof(da), "%s,id=a", t.a);
	const char *run[] = { REWIND_BIN, "run", "--kernel", rw_test_guest("disktest"), "--no-stdin",
			      "--disk", da, "--store", t.store, "--control", t.sock, NULL };
	pid_t pid = spawn(run, t.con, t.err);
	wait_for(t.con, "verify ok 1", 60);
	json_t *r = ctl(t.sock, "checkpoint", "x");
	json_int_t id = json_integer_value(json_object_get(r, "id"));
	json_decref(r);
	quit(t.sock, pid, 0);

	/* change the disk file behind the checkpoint's back */
	int fd = open(t.a, O_WRONLY);
	cr_assert_eq(pwrite(fd, "different", 9, 1 << 20), 9);
	close(fd);
	char ids[32];
	snprintf(ids, sizeof(ids), "%lld", (long long)id);
	const char *argv[] = { "rewind", "restore", "--store", t.store, ids, "--no-stdin", NULL };
	struct cli_result res;
	cr_assert_eq(cli_run(argv, NULL, 60, 0, &res), 0);
	cr_assert_eq(res.status, 1, "restore with another disk: status %d", res.status);
	cr_assert(strstr(res.err, "virtio-blk/a") != NULL, "the error does not name the disk: %s", res.err);
	cr_assert_eq(res.out_len, 0, "the guest ran: %s", res.out);
	cli_result_free(&res);
}

Test(disks, malicious_driver_and_status, .timeout = 180)
{
	struct t t;
	setup(&t, "disks-evil");
	char da[2100];
	snprintf(da, sizeof(da), "%s,id=a", t.a);
	const char *run[] = { REWIND_BIN, "run", "--kernel", rw_test_guest("blkevil"), "--args", "hold",
			      "--no-stdin", "--disk", da, "--store", t.store, "--control", t.sock, NULL };
	pid_t pid = spawn(run, t.con, t.err);
	wait_for(t.con, "blkevil: done", 60);
	/* after the guest abused the device, rewind still answers and checkpoints */
	json_t *st = ctl(t.sock, "status", NULL);
	cr_assert(json_is_true(json_object_get(st, "ok")));
	json_decref(st);
	st = ctl(t.sock, "checkpoint", "after-abuse");
	cr_assert(json_is_true(json_object_get(st, "ok")), "checkpoint after the abuse failed");
	json_decref(st);
	quit(t.sock, pid, 0);
	static const char *kinds[] = { "addr", "loop", "chain", "huge", "range", "rostatus", "badnext",
				       "shorthdr" };
	for (unsigned i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		char want[64];
		snprintf(want, sizeof(want), "blkevil: %s: ", kinds[i]);
		cr_assert(file_has(t.con, want), "no result for %s", kinds[i]);
	}
	cr_assert(file_has(t.con, "blkevil: done"), "the device did not work after the abuse");
	cr_assert(!file_has(t.con, "timeout"), "a bad request was left hanging");
}

/* guest memory and every block of disk "a" equal checkpoint id */
static void expect_equal_to(struct machine *m, const char *store_dir, uint64_t id)
{
	struct vm *vm = machine_vm(m);
	struct store *s;
	struct store_snap *sn;
	uint8_t *mem = malloc(vm->mem.size), blk[4096], want[4096];

	cr_assert_eq(store_open(store_dir, NULL, &s), 0);
	cr_assert_eq(store_snap_open(s, id, &sn), 0);
	cr_assert_eq(store_snap_read(sn, NULL, 0, vm->mem.size / 4096, mem), 0);
	for (uint64_t p = 0; p < vm->mem.size / 4096; p++)
		cr_assert_eq(memcmp(mem + p * 4096, vm->mem.hva + p * 4096, 4096), 0,
			     "memory page %llu differs from the checkpoint", (unsigned long long)p);
	for (uint64_t b = 0; b < 32; b++) {
		cr_assert_eq(machine_read_disk_block(m, "a", b, blk), 0);
		/* a block the guest wrote is in the checkpoint; others are the file's */
		if (store_snap_read(sn, "a", b, 1, want) != 0 || b >= 16)
			memset(want, 0xaa, sizeof(want));
		cr_assert_eq(memcmp(blk, want, 4096), 0, "disk block %llu differs", (unsigned long long)b);
	}
	store_snap_close(sn);
	store_close(s);
	free(mem);
}

Test(disks, rollback_brings_back_disk_memory_and_dma, .timeout = 180)
{
	struct t t;
	setup(&t, "disks-rollback");
	struct vm_config cfg;
	struct machine_opts o = { 0 };
	struct machine *m;
	struct ckpt_report rep;

	config_init(&cfg);
	cfg.mem_size = 64 << 20;
	cfg.serial_in = false;
	snprintf(cfg.kernel, sizeof(cfg.kernel), "%s", rw_test_guest("disktest"));
	snprintf(cfg.args, sizeof(cfg.args), "sectors=128 period_ms=20");
	snprintf(cfg.serial_out, sizeof(cfg.serial_out), "%s", t.con);
	cfg.ndisks = 1;
	snprintf(cfg.disks[0].path, sizeof(cfg.disks[0].path), "%s", t.a);
	snprintf(cfg.disks[0].id, sizeof(cfg.disks[0].id), "a");
	o.store_dir = t.store;
	cr_assert_eq(machine_create(&cfg, &o, &m), 0);
	cr_assert_eq(machine_start(m), 0);
	wait_for(t.con, "verify ok 2", 60);
	cr_assert_eq(machine_checkpoint(m, "before", true, &rep), 0);
	/* the guest goes on: it reads a new sector into its DMA page each round */
	wait_for(t.con, "verify ok 12", 60);
	/* and the host writes the disk behind its back, as a device would */
	uint8_t junk[4096];
	memset(junk, 0x5e, sizeof(junk));
	cr_assert_eq(machine_pause(m), 0);
	cr_assert_eq(machine_rollback(m, rep.id), 0);
	expect_equal_to(m, t.store, rep.id);
	cr_assert_eq(machine_resume(m), 0);
	usleep(200 * 1000);
	machine_destroy(m);
	cr_assert(!file_has(t.con, "FAILED"), "the guest saw a wrong disk after the rollback");
}

Test(disks, demo_json_summary, .timeout = 120)
{
	rw_test_require_kvm();
	const char *argv[] = { "rewind", "demo", "--json", NULL };
	struct cli_result r;

	cr_assert_eq(cli_run(argv, NULL, 110, 0, &r), 0);
	cr_assert_eq(r.status, 0, "demo: %s %s", r.out, r.err);
	json_t *j = json_loads(r.out, 0, NULL);
	cr_assert_not_null(j, "not JSON: %s", r.out);
	cr_assert_str_eq(json_string_value(json_object_get(j, "demo")), "ok");
	static const char *fields[] = { "checkpoints", "pause_p50_us", "pause_p99_us", "bytes_stored",
					"guest_ram_bytes", "dedup_ratio", "slowdown_pct", "rollback" };
	for (unsigned i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		cr_assert_not_null(json_object_get(j, fields[i]), "no %s in %s", fields[i], r.out);
	cr_assert_gt(json_integer_value(json_object_get(j, "checkpoints")), 3);
	json_t *rb = json_object_get(j, "rollback");
	cr_assert_eq(json_integer_value(json_object_get(rb, "steps_matched")),
		     json_integer_value(json_object_get(rb, "steps_compared")));
	json_decref(j);
	cli_result_free(&r);
}

/* A checkpoint restores from another directory, and with its disk moved. */
Test(disks, restore_from_anywhere_and_with_a_moved_disk, .timeout = 180)
{
	struct t t;
	setup(&t, "disks-move");
	/* the run names its disk by a relative path, from its own directory */
	char cwd[4096];
	cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
	cr_assert_eq(chdir(t.dir), 0);
	const char *run[] = { REWIND_BIN, "run", "--kernel", rw_test_guest("disktest"), "--no-stdin",
			      "--disk", "a.img,id=a", "--store", t.store, "--control", t.sock, NULL };
	pid_t pid = spawn(run, t.con, t.err);
	cr_assert_eq(chdir(cwd), 0);
	wait_for(t.con, "verify ok 1", 60);
	json_t *r = ctl(t.sock, "checkpoint", "moved");
	json_int_t id = json_integer_value(json_object_get(r, "id"));
	json_decref(r);
	quit(t.sock, pid, 0);

	/* from another directory, by label */
	char con2[2100], moved[2100];
	snprintf(con2, sizeof(con2), "%s/restored.txt", t.dir);
	cr_assert_eq(chdir("/"), 0);
	const char *restore[] = { REWIND_BIN, "restore", "--store", t.store, "moved", "--no-stdin",
				  "--control", t.sock, NULL };
	pid = spawn(restore, con2, t.err);
	cr_assert_eq(chdir(cwd), 0);
	wait_for(con2, "verify ok", 60);
	cr_assert(!file_has(con2, "FAILED"), "the disk came back wrong");
	quit(t.sock, pid, 0);

	/* the disk moves: restore says how to name its place, then takes it */
	snprintf(moved, sizeof(moved), "%s/elsewhere.img", t.dir);
	cr_assert_eq(rename(t.a, moved), 0);
	char ids[32];
	snprintf(ids, sizeof(ids), "%lld", (long long)id);
	const char *lost[] = { "rewind", "restore", "--store", t.store, ids, "--no-stdin", NULL };
	struct cli_result res;
	cr_assert_eq(cli_run(lost, NULL, 60, 0, &res), 0);
	cr_assert_neq(res.status, 0);
	cr_assert(strstr(res.err, "--disk a=PATH"), "no hint in: %s", res.err);
	cli_result_free(&res);
	const char *wrong[] = { "rewind", "restore", "--store", t.store, ids, "--no-stdin", "--disk",
				"nosuch=/etc/hostname", NULL };
	cr_assert_eq(cli_run(wrong, NULL, 60, 0, &res), 0);
	cr_assert_eq(res.status, 2, "%s", res.err);
	cr_assert(strstr(res.err, "its disks: a"), "%s", res.err);
	cli_result_free(&res);
	char arg[2200];
	snprintf(arg, sizeof(arg), "a=%s", moved);
	const char *found[] = { REWIND_BIN, "restore", "--store", t.store, ids, "--no-stdin", "--disk",
				arg, "--control", t.sock, NULL };
	pid = spawn(found, con2, t.err);
	wait_for(con2, "verify ok", 60);
	cr_assert(!file_has(con2, "FAILED"), "the moved disk came back wrong");
	quit(t.sock, pid, 0);
}
