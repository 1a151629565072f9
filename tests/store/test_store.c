/*
 * test_store.c - the store's data model: dedup, holes, tree sharing, exact
 * counts through deletes, diff, runs, disks, records, growth, opening rules.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "helpers.h"

/*
 * In sanitizer builds: Criterion's runner keeps one small allocation of its
 * own until exit; it is not ours to free.
 */
__attribute__((used)) const char *__lsan_default_suppressions(void);
__attribute__((used)) const char *__lsan_default_suppressions(void)
{
	return "leak:libcriterion.so\n";
}

STORE_SUITE(store, "store", 60);

struct ranges {
	uint64_t r[8][2];
	unsigned n;
};

static int range_cb(void *arg, uint64_t first, uint64_t n)
{
	struct ranges *g = arg;

	if (g->n < 8) {
		g->r[g->n][0] = first;
		g->r[g->n][1] = n;
	}
	g->n++;
	return 0;
}

Test(store, roundtrip_reopen)
{
	struct store *s = open_store(dir, 0);
	struct store_ckpt *c;
	struct store_snap *sn;
	uint8_t *buf = malloc(8 * PG), *exp = malloc(PG);
	uint64_t idx[3] = { 0, 5, 7 }, id;
	void *data;
	size_t len;
	uint32_t ver;

	cr_assert_eq(store_ckpt_begin(s, 0, &c), 0);
	cr_assert_eq(store_ckpt_set_size(c, NULL, 8), 0);
	cr_assert_eq(store_ckpt_set_label(c, "boot"), 0);
	cr_assert_eq(store_ckpt_set_config(c, "cfg-bytes", 9), 0);
	for (int i = 0; i < 3; i++)
		page_fill(buf + i * PG, 100 + i);
	cr_assert_eq(store_ckpt_add_pages(c, NULL, idx, buf, 3), 0);
	cr_assert_eq(store_ckpt_put_record(c, "vcpu/0", 3, "regs", 4), 0);
	cr_assert_eq(store_ckpt_put_record(c, "vcpu/0", 3, "regs", 4), -EEXIST);
	cr_assert_eq(store_ckpt_put_record(c, "dev/serial/ttyS0", 1, "", 0), 0);
	cr_assert_eq(store_ckpt_commit(c, &id, NULL), 0);
	cr_assert_eq(id, 1);
	store_close(s);

	s = open_store(dir, 0);
	cr_assert_eq(store_snap_open(s, id, &sn), 0);
	const struct store_ckpt_info *in = store_snap_info(sn);
	cr_assert_str_eq(in->label, "boot");
	cr_assert_eq(in->config_len, 9);
	cr_assert_eq(memcmp(in->config, "cfg-bytes", 9), 0);
	cr_assert_eq(in->mem.npages, 8);
	cr_assert_eq(in->mem.present, 3);
	cr_assert_eq(in->nrecords, 2);
	cr_assert_eq(in->parent, 0);
	cr_assert_eq(store_snap_read(sn, NULL, 0, 8, buf), 0);
	for (uint64_t p = 0; p < 8; p++) {
		int k = p == 0 ? 0 : p == 5 ? 1 : p == 7 ? 2 : -1;
		if (k < 0)
			memset(exp, 0, PG);
		else
			page_fill(exp, 100 + k);
		cr_assert_eq(memcmp(buf + p * PG, exp, PG), 0, "page %lu", (unsigned long)p);
	}
	cr_assert_eq(store_snap_read(sn, NULL, 7, 2, buf), -ERANGE);
	cr_assert_eq(store_snap_record(sn, "vcpu/0", &data, &len, &ver), 0);
	cr_assert_eq(len, 4);
	cr_assert_eq(ver, 3);
	cr_assert_eq(memcmp(data, "regs", 4), 0);
	free(data);
	cr_assert_eq(store_snap_record(sn, "vcpu/1", &data, &len, &ver), RW_ENOTFOUND);
	store_snap_close(sn);
	cr_assert_eq(store_snap_open(s, 99, &sn), RW_ENOTFOUND);
	verify_clean(s);
	store_close(s);
	free(buf);
	free(exp);
}

Test(store, dedup)
{
	struct store *s = open_store(dir, 0);
	struct store_commit_stats st;
	struct store_stats ss;
	uint64_t idx[100], seed[100];

	for (int i = 0; i < 100; i++) {
		idx[i] = (uint64_t)i;
		seed[i] = 1 + (uint64_t)(i % 50);  /* pages i and i+50 are equal */
	}
	commit_pages(s, 0, 100, idx, seed, 100, &st);
	cr_assert_eq(st.pages, 100);
	cr_assert_eq(st.new_chunks - st.new_nodes, 50, "new page chunks %lu",
		     (unsigned long)(st.new_chunks - st.new_nodes));
	cr_assert_eq(st.dedup_hits, 50);
	/* the same content again, from scratch: nothing new but the record */
	commit_pages(s, 0, 100, idx, seed, 100, &st);
	cr_assert_eq(st.new_chunks, 0);
	cr_assert_eq(st.dedup_hits, 100);
	cr_assert_eq(store_stats(s, &ss), 0);
	cr_assert_eq(ss.page_chunks, 50);
	cr_assert_eq(ss.page_bytes, 50 * PG);
	cr_assert_eq(ss.logical_bytes, 200 * PG);
	cr_assert_float_eq(ss.dedup_ratio, 4.0, 1e-9);
	verify_clean(s);
	store_close(s);
}

Test(store, zero_pages_are_holes)
{
	struct store *s = open_store(dir, 0);
	struct store_commit_stats st;
	struct store_stats ss;
	struct store_snap *sn;
	uint64_t idx[1000], seed[1000];
	uint8_t *buf = malloc(1000 * PG), *zero = calloc(1, PG);

	for (int i = 0; i < 1000; i++) {
		idx[i] = (uint64_t)i;
		seed[i] = i % 2 ? 7000 + (uint64_t)i : 0;
	}
	uint64_t a = commit_pages(s, 0, 1000, idx, seed, 1000, &st);
	cr_assert_eq(st.zero_pages, 500);
	cr_assert_eq(st.new_chunks - st.new_nodes, 500);
	cr_assert_eq(store_stats(s, &ss), 0);
	cr_assert_eq(ss.page_chunks, 500);
	cr_assert_eq(store_snap_open(s, a, &sn), 0);
	cr_assert_eq(store_snap_info(sn)->mem.present, 500);
	cr_assert_eq(store_snap_read(sn, NULL, 0, 1000, buf), 0);
	for (int i = 0; i < 1000; i += 2)
		cr_assert_eq(memcmp(buf + (size_t)i * PG, zero, PG), 0);
	store_snap_close(sn);

	/* zeroing a page in a child makes a hole there */
	uint64_t z = 1, zs = 0;
	uint64_t b = commit_pages(s, a, 1000, &z, &zs, 1, &st);
	cr_assert_eq(store_snap_open(s, b, &sn), 0);
	cr_assert_eq(store_snap_info(sn)->mem.present, 499);
	cr_assert_eq(store_snap_read(sn, NULL, 1, 1, buf), 0);
	cr_assert_eq(memcmp(buf, zero, PG), 0);
	store_snap_close(sn);

	/* an all-zero memory stores nothing at all */
	uint64_t c = commit_pages(s, 0, 1000, idx, (uint64_t[1000]){ 0 }, 1000, &st);
	cr_assert_eq(st.new_chunks, 0);
	cr_assert_eq(store_snap_open(s, c, &sn), 0);
	cr_assert(store_hash_is_zero(&store_snap_info(sn)->mem.root));
	store_snap_close(sn);
	verify_clean(s);
	store_close(s);
	free(buf);
	free(zero);
}

/* One changed page in a 1 GiB map costs one page plus the tree path. */
Test(store, tree_sharing_1g)
{
	struct store *s = open_store(dir, STORE_OPEN_NOSYNC);
	const uint64_t npages = (1ull << 30) / PG;
	struct store_ckpt *c;
	struct store_commit_stats st;
	uint8_t *leaf = malloc(STORE_FANOUT * PG);
	uint64_t a, b, bytes, chunks;
	unsigned height;

	/* every leaf holds distinct content (one page pattern per leaf) */
	cr_assert_eq(store_ckpt_begin(s, 0, &c), 0);
	cr_assert_eq(store_ckpt_set_size(c, NULL, npages), 0);
	for (uint64_t l = 0; l < npages / STORE_FANOUT; l++) {
		page_fill(leaf, l + 1);
		for (unsigned i = 1; i < STORE_FANOUT; i++)
			memcpy(leaf + i * PG, leaf, PG);
		cr_assert_eq(store_ckpt_add_range(c, NULL, l * STORE_FANOUT, leaf,
						  STORE_FANOUT), 0);
	}
	cr_assert_eq(store_ckpt_commit(c, &a, &st), 0);
	cr_assert_eq(st.new_chunks - st.new_nodes, npages / STORE_FANOUT);

	struct store_snap *sn;
	cr_assert_eq(store_snap_open(s, a, &sn), 0);
	height = store_snap_info(sn)->mem.height;
	store_snap_close(sn);
	cr_assert_eq(height, 3);

	uint64_t idx = 123457, seed = 999999;
	b = commit_pages(s, a, npages, &idx, &seed, 1, &st);
	cr_assert_eq(st.new_chunks, 1 + height, "new chunks %lu", (unsigned long)st.new_chunks);
	cr_assert_eq(st.new_nodes, height);
	cr_assert_leq(st.new_bytes, PG + height * (8 + STORE_FANOUT * 16));
	cr_assert_eq(store_exclusive(s, b, &bytes, &chunks), 0);
	cr_assert_eq(chunks, 1 + height);
	cr_assert_eq(bytes, st.new_bytes);

	struct store_diff_stats ds;
	struct ranges g = { 0 };
	cr_assert_eq(store_diff(s, a, b, NULL, range_cb, &g, &ds), 0);
	cr_assert_eq(g.n, 1);
	cr_assert_eq(g.r[0][0], idx);
	cr_assert_eq(g.r[0][1], 1);
	cr_assert_eq(ds.changed, 1);
	cr_assert_eq(ds.nodes_read, 2 * height, "diff read %lu nodes",
		     (unsigned long)ds.nodes_read);
	verify_clean(s);
	store_close(s);
	free(leaf);
}

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* A branching history, deleted in random order; verify after each. */
Test(store, delete_random_order)
{
	struct store *s = open_store(dir, STORE_OPEN_NOSYNC);
	enum { N = 14, PAGES = 3000 };
	uint64_t ids[N], x = 0x1234567;
	uint64_t idx[64], seed[64];
	struct store_stats ss;

	for (int k = 0; k < N; k++) {
		uint64_t parent = k ? ids[rnd(&x) % (uint64_t)k] : 0;
		size_t n = k ? 40 : 64;

		for (size_t i = 0; i < n; i++) {
			idx[i] = rnd(&x) % PAGES;
			/* some pages repeat content across checkpoints, some are holes */
			uint64_t r = rnd(&x) % 10;
			seed[i] = r == 0 ? 0 : r < 3 ? 1 + r : 1000 + rnd(&x) % 100000;
		}
		ids[k] = commit_pages(s, parent, k % 3 ? PAGES : PAGES + 5000, idx, seed, n,
				      NULL);
	}
	verify_clean(s);
	for (int k = N - 1; k > 0; k--) {
		int j = (int)(rnd(&x) % (uint64_t)(k + 1));
		uint64_t t = ids[j];
		ids[j] = ids[k];
		ids[k] = t;
	}
	for (int k = 0; k < N; k++) {
		cr_assert_eq(store_delete(s, ids[k], NULL), 0);
		verify_clean(s);
		/* the others still read */
		for (int j = k + 1; j < N; j++) {
			struct store_snap *sn;
			uint8_t *buf = malloc(PAGES * PG);

			cr_assert_eq(store_snap_open(s, ids[j], &sn), 0);
			cr_assert_eq(store_snap_read(sn, NULL, 0, PAGES, buf), 0);
			store_snap_close(sn);
			free(buf);
		}
	}
	cr_assert_eq(store_delete(s, ids[0], NULL), RW_ENOTFOUND);
	cr_assert_eq(store_stats(s, &ss), 0);
	cr_assert_eq(ss.checkpoints, 0);
	cr_assert_eq(ss.chunks, 0);
	cr_assert_eq(ss.records, 0);
	store_close(s);
}

struct runs {
	uint64_t first[64], n[64];
	unsigned count;
	uint64_t bad;
};

static int run_cb(void *arg, uint64_t first, uint64_t n, const void *data)
{
	struct runs *r = arg;
	uint8_t exp[PG];

	if (r->count < 64) {
		r->first[r->count] = first;
		r->n[r->count] = n;
	}
	r->count++;
	for (uint64_t i = 0; i < n; i++) {
		page_fill(exp, 50 + first + i);
		if (memcmp((const uint8_t *)data + i * PG, exp, PG))
			r->bad++;
	}
	return 0;
}

Test(store, runs_and_diff)
{
	struct store *s = open_store(dir, 0);
	uint64_t idx[600], seed[600];
	size_t n = 0;
	struct store_snap *sn;
	struct runs r = { 0 };

	/* runs: [10,20) [100,400) [5000,5001) */
	for (uint64_t i = 10; i < 20; i++, n++)
		idx[n] = i, seed[n] = 50 + i;
	for (uint64_t i = 100; i < 400; i++, n++)
		idx[n] = i, seed[n] = 50 + i;
	idx[n] = 5000, seed[n] = 5050, n++;
	uint64_t a = commit_pages(s, 0, 8192, idx, seed, n, NULL);
	cr_assert_eq(store_snap_open(s, a, &sn), 0);
	cr_assert_eq(store_snap_foreach_run(sn, NULL, 0, 8192, run_cb, &r), 0);
	store_snap_close(sn);
	cr_assert_eq(r.bad, 0);
	cr_assert_eq(r.count, 4); /* 300 pages come as 256 + 44 */
	cr_assert_eq(r.first[0], 10);
	cr_assert_eq(r.n[0], 10);
	cr_assert_eq(r.first[1], 100);
	cr_assert_eq(r.n[1], STORE_RUN_MAX);
	cr_assert_eq(r.first[2], 100 + STORE_RUN_MAX);
	cr_assert_eq(r.n[2], 300 - STORE_RUN_MAX);
	cr_assert_eq(r.first[3], 5000);

	/* diff: change 150..159 and 7000, zero 12 */
	n = 0;
	for (uint64_t i = 150; i < 160; i++, n++)
		idx[n] = i, seed[n] = 90000 + i;
	idx[n] = 7000, seed[n] = 1, n++;
	idx[n] = 12, seed[n] = 0, n++;
	idx[n] = 300, seed[n] = 50 + 300, n++;  /* same content: no change */
	uint64_t b = commit_pages(s, a, 8192, idx, seed, n, NULL);
	struct ranges g = { 0 };
	struct store_diff_stats ds;
	cr_assert_eq(store_diff(s, a, b, NULL, range_cb, &g, &ds), 0);
	cr_assert_eq(g.n, 3);
	cr_assert_eq(g.r[0][0], 12);
	cr_assert_eq(g.r[0][1], 1);
	cr_assert_eq(g.r[1][0], 150);
	cr_assert_eq(g.r[1][1], 10);
	cr_assert_eq(g.r[2][0], 7000);
	cr_assert_eq(ds.changed, 12);
	/* diff of a checkpoint with itself reads nothing */
	memset(&g, 0, sizeof(g));
	cr_assert_eq(store_diff(s, b, b, NULL, range_cb, &g, &ds), 0);
	cr_assert_eq(g.n, 0);
	cr_assert_eq(ds.nodes_read, 0);
	cr_assert_eq(store_diff(s, a, 77, NULL, range_cb, &g, &ds), RW_ENOTFOUND);
	verify_clean(s);
	store_close(s);
}

Test(store, resize_map)
{
	struct store *s = open_store(dir, 0);
	uint64_t idx[300], seed[300];
	struct store_snap *sn;
	uint8_t *buf = malloc(5000 * PG), *exp = malloc(PG);

	for (int i = 0; i < 300; i++)
		idx[i] = (uint64_t)i * 16, seed[i] = 10 + (uint64_t)i;
	uint64_t a = commit_pages(s, 0, 4800, idx, seed, 300, NULL);
	/* shrink to 70 pages: only page 0, 16, 32, 48, 64 remain */
	uint64_t b = commit_pages(s, a, 70, NULL, NULL, 0, NULL);
	cr_assert_eq(store_snap_open(s, b, &sn), 0);
	cr_assert_eq(store_snap_info(sn)->mem.present, 5);
	cr_assert_eq(store_snap_info(sn)->mem.height, 2);
	store_snap_close(sn);
	/* grow again: the dropped pages do not come back */
	uint64_t i2 = 300000, s2 = 4242;
	uint64_t c = commit_pages(s, b, 400000, &i2, &s2, 1, NULL);
	cr_assert_eq(store_snap_open(s, c, &sn), 0);
	cr_assert_eq(store_snap_info(sn)->mem.present, 6);
	cr_assert_eq(store_snap_info(sn)->mem.height, 4);
	cr_assert_eq(store_snap_read(sn, NULL, 0, 100, buf), 0);
	for (int p = 0; p < 100; p++) {
		if (p % 16 == 0 && p < 70)
			page_fill(exp, 10 + (uint64_t)p / 16);
		else
			memset(exp, 0, PG);
		cr_assert_eq(memcmp(buf + (size_t)p * PG, exp, PG), 0, "page %d", p);
	}
	cr_assert_eq(store_snap_read(sn, NULL, 300000, 1, buf), 0);
	page_fill(exp, 4242);
	cr_assert_eq(memcmp(buf, exp, PG), 0);
	store_snap_close(sn);
	verify_clean(s);
	cr_assert_eq(store_delete(s, a, NULL), 0);
	verify_clean(s);
	cr_assert_eq(store_delete(s, c, NULL), 0);
	verify_clean(s);
	cr_assert_eq(store_delete(s, b, NULL), 0);
	verify_clean(s);
	store_close(s);
	free(buf);
	free(exp);
}

Test(store, disks)
{
	struct store *s = open_store(dir, 0);
	struct store_ckpt *c;
	struct store_snap *sn;
	uint8_t *blk = malloc(4 * PG), *got = malloc(4 * PG);
	uint64_t a, b, idx[2] = { 3, 900 };

	cr_assert_eq(store_ckpt_begin(s, 0, &c), 0);
	cr_assert_eq(store_ckpt_set_size(c, NULL, 16), 0);
	cr_assert_eq(store_ckpt_set_size(c, "data", 1024), 0);
	cr_assert_eq(store_ckpt_set_size(c, "root", 64), 0);
	page_fill(blk, 1);
	page_fill(blk + PG, 2);
	cr_assert_eq(store_ckpt_add_pages(c, "data", idx, blk, 2), 0);
	cr_assert_eq(store_ckpt_add_range(c, "root", 0, blk, 1), 0);
	cr_assert_eq(store_ckpt_add_range(c, "nope", 0, blk, 1), RW_ENOTFOUND);
	cr_assert_eq(store_ckpt_set_label(c, "x"), RW_EPOISONED);
	store_ckpt_abort(c);

	cr_assert_eq(store_ckpt_begin(s, 0, &c), 0);
	cr_assert_eq(store_ckpt_set_size(c, "data", 1024), 0);
	cr_assert_eq(store_ckpt_set_size(c, "root", 64), 0);
	cr_assert_eq(store_ckpt_add_pages(c, "data", idx, blk, 2), 0);
	cr_assert_eq(store_ckpt_add_range(c, "root", 0, blk, 1), 0);
	cr_assert_eq(store_ckpt_commit(c, &a, NULL), 0);

	/* child: inherits both disks, changes one block, drops "root" */
	cr_assert_eq(store_ckpt_begin(s, a, &c), 0);
	page_fill(blk + 2 * PG, 3);
	cr_assert_eq(store_ckpt_add_range(c, "data", 4, blk + 2 * PG, 1), 0);
	cr_assert_eq(store_ckpt_drop_disk(c, "root"), 0);
	cr_assert_eq(store_ckpt_drop_disk(c, "root"), RW_ENOTFOUND);
	cr_assert_eq(store_ckpt_commit(c, &b, NULL), 0);

	cr_assert_eq(store_snap_open(s, b, &sn), 0);
	cr_assert_eq(store_snap_info(sn)->ndisks, 1);
	cr_assert_not_null(store_snap_map(sn, "data"));
	cr_assert_null(store_snap_map(sn, "root"));
	cr_assert_eq(store_snap_map(sn, "data")->present, 3);
	cr_assert_eq(store_snap_read(sn, "data", 3, 2, got), 0);
	cr_assert_eq(memcmp(got, blk, PG), 0);
	cr_assert_eq(memcmp(got + PG, blk + 2 * PG, PG), 0);
	cr_assert_eq(store_snap_read(sn, "data", 900, 1, got), 0);
	cr_assert_eq(memcmp(got, blk + PG, PG), 0);
	cr_assert_eq(store_snap_read(sn, "root", 0, 1, got), RW_ENOTFOUND);
	store_snap_close(sn);

	struct ranges g = { 0 };
	cr_assert_eq(store_diff(s, a, b, "data", range_cb, &g, NULL), 0);
	cr_assert_eq(g.n, 1);
	cr_assert_eq(g.r[0][0], 4);
	cr_assert_eq(g.r[0][1], 1);
	memset(&g, 0, sizeof(g));
	cr_assert_eq(store_diff(s, a, b, "root", range_cb, &g, NULL), 0);
	cr_assert_eq(g.n, 1);
	cr_assert_eq(g.r[0][0], 0);
	cr_assert_eq(g.r[0][1], 1);
	verify_clean(s);
	cr_assert_eq(store_delete(s, a, NULL), 0);
	verify_clean(s);
	store_close(s);
	free(blk);
	free(got);
}

Test(store, map_grows_by_itself)
{
	struct store_open_opts o = { .flags = STORE_OPEN_CREATE | STORE_OPEN_NOSYNC,
				     .initial_map_size = 1 << 20 };
	struct store *s;
	struct store_ckpt *c;
	struct store_stats ss;
	uint8_t *buf = malloc(1024 * PG);
	uint64_t id;

	cr_assert_eq(store_open(dir, &o, &s), 0);
	cr_assert_eq(store_ckpt_begin(s, 0, &c), 0);
	cr_assert_eq(store_ckpt_set_size(c, NULL, 8192), 0);
	for (int k = 0; k < 8; k++) {
		for (int i = 0; i < 1024; i++)
			page_fill(buf + (size_t)i * PG, (uint64_t)k * 1024 + (uint64_t)i + 1);
		cr_assert_eq(store_ckpt_add_range(c, NULL, (uint64_t)k * 1024, buf, 1024), 0);
	}
	int rc = store_ckpt_commit(c, &id, NULL);
	cr_assert_eq(rc, 0, "commit: %s", rw_strerror(rc));
	cr_assert_eq(store_stats(s, &ss), 0);
	cr_assert_gt(ss.map_bytes, 32ull << 20);
	cr_assert_eq(ss.page_chunks, 8192);
	verify_clean(s);
	store_close(s);
	free(buf);
}

Test(store, open_rules)
{
	struct store_open_opts o = { 0 };
	struct store *s;
	char *p;
	struct stat st;

	/* missing, a file, an empty dir, a dir with a foreign data.mdb */
	cr_assert_eq(store_open(dir, NULL, &s), RW_ENOTSTORE);
	cr_assert(asprintf(&p, "%s/file", tmp) > 0);
	int fd = open(p, O_CREAT | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "hello", 5), 5);
	close(fd);
	cr_assert_eq(store_open(p, NULL, &s), RW_ENOTSTORE);
	free(p);
	cr_assert_eq(mkdir(dir, 0700), 0);
	cr_assert_eq(store_open(dir, NULL, &s), RW_ENOTSTORE);
	cr_assert(asprintf(&p, "%s/data.mdb", dir) > 0);
	fd = open(p, O_CREAT | O_WRONLY, 0600);
	char junk[8192];
	memset(junk, 0x5a, sizeof(junk));
	cr_assert_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);
	cr_assert_eq(store_open(dir, NULL, &s), RW_ENOTSTORE);
	unlink(p);
	free(p);
	rmdir(dir);

	/* creation modes */
	mode_t old = umask(0);
	s = open_store(dir, 0);
	umask(old);
	cr_assert_eq(stat(dir, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0700);
	cr_assert(asprintf(&p, "%s/data.mdb", dir) > 0);
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	free(p);
	cr_assert(asprintf(&p, "%s/lock.mdb", dir) > 0);
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	free(p);

	/* a newer format is refused, with the version it has */
	cr_assert_eq(store_test_set_format(s, STORE_FORMAT_VERSION + 1), 0);
	store_close(s);
	cr_assert_eq(store_open(dir, &o, &s), RW_EVERSION);
	cr_assert_eq(o.found_format, STORE_FORMAT_VERSION + 1);

	/* and so is an older one: its chunk layout differs */
	char *older;

	cr_assert(asprintf(&older, "%s.older", dir) > 0);
	s = open_store(older, 0);
	cr_assert_eq(store_test_set_format(s, STORE_FORMAT_VERSION - 1), 0);
	store_close(s);
	o.found_format = 0;
	cr_assert_eq(store_open(older, &o, &s), RW_EVERSION);
	cr_assert_eq(o.found_format, STORE_FORMAT_VERSION - 1);
	rm_rf(older);
	free(older);
}

Test(store, poisoned_checkpoint)
{
	struct store *s = open_store(dir, 0);
	struct store_ckpt *c;
	uint8_t pg[PG];
	uint64_t i = 10, id;
	struct store_stats ss;

	page_fill(pg, 3);
	cr_assert_eq(store_ckpt_begin(s, 0, &c), 0);
	cr_assert_eq(store_ckpt_set_size(c, NULL, 10), 0);
	cr_assert_eq(store_ckpt_add_pages(c, NULL, &i, pg, 1), -ERANGE);
	i = 1;
	cr_assert_eq(store_ckpt_add_pages(c, NULL, &i, pg, 1), RW_EPOISONED);
	cr_assert_eq(store_ckpt_put_record(c, "a", 1, "x", 1), RW_EPOISONED);
	cr_assert_eq(store_ckpt_commit(c, &id, NULL), RW_EPOISONED);
	cr_assert_eq(store_ckpt_begin(s, 5, &c), RW_ENOTFOUND);
	cr_assert_eq(store_stats(s, &ss), 0);
	cr_assert_eq(ss.checkpoints, 0);
	cr_assert_eq(ss.chunks, 0);

	/* a parent deleted between begin and commit */
	uint64_t a = commit_pages(s, 0, 4, &i, (uint64_t[]){ 5 }, 1, NULL);
	cr_assert_eq(store_ckpt_begin(s, a, &c), 0);
	cr_assert_eq(store_delete(s, a, NULL), 0);
	cr_assert_eq(store_ckpt_add_pages(c, NULL, &i, pg, 1), 0);
	cr_assert_eq(store_ckpt_commit(c, &id, NULL), RW_ENOTFOUND);
	cr_assert_eq(store_stats(s, &ss), 0);
	cr_assert_eq(ss.chunks, 0);
	verify_clean(s);
	store_close(s);
}

Test(store, gc_finds_nothing_after_clean_run_and_repairs_leftovers)
{
	struct store *s = open_store(dir, 0);
	struct store_gc_stats g;
	uint64_t idx[20], seed[20];
	uint8_t pg[PG];
	struct store_hash orphan, leak;

	for (int i = 0; i < 20; i++)
		idx[i] = (uint64_t)i * 100, seed[i] = 300 + (uint64_t)i;
	uint64_t a = commit_pages(s, 0, 5000, idx, seed, 20, NULL);
	commit_pages(s, a, 5000, idx, seed + 1, 10, NULL);
	cr_assert_eq(store_delete(s, a, NULL), 0);
	cr_assert_eq(store_gc(s, false, &g), 0);
	cr_assert_eq(g.chunks_freed + g.refs_fixed + g.bodies_freed + g.records_freed, 0);

	/* leftovers: a chunk nothing references, a count one too high */
	page_fill(pg, 77777);
	cr_assert_eq(store_test_orphan_chunk(s, pg, &orphan), 0);
	page_fill(pg, 305);
	store_test_page_key(s, pg, &leak);
	cr_assert_eq(store_test_ref(s, &leak, 1), 0);
	struct vcount v = { 0 };
	cr_assert_eq(store_verify(s, vcount_cb, &v, NULL), 0);
	cr_assert_eq(v.n, 2, "%u problems: %s", v.n, v.first);
	cr_assert_eq(v.kinds[STORE_PROB_UNREFERENCED], 1);
	cr_assert_eq(v.kinds[STORE_PROB_REFCOUNT], 1);

	cr_assert_eq(store_gc(s, true, &g), 0);
	cr_assert_eq(g.chunks_freed, 1);
	cr_assert_eq(g.refs_fixed, 1);
	cr_assert_eq(store_gc(s, false, &g), 0);
	cr_assert_eq(g.chunks_freed, 1);
	cr_assert_eq(g.bytes_freed, PG);
	cr_assert_eq(g.refs_fixed, 1);
	verify_clean(s);
	cr_assert_eq(store_gc(s, false, &g), 0);
	cr_assert_eq(g.chunks_freed + g.refs_fixed, 0);
	store_close(s);
}

/* Readers in other processes while this one writes. */
Test(store, readers_while_writing)
{
	struct store *s = open_store(dir, STORE_OPEN_NOSYNC);
	uint64_t idx[64], seed[64];
	pid_t kids[3];

	for (int i = 0; i < 64; i++)
		idx[i] = (uint64_t)i, seed[i] = 1 + (uint64_t)i;
	commit_pages(s, 0, 64, idx, seed, 64, NULL);
	store_close(s);
	for (int k = 0; k < 3; k++) {
		kids[k] = fork();
		cr_assert_geq(kids[k], 0);
		if (kids[k] == 0) {
			struct store *r;
			struct store_open_opts o = { 0 };
			uint8_t *buf = malloc(64 * PG), exp[PG];
			int bad = 0;

			if (store_open(dir, &o, &r))
				_exit(2);
			for (int it = 0; it < 200 && !bad; it++) {
				struct store_snap *sn;

				if (store_snap_open(r, 1, &sn)) {
					bad = 3;
					break;
				}
				if (store_snap_read(sn, NULL, 0, 64, buf))
					bad = 4;
				for (int i = 0; i < 64 && !bad; i++) {
					page_fill(exp, 1 + (uint64_t)i);
					if (memcmp(buf + (size_t)i * PG, exp, PG))
						bad = 5;
				}
				store_snap_close(sn);
			}
			store_close(r);
			free(buf);
			_exit(bad);
		}
	}
	s = open_store(dir, STORE_OPEN_NOSYNC);
	uint64_t parent = 1;
	for (int k = 0; k < 30; k++) {
		for (int i = 0; i < 64; i++)
			seed[i] = 100000 + (uint64_t)k * 64 + (uint64_t)i;
		parent = commit_pages(s, parent, 64, idx, seed, 64, NULL);
	}
	for (int k = 0; k < 3; k++) {
		int st;
		cr_assert_eq(waitpid(kids[k], &st, 0), kids[k]);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "reader %d failed: %d", k,
			  WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	}
	verify_clean(s);
	store_close(s);
}
