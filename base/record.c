/*
 * record.c - record header, writer and reader (layout in record.h), layered
 * on the base's byte writer and reader (codec.h).
 */
#include "record.h"

#include <errno.h>
#include <string.h>
#include <xxhash.h>

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
}

void rec_writer_free(struct rec_writer *w)
{
	bw_free(&w->out);
}

size_t rec_payload_len(const struct rec_writer *w)
{
	return w->out.len ? w->out.len - REC_HEADER_SIZE : 0;
}

/*
 * Check that n more payload bytes may be put, recording the error if not,
 * and return the byte writer to put them with (a no-op once it has failed).
 * The first put makes room for the header, which rec_finish() fills in.
 */
static struct byte_writer *wroom(struct rec_writer *w, size_t n)
{
	if (w->out.err)
		return &w->out;
	if (w->finished)
		bw_fail(&w->out, -EINVAL);
	else if (n > REC_PAYLOAD_MAX - rec_payload_len(w))
		bw_fail(&w->out, RW_ELIMIT);
	else if (!w->out.len)
		bw_reserve(&w->out, REC_HEADER_SIZE);
	return &w->out;
}

int rec_put_u8(struct rec_writer *w, uint8_t v) { return bw_put_u8(wroom(w, 1), v); }
int rec_put_u16(struct rec_writer *w, uint16_t v) { return bw_put_u16(wroom(w, 2), v); }
int rec_put_u32(struct rec_writer *w, uint32_t v) { return bw_put_u32(wroom(w, 4), v); }
int rec_put_u64(struct rec_writer *w, uint64_t v) { return bw_put_u64(wroom(w, 8), v); }

int rec_put_bool(struct rec_writer *w, bool v)
{
	return rec_put_u8(w, v ? 1 : 0);
}

int rec_put_bytes(struct rec_writer *w, const void *src, size_t n)
{
	return bw_put_bytes(wroom(w, n), src, n);
}

int rec_put_blob(struct rec_writer *w, const void *src, size_t n)
{
	if (n > UINT32_MAX)
		return bw_fail(&w->out, RW_ELIMIT);
	rec_put_u32(w, (uint32_t)n);
	return rec_put_bytes(w, src, n);
}

int rec_put_str(struct rec_writer *w, const char *s)
{
	return rec_put_blob(w, s, strlen(s));
}

int rec_tag_begin(struct rec_writer *w, uint16_t tag)
{
	if (w->out.err)
		return w->out.err;
	if (w->depth >= REC_TAG_DEPTH)
		return bw_fail(&w->out, RW_ELIMIT);
	rec_put_u16(w, tag);
	rec_put_u32(w, 0); /* patched by rec_tag_end() */
	if (!w->out.err)
		w->open[w->depth++] = w->out.len - 4;
	return w->out.err;
}

int rec_tag_end(struct rec_writer *w)
{
	size_t at, n;

	if (w->out.err)
		return w->out.err;
	if (w->depth == 0 || w->finished)
		return bw_fail(&w->out, -EINVAL);
	at = w->open[--w->depth];
	n = w->out.len - (at + 4);
	/* the payload cap keeps n far below UINT32_MAX */
	put_le32(w->out.buf + at, (uint32_t)n);
	return 0;
}

int rec_put_tagged(struct rec_writer *w, uint16_t tag, const void *p, size_t n)
{
	rec_tag_begin(w, tag);
	rec_put_bytes(w, p, n);
	return rec_tag_end(w);
}

int rec_finish(struct rec_writer *w, const uint8_t **data, size_t *len)
{
	uint8_t *h;
	size_t plen;

	*data = NULL;
	*len = 0;
	if (w->out.err)
		return w->out.err;
	if (w->depth)
		return bw_fail(&w->out, -EINVAL);
	if (!w->finished) {
		/* an empty payload still needs the header's bytes */
		if (wroom(w, 0)->err)
			return w->out.err;
		h = w->out.buf;
		plen = rec_payload_len(w);
		memcpy(h, REC_MAGIC, 4);
		put_le32(h + REC_OFF_KIND, w->kind);
		put_le32(h + REC_OFF_VERSION, w->version);
		put_le32(h + REC_OFF_LENGTH, (uint32_t)plen);
		put_le64(h + REC_OFF_CHECKSUM, rec_checksum(h, plen));
		w->finished = true;
	}
	*data = w->out.buf;
	*len = w->out.len;
	return 0;
}

int rec_take(struct rec_writer *w, uint8_t **data, size_t *len)
{
	const uint8_t *d;
	int ret = rec_finish(w, &d, len);

	*data = NULL;
	if (ret)
		return ret;
	*data = bw_release(&w->out);
	return 0;
}

/* ------------------------------------------------------------------ reader */

int rec_fail(struct rec_reader *r, int err, const char *field)
{
	return br_fail(&r->in, err ? err : RW_ECORRUPT, field);
}

int rec_peek(const void *buf, size_t len, struct rec_header *out)
{
	const uint8_t *b = buf;

	memset(out, 0, sizeof(*out));
	if (!buf || len < REC_HEADER_SIZE || memcmp(b, REC_MAGIC, 4) != 0)
		return RW_ECORRUPT;
	out->kind = get_le32(b + REC_OFF_KIND);
	out->version = get_le32(b + REC_OFF_VERSION);
	out->length = get_le32(b + REC_OFF_LENGTH);
	out->checksum = get_le64(b + REC_OFF_CHECKSUM);
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
	br_init(&r->in, (const uint8_t *)buf + REC_HEADER_SIZE, h.length);
	r->version = h.version;
	return 0;

fail:
	r->in.err = ret;
	return ret;
}

int rec_get_u8(struct rec_reader *r, uint8_t *v) { *v = br_get_u8(&r->in); return r->in.err; }
int rec_get_u16(struct rec_reader *r, uint16_t *v) { *v = br_get_u16(&r->in); return r->in.err; }
int rec_get_u32(struct rec_reader *r, uint32_t *v) { *v = br_get_u32(&r->in); return r->in.err; }
int rec_get_u64(struct rec_reader *r, uint64_t *v) { *v = br_get_u64(&r->in); return r->in.err; }

int rec_get_bool(struct rec_reader *r, bool *v)
{
	size_t off = br_offset(&r->in);
	uint8_t b;

	*v = false;
	if (rec_get_u8(r, &b))
		return r->in.err;
	if (b > 1)
		return br_fail_at(&r->in, RW_ECORRUPT, NULL, off);
	*v = b;
	return 0;
}

int rec_get_bytes(struct rec_reader *r, void *dst, size_t n)
{
	return br_get_bytes(&r->in, dst, n);
}

int rec_get_blob(struct rec_reader *r, void *dst, size_t cap, size_t *n)
{
	size_t off = br_offset(&r->in);
	uint32_t len;

	*n = 0;
	if (rec_get_u32(r, &len))
		return r->in.err;
	if (len > cap)
		return br_fail_at(&r->in, RW_ECORRUPT, NULL, off);
	if (rec_get_bytes(r, dst, len))
		return r->in.err;
	*n = len;
	return 0;
}

int rec_get_str(struct rec_reader *r, char *buf, size_t cap)
{
	size_t off = br_offset(&r->in);
	size_t n;

	if (cap == 0)
		return br_fail_at(&r->in, -EINVAL, NULL, off);
	buf[0] = '\0';
	if (rec_get_blob(r, buf, cap - 1, &n))
		goto fail;
	if (memchr(buf, '\0', n)) {
		br_fail_at(&r->in, RW_ECORRUPT, NULL, off);
		goto fail;
	}
	buf[n] = '\0';
	return 0;

fail:
	buf[0] = '\0';
	return r->in.err;
}

int rec_skip(struct rec_reader *r, size_t n)
{
	br_take(&r->in, n);
	return r->in.err;
}

size_t rec_remaining(const struct rec_reader *r)
{
	return br_remaining(&r->in);
}

int rec_next_tag(struct rec_reader *r, uint16_t *tag, struct rec_reader *field)
{
	uint32_t len;

	*tag = 0;
	memset(field, 0, sizeof(*field));
	field->in.parent = &r->in;
	if (r->in.err) {
		field->in.err = r->in.err;
		return r->in.err;
	}
	if (r->in.pos == r->in.len)
		return 0;
	rec_get_u16(r, tag);
	rec_get_u32(r, &len);
	if (br_section(&r->in, len, &field->in)) {
		*tag = 0;
		return r->in.err;
	}
	field->version = r->version;
	return 1;
}

int rec_tag_unknown(struct rec_reader *r, uint16_t tag)
{
	if (tag & REC_TAG_CRITICAL)
		return br_fail(&r->in, RW_EVERSION, "unknown critical tag");
	return 0;
}

int rec_expect_end(struct rec_reader *r)
{
	return br_end(&r->in);
}
