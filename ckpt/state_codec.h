/*
 * state_codec.h - what the record codecs of state.h share, and nothing else
 * includes: the refusal message ("<key>: <field>: <reason>"), opening a
 * record with a message that names the failed header check, skipping
 * unknown tagged fields, and reading scalars.
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

/* ---------------------------------------------------------------- refusals */

/* Where a refusal is explained: "<key>: <field>: <reason>". */
struct why {
	char *buf;
	size_t len;
	const char *key;
};

/* Refusals of one record go to buf (none if buf is NULL or len 0), under key. */
void why_init(struct why *w, char *buf, size_t len, const char *key);

/* Explain a refusal; fmt is "<field>: <reason>". Returns err. */
int refuse(struct why *w, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * Explain the sticky error of a reader: the field rec_fail() named, or else
 * the part of the record being read when it ran short or was malformed.
 */
int refuse_reader(struct why *w, const struct rec_reader *r, const char *part);

/* Name the part of a record about to be read, unless reading already failed. */
#define PART(r, var, name)              \
	do {                            \
		if (!rec_error(r))      \
			(var) = (name); \
	} while (0)

/* rec_open() with a message that says which header check failed. */
int open_record(struct rec_reader *r, const void *buf, size_t len, const char *kind,
		uint32_t min_version, uint32_t max_version, struct why *w);

/* Skip the tagged fields a reader does not know; refuse critical ones. */
int skip_tags(struct rec_reader *r);

/* ------------------------------------------------------------------ scalars */

/* One field; 0 once the reader has failed (its error is sticky). */
static inline uint8_t g8(struct rec_reader *r)
{
	uint8_t v;

	rec_get_u8(r, &v);
	return v;
}

static inline uint16_t g16(struct rec_reader *r)
{
	uint16_t v;

	rec_get_u16(r, &v);
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

#endif
