/*
 * chunk.c - chunks (content-addressed, reference counted) and tree nodes.
 *
 * A chunk is split over two databases: "head" holds a 32-byte header with
 * the reference count and the first 16 content bytes, "body" the rest. A
 * 4 KiB page then fills exactly one LMDB overflow page, and a reference
 * count update rewrites 32 bytes, not the page. The body's key is the chunk
 * key followed by those first 16 bytes, so the body alone holds the whole
 * content: reading a page is one lookup, by key prefix.
 */
#include <errno.h>
#include <stdlib.h>

#include "guard.h"
#include "store_internal.h"

/* ===================================================================
 * Heads
 * =================================================================== */

int head_decode(const MDB_val *v, struct chunk_head *h)
{
	const uint8_t *p = v->mv_data;

	if (v->mv_size != HEAD_SIZE || p[0] != HEAD_FORMAT || p[3] != 0)
		return RW_ECORRUPT;
	h->kind = p[1];
	h->codec = p[2];
	h->len = get_le32(p + 4);
	h->refs = get_le64(p + 8);
	memcpy(h->inline_, p + 16, HEAD_INLINE);
	if ((h->kind != CHUNK_PAGE && h->kind != CHUNK_NODE) || h->codec != 0)
		return RW_ECORRUPT;
	if (h->len == 0 || h->len > CHUNK_MAX)
		return RW_ECORRUPT;
	if (h->kind == CHUNK_PAGE && h->len != STORE_PAGE_SIZE)
		return RW_ECORRUPT;
	return 0;
}

static void head_encode(uint8_t *p, const struct chunk_head *h)
{
	p[0] = HEAD_FORMAT;
	p[1] = h->kind;
	p[2] = h->codec;
	p[3] = 0;
	put_le32(p + 4, h->len);
	put_le64(p + 8, h->refs);
	memcpy(p + 16, h->inline_, HEAD_INLINE);
}

int chunk_head_get(struct store *s, MDB_txn *txn, const struct store_hash *k,
		   struct chunk_head *h)
{
	MDB_val key = { 16, (void *)k->b }, v;
	int rc = store_mdb_err(mdb_get(txn, s->head, &key, &v));

	if (rc)
		return rc;
	return head_decode(&v, h);
}

/* ===================================================================
 * Bodies
 * =================================================================== */

void body_key(uint8_t out[BODY_KEY_SIZE], const struct store_hash *k,
	      const uint8_t inl[HEAD_INLINE])
{
	memcpy(out, k->b, 16);
	memcpy(out + 16, inl, HEAD_INLINE);
}

/* The body of chunk k whose content starts with inl. */
static int body_get(struct store *s, MDB_txn *txn, const struct store_hash *k,
		    const uint8_t inl[HEAD_INLINE], MDB_val *v)
{
	uint8_t kb[BODY_KEY_SIZE];
	MDB_val key = { BODY_KEY_SIZE, kb };
	int rc;

	body_key(kb, k, inl);
	rc = mdb_get(txn, s->body, &key, v);
	if (rc == MDB_NOTFOUND)
		return RW_ECORRUPT;
	return store_mdb_err(rc);
}

int body_del_all(struct store *s, MDB_txn *txn, const struct store_hash *k)
{
	MDB_cursor *cur;
	MDB_val key = { 16, (void *)k->b }, v;
	int rc;

	rc = store_mdb_err(mdb_cursor_open(txn, s->body, &cur));
	if (rc)
		return rc;
	int mrc = mdb_cursor_get(cur, &key, &v, MDB_SET_RANGE);

	while (!mrc && key.mv_size >= 16 && !memcmp(key.mv_data, k->b, 16)) {
		rc = guard_value_ok(s, &v);
		if (rc)
			break;
		mrc = mdb_cursor_del(cur, 0);
		if (!mrc)
			mrc = mdb_cursor_get(cur, &key, &v, MDB_GET_CURRENT);
	}
	mdb_cursor_close(cur);
	if (rc)
		return rc;
	/* past the last entry, GET_CURRENT gives EINVAL */
	return mrc == MDB_NOTFOUND || mrc == EINVAL ? 0 : store_mdb_err(mrc);
}

/* ===================================================================
 * Chunk content
 * =================================================================== */

int chunk_read(struct store *s, MDB_txn *txn, const struct store_hash *k,
	       int kind_want, void *buf, size_t cap, size_t *len, bool verify)
{
	struct chunk_head h;
	struct store_hash got;
	MDB_val v;
	uint8_t *out = buf;
	int rc;

	rc = chunk_head_get(s, txn, k, &h);
	if (rc)
		return rc;
	if ((kind_want && h.kind != kind_want) || h.len > cap)
		return RW_ECORRUPT;
	memcpy(out, h.inline_, h.len < HEAD_INLINE ? h.len : HEAD_INLINE);
	if (h.len > HEAD_INLINE) {
		rc = body_get(s, txn, k, h.inline_, &v);
		if (rc)
			return rc;
		if (v.mv_size != h.len - HEAD_INLINE)
			return RW_ECORRUPT;
		memcpy(out + HEAD_INLINE, v.mv_data, v.mv_size);
	}
	*len = h.len;
	if (verify) {
		store_hash_data(s, h.kind, buf, h.len, &got);
		if (memcmp(got.b, k->b, 16)) {
			char hex[33];

			store_note("chunk %s does not match its hash", store_hash_hex(k, hex));
			return RW_ECHECKSUM;
		}
	}
	return 0;
}

int chunk_put_head(struct store *s, MDB_txn *txn, const struct store_hash *k,
		   int kind, const void *data, size_t len, uint64_t refs,
		   bool *created)
{
	struct chunk_head h = { .kind = (uint8_t)kind, .len = (uint32_t)len,
				.refs = refs };
	uint8_t hb[HEAD_SIZE];
	MDB_val key = { 16, (void *)k->b }, v = { HEAD_SIZE, hb };
	const uint8_t *d = data;
	int rc;

	if (len == 0 || len > CHUNK_MAX)
		return -EINVAL;
	memcpy(h.inline_, d, len < HEAD_INLINE ? len : HEAD_INLINE);
	head_encode(hb, &h);
	rc = mdb_put(txn, s->head, &key, &v, MDB_NOOVERWRITE);
	if (rc == MDB_KEYEXIST) {
		struct chunk_head old;
		MDB_val b;

		*created = false;
		rc = head_decode(&v, &old);
		if (rc)
			return rc;
		if (old.kind != kind || old.len != len ||
		    memcmp(old.inline_, h.inline_, HEAD_INLINE))
			return RW_ECOLLISION;
		if (len <= HEAD_INLINE)
			return 0;
		rc = body_get(s, txn, k, h.inline_, &b);
		if (rc)
			return rc;
		if (b.mv_size != len - HEAD_INLINE ||
		    memcmp(b.mv_data, d + HEAD_INLINE, b.mv_size))
			return RW_ECOLLISION;
		return 0;
	}
	if (rc)
		return store_mdb_err(rc);
	*created = true;
	return 0;
}

int chunk_put_body(struct store *s, MDB_txn *txn, const struct store_hash *k,
		   const void *data, size_t len)
{
	uint8_t bkb[BODY_KEY_SIZE];
	MDB_val bk = { BODY_KEY_SIZE, bkb };
	MDB_val b = { len - HEAD_INLINE, (uint8_t *)data + HEAD_INLINE };

	int rc;

	if (len <= HEAD_INLINE)
		return 0;
	body_key(bkb, k, data);
	rc = mdb_put(txn, s->body, &bk, &b, MDB_NOOVERWRITE);
	if (rc == MDB_KEYEXIST) {
		/* a body left without its head: replaced (b is the old value) */
		rc = guard_value_ok(s, &b);
		if (rc)
			return rc;
		b.mv_size = len - HEAD_INLINE;
		b.mv_data = (uint8_t *)data + HEAD_INLINE;
		rc = mdb_put(txn, s->body, &bk, &b, 0);
	}
	return store_mdb_err(rc);
}

int chunk_put(struct store *s, MDB_txn *txn, const struct store_hash *k,
	      int kind, const void *data, size_t len, uint64_t refs,
	      bool *created)
{
	int rc = chunk_put_head(s, txn, k, kind, data, len, refs, created);

	if (!rc && *created)
		rc = chunk_put_body(s, txn, k, data, len);
	return rc;
}

int chunk_ref(struct store *s, MDB_txn *txn, const struct store_hash *k,
	      int64_t delta, uint64_t *after)
{
	MDB_val key = { 16, (void *)k->b }, v;
	uint8_t hb[HEAD_SIZE];
	uint64_t refs;
	int rc;

	rc = store_mdb_err(mdb_get(txn, s->head, &key, &v));
	if (rc)
		return rc;
	if (v.mv_size != HEAD_SIZE)
		return RW_ECORRUPT;
	memcpy(hb, v.mv_data, HEAD_SIZE);
	refs = get_le64(hb + 8);
	if (delta < 0 && refs < (uint64_t)-delta)
		return RW_ECORRUPT;
	refs += (uint64_t)delta;
	put_le64(hb + 8, refs);
	v.mv_size = HEAD_SIZE;
	v.mv_data = hb;
	rc = store_mdb_err(mdb_put(txn, s->head, &key, &v, 0));
	if (!rc && after)
		*after = refs;
	return rc;
}

int chunk_del(struct store *s, MDB_txn *txn, const struct store_hash *k,
	      const struct chunk_head *h)
{
	MDB_val key = { 16, (void *)k->b };
	uint8_t bkb[BODY_KEY_SIZE];
	MDB_val bk = { BODY_KEY_SIZE, bkb };
	int rc;

	rc = mdb_del(txn, s->head, &key, NULL);
	if (rc)
		return store_mdb_err(rc);
	if (h->len <= HEAD_INLINE)
		return 0;
	body_key(bkb, k, h->inline_);
	rc = guard_del(s, txn, s->body, &bk);
	return rc == RW_ENOTFOUND ? 0 : rc;
}

int chunk_unref(struct store *s, MDB_txn *txn, const struct store_hash *k,
		uint64_t *freed)
{
	struct chunk_head h;
	uint64_t after;
	int rc;

	rc = chunk_ref(s, txn, k, -1, &after);
	if (rc)
		return rc == RW_ENOTFOUND ? RW_ECORRUPT : rc;
	if (after)
		return 0;
	rc = chunk_head_get(s, txn, k, &h);
	if (rc)
		return rc;
	if (h.kind == CHUNK_NODE) {
		struct node *n = malloc(sizeof(*n));
		uint8_t *buf = malloc(NODE_MAX);
		size_t len;

		rc = -ENOMEM;
		if (n && buf)
			rc = chunk_read(s, txn, k, CHUNK_NODE, buf, NODE_MAX, &len, false);
		if (!rc)
			rc = node_decode(buf, len, n);
		for (unsigned i = 0; !rc && i < n->count; i++)
			if (!store_hash_is_zero(&n->e[i]))
				rc = chunk_unref(s, txn, &n->e[i], freed);
		free(buf);
		free(n);
		if (rc)
			return rc;
	}
	rc = chunk_del(s, txn, k, &h);
	if (!rc && freed)
		*freed += h.len;
	return rc;
}

/* ===================================================================
 * Tree nodes
 *
 *   u8 level (0 = leaf: entries are page keys; n: entries are level n-1 nodes)
 *   u8 0, u8 0, u8 0
 *   u32 count: entries present (1..FANOUT); trailing zero entries are cut,
 *       so every node has one encoding
 *   count * 16 bytes: keys (all zero = hole)
 * =================================================================== */

int node_decode(const void *data, size_t len, struct node *n)
{
	const uint8_t *p = data;
	uint32_t count;

	if (len < NODE_HDR + 16)
		return RW_ECORRUPT;
	count = get_le32(p + 4);
	if (p[0] >= TREE_HEIGHT_MAX || p[1] || p[2] || p[3] || count == 0 ||
	    count > STORE_FANOUT || len != NODE_HDR + (size_t)count * 16)
		return RW_ECORRUPT;
	n->level = p[0];
	n->count = count;
	memcpy(n->e, p + NODE_HDR, (size_t)count * 16);
	memset(n->e + count, 0, (STORE_FANOUT - count) * 16);
	if (store_hash_is_zero(&n->e[count - 1]))
		return RW_ECORRUPT;
	return 0;
}

size_t node_encode(const struct node *n, uint8_t *out)
{
	unsigned count = STORE_FANOUT;

	while (count && store_hash_is_zero(&n->e[count - 1]))
		count--;
	out[0] = (uint8_t)n->level;
	out[1] = out[2] = out[3] = 0;
	put_le32(out + 4, count);
	memcpy(out + NODE_HDR, n->e, (size_t)count * 16);
	return NODE_HDR + (size_t)count * 16;
}

int node_load(struct store *s, MDB_txn *txn, const struct store_hash *k,
	      unsigned level, struct node *n, bool verify)
{
	uint8_t buf[NODE_MAX];
	size_t len;
	int rc;

	if (store_hash_is_zero(k)) {
		memset(n, 0, sizeof(*n));
		n->level = level;
		return 0;
	}
	rc = chunk_read(s, txn, k, CHUNK_NODE, buf, sizeof(buf), &len, verify);
	if (rc)
		return rc == RW_ENOTFOUND ? RW_ECORRUPT : rc;
	rc = node_decode(buf, len, n);
	if (!rc && n->level != level)
		rc = RW_ECORRUPT;
	return rc;
}

unsigned tree_height(uint64_t npages)
{
	unsigned h = 1;
	uint64_t span = STORE_FANOUT;

	while (span < npages && h < TREE_HEIGHT_MAX) {
		span *= STORE_FANOUT;
		h++;
	}
	return h;
}

uint64_t tree_span(unsigned level)
{
	uint64_t span = STORE_FANOUT;

	for (unsigned i = 0; i < level; i++) {
		if (span > UINT64_MAX / STORE_FANOUT)
			return UINT64_MAX;
		span *= STORE_FANOUT;
	}
	return span;
}
