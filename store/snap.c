/*
 * snap.c - reading committed checkpoints: pages, runs, records, the list
 * of checkpoints, and diffs between two checkpoints.
 *
 * A snap keeps the decoded checkpoint record; each read call opens its own
 * short read transaction, so an open snap never pins old pages or blocks
 * the map from growing.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "store_internal.h"
#include <time.h>
#include <stdio.h>
uint64_t T_sort,T_look,T_del,T_walk;static uint64_t tnow(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1000000000ull+t.tv_nsec;}

struct store_snap {
	struct store *s;
	struct ckpt_rec rec;
	uint8_t *run;            /* STORE_RUN_MAX pages, allocated on first use */
	struct wpage *win;       /* page walk scratch (see Page walks) */
	uint32_t *ord;
	uint32_t *cnt;           /* radix counts */
	uint32_t win_cap;
};

/* ===================================================================
 * Open and close
 * =================================================================== */

static int load_rec(struct store *s, MDB_txn *txn, uint64_t id, struct ckpt_rec *rec)
{
	int rc = ckpt_get(s, txn, id, rec);

	if (!rc)
		rc = ckpt_count_records(s, txn, id, &rec->nrecords, &rec->record_bytes);
	if (!rc)
		rc = ckpt_rec_view(rec);
	if (rc)
		ckpt_rec_free(rec);
	return rc;
}

int store_snap_open(struct store *s, uint64_t id, struct store_snap **out)
{
	struct store_snap *sn;
	MDB_txn *txn;
	int rc;

	*out = NULL;
	sn = calloc(1, sizeof(*sn));
	if (!sn)
		return -ENOMEM;
	sn->s = s;
	rc = store_rd_begin(s, &txn);
	if (rc)
		goto fail;
	rc = load_rec(s, txn, id, &sn->rec);
	store_rd_end(s, txn);
	if (rc)
		goto fail;
	*out = sn;
	return 0;
fail:
	free(sn);
	return rc;
}

void store_snap_close(struct store_snap *sn)
{
	if (!sn)
		return;
	ckpt_rec_free(&sn->rec);
	free(sn->run);
	free(sn->win);
	free(sn->ord);
	free(sn->cnt);
	free(sn);
}

const struct store_ckpt_info *store_snap_info(const struct store_snap *sn)
{
	return &sn->rec.info;
}

static const struct map_rec *rec_map(const struct ckpt_rec *rec, const char *disk)
{
	if (!disk)
		return &rec->maps[0];
	for (size_t i = 1; i < rec->nmaps; i++)
		if (!strcmp(rec->maps[i].name, disk))
			return &rec->maps[i];
	return NULL;
}

const struct store_map_info *store_snap_map(const struct store_snap *sn,
					    const char *disk)
{
	if (!disk)
		return &sn->rec.info.mem;
	for (size_t i = 0; i < sn->rec.info.ndisks; i++)
		if (!strcmp(sn->rec.info.disks[i].name, disk))
			return &sn->rec.info.disks[i];
	return NULL;
}

/* The checkpoint must still exist for a read to mean anything. */
static int snap_alive(struct store_snap *sn, MDB_txn *txn)
{
	uint8_t kb[8];
	MDB_val k = { 8, kb }, v;

	put_be64(kb, sn->rec.id);
	return store_mdb_err(mdb_get(txn, sn->s->ckpt, &k, &v));
}

/* ===================================================================
 * Page walks
 *
 * Chunk keys are hashes, so pages in index order are chunks in random key
 * order: looking each one up on its own costs two descents from the root
 * of a B-tree larger than the caches (head, then body). A walk therefore
 * gathers the keys of up to WIN_PAGES non-hole pages from the tree, sorts
 * them by key, and looks them up in that order with one cursor on head and
 * one on body. An LMDB cursor positioned by key first tries the leaf page
 * it is on, so each lookup is a search within a page that is already in
 * cache, and each leaf page is read once per window. The lookups only note
 * where each page's bytes lie in the map (valid while the read transaction
 * lasts); the pages are then copied out in index order and each copy is
 * re-hashed where it was written, while it is still in cache. A missing or
 * damaged chunk is noted at lookup and reported when its page's turn comes,
 * so the pages before it are delivered exactly as a page-by-page walk would.
 * =================================================================== */

/* Pages gathered before their lookups: bounds the per-snap scratch memory
 * (about 48 bytes a page) and the time data stays pinned. */
#define WIN_PAGES 65536u
/* Bits of the key the radix pass sorts by; the rest is finished per bucket. */
#define SORT_BITS_MAX 16u
#define SORT_SMALL 16u
/* Reads of at least this many pages copy out on two threads. */
#define PAR_MIN_PAGES 1024u

struct wpage {
	struct store_hash key;
	uint64_t idx;
	const uint8_t *body;      /* content bytes 16..4095, in the map */
	int err;                  /* the chunk is missing or damaged */
	uint8_t inl[HEAD_INLINE]; /* content bytes 0..15, from the head */
};

struct rwalk {
	struct store_snap *sn;
	MDB_txn *txn;
	MDB_cursor *hc, *bc;     /* head and body cursors */
	bool hc_on, bc_on;       /* ... positioned on an entry */
	uint64_t first, end;     /* pages [first, end) */
	bool verify;
	uint8_t *dst;            /* read: destination of page `first` */
	store_run_fn fn;         /* runs: callback */
	void *arg;
	uint64_t run_first, run_n;
	uint32_t nwin;           /* pages gathered in sn->win */
};

static long store_ncpus(void)
{
	static long n;

	if (!n)
		n = sysconf(_SC_NPROCESSORS_ONLN);
	return n;
}

static unsigned sort_bits(uint32_t n)
{
	unsigned bits = 1;

	while (bits < SORT_BITS_MAX && (1u << bits) < n)
		bits++;
	return bits;
}

static int win_alloc(struct store_snap *sn, uint64_t n)
{
	uint32_t cap = n < WIN_PAGES ? (uint32_t)n : WIN_PAGES;

	if (cap <= sn->win_cap)
		return 0;
	free(sn->win);
	free(sn->ord);
	free(sn->cnt);
	sn->win = malloc((size_t)cap * sizeof(*sn->win));
	sn->ord = malloc((size_t)cap * sizeof(*sn->ord));
	sn->cnt = malloc(((size_t)1 << sort_bits(cap)) * sizeof(*sn->cnt) +
			 sizeof(*sn->cnt));
	if (!sn->win || !sn->ord || !sn->cnt) {
		free(sn->win);
		free(sn->ord);
		free(sn->cnt);
		sn->win = NULL;
		sn->ord = NULL;
		sn->cnt = NULL;
		sn->win_cap = 0;
		return -ENOMEM;
	}
	sn->win_cap = cap;
	return 0;
}

static int wkey_cmp(const void *a, const void *b, void *arg)
{
	const struct wpage *w = arg;

	return memcmp(w[*(const uint32_t *)a].key.b, w[*(const uint32_t *)b].key.b, 16);
}

static unsigned key_bucket(const struct store_hash *k, unsigned bits)
{
	return ((unsigned)k->b[0] << 8 | k->b[1]) >> (SORT_BITS_MAX - bits);
}

/*
 * Order sn->ord[0..n) so that the window's keys ascend: one counting pass on
 * the top bits of the key (hashes spread evenly, so buckets hold about one
 * key each), then each bucket sorted on its own. A bucket made large on
 * purpose (pages chosen to share key prefixes) costs n log n, not n^2.
 */
static void win_sort(struct store_snap *sn, uint32_t n)
{
	const struct wpage *wp = sn->win;
	uint32_t *ord = sn->ord, *cnt = sn->cnt;
	unsigned bits = sort_bits(n);
	uint32_t nb = 1u << bits;

	memset(cnt, 0, (nb + 1) * sizeof(cnt[0]));
	for (uint32_t i = 0; i < n; i++)
		cnt[key_bucket(&wp[i].key, bits) + 1]++;
	for (uint32_t b = 0; b < nb; b++)
		cnt[b + 1] += cnt[b];
	for (uint32_t i = 0; i < n; i++)
		ord[cnt[key_bucket(&wp[i].key, bits)]++] = i;
	/* now cnt[b] is the end of bucket b, and the start of bucket b + 1 */
	for (uint32_t b = 0, lo = 0; b < nb; lo = cnt[b], b++) {
		uint32_t hi = cnt[b];

		if (hi - lo > SORT_SMALL) {
			qsort_r(ord + lo, hi - lo, sizeof(*ord), wkey_cmp, (void *)wp);
			continue;
		}
		for (uint32_t i = lo + 1; i < hi; i++) {
			uint32_t v = ord[i], j = i;

			while (j > lo && memcmp(wp[ord[j - 1]].key.b, wp[v].key.b, 16) > 0) {
				ord[j] = ord[j - 1];
				j--;
			}
			ord[j] = v;
		}
	}
}

/*
 * Position cursor c on key k. Keys come in ascending order, so when the
 * cursor sits on an earlier key the next few entries are tried first: a
 * step is cheaper than a search when the wanted keys are dense.
 */
#define STEP_MAX 8
#ifndef PF_DIST
#define PF_DIST 2
#endif
static int cur_seek(MDB_cursor *c, bool *on, const struct store_hash *k,
		    MDB_val *v)
{
	MDB_val key;
	int rc;

	if (*on) {
		for (int i = 0; i < STEP_MAX; i++) {
			rc = mdb_cursor_get(c, &key, v, MDB_NEXT);
			if (rc || key.mv_size != 16)
				break;
			int d = memcmp(key.mv_data, k->b, 16);

			if (d == 0)
				return 0;
			if (d > 0)
				return MDB_NOTFOUND;
		}
	}
	key.mv_size = 16;
	key.mv_data = (void *)k->b;
	rc = mdb_cursor_get(c, &key, v, MDB_SET);
	*on = rc == 0;
	return rc;
}

/* Find one page chunk: its first bytes and where the rest lies in the map. */
static int win_find(struct rwalk *w, struct wpage *p)
{
	MDB_val v;
	struct chunk_head h;
	int rc;

	p->err = 0;
	p->body = NULL;
	rc = cur_seek(w->hc, &w->hc_on, &p->key, &v);
	if (rc == MDB_NOTFOUND) {
		p->err = RW_ECORRUPT;
		return 0;
	}
	if (rc)
		return store_mdb_err(rc);
	rc = head_decode(&v, &h);
	if (!rc && h.kind != CHUNK_PAGE)
		rc = RW_ECORRUPT;
	if (rc) {
		p->err = rc;
		return 0;
	}
	memcpy(p->inl, h.inline_, HEAD_INLINE);
	rc = cur_seek(w->bc, &w->bc_on, &p->key, &v);
	if (rc == MDB_NOTFOUND) {
		p->err = RW_ECORRUPT;
		return 0;
	}
	if (rc)
		return store_mdb_err(rc);
	if (v.mv_size != STORE_PAGE_SIZE - HEAD_INLINE) {
		p->err = RW_ECORRUPT;
		return 0;
	}
	p->body = v.mv_data;
	return 0;
}

static int win_lookup(struct rwalk *w)
{
	struct wpage *wp = w->sn->win;
	const uint32_t *ord = w->sn->ord;
	const struct wpage *prev = NULL;
	int rc;

	uint64_t t0=tnow();win_sort(w->sn, w->nwin);T_sort+=tnow()-t0;t0=tnow();
	w->hc_on = w->bc_on = false;
	for (uint32_t i = 0; i < w->nwin; i++) {
		struct wpage *p = &wp[ord[i]];

		if (prev && !memcmp(prev->key.b, p->key.b, 16)) {
			memcpy(p->inl, prev->inl, HEAD_INLINE);
			p->body = prev->body;
			p->err = prev->err;
			continue;
		}
		rc = win_find(w, p);
		if (rc)
			return rc;
		prev = p;
	}
	T_look+=tnow()-t0;
	return 0;
}

static int run_flush(struct rwalk *w)
{
	int rc = 0;

	if (w->run_n)
		rc = w->fn(w->arg, w->run_first, w->run_n, w->sn->run);
	w->run_n = 0;
	return rc;
}

/* Copy one page out of the map and check it against its key. */
static int page_out(struct store *s, const struct wpage *p, uint8_t *dst,
		    bool verify)
{
	struct store_hash got;

	if (p->err)
		return p->err;
	memcpy(dst, p->inl, HEAD_INLINE);
	memcpy(dst + HEAD_INLINE, p->body, STORE_PAGE_SIZE - HEAD_INLINE);
	if (verify) {
		store_hash_data(s, CHUNK_PAGE, dst, STORE_PAGE_SIZE, &got);
		if (memcmp(got.b, p->key.b, 16))
			return RW_ECHECKSUM;
	}
	return 0;
}

/* Window entries [lo, hi) of a read into its buffer. */
struct rpart {
	struct rwalk *w;
	uint32_t lo, hi;
	int rc;
};

static void *read_part(void *arg)
{
	struct rpart *d = arg;
	const struct rwalk *w = d->w;

	d->rc = 0;
	for (uint32_t i = d->lo; i < d->hi && !d->rc; i++) {
		const struct wpage *p = &w->sn->win[i];

		d->rc = page_out(w->sn->s, p, w->dst + (p->idx - w->first) * STORE_PAGE_SIZE,
				 w->verify);
	}
	return NULL;
}

/*
 * Copy a read's window out. Large windows are split with a second thread:
 * the copies only read the map, which the walk's read transaction keeps
 * in place until both halves are done, and touch disjoint pages of the
 * buffer. Not with a test hash hook installed (it need not be thread-safe).
 */
static int read_deliver(struct rwalk *w)
{
	struct rpart a = { .w = w, .lo = 0, .hi = w->nwin };
	struct rpart b = { .w = w, .hi = w->nwin };
	pthread_t t;

	if (w->nwin >= PAR_MIN_PAGES && !w->sn->s->hash_hook && store_ncpus() > 1) {
		b.lo = a.hi = w->nwin / 2;
		if (pthread_create(&t, NULL, read_part, &b) == 0) {
			read_part(&a);
			pthread_join(t, NULL);
			return a.rc ? a.rc : b.rc;
		}
		a.hi = w->nwin;
	}
	read_part(&a);
	return a.rc;
}

/* Copy the window's pages out in index order, re-hashing each copy. */
static int win_deliver(struct rwalk *w)
{
	int rc;

	if (w->dst) {
		rc = read_deliver(w);
		w->nwin = 0;
		return rc;
	}
	for (uint32_t i = 0; i < w->nwin; i++) {
		const struct wpage *p = &w->sn->win[i];

		if (w->run_n && (w->run_first + w->run_n != p->idx ||
				 w->run_n == STORE_RUN_MAX)) {
			rc = run_flush(w);
			if (rc)
				return rc;
		}
		if (!w->run_n)
			w->run_first = p->idx;
		rc = page_out(w->sn->s, p, w->sn->run + w->run_n * STORE_PAGE_SIZE,
			      w->verify);
		if (rc)
			return rc;
		w->run_n++;
	}
	w->nwin = 0;
	return 0;
}

static int win_flush(struct rwalk *w)
{
	int rc;

	if (!w->nwin)
		return 0;
	rc = win_lookup(w);
	uint64_t t0=tnow();
	if (!rc)
		rc = win_deliver(w);
	T_del+=tnow()-t0;
	return rc;
}

static int walk_page(struct rwalk *w, uint64_t idx, const struct store_hash *k)
{
	struct wpage *p = &w->sn->win[w->nwin++];

	p->key = *k;
	p->idx = idx;
	return w->nwin == w->sn->win_cap ? win_flush(w) : 0;
}

/* Holes read as zeros; a run simply ends at one (win_deliver sees the gap). */
static void walk_hole(struct rwalk *w, uint64_t a, uint64_t b)
{
	if (w->dst)
		memset(w->dst + (a - w->first) * STORE_PAGE_SIZE, 0,
		       (b - a) * STORE_PAGE_SIZE);
}

static int walk(struct rwalk *w, unsigned level, const struct store_hash *k,
		uint64_t base)
{
	uint64_t span = tree_span(level);
	uint64_t end = span > UINT64_MAX - base ? UINT64_MAX : base + span;
	uint64_t a = base > w->first ? base : w->first;
	uint64_t b = end < w->end ? end : w->end;
	struct node n;
	int rc;

	if (a >= b)
		return 0;
	if (store_hash_is_zero(k)) {
		walk_hole(w, a, b);
		return 0;
	}
	rc = node_load(w->sn->s, w->txn, k, level, &n, w->verify);
	if (rc)
		return rc;
	if (level == 0) {
		for (uint64_t i = a; i < b; i++) {
			const struct store_hash *e = &n.e[i - base];

			if (store_hash_is_zero(e)) {
				walk_hole(w, i, i + 1);
				continue;
			}
			rc = walk_page(w, i, e);
			if (rc)
				return rc;
		}
		return 0;
	}
	uint64_t cspan = tree_span(level - 1);
	for (unsigned i = (unsigned)((a - base) / cspan); i < STORE_FANOUT; i++) {
		uint64_t cbase = base + i * cspan;

		if (cbase >= b)
			break;
		rc = walk(w, level - 1, &n.e[i], cbase);
		if (rc)
			return rc;
	}
	return 0;
}

static int walk_range(struct store_snap *sn, const char *disk, uint64_t first,
		      uint64_t n, struct rwalk *w)
{
	const struct map_rec *m = rec_map(&sn->rec, disk);
	struct store *s = sn->s;
	int rc;

	if (!m)
		return RW_ENOTFOUND;
	if (first > m->npages || n > m->npages - first)
		return -ERANGE;
	if (!n)
		return 0;
	rc = win_alloc(sn, n);
	if (rc)
		return rc;
	w->sn = sn;
	w->first = first;
	w->end = first + n;
	w->verify = !(s->flags & STORE_OPEN_NO_READ_VERIFY);
	rc = store_rd_begin(s, &w->txn);
	if (rc)
		return rc;
	rc = snap_alive(sn, w->txn);
	if (!rc)
		rc = store_mdb_err(mdb_cursor_open(w->txn, s->head, &w->hc));
	if (!rc) {
		rc = store_mdb_err(mdb_cursor_open(w->txn, s->body, &w->bc));
		if (rc)
			mdb_cursor_close(w->hc);
	}
	if (rc)
		goto out;
	uint64_t t0=tnow();
	rc = walk(w, m->height - 1, &m->root, 0);
	if (!rc)
		rc = win_flush(w);
	if (!rc && !w->dst)
		rc = run_flush(w);
	T_walk+=tnow()-t0;
	mdb_cursor_close(w->bc);
	mdb_cursor_close(w->hc);
out:
	store_rd_end(s, w->txn);
	return rc;
}

int store_snap_read(struct store_snap *sn, const char *disk, uint64_t first,
		    uint64_t n, void *buf)
{
	struct rwalk w = { .dst = buf };

	return walk_range(sn, disk, first, n, &w);
}

int store_snap_foreach_run(struct store_snap *sn, const char *disk,
			   uint64_t first, uint64_t n, store_run_fn fn, void *arg)
{
	struct rwalk w = { .fn = fn, .arg = arg };

	if (!sn->run) {
		sn->run = malloc((size_t)STORE_RUN_MAX * STORE_PAGE_SIZE);
		if (!sn->run)
			return -ENOMEM;
	}
	return walk_range(sn, disk, first, n, &w);
}

/* ===================================================================
 * Records
 * =================================================================== */

int store_snap_record(struct store_snap *sn, const char *name, void **data,
		      size_t *len, uint32_t *version)
{
	struct store *s = sn->s;
	uint8_t kb[REC_KEY_MAX];
	size_t nlen = name ? strlen(name) : 0;
	MDB_txn *txn;
	MDB_val k, v;
	const uint8_t *p;
	int rc;

	*data = NULL;
	if (!nlen || nlen > STORE_NAME_MAX)
		return RW_ENOTFOUND;
	k.mv_size = rec_key(kb, sn->rec.id, name, nlen);
	k.mv_data = kb;
	rc = store_rd_begin(s, &txn);
	if (rc)
		return rc;
	rc = store_mdb_err(mdb_get(txn, s->rec, &k, &v));
	if (rc)
		goto out;
	p = v.mv_data;
	if (v.mv_size < REC_HDR || get_le32(p + 4) != 0) {
		rc = RW_ECORRUPT;
		goto out;
	}
	if (XXH3_64bits(p + REC_HDR, v.mv_size - REC_HDR) != get_le64(p + 8)) {
		rc = RW_ECHECKSUM;
		goto out;
	}
	*data = malloc(v.mv_size - REC_HDR + 1);
	if (!*data) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(*data, p + REC_HDR, v.mv_size - REC_HDR);
	*len = v.mv_size - REC_HDR;
	if (version)
		*version = get_le32(p);
out:
	store_rd_end(s, txn);
	return rc;
}

int store_snap_foreach_record(struct store_snap *sn,
			      int (*fn)(void *arg, const struct store_record_info *ri),
			      void *arg)
{
	struct store *s = sn->s;
	MDB_txn *txn;
	MDB_cursor *cur;
	uint8_t kb[8];
	char name[STORE_NAME_MAX + 1];
	MDB_val k = { 8, kb }, v;
	int rc;

	put_be64(kb, sn->rec.id);
	rc = store_rd_begin(s, &txn);
	if (rc)
		return rc;
	rc = store_mdb_err(mdb_cursor_open(txn, s->rec, &cur));
	if (rc)
		goto out;
	int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	while (mrc == 0 && k.mv_size >= 8 && get_be64(k.mv_data) == sn->rec.id) {
		struct store_record_info ri;
		const uint8_t *p = v.mv_data;
		size_t nlen = k.mv_size - 8;

		if (nlen == 0 || nlen > STORE_NAME_MAX || v.mv_size < REC_HDR) {
			rc = RW_ECORRUPT;
			break;
		}
		memcpy(name, (const uint8_t *)k.mv_data + 8, nlen);
		name[nlen] = 0;
		ri.name = name;
		ri.version = get_le32(p);
		ri.len = v.mv_size - REC_HDR;
		ri.checksum = get_le64(p + 8);
		rc = fn(arg, &ri);
		if (rc)
			break;
		mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	if (!rc && mrc && mrc != MDB_NOTFOUND)
		rc = store_mdb_err(mrc);
	mdb_cursor_close(cur);
out:
	store_rd_end(s, txn);
	return rc;
}

/* ===================================================================
 * Listing
 * =================================================================== */

int store_list(struct store *s,
	       int (*fn)(void *arg, const struct store_ckpt_info *info), void *arg)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, mrc;

	rc = store_rd_begin(s, &txn);
	if (rc)
		return rc;
	rc = store_mdb_err(mdb_cursor_open(txn, s->ckpt, &cur));
	if (rc)
		goto out;
	for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct ckpt_rec rec;

		if (k.mv_size != 8) {
			rc = RW_ECORRUPT;
			break;
		}
		rc = load_rec(s, txn, get_be64(k.mv_data), &rec);
		if (rc)
			break;
		rc = fn(arg, &rec.info);
		ckpt_rec_free(&rec);
		if (rc)
			break;
	}
	if (!rc && mrc && mrc != MDB_NOTFOUND)
		rc = store_mdb_err(mrc);
	mdb_cursor_close(cur);
out:
	store_rd_end(s, txn);
	return rc;
}

/* ===================================================================
 * Diff
 * =================================================================== */

struct dwalk {
	struct store *s;
	MDB_txn *txn;
	bool verify;
	store_range_fn fn;
	void *arg;
	uint64_t r_first, r_n;   /* pending range */
	struct store_diff_stats st;
};

static int diff_report(struct dwalk *d, uint64_t first, uint64_t n)
{
	int rc = 0;

	d->st.changed += n;
	if (d->r_n && d->r_first + d->r_n == first) {
		d->r_n += n;
		return 0;
	}
	if (d->r_n)
		rc = d->fn(d->arg, d->r_first, d->r_n);
	d->r_first = first;
	d->r_n = n;
	return rc;
}

/* Entries of the node of `level` for key k at level kl (kl < level: lifted). */
static int diff_load(struct dwalk *d, const struct store_hash *k, unsigned kl,
		     unsigned level, struct node *n)
{
	if (kl < level) {
		memset(n, 0, sizeof(*n));
		n->level = level;
		n->e[0] = *k;
		return 0;
	}
	if (!store_hash_is_zero(k))
		d->st.nodes_read++;
	return node_load(d->s, d->txn, k, level, n, d->verify);
}

static int diff_walk(struct dwalk *d, unsigned level, const struct store_hash *ka,
		     unsigned la, const struct store_hash *kb, unsigned lb,
		     uint64_t base)
{
	struct node *na, *nb;
	int rc;

	if (la == lb && !memcmp(ka->b, kb->b, 16))
		return 0;
	na = malloc(sizeof(*na));
	nb = malloc(sizeof(*nb));
	rc = -ENOMEM;
	if (!na || !nb)
		goto out;
	rc = diff_load(d, ka, la, level, na);
	if (!rc)
		rc = diff_load(d, kb, lb, level, nb);
	if (rc)
		goto out;
	for (unsigned i = 0; i < STORE_FANOUT && !rc; i++) {
		if (!memcmp(na->e[i].b, nb->e[i].b, 16) &&
		    (level == 0 || i > 0 || la == lb))
			continue;
		if (level == 0) {
			rc = diff_report(d, base + i, 1);
			continue;
		}
		unsigned cla = la < level && i == 0 ? la : level - 1;
		unsigned clb = lb < level && i == 0 ? lb : level - 1;
		rc = diff_walk(d, level - 1, &na->e[i], cla, &nb->e[i], clb,
			       base + i * tree_span(level - 1));
	}
out:
	free(na);
	free(nb);
	return rc;
}

int store_diff(struct store *s, uint64_t a, uint64_t b, const char *disk,
	       store_range_fn fn, void *arg, struct store_diff_stats *stats)
{
	static const struct map_rec empty = { .height = 1 };
	struct ckpt_rec ra, rb;
	struct dwalk d = { .s = s, .fn = fn, .arg = arg,
			   .verify = !(s->flags & STORE_OPEN_NO_READ_VERIFY) };
	const struct map_rec *ma, *mb;
	unsigned h;
	int rc;

	rc = store_rd_begin(s, &d.txn);
	if (rc)
		return rc;
	rc = ckpt_get(s, d.txn, a, &ra);
	if (rc)
		goto out;
	rc = ckpt_get(s, d.txn, b, &rb);
	if (rc)
		goto out_a;
	ma = rec_map(&ra, disk);
	mb = rec_map(&rb, disk);
	if (!ma && !mb) {
		rc = RW_ENOTFOUND;
		goto out_b;
	}
	if (!ma)
		ma = &empty;
	if (!mb)
		mb = &empty;
	h = ma->height > mb->height ? ma->height : mb->height;
	rc = diff_walk(&d, h - 1, &ma->root, ma->height - 1, &mb->root,
		       mb->height - 1, 0);
	if (!rc && d.r_n)
		rc = fn(arg, d.r_first, d.r_n);
	if (stats)
		*stats = d.st;
out_b:
	ckpt_rec_free(&rb);
out_a:
	ckpt_rec_free(&ra);
out:
	store_rd_end(s, d.txn);
	return rc;
}
