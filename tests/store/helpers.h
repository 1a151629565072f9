/*
 * helpers.h - shared by the store tests.
 */
#ifndef RW_TESTS_STORE_HELPERS_H
#define RW_TESTS_STORE_HELPERS_H

#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"
#include "store_testing.h"
#include "testutil.h"

#define PG STORE_PAGE_SIZE

/* Deterministic page content: every 8 bytes derived from (seed, offset). */
static inline void page_fill(void *p, uint64_t seed)
{
	uint64_t *q = p;
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;

	for (size_t i = 0; i < PG / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		q[i] = x;
	}
}

static inline int rm_cb(const char *path, const struct stat *sb, int flag,
			struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(path);
}

static inline void rm_rf(const char *dir)
{
	nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static inline struct store *open_store(const char *dir, unsigned flags)
{
	struct store_open_opts o = { .flags = flags | STORE_OPEN_CREATE };
	struct store *s = NULL;
	int rc = store_open(dir, &o, &s);

	cr_assert_eq(rc, 0, "store_open %s: %s", dir, rw_strerror(rc));
	return s;
}

/* Store path under a fresh temp dir; caller frees both. */
static inline char *store_dir(const char *tmp)
{
	char *p;

	cr_assert(asprintf(&p, "%s/store", tmp) > 0);
	return p;
}

struct vcount {
	unsigned n;
	unsigned kinds[16];
	char first[256];
	uint64_t affected[8];
	size_t naffected;
};

static inline int vcount_cb(void *arg, const struct store_problem *p)
{
	struct vcount *v = arg;

	if (!v->n) {
		snprintf(v->first, sizeof(v->first), "%s: %s", store_problem_name(p->kind),
			 p->detail);
		v->naffected = p->naffected < 8 ? p->naffected : 8;
		if (v->naffected)
			memcpy(v->affected, p->affected, v->naffected * sizeof(uint64_t));
	}
	if ((unsigned)p->kind < 16)
		v->kinds[p->kind]++;
	v->n++;
	return 0;
}

/* Run verify and require no problems. */
static inline void verify_clean(struct store *s)
{
	struct vcount v = { 0 };
	struct store_verify_stats st;
	int rc = store_verify(s, vcount_cb, &v, &st);

	cr_assert_eq(rc, 0, "verify: %s", rw_strerror(rc));
	cr_assert_eq(v.n, 0, "verify found %u problems, first: %s", v.n, v.first);
}

/* Commit a checkpoint made of pages (idx[i] -> seed[i]; seed 0 = zero page). */
static inline uint64_t commit_pages(struct store *s, uint64_t parent, uint64_t npages,
				    const uint64_t *idx, const uint64_t *seed, size_t n,
				    struct store_commit_stats *st)
{
	struct store_ckpt *c;
	uint8_t *buf = malloc(PG);
	uint64_t id = 0;
	int rc;

	cr_assert_eq(store_ckpt_begin(s, parent, &c), 0);
	cr_assert_eq(store_ckpt_set_size(c, NULL, npages), 0);
	for (size_t i = 0; i < n; i++) {
		if (seed[i])
			page_fill(buf, seed[i]);
		else
			memset(buf, 0, PG);
		rc = store_ckpt_add_pages(c, NULL, &idx[i], buf, 1);
		cr_assert_eq(rc, 0, "add: %s", rw_strerror(rc));
	}
	rc = store_ckpt_commit(c, &id, st);
	cr_assert_eq(rc, 0, "commit: %s", rw_strerror(rc));
	free(buf);
	return id;
}

/* Find needle in the file and flip one byte of it; returns 0 on success. */
static inline int flip_in_file(const char *path, const void *needle, size_t nlen)
{
	int fd = open(path, O_RDWR);
	struct stat st;
	uint8_t *buf;
	int rc = -1;

	if (fd < 0 || fstat(fd, &st))
		return -1;
	buf = malloc((size_t)st.st_size);
	if (pread(fd, buf, (size_t)st.st_size, 0) == st.st_size) {
		uint8_t *hit = memmem(buf, (size_t)st.st_size, needle, nlen);
		if (hit) {
			uint8_t b = hit[nlen / 2] ^ 0x01;
			if (pwrite(fd, &b, 1, (hit - buf) + (off_t)nlen / 2) == 1)
				rc = 0;
		}
	}
	free(buf);
	close(fd);
	return rc;
}

/*
 * STORE_SUITE(name, tag, seconds): a Criterion suite whose tests each get a
 * scratch directory (tmp) and a store path inside it (dir), removed after.
 */
#define STORE_SUITE(name, tag, seconds)                                    \
	static const char *tmp;                                            \
	static char *dir;                                                  \
	static void setup(void)                                            \
	{                                                                  \
		tmp = rw_test_tmpdir(tag);                                 \
		dir = store_dir(tmp);                                      \
	}                                                                  \
	static void teardown(void)                                         \
	{                                                                  \
		rm_rf(tmp);                                                \
		free(dir);                                                 \
	}                                                                  \
	TestSuite(name, .init = setup, .fini = teardown, .timeout = seconds)

#endif
