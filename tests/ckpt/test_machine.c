/*
 * Checkpoints, rollback and restore on SDK guests, through the machine API
 * and the rewind binary.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "cli.h"
#include "dirty.h"
#include "machine.h"
#include "store.h"
#include "testutil.h"
#include "util.h"
#include "vm.h"

struct env {
	const char *dir;
	char store[2048];
	char console[2048];
};

static struct machine *make(struct env *e, const char *guest, const char *args, unsigned cpus,
			    enum dirty_mode mode)
{
	struct vm_config cfg;
	struct machine_opts o = { 0 };
	struct machine *m = NULL;

	rw_test_require_kvm();
	e->dir = rw_test_tmpdir("machine");
	snprintf(e->store, sizeof(e->store), "%s/store", e->dir);
	snprintf(e->console, sizeof(e->console), "%s/console.txt", e->dir);
	config_init(&cfg);
	cfg.ncpus = cpus;
	cfg.mem_size = 64 * MiB;
	cfg.serial_in = false;
	snprintf(cfg.kernel, sizeof(cfg.kernel), "%s", rw_test_guest(guest));
	snprintf(cfg.args, sizeof(cfg.args), "%s", args ? args : "");
	snprintf(cfg.serial_out, sizeof(cfg.serial_out), "%s", e->console);
	o.store_dir = e->store;
	o.dirty = mode;
	cr_assert_eq(machine_create(&cfg, &o, &m), 0);
	return m;
}

/* Every "checksum=0x..." in the console, in order. */
static unsigned checksums(const char *out, unsigned long long *v, unsigned max)
{
	unsigned n = 0;

	for (const char *p = out; n < max && (p = strstr(p, "checksum=0x")); p += 11)
		v[n++] = strtoull(p + 11, NULL, 16);
	return n;
}

static uint64_t run_to_end(struct machine *m)
{
	struct vm_stop_info st;

	machine_wait(m, &st);
	cr_assert_eq(st.reason, VM_STOP_EXIT, "%s", st.msg);
	cr_assert_eq(st.exit_code, 0);
	return 0;
}

/* `rewind restore` of checkpoint id in a new process: the checksum counter prints. */
static unsigned long long restored_checksum(const char *store, uint64_t id)
{
	char ids[32];
	unsigned long long y[2];
	struct cli_result r;

	snprintf(ids, sizeof(ids), "%llu", (unsigned long long)id);
	const char *argv[] = { "rewind", "restore", "--store", store, "--no-stdin", ids, NULL };
	cr_assert_eq(cli_run(argv, NULL, 120, 0, &r), 0);
	cr_assert_eq(r.status, 0, "status %d: %s", r.status, r.err);
	cr_assert_eq(checksums(r.out, y, 2), 1, "restore printed: %s", r.out);
	cli_result_free(&r);
	return y[0];
}

/*
 * counter runs; checkpoint part-way; it ends with X. Roll back to the
 * checkpoint and run again: X. Restore the checkpoint in a new process: X.
 */
static void counter_roundtrip(unsigned cpus, enum dirty_mode mode)
{
	struct env e;
	struct ckpt_report rep;
	unsigned long long x[4];
	struct machine *m = make(&e, "counter", "n=40000000", cpus, mode);

	cr_assert_eq(machine_start(m), 0);
	usleep(300 * 1000);
	cr_assert_eq(machine_checkpoint(m, "mid", true, &rep), 0, "%s", rw_strerror(rep.err));
	cr_assert_gt(rep.id, 0);
	cr_assert_gt(rep.dirty_pages, 0);
	cr_assert(!vm_stopped(machine_vm(m)), "the guest ended before the checkpoint: make it longer");
	run_to_end(m);
	cr_assert_eq(checksums(rw_test_slurp(e.console, NULL), x, 4), 1, "%s", rw_test_slurp(e.console, NULL));

	cr_assert_eq(machine_rollback(m, rep.id), 0);
	cr_assert_eq(machine_start(m), 0);
	run_to_end(m);
	cr_assert_eq(checksums(rw_test_slurp(e.console, NULL), x, 4), 2, "%s", rw_test_slurp(e.console, NULL));
	cr_assert_eq(x[1], x[0], "after rollback: %llx, straight: %llx", x[1], x[0]);
	machine_destroy(m);

	unsigned long long y = restored_checksum(e.store, rep.id);
	cr_assert_eq(y, x[0], "restored: %llx, straight: %llx", y, x[0]);
}

Test(machine, counter_rollback_restore_ring, .timeout = 300) { counter_roundtrip(1, DIRTY_RING); }

/*
 * Parked vCPUs save their state from what their last KVM_RUN exported. A
 * rollback while the VM is paused replaces that state: a checkpoint taken
 * right after, still paused, must hold the rolled-back vCPUs, so that it
 * restores to the same end as the straight run.
 */
Test(machine, checkpoint_after_rollback_while_paused, .timeout = 300)
{
	struct env e;
	struct ckpt_report a, b;
	unsigned long long x[4];
	struct machine *m = make(&e, "counter", "n=40000000", 1, DIRTY_RING);

	cr_assert_eq(machine_start(m), 0);
	usleep(300 * 1000);
	cr_assert_eq(machine_checkpoint(m, "a", true, &a), 0, "%s", rw_strerror(a.err));
	usleep(200 * 1000);
	cr_assert(!vm_stopped(machine_vm(m)), "the guest ended too soon: make it longer");
	cr_assert_eq(machine_pause(m), 0);
	cr_assert_eq(machine_rollback(m, a.id), 0);
	cr_assert_eq(machine_checkpoint(m, "b", true, &b), 0, "%s", rw_strerror(b.err));
	cr_assert_eq(machine_resume(m), 0);
	run_to_end(m);
	cr_assert_eq(checksums(rw_test_slurp(e.console, NULL), x, 4), 1, "%s", rw_test_slurp(e.console, NULL));
	machine_destroy(m);

	unsigned long long y = restored_checksum(e.store, b.id);
	cr_assert_eq(y, x[0], "checkpoint b restored to %llx, the run ended with %llx", y, x[0]);
}
Test(machine, counter_rollback_restore_bitmap, .timeout = 300) { counter_roundtrip(1, DIRTY_BITMAP); }
Test(machine, counter_rollback_restore_2cpus, .timeout = 300) { counter_roundtrip(2, DIRTY_RING); }

/* XXH3-64 of all guest RAM. */
static uint64_t mem_hash(struct machine *m)
{
	struct vm *vm = machine_vm(m);

	return XXH3_64bits(vm->mem.hva, vm->mem.size);
}

Test(machine, host_write_undone_by_rollback, .timeout = 120)
{
	struct env e;
	struct ckpt_report rep;
	struct machine *m = make(&e, "counter", "n=4000000000", 1, DIRTY_RING);
	struct vm *vm = machine_vm(m);
	uint8_t page[4096], before[4096];
	uint64_t gpa = 40ULL << 20; /* free RAM the counter never touches */

	cr_assert_eq(machine_start(m), 0);
	cr_assert_eq(machine_checkpoint(m, NULL, true, &rep), 0);
	cr_assert_eq(machine_pause(m), 0);
	cr_assert_eq(mem_read(&vm->mem, gpa, before, sizeof(before)), 0);
	memset(page, 0xab, sizeof(page));
	/* a device-style write: the VMM writes guest memory, KVM never sees it */
	cr_assert_eq(mem_write(&vm->mem, gpa, page, sizeof(page)), 0);
	cr_assert_eq(machine_rollback(m, rep.id), 0);
	cr_assert_eq(memcmp(vm->mem.hva + gpa, before, sizeof(before)), 0,
		     "the host's write survived the rollback");
	cr_assert_eq(machine_resume(m), 0);
	machine_destroy(m);
}

Test(machine, failed_checkpoint_loses_no_page, .timeout = 120)
{
	struct env e;
	struct ckpt_report r1, r2, r3;
	struct machine *m = make(&e, "counter", "n=4000000000", 1, DIRTY_BITMAP);
	struct vm *vm = machine_vm(m);
	uint8_t a[4096], b[4096], got[4096];
	struct store *s;
	struct store_snap *sn;

	memset(a, 0x11, sizeof(a));
	memset(b, 0x22, sizeof(b));
	cr_assert_eq(machine_start(m), 0);
	cr_assert_eq(machine_checkpoint(m, "good", true, &r1), 0);
	cr_assert_eq(mem_write(&vm->mem, 41ULL << 20, a, 4096), 0);
	machine_inject_persist_failures(m, 1);
	cr_assert_eq(machine_checkpoint(m, "fails", true, &r2), RW_EINJECTED);
	cr_assert_eq(r2.id, 0);
	cr_assert_eq(mem_write(&vm->mem, 42ULL << 20, b, 4096), 0);
	cr_assert_eq(machine_checkpoint(m, "after", true, &r3), 0);
	cr_assert_eq(r3.parent, r1.id, "the failed checkpoint must not become a parent");
	machine_destroy(m);

	/* checkpoint 3 holds the page written before the failed one */
	cr_assert_eq(store_open(e.store, NULL, &s), 0);
	cr_assert_eq(store_snap_open(s, r3.id, &sn), 0);
	cr_assert_eq(store_snap_read(sn, NULL, (41ULL << 20) / 4096, 1, got), 0);
	cr_assert_eq(memcmp(got, a, 4096), 0, "a page dirtied before the failed checkpoint was lost");
	cr_assert_eq(store_snap_read(sn, NULL, (42ULL << 20) / 4096, 1, got), 0);
	cr_assert_eq(memcmp(got, b, 4096), 0);
	store_snap_close(sn);
	store_close(s);
}

/* guest RAM equals checkpoint id in the store, page for page */
static void expect_memory_is(struct machine *m, const char *store_dir, uint64_t id)
{
	struct vm *vm = machine_vm(m);
	struct store *s;
	struct store_snap *sn;
	uint8_t *buf = malloc(vm->mem.size);

	cr_assert_eq(store_open(store_dir, NULL, &s), 0);
	cr_assert_eq(store_snap_open(s, id, &sn), 0);
	cr_assert_eq(store_snap_read(sn, NULL, 0, vm->mem.size / 4096, buf), 0);
	for (uint64_t p = 0; p < vm->mem.size / 4096; p++)
		cr_assert_eq(memcmp(buf + p * 4096, vm->mem.hva + p * 4096, 4096), 0,
			     "page %llu differs from checkpoint %llu", (unsigned long long)p,
			     (unsigned long long)id);
	store_snap_close(sn);
	store_close(s);
	free(buf);
}

Test(machine, rollback_across_branches, .timeout = 180)
{
	struct env e;
	struct ckpt_report r1, r2, r3;
	struct machine *m = make(&e, "counter", "n=4000000000", 1, DIRTY_RING);

	cr_assert_eq(machine_start(m), 0);
	usleep(100 * 1000);
	cr_assert_eq(machine_checkpoint(m, "one", true, &r1), 0);
	usleep(200 * 1000);
	cr_assert_eq(machine_checkpoint(m, "two", true, &r2), 0);
	cr_assert_eq(r2.parent, r1.id);
	usleep(100 * 1000);
	/* paused around the rollback, so the guest cannot run before the check */
	cr_assert_eq(machine_pause(m), 0);
	cr_assert_eq(machine_rollback(m, r1.id), 0);
	expect_memory_is(m, e.store, r1.id);
	cr_assert_eq(machine_resume(m), 0);
	usleep(100 * 1000);
	cr_assert_eq(machine_checkpoint(m, "three", true, &r3), 0);
	cr_assert_eq(r3.parent, r1.id, "a checkpoint after a rollback branches from its target");
	usleep(100 * 1000);
	cr_assert_eq(machine_pause(m), 0);
	cr_assert_eq(machine_rollback(m, r2.id), 0);
	expect_memory_is(m, e.store, r2.id);
	uint64_t h = mem_hash(m);
	cr_assert_eq(machine_resume(m), 0);
	machine_destroy(m);
	cr_assert_neq(h, 0);
}

/* Flip one byte of a record's data in the LMDB file behind the store. */
static void corrupt_record(const char *store_dir, uint64_t id, const char *name)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k, v;
	uint8_t key[8 + 256];
	size_t nlen = strlen(name);

	for (int i = 0; i < 8; i++)
		key[i] = (uint8_t)(id >> (56 - 8 * i));
	memcpy(key + 8, name, nlen);
	cr_assert_eq(mdb_env_create(&env), 0);
	cr_assert_eq(mdb_env_set_maxdbs(env, 16), 0);
	cr_assert_eq(mdb_env_set_mapsize(env, 1ULL << 32), 0);
	cr_assert_eq(mdb_env_open(env, store_dir, 0, 0600), 0);
	cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	cr_assert_eq(mdb_dbi_open(txn, "record", 0, &dbi), 0);
	k.mv_data = key;
	k.mv_size = 8 + nlen;
	cr_assert_eq(mdb_get(txn, dbi, &k, &v), 0, "record %s of %llu not found", name,
		     (unsigned long long)id);
	uint8_t *copy = malloc(v.mv_size);
	memcpy(copy, v.mv_data, v.mv_size);
	copy[v.mv_size - 1] ^= 0x40;
	v.mv_data = copy;
	cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
	cr_assert_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	free(copy);
}

Test(machine, corrupt_record_refuses_restore, .timeout = 120)
{
	struct env e;
	struct ckpt_report rep;
	struct machine *m = make(&e, "counter", "n=40000000", 1, DIRTY_RING);
	char id[32];

	cr_assert_eq(machine_start(m), 0);
	cr_assert_eq(machine_checkpoint(m, NULL, true, &rep), 0);
	machine_destroy(m);
	snprintf(id, sizeof(id), "%llu", (unsigned long long)rep.id);

	const char *names[] = { "vcpu/0", "vm/platform", "dev/serial/serial@0x3f8" };
	for (unsigned i = 0; i < 3; i++) {
		corrupt_record(e.store, rep.id, names[i]);
		const char *argv[] = { "rewind", "restore", "--store", e.store, "--no-stdin", id, NULL };
		struct cli_result r;
		cr_assert_eq(cli_run(argv, NULL, 60, 0, &r), 0);
		cr_assert_eq(r.status, 1, "restore of a corrupt %s: status %d", names[i], r.status);
		cr_assert(strstr(r.err, names[i]) != NULL, "the error does not name %s: %s", names[i], r.err);
		cr_assert_eq(r.out_len, 0, "the guest ran: %s", r.out);
		cli_result_free(&r);
		corrupt_record(e.store, rep.id, names[i]); /* flip it back */
	}
	/* and intact, it restores */
	const char *argv[] = { "rewind", "restore", "--store", e.store, "--no-stdin", id, NULL };
	struct cli_result r;
	cr_assert_eq(cli_run(argv, NULL, 120, 0, &r), 0);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cli_result_free(&r);
}

/* The guest asks for a checkpoint itself (rw_checkpoint): it gets the id, a
 * restore resumes it there with 0, and so does a rollback in place. */
Test(machine, guest_requested_checkpoint, .timeout = 120)
{
	struct env e;
	struct machine *m = make(&e, "selfckpt", NULL, 1, DIRTY_RING);
	struct vm_stop_info st;
	unsigned long long h1 = 0, h2 = 0;
	long long id = 0;

	cr_assert_eq(machine_start(m), 0);
	machine_wait(m, &st);
	cr_assert_eq(st.reason, VM_STOP_EXIT, "%s", st.msg);
	const char *out = rw_test_slurp(e.console, NULL);
	cr_assert_eq(sscanf(strstr(out, "state "), "state %llx", &h1), 1, "%s", out);
	const char *took = strstr(out, "took checkpoint ");
	cr_assert_not_null(took, "%s", out);
	id = strtoll(took + 16, NULL, 10);
	cr_assert_gt(id, 0);

	/* rollback in place, on the stopped VM, then run on */
	cr_assert_eq(machine_rollback(m, (uint64_t)id), 0);
	cr_assert_eq(machine_start(m), 0);
	machine_wait(m, &st);
	cr_assert_eq(st.reason, VM_STOP_EXIT, "%s", st.msg);
	const char *res = strstr(rw_test_slurp(e.console, NULL), "resumed, state ");
	cr_assert_not_null(res, "%s", rw_test_slurp(e.console, NULL));
	cr_assert_eq(sscanf(res, "resumed, state %llx", &h2), 1);
	cr_assert_eq(h2, h1, "the resumed state differs");
	machine_destroy(m);

	/* and in a new process */
	char ids[32];
	snprintf(ids, sizeof(ids), "%lld", id);
	const char *argv[] = { "rewind", "restore", "--store", e.store, "--no-stdin", ids, NULL };
	struct cli_result r;
	cr_assert_eq(cli_run(argv, NULL, 60, 0, &r), 0);
	cr_assert_eq(r.status, 0, "%s", r.err);
	char want[64];
	snprintf(want, sizeof(want), "selfckpt: resumed, state %016llx", h1);
	cr_assert(strstr(r.out, want) != NULL, "restore printed: %s", r.out);
	cli_result_free(&r);
}
