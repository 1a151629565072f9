/*
 * test_store_read.c - reading whole maps back: store_snap_read() and
 * store_snap_foreach_run() across lookup windows, on one thread and on two,
 * with holes, pages shared within the map, damage, and a callback that
 * stops the walk.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

#define NP 3000u
/* a page of its own content, damaged in the damage tests */
#define BAD_PAGE 1500u
#define MAX_RUNS 512u

STORE_SUITE(store_read, "store-read", 120);

/* Content seed of page i (0: a hole). Some pages share one content. */
static uint64_t seed_of(uint64_t i)
{
	if (i % 97 == 5 || (i >= 1000 && i < 1300) || (i > 2000 && i % 7 == 3))
		return 0;
	if (i % 50 == 7)
		return 777;
	return 1000 + i;
}

/* Window configurations: window pages, pages from which two threads work. */
static const uint32_t configs[][2] = {
	{ 0, 0 },                 /* the defaults: one window, one thread */
	{ 300, 64 },              /* many windows, two threads */
	{ 300, UINT32_MAX },      /* many windows, one thread */
	{ 257, 100 },             /* windows not a multiple of a run */
	{ 1, UINT32_MAX },        /* a window per page */
};
#define NCONFIGS (sizeof(configs) / sizeof(configs[0]))

static uint64_t build(struct store *s, uint8_t **image)
{
	uint64_t *idx = malloc(NP * sizeof(*idx)), *seed = malloc(NP * sizeof(*seed));
	uint8_t *img = calloc(NP, PG);
	size_t n = 0;

	cr_assert(idx && seed && img);
	for (uint64_t i = 0; i < NP; i++) {
		if (!seed_of(i))
			continue;
		idx[n] = i;
		seed[n++] = seed_of(i);
		page_fill(img + i * PG, seed_of(i));
	}
	uint64_t id = commit_pages(s, 0, NP, idx, seed, n, NULL);
	free(idx);
	free(seed);
	*image = img;
	return id;
}

struct runlog {
	uint64_t first[MAX_RUNS], n[MAX_RUNS];
	unsigned count;
	unsigned bad;             /* runs whose data differ from the image */
	unsigned stop_at;         /* return 42 from this call (1-based), 0 = never */
	const uint8_t *image;
};

static int log_run(void *arg, uint64_t first, uint64_t n, const void *data)
{
	struct runlog *r = arg;

	if (r->count < MAX_RUNS) {
		r->first[r->count] = first;
		r->n[r->count] = n;
	}
	r->count++;
	if (memcmp(data, r->image + first * PG, n * PG))
		r->bad++;
	return r->count == r->stop_at ? 42 : 0;
}

/* The runs a walk of [first, first + n) must give: maximal, cut at RUN_MAX. */
static void expect_runs(uint64_t first, uint64_t n, struct runlog *e)
{
	e->count = 0;
	for (uint64_t i = first; i < first + n; i++) {
		if (!seed_of(i))
			continue;
		if (e->count && e->first[e->count - 1] + e->n[e->count - 1] == i &&
		    e->n[e->count - 1] < STORE_RUN_MAX) {
			e->n[e->count - 1]++;
			continue;
		}
		cr_assert_lt(e->count, MAX_RUNS);
		e->first[e->count] = i;
		e->n[e->count++] = 1;
	}
}

static void check_runs(struct store_snap *sn, uint64_t first, uint64_t n,
		       const uint8_t *image, unsigned cfg)
{
	struct runlog *got = calloc(1, sizeof(*got)), *exp = calloc(1, sizeof(*exp));

	got->image = image;
	expect_runs(first, n, exp);
	cr_assert_eq(store_snap_foreach_run(sn, NULL, first, n, log_run, got), 0);
	cr_assert_eq(got->bad, 0, "config %u: run data differ", cfg);
	cr_assert_eq(got->count, exp->count, "config %u: %u runs, want %u", cfg,
		     got->count, exp->count);
	for (unsigned i = 0; i < exp->count; i++) {
		cr_assert_eq(got->first[i], exp->first[i], "config %u run %u", cfg, i);
		cr_assert_eq(got->n[i], exp->n[i], "config %u run %u", cfg, i);
	}
	free(got);
	free(exp);
}

Test(store_read, whole_and_partial_reads_in_every_window_config)
{
	struct store *s = open_store(dir, 0);
	uint8_t *image, *buf = malloc((size_t)NP * PG);
	uint64_t id = build(s, &image);
	static const uint64_t ranges[][2] = {
		{ 0, NP }, { 1, NP - 2 }, { 999, 400 }, { 2047, 1 }, { 1000, 300 },
		{ 64 * 7 - 3, 64 * 5 + 9 },
	};

	for (unsigned c = 0; c < NCONFIGS; c++) {
		struct store_snap *sn;

		store_test_set_read_window(s, configs[c][0], configs[c][1]);
		cr_assert_eq(store_snap_open(s, id, &sn), 0);
		for (unsigned r = 0; r < sizeof(ranges) / sizeof(ranges[0]); r++) {
			uint64_t first = ranges[r][0], n = ranges[r][1];

			memset(buf, 0xa5, n * PG);
			cr_assert_eq(store_snap_read(sn, NULL, first, n, buf), 0);
			cr_assert(!memcmp(buf, image + first * PG, n * PG),
				  "config %u range %u: data differ", c, r);
			check_runs(sn, first, n, image, c);
		}
		store_snap_close(sn);
	}
	free(image);
	free(buf);
	store_close(s);
}

Test(store_read, damaged_page_refused_and_runs_before_it_delivered)
{
	struct store *s = open_store(dir, 0);
	uint8_t *image, *buf = malloc((size_t)NP * PG);
	uint64_t id = build(s, &image);
	char *data;

	cr_assert(seed_of(BAD_PAGE) == 1000 + BAD_PAGE);
	store_close(s);
	cr_assert(asprintf(&data, "%s/data.mdb", dir) > 0);
	cr_assert_eq(flip_in_file(data, image + BAD_PAGE * PG + 2000, 64), 0,
		     "page bytes not found in the file");
	free(data);
	s = open_store(dir, 0);

	struct runlog *exp = calloc(1, sizeof(*exp));
	unsigned k = 0;

	expect_runs(0, NP, exp);
	while (exp->first[k] + exp->n[k] <= BAD_PAGE)
		k++;
	cr_assert_leq(exp->first[k], BAD_PAGE);

	for (unsigned c = 0; c < NCONFIGS; c++) {
		struct store_snap *sn;
		struct runlog *got = calloc(1, sizeof(*got));

		store_test_set_read_window(s, configs[c][0], configs[c][1]);
		cr_assert_eq(store_snap_open(s, id, &sn), 0);
		cr_assert_eq(store_snap_read(sn, NULL, 0, NP, buf), RW_ECHECKSUM,
			     "config %u", c);
		cr_assert_eq(store_snap_read(sn, NULL, BAD_PAGE, 1, buf), RW_ECHECKSUM);
		/* the pages around it still read */
		cr_assert_eq(store_snap_read(sn, NULL, 0, BAD_PAGE, buf), 0);
		cr_assert(!memcmp(buf, image, (size_t)BAD_PAGE * PG));
		cr_assert_eq(store_snap_read(sn, NULL, BAD_PAGE + 1, NP - BAD_PAGE - 1, buf), 0);
		cr_assert(!memcmp(buf, image + (BAD_PAGE + 1) * PG,
				  (size_t)(NP - BAD_PAGE - 1) * PG));

		/* runs: every run before the damaged one, then the error */
		got->image = image;
		cr_assert_eq(store_snap_foreach_run(sn, NULL, 0, NP, log_run, got),
			     RW_ECHECKSUM, "config %u", c);
		cr_assert_eq(got->bad, 0);
		cr_assert_eq(got->count, k, "config %u: %u runs before the damage, want %u",
			     c, got->count, k);
		for (unsigned i = 0; i < k; i++) {
			cr_assert_eq(got->first[i], exp->first[i]);
			cr_assert_eq(got->n[i], exp->n[i]);
		}
		free(got);
		store_snap_close(sn);
	}
	free(exp);
	free(image);
	free(buf);
	store_close(s);
}

Test(store_read, callback_stops_the_walk)
{
	struct store *s = open_store(dir, 0);
	uint8_t *image;
	uint64_t id = build(s, &image);

	for (unsigned c = 0; c < NCONFIGS; c++) {
		struct store_snap *sn;

		store_test_set_read_window(s, configs[c][0], configs[c][1]);
		cr_assert_eq(store_snap_open(s, id, &sn), 0);
		for (unsigned stop = 1; stop <= 9; stop += 4) {
			struct runlog *got = calloc(1, sizeof(*got));

			got->image = image;
			got->stop_at = stop;
			cr_assert_eq(store_snap_foreach_run(sn, NULL, 0, NP, log_run, got), 42);
			cr_assert_eq(got->count, stop, "config %u: %u calls, want %u", c,
				     got->count, stop);
			cr_assert_eq(got->bad, 0);
			free(got);
		}
		/* the snap still works after a stopped walk */
		check_runs(sn, 0, NP, image, c);
		store_snap_close(sn);
	}
	free(image);
	store_close(s);
}

Test(store_read, deleted_checkpoint_reads_not_found)
{
	struct store *s = open_store(dir, 0);
	uint8_t *image, *buf = malloc((size_t)NP * PG);
	uint64_t id = build(s, &image);
	struct store_snap *sn;
	struct runlog *got = calloc(1, sizeof(*got));

	store_test_set_read_window(s, 300, 64);
	cr_assert_eq(store_snap_open(s, id, &sn), 0);
	cr_assert_eq(store_delete(s, id, NULL), 0);
	cr_assert_eq(store_snap_read(sn, NULL, 0, NP, buf), RW_ENOTFOUND);
	got->image = image;
	cr_assert_eq(store_snap_foreach_run(sn, NULL, 0, NP, log_run, got), RW_ENOTFOUND);
	cr_assert_eq(got->count, 0);
	store_snap_close(sn);
	free(got);
	free(image);
	free(buf);
	store_close(s);
}

/* Pages a rollback might rewrite: scattered, with holes and runs among them. */
static size_t pick_list(uint64_t *idx, unsigned variant)
{
	size_t n = 0;

	for (uint64_t i = 0; i < NP; i++)
		if ((i * 2654435761u >> (3 + variant)) % 3 == 0 || (i >= 900 && i < 1400))
			idx[n++] = i;
	return n;
}

Test(store_read, listed_pages_read_into_an_image)
{
	struct store *s = open_store(dir, 0);
	uint8_t *image, *buf = malloc((size_t)NP * PG);
	uint64_t id = build(s, &image);
	uint64_t *idx = malloc(NP * sizeof(*idx));

	for (unsigned c = 0; c < NCONFIGS; c++) {
		struct store_snap *sn;

		store_test_set_read_window(s, configs[c][0], configs[c][1]);
		cr_assert_eq(store_snap_open(s, id, &sn), 0);
		for (unsigned v = 0; v < 3; v++) {
			size_t n = pick_list(idx, v);
			size_t at = 0;

			memset(buf, 0xa5, (size_t)NP * PG);
			cr_assert_eq(store_snap_read_pages(sn, NULL, idx, n, buf), 0);
			for (uint64_t i = 0; i < NP; i++) {
				bool listed = at < n && idx[at] == i;
				uint8_t want[PG];

				if (listed) {
					at++;
					cr_assert(!memcmp(buf + i * PG, image + i * PG, PG),
						  "config %u: page %lu differs", c, (unsigned long)i);
					continue;
				}
				memset(want, 0xa5, PG);
				cr_assert(!memcmp(buf + i * PG, want, PG),
					  "config %u: unlisted page %lu written", c, (unsigned long)i);
			}
		}
		/* a single page, the last page, and none */
		uint64_t one = NP - 1;

		cr_assert_eq(store_snap_read_pages(sn, NULL, &one, 1, buf), 0);
		cr_assert(!memcmp(buf + one * PG, image + one * PG, PG));
		cr_assert_eq(store_snap_read_pages(sn, NULL, idx, 0, buf), 0);
		store_snap_close(sn);
	}
	free(idx);
	free(image);
	free(buf);
	store_close(s);
}

Test(store_read, listed_pages_bad_lists_and_damage)
{
	struct store *s = open_store(dir, 0);
	uint8_t *image, *buf = malloc((size_t)NP * PG);
	uint64_t id = build(s, &image);
	struct store_snap *sn;
	uint64_t unsorted[3] = { 5, 9, 7 }, repeat[3] = { 5, 9, 9 }, past[2] = { 5, NP };
	uint64_t around[4] = { 10, BAD_PAGE - 1, BAD_PAGE + 1, NP - 1 };
	uint64_t with[3] = { 10, BAD_PAGE, NP - 1 };
	char *data;

	cr_assert_eq(store_snap_open(s, id, &sn), 0);
	cr_assert_eq(store_snap_read_pages(sn, NULL, unsorted, 3, buf), -EINVAL);
	cr_assert_eq(store_snap_read_pages(sn, NULL, repeat, 3, buf), -EINVAL);
	cr_assert_eq(store_snap_read_pages(sn, NULL, past, 2, buf), -ERANGE);
	cr_assert_eq(store_snap_read_pages(sn, "nodisk", around, 4, buf), RW_ENOTFOUND);
	store_snap_close(sn);
	store_close(s);

	cr_assert(asprintf(&data, "%s/data.mdb", dir) > 0);
	cr_assert_eq(flip_in_file(data, image + BAD_PAGE * PG + 2000, 64), 0);
	free(data);
	s = open_store(dir, 0);
	for (unsigned c = 0; c < NCONFIGS; c++) {
		store_test_set_read_window(s, configs[c][0], configs[c][1]);
		cr_assert_eq(store_snap_open(s, id, &sn), 0);
		cr_assert_eq(store_snap_read_pages(sn, NULL, with, 3, buf), RW_ECHECKSUM);
		cr_assert_eq(store_snap_read_pages(sn, NULL, around, 4, buf), 0);
		for (unsigned i = 0; i < 4; i++)
			cr_assert(!memcmp(buf + around[i] * PG, image + around[i] * PG, PG));
		store_snap_close(sn);
	}
	free(image);
	free(buf);
	store_close(s);
}

/* Flip one byte in every copy of needle in the file; returns the count. */
static int flip_all_in_file(const char *path, const void *needle, size_t nlen)
{
	int fd = open(path, O_RDWR), n = 0;
	struct stat st;
	uint8_t *buf, *at;

	if (fd < 0 || fstat(fd, &st))
		return -1;
	buf = malloc((size_t)st.st_size);
	if (pread(fd, buf, (size_t)st.st_size, 0) != st.st_size) {
		n = -1;
		goto out;
	}
	for (at = buf; (at = memmem(at, (size_t)(buf + st.st_size - at), needle, nlen));
	     at += nlen) {
		uint8_t b = at[nlen / 2] ^ 0x01;

		if (pwrite(fd, &b, 1, (at - buf) + (off_t)nlen / 2) != 1) {
			n = -1;
			goto out;
		}
		n++;
	}
out:
	free(buf);
	close(fd);
	return n;
}

/*
 * The body's key repeats a page's first 16 bytes (reads need no head):
 * damage there is refused by a read and reported by verify, and gc keeps
 * the body (the head still has the bytes).
 */
Test(store_read, damaged_body_key_refused)
{
	struct store *s = open_store(dir, 0);
	uint8_t *image, *buf = malloc((size_t)NP * PG), needle[32];
	uint64_t id = build(s, &image);
	struct store_hash key;
	struct store_snap *sn;
	char *data;

	store_test_page_key(s, image + BAD_PAGE * PG, &key);
	memcpy(needle, key.b, 16);
	memcpy(needle + 16, image + BAD_PAGE * PG, 16);
	store_close(s);
	cr_assert(asprintf(&data, "%s/data.mdb", dir) > 0);
	/* the key is in its leaf, and maybe in a branch page as a separator */
	cr_assert_geq(flip_all_in_file(data, needle, sizeof(needle)), 1, "body key not found");
	free(data);

	s = open_store(dir, 0);
	for (unsigned c = 0; c < NCONFIGS; c++) {
		store_test_set_read_window(s, configs[c][0], configs[c][1]);
		cr_assert_eq(store_snap_open(s, id, &sn), 0);
		cr_assert_eq(store_snap_read(sn, NULL, 0, NP, buf), RW_ECHECKSUM, "config %u", c);
		cr_assert_eq(store_snap_read(sn, NULL, 0, BAD_PAGE, buf), 0);
		store_snap_close(sn);
	}
	struct vcount v = { 0 };

	cr_assert_eq(store_verify(s, vcount_cb, &v, NULL), 0);
	cr_assert_eq(v.n, 1, "%u problems: %s", v.n, v.first);
	cr_assert_eq(v.kinds[STORE_PROB_CHUNK_FORMAT], 1, "%s", v.first);
	cr_assert_eq(v.naffected, 1);
	cr_assert_eq(v.affected[0], id);

	struct store_gc_stats gs;

	cr_assert_eq(store_gc(s, false, &gs), 0);
	cr_assert_eq(gs.bodies_freed, 0);
	cr_assert_eq(gs.chunks_freed, 0);
	v = (struct vcount){ 0 };
	cr_assert_eq(store_verify(s, vcount_cb, &v, NULL), 0);
	cr_assert_eq(v.n, 1, "%u problems: %s", v.n, v.first);
	free(image);
	free(buf);
	store_close(s);
}
