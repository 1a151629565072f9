/*
 * The record format (base/record.h): round trips, header checks, bounds on
 * every read, tagged extensions.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "record.h"

/* A record with one of every field type, and a tagged section. */
static void write_sample(struct rec_writer *w, uint32_t version)
{
	static const uint8_t raw[5] = { 1, 2, 3, 4, 5 };

	rec_writer_init(w, "sample", version);
	rec_put_u8(w, 0xa5);
	rec_put_u16(w, 0xbeef);
	rec_put_u32(w, 0xdeadbeef);
	rec_put_u64(w, 0x0123456789abcdefULL);
	rec_put_bool(w, true);
	rec_put_bytes(w, raw, sizeof(raw));
	rec_put_blob(w, "blob", 4);
	rec_put_str(w, "hello");
	rec_tag_begin(w, 7);
	rec_put_u32(w, 77);
	rec_tag_end(w);
}

/*
 * Read what write_sample wrote; returns the first error. *tagged is the
 * tagged field's value, 0 if the record has none (as an older writer's).
 */
static int read_sample_tag(struct rec_reader *r, uint32_t *tagged)
{
	uint8_t u8, raw[5];
	uint16_t u16, tag;
	uint32_t u32, tagval = 0;
	uint64_t u64;
	bool b;
	char blob[8], str[16];
	size_t n;
	struct rec_reader f;
	int ret;

	rec_get_u8(r, &u8);
	rec_get_u16(r, &u16);
	rec_get_u32(r, &u32);
	rec_get_u64(r, &u64);
	rec_get_bool(r, &b);
	rec_get_bytes(r, raw, sizeof(raw));
	rec_get_blob(r, blob, sizeof(blob), &n);
	rec_get_str(r, str, sizeof(str));
	while ((ret = rec_next_tag(r, &tag, &f)) > 0) {
		if (tag == 7)
			rec_get_u32(&f, &tagval);
		else if (rec_tag_unknown(r, tag))
			break;
	}
	if (rec_expect_end(r))
		return rec_error(r);
	cr_assert_eq(u8, 0xa5);
	cr_assert_eq(u16, 0xbeef);
	cr_assert_eq(u32, 0xdeadbeef);
	cr_assert_eq(u64, 0x0123456789abcdefULL);
	cr_assert(b);
	cr_assert_eq(raw[4], 5);
	cr_assert_eq(n, 4);
	cr_assert_eq(memcmp(blob, "blob", 4), 0);
	cr_assert_str_eq(str, "hello");
	*tagged = tagval;
	return 0;
}

static int read_sample(struct rec_reader *r)
{
	uint32_t tagged;
	int ret = read_sample_tag(r, &tagged);

	if (ret == 0)
		cr_assert_eq(tagged, 77);
	return ret;
}

/* Payload bytes of write_sample() before its tagged field. */
#define SAMPLE_FIXED_LEN (1 + 2 + 4 + 8 + 1 + 5 + (4 + 4) + (4 + 5))

static size_t finish(struct rec_writer *w, const uint8_t **data)
{
	size_t len;

	cr_assert_eq(rec_finish(w, data, &len), 0);
	return len;
}

Test(record, round_trip)
{
	struct rec_writer w;
	struct rec_reader r;
	const uint8_t *d;
	size_t len;

	write_sample(&w, 3);
	len = finish(&w, &d);
	cr_assert_eq(len, REC_HEADER_SIZE + rec_payload_len(&w));
	cr_assert_eq(rec_open(&r, d, len, "sample", 1, 3), 0);
	cr_assert_eq(rec_version(&r), 3);
	cr_assert_eq(read_sample(&r), 0);
	rec_writer_free(&w);
}

Test(record, little_endian_layout)
{
	struct rec_writer w;
	struct rec_header h;
	const uint8_t *d;
	size_t len;

	rec_writer_init(&w, "le", 0x01020304);
	rec_put_u32(&w, 0x11223344);
	rec_put_u16(&w, 0x5566);
	len = finish(&w, &d);
	cr_assert_eq(len, REC_HEADER_SIZE + 6);
	cr_assert_eq(memcmp(d, "RWrc", 4), 0);
	cr_assert_eq(d[8], 0x04); /* version, LE */
	cr_assert_eq(d[11], 0x01);
	cr_assert_eq(d[12], 6); /* length */
	cr_assert_eq(d[REC_HEADER_SIZE + 0], 0x44);
	cr_assert_eq(d[REC_HEADER_SIZE + 3], 0x11);
	cr_assert_eq(d[REC_HEADER_SIZE + 4], 0x66);
	cr_assert_eq(rec_peek(d, len, &h), 0);
	cr_assert_eq(h.version, 0x01020304);
	cr_assert_eq(h.length, 6);
	cr_assert_eq(h.kind, rec_kind_id("le"));
	rec_writer_free(&w);
}

Test(record, empty_payload)
{
	struct rec_writer w;
	struct rec_reader r;
	const uint8_t *d;
	uint8_t v;
	size_t len;

	rec_writer_init(&w, "empty", 1);
	len = finish(&w, &d);
	cr_assert_eq(len, REC_HEADER_SIZE);
	cr_assert_eq(rec_open(&r, d, len, "empty", 1, 1), 0);
	cr_assert_eq(rec_remaining(&r), 0);
	cr_assert_eq(rec_get_u8(&r, &v), RW_ECORRUPT);
	rec_writer_free(&w);
}

Test(record, take_transfers_ownership)
{
	struct rec_writer w;
	struct rec_reader r;
	uint8_t *d;
	size_t len;

	write_sample(&w, 1);
	cr_assert_eq(rec_take(&w, &d, &len), 0);
	rec_writer_free(&w); /* must not free d */
	cr_assert_eq(rec_open(&r, d, len, "sample", 1, 1), 0);
	cr_assert_eq(read_sample(&r), 0);
	free(d);
}

Test(record, truncation_at_every_offset_refused)
{
	struct rec_writer w;
	struct rec_reader r;
	const uint8_t *d;
	size_t len;

	write_sample(&w, 1);
	len = finish(&w, &d);
	for (size_t cut = 0; cut < len; cut++) {
		/* a private copy of exactly cut bytes, so ASan sees any overread */
		uint8_t *copy = malloc(cut ? cut : 1);

		memcpy(copy, d, cut);
		cr_assert_eq(rec_open(&r, copy, cut, "sample", 1, 1), RW_ECORRUPT, "cut at %zu", cut);
		cr_assert_eq(read_sample(&r), RW_ECORRUPT, "reads after a failed open fail");
		free(copy);
	}
	/* one byte too many is refused as well */
	uint8_t *longer = calloc(1, len + 1);
	memcpy(longer, d, len);
	cr_assert_eq(rec_open(&r, longer, len + 1, "sample", 1, 1), RW_ECORRUPT);
	free(longer);
	rec_writer_free(&w);
}

/*
 * The reader stops at the end of the payload whatever the fields claim: a
 * payload cut short (with a matching header and checksum) fails at the cut,
 * for every cut.
 */
Test(record, reader_never_reads_past_payload)
{
	struct rec_writer full, w;
	struct rec_reader r;
	const uint8_t *d, *p;
	size_t len, plen;

	write_sample(&full, 1);
	len = finish(&full, &d);
	plen = len - REC_HEADER_SIZE;
	for (size_t cut = 0; cut < plen; cut++) {
		uint8_t *copy;

		rec_writer_init(&w, "sample", 1);
		rec_put_bytes(&w, d + REC_HEADER_SIZE, cut);
		len = finish(&w, &p);
		copy = malloc(len);
		memcpy(copy, p, len);
		cr_assert_eq(rec_open(&r, copy, len, "sample", 1, 1), 0);
		if (cut == SAMPLE_FIXED_LEN) {
			/* a writer that never added the tagged field: valid */
			uint32_t tagged;

			cr_assert_eq(read_sample_tag(&r, &tagged), 0);
			cr_assert_eq(tagged, 0);
		} else {
			cr_assert_eq(read_sample(&r), RW_ECORRUPT, "payload cut at %zu", cut);
			cr_assert_leq(rec_error_offset(&r), cut);
		}
		free(copy);
		rec_writer_free(&w);
	}
	rec_writer_free(&full);
}

Test(record, every_bit_flip_refused)
{
	struct rec_writer w;
	struct rec_reader r;
	const uint8_t *d;
	size_t len;
	uint8_t *copy;

	write_sample(&w, 2);
	len = finish(&w, &d);
	copy = malloc(len);
	for (size_t i = 0; i < len; i++) {
		for (unsigned bit = 0; bit < 8; bit++) {
			int ret;

			memcpy(copy, d, len);
			copy[i] ^= (uint8_t)(1u << bit);
			ret = rec_open(&r, copy, len, "sample", 1, 5);
			if (i < 4 || (i >= 12 && i < 16))
				cr_assert_eq(ret, RW_ECORRUPT, "magic/length flip at %zu.%u", i, bit);
			else
				cr_assert_eq(ret, RW_ECHECKSUM, "flip at %zu.%u", i, bit);
		}
	}
	free(copy);
	rec_writer_free(&w);
}

Test(record, version_range)
{
	struct rec_writer w;
	struct rec_reader r;
	const uint8_t *d;
	size_t len;

	write_sample(&w, 4);
	len = finish(&w, &d);
	cr_assert_eq(rec_open(&r, d, len, "sample", 1, 3), RW_EVERSION);
	cr_assert_eq(rec_open(&r, d, len, "sample", 5, 9), RW_EVERSION);
	cr_assert_eq(rec_open(&r, d, len, "sample", 4, 4), 0);
	rec_writer_free(&w);
}

Test(record, kind_checked)
{
	struct rec_writer w;
	struct rec_reader r;
	const uint8_t *d;
	size_t len;

	write_sample(&w, 1);
	len = finish(&w, &d);
	cr_assert_eq(rec_open(&r, d, len, "other", 1, 1), RW_ECORRUPT);
	cr_assert_eq(rec_open(&r, d, len, NULL, 1, 1), 0);
	rec_writer_free(&w);
}

Test(record, bad_magic_and_short_header)
{
	struct rec_reader r;
	struct rec_header h;
	uint8_t junk[64] = { 'R', 'W', 'x', 'c' };

	cr_assert_eq(rec_open(&r, junk, sizeof(junk), NULL, 0, 10), RW_ECORRUPT);
	cr_assert_eq(rec_peek(junk, sizeof(junk), &h), RW_ECORRUPT);
	cr_assert_eq(rec_open(&r, NULL, 0, NULL, 0, 10), RW_ECORRUPT);
	cr_assert_eq(rec_open(&r, "RWrc", 4, NULL, 0, 10), RW_ECORRUPT);
}

Test(record, oversized_length_refused)
{
	struct rec_writer w;
	struct rec_reader r;
	const uint8_t *d;
	uint8_t *copy;
	size_t len;

	rec_writer_init(&w, "big", 1);
	rec_put_u32(&w, 1);
	len = finish(&w, &d);
	copy = malloc(len);
	memcpy(copy, d, len);
	/* claim far more payload than is present */
	copy[12] = 0xff;
	copy[13] = 0xff;
	copy[14] = 0xff;
	copy[15] = 0xff;
	cr_assert_eq(rec_open(&r, copy, len, NULL, 0, 10), RW_ECORRUPT);
	free(copy);
	rec_writer_free(&w);
}

Test(record, writer_size_cap)
{
	struct rec_writer w;
	const uint8_t *d;
	size_t len;
	uint8_t *big = calloc(1, REC_PAYLOAD_MAX);

	rec_writer_init(&w, "cap", 1);
	cr_assert_eq(rec_put_bytes(&w, big, REC_PAYLOAD_MAX), 0);
	cr_assert_eq(rec_put_u8(&w, 1), RW_ELIMIT);
	cr_assert_eq(rec_put_u8(&w, 1), RW_ELIMIT, "sticky");
	cr_assert_eq(rec_finish(&w, &d, &len), RW_ELIMIT);
	cr_assert_null(d);
	rec_writer_free(&w);
	free(big);
}

Test(record, writer_misuse)
{
	struct rec_writer w;
	const uint8_t *d;
	size_t len;

	rec_writer_init(&w, "misuse", 1);
	cr_assert_eq(rec_tag_end(&w), -EINVAL, "end without begin");
	rec_writer_free(&w);

	rec_writer_init(&w, "misuse", 1);
	rec_tag_begin(&w, 1);
	cr_assert_eq(rec_finish(&w, &d, &len), -EINVAL, "field left open");
	rec_writer_free(&w);

	rec_writer_init(&w, "misuse", 1);
	for (unsigned i = 0; i < REC_TAG_DEPTH; i++)
		cr_assert_eq(rec_tag_begin(&w, (uint16_t)i), 0);
	cr_assert_eq(rec_tag_begin(&w, 99), RW_ELIMIT);
	rec_writer_free(&w);

	rec_writer_init(&w, "misuse", 1);
	cr_assert_eq(rec_finish(&w, &d, &len), 0);
	cr_assert_eq(rec_put_u8(&w, 1), -EINVAL, "put after finish");
	rec_writer_free(&w);
}

Test(record, sticky_error_zeroes_outputs)
{
	struct rec_writer w;
	struct rec_reader r;
	const uint8_t *d;
	size_t len;
	uint32_t a, b;
	uint64_t c = 5;

	rec_writer_init(&w, "sticky", 1);
	rec_put_u16(&w, 1);
	len = finish(&w, &d);
	cr_assert_eq(rec_open(&r, d, len, "sticky", 1, 1), 0);
	cr_assert_eq(rec_get_u32(&r, &a), RW_ECORRUPT); /* only 2 bytes */
	cr_assert_eq(a, 0);
	cr_assert_eq(rec_error_offset(&r), 0);
	/* later reads fail too, even ones that would fit */
	cr_assert_eq(rec_get_u8(&r, (uint8_t *)&b), RW_ECORRUPT);
	cr_assert_eq(rec_get_u64(&r, &c), RW_ECORRUPT);
	cr_assert_eq(c, 0);
	cr_assert_eq(rec_remaining(&r), 0);
	cr_assert_eq(rec_error(&r), RW_ECORRUPT);
	rec_writer_free(&w);
}

Test(record, invalid_encodings)
{
	struct rec_writer w;
	struct rec_reader r;
	const uint8_t *d;
	size_t len, n;
	bool b;
	char s[8];
	uint8_t buf[4];

	/* bool other than 0/1 */
	rec_writer_init(&w, "enc", 1);
	rec_put_u8(&w, 2);
	len = finish(&w, &d);
	cr_assert_eq(rec_open(&r, d, len, "enc", 1, 1), 0);
	cr_assert_eq(rec_get_bool(&r, &b), RW_ECORRUPT);
	rec_writer_free(&w);

	/* string with a NUL inside, string too long for the buffer */
	rec_writer_init(&w, "enc", 1);
	rec_put_blob(&w, "a\0b", 3);
	rec_put_str(&w, "much too long");
	len = finish(&w, &d);
	cr_assert_eq(rec_open(&r, d, len, "enc", 1, 1), 0);
	cr_assert_eq(rec_get_str(&r, s, sizeof(s)), RW_ECORRUPT);
	cr_assert_str_eq(s, "");
	rec_writer_free(&w);

	rec_writer_init(&w, "enc", 1);
	rec_put_str(&w, "much too long");
	len = finish(&w, &d);
	cr_assert_eq(rec_open(&r, d, len, "enc", 1, 1), 0);
	cr_assert_eq(rec_get_str(&r, s, sizeof(s)), RW_ECORRUPT);
	rec_writer_free(&w);

	/* blob whose length claims more than is there */
	rec_writer_init(&w, "enc", 1);
	rec_put_u32(&w, 1000);
	rec_put_u32(&w, 0);
	len = finish(&w, &d);
	cr_assert_eq(rec_open(&r, d, len, "enc", 1, 1), 0);
	cr_assert_eq(rec_get_blob(&r, buf, sizeof(buf), &n), RW_ECORRUPT);
	cr_assert_eq(n, 0);
	rec_writer_free(&w);
}

/* A newer writer appends tagged fields; an older reader skips them. */
Test(record, tagged_extension_skipped_by_older_reader)
{
	struct rec_writer w;
	struct rec_reader r, f;
	const uint8_t *d;
	size_t len;
	uint32_t a, known = 0;
	uint16_t tag;
	int ret, seen = 0;

	/* "new" writer: fixed field, a known tag, an unknown one with nested content */
	rec_writer_init(&w, "ext", 1);
	rec_put_u32(&w, 42);
	rec_put_tagged(&w, 1, "\x05\x00\x00\x00", 4);
	rec_tag_begin(&w, 0x0123);
	rec_put_u64(&w, 99);
	rec_tag_begin(&w, 2);
	rec_put_str(&w, "nested");
	rec_tag_end(&w);
	rec_tag_end(&w);
	rec_put_tagged(&w, 3, NULL, 0);
	len = finish(&w, &d);

	/* "old" reader: knows the fixed field and tag 1 only */
	cr_assert_eq(rec_open(&r, d, len, "ext", 1, 1), 0);
	rec_get_u32(&r, &a);
	while ((ret = rec_next_tag(&r, &tag, &f)) > 0) {
		seen++;
		if (tag == 1)
			rec_get_u32(&f, &known);
		else
			cr_assert_eq(rec_tag_unknown(&r, tag), 0);
	}
	cr_assert_eq(ret, 0);
	cr_assert_eq(rec_expect_end(&r), 0);
	cr_assert_eq(a, 42);
	cr_assert_eq(known, 5);
	cr_assert_eq(seen, 3);
	rec_writer_free(&w);
}

Test(record, critical_tag_refused)
{
	struct rec_writer w;
	struct rec_reader r, f;
	const uint8_t *d;
	size_t len;
	uint16_t tag;

	rec_writer_init(&w, "ext", 1);
	rec_put_tagged(&w, REC_TAG_CRITICAL | 4, "x", 1);
	len = finish(&w, &d);
	cr_assert_eq(rec_open(&r, d, len, "ext", 1, 1), 0);
	cr_assert_eq(rec_next_tag(&r, &tag, &f), 1);
	cr_assert_eq(rec_tag_unknown(&r, tag), RW_EVERSION);
	cr_assert_eq(rec_error(&r), RW_EVERSION);
	rec_writer_free(&w);
}

Test(record, tagged_field_bounds)
{
	struct rec_writer w;
	struct rec_reader r, f;
	const uint8_t *d;
	size_t len;
	uint16_t tag;
	uint32_t v;

	/* a tag whose length runs past the payload */
	rec_writer_init(&w, "tb", 1);
	rec_put_u16(&w, 1);
	rec_put_u32(&w, 100);
	rec_put_u32(&w, 0);
	len = finish(&w, &d);
	cr_assert_eq(rec_open(&r, d, len, "tb", 1, 1), 0);
	cr_assert_eq(rec_next_tag(&r, &tag, &f), RW_ECORRUPT);
	rec_writer_free(&w);

	/* a tag header cut short */
	rec_writer_init(&w, "tb", 1);
	rec_put_u16(&w, 1);
	rec_put_u8(&w, 0);
	len = finish(&w, &d);
	cr_assert_eq(rec_open(&r, d, len, "tb", 1, 1), 0);
	cr_assert_eq(rec_next_tag(&r, &tag, &f), RW_ECORRUPT);
	rec_writer_free(&w);

	/* reading past a field's end fails and the error reaches the parent */
	rec_writer_init(&w, "tb", 1);
	rec_put_tagged(&w, 1, "ab", 2);
	rec_put_u32(&w, 7);
	len = finish(&w, &d);
	cr_assert_eq(rec_open(&r, d, len, "tb", 1, 1), 0);
	cr_assert_eq(rec_next_tag(&r, &tag, &f), 1);
	cr_assert_eq(rec_get_u32(&f, &v), RW_ECORRUPT);
	cr_assert_eq(rec_error(&r), RW_ECORRUPT);
	cr_assert_eq(rec_error_offset(&r), 6, "offset of the field's value");
	rec_writer_free(&w);
}

Test(record, fail_names_field)
{
	struct rec_writer w;
	struct rec_reader r;
	const uint8_t *d;
	size_t len;
	uint8_t v;

	rec_writer_init(&w, "named", 1);
	rec_put_u8(&w, 1);
	rec_put_u8(&w, 200);
	len = finish(&w, &d);
	cr_assert_eq(rec_open(&r, d, len, "named", 1, 1), 0);
	rec_get_u8(&r, &v);
	rec_get_u8(&r, &v);
	cr_assert_eq(rec_fail(&r, RW_ECORRUPT, "count"), RW_ECORRUPT);
	cr_assert_str_eq(rec_error_field(&r), "count");
	cr_assert_eq(rec_error_offset(&r), 2);
	/* the first failure wins */
	cr_assert_eq(rec_fail(&r, RW_EVERSION, "other"), RW_ECORRUPT);
	cr_assert_str_eq(rec_error_field(&r), "count");
	rec_writer_free(&w);
}

Test(record, trailing_bytes)
{
	struct rec_writer w;
	struct rec_reader r;
	const uint8_t *d;
	size_t len;
	uint8_t v;

	rec_writer_init(&w, "trail", 1);
	rec_put_u8(&w, 1);
	rec_put_u8(&w, 2);
	len = finish(&w, &d);
	cr_assert_eq(rec_open(&r, d, len, "trail", 1, 1), 0);
	rec_get_u8(&r, &v);
	cr_assert_eq(rec_expect_end(&r), RW_ECORRUPT);
	cr_assert_str_eq(rec_error_field(&r), "trailing bytes");
	rec_writer_free(&w);
}
