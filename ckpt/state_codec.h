/*
 * state_codec.h - what the record codecs of state.h share, and nothing else
 * includes: the refusal message ("<key>: <field>: <reason>"), opening a
 * record with a message that names the failed header check, skipping
 * unknown tagged fields, reading scalars, and field tables that write and
 * read a KVM struct member by member.
 *
 * Each decoder works in two steps: parse the record into the in-memory
 * struct, checking only the encoding (presence, bounds, string rules), then
 * check the values in the struct. The second step is shared with the
 * *_check() functions, so a state kept in memory (fast reset) and a state
 * read from a store pass the same rules.
 */
#ifndef RW_CKPT_STATE_CODEC_H
#define RW_CKPT_STATE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "record.h"
#include "util.h"

/* ---------------------------------------------------------------- refusals */

/* Where a refusal is explained: "<key>: <field>: <reason>". */
struct why {
	char *buf;
	size_t len;
	const char *key;
};

/* Refusals of one record go to buf (none if buf is NULL or len 0), under key. */
void state_why_init(struct why *w, char *buf, size_t len, const char *key);

/* Explain a refusal; fmt is "<field>: <reason>". Returns err. */
int state_refuse(struct why *w, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * Explain the sticky error of a reader: the field rec_fail() named, or else
 * the part of the record being read when it ran short or was malformed.
 */
int state_refuse_reader(struct why *w, const struct rec_reader *r, const char *part);

/* Name the part of a record about to be read, unless reading already failed. */
#define PART(r, var, name)              \
	do {                            \
		if (!rec_error(r))      \
			(var) = (name); \
	} while (0)

/* rec_open() with a message that says which header check failed. */
int state_open_record(struct rec_reader *r, const void *buf, size_t len, const char *kind,
		uint32_t min_version, uint32_t max_version, struct why *w);

/* Skip the tagged fields a reader does not know; refuse critical ones. */
int state_skip_tags(struct rec_reader *r);

/* ------------------------------------------------------------------ scalars */

/* One field; 0 once the reader has failed (its error is sticky). */
static inline uint8_t g8(struct rec_reader *r)
{
	uint8_t v;

	rec_get_u8(r, &v);
	return v;
}

static inline uint32_t g32(struct rec_reader *r)
{
	uint32_t v;

	rec_get_u32(r, &v);
	return v;
}

static inline uint64_t g64(struct rec_reader *r)
{
	uint64_t v;

	rec_get_u64(r, &v);
	return v;
}

/* ------------------------------------------------------------ field tables */

/*
 * One integer member of a struct, recorded at the member's own width (1, 2,
 * 4 or 8 bytes; a signed member as its two's complement). A table of them
 * lists the members of a struct in record order, so that the encoder and
 * the decoder of that struct share one list.
 */
struct field {
	size_t off;
	size_t size;
};

#define FIELD(type, member) { offsetof(type, member), sizeof(((type *)0)->member) }

void state_put_fields(struct rec_writer *w, const void *base, const struct field *f, size_t n);
/* Reads every field; once the reader has failed, the rest come out 0. */
void state_get_fields(struct rec_reader *r, void *base, const struct field *f, size_t n);

#define PUT_FIELDS(w, base, table) state_put_fields(w, base, table, ARRAY_SIZE(table))
#define GET_FIELDS(r, base, table) state_get_fields(r, base, table, ARRAY_SIZE(table))

#endif
