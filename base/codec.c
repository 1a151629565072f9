/*
 * codec.c - the base's byte serialiser (codec.h): the growable writer and
 * the bounds-checked reader.
 */
#include "codec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

/* ------------------------------------------------------------------ writer */

void bw_free(struct byte_writer *w)
{
	free(w->buf);
	w->buf = NULL;
	w->len = 0;
	w->cap = 0;
}

uint8_t *bw_release(struct byte_writer *w)
{
	uint8_t *buf = w->buf;

	w->buf = NULL;
	w->len = 0;
	w->cap = 0;
	return buf;
}

int bw_fail(struct byte_writer *w, int err)
{
	if (!w->err)
		w->err = err;
	return w->err;
}

/* Grow the buffer to hold at least need bytes: 256, then doubling. */
static int bw_grow(struct byte_writer *w, size_t need)
{
	size_t cap = w->cap ? w->cap : 256;
	uint8_t *p;

	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	p = realloc(w->buf, cap);
	if (!p)
		return bw_fail(w, -ENOMEM);
	w->buf = p;
	w->cap = cap;
	return 0;
}

uint8_t *bw_reserve(struct byte_writer *w, size_t n)
{
	uint8_t *p;

	if (w->err)
		return NULL;
	if (n > SIZE_MAX - w->len) {
		bw_fail(w, -ENOMEM);
		return NULL;
	}
	/* even n == 0 allocates: success always gives a real pointer */
	if ((!w->buf || w->len + n > w->cap) && bw_grow(w, w->len + n))
		return NULL;
	p = w->buf + w->len;
	w->len += n;
	return p;
}

int bw_put_bytes(struct byte_writer *w, const void *src, size_t n)
{
	uint8_t *p = bw_reserve(w, n);

	if (p && n)
		memcpy(p, src, n);
	return w->err;
}

int bw_put_u8(struct byte_writer *w, uint8_t v)
{
	return bw_put_bytes(w, &v, 1);
}

int bw_put_u16(struct byte_writer *w, uint16_t v)
{
	uint8_t b[2];

	put_le16(b, v);
	return bw_put_bytes(w, b, sizeof(b));
}

int bw_put_u32(struct byte_writer *w, uint32_t v)
{
	uint8_t b[4];

	put_le32(b, v);
	return bw_put_bytes(w, b, sizeof(b));
}

int bw_put_u64(struct byte_writer *w, uint64_t v)
{
	uint8_t b[8];

	put_le64(b, v);
	return bw_put_bytes(w, b, sizeof(b));
}

/* ------------------------------------------------------------------ reader */

void br_init(struct byte_reader *r, const void *p, size_t len)
{
	memset(r, 0, sizeof(*r));
	r->p = p;
	r->len = len;
}

int br_fail_at(struct byte_reader *r, int err, const char *what, size_t off)
{
	for (struct byte_reader *x = r; x; x = x->parent) {
		if (!x->err) {
			x->err = err;
			x->err_off = off;
			x->err_what = what;
		}
	}
	return r->err;
}

int br_fail(struct byte_reader *r, int err, const char *what)
{
	return br_fail_at(r, err, what, br_offset(r));
}

const uint8_t *br_take(struct byte_reader *r, size_t n)
{
	const uint8_t *p;

	if (!r->err && r->parent && r->parent->err)
		r->err = r->parent->err; /* the parent failed while we were open */
	if (r->err)
		return NULL;
	if (n > r->len - r->pos) {
		br_fail(r, RW_ECORRUPT, NULL);
		return NULL;
	}
	p = r->p + r->pos;
	r->pos += n;
	return p;
}

uint8_t br_get_u8(struct byte_reader *r)
{
	const uint8_t *p = br_take(r, 1);

	return p ? p[0] : 0;
}

uint16_t br_get_u16(struct byte_reader *r)
{
	const uint8_t *p = br_take(r, 2);

	return p ? get_le16(p) : 0;
}

uint32_t br_get_u32(struct byte_reader *r)
{
	const uint8_t *p = br_take(r, 4);

	return p ? get_le32(p) : 0;
}

uint64_t br_get_u64(struct byte_reader *r)
{
	const uint8_t *p = br_take(r, 8);

	return p ? get_le64(p) : 0;
}

int br_get_bytes(struct byte_reader *r, void *dst, size_t n)
{
	const uint8_t *p = br_take(r, n);

	if (p && n)
		memcpy(dst, p, n);
	else if (n)
		memset(dst, 0, n);
	return r->err;
}

int br_section(struct byte_reader *r, size_t n, struct byte_reader *sec)
{
	size_t start = br_offset(r);
	const uint8_t *p = br_take(r, n);

	memset(sec, 0, sizeof(*sec));
	sec->parent = r;
	if (!p) {
		sec->err = r->err;
		return r->err;
	}
	sec->p = p;
	sec->len = n;
	sec->base = start;
	return 0;
}

size_t br_remaining(const struct byte_reader *r)
{
	if (r->err || (r->parent && r->parent->err))
		return 0;
	return r->len - r->pos;
}

int br_end(struct byte_reader *r)
{
	if (r->err)
		return r->err;
	if (r->pos != r->len)
		return br_fail(r, RW_ECORRUPT, "trailing bytes");
	return 0;
}
