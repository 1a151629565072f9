/*
 * record.c - record header, writer and reader (layout in record.h).
 */
#include "record.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* ------------------------------------------------------------ little endian */

static void le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void le32(uint8_t *p, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void le64(uint8_t *p, uint64_t v)
{
	for (unsigned i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v = 0;

	for (unsigned i = 0; i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* ---------------------------------------------------------------- checksum */

#define REC_OFF_KIND 4
#define REC_OFF_VERSION 8
#define REC_OFF_LENGTH 12
#define REC_OFF_CHECKSUM 16

/*
 * XXH3-64 of the payload, seeded with XXH3-64 of header bytes [0, 16): a
 * flipped bit in the kind, version or length changes the checksum too. (The
 * one-shot calls avoid XXH3_state_t, whose layout is not part of the
 * library's ABI.)
 */
static uint64_t rec_checksum(const uint8_t *rec, size_t payload_len)
{
	uint64_t seed = XXH3_64bits(rec, REC_OFF_CHECKSUM);

	return XXH3_64bits_withSeed(rec + REC_HEADER_SIZE, payload_len, seed);
}

uint32_t rec_kind_id(const char *kind)
{
	return (uint32_t)XXH3_64bits(kind, strlen(kind));
}

/* ------------------------------------------------------------------ writer */

void rec_writer_init(struct rec_writer *w, const char *kind, uint32_t version)
{
	memset(w, 0, sizeof(*w));
	w->kind = rec_kind_id(kind);
	w->version = version;
	w->len = REC_HEADER_SIZE;
}

void rec_writer_free(struct rec_writer *w)
{
	free(w->buf);
	w->buf = NULL;
	w->cap = 0;
	w->len = REC_HEADER_SIZE;
}

static int wfail(struct rec_writer *w, int err)
{
	if (!w->err)
		w->err = err;
	return w->err;
}

/* Grow the buffer to at least need bytes. Returns 0 or the sticky error. */
static int wgrow(struct rec_writer *w, size_t need)
{
	size_t cap;
	uint8_t *p;

	if (need <= w->cap)
		return 0;
	cap = w->cap ? w->cap : 256;
	while (cap < need)
		cap *= 2;
	p = realloc(w->buf, cap);
	if (!p)
		return wfail(w, -ENOMEM);
	w->buf = p;
	w->cap = cap;
	return 0;
}

/* Make room for n more bytes; returns a pointer to them or NULL (error set). */
static uint8_t *wreserve(struct rec_writer *w, size_t n)
{
	uint8_t *p;

	if (w->err)
		return NULL;
	if (w->finished) {
		wfail(w, -EINVAL);
		return NULL;
	}
	/* w->len >= REC_HEADER_SIZE always */
	if (n > REC_PAYLOAD_MAX || w->len - REC_HEADER_SIZE > REC_PAYLOAD_MAX - n) {
		wfail(w, RW_ELIMIT);
		return NULL;
	}
	if (wgrow(w, w->len + n))
		return NULL;
	p = w->buf + w->len;
	w->len += n;
	return p;
}

int rec_put_u8(struct rec_writer *w, uint8_t v)
{
	uint8_t *p = wreserve(w, 1);

	if (p)
		p[0] = v;
	return w->err;
}

int rec_put_u16(struct rec_writer *w, uint16_t v)
{
	uint8_t *p = wreserve(w, 2);

	if (p)
		le16(p, v);
	return w->err;
}

int rec_put_u32(struct rec_writer *w, uint32_t v)
{
	uint8_t *p = wreserve(w, 4);

	if (p)
		le32(p, v);
	return w->err;
}

int rec_put_u64(struct rec_writer *w, uint64_t v)
{
	uint8_t *p = wreserve(w, 8);

	if (p)
		le64(p, v);
	return w->err;
}

int rec_put_bool(struct rec_writer *w, bool v)
{
	return rec_put_u8(w, v ? 1 : 0);
}

int rec_put_bytes(struct rec_writer *w, const void *src, size_t n)
{
	uint8_t *p = wreserve(w, n);

	if (p && n)
		memcpy(p, src, n);
	return w->err;
}

int rec_put_blob(struct rec_writer *w, const void *src, size_t n)
{
	if (n > UINT32_MAX)
		return wfail(w, RW_ELIMIT);
	rec_put_u32(w, (uint32_t)n);
	return rec_put_bytes(w, src, n);
}

int rec_put_str(struct rec_writer *w, const char *s)
{
	return rec_put_blob(w, s, strlen(s));
}

int rec_tag_begin(struct rec_writer *w, uint16_t tag)
{
	if (w->err)
		return w->err;
	if (w->depth >= REC_TAG_DEPTH)
		return wfail(w, RW_ELIMIT);
	rec_put_u16(w, tag);
	rec_put_u32(w, 0); /* patched by rec_tag_end() */
	if (!w->err)
		w->open[w->depth++] = w->len - 4;
	return w->err;
}

int rec_tag_end(struct rec_writer *w)
{
	size_t at, n;

	if (w->err)
		return w->err;
	if (w->depth == 0 || w->finished)
		return wfail(w, -EINVAL);
	at = w->open[--w->depth];
	n = w->len - (at + 4);
	/* the payload cap keeps n far below UINT32_MAX */
	le32(w->buf + at, (uint32_t)n);
	return 0;
}

int rec_put_tagged(struct rec_writer *w, uint16_t tag, const void *p, size_t n)
{
	rec_tag_begin(w, tag);
	rec_put_bytes(w, p, n);
	return rec_tag_end(w);
}

size_t rec_payload_len(const struct rec_writer *w)
{
	return w->len - REC_HEADER_SIZE;
}

int rec_finish(struct rec_writer *w, const uint8_t **data, size_t *len)
{
	size_t plen;

	*data = NULL;
	*len = 0;
	if (w->err)
		return w->err;
	if (w->depth)
		return wfail(w, -EINVAL);
	if (!w->finished) {
		/* an empty payload still needs the header's bytes */
		if (wgrow(w, REC_HEADER_SIZE))
			return w->err;
		plen = w->len - REC_HEADER_SIZE;
		memcpy(w->buf, REC_MAGIC, 4);
		le32(w->buf + REC_OFF_KIND, w->kind);
		le32(w->buf + REC_OFF_VERSION, w->version);
		le32(w->buf + REC_OFF_LENGTH, (uint32_t)plen);
		le64(w->buf + REC_OFF_CHECKSUM, rec_checksum(w->buf, plen));
		w->finished = true;
	}
	*data = w->buf;
	*len = w->len;
	return 0;
}

int rec_take(struct rec_writer *w, uint8_t **data, size_t *len)
{
	const uint8_t *d;
	int ret = rec_finish(w, &d, len);

	*data = NULL;
	if (ret)
		return ret;
	*data = w->buf;
	w->buf = NULL;
	w->cap = 0;
	return 0;
}

/* ------------------------------------------------------------------ reader */

static int rfail_at(struct rec_reader *r, int err, const char *field, size_t off)
{
	for (struct rec_reader *x = r; x; x = x->parent) {
		if (!x->err) {
			x->err = err;
			x->err_off = off;
			x->err_field = field;
		}
	}
	return r->err;
}

int rec_fail(struct rec_reader *r, int err, const char *field)
{
	return rfail_at(r, err ? err : RW_ECORRUPT, field, r->base + r->pos);
}

/* Checks that n bytes are left; returns a pointer to them and advances. */
static const uint8_t *rtake(struct rec_reader *r, size_t n)
{
	const uint8_t *p;

	if (!r->err && r->parent && r->parent->err)
		r->err = r->parent->err; /* the parent failed while we were open */
	if (r->err)
		return NULL;
	if (n > r->len - r->pos) {
		rfail_at(r, RW_ECORRUPT, NULL, r->base + r->pos);
		return NULL;
	}
	p = r->p + r->pos;
	r->pos += n;
	return p;
}

int rec_peek(const void *buf, size_t len, struct rec_header *out)
{
	const uint8_t *b = buf;

	memset(out, 0, sizeof(*out));
	if (!buf || len < REC_HEADER_SIZE || memcmp(b, REC_MAGIC, 4) != 0)
		return RW_ECORRUPT;
	out->kind = rd32(b + REC_OFF_KIND);
	out->version = rd32(b + REC_OFF_VERSION);
	out->length = rd32(b + REC_OFF_LENGTH);
	out->checksum = rd64(b + REC_OFF_CHECKSUM);
	return 0;
}

int rec_open(struct rec_reader *r, const void *buf, size_t len, const char *kind,
	     uint32_t min_version, uint32_t max_version)
{
	struct rec_header h;
	int ret;

	memset(r, 0, sizeof(*r));
	ret = rec_peek(buf, len, &h);
	if (ret)
		goto fail;
	ret = RW_ECORRUPT;
	if (h.length > REC_PAYLOAD_MAX || h.length != len - REC_HEADER_SIZE)
		goto fail;
	ret = RW_ECHECKSUM;
	if (rec_checksum(buf, h.length) != h.checksum)
		goto fail;
	ret = RW_ECORRUPT;
	if (kind && h.kind != rec_kind_id(kind))
		goto fail;
	ret = RW_EVERSION;
	if (h.version < min_version || h.version > max_version)
		goto fail;
	r->p = (const uint8_t *)buf + REC_HEADER_SIZE;
	r->len = h.length;
	r->version = h.version;
	return 0;

fail:
	r->err = ret;
	return ret;
}

int rec_get_u8(struct rec_reader *r, uint8_t *v)
{
	const uint8_t *p = rtake(r, 1);

	*v = p ? p[0] : 0;
	return r->err;
}

int rec_get_u16(struct rec_reader *r, uint16_t *v)
{
	const uint8_t *p = rtake(r, 2);

	*v = p ? rd16(p) : 0;
	return r->err;
}

int rec_get_u32(struct rec_reader *r, uint32_t *v)
{
	const uint8_t *p = rtake(r, 4);

	*v = p ? rd32(p) : 0;
	return r->err;
}

int rec_get_u64(struct rec_reader *r, uint64_t *v)
{
	const uint8_t *p = rtake(r, 8);

	*v = p ? rd64(p) : 0;
	return r->err;
}

int rec_get_bool(struct rec_reader *r, bool *v)
{
	size_t off = r->base + r->pos;
	uint8_t b;

	*v = false;
	if (rec_get_u8(r, &b))
		return r->err;
	if (b > 1)
		return rfail_at(r, RW_ECORRUPT, NULL, off);
	*v = b;
	return 0;
}

int rec_get_bytes(struct rec_reader *r, void *dst, size_t n)
{
	const uint8_t *p = rtake(r, n);

	if (!p) {
		if (n)
			memset(dst, 0, n);
		return r->err;
	}
	if (n)
		memcpy(dst, p, n);
	return 0;
}

int rec_get_blob(struct rec_reader *r, void *dst, size_t cap, size_t *n)
{
	size_t off = r->base + r->pos;
	uint32_t len;

	*n = 0;
	if (rec_get_u32(r, &len))
		return r->err;
	if (len > cap)
		return rfail_at(r, RW_ECORRUPT, NULL, off);
	if (rec_get_bytes(r, dst, len))
		return r->err;
	*n = len;
	return 0;
}

int rec_get_str(struct rec_reader *r, char *buf, size_t cap)
{
	size_t off = r->base + r->pos;
	size_t n;

	if (cap == 0)
		return rfail_at(r, -EINVAL, NULL, off);
	buf[0] = '\0';
	if (rec_get_blob(r, buf, cap - 1, &n))
		goto fail;
	if (memchr(buf, '\0', n)) {
		rfail_at(r, RW_ECORRUPT, NULL, off);
		goto fail;
	}
	buf[n] = '\0';
	return 0;

fail:
	buf[0] = '\0';
	return r->err;
}

int rec_skip(struct rec_reader *r, size_t n)
{
	rtake(r, n);
	return r->err;
}

size_t rec_remaining(const struct rec_reader *r)
{
	if (r->err || (r->parent && r->parent->err))
		return 0;
	return r->len - r->pos;
}

int rec_next_tag(struct rec_reader *r, uint16_t *tag, struct rec_reader *field)
{
	size_t start;
	uint32_t len;
	const uint8_t *p;

	*tag = 0;
	memset(field, 0, sizeof(*field));
	field->parent = r;
	if (r->err) {
		field->err = r->err;
		return r->err;
	}
	if (r->pos == r->len)
		return 0;
	rec_get_u16(r, tag);
	rec_get_u32(r, &len);
	start = r->base + r->pos;
	p = rtake(r, len);
	if (!p) {
		*tag = 0;
		field->err = r->err;
		return r->err;
	}
	field->p = p;
	field->len = len;
	field->base = start;
	field->version = r->version;
	return 1;
}

int rec_tag_unknown(struct rec_reader *r, uint16_t tag)
{
	if (tag & REC_TAG_CRITICAL)
		return rfail_at(r, RW_EVERSION, "unknown critical tag", r->base + r->pos);
	return 0;
}

int rec_expect_end(struct rec_reader *r)
{
	if (r->err)
		return r->err;
	if (r->pos != r->len)
		return rfail_at(r, RW_ECORRUPT, "trailing bytes", r->base + r->pos);
	return 0;
}
