/*
 * bench_store.c - `rewind-bench store`.
 *
 * Write side: an incremental checkpoint of N distinct random pages (begin
 * from a parent, add the pages in batches of 512, commit) against raw LMDB
 * puts of the same pages, 8-byte page-index keys, one transaction, in an
 * environment opened with the same flags and map size. Both commit
 * durably (fdatasync), as the store does by default. Rounds alternate which
 * side goes first; the medians are reported.
 *
 * Read side: reading the whole checkpoint back (every chunk re-hashed, as
 * by default) into a buffer with store_snap_read ("read_gbps"), and as runs
 * through store_snap_foreach_run with a callback that copies each run to
 * its place in the buffer, as a restore does ("run_gbps"), against memcpy
 * of the same number of bytes between two buffers already faulted in
 * ("memcpy_gbps"), all in the same rounds. Each result is checked against
 * the pages written. The store may use a second thread for a large read
 * (see store.h); memcpy runs on one. As the memcpy buffers are faulted in
 * before timing, one untimed read first maps the store's pages into the
 * process (a first read in a fresh process pays those page faults too).
 * Medians over the rounds are reported.
 */
#include <errno.h>
#include <getopt.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_store.h"
#include "err.h"
#include "store.h"
#include "util.h"

#define BATCH 512u
#define ROUNDS_MAX 15

static void fill_random(uint8_t *buf, uint64_t pages, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull | 1, *q = (uint64_t *)buf;

	for (uint64_t i = 0; i < pages * (STORE_PAGE_SIZE / 8); i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		q[i] = x;
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_u64);
	return v[n / 2];
}

/* Remove the bench's two LMDB environments (store/ and raw/) and dir. */
static int rm_tree(const char *dir)
{
	static const char *const files[] = { "store/data.mdb", "store/lock.mdb", "store",
					     "raw/data.mdb", "raw/lock.mdb", "raw" };
	char p[4200];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
		if (unlink(p) && errno == EISDIR)
			rmdir(p);
	}
	return rmdir(dir);
}

/* ---- the store side ---- */

static int store_round(struct store *s, uint64_t *parent, const uint8_t *pages,
		       uint64_t n, uint64_t *ns)
{
	struct store_ckpt *c;
	uint64_t t0 = rw_now_ns(), id;
	int rc;

	rc = store_ckpt_begin(s, *parent, &c);
	if (rc)
		return rc;
	rc = store_ckpt_set_size(c, NULL, n);
	for (uint64_t i = 0; !rc && i < n; i += BATCH)
		rc = store_ckpt_add_range(c, NULL, i, pages + i * STORE_PAGE_SIZE,
					  n - i < BATCH ? n - i : BATCH);
	if (rc) {
		store_ckpt_abort(c);
		return rc;
	}
	rc = store_ckpt_commit(c, &id, NULL);
	if (rc)
		return rc;
	*ns = rw_now_ns() - t0;
	*parent = id;
	return 0;
}

/* ---- the raw LMDB side ---- */

struct raw {
	MDB_env *env;
	MDB_dbi dbi;
};

static int raw_open(struct raw *r, const char *path, uint64_t map)
{
	MDB_txn *txn;
	int rc;

	if (mkdir(path, 0700) && errno != EEXIST)
		return -errno;
	rc = mdb_env_create(&r->env);
	if (!rc)
		rc = mdb_env_set_maxdbs(r->env, 8);
	if (!rc)
		rc = mdb_env_set_mapsize(r->env, map);
	/* the flags store_open() uses by default */
	if (!rc)
		rc = mdb_env_open(r->env, path, MDB_NOTLS, 0600);
	if (!rc)
		rc = mdb_txn_begin(r->env, NULL, 0, &txn);
	if (!rc) {
		rc = mdb_dbi_open(txn, "pages", MDB_CREATE, &r->dbi);
		if (!rc)
			rc = mdb_txn_commit(txn);
		else
			mdb_txn_abort(txn);
	}
	return rc ? (rc > 0 ? -rc : RW_ECORRUPT) : 0;
}

static int raw_round(struct raw *r, uint64_t first_key, const uint8_t *pages,
		     uint64_t n, uint64_t *ns)
{
	MDB_txn *txn;
	uint64_t t0 = rw_now_ns();
	int rc;

	rc = mdb_txn_begin(r->env, NULL, 0, &txn);
	for (uint64_t i = 0; !rc && i < n; i++) {
		uint8_t kb[8];
		uint64_t key = first_key + i;
		MDB_val k = { 8, kb }, v = { STORE_PAGE_SIZE,
					     (void *)(pages + i * STORE_PAGE_SIZE) };

		for (int b = 0; b < 8; b++)
			kb[b] = (uint8_t)(key >> (56 - 8 * b));
		rc = mdb_put(txn, r->dbi, &k, &v, 0);
	}
	if (rc) {
		mdb_txn_abort(txn);
		return rc > 0 ? -rc : RW_ECORRUPT;
	}
	rc = mdb_txn_commit(txn);
	if (rc)
		return rc > 0 ? -rc : RW_ECORRUPT;
	*ns = rw_now_ns() - t0;
	return 0;
}

static int copy_run(void *arg, uint64_t first, uint64_t npages, const void *data)
{
	memcpy((uint8_t *)arg + first * STORE_PAGE_SIZE, data, npages * STORE_PAGE_SIZE);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: rewind-bench store [--pages N] [--rounds R] [--dir DIR]\n");
}

int bench_store_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pages", required_argument, NULL, 'p' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	uint64_t n = 65536, rounds = 3, ws[ROUNDS_MAX], wr[ROUNDS_MAX];
	uint64_t rs[ROUNDS_MAX], ru[ROUNDS_MAX], mc[ROUNDS_MAX], parent = 0, ns;
	const char *base = NULL;
	char dir[4096], path[4200];
	uint8_t *pages = NULL, *dst = NULL;
	struct store *s = NULL;
	struct store_snap *sn = NULL;
	struct raw raw = { 0 };
	int c, rc = 0;

	optind = 0;
	while ((c = getopt_long(argc, argv, "p:r:d:h", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (rw_parse_uint(optarg, 1, 1ull << 24, &n))
				goto bad_usage;
			break;
		case 'r':
			if (rw_parse_uint(optarg, 1, ROUNDS_MAX, &rounds))
				goto bad_usage;
			break;
		case 'd':
			base = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			goto bad_usage;
		}
	}
	if (optind != argc)
		goto bad_usage;
	if (!base)
		base = getenv("TMPDIR") ? getenv("TMPDIR") : "/var/tmp";
	snprintf(dir, sizeof(dir), "%s/rewind-bench-store-XXXXXX", base);
	if (!mkdtemp(dir)) {
		fprintf(stderr, "rewind-bench: store: cannot create %s: %s\n", dir,
			strerror(errno));
		return 1;
	}

	size_t bytes = (size_t)n * STORE_PAGE_SIZE;
	uint64_t map = (uint64_t)bytes * 2 * (rounds + 2) + (256ull << 20);
	pages = malloc(bytes);
	dst = malloc(bytes);
	if (!pages || !dst) {
		rc = -ENOMEM;
		goto out;
	}
	memset(dst, 0, bytes);

	struct store_open_opts so = { .flags = STORE_OPEN_CREATE,
				      .initial_map_size = map,
				      .stage_cache_bytes = bytes + (8ull << 20) };
	snprintf(path, sizeof(path), "%s/store", dir);
	rc = store_open(path, &so, &s);
	if (rc)
		goto out;
	snprintf(path, sizeof(path), "%s/raw", dir);
	rc = raw_open(&raw, path, map);
	if (rc)
		goto out;

	/* the parent checkpoint and the raw baseline's first pages */
	fill_random(pages, n, 1);
	rc = store_round(s, &parent, pages, n, &ns);
	if (!rc)
		rc = raw_round(&raw, 0, pages, n, &ns);
	for (uint64_t r = 0; !rc && r < rounds; r++) {
		fill_random(pages, n, 1000 + r);
		if (r % 2) {
			rc = raw_round(&raw, n * (r + 1), pages, n, &wr[r]);
			if (!rc)
				rc = store_round(s, &parent, pages, n, &ws[r]);
		} else {
			rc = store_round(s, &parent, pages, n, &ws[r]);
			if (!rc)
				rc = raw_round(&raw, n * (r + 1), pages, n, &wr[r]);
		}
	}
	if (rc)
		goto out;

	rc = store_snap_open(s, parent, &sn);
	if (!rc)
		rc = store_snap_read(sn, NULL, 0, n, dst);
	for (uint64_t r = 0; !rc && r < rounds; r++) {
		uint64_t t0 = rw_now_ns();

		rc = store_snap_read(sn, NULL, 0, n, dst);
		rs[r] = rw_now_ns() - t0;
		if (!rc && memcmp(dst, pages, bytes))
			rc = RW_ECORRUPT;
		memset(dst, (int)r, bytes);
		t0 = rw_now_ns();
		if (!rc)
			rc = store_snap_foreach_run(sn, NULL, 0, n, copy_run, dst);
		ru[r] = rw_now_ns() - t0;
		if (!rc && memcmp(dst, pages, bytes))
			rc = RW_ECORRUPT;
		memset(dst, (int)r + 1, bytes);
		t0 = rw_now_ns();
		memcpy(dst, pages, bytes);
		mc[r] = rw_now_ns() - t0;
		if (dst[bytes - 1] != pages[bytes - 1])
			rc = RW_ECORRUPT;
	}
	if (rc)
		goto out;

	double sn_pp = (double)median(ws, (int)rounds) / (double)n;
	double raw_pp = (double)median(wr, (int)rounds) / (double)n;
	double rd = (double)bytes / (double)median(rs, (int)rounds);
	double run = (double)bytes / (double)median(ru, (int)rounds);
	double mcp = (double)bytes / (double)median(mc, (int)rounds);
	printf("{\"bench\":\"store\",\"pages\":%llu,\"store_ns_per_page\":%.1f,"
	       "\"lmdb_raw_ns_per_page\":%.1f,\"ratio\":%.3f,\"read_gbps\":%.2f,"
	       "\"run_gbps\":%.2f,\"memcpy_gbps\":%.2f}\n",
	       (unsigned long long)n, sn_pp, raw_pp, sn_pp / raw_pp, rd, run, mcp);
	fflush(stdout);
out:
	if (rc)
		fprintf(stderr, "rewind-bench: store: %s\n", rw_strerror(rc));
	store_snap_close(sn);
	store_close(s);
	if (raw.env)
		mdb_env_close(raw.env);
	free(pages);
	free(dst);
	rm_tree(dir);
	return rc ? 1 : 0;

bad_usage:
	usage(stderr);
	return 2;
}
