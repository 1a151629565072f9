/*
 * maint.c - deleting checkpoints, accounting, verify and gc.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "guard.h"
#include "store_internal.h"

/* ===================================================================
 * Delete
 * =================================================================== */

struct del_ctx {
	uint64_t id;
	uint64_t freed;
};

/* Is id in the ascending array ids[0..n)? */
static bool id_known(const uint64_t *ids, size_t n, uint64_t id)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ids[mid] == id)
			return true;
		if (ids[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/*
 * Delete (or, dry_run, only count) every entry of dbi that leftover() says
 * belongs to nothing. Returns 0 or a store error.
 */
static int gc_sweep(struct store *s, MDB_txn *txn, MDB_dbi dbi,
		    bool (*leftover)(void *arg, const MDB_val *key),
		    void *arg, bool dry_run, uint64_t *count)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc = 0, mrc = mdb_cursor_open(txn, dbi, &cur);

	if (mrc)
		return store_mdb_err(mrc);
	mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	while (!mrc) {
		if (leftover(arg, &k)) {
			(*count)++;
			if (!dry_run) {
				rc = guard_value_ok(s, &v);
				if (rc)
					break;
				mrc = mdb_cursor_del(cur, 0);
				if (mrc)
					break;
				mrc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
				continue;
			}
		}
		mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (rc)
		return rc;
	return mrc && mrc != MDB_NOTFOUND && mrc != EINVAL ? store_mdb_err(mrc) : 0;
}

struct body_probe {
	MDB_txn *txn;
	MDB_dbi head;
};

/* A body is a leftover when its key is malformed or its head is gone. */
static bool body_orphan(void *arg, const MDB_val *k)
{
	const struct body_probe *bp = arg;
	MDB_val hk = { 16, k->mv_data }, hv;

	return k->mv_size != BODY_KEY_SIZE || mdb_get(bp->txn, bp->head, &hk, &hv) == MDB_NOTFOUND;
}

struct id_set {
	const uint64_t *ids;
	size_t n;
};

/* A record is a leftover when no checkpoint has its id. */
static bool record_orphan(void *arg, const MDB_val *k)
{
	const struct id_set *set = arg;

	return !id_known(set->ids, set->n, k->mv_size >= 8 ? get_be64(k->mv_data) : 0);
}

static int del_records(struct store *s, MDB_txn *txn, uint64_t id)
{
	MDB_cursor *cur;
	uint8_t kb[8];
	MDB_val k = { 8, kb }, v;
	int rc, mrc;

	put_be64(kb, id);
	rc = store_mdb_err(mdb_cursor_open(txn, s->rec, &cur));
	if (rc)
		return rc;
	mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	while (mrc == 0 && k.mv_size >= 8 && get_be64(k.mv_data) == id) {
		rc = guard_value_ok(s, &v);
		if (rc)
			break;
		mrc = mdb_cursor_del(cur, 0);
		if (mrc)
			break;
		mrc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
	}
	mdb_cursor_close(cur);
	if (rc)
		return rc;
	return mrc == 0 || mrc == MDB_NOTFOUND || mrc == EINVAL ? 0 : store_mdb_err(mrc);
}

static int delete_txn(struct store *s, MDB_txn *txn, void *arg)
{
	struct del_ctx *d = arg;
	struct store_crec rec;
	uint8_t kb[8];
	MDB_val k = { 8, kb };
	int rc;

	d->freed = 0;
	rc = crec_get(s, txn, d->id, &rec);
	if (rc)
		return rc;
	for (size_t i = 0; i < rec.nmaps && !rc; i++)
		if (!store_hash_is_zero(&rec.maps[i].root))
			rc = chunk_unref(s, txn, &rec.maps[i].root, &d->freed);
	crec_free(&rec);
	if (!rc)
		rc = del_records(s, txn, d->id);
	put_be64(kb, d->id);
	if (!rc)
		rc = guard_del(s, txn, s->ckpt, &k);
	return rc;
}

int store_delete(struct store *s, uint64_t id, uint64_t *freed_bytes)
{
	struct del_ctx d = { .id = id };
	int rc = store_write_txn(s, delete_txn, &d);

	if (!rc && freed_bytes)
		*freed_bytes = d.freed;
	return rc;
}

/* ===================================================================
 * Stats and exclusive bytes
 * =================================================================== */

int store_stats(struct store *s, struct store_stats *out)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	MDB_envinfo info;
	struct stat st;
	char *path;
	int rc, mrc;

	memset(out, 0, sizeof(*out));
	rc = store_rd_begin(s, &txn);
	if (rc)
		return rc;
	rc = store_mdb_err(mdb_cursor_open(txn, s->head, &cur));
	if (rc)
		goto out;
	for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !mrc;
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct chunk_head h;

		if (head_decode(&v, &h))
			continue;
		out->chunks++;
		if (h.kind == CHUNK_PAGE) {
			out->page_chunks++;
			out->page_bytes += h.len;
		} else {
			out->node_chunks++;
			out->node_bytes += h.len;
		}
	}
	mdb_cursor_close(cur);
	rc = store_mdb_err(mdb_cursor_open(txn, s->ckpt, &cur));
	if (rc)
		goto out;
	for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !mrc;
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct store_crec rec;

		out->checkpoints++;
		if (crec_decode(v.mv_data, v.mv_size, &rec))
			continue;
		for (size_t i = 0; i < rec.nmaps; i++)
			out->logical_bytes += rec.maps[i].present * STORE_PAGE_SIZE;
		crec_free(&rec);
	}
	mdb_cursor_close(cur);
	rc = store_mdb_err(mdb_cursor_open(txn, s->rec, &cur));
	if (rc)
		goto out;
	for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !mrc;
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		out->records++;
		if (v.mv_size >= RECDB_HDR)
			out->record_bytes += v.mv_size - RECDB_HDR;
	}
	mdb_cursor_close(cur);
	out->dedup_ratio = out->page_bytes ? (double)out->logical_bytes / (double)out->page_bytes : 0;
	if (!mdb_env_info(s->env, &info))
		out->map_bytes = info.me_mapsize;
	if (asprintf(&path, "%s/data.mdb", s->path) >= 0) {
		if (!stat(path, &st))
			out->file_bytes = (uint64_t)st.st_size;
		free(path);
	}
out:
	store_rd_end(s, txn);
	return rc;
}

/*
 * A chunk is exclusive to a checkpoint when every one of its references
 * comes from that checkpoint's roots or from nodes exclusive to it. All
 * references to a level-L node come from level L+1 nodes or roots, so one
 * pass per level, top-down, sees every such reference before deciding.
 */
int store_exclusive(struct store *s, uint64_t id, uint64_t *bytes, uint64_t *chunks)
{
	struct hmap cur = { 0 }, next = { 0 };
	struct store_crec rec;
	MDB_txn *txn;
	int top = 0, rc;

	*bytes = *chunks = 0;
	rc = store_rd_begin(s, &txn);
	if (rc)
		return rc;
	rc = crec_get(s, txn, id, &rec);
	if (rc)
		goto out;
	for (size_t i = 0; i < rec.nmaps; i++)
		if ((int)rec.maps[i].height - 1 > top)
			top = (int)rec.maps[i].height - 1;
	rc = hmap_init(&cur, 64);
	if (rc)
		goto out_rec;
	for (int level = top; level >= -1 && !rc; level--) {
		rc = hmap_init(&next, cur.n * 4 + 16);
		if (rc)
			break;
		for (size_t i = 0; i < rec.nmaps && !rc; i++) {
			struct hent *e;

			if ((int)rec.maps[i].height - 1 != level ||
			    store_hash_is_zero(&rec.maps[i].root))
				continue;
			e = hmap_put(&cur, &rec.maps[i].root, NULL);
			if (!e)
				rc = -ENOMEM;
			else
				e->val++;
		}
		for (size_t j = 0; j < cur.cap && !rc; j++) {
			struct hent *e = &cur.e[j];
			struct chunk_head h;
			struct node n;

			if (!e->used)
				continue;
			rc = chunk_head_get(s, txn, &e->key, &h);
			if (rc) {
				rc = rc == RW_ENOTFOUND ? RW_ECORRUPT : rc;
				break;
			}
			if (h.refs != e->val)
				continue;
			*bytes += h.len;
			(*chunks)++;
			if (h.kind != CHUNK_NODE)
				continue;
			rc = node_load(s, txn, &e->key, (unsigned)level, &n, false);
			for (unsigned c = 0; !rc && c < n.count; c++) {
				struct hent *ce;

				if (store_hash_is_zero(&n.e[c]))
					continue;
				ce = hmap_put(&next, &n.e[c], NULL);
				if (!ce)
					rc = -ENOMEM;
				else
					ce->val++;
			}
		}
		hmap_free(&cur);
		cur = next;
		memset(&next, 0, sizeof(next));
	}
	hmap_free(&cur);
	hmap_free(&next);
out_rec:
	crec_free(&rec);
out:
	store_rd_end(s, txn);
	return rc;
}

/* ===================================================================
 * Verify
 * =================================================================== */

const char *store_problem_name(enum store_problem_kind kind)
{
	switch (kind) {
	case STORE_PROB_CHUNK_HASH: return "chunk-hash";
	case STORE_PROB_CHUNK_FORMAT: return "chunk-format";
	case STORE_PROB_NODE: return "node";
	case STORE_PROB_MISSING: return "missing-chunk";
	case STORE_PROB_REFCOUNT: return "refcount";
	case STORE_PROB_UNREFERENCED: return "unreferenced-chunk";
	case STORE_PROB_ORPHAN_BODY: return "orphan-body";
	case STORE_PROB_CKPT: return "checkpoint-record";
	case STORE_PROB_RECORD: return "record";
	case STORE_PROB_ORPHAN_RECORD: return "orphan-record";
	case STORE_PROB_META: return "meta";
	}
	return "unknown";
}

struct vinfo {
	uint64_t stored;        /* refcount in the head */
	uint64_t expected;      /* references found */
	uint8_t kind, level;
	bool bad;               /* content unusable */
};

struct vprob {
	enum store_problem_kind kind;
	int code;
	struct store_hash chunk;
	char detail[160];
	uint64_t *affected;
	size_t naff, capaff;
};

struct verify {
	struct store *s;
	MDB_txn *txn;
	int (*fn)(void *arg, const struct store_problem *p);
	void *arg;
	struct store_verify_stats st;
	struct hmap idx;        /* key -> index into info */
	struct vinfo *info;
	size_t ninfo, capinfo;
	struct vprob *probs;    /* chunk problems, reported at the end */
	size_t nprobs, capprobs;
	uint64_t *ckpts;        /* ids of decodable checkpoints */
	size_t nckpts, capckpts;
	uint8_t *buf;           /* CHUNK_MAX */
};

/* Report a problem that is not about one chunk, right away. */
static int vreport(struct verify *v, enum store_problem_kind kind, int code,
		   uint64_t ckpt, const char *record, const char *detail)
{
	struct store_problem p = {
		.kind = kind, .code = code, .ckpt = ckpt, .record = record,
		.detail = detail, .naffected = ckpt ? 1 : 0,
		.affected = ckpt ? &ckpt : NULL,
	};

	v->st.problems++;
	return v->fn ? v->fn(v->arg, &p) : 0;
}

/* Queue a chunk problem; its affected checkpoints are found later. */
static int vchunk(struct verify *v, enum store_problem_kind kind, int code,
		  const struct store_hash *k, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static int vchunk(struct verify *v, enum store_problem_kind kind, int code,
		  const struct store_hash *k, const char *fmt, ...)
{
	struct vprob *p;
	va_list ap;

	if (v->nprobs == v->capprobs) {
		size_t cap = v->capprobs ? v->capprobs * 2 : 16;
		struct vprob *np = realloc(v->probs, cap * sizeof(*np));
		if (!np)
			return -ENOMEM;
		v->probs = np;
		v->capprobs = cap;
	}
	p = &v->probs[v->nprobs++];
	memset(p, 0, sizeof(*p));
	p->kind = kind;
	p->code = code;
	p->chunk = *k;
	va_start(ap, fmt);
	vsnprintf(p->detail, sizeof(p->detail), fmt, ap);
	va_end(ap);
	return 0;
}

static struct vinfo *vget(struct verify *v, const struct store_hash *k)
{
	struct hent *e = hmap_get(&v->idx, k);

	return e ? &v->info[e->val] : NULL;
}

/* Pass 1: every head with its body; re-hash. */
static int verify_chunks(struct verify *v)
{
	struct store *s = v->s;
	MDB_cursor *hc, *bc;
	MDB_val hk, hv, bk, bv;
	int hrc, brc, rc;
	char hex[33];

	rc = store_mdb_err(mdb_cursor_open(v->txn, s->head, &hc));
	if (rc)
		return rc;
	rc = store_mdb_err(mdb_cursor_open(v->txn, s->body, &bc));
	if (rc) {
		mdb_cursor_close(hc);
		return rc;
	}
	hrc = mdb_cursor_get(hc, &hk, &hv, MDB_FIRST);
	brc = mdb_cursor_get(bc, &bk, &bv, MDB_FIRST);
	while (!rc && (!hrc || !brc)) {
		int cmp;

		if (hrc)
			cmp = 1;
		else if (brc)
			cmp = -1;
		else if (hk.mv_size != 16 || bk.mv_size != BODY_KEY_SIZE)
			cmp = hk.mv_size != 16 ? -1 : 1;
		else
			cmp = memcmp(hk.mv_data, bk.mv_data, 16);
		if (cmp > 0) {
			struct store_hash k = { 0 };

			memcpy(k.b, bk.mv_data, bk.mv_size < 16 ? bk.mv_size : 16);
			rc = vchunk(v, STORE_PROB_ORPHAN_BODY, RW_ECORRUPT, &k,
				    "body of chunk %s has no head", store_hash_hex(&k, hex));
			brc = mdb_cursor_get(bc, &bk, &bv, MDB_NEXT);
			continue;
		}
		struct store_hash k = { 0 };
		struct chunk_head h;
		struct vinfo *vi;
		struct hent *e;
		bool has_body = cmp == 0;

		memcpy(k.b, hk.mv_data, hk.mv_size < 16 ? hk.mv_size : 16);
		if (v->ninfo == v->capinfo) {
			size_t cap = v->capinfo ? v->capinfo * 2 : 1024;
			struct vinfo *ni = realloc(v->info, cap * sizeof(*ni));
			if (!ni) {
				rc = -ENOMEM;
				break;
			}
			v->info = ni;
			v->capinfo = cap;
		}
		e = hmap_put(&v->idx, &k, NULL);
		if (!e) {
			rc = -ENOMEM;
			break;
		}
		e->val = v->ninfo;
		vi = &v->info[v->ninfo++];
		memset(vi, 0, sizeof(*vi));
		v->st.chunks++;
		if (hk.mv_size != 16 || head_decode(&hv, &h)) {
			vi->bad = true;
			rc = vchunk(v, STORE_PROB_CHUNK_FORMAT, RW_ECORRUPT, &k,
				    "chunk %s has a malformed header", store_hash_hex(&k, hex));
		} else if ((h.len > HEAD_INLINE) != has_body ||
			   (has_body && (bv.mv_size != h.len - HEAD_INLINE ||
					 memcmp((const uint8_t *)bk.mv_data + 16, h.inline_,
						HEAD_INLINE)))) {
			vi->bad = true;
			vi->stored = h.refs;
			vi->kind = h.kind;
			rc = vchunk(v, STORE_PROB_CHUNK_FORMAT, RW_ECORRUPT, &k,
				    "chunk %s: body %s (length %u)", store_hash_hex(&k, hex),
				    !has_body ? "is missing"
				    : bv.mv_size != h.len - HEAD_INLINE ? "has the wrong size"
				    : "key does not match the header", h.len);
		} else {
			struct store_hash got;

			vi->stored = h.refs;
			vi->kind = h.kind;
			memcpy(v->buf, h.inline_, h.len < HEAD_INLINE ? h.len : HEAD_INLINE);
			if (has_body)
				memcpy(v->buf + HEAD_INLINE, bv.mv_data, bv.mv_size);
			store_hash_data(s, h.kind, v->buf, h.len, &got);
			v->st.bytes += h.len;
			if (memcmp(got.b, k.b, 16)) {
				vi->bad = true;
				rc = vchunk(v, STORE_PROB_CHUNK_HASH, RW_ECHECKSUM, &k,
					    "chunk %s: content does not match its key",
					    store_hash_hex(&k, hex));
			} else if (h.kind == CHUNK_NODE) {
				struct node n;

				if (node_decode(v->buf, h.len, &n)) {
					vi->bad = true;
					rc = vchunk(v, STORE_PROB_NODE, RW_ECORRUPT, &k,
						    "node %s is malformed", store_hash_hex(&k, hex));
				} else {
					vi->level = (uint8_t)n.level;
				}
			}
		}
		hrc = mdb_cursor_get(hc, &hk, &hv, MDB_NEXT);
		if (has_body)
			brc = mdb_cursor_get(bc, &bk, &bv, MDB_NEXT);
	}
	mdb_cursor_close(hc);
	mdb_cursor_close(bc);
	if (!rc && hrc != MDB_NOTFOUND)
		rc = store_mdb_err(hrc);
	if (!rc && brc != MDB_NOTFOUND)
		rc = store_mdb_err(brc);
	return rc;
}

/* Count one reference to child from a node of parent_level (or a root of a
 * tree whose root level is want_level when parent is NULL). */
static int vref(struct verify *v, const struct store_hash *child, int want_level,
		const struct store_hash *from, uint64_t ckpt)
{
	struct vinfo *ci = vget(v, child);
	char hex[33], hex2[33];

	if (!ci)
		return from ? vchunk(v, STORE_PROB_MISSING, RW_ENOTFOUND, child,
				     "chunk %s referenced by node %s is missing",
				     store_hash_hex(child, hex), store_hash_hex(from, hex2))
			    : vchunk(v, STORE_PROB_MISSING, RW_ENOTFOUND, child,
				     "root %s of checkpoint %llu is missing",
				     store_hash_hex(child, hex), (unsigned long long)ckpt);
	ci->expected++;
	if (ci->bad)
		return 0;
	if (want_level < 0 ? ci->kind != CHUNK_PAGE
			   : ci->kind != CHUNK_NODE || ci->level != want_level)
		return vchunk(v, STORE_PROB_NODE, RW_ECORRUPT, child,
			      "chunk %s is referenced as a %s but is a %s",
			      store_hash_hex(child, hex),
			      want_level < 0 ? "page" : "tree node",
			      ci->kind == CHUNK_PAGE ? "page" : "node of another level");
	return 0;
}

/* Pass 2: references from every stored node. */
static int verify_nodes(struct verify *v)
{
	struct node n;
	int rc = 0;

	for (size_t j = 0; j < v->idx.cap && !rc; j++) {
		struct hent *e = &v->idx.e[j];
		struct vinfo *vi;
		size_t len;

		if (!e->used)
			continue;
		vi = &v->info[e->val];
		if (vi->bad || vi->kind != CHUNK_NODE)
			continue;
		rc = chunk_read(v->s, v->txn, &e->key, CHUNK_NODE, v->buf, CHUNK_MAX,
				&len, false);
		if (!rc)
			rc = node_decode(v->buf, len, &n);
		if (rc)
			return rc == RW_ECORRUPT ? 0 : rc;
		for (unsigned i = 0; i < n.count && !rc; i++)
			if (!store_hash_is_zero(&n.e[i]))
				rc = vref(v, &n.e[i], (int)n.level - 1, &e->key, 0);
	}
	return rc;
}

/* Pass 3: checkpoint records and their roots, named records, meta. */
static int verify_ckpts(struct verify *v)
{
	struct store *s = v->s;
	MDB_cursor *cur;
	MDB_val k, val;
	uint64_t max_id = 0, next;
	char msg[200];
	int rc, mrc;

	rc = store_mdb_err(mdb_cursor_open(v->txn, s->ckpt, &cur));
	if (rc)
		return rc;
	for (mrc = mdb_cursor_get(cur, &k, &val, MDB_FIRST); !mrc && !rc;
	     mrc = mdb_cursor_get(cur, &k, &val, MDB_NEXT)) {
		struct store_crec rec;
		uint64_t id = k.mv_size == 8 ? get_be64(k.mv_data) : 0;
		int drc;

		v->st.checkpoints++;
		if (id > max_id)
			max_id = id;
		drc = crec_decode(val.mv_data, val.mv_size, &rec);
		if (!drc && rec.id != id) {
			crec_free(&rec);
			drc = RW_ECORRUPT;
		}
		if (drc) {
			snprintf(msg, sizeof(msg), "checkpoint %llu: record is damaged (%s)",
				 (unsigned long long)id, rw_strerror(drc));
			rc = vreport(v, STORE_PROB_CKPT, drc, id, NULL, msg);
			continue;
		}
		if (v->nckpts == v->capckpts) {
			size_t cap = v->capckpts ? v->capckpts * 2 : 64;
			uint64_t *nc = realloc(v->ckpts, cap * sizeof(*nc));
			if (!nc) {
				crec_free(&rec);
				rc = -ENOMEM;
				break;
			}
			v->ckpts = nc;
			v->capckpts = cap;
		}
		v->ckpts[v->nckpts++] = id;
		for (size_t i = 0; i < rec.nmaps && !rc; i++)
			if (!store_hash_is_zero(&rec.maps[i].root))
				rc = vref(v, &rec.maps[i].root, (int)rec.maps[i].height - 1,
					  NULL, id);
		crec_free(&rec);
	}
	mdb_cursor_close(cur);
	if (rc)
		return rc;
	if (mrc != MDB_NOTFOUND)
		return store_mdb_err(mrc);

	rc = meta_get_u64(s, v->txn, "next-id", &next);
	if (rc || next <= max_id) {
		snprintf(msg, sizeof(msg), "next checkpoint id is %s",
			 rc ? "unreadable" : "not above the largest id");
		rc = vreport(v, STORE_PROB_META, RW_ECORRUPT, 0, NULL, msg);
		if (rc)
			return rc;
	}

	rc = store_mdb_err(mdb_cursor_open(v->txn, s->rec, &cur));
	if (rc)
		return rc;
	for (mrc = mdb_cursor_get(cur, &k, &val, MDB_FIRST); !mrc && !rc;
	     mrc = mdb_cursor_get(cur, &k, &val, MDB_NEXT)) {
		char name[STORE_NAME_MAX + 1] = "";
		uint64_t id = k.mv_size >= 8 ? get_be64(k.mv_data) : 0;
		size_t nlen = k.mv_size >= 8 ? k.mv_size - 8 : 0;
		const uint8_t *p = val.mv_data;

		v->st.records++;
		if (nlen > STORE_NAME_MAX)
			nlen = STORE_NAME_MAX;
		memcpy(name, (const uint8_t *)k.mv_data + 8, nlen);
		name[nlen] = 0;
		if (!id_known(v->ckpts, v->nckpts, id)) {
			snprintf(msg, sizeof(msg), "record \"%.120s\" belongs to no checkpoint (%llu)",
				 name, (unsigned long long)id);
			rc = vreport(v, STORE_PROB_ORPHAN_RECORD, RW_ECORRUPT, 0, name, msg);
		} else if (k.mv_size <= 8 || val.mv_size < RECDB_HDR || get_le32(p + 4)) {
			snprintf(msg, sizeof(msg), "checkpoint %llu: record \"%.120s\" is malformed",
				 (unsigned long long)id, name);
			rc = vreport(v, STORE_PROB_RECORD, RW_ECORRUPT, id, name, msg);
		} else if (XXH3_64bits(p + RECDB_HDR, val.mv_size - RECDB_HDR) != get_le64(p + 8)) {
			snprintf(msg, sizeof(msg),
				 "checkpoint %llu: record \"%.120s\" fails its checksum",
				 (unsigned long long)id, name);
			rc = vreport(v, STORE_PROB_RECORD, RW_ECHECKSUM, id, name, msg);
		}
	}
	mdb_cursor_close(cur);
	if (!rc && mrc != MDB_NOTFOUND)
		rc = store_mdb_err(mrc);
	return rc;
}

/* Pass 4: counts. */
static int verify_counts(struct verify *v)
{
	char hex[33];
	int rc = 0;

	for (size_t j = 0; j < v->idx.cap && !rc; j++) {
		struct hent *e = &v->idx.e[j];
		struct vinfo *vi;

		if (!e->used)
			continue;
		vi = &v->info[e->val];
		if (vi->expected == 0)
			rc = vchunk(v, STORE_PROB_UNREFERENCED, RW_ECORRUPT, &e->key,
				    "chunk %s is not referenced (stored count %llu)",
				    store_hash_hex(&e->key, hex),
				    (unsigned long long)vi->stored);
		else if (vi->stored != vi->expected)
			rc = vchunk(v, STORE_PROB_REFCOUNT, RW_ECORRUPT, &e->key,
				    "chunk %s has count %llu but %llu references",
				    store_hash_hex(&e->key, hex),
				    (unsigned long long)vi->stored,
				    (unsigned long long)vi->expected);
	}
	return rc;
}

static int aff_add(struct vprob *p, uint64_t id)
{
	if (p->naff && p->affected[p->naff - 1] == id)
		return 0;
	if (p->naff == p->capaff) {
		size_t cap = p->capaff ? p->capaff * 2 : 8;
		uint64_t *na = realloc(p->affected, cap * sizeof(*na));
		if (!na)
			return -ENOMEM;
		p->affected = na;
		p->capaff = cap;
	}
	p->affected[p->naff++] = id;
	return 0;
}

/* Walk one checkpoint's tree below k; note every problem chunk met. */
static int aff_walk(struct verify *v, struct hmap *probset, struct hmap *seen,
		    const struct store_hash *k, int level, uint64_t id)
{
	struct hent *pe;
	struct vinfo *vi;
	struct node n;
	size_t len;
	bool created;
	int rc;

	if (store_hash_is_zero(k))
		return 0;
	if (!hmap_put(seen, k, &created))
		return -ENOMEM;
	if (!created)
		return 0;
	pe = hmap_get(probset, k);
	if (pe) {
		/* val holds (first problem index + 1); problems of one chunk
		 * are queued next to each other */
		for (size_t i = pe->val - 1; i < v->nprobs &&
		     !memcmp(v->probs[i].chunk.b, k->b, 16); i++) {
			rc = aff_add(&v->probs[i], id);
			if (rc)
				return rc;
		}
	}
	if (level < 0)
		return 0;
	vi = vget(v, k);
	if (!vi || vi->bad || vi->kind != CHUNK_NODE)
		return 0;
	if (chunk_read(v->s, v->txn, k, CHUNK_NODE, v->buf, CHUNK_MAX, &len, false) ||
	    node_decode(v->buf, len, &n))
		return 0;
	for (unsigned i = 0; i < n.count; i++) {
		rc = aff_walk(v, probset, seen, &n.e[i], level - 1, id);
		if (rc)
			return rc;
	}
	return 0;
}

static int vprob_cmp(const void *a, const void *b)
{
	const struct vprob *x = a, *y = b;
	int c = memcmp(x->chunk.b, y->chunk.b, 16);

	return c ? c : (int)x->kind - (int)y->kind;
}

/* Pass 5: which checkpoints each chunk problem affects; report them. */
static int verify_report_chunks(struct verify *v)
{
	struct hmap probset = { 0 };
	int rc = 0;

	if (!v->nprobs)
		return 0;
	qsort(v->probs, v->nprobs, sizeof(*v->probs), vprob_cmp);
	rc = hmap_init(&probset, v->nprobs);
	for (size_t i = 0; i < v->nprobs && !rc; i++) {
		bool created;
		struct hent *e = hmap_put(&probset, &v->probs[i].chunk, &created);

		if (!e)
			rc = -ENOMEM;
		else if (created)
			e->val = i + 1;
	}
	for (size_t c = 0; c < v->nckpts && !rc; c++) {
		struct hmap seen;
		struct store_crec rec;

		if (crec_get(v->s, v->txn, v->ckpts[c], &rec))
			continue;
		rc = hmap_init(&seen, 1024);
		for (size_t i = 0; i < rec.nmaps && !rc; i++)
			rc = aff_walk(v, &probset, &seen, &rec.maps[i].root,
				      (int)rec.maps[i].height - 1, rec.id);
		hmap_free(&seen);
		crec_free(&rec);
	}
	hmap_free(&probset);
	for (size_t i = 0; i < v->nprobs && !rc; i++) {
		struct vprob *vp = &v->probs[i];
		struct store_problem p = {
			.kind = vp->kind, .code = vp->code, .has_chunk = true,
			.chunk = vp->chunk, .detail = vp->detail,
			.naffected = vp->naff, .affected = vp->affected,
		};

		v->st.problems++;
		if (v->fn)
			rc = v->fn(v->arg, &p);
	}
	return rc;
}

int store_verify(struct store *s, int (*fn)(void *arg, const struct store_problem *p),
		 void *arg, struct store_verify_stats *stats)
{
	struct verify v = { .s = s, .fn = fn, .arg = arg };
	int rc;

	v.buf = malloc(CHUNK_MAX);
	if (!v.buf)
		return -ENOMEM;
	rc = hmap_init(&v.idx, 1024);
	if (rc)
		goto out_buf;
	rc = store_rd_begin(s, &v.txn);
	if (rc)
		goto out_idx;
	rc = verify_chunks(&v);
	if (!rc)
		rc = verify_nodes(&v);
	if (!rc)
		rc = verify_ckpts(&v);
	if (!rc)
		rc = verify_counts(&v);
	if (!rc)
		rc = verify_report_chunks(&v);
	store_rd_end(s, v.txn);
	if (stats)
		*stats = v.st;
out_idx:
	for (size_t i = 0; i < v.nprobs; i++)
		free(v.probs[i].affected);
	free(v.probs);
	free(v.info);
	free(v.ckpts);
	hmap_free(&v.idx);
out_buf:
	free(v.buf);
	return rc;
}

/* ===================================================================
 * gc
 * =================================================================== */

struct gc_ctx {
	bool dry_run;
	struct store_gc_stats st;
};

#define GC_DRY 1

/* Mark: expected reference counts of every chunk a checkpoint reaches. */
static int gc_mark(struct store *s, MDB_txn *txn, struct hmap *live,
		   uint64_t **ids, size_t *nids, struct gc_ctx *g)
{
	struct store_hash *stack = NULL;
	size_t nstack = 0, capstack = 0;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, mrc;
	size_t capids = 0;

	rc = store_mdb_err(mdb_cursor_open(txn, s->ckpt, &cur));
	if (rc)
		return rc;
	for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !mrc && !rc;
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct store_crec rec;

		rc = crec_decode(v.mv_data, v.mv_size, &rec);
		if (rc)
			break;
		if (*nids == capids) {
			capids = capids ? capids * 2 : 64;
			uint64_t *ni = realloc(*ids, capids * sizeof(*ni));
			if (!ni) {
				rc = -ENOMEM;
				crec_free(&rec);
				break;
			}
			*ids = ni;
		}
		(*ids)[(*nids)++] = rec.id;
		for (size_t i = 0; i < rec.nmaps && !rc; i++) {
			bool created;
			struct hent *e;

			if (store_hash_is_zero(&rec.maps[i].root))
				continue;
			e = hmap_put(live, &rec.maps[i].root, &created);
			if (!e) {
				rc = -ENOMEM;
				break;
			}
			e->val++;
			if (!created)
				continue;
			if (nstack == capstack) {
				capstack = capstack ? capstack * 2 : 256;
				struct store_hash *ns = realloc(stack, capstack * sizeof(*ns));
				if (!ns) {
					rc = -ENOMEM;
					break;
				}
				stack = ns;
			}
			stack[nstack++] = rec.maps[i].root;
		}
		crec_free(&rec);
	}
	mdb_cursor_close(cur);
	if (!rc && mrc != MDB_NOTFOUND)
		rc = store_mdb_err(mrc);

	while (!rc && nstack) {
		struct store_hash key = stack[--nstack];
		struct chunk_head h;
		uint8_t buf[NODE_MAX];
		struct node n;
		size_t len;

		rc = chunk_head_get(s, txn, &key, &h);
		if (rc == RW_ENOTFOUND) {
			g->st.missing++;
			rc = 0;
			continue;
		}
		if (rc || h.kind != CHUNK_NODE)
			continue;
		rc = chunk_read(s, txn, &key, CHUNK_NODE, buf, sizeof(buf), &len, true);
		if (!rc)
			rc = node_decode(buf, len, &n);
		for (unsigned i = 0; !rc && i < n.count; i++) {
			bool created;
			struct hent *e;

			if (store_hash_is_zero(&n.e[i]))
				continue;
			e = hmap_put(live, &n.e[i], &created);
			if (!e) {
				rc = -ENOMEM;
				break;
			}
			e->val++;
			if (!created)
				continue;
			if (nstack == capstack) {
				capstack *= 2;
				struct store_hash *ns = realloc(stack, capstack * sizeof(*ns));
				if (!ns) {
					rc = -ENOMEM;
					break;
				}
				stack = ns;
			}
			stack[nstack++] = n.e[i];
		}
	}
	free(stack);
	if (!rc && g->st.missing)
		rc = RW_ECORRUPT;
	return rc;
}

static int gc_txn(struct store *s, MDB_txn *txn, void *arg)
{
	struct gc_ctx *g = arg;
	struct hmap live;
	uint64_t *ids = NULL;
	size_t nids = 0;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int rc, mrc;

	memset(&g->st, 0, sizeof(g->st));
	rc = hmap_init(&live, 4096);
	if (rc)
		return rc;
	rc = gc_mark(s, txn, &live, &ids, &nids, g);
	if (rc)
		goto out;

	/* sweep heads: free what is not live, fix counts of what is */
	rc = store_mdb_err(mdb_cursor_open(txn, s->head, &cur));
	if (rc)
		goto out;
	mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	while (!mrc && !rc) {
		struct store_hash key = { 0 };
		struct chunk_head h;
		struct hent *e;
		bool drop = false;

		memcpy(key.b, k.mv_data, k.mv_size < 16 ? k.mv_size : 16);
		e = k.mv_size == 16 ? hmap_get(&live, &key) : NULL;
		if (head_decode(&v, &h)) {
			if (e) {
				rc = RW_ECORRUPT; /* a damaged live chunk: verify's job */
				break;
			}
			g->st.chunks_freed++;
			drop = true;
		} else if (!e) {
			g->st.chunks_freed++;
			g->st.bytes_freed += h.len;
			drop = true;
		} else if (h.refs != e->val) {
			g->st.refs_fixed++;
			if (!g->dry_run) {
				uint8_t hb[HEAD_SIZE];
				MDB_val nv = { HEAD_SIZE, hb };

				memcpy(hb, v.mv_data, HEAD_SIZE);
				put_le64(hb + 8, e->val);
				mrc = mdb_cursor_put(cur, &k, &nv, MDB_CURRENT);
				if (mrc)
					break;
			}
		}
		if (drop && !g->dry_run) {
			/* the cursor moves on to the next head by itself */
			mrc = mdb_cursor_del(cur, 0);
			if (mrc)
				break;
			rc = body_del_all(s, txn, &key);
			if (rc)
				break;
			mrc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
			continue;
		}
		mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	cur = NULL;
	if (!rc && mrc && mrc != MDB_NOTFOUND && mrc != EINVAL)
		rc = store_mdb_err(mrc);
	if (rc)
		goto out;

	/* bodies without heads; a body whose first bytes differ from its
	 * head's is damage (verify reports it), not a leftover: it stays */
	struct body_probe bp = { txn, s->head };
	rc = gc_sweep(s, txn, s->body, body_orphan, &bp, g->dry_run, &g->st.bodies_freed);
	if (rc)
		goto out;

	/* records of no checkpoint */
	struct id_set known = { ids, nids };
	rc = gc_sweep(s, txn, s->rec, record_orphan, &known, g->dry_run, &g->st.records_freed);
out:
	if (cur)
		mdb_cursor_close(cur);
	free(ids);
	hmap_free(&live);
	if (!rc && g->dry_run)
		rc = GC_DRY;
	return rc;
}

int store_gc(struct store *s, bool dry_run, struct store_gc_stats *stats)
{
	struct gc_ctx g = { .dry_run = dry_run };
	int rc = store_write_txn(s, gc_txn, &g);

	if (rc == GC_DRY)
		rc = 0;
	if (stats)
		*stats = g.st;
	return rc;
}
