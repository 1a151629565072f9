/*
 * test_store_fault.c - damage and failure: a flipped byte on disk, a writer
 * killed mid-commit, a full disk, a forced hash collision.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "helpers.h"

STORE_SUITE(store_fault, "store-fault", 90);

Test(store_fault, flipped_byte_found_by_verify_and_refused_by_read)
{
	struct store *s = open_store(dir, 0);
	uint64_t idx[4] = { 0, 1, 2, 3 }, sa[4] = { 11, 12, 13, 14 }, sb[4] = { 21, 22, 23, 24 };
	uint8_t pg[PG], *buf = malloc(4 * PG);
	struct store_hash key;
	char *data;

	uint64_t a = commit_pages(s, 0, 4, idx, sa, 4, NULL);
	uint64_t b = commit_pages(s, 0, 4, idx, sb, 4, NULL);
	uint64_t c = commit_pages(s, a, 4, idx + 3, sb + 3, 1, NULL); /* shares 11..13 */
	page_fill(pg, 12);
	store_test_page_key(s, pg, &key);
	store_close(s);

	cr_assert(asprintf(&data, "%s/data.mdb", dir) > 0);
	cr_assert_eq(flip_in_file(data, pg + 1000, 64), 0, "page bytes not found in the file");
	free(data);

	s = open_store(dir, 0);
	struct vcount v = { 0 };
	cr_assert_eq(store_verify(s, vcount_cb, &v, NULL), 0);
	cr_assert_eq(v.n, 1, "%u problems: %s", v.n, v.first);
	cr_assert_eq(v.kinds[STORE_PROB_CHUNK_HASH], 1);
	cr_assert_eq(v.naffected, 2);
	cr_assert_eq(v.affected[0], a);
	cr_assert_eq(v.affected[1], c);

	struct store_snap *sn;
	cr_assert_eq(store_snap_open(s, a, &sn), 0);
	cr_assert_eq(store_snap_read(sn, NULL, 1, 1, buf), RW_ECHECKSUM);
	cr_assert_eq(store_snap_read(sn, NULL, 0, 1, buf), 0);
	store_snap_close(sn);
	cr_assert_eq(store_snap_open(s, b, &sn), 0);
	cr_assert_eq(store_snap_read(sn, NULL, 0, 4, buf), 0);
	store_snap_close(sn);
	/* export refuses to copy damage out */
	char *out;
	cr_assert(asprintf(&out, "%s/a.rwx", tmp) > 0);
	cr_assert_eq(store_export(s, c, out, NULL, NULL, NULL), RW_ECHECKSUM);
	cr_assert_eq(access(out, F_OK), -1);
	free(out);
	store_close(s);
	free(buf);
}

/* ---- a writer killed with SIGKILL at random moments ---- */

static void writer_loop(const char *path, uint64_t seed)
{
	struct store_open_opts o = { .flags = STORE_OPEN_CREATE };
	struct store *s;
	uint8_t *buf = malloc(256 * PG);
	uint64_t x = seed | 1, idx[256];

	if (store_open(path, &o, &s))
		_exit(2);
	for (uint64_t it = 0;; it++) {
		struct store_ckpt *c;
		uint64_t parent = 0, id;

		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		if (it % 4)
			parent = 0; /* a fresh tree or one from the newest */
		struct store_snap *sn;
		if (it % 2 && !store_snap_open(s, it, &sn)) {
			parent = it;
			store_snap_close(sn);
		}
		if (store_ckpt_begin(s, parent, &c))
			continue;
		if (store_ckpt_set_size(c, NULL, 4096))
			_exit(3);
		for (int i = 0; i < 256; i++) {
			idx[i] = (x >> (i % 40)) % 4096;
			page_fill(buf + (size_t)i * PG, x + (uint64_t)i);
		}
		if (store_ckpt_add_pages(c, NULL, idx, buf, 256) ||
		    store_ckpt_put_record(c, "vcpu/0", 1, &x, sizeof(x)))
			_exit(4);
		if (store_ckpt_commit(c, &id, NULL))
			_exit(5);
		if (id > 3 && x % 3 == 0)
			if (store_delete(s, id - 2, NULL)) {
				/* a parent may be gone already: fine */
			}
	}
}

static int read_all(void *arg, const struct store_ckpt_info *info)
{
	struct store *s = arg;
	struct store_snap *sn;
	uint8_t *buf = malloc(info->mem.npages * PG);
	void *d;
	size_t len;
	int rc;

	rc = store_snap_open(s, info->id, &sn);
	if (!rc)
		rc = store_snap_read(sn, NULL, 0, info->mem.npages, buf);
	if (!rc && info->nrecords) {
		rc = store_snap_record(sn, "vcpu/0", &d, &len, NULL);
		if (!rc)
			free(d);
	}
	store_snap_close(sn);
	free(buf);
	return rc;
}

static int count_cb(void *arg, const struct store_ckpt_info *info)
{
	(void)info;
	(*(unsigned *)arg)++;
	return 0;
}

Test(store_fault, sigkill_during_commit_leaves_a_good_store)
{
	struct timespec seed_ts;
	unsigned total = 0;

	clock_gettime(CLOCK_MONOTONIC, &seed_ts);
	srand((unsigned)seed_ts.tv_nsec);
	for (int round = 0; round < 8; round++) {
		pid_t pid = fork();

		cr_assert_geq(pid, 0);
		if (pid == 0)
			writer_loop(dir, (uint64_t)rand() * 7919 + (uint64_t)round);
		struct timespec ts = { 0, (long)(20 + rand() % 120) * 1000000L };
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		int st;
		cr_assert_eq(waitpid(pid, &st, 0), pid);
		cr_assert(WIFSIGNALED(st), "writer exited on its own (status %d)",
			  WIFEXITED(st) ? WEXITSTATUS(st) : -1);

		struct store *s = open_store(dir, 0);
		struct store_gc_stats g;
		unsigned n = 0;

		verify_clean(s);
		cr_assert_eq(store_list(s, read_all, s), 0);
		cr_assert_eq(store_list(s, count_cb, &n), 0);
		total += n;
		cr_assert_eq(store_gc(s, true, &g), 0);
		cr_assert_eq(g.chunks_freed + g.refs_fixed + g.records_freed + g.bodies_freed, 0);
		store_close(s);
	}
	cr_assert_gt(total, 0, "the writer never committed anything");
}

/* ---- a full disk ---- */

/* A small private tmpfs if this process may mount one, else a file size
 * limit: either makes LMDB's writes fail the way a full disk does. */
static const char *limit_space(char *mnt, size_t cap)
{
	snprintf(mnt, cap, "%s/small", tmp);
	mkdir(mnt, 0700);
	if (unshare(CLONE_NEWNS) == 0 &&
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 &&
	    mount("tmpfs", mnt, "tmpfs", 0, "size=6m,mode=0700") == 0)
		return "tmpfs";
	struct rlimit rl = { 6 << 20, RLIM_INFINITY };
	signal(SIGXFSZ, SIG_IGN);
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
	return "rlimit";
}

Test(store_fault, full_disk_is_a_clear_error_and_keeps_checkpoints)
{
	char mnt[4096], *sdir;
	const char *how = limit_space(mnt, sizeof(mnt));
	struct store *s;
	struct store_ckpt *c;
	uint8_t *buf = malloc(64 * PG);
	uint64_t idx[64], seed[64], id;
	int rc = 0;

	cr_assert(asprintf(&sdir, "%s/store", mnt) > 0);
	s = open_store(sdir, 0);
	for (int i = 0; i < 64; i++)
		idx[i] = (uint64_t)i, seed[i] = 5 + (uint64_t)i;
	uint64_t a = commit_pages(s, 0, 64, idx, seed, 64, NULL);

	/* 16 MiB of new pages cannot fit in 6 MiB */
	cr_assert_eq(store_ckpt_begin(s, a, &c), 0);
	cr_assert_eq(store_ckpt_set_size(c, NULL, 4096), 0);
	for (int k = 0; k < 64 && !rc; k++) {
		for (int i = 0; i < 64; i++)
			page_fill(buf + (size_t)i * PG, 100000 + (uint64_t)k * 64 + (uint64_t)i);
		rc = store_ckpt_add_range(c, NULL, (uint64_t)k * 64, buf, 64);
	}
	cr_assert_eq(rc, 0);
	rc = store_ckpt_commit(c, &id, NULL);
	cr_assert_eq(rc, RW_ESTORE_FULL, "commit on a full disk (%s): %s (%d)", how,
		     rw_strerror(rc), rc);
	verify_clean(s);
	rc = store_list(s, read_all, s);
	cr_assert_eq(rc, 0, "reading after the failed commit: %s", rw_strerror(rc));
	store_close(s);

	s = open_store(sdir, 0);
	unsigned n = 0;
	cr_assert_eq(store_list(s, count_cb, &n), 0);
	cr_assert_eq(n, 1);
	verify_clean(s);
	struct store_snap *sn;
	cr_assert_eq(store_snap_open(s, a, &sn), 0);
	cr_assert_eq(store_snap_read(sn, NULL, 0, 64, buf), 0);
	for (int i = 0; i < 64; i++) {
		uint8_t exp[PG];
		page_fill(exp, 5 + (uint64_t)i);
		cr_assert_eq(memcmp(buf + (size_t)i * PG, exp, PG), 0);
	}
	store_snap_close(sn);
	store_close(s);
	if (!strcmp(how, "tmpfs"))
		umount(mnt);
	free(sdir);
	free(buf);
}

/* ---- a forced hash collision ---- */

struct force {
	uint64_t first8;          /* content whose key is forced */
	struct store_hash key;    /* to this key */
};

static void force_hook(void *arg, int kind, const void *data, size_t len,
		       struct store_hash *h)
{
	struct force *f = arg;
	uint64_t first;

	if (kind != 1 || len != PG)
		return;
	memcpy(&first, data, 8);
	if (first == f->first8)
		*h = f->key;
}

Test(store_fault, collision_does_not_poison)
{
	struct store *s = open_store(dir, 0);
	struct force f;
	uint8_t victim[PG], attacker[PG], got[PG];
	uint64_t i0 = 0, i1 = 1, sv = 4242, id;
	struct store_ckpt *c;
	struct store_stats before, after;

	page_fill(victim, sv);
	page_fill(attacker, 666);
	uint64_t a = commit_pages(s, 0, 2, &i0, &sv, 1, NULL);
	store_test_page_key(s, victim, &f.key);
	memcpy(&f.first8, attacker, 8);
	store_test_set_hash_hook(s, force_hook, &f);
	cr_assert_eq(store_stats(s, &before), 0);

	/* the attacker's page, under the victim's key, from another checkpoint */
	cr_assert_eq(store_ckpt_begin(s, 0, &c), 0);
	cr_assert_eq(store_ckpt_set_size(c, NULL, 2), 0);
	cr_assert_eq(store_ckpt_add_pages(c, NULL, &i1, attacker, 1), 0);
	cr_assert_eq(store_ckpt_commit(c, &id, NULL), RW_ECOLLISION);
	/* both contents in one new checkpoint */
	cr_assert_eq(store_ckpt_begin(s, 0, &c), 0);
	cr_assert_eq(store_ckpt_set_size(c, NULL, 2), 0);
	cr_assert_eq(store_ckpt_add_pages(c, NULL, &i0, victim, 1), 0);
	cr_assert_eq(store_ckpt_add_pages(c, NULL, &i1, attacker, 1), 0);
	cr_assert_eq(store_ckpt_commit(c, &id, NULL), RW_ECOLLISION);

	cr_assert_eq(store_stats(s, &after), 0);
	cr_assert_eq(after.chunks, before.chunks);
	cr_assert_eq(after.checkpoints, 1);
	struct store_snap *sn;
	cr_assert_eq(store_snap_open(s, a, &sn), 0);
	cr_assert_eq(store_snap_read(sn, NULL, 0, 1, got), 0);
	cr_assert_eq(memcmp(got, victim, PG), 0);
	store_snap_close(sn);
	verify_clean(s);
	store_close(s);
}
