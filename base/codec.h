/*
 * codec.h - the base's byte codec and byte serialiser.
 *
 * The codec: fixed-width integers stored little-endian (every on-disk and
 * on-wire format of rewind, and the guest-visible structures virtio and the
 * boot protocol define) or big-endian (store keys, whose byte order must sort
 * as the number does). Byte by byte, so any alignment works and the host's
 * byte order never matters; compilers turn each into one load or store.
 *
 * The serialiser, built on the codec (integers little-endian, no padding):
 *
 *   struct byte_writer  a growable buffer. Every put appends; the first
 *                       failure (-ENOMEM, or one the caller records with
 *                       bw_fail()) is sticky: later puts do nothing and
 *                       return it, so callers may check once at the end.
 *   struct byte_reader  a bounds-checked cursor over bytes it does not own.
 *                       A get past the end fails with RW_ECORRUPT; the first
 *                       failure is sticky, with the offset where it happened
 *                       and an optional name, and every later get returns 0
 *                       (or zero bytes). br_section() opens a reader over the
 *                       next n bytes whose failures are also its parent's.
 *
 * Formats are layered on these (base/record.c, the store's checkpoint
 * record); nothing here knows a format.
 */
#ifndef RW_BASE_CODEC_H
#define RW_BASE_CODEC_H

#include <stddef.h>
#include <stdint.h>

static inline void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void put_le32(uint8_t *p, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
	for (unsigned i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t get_le32(const uint8_t *p)
{
	uint32_t v = 0;

	for (unsigned i = 0; i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static inline uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static inline void put_be64(uint8_t *p, uint64_t v)
{
	for (unsigned i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static inline uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* ------------------------------------------------------------------ writer */

struct byte_writer {
	uint8_t *buf;        /* the bytes written; NULL until the first put */
	size_t len;          /* bytes written */
	size_t cap;          /* bytes allocated */
	int err;             /* first error, sticky */
};

/* An empty writer; equivalent to zeroing it. Allocates nothing. */
#define BYTE_WRITER_INIT { NULL, 0, 0, 0 }

/* Release the buffer; the writer is left empty. The sticky error stays. */
void bw_free(struct byte_writer *w);

/*
 * Hand the buffer over (the caller frees it with free()); the writer is left
 * empty. NULL if nothing was written.
 */
uint8_t *bw_release(struct byte_writer *w);

/* Record err as the writer's error unless one came earlier; returns the sticky error. */
int bw_fail(struct byte_writer *w, int err);

/*
 * Append n bytes and return a pointer to them for the caller to fill in
 * (valid until the next put), or NULL once the writer has failed.
 */
uint8_t *bw_reserve(struct byte_writer *w, size_t n);

/* Append; each returns 0 or the sticky error. */
int bw_put_bytes(struct byte_writer *w, const void *p, size_t n);
int bw_put_u8(struct byte_writer *w, uint8_t v);
int bw_put_u16(struct byte_writer *w, uint16_t v);
int bw_put_u32(struct byte_writer *w, uint32_t v);
int bw_put_u64(struct byte_writer *w, uint64_t v);

/* ------------------------------------------------------------------ reader */

struct byte_reader {
	const uint8_t *p;    /* the bytes this reader covers */
	size_t len;
	size_t pos;          /* next byte to read */
	size_t base;         /* offset of p[0] from the outermost reader's start */
	int err;             /* first error, sticky */
	size_t err_off;      /* offset (counted as base) of the first error */
	const char *err_what; /* name given with the first error, or NULL */
	struct byte_reader *parent; /* a section's reader: failures go up too */
};

/* A reader over len bytes at p (not copied: they must outlive the reader). */
void br_init(struct byte_reader *r, const void *p, size_t len);

/*
 * Record err (with what, a string literal or NULL, kept by pointer) at
 * offset off in this reader and in each enclosing one that has not failed
 * yet. Returns the sticky error. br_fail() records it at br_offset(r).
 */
int br_fail_at(struct byte_reader *r, int err, const char *what, size_t off);
int br_fail(struct byte_reader *r, int err, const char *what);

/*
 * The next n bytes: a pointer to them, and the reader moves past them; NULL
 * if fewer are left (RW_ECORRUPT) or the reader (or its parent) has failed.
 */
const uint8_t *br_take(struct byte_reader *r, size_t n);

/* Fixed-width little-endian integers; 0 once the reader has failed. */
uint8_t br_get_u8(struct byte_reader *r);
uint16_t br_get_u16(struct byte_reader *r);
uint32_t br_get_u32(struct byte_reader *r);
uint64_t br_get_u64(struct byte_reader *r);

/* n bytes into dst (zeroed on failure). Returns 0 or the sticky error. */
int br_get_bytes(struct byte_reader *r, void *dst, size_t n);

/*
 * The next n bytes as a section: *sec reads them (offsets keep counting from
 * the outermost reader) and its failures are r's too; r moves past all n
 * bytes whether or not *sec is read. *sec must not outlive r. Returns 0 or
 * the sticky error (then *sec has failed too).
 */
int br_section(struct byte_reader *r, size_t n, struct byte_reader *sec);

/* Offset of the next byte, counted from the outermost reader's start. */
static inline size_t br_offset(const struct byte_reader *r)
{
	return r->base + r->pos;
}

/* Bytes left; 0 once the reader or its parent has failed. */
size_t br_remaining(const struct byte_reader *r);

/*
 * Require that every byte was read: 0, the sticky error, or RW_ECORRUPT
 * (named "trailing bytes") if bytes remain.
 */
int br_end(struct byte_reader *r);

#endif
