#include "bench.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

void bench_emit(json_t *obj)
{
	char *s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));

	if (s) {
		printf("%s\n", s);
		fflush(stdout);
		free(s);
	}
	json_decref(obj);
}

double bench_round(double v)
{
	char buf[64];

	snprintf(buf, sizeof(buf), "%.3f", v);
	return strtod(buf, NULL);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

double bench_median(double *v, size_t n)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void *alloc_pages(size_t npages)
{
	void *p = mmap(NULL, npages * RW_PAGE_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static void fill_random(uint8_t *p, size_t len, uint64_t seed)
{
	uint64_t x = seed | 1;

	for (size_t i = 0; i + 8 <= len; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + i, &x, 8);
	}
}

double bench_memcpy_ns_per_page(size_t npages, unsigned reps)
{
	uint8_t *src = alloc_pages(npages), *dst = alloc_pages(npages);
	double best = 1e30;

	if (!src || !dst)
		return -1;
	fill_random(src, npages * RW_PAGE_SIZE, 1);
	for (unsigned r = 0; r < reps; r++) {
		uint64_t t0 = rw_now_ns();
		for (size_t i = 0; i < npages; i++)
			memcpy(dst + i * RW_PAGE_SIZE, src + i * RW_PAGE_SIZE, RW_PAGE_SIZE);
		uint64_t t1 = rw_now_ns();
		double ns = (double)(t1 - t0) / (double)npages;
		if (ns < best)
			best = ns;
	}
	munmap(src, npages * RW_PAGE_SIZE);
	munmap(dst, npages * RW_PAGE_SIZE);
	return best;
}

struct bench_copy_floor {
	uint8_t *src, *dst;
	size_t npages, src_pages, at;
};

struct bench_copy_floor *bench_copy_floor_open(size_t npages)
{
	struct bench_copy_floor *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->npages = npages;
	f->src_pages = npages < 16384 ? 16384 : npages;
	f->src = alloc_pages(f->src_pages);
	f->dst = alloc_pages(npages);
	if (!f->src || !f->dst) {
		bench_copy_floor_close(f);
		return NULL;
	}
	fill_random(f->src, f->src_pages * RW_PAGE_SIZE, 4);
	memset(f->dst, 0, npages * RW_PAGE_SIZE);
	return f;
}

double bench_copy_floor_us(struct bench_copy_floor *f)
{
	const uint8_t *src;
	uint64_t t0;

	if (f->at + f->npages > f->src_pages)
		f->at = 0;
	src = f->src + f->at * RW_PAGE_SIZE;
	f->at += f->npages;
	t0 = rw_now_ns();
	for (size_t i = 0; i < f->npages; i++)
		memcpy(f->dst + i * RW_PAGE_SIZE, src + i * RW_PAGE_SIZE, RW_PAGE_SIZE);
	return (double)(rw_now_ns() - t0) / 1e3;
}

void bench_copy_floor_close(struct bench_copy_floor *f)
{
	if (!f)
		return;
	if (f->src)
		munmap(f->src, f->src_pages * RW_PAGE_SIZE);
	if (f->dst)
		munmap(f->dst, f->npages * RW_PAGE_SIZE);
	free(f);
}

double bench_xxh3_ns_per_page(size_t npages, unsigned reps)
{
	uint8_t *src = alloc_pages(npages);
	double best = 1e30;
	volatile uint64_t sink = 0; /* keeps the hashes from being optimised away */

	if (!src)
		return -1;
	fill_random(src, npages * RW_PAGE_SIZE, 2);
	for (unsigned r = 0; r < reps; r++) {
		uint64_t t0 = rw_now_ns();
		for (size_t i = 0; i < npages; i++) {
			XXH128_hash_t h = XXH3_128bits(src + i * RW_PAGE_SIZE, RW_PAGE_SIZE);
			sink += h.low64;
		}
		uint64_t t1 = rw_now_ns();
		double ns = (double)(t1 - t0) / (double)npages;
		if (ns < best)
			best = ns;
	}
	munmap(src, npages * RW_PAGE_SIZE);
	return best;
}

double bench_lmdb_put_ns(const char *dir, size_t npages)
{
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_dbi dbi;
	uint8_t *src = alloc_pages(npages);
	double ns = -1;
	uint64_t t0, t1;

	if (!src)
		return -1;
	fill_random(src, npages * RW_PAGE_SIZE, 3);
	if (mdb_env_create(&env) || mdb_env_set_mapsize(env, (npages * RW_PAGE_SIZE) * 4 + (64 << 20)) ||
	    mdb_env_open(env, dir, 0, 0600))
		goto out;
	if (mdb_txn_begin(env, NULL, 0, &txn) || mdb_dbi_open(txn, NULL, 0, &dbi))
		goto out;
	t0 = rw_now_ns();
	for (size_t i = 0; i < npages; i++) {
		XXH128_hash_t h = XXH3_128bits(src + i * RW_PAGE_SIZE, RW_PAGE_SIZE);
		MDB_val k = { 16, &h }, v = { RW_PAGE_SIZE, src + i * RW_PAGE_SIZE };
		if (mdb_put(txn, dbi, &k, &v, 0))
			goto out;
	}
	if (mdb_txn_commit(txn)) {
		txn = NULL;
		goto out;
	}
	txn = NULL;
	t1 = rw_now_ns();
	ns = (double)(t1 - t0) / (double)npages;
out:
	if (txn)
		mdb_txn_abort(txn);
	if (env)
		mdb_env_close(env);
	munmap(src, npages * RW_PAGE_SIZE);
	return ns;
}

const char *bench_guest(const char *name)
{
	static __thread char path[4096];

	snprintf(path, sizeof(path), "%s/%s.elf", REWIND_GUEST_DIR, name);
	return path;
}
