/*
 * snap.c - reading committed checkpoints: pages, runs, records, the list
 * of checkpoints, and diffs between two checkpoints.
 *
 * A snap keeps the decoded checkpoint record; each read call opens its own
 * short read transaction, so an open snap never pins old pages or blocks
 * the map from growing.
 */
#include <errno.h>
#include <stdlib.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "store_internal.h"

struct store_snap {
	struct store *s;
	struct ckpt_rec rec;
	uint8_t *run;            /* STORE_RUN_MAX pages, allocated on first use */
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
 * =================================================================== */

struct rwalk {
	struct store_snap *sn;
	MDB_txn *txn;
	uint64_t first, end;     /* pages [first, end) */
	bool verify;
	uint8_t *dst;            /* read: destination of page `first` */
	store_run_fn fn;         /* runs: callback */
	void *arg;
	uint64_t run_first, run_n;
};

static int run_flush(struct rwalk *w)
{
	int rc = 0;

	if (w->run_n)
		rc = w->fn(w->arg, w->run_first, w->run_n, w->sn->run);
	w->run_n = 0;
	return rc;
}

static int walk_hole(struct rwalk *w, uint64_t a, uint64_t b)
{
	if (w->dst) {
		memset(w->dst + (a - w->first) * STORE_PAGE_SIZE, 0,
		       (b - a) * STORE_PAGE_SIZE);
		return 0;
	}
	return run_flush(w);
}

static int walk_page(struct rwalk *w, uint64_t idx, const struct store_hash *k)
{
	struct store *s = w->sn->s;
	uint8_t *dst;
	size_t len;
	int rc;

	if (w->dst) {
		dst = w->dst + (idx - w->first) * STORE_PAGE_SIZE;
	} else {
		if (w->run_n && (w->run_first + w->run_n != idx ||
				 w->run_n == STORE_RUN_MAX)) {
			rc = run_flush(w);
			if (rc)
				return rc;
		}
		if (!w->run_n)
			w->run_first = idx;
		dst = w->sn->run + w->run_n * STORE_PAGE_SIZE;
	}
	rc = chunk_read(s, w->txn, k, CHUNK_PAGE, dst, STORE_PAGE_SIZE, &len, w->verify);
	if (rc == RW_ENOTFOUND)
		rc = RW_ECORRUPT;
	if (rc)
		return rc;
	if (!w->dst)
		w->run_n++;
	return 0;
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
	if (store_hash_is_zero(k))
		return walk_hole(w, a, b);
	rc = node_load(w->sn->s, w->txn, k, level, &n, w->verify);
	if (rc)
		return rc;
	if (level == 0) {
		for (uint64_t i = a; i < b; i++) {
			const struct store_hash *e = &n.e[i - base];

			rc = store_hash_is_zero(e) ? walk_hole(w, i, i + 1)
						   : walk_page(w, i, e);
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
	w->sn = sn;
	w->first = first;
	w->end = first + n;
	w->verify = !(s->flags & STORE_OPEN_NO_READ_VERIFY);
	rc = store_rd_begin(s, &w->txn);
	if (rc)
		return rc;
	rc = snap_alive(sn, w->txn);
	if (!rc)
		rc = walk(w, m->height - 1, &m->root, 0);
	if (!rc && !w->dst)
		rc = run_flush(w);
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
