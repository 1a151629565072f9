/*
 * record.h - the record format of every vCPU, platform and device state
 * record: a writer and a reader layered on the base's byte serialiser
 * (codec.h), which add the header, the size cap and the tagged fields.
 *
 * Layout (every integer little-endian, no padding, no alignment):
 *
 *   offset  size  field
 *   ------  ----  -----------------------------------------------------------
 *        0     4  magic      "RWrc" (0x52 0x57 0x72 0x63)
 *        4     4  kind       low 32 bits of XXH3-64 of the kind name
 *                            ("serial", "vcpu", ...): a record handed to the
 *                            wrong parser is refused, not misread
 *        8     4  version    format version of the payload (the writer's)
 *       12     4  length     payload bytes that follow the header
 *       16     8  checksum   XXH3-64 of the payload, seeded with XXH3-64
 *                            of header bytes [0, 16)
 *       24     *  payload    `length` bytes
 *
 *   payload = fixed fields of `version`, in order, then optionally a list of
 *   tagged fields that runs to the end of the payload (or of an enclosing
 *   tagged field):
 *
 *     +--------+--------+------------------+
 *     | tag u16| len u32| len bytes  ...   |  repeated
 *     +--------+--------+------------------+
 *
 *   A tag with bit 15 clear (REC_TAG_CRITICAL) may be skipped by a reader that
 *   does not know it: that is how a newer writer adds a field within the same
 *   version. A tag with bit 15 set changes the meaning of other fields; a
 *   reader that does not know it must refuse the record (rec_tag_unknown()
 *   gives RW_EVERSION). Tag values are private to each record kind.
 *
 *   Scalars: u8/u16/u32/u64 fixed width; bool is one byte, 0 or 1 (anything
 *   else is RW_ECORRUPT). Variable data: blob = u32 length + bytes;
 *   string = blob without NUL (a NUL inside is RW_ECORRUPT).
 *
 * Writing: rec_writer_init(), put fields, rec_finish() -> the complete record
 * (header + payload). Every put is bounds- and size-checked; the first error
 * is sticky, later puts are no-ops, and rec_finish() returns it, so callers
 * may check once at the end.
 *
 * Reading: rec_open() checks the magic, the length (the buffer holds exactly
 * header + length bytes, length <= REC_PAYLOAD_MAX), the checksum, the kind
 * and the version range before any field is parsed. Every get checks bounds
 * against the payload (or the enclosing tagged field) and never reads past
 * it; on failure it stores 0 into the output, records the first error
 * (sticky, with the payload offset where it happened) and returns it. Code
 * that validates a value calls rec_fail() with the field's name, so the
 * layer that reports the failure can name the record and the field.
 *
 * Nothing here asserts or aborts on record contents.
 */
#ifndef RW_CKPT_RECORD_H
#define RW_CKPT_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "err.h"

#define REC_MAGIC "RWrc"
#define REC_HEADER_SIZE 24u
/* Hard cap on one record's payload; the writer and the reader enforce it. */
#define REC_PAYLOAD_MAX (16u << 20)
/* Tagged fields may nest this deep while writing. */
#define REC_TAG_DEPTH 8
/* Tag bit: a reader that does not know the tag must refuse the record. */
#define REC_TAG_CRITICAL 0x8000u

/* ------------------------------------------------------------------ writer */

struct rec_writer {
	struct byte_writer out; /* header + payload, none until the first put;
				   its error is the writer's sticky error */
	uint32_t kind;
	uint32_t version;
	unsigned depth;      /* open tagged fields */
	size_t open[REC_TAG_DEPTH]; /* offset of each open field's len word */
	bool finished;
};

/*
 * Start a record of the given kind (a stable on-disk name, e.g. the device
 * type's name) and payload version. Allocates nothing yet; the writer must
 * be released with rec_writer_free() whatever happens.
 */
void rec_writer_init(struct rec_writer *w, const char *kind, uint32_t version);

/* Release the buffer (unless taken with rec_take()). Safe to call twice. */
void rec_writer_free(struct rec_writer *w);

/*
 * Append fields. Each returns 0 or the writer's sticky error: -ENOMEM,
 * RW_ELIMIT (payload would exceed REC_PAYLOAD_MAX, or a blob longer than
 * UINT32_MAX), -EINVAL (put after rec_finish()).
 */
int rec_put_u8(struct rec_writer *w, uint8_t v);
int rec_put_u16(struct rec_writer *w, uint16_t v);
int rec_put_u32(struct rec_writer *w, uint32_t v);
int rec_put_u64(struct rec_writer *w, uint64_t v);
int rec_put_bool(struct rec_writer *w, bool v);
/* Raw bytes, no length prefix: fixed-size arrays whose size the version fixes. */
int rec_put_bytes(struct rec_writer *w, const void *p, size_t n);
/* u32 length + bytes. */
int rec_put_blob(struct rec_writer *w, const void *p, size_t n);
/* A NUL-terminated C string as a blob (without the NUL). */
int rec_put_str(struct rec_writer *w, const char *s);

/*
 * Tagged fields. rec_tag_begin() writes the tag and a length placeholder;
 * the fields put until the matching rec_tag_end() form its value. Fields may
 * nest up to REC_TAG_DEPTH. rec_put_tagged() writes a whole field at once.
 * Errors: as the puts, plus RW_ELIMIT (too deep) and -EINVAL (end without
 * begin).
 */
int rec_tag_begin(struct rec_writer *w, uint16_t tag);
int rec_tag_end(struct rec_writer *w);
int rec_put_tagged(struct rec_writer *w, uint16_t tag, const void *p, size_t n);

/* The writer's sticky error (0 if none). */
static inline int rec_writer_error(const struct rec_writer *w)
{
	return w->out.err;
}

/* Payload bytes written so far. */
size_t rec_payload_len(const struct rec_writer *w);

/*
 * Close the record: fill in the header and the checksum. On success *data
 * and *len describe the whole record (header + payload); the buffer stays
 * owned by the writer and is valid until rec_writer_free(). No puts are
 * allowed afterwards. Returns 0, the sticky error, or -EINVAL if a tagged
 * field is still open.
 */
int rec_finish(struct rec_writer *w, const uint8_t **data, size_t *len) RW_MUST_CHECK;

/*
 * rec_finish(), then hand the buffer over: the caller frees *data with
 * free(). The writer is left empty.
 */
int rec_take(struct rec_writer *w, uint8_t **data, size_t *len) RW_MUST_CHECK;

/* ------------------------------------------------------------------ reader */

struct rec_reader {
	/*
	 * The payload, or a tagged field's value (a section of the enclosing
	 * reader's). Offsets count from the payload's start; the byte
	 * reader's error is the reader's sticky error.
	 */
	struct byte_reader in;
	uint32_t version;
};

/* The decoded header, for tools that list records (no checks but the size). */
struct rec_header {
	uint32_t kind;
	uint32_t version;
	uint32_t length;
	uint64_t checksum;
};

/* The kind value stored in the header for a kind name. */
uint32_t rec_kind_id(const char *kind);

/*
 * Decode the header of buf without verifying anything else. Returns 0 or
 * RW_ECORRUPT (shorter than a header, wrong magic).
 */
int rec_peek(const void *buf, size_t len, struct rec_header *out) RW_MUST_CHECK;

/*
 * Verify a whole record and prepare to read its payload. buf must hold
 * exactly one record (header + length bytes); it is not copied and must
 * outlive the reader. kind may be NULL to accept any kind. Errors, checked
 * in this order:
 *   RW_ECORRUPT   shorter than a header, bad magic, length field not equal
 *                 to the bytes present, or length > REC_PAYLOAD_MAX
 *   RW_ECHECKSUM  checksum mismatch
 *   RW_ECORRUPT   kind does not match
 *   RW_EVERSION   version outside [min_version, max_version]
 * On failure the reader is left in the failed state (every get fails).
 */
int rec_open(struct rec_reader *r, const void *buf, size_t len, const char *kind,
	     uint32_t min_version, uint32_t max_version) RW_MUST_CHECK;

/* Version of the record being read. */
static inline uint32_t rec_version(const struct rec_reader *r)
{
	return r->version;
}

/*
 * Read fields. Each returns 0 or the reader's sticky error (RW_ECORRUPT on
 * truncation or an invalid encoding); on failure the output is zeroed.
 */
int rec_get_u8(struct rec_reader *r, uint8_t *v);
int rec_get_u16(struct rec_reader *r, uint16_t *v);
int rec_get_u32(struct rec_reader *r, uint32_t *v);
int rec_get_u64(struct rec_reader *r, uint64_t *v);
int rec_get_bool(struct rec_reader *r, bool *v);
int rec_get_bytes(struct rec_reader *r, void *p, size_t n);
/*
 * A blob of at most cap bytes into p; its length goes to *n. A longer blob
 * is RW_ECORRUPT (nothing copied).
 */
int rec_get_blob(struct rec_reader *r, void *p, size_t cap, size_t *n);
/*
 * A string into buf (cap bytes including the terminating NUL). Too long or
 * containing a NUL is RW_ECORRUPT; buf is then "".
 */
int rec_get_str(struct rec_reader *r, char *buf, size_t cap);
/* Skip n bytes. */
int rec_skip(struct rec_reader *r, size_t n);

/* Bytes left in this reader. 0 after an error. */
size_t rec_remaining(const struct rec_reader *r);

/*
 * Next tagged field. Returns 1 and sets *tag and *field (a reader bounded to
 * the field's value, whose errors propagate to r), 0 when r has no bytes
 * left, or the sticky error (a field header or value running past the end is
 * RW_ECORRUPT). r moves past the whole field whether or not *field is read.
 * *field must not outlive r.
 */
int rec_next_tag(struct rec_reader *r, uint16_t *tag, struct rec_reader *field) RW_MUST_CHECK;

/*
 * Called for a tag the reader does not know: 0 if the tag is skippable,
 * RW_EVERSION (recorded as r's error) if it has REC_TAG_CRITICAL set.
 */
int rec_tag_unknown(struct rec_reader *r, uint16_t tag);

/*
 * Mark the record invalid: a value read correctly but not acceptable.
 * field names it (a string literal: the pointer is kept). Only the first
 * error is kept. Returns the sticky error (err unless one came earlier).
 */
int rec_fail(struct rec_reader *r, int err, const char *field);

/* The sticky error (0 if none). */
static inline int rec_error(const struct rec_reader *r)
{
	return r->in.err;
}

/* Name given to the first rec_fail(), or NULL (truncation, bad encoding). */
static inline const char *rec_error_field(const struct rec_reader *r)
{
	return r->in.err_what;
}

/* Payload offset where the first error was found. */
static inline size_t rec_error_offset(const struct rec_reader *r)
{
	return r->in.err_off;
}

/*
 * Require that every byte was consumed: 0, the sticky error, or RW_ECORRUPT
 * (field "trailing bytes") if bytes remain.
 */
int rec_expect_end(struct rec_reader *r);

#endif
