/*
 * export.c - one checkpoint to one self-contained file, and back.
 *
 * File format, version 1 (little-endian):
 *
 *   header (32 bytes): "RWSTOREX" | u32 version (1) | u32 fanout |
 *                      u32 page size | u32 0 | u64 XXH3-64 of the 24 bytes before
 *   frames, each:      u32 type | u32 length | payload | u64 XXH3-64 of
 *                      type, length and payload
 *     1 checkpoint  the checkpoint record as the store keeps it
 *     2 record      u16 name_len | name | u32 version | u64 XXH3-64 of data | data
 *     3 chunk       u8 kind | u8 0 u8 0 u8 0 | key[16] | content
 *     4 end         u64 chunks | u64 records | u64 offset of this frame
 *   in this order: one checkpoint frame, its records, its chunks (children
 *   before the nodes that reference them), one end frame, end of file.
 *
 * Export writes through io_uring (a few 1 MiB buffers in flight), syncs and
 * renames into place. Import checks every frame as it goes and does all of
 * its writing in one transaction, so a bad file leaves the store untouched.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "guard.h"
#include "store_internal.h"
#include "util.h"

#define XF_MAGIC "RWSTOREX"
#define XF_VERSION 1u
#define XF_HDR 32
#define FR_CKPT 1u
#define FR_RECORD 2u
#define FR_CHUNK 3u
#define FR_END 4u
#define FR_MAX (STORE_BLOB_MAX + (1u << 20))
#define UW_BUFS 4
#define UW_BUF (1u << 20)

/* ===================================================================
 * io_uring writer
 * =================================================================== */

struct uwriter {
	struct io_uring ring;
	int fd;
	uint8_t *buf[UW_BUFS];
	size_t len[UW_BUFS];
	uint64_t off_of[UW_BUFS];
	bool busy[UW_BUFS];
	int cur;                 /* buffer being filled */
	uint64_t off;            /* file offset of the start of buf[cur] */
	unsigned inflight;
	int err;
};

/* Reap one completion. A short write is finished synchronously. */
static int uw_reap(struct uwriter *w)
{
	struct io_uring_cqe *cqe;
	int rc = io_uring_wait_cqe(&w->ring, &cqe);
	int i;

	if (rc)
		return rc;
	i = (int)io_uring_cqe_get_data64(cqe);
	rc = cqe->res;
	io_uring_cqe_seen(&w->ring, cqe);
	w->inflight--;
	w->busy[i] = false;
	if (rc < 0)
		return rc;
	if ((size_t)rc < w->len[i])
		return rw_pwrite_all(w->fd, w->buf[i] + rc, w->len[i] - (size_t)rc,
				     w->off_of[i] + (uint64_t)rc);
	return 0;
}

static int uw_submit(struct uwriter *w)
{
	struct io_uring_sqe *sqe;
	int i = w->cur, rc;

	if (!w->len[i])
		return 0;
	sqe = io_uring_get_sqe(&w->ring);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_write(sqe, w->fd, w->buf[i], (unsigned)w->len[i], w->off);
	io_uring_sqe_set_data64(sqe, (uint64_t)i);
	rc = io_uring_submit(&w->ring);
	if (rc < 0)
		return rc;
	w->busy[i] = true;
	w->off_of[i] = w->off;
	w->off += w->len[i];
	w->inflight++;
	/* next buffer: wait for it if it is still being written */
	w->cur = (i + 1) % UW_BUFS;
	while (w->busy[w->cur]) {
		rc = uw_reap(w);
		if (rc)
			return rc;
	}
	w->len[w->cur] = 0;
	return 0;
}

static void uw_put(struct uwriter *w, const void *data, size_t n)
{
	const uint8_t *p = data;

	while (n && !w->err) {
		size_t room = UW_BUF - w->len[w->cur];
		size_t take = n < room ? n : room;

		memcpy(w->buf[w->cur] + w->len[w->cur], p, take);
		w->len[w->cur] += take;
		p += take;
		n -= take;
		if (w->len[w->cur] == UW_BUF)
			w->err = uw_submit(w);
	}
}

static uint64_t uw_pos(const struct uwriter *w)
{
	return w->off + w->len[w->cur];
}

static void uw_frame(struct uwriter *w, uint32_t type, const void *a, size_t alen,
		     const void *b, size_t blen)
{
	uint8_t hdr[8], sum[8];
	XXH3_state_t st;

	put_le32(hdr, type);
	put_le32(hdr + 4, (uint32_t)(alen + blen));
	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, hdr, 8);
	XXH3_64bits_update(&st, a, alen);
	if (blen)
		XXH3_64bits_update(&st, b, blen);
	put_le64(sum, XXH3_64bits_digest(&st));
	uw_put(w, hdr, 8);
	uw_put(w, a, alen);
	if (blen)
		uw_put(w, b, blen);
	uw_put(w, sum, 8);
}

static int uw_finish(struct uwriter *w)
{
	struct io_uring_sqe *sqe;
	int rc = w->err;

	if (!rc)
		rc = uw_submit(w);
	while (w->inflight) {
		int r = uw_reap(w);
		if (!rc)
			rc = r;
	}
	if (rc)
		return rc;
	sqe = io_uring_get_sqe(&w->ring);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_fsync(sqe, w->fd, 0);
	io_uring_sqe_set_data64(sqe, 0);
	rc = io_uring_submit(&w->ring);
	if (rc < 0)
		return rc;
	w->inflight++;
	w->len[0] = 0;
	w->busy[0] = true;
	return uw_reap(w);
}

/* ===================================================================
 * Export
 * =================================================================== */

struct collect {
	struct store *s;
	MDB_txn *txn;
	struct hmap seen;
	struct store_hash *keys;
	size_t n, cap;
};

/* Post-order: children before the node that references them. */
static int collect(struct collect *c, const struct store_hash *k, int level)
{
	bool created;
	int rc;

	if (store_hash_is_zero(k))
		return 0;
	if (!hmap_put(&c->seen, k, &created))
		return -ENOMEM;
	if (!created)
		return 0;
	if (level >= 0) {
		struct node n;

		rc = node_load(c->s, c->txn, k, (unsigned)level, &n, true);
		for (unsigned i = 0; !rc && i < n.count; i++)
			rc = collect(c, &n.e[i], level - 1);
		if (rc)
			return rc;
	}
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 1024;
		struct store_hash *nk = realloc(c->keys, cap * sizeof(*nk));
		if (!nk)
			return -ENOMEM;
		c->keys = nk;
		c->cap = cap;
	}
	c->keys[c->n++] = *k;
	return 0;
}

static int export_records(struct store *s, MDB_txn *txn, uint64_t id,
			  struct uwriter *w, uint64_t *count)
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
	while (!mrc && !w->err && k.mv_size > 8 && get_be64(k.mv_data) == id) {
		const uint8_t *p = v.mv_data;
		size_t nlen = k.mv_size - 8;
		uint8_t hdr[2 + STORE_NAME_MAX + 12];

		if (nlen > STORE_NAME_MAX || v.mv_size < RECDB_HDR) {
			rc = RW_ECORRUPT;
			break;
		}
		if (XXH3_64bits(p + RECDB_HDR, v.mv_size - RECDB_HDR) != get_le64(p + 8)) {
			store_note("record \"%.*s\" fails its checksum", (int)nlen,
				   (const char *)k.mv_data + 8);
			rc = RW_ECHECKSUM;
			break;
		}
		put_le16(hdr, (uint16_t)nlen);
		memcpy(hdr + 2, (const uint8_t *)k.mv_data + 8, nlen);
		put_le32(hdr + 2 + nlen, get_le32(p));
		put_le64(hdr + 6 + nlen, get_le64(p + 8));
		uw_frame(w, FR_RECORD, hdr, 14 + nlen, p + RECDB_HDR, v.mv_size - RECDB_HDR);
		(*count)++;
		mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (!rc && mrc && mrc != MDB_NOTFOUND)
		rc = store_mdb_err(mrc);
	return rc ? rc : w->err;
}

int store_export(struct store *s, uint64_t id, const char *file,
		 store_progress_fn progress, void *arg, struct store_xfer_stats *stats)
{
	struct collect c = { .s = s };
	struct uwriter w = { .fd = -1 };
	struct store_crec rec;
	uint8_t hdr[XF_HDR], buf[20 + CHUNK_MAX], end[24];
	uint8_t kb[8];
	MDB_val k = { 8, kb }, v;
	char *tmp = NULL, *dir = NULL;
	uint64_t nrec = 0, end_off;
	int rc;

	if (stats)
		memset(stats, 0, sizeof(*stats));
	if (hmap_init(&c.seen, 4096))
		return -ENOMEM;
	rc = store_rd_begin(s, &c.txn);
	if (rc)
		goto out_seen;
	rc = crec_get(s, c.txn, id, &rec);
	if (rc)
		goto out_txn;
	for (size_t i = 0; i < rec.nmaps && !rc; i++)
		rc = collect(&c, &rec.maps[i].root, (int)rec.maps[i].height - 1);
	crec_free(&rec);
	if (rc)
		goto out_txn;

	rc = -ENOMEM;
	if (asprintf(&tmp, "%s.XXXXXX", file) < 0) {
		tmp = NULL;
		goto out_txn;
	}
	w.fd = mkostemp(tmp, O_CLOEXEC);
	if (w.fd < 0) {
		rc = -errno;
		free(tmp);
		tmp = NULL;
		goto out_txn;
	}
	fchmod(w.fd, 0600);
	for (int i = 0; i < UW_BUFS; i++) {
		w.buf[i] = malloc(UW_BUF);
		if (!w.buf[i])
			goto out_file;
	}
	rc = io_uring_queue_init(UW_BUFS * 2, &w.ring, 0);
	if (rc)
		goto out_file;

	memcpy(hdr, XF_MAGIC, 8);
	put_le32(hdr + 8, XF_VERSION);
	put_le32(hdr + 12, STORE_FANOUT);
	put_le32(hdr + 16, STORE_PAGE_SIZE);
	put_le32(hdr + 20, 0);
	put_le64(hdr + 24, XXH3_64bits(hdr, 24));
	uw_put(&w, hdr, XF_HDR);

	put_be64(kb, id);
	rc = store_mdb_err(mdb_get(c.txn, s->ckpt, &k, &v));
	if (rc)
		goto out_ring;
	uw_frame(&w, FR_CKPT, v.mv_data, v.mv_size, NULL, 0);
	rc = export_records(s, c.txn, id, &w, &nrec);
	if (rc)
		goto out_ring;
	for (size_t i = 0; i < c.n && !w.err; i++) {
		size_t len;

		buf[0] = 0;
		rc = chunk_read(s, c.txn, &c.keys[i], 0, buf + 20, CHUNK_MAX, &len, true);
		if (rc)
			goto out_ring;
		struct chunk_head h;
		rc = chunk_head_get(s, c.txn, &c.keys[i], &h);
		if (rc)
			goto out_ring;
		buf[0] = h.kind;
		buf[1] = buf[2] = buf[3] = 0;
		memcpy(buf + 4, c.keys[i].b, 16);
		uw_frame(&w, FR_CHUNK, buf, 20 + len, NULL, 0);
		if (progress && (i % 1024 == 0 || i + 1 == c.n))
			progress(arg, i + 1, c.n);
	}
	end_off = uw_pos(&w);
	put_le64(end, c.n);
	put_le64(end + 8, nrec);
	put_le64(end + 16, end_off);
	uw_frame(&w, FR_END, end, 24, NULL, 0);
	end_off = uw_pos(&w);
	rc = uw_finish(&w);
	if (rc)
		goto out_ring;
	rc = rename(tmp, file) ? -errno : 0;
	if (!rc) {
		char *slash;

		free(tmp);
		tmp = NULL;
		dir = strdup(file);
		slash = dir ? strrchr(dir, '/') : NULL;
		if (dir) {
			int dfd;

			if (slash)
				*slash = 0;
			dfd = open(slash ? (*dir ? dir : "/") : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (dfd >= 0) {
				fsync(dfd);
				close(dfd);
			}
		}
		if (stats) {
			stats->chunks = c.n;
			stats->records = nrec;
			stats->bytes = end_off;
		}
		if (progress && !c.n)
			progress(arg, 0, 0);
	}
out_ring:
	if (rc && w.err)
		rc = w.err;
	io_uring_queue_exit(&w.ring);
out_file:
	if (w.fd >= 0)
		close(w.fd);
	if (tmp)
		unlink(tmp);
	for (int i = 0; i < UW_BUFS; i++)
		free(w.buf[i]);
out_txn:
	store_rd_end(s, c.txn);
out_seen:
	hmap_free(&c.seen);
	free(c.keys);
	free(tmp);
	free(dir);
	if (rc > 0)
		rc = -rc;
	if (rc == RW_ECHECKSUM || rc == RW_ECORRUPT)
		store_note_prefix("checkpoint %llu: ", (unsigned long long)id);
	return rc == -ENOSPC || rc == -EDQUOT || rc == -EFBIG ? RW_ESTORE_FULL : rc;
}

/* ===================================================================
 * Import
 * =================================================================== */

struct rdr {
	int fd;
	uint64_t size;
	uint8_t *win;            /* bytes [woff, woff + wlen) of the file */
	size_t wcap, wlen;
	uint64_t woff;
};

/* Pointer to bytes [off, off + n); NULL if the file ends first. */
static const uint8_t *rd_get(struct rdr *r, uint64_t off, size_t n, int *err)
{
	if (off > r->size || n > r->size - off)
		return NULL;
	if (off >= r->woff && off + n <= r->woff + r->wlen)
		return r->win + (off - r->woff);
	if (n > r->wcap) {
		uint8_t *nw = realloc(r->win, n);
		if (!nw) {
			*err = -ENOMEM;
			return NULL;
		}
		r->win = nw;
		r->wcap = n;
	}
	size_t want = r->wcap;
	if (want > r->size - off)
		want = (size_t)(r->size - off);
	int rc = rw_pread_all(r->fd, r->win, want, off);
	if (rc) {
		*err = rc;
		return NULL;
	}
	r->woff = off;
	r->wlen = want;
	return r->win;
}

struct import_ctx {
	const char *file;
	struct rdr r;
	store_progress_fn progress;
	void *arg;
	struct store_xfer_error *err;
	struct store_xfer_stats st;
	uint64_t id;             /* the imported checkpoint's id here */
	uint64_t next_id;        /* the store's next id before the import */
	struct hmap created;     /* new chunks -> frame offset */
};

static int xerr(struct import_ctx *x, int rc, uint64_t off, const char *section,
		const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/*
 * The id the imported checkpoint gets: the one it had where it was
 * exported if this store has none by that id, so that it keeps its name;
 * else the store's next id. Ids stay unique; an id below the next one is
 * only taken when it is free.
 */
static int import_pick_id(struct store *s, MDB_txn *txn, struct import_ctx *x, uint64_t orig)
{
	uint8_t kb[8];
	MDB_val k = { 8, kb }, v;
	int rc;

	x->st.original_id = orig;
	x->id = x->next_id;
	if (orig == 0)
		return 0;
	put_be64(kb, orig);
	rc = mdb_get(txn, s->ckpt, &k, &v);
	if (rc == MDB_NOTFOUND) {
		x->id = orig;
		return 0;
	}
	return rc ? store_mdb_err(rc) : 0;
}

static int xerr(struct import_ctx *x, int rc, uint64_t off, const char *section,
		const char *fmt, ...)
{
	va_list ap;

	if (x->err) {
		x->err->offset = off;
		snprintf(x->err->section, sizeof(x->err->section), "%s", section);
		va_start(ap, fmt);
		vsnprintf(x->err->detail, sizeof(x->err->detail), fmt, ap);
		va_end(ap);
	}
	return rc;
}

static const char *frame_name(uint32_t t)
{
	switch (t) {
	case FR_CKPT: return "checkpoint";
	case FR_RECORD: return "record";
	case FR_CHUNK: return "chunk";
	case FR_END: return "end";
	}
	return "frame";
}

/* One chunk frame: check it and add it to the store. */
static int import_chunk(struct store *s, MDB_txn *txn, struct import_ctx *x,
			uint64_t off, const uint8_t *p, size_t len)
{
	struct store_hash key, got;
	size_t clen;
	bool created;
	char hex[33];
	int kind, rc;

	if (len < 21 || p[1] || p[2] || p[3])
		return xerr(x, RW_ECORRUPT, off, "chunk", "malformed chunk frame");
	kind = p[0];
	memcpy(key.b, p + 4, 16);
	clen = len - 20;
	if ((kind != CHUNK_PAGE && kind != CHUNK_NODE) ||
	    (kind == CHUNK_PAGE && clen != STORE_PAGE_SIZE) || clen > CHUNK_MAX ||
	    store_hash_is_zero(&key))
		return xerr(x, RW_ECORRUPT, off, "chunk", "bad chunk kind or length");
	store_hash_data(s, kind, p + 20, clen, &got);
	if (memcmp(got.b, key.b, 16))
		return xerr(x, RW_ECHECKSUM, off, "chunk",
			    "chunk %s: content does not match its key", store_hash_hex(&key, hex));
	if (kind == CHUNK_NODE) {
		struct node n;

		if (node_decode(p + 20, clen, &n))
			return xerr(x, RW_ECORRUPT, off, "chunk", "malformed tree node %s",
				    store_hash_hex(&key, hex));
		for (unsigned i = 0; i < n.count; i++) {
			struct chunk_head h;
			uint8_t first[HEAD_INLINE];

			if (store_hash_is_zero(&n.e[i]))
				continue;
			rc = chunk_head_get(s, txn, &n.e[i], &h);
			if (rc == RW_ENOTFOUND)
				return xerr(x, RW_ECORRUPT, off, "chunk",
					    "node %s references chunk %s, which comes neither "
					    "earlier in the file nor from the store",
					    store_hash_hex(&key, hex), store_hash_hex(&n.e[i], hex));
			if (rc)
				return xerr(x, rc, off, "chunk", "reading the store: %s",
					    rw_strerror(rc));
			memcpy(first, h.inline_, HEAD_INLINE);
			if (n.level == 0 ? h.kind != CHUNK_PAGE
					 : h.kind != CHUNK_NODE || first[0] != n.level - 1)
				return xerr(x, RW_ECORRUPT, off, "chunk",
					    "node %s references a chunk of the wrong kind or level",
					    store_hash_hex(&key, hex));
		}
	}
	rc = chunk_put(s, txn, &key, kind, p + 20, clen, 0, &created);
	if (rc == RW_ECOLLISION)
		return xerr(x, rc, off, "chunk",
			    "chunk %s differs from the stored chunk of the same key",
			    store_hash_hex(&key, hex));
	if (rc)
		return xerr(x, rc, off, "chunk", "storing chunk: %s", rw_strerror(rc));
	x->st.chunks++;
	if (!created)
		return 0;
	x->st.new_chunks++;
	struct hent *e = hmap_put(&x->created, &key, NULL);
	if (!e)
		return -ENOMEM;
	e->val = off;
	if (kind == CHUNK_NODE) {
		struct node n;

		node_decode(p + 20, clen, &n);
		for (unsigned i = 0; i < n.count; i++) {
			if (store_hash_is_zero(&n.e[i]))
				continue;
			rc = chunk_ref(s, txn, &n.e[i], 1, NULL);
			if (rc)
				return xerr(x, rc, off, "chunk", "reference: %s", rw_strerror(rc));
		}
	}
	return 0;
}

static int import_record(struct store *s, MDB_txn *txn, struct import_ctx *x,
			 uint64_t off, const uint8_t *p, size_t len)
{
	uint8_t kb[RECDB_KEY_MAX];
	size_t nlen;
	MDB_val k, v;
	int rc;

	if (len < 14)
		return xerr(x, RW_ECORRUPT, off, "record", "record frame too short");
	nlen = get_le16(p);
	if (nlen == 0 || nlen > STORE_NAME_MAX || len < 14 + nlen ||
	    memchr(p + 2, 0, nlen))
		return xerr(x, RW_ECORRUPT, off, "record", "bad record name");
	const uint8_t *data = p + 14 + nlen;
	size_t dlen = len - 14 - nlen;
	if (XXH3_64bits(data, dlen) != get_le64(p + 6 + nlen))
		return xerr(x, RW_ECHECKSUM, off, "record", "record \"%.*s\" fails its checksum",
			    (int)nlen, (const char *)p + 2);
	k.mv_size = recdb_key(kb, x->id, (const char *)p + 2, nlen);
	k.mv_data = kb;
	v.mv_size = RECDB_HDR + dlen;
	rc = store_mdb_err(mdb_put(txn, s->rec, &k, &v, MDB_RESERVE | MDB_NOOVERWRITE));
	if (rc == -EEXIST)
		return xerr(x, RW_ECORRUPT, off, "record", "record \"%.*s\" appears twice",
			    (int)nlen, (const char *)p + 2);
	if (rc)
		return rc;
	uint8_t *o = v.mv_data;
	put_le32(o, get_le32(p + 2 + nlen));
	put_le32(o + 4, 0);
	put_le64(o + 8, get_le64(p + 6 + nlen));
	memcpy(o + RECDB_HDR, data, dlen);
	x->st.records++;
	return 0;
}

/*
 * The pages of a map's tree, counted from its root once every chunk of the
 * file is in: a tree may hold no page at or past the map's end, and must
 * hold exactly as many as the checkpoint record says are present. A subtree
 * that lies wholly inside the map is counted once per distinct node (a file
 * may repeat one subtree under many parents); at most one node per level
 * straddles the map's end, and only there are positions checked.
 */
struct tree_count {
	struct store *s;
	MDB_txn *txn;
	uint64_t npages;
	bool beyond;          /* a page at or past npages */
	struct hmap memo;     /* node key -> pages under it (inside subtrees) */
};

static int tree_pages(struct tree_count *t, const struct store_hash *k, unsigned level,
		      uint64_t base, uint64_t *count)
{
	uint64_t span = level ? tree_span(level - 1) : 1, sum = 0;
	bool inside = tree_span(level) <= t->npages - base, created;
	struct hent *e;
	struct node n;
	int rc;

	if (inside && (e = hmap_get(&t->memo, k))) {
		*count += e->val;
		return 0;
	}
	rc = node_load(t->s, t->txn, k, level, &n, false);
	if (rc)
		return rc;
	for (unsigned i = 0; i < n.count; i++) {
		if (store_hash_is_zero(&n.e[i]))
			continue;
		if (i * span >= t->npages - base) {
			t->beyond = true;
			return RW_ECORRUPT;
		}
		if (level == 0)
			sum++;
		else if ((rc = tree_pages(t, &n.e[i], level - 1, base + i * span, &sum)))
			return rc;
	}
	if (inside) {
		e = hmap_put(&t->memo, k, &created);
		if (!e)
			return -ENOMEM;
		e->val = sum;
	}
	*count += sum;
	return 0;
}

/* Check map m's tree against its record (see tree_pages). */
static int import_map_pages(struct store *s, MDB_txn *txn, struct import_ctx *x,
			    uint64_t ckpt_off, const struct map_rec *m)
{
	struct tree_count t = { .s = s, .txn = txn, .npages = m->npages };
	const char *name = m->name ? m->name : "memory";
	uint64_t count = 0;
	int rc;

	if (store_hash_is_zero(&m->root))
		return 0;
	if (hmap_init(&t.memo, 256))
		return -ENOMEM;
	rc = tree_pages(&t, &m->root, m->height - 1, 0, &count);
	hmap_free(&t.memo);
	if (t.beyond)
		return xerr(x, RW_ECORRUPT, ckpt_off, "checkpoint",
			    "map %s holds pages past its end (%llu pages)", name,
			    (unsigned long long)m->npages);
	if (rc)
		return xerr(x, rc, ckpt_off, "checkpoint", "map %s: reading its tree: %s", name,
			    rw_strerror(rc));
	if (count != m->present)
		return xerr(x, RW_ECORRUPT, ckpt_off, "checkpoint",
			    "map %s holds %llu pages, its record says %llu", name,
			    (unsigned long long)count, (unsigned long long)m->present);
	return 0;
}

static int import_txn(struct store *s, MDB_txn *txn, void *arg)
{
	struct import_ctx *x = arg;
	struct store_crec rec = { 0 };
	struct byte_writer wb = BYTE_WRITER_INIT;
	const uint8_t *p;
	uint64_t off = XF_HDR, ckpt_off = 0, next_progress = 0;
	uint32_t expect = FR_CKPT; /* lowest frame type allowed next */
	bool have_ckpt = false, ended = false;
	int rc = 0, rerr = 0;
	char hex[33];

	memset(&x->st, 0, sizeof(x->st));
	hmap_free(&x->created);
	if (hmap_init(&x->created, 1024))
		return -ENOMEM;
	rc = meta_get_u64(s, txn, "next-id", &x->next_id);
	if (rc)
		return rc == RW_ENOTFOUND ? RW_ECORRUPT : rc;
	x->id = x->next_id;

	p = rd_get(&x->r, 0, XF_HDR, &rerr);
	if (!p)
		return rerr ? rerr : xerr(x, RW_ECORRUPT, 0, "header",
					  "file is too short to be a rewind export");
	if (memcmp(p, XF_MAGIC, 8))
		return xerr(x, RW_ECORRUPT, 0, "header", "not a rewind export file (bad magic)");
	if (XXH3_64bits(p, 24) != get_le64(p + 24))
		return xerr(x, RW_ECHECKSUM, 0, "header", "header checksum mismatch");
	if (get_le32(p + 8) > XF_VERSION || get_le32(p + 8) == 0)
		return xerr(x, RW_EVERSION, 8, "header",
			    "export format %u is newer than this rewind reads (%u)",
			    get_le32(p + 8), XF_VERSION);
	if (get_le32(p + 12) != STORE_FANOUT || get_le32(p + 16) != STORE_PAGE_SIZE)
		return xerr(x, RW_EVERSION, 12, "header", "unsupported fanout or page size");
	if (get_le32(p + 20) != 0)
		return xerr(x, RW_ECORRUPT, 20, "header", "reserved field is 0x%08x, not 0",
			    get_le32(p + 20));

	while (!ended) {
		uint32_t type, len;
		const char *want = frame_name(expect);

		if (x->progress && off >= next_progress) {
			x->progress(x->arg, off, x->r.size);
			next_progress = off + (4u << 20);
		}
		p = rd_get(&x->r, off, 8, &rerr);
		if (!p) {
			rc = rerr ? rerr : xerr(x, RW_ECORRUPT, off, want,
						"file is truncated at offset %llu (expected a %s frame)",
						(unsigned long long)off, want);
			goto out;
		}
		type = get_le32(p);
		len = get_le32(p + 4);
		if (type < FR_CKPT || type > FR_END || len > FR_MAX) {
			rc = xerr(x, RW_ECORRUPT, off, want, "bad frame header (type %u, length %u)",
				  type, len);
			goto out;
		}
		p = rd_get(&x->r, off, 16 + (size_t)len, &rerr);
		if (!p) {
			rc = rerr ? rerr : xerr(x, RW_ECORRUPT, off, frame_name(type),
						"file is truncated inside a %s frame at offset %llu",
						frame_name(type), (unsigned long long)off);
			goto out;
		}
		if (XXH3_64bits(p, 8 + (size_t)len) != get_le64(p + 8 + len)) {
			rc = xerr(x, RW_ECHECKSUM, off, frame_name(type),
				  "%s frame at offset %llu fails its checksum", frame_name(type),
				  (unsigned long long)off);
			goto out;
		}
		if (type < expect || (type != FR_CKPT && !have_ckpt) ||
		    (type == FR_CKPT && have_ckpt)) {
			rc = xerr(x, RW_ECORRUPT, off, frame_name(type),
				  "%s frame out of order", frame_name(type));
			goto out;
		}
		expect = type;
		p += 8;
		switch (type) {
		case FR_CKPT:
			rc = crec_decode(p, len, &rec);
			if (rc) {
				rc = xerr(x, rc, off, "checkpoint",
					  "checkpoint record is damaged (%s)", rw_strerror(rc));
				goto out;
			}
			have_ckpt = true;
			ckpt_off = off;
			expect = FR_RECORD;
			rc = import_pick_id(s, txn, x, rec.id);
			break;
		case FR_RECORD:
			rc = import_record(s, txn, x, off, p, len);
			break;
		case FR_CHUNK:
			rc = import_chunk(s, txn, x, off, p, len);
			break;
		case FR_END:
			if (len != 24 || get_le64(p) != x->st.chunks ||
			    get_le64(p + 8) != x->st.records || get_le64(p + 16) != off) {
				rc = xerr(x, RW_ECORRUPT, off, "end",
					  "end frame does not match the frames before it");
				goto out;
			}
			if (off + 16 + len != x->r.size) {
				rc = xerr(x, RW_ECORRUPT, off + 16 + len, "end",
					  "unexpected bytes after the end frame");
				goto out;
			}
			ended = true;
			break;
		}
		if (rc)
			goto out;
		off += 16 + (uint64_t)len;
	}

	/* the checkpoint takes its roots */
	for (size_t i = 0; i < rec.nmaps; i++) {
		struct chunk_head h;

		if (store_hash_is_zero(&rec.maps[i].root))
			continue;
		rc = chunk_head_get(s, txn, &rec.maps[i].root, &h);
		if (rc == RW_ENOTFOUND || (!rc && (h.kind != CHUNK_NODE ||
						   h.inline_[0] != rec.maps[i].height - 1)))
			rc = xerr(x, RW_ECORRUPT, ckpt_off, "checkpoint",
				  "root %s of map %s is missing or not a tree of the right height",
				  store_hash_hex(&rec.maps[i].root, hex),
				  rec.maps[i].name ? rec.maps[i].name : "memory");
		if (!rc)
			rc = import_map_pages(s, txn, x, ckpt_off, &rec.maps[i]);
		if (!rc)
			rc = chunk_ref(s, txn, &rec.maps[i].root, 1, NULL);
		if (rc)
			goto out;
	}
	/* every chunk the file added must now be referenced */
	for (size_t j = 0; j < x->created.cap; j++) {
		struct hent *e = &x->created.e[j];
		struct chunk_head h;

		if (!e->used)
			continue;
		rc = chunk_head_get(s, txn, &e->key, &h);
		if (!rc && h.refs == 0)
			rc = xerr(x, RW_ECORRUPT, e->val, "chunk",
				  "chunk %s is not part of the checkpoint",
				  store_hash_hex(&e->key, hex));
		if (rc)
			goto out;
	}
	rec.id = x->id;
	rec.parent = 0;
	rc = crec_encode(&rec, &wb);
	if (!rc) {
		uint8_t kb[8];
		MDB_val k = { 8, kb }, v = { wb.len, wb.buf };

		put_be64(kb, x->id);
		rc = store_mdb_err(mdb_put(txn, s->ckpt, &k, &v, MDB_NOOVERWRITE));
		if (rc == -EEXIST)
			rc = RW_ECORRUPT;
	}
	if (!rc && x->id >= x->next_id)
		rc = meta_put_u64(s, txn, "next-id", x->id + 1);
	x->st.bytes = x->r.size;
	if (!rc && x->progress)
		x->progress(x->arg, x->r.size, x->r.size);
out:
	bw_free(&wb);
	crec_free(&rec);
	return rc;
}

int store_import(struct store *s, const char *file, store_progress_fn progress,
		 void *arg, uint64_t *id, struct store_xfer_stats *stats,
		 struct store_xfer_error *err)
{
	struct import_ctx x = { .file = file, .progress = progress, .arg = arg,
				.err = err };
	struct stat st;
	int rc;

	if (err)
		memset(err, 0, sizeof(*err));
	x.r.fd = open(file, O_RDONLY | O_CLOEXEC);
	if (x.r.fd < 0)
		return -errno;
	if (fstat(x.r.fd, &st)) {
		rc = -errno;
		goto out;
	}
	x.r.size = (uint64_t)st.st_size;
	x.r.wcap = 1u << 20;
	x.r.win = malloc(x.r.wcap);
	rc = -ENOMEM;
	if (!x.r.win)
		goto out;
	rc = store_write_txn(s, import_txn, &x);
	if (!rc) {
		if (id)
			*id = x.id;
		if (stats)
			*stats = x.st;
	}
out:
	hmap_free(&x.created);
	free(x.r.win);
	close(x.r.fd);
	return rc;
}
