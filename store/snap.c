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
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "guard.h"
#include "store_internal.h"

struct store_snap {
	struct store *s;
	struct store_crec rec;
	uint8_t *run[2];         /* run buffers of STORE_RUN_MAX pages each,
				    allocated on first use */
	struct wpage *win;       /* page walk window (see Page walks) */
	uint32_t *ord;           /* the window in key order */
	uint32_t *cnt;           /* radix sort counts */
	uint32_t win_cap;
};

/* ===================================================================
 * Open and close
 * =================================================================== */

static int load_rec(struct store *s, MDB_txn *txn, uint64_t id, struct store_crec *rec)
{
	int rc = crec_get(s, txn, id, rec);

	if (!rc)
		rc = recdb_count(s, txn, id, &rec->nrecords, &rec->record_bytes);
	if (!rc)
		rc = crec_view(rec);
	if (rc)
		crec_free(rec);
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
	if (rc == RW_ECORRUPT || rc == RW_ECHECKSUM)
		store_note("the record of checkpoint %llu is damaged (%s)",
			   (unsigned long long)id, rw_strerror(rc));
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
	crec_free(&sn->rec);
	free(sn->run[0]);
	free(sn->run[1]);
	free(sn->win);
	free(sn->ord);
	free(sn->cnt);
	free(sn);
}

const struct store_ckpt_info *store_snap_info(const struct store_snap *sn)
{
	return &sn->rec.info;
}

static const struct map_rec *rec_map(const struct store_crec *rec, const char *disk)
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
 * A page is one lookup in the body database (its key holds the first 16
 * bytes, its value the other 4080). Chunk keys are hashes, so the pages of
 * a map, taken in index order, are chunks in random key order: looking
 * each up on its own costs a descent of a B-tree larger than the caches. A
 * walk therefore gathers the keys of up to WIN_PAGES non-hole pages from
 * the tree, sorts them, and looks them up in key order with one cursor. A
 * cursor positioned by key first tries the leaf page it is on, so most
 * lookups search a page already in cache, and each leaf page is read about
 * once per window. The lookups only note
 * where each page's bytes lie in the map (valid while the read transaction
 * lasts); the pages are then copied out in index order, and each copy is
 * re-hashed where it was written, while it is still in cache. A missing
 * or damaged chunk is noted at lookup and reported when its page's turn
 * comes, so the pages (and runs) before it are delivered exactly as a
 * page-by-page walk would deliver them.
 *
 * Large walks use a second thread (when the machine has more than one CPU):
 * half of the lookups run on a second read transaction, a read copies out
 * half of the window, and runs are copied out and checked one run ahead of
 * the callback, which always runs on the caller's thread.
 * =================================================================== */

/* Pages gathered before their lookups: about 56 bytes of scratch each. */
#define WIN_PAGES 65536u
/* Bits of the key the radix pass sorts by; buckets are finished apart. */
#define SORT_BITS_MAX 16u
#define SORT_SMALL 16u
/* Windows of at least this many pages are worth a second thread. */
#define PAR_MIN_PAGES 1024u
/* Returned by a producer told to stop; never leaves this file. */
#define RUN_STOPPED (-3000)

struct wpage {
	struct store_hash key;
	uint64_t idx;
	const uint8_t *body;      /* content bytes 16..4095, in the map */
	int err;                  /* the chunk is missing or damaged */
	uint8_t inl[HEAD_INLINE]; /* content bytes 0..15, from the body key */
};

/* A read transaction with a cursor on body. */
struct reader {
	MDB_txn *txn;
	MDB_cursor *bc;
};

struct rwalk {
	struct store_snap *sn;
	MDB_txn *txn;            /* the walk's transaction (r[0].txn) */
	struct reader r[2];      /* r[1].txn: a second reader, or NULL */
	uint64_t first, end;     /* pages [first, end) */
	bool verify;
	bool split;              /* may use a second thread */
	uint8_t *dst;            /* read: destination of page `first` */
	const uint64_t *list;    /* read of listed pages only (first is 0) */
	size_t nlist;
	store_run_fn fn;         /* runs: callback */
	void *arg;
	uint64_t run_first, run_n; /* the open run, in sn->run[run_buf] */
	unsigned run_buf;
	uint32_t nwin;           /* pages gathered in sn->win */
	uint32_t win_cap;        /* ... before they are looked up */
	uint32_t par_min;        /* windows this large use a second thread */
	const char *disk;        /* the map walked (NULL: memory), for messages */
};

static bool can_split(const struct store *s)
{
	static int ncpu;
	int n = __atomic_load_n(&ncpu, __ATOMIC_RELAXED);

	if (!n) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);

		n = c > 1 ? 2 : 1;
		__atomic_store_n(&ncpu, n, __ATOMIC_RELAXED);
	}
	/* a test hash hook need not be thread-safe */
	return n > 1 && !s->hash_hook;
}

/*
 * Start a helper thread with every signal blocked, so that it never takes
 * a signal meant for the application's own threads.
 */
static bool spawn(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc == 0;
}

static unsigned sort_bits(uint32_t n)
{
	unsigned bits = 1;

	while (bits < SORT_BITS_MAX && (1u << bits) < n)
		bits++;
	return bits;
}

/* Room for a window of *cap pages: n, at most the window size. */
static int win_alloc(struct store_snap *sn, uint64_t n, uint32_t *cap_out)
{
	uint32_t max = sn->s->read_window ? sn->s->read_window : WIN_PAGES;
	uint32_t cap = n < max ? (uint32_t)n : max;

	*cap_out = cap;
	if (cap <= sn->win_cap)
		return 0;
	free(sn->win);
	free(sn->ord);
	free(sn->cnt);
	sn->win = malloc((size_t)cap * sizeof(*sn->win));
	sn->ord = malloc((size_t)cap * sizeof(*sn->ord));
	sn->cnt = malloc((((size_t)1 << sort_bits(cap)) + 1) * sizeof(*sn->cnt));
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
	/* now cnt[b] is the end of bucket b and the start of bucket b + 1 */
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
 * Find one page chunk in the body database: the body's key holds the first
 * 16 bytes, its value the rest. The head (the reference count) is not
 * needed to read; the re-hash checks what the body holds.
 */
static int win_find(struct reader *r, struct wpage *p)
{
	MDB_val k = { 16, p->key.b }, v;
	int rc;

	p->err = 0;
	p->body = NULL;
	rc = mdb_cursor_get(r->bc, &k, &v, MDB_SET_RANGE);
	if (rc && rc != MDB_NOTFOUND)
		return store_mdb_err(rc);
	if (rc || k.mv_size != BODY_KEY_SIZE || memcmp(k.mv_data, p->key.b, 16) ||
	    v.mv_size != STORE_PAGE_SIZE - HEAD_INLINE) {
		p->err = RW_ECORRUPT;
		return 0;
	}
	memcpy(p->inl, (const uint8_t *)k.mv_data + 16, HEAD_INLINE);
	p->body = v.mv_data;
	return 0;
}

/* Look up the keys at sorted positions [lo, hi) of the window. */
struct lpart {
	struct rwalk *w;
	struct reader *r;
	uint32_t lo, hi;
	int rc;
};

static void *lookup_part(void *arg)
{
	struct lpart *l = arg;
	struct wpage *wp = l->w->sn->win;
	const uint32_t *ord = l->w->sn->ord;
	const struct wpage *prev = NULL;

	l->rc = 0;
	for (uint32_t i = l->lo; i < l->hi; i++) {
		struct wpage *p = &wp[ord[i]];

		if (prev && !memcmp(prev->key.b, p->key.b, 16)) {
			memcpy(p->inl, prev->inl, HEAD_INLINE);
			p->body = prev->body;
			p->err = prev->err;
			continue;
		}
		l->rc = win_find(l->r, p);
		if (l->rc)
			break;
		prev = p;
	}
	return NULL;
}

/*
 * Sort the window and look its keys up. With a second reader, the upper
 * half of the keys is looked up on another thread: the halves touch
 * disjoint window entries and mostly disjoint leaf pages.
 */
static int win_lookup(struct rwalk *w)
{
	struct lpart a = { .w = w, .r = &w->r[0], .hi = w->nwin };
	struct lpart b = { .w = w, .r = &w->r[1], .hi = w->nwin };
	pthread_t t;

	win_sort(w->sn, w->nwin);
	if (w->r[1].txn && w->nwin >= w->par_min) {
		b.lo = a.hi = w->nwin / 2;
		if (spawn(&t, lookup_part, &b)) {
			lookup_part(&a);
			pthread_join(t, NULL);
			return a.rc ? a.rc : b.rc;
		}
		a.hi = w->nwin;
	}
	lookup_part(&a);
	return a.rc;
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

/* ---- reads into a buffer ---- */

/* Window entries [lo, hi) of a read. */
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

		d->rc = page_out(w->sn->s, p,
				 w->dst + (p->idx - w->first) * STORE_PAGE_SIZE,
				 w->verify);
	}
	return NULL;
}

/*
 * Copy a read's window out; a large one in two halves on two threads. The
 * copies only read the map, which the walk's transaction keeps in place,
 * and write disjoint pages of the buffer. The first damage in index order
 * is reported.
 */
static int read_deliver(struct rwalk *w)
{
	struct rpart a = { .w = w, .hi = w->nwin };
	struct rpart b = { .w = w, .hi = w->nwin };
	pthread_t t;

	if (w->split && w->nwin >= w->par_min) {
		b.lo = a.hi = w->nwin / 2;
		if (spawn(&t, read_part, &b)) {
			read_part(&a);
			pthread_join(t, NULL);
			return a.rc ? a.rc : b.rc;
		}
		a.hi = w->nwin;
	}
	read_part(&a);
	return a.rc;
}

/* ---- runs ---- */

/*
 * Runs handed from a producer thread, which copies and checks pages into
 * the two run buffers in turn, to the caller's thread, which passes each
 * complete run to the callback and so frees its buffer.
 */
struct rpipe {
	struct rwalk *w;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t first[2], n[2];  /* the run published in each buffer */
	unsigned b0;              /* buffer of the first run published */
	unsigned made, used;      /* runs published, runs consumed */
	bool stop;                /* consumer: the callback stopped the walk */
	bool fin;                 /* producer: done with this window */
	int rc;                   /* producer: why it finished */
};

/* Hand the open run to the callback. */
static int run_call(struct rwalk *w)
{
	int rc = 0;

	if (w->run_n)
		rc = w->fn(w->arg, w->run_first, w->run_n, w->sn->run[w->run_buf]);
	w->run_n = 0;
	return rc;
}

/* Producer: publish the open run, then wait until the other buffer is free. */
static int run_publish(struct rpipe *pp)
{
	struct rwalk *w = pp->w;
	int rc = 0;

	pthread_mutex_lock(&pp->mu);
	pp->first[w->run_buf] = w->run_first;
	pp->n[w->run_buf] = w->run_n;
	pp->made++;
	pthread_cond_broadcast(&pp->cv);
	while (pp->made - pp->used >= 2 && !pp->stop)
		pthread_cond_wait(&pp->cv, &pp->mu);
	if (pp->stop)
		rc = RUN_STOPPED;
	pthread_mutex_unlock(&pp->mu);
	w->run_buf ^= 1;
	w->run_n = 0;
	return rc;
}

/*
 * Copy the window's pages into runs, handing over each run once it is
 * complete: to the callback directly (pp NULL) or to the consumer. The run
 * still open at the end of the window continues in the next one.
 */
static int runs_fill(struct rwalk *w, struct rpipe *pp)
{
	int rc;

	for (uint32_t i = 0; i < w->nwin; i++) {
		const struct wpage *p = &w->sn->win[i];

		if (w->run_n && (w->run_first + w->run_n != p->idx ||
				 w->run_n == STORE_RUN_MAX)) {
			rc = pp ? run_publish(pp) : run_call(w);
			if (rc)
				return rc;
		}
		if (!w->run_n)
			w->run_first = p->idx;
		rc = page_out(w->sn->s, p,
			      w->sn->run[w->run_buf] + w->run_n * STORE_PAGE_SIZE,
			      w->verify);
		if (rc)
			return rc;
		w->run_n++;
	}
	return 0;
}

static void *run_producer(void *arg)
{
	struct rpipe *pp = arg;
	int rc = runs_fill(pp->w, pp);

	pthread_mutex_lock(&pp->mu);
	pp->rc = rc;
	pp->fin = true;
	pthread_cond_broadcast(&pp->cv);
	pthread_mutex_unlock(&pp->mu);
	return NULL;
}

/*
 * Deliver a window's runs; for a large window, copy and check them on a
 * producer thread one run ahead of the callback. Runs published before a
 * damaged page are still passed on, as a sequential walk would.
 */
static int runs_deliver(struct rwalk *w)
{
	struct rpipe pp = { .w = w, .b0 = w->run_buf };
	pthread_t t;
	int rc = 0;

	if (!w->split || w->nwin < w->par_min)
		return runs_fill(w, NULL);
	pthread_mutex_init(&pp.mu, NULL);
	pthread_cond_init(&pp.cv, NULL);
	if (!spawn(&t, run_producer, &pp)) {
		pthread_cond_destroy(&pp.cv);
		pthread_mutex_destroy(&pp.mu);
		return runs_fill(w, NULL);
	}
	pthread_mutex_lock(&pp.mu);
	for (;;) {
		while (pp.used == pp.made && !pp.fin)
			pthread_cond_wait(&pp.cv, &pp.mu);
		if (pp.used == pp.made)
			break;
		unsigned b = (pp.b0 + pp.used) & 1;
		uint64_t first = pp.first[b], n = pp.n[b];

		pthread_mutex_unlock(&pp.mu);
		rc = w->fn(w->arg, first, n, w->sn->run[b]);
		pthread_mutex_lock(&pp.mu);
		pp.used++;
		if (rc)
			pp.stop = true;
		pthread_cond_broadcast(&pp.cv);
		if (rc)
			break;
	}
	pthread_mutex_unlock(&pp.mu);
	pthread_join(t, NULL);
	pthread_cond_destroy(&pp.cv);
	pthread_mutex_destroy(&pp.mu);
	return rc ? rc : pp.rc;
}

/* ---- the walk ---- */

/* Say which page of the window failed, and why (store_error_detail()). */
static void win_note(struct rwalk *w)
{
	struct store_snap *sn = w->sn;
	char hex[33];

	for (uint32_t i = 0; i < w->nwin; i++) {
		const struct wpage *p = &sn->win[i];
		uint8_t page[STORE_PAGE_SIZE];
		int prc = page_out(sn->s, p, page, true);

		if (!prc)
			continue;
		store_note("chunk %s of checkpoint %llu (%s%s page %llu) %s",
			   store_hash_hex(&p->key, hex), (unsigned long long)sn->rec.id,
			   w->disk ? "disk " : "memory", w->disk ? w->disk : "",
			   (unsigned long long)p->idx,
			   prc == RW_ECHECKSUM ? "does not match its hash"
			   : prc == RW_ENOTFOUND ? "is missing" : "is damaged");
		return;
	}
}

static int win_flush(struct rwalk *w)
{
	int rc;

	if (!w->nwin)
		return 0;
	rc = win_lookup(w);
	if (!rc) {
		rc = w->dst ? read_deliver(w) : runs_deliver(w);
		if (rc == RW_ECHECKSUM || rc == RW_ECORRUPT || rc == RW_ENOTFOUND)
			win_note(w);
	}
	w->nwin = 0;
	return rc;
}

static int walk_page(struct rwalk *w, uint64_t idx, const struct store_hash *k)
{
	struct wpage *p = &w->sn->win[w->nwin++];

	p->key = *k;
	p->idx = idx;
	return w->nwin == w->win_cap ? win_flush(w) : 0;
}

/* Holes read as zeros; a run simply ends at one (the next page is not next). */
static void walk_hole(struct rwalk *w, uint64_t a, uint64_t b)
{
	if (w->dst)
		memset(w->dst + (a - w->first) * STORE_PAGE_SIZE, 0,
		       (b - a) * STORE_PAGE_SIZE);
}

/*
 * Walk the subtree of node k (at level, covering pages from base). With a
 * page list, w->list[lo..hi) are the listed pages under this node.
 */
static int walk(struct rwalk *w, unsigned level, const struct store_hash *k,
		uint64_t base, size_t lo, size_t hi)
{
	uint64_t span = tree_span(level);
	uint64_t end = span > UINT64_MAX - base ? UINT64_MAX : base + span;
	uint64_t a = base > w->first ? base : w->first;
	uint64_t b = end < w->end ? end : w->end;
	struct node n;
	int rc;

	if (a >= b || (w->list && lo == hi))
		return 0;
	if (store_hash_is_zero(k)) {
		if (!w->list)
			walk_hole(w, a, b);
		for (size_t j = lo; j < hi; j++)
			walk_hole(w, w->list[j], w->list[j] + 1);
		return 0;
	}
	rc = node_load(w->sn->s, w->txn, k, level, &n, w->verify);
	if (rc) {
		char hex[33];

		store_note("tree node %s of checkpoint %llu (%s%s, pages from %llu) %s",
			   store_hash_hex(k, hex), (unsigned long long)w->sn->rec.id,
			   w->disk ? "disk " : "memory", w->disk ? w->disk : "",
			   (unsigned long long)base,
			   rc == RW_ECHECKSUM ? "does not match its hash" : "is missing or damaged");
		return rc;
	}
	if (level == 0) {
		for (uint64_t i = a, j = lo; w->list ? j < hi : i < b; i++) {
			if (w->list)
				i = w->list[j++];
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
	size_t j = lo;

	for (unsigned i = (unsigned)((a - base) / cspan); i < STORE_FANOUT; i++) {
		uint64_t cbase = base + i * cspan;
		uint64_t cend = cspan > UINT64_MAX - cbase ? UINT64_MAX : cbase + cspan;
		size_t clo = j;

		if (cbase >= b)
			break;
		while (w->list && j < hi && w->list[j] < cend)
			j++;
		rc = walk(w, level - 1, &n.e[i], cbase, clo, j);
		if (rc)
			return rc;
	}
	return 0;
}

static void reader_close(struct reader *r)
{
	if (r->bc)
		mdb_cursor_close(r->bc);
	r->bc = NULL;
}

static int reader_open(struct store *s, struct reader *r)
{
	return store_mdb_err(mdb_cursor_open(r->txn, s->body, &r->bc));
}

/*
 * A second read transaction for the lookups of a large walk, begun while
 * the walk's own is open (so the map cannot move under it; a read-only
 * transaction of an MDB_NOTLS environment may pass between threads). It
 * may see a later commit: if the checkpoint still exists there, every
 * chunk it references does too, with the same content (keys are content
 * hashes). Any failure just means the lookups stay on one thread.
 */
static void second_reader(struct rwalk *w)
{
	struct store *s = w->sn->s;
	struct reader *r = &w->r[1];

	if (store_txn_begin(s, false, &r->txn)) {
		r->txn = NULL;
		return;
	}
	if (snap_alive(w->sn, r->txn) || reader_open(s, r)) {
		mdb_txn_abort(r->txn);
		r->txn = NULL;
	}
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
	if (w->list) {
		for (size_t i = 0; i < w->nlist; i++) {
			if (i && w->list[i] <= w->list[i - 1])
				return -EINVAL;
			if (w->list[i] >= m->npages)
				return -ERANGE;
		}
		if (!w->nlist)
			return 0;
	}
	if (!n)
		return 0;
	rc = win_alloc(sn, w->list ? w->nlist : n, &w->win_cap);
	if (rc)
		return rc;
	w->sn = sn;
	w->disk = disk;
	w->first = first;
	w->end = first + n;
	w->verify = !(s->flags & STORE_OPEN_NO_READ_VERIFY);
	w->par_min = s->read_par_min ? s->read_par_min : PAR_MIN_PAGES;
	w->split = (w->list ? w->nlist : n) >= w->par_min && can_split(s);
	rc = store_rd_begin(s, &w->txn);
	if (rc)
		return rc;
	w->r[0].txn = w->txn;
	rc = snap_alive(sn, w->txn);
	if (!rc)
		rc = reader_open(s, &w->r[0]);
	if (rc)
		goto out;
	if (w->split)
		second_reader(w);
	rc = walk(w, m->height - 1, &m->root, 0, 0, w->nlist);
	if (!rc)
		rc = win_flush(w);
	if (!rc && !w->dst)
		rc = run_call(w);
	if (w->r[1].txn) {
		reader_close(&w->r[1]);
		mdb_txn_abort(w->r[1].txn);
	}
	reader_close(&w->r[0]);
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

int store_snap_read_pages(struct store_snap *sn, const char *disk,
			  const uint64_t *idx, size_t n, void *image)
{
	const struct map_rec *m = rec_map(&sn->rec, disk);
	struct rwalk w = { .dst = image, .list = idx, .nlist = n };

	return walk_range(sn, disk, 0, m ? m->npages : 0, &w);
}

int store_snap_foreach_run(struct store_snap *sn, const char *disk,
			   uint64_t first, uint64_t n, store_run_fn fn, void *arg)
{
	struct rwalk w = { .fn = fn, .arg = arg };

	for (int i = 0; i < 2; i++) {
		if (!sn->run[i])
			sn->run[i] = malloc((size_t)STORE_RUN_MAX * STORE_PAGE_SIZE);
		if (!sn->run[i])
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
	uint8_t kb[RECDB_KEY_MAX];
	size_t nlen = name ? strlen(name) : 0;
	MDB_txn *txn;
	MDB_val k, v;
	const uint8_t *p;
	int rc;

	*data = NULL;
	if (!nlen || nlen > STORE_NAME_MAX)
		return RW_ENOTFOUND;
	k.mv_size = recdb_key(kb, sn->rec.id, name, nlen);
	k.mv_data = kb;
	rc = store_rd_begin(s, &txn);
	if (rc)
		return rc;
	rc = store_mdb_err(mdb_get(txn, s->rec, &k, &v));
	if (rc)
		goto out;
	p = v.mv_data;
	if (v.mv_size < RECDB_HDR || get_le32(p + 4) != 0) {
		rc = RW_ECORRUPT;
		goto out;
	}
	if (XXH3_64bits(p + RECDB_HDR, v.mv_size - RECDB_HDR) != get_le64(p + 8)) {
		store_note("record \"%s\" of checkpoint %llu fails its checksum", name,
			   (unsigned long long)sn->rec.id);
		rc = RW_ECHECKSUM;
		goto out;
	}
	*data = malloc(v.mv_size - RECDB_HDR + 1);
	if (!*data) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(*data, p + RECDB_HDR, v.mv_size - RECDB_HDR);
	*len = v.mv_size - RECDB_HDR;
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

		if (nlen == 0 || nlen > STORE_NAME_MAX || v.mv_size < RECDB_HDR) {
			rc = RW_ECORRUPT;
			break;
		}
		memcpy(name, (const uint8_t *)k.mv_data + 8, nlen);
		name[nlen] = 0;
		ri.name = name;
		ri.version = get_le32(p);
		ri.len = v.mv_size - RECDB_HDR;
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
		struct store_crec rec;

		if (k.mv_size != 8) {
			rc = RW_ECORRUPT;
			break;
		}
		rc = load_rec(s, txn, get_be64(k.mv_data), &rec);
		if (rc) {
			store_note("the record of checkpoint %llu is damaged (%s)",
				   (unsigned long long)get_be64(k.mv_data), rw_strerror(rc));
			break;
		}
		rc = fn(arg, &rec.info);
		crec_free(&rec);
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
	struct store_crec ra, rb;
	struct dwalk d = { .s = s, .fn = fn, .arg = arg,
			   .verify = !(s->flags & STORE_OPEN_NO_READ_VERIFY) };
	const struct map_rec *ma, *mb;
	unsigned h;
	int rc;

	rc = store_rd_begin(s, &d.txn);
	if (rc)
		return rc;
	rc = crec_get(s, d.txn, a, &ra);
	if (rc)
		goto out;
	rc = crec_get(s, d.txn, b, &rb);
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
	crec_free(&rb);
out_a:
	crec_free(&ra);
out:
	store_rd_end(s, d.txn);
	return rc;
}
