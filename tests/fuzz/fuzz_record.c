/*
 * fuzz_record.c - the record format (base/record.h): rec_open(), the
 * getters and tagged fields, against the writer.
 *
 * The input is one record of any kind and version. Its payload is read as
 * a list of tagged fields whose tags say how to read them, so that the
 * fuzzer drives every getter:
 *
 *   tag & 0x2000   an unknown field: rec_tag_unknown() (skipped, or the
 *                  record refused if the tag is critical)
 *   tag & 0x4000   a nested list of tagged fields
 *   otherwise      scalars until the field ends, all of one type, tag & 7:
 *                  u8 u16 u32 u64 bool blob str bytes, the caps of blob, str
 *                  and bytes from (tag >> 3) & 63
 *   tag & 0x1000   (scalar fields) rec_fail() once the field is read
 *
 * before which come (version & 3) fixed u64 fields. Every field read is put
 * again with the writer; a record read to its end without an error must
 * come out of rec_finish() byte for byte as it went in. Along the way:
 * every get returns the sticky error, outputs are zero after a failure,
 * nothing remains once a reader failed, a field's failure is its parent's,
 * and an error's offset lies inside the payload.
 */
#include <inttypes.h>
#include <string.h>

#include "fuzz_common.h"
#include "record.h"

#define T_UNKNOWN 0x2000u
#define T_NESTED 0x4000u
#define T_FAIL 0x1000u

static size_t payload_len;

/* After a get: the reader's state agrees with what the get returned. */
static void after_get(struct rec_reader *r, int ret)
{
	FUZZ_CHECK(ret == rec_error(r), "get returned %d, sticky error %d", ret, rec_error(r));
	if (ret) {
		FUZZ_CHECK(ret < 0, "error %d", ret);
		FUZZ_CHECK(rec_remaining(r) == 0, "%zu bytes left after an error", rec_remaining(r));
		FUZZ_CHECK(rec_error_offset(r) <= payload_len, "error at %zu of %zu",
			   rec_error_offset(r), payload_len);
	}
}

/* A case of scalar(): op reads a u<bits> (zero after a failure) and puts it. */
#define SCALAR_UINT(op, bits)                                                          \
	case op: {                                                                     \
		uint##bits##_t v;                                                      \
		ret = rec_get_u##bits(r, &v);                                          \
		after_get(r, ret);                                                     \
		FUZZ_CHECK(!ret || v == 0, "u" #bits " %" PRIu64 " after an error",    \
			   (uint64_t)v);                                               \
		rec_put_u##bits(w, v);                                                 \
		break;                                                                 \
	}

/* Read one scalar of type op from r and put it to w. */
static void scalar(struct rec_reader *r, struct rec_writer *w, unsigned op, unsigned cap)
{
	uint8_t buf[64];
	char str[65];
	bool b;
	size_t n;
	int ret;

	switch (op) {
	SCALAR_UINT(0, 8)
	SCALAR_UINT(1, 16)
	SCALAR_UINT(2, 32)
	SCALAR_UINT(3, 64)
	case 4:
		ret = rec_get_bool(r, &b);
		after_get(r, ret);
		FUZZ_CHECK(!ret || !b, "bool true after an error");
		rec_put_bool(w, b);
		break;
	case 5:
		ret = rec_get_blob(r, buf, cap, &n);
		after_get(r, ret);
		FUZZ_CHECK(n <= cap && (!ret || n == 0), "blob of %zu bytes, cap %u, error %d", n,
			   cap, ret);
		rec_put_blob(w, buf, n);
		break;
	case 6:
		ret = rec_get_str(r, str, cap + 1);
		after_get(r, ret);
		FUZZ_CHECK(strlen(str) <= cap && (!ret || !str[0]), "string of %zu bytes, cap %u",
			   strlen(str), cap);
		rec_put_str(w, str);
		break;
	default:
		n = cap ? cap : 1;
		memset(buf, 0xa5, sizeof(buf));
		ret = rec_get_bytes(r, buf, n);
		after_get(r, ret);
		FUZZ_CHECK(!ret || fuzz_is_zero(buf, n), "bytes not zeroed after an error");
		rec_put_bytes(w, buf, n);
		break;
	}
}

#undef SCALAR_UINT

/* Read the tagged fields of r to its end, putting them to w. */
static void fields(struct rec_reader *r, struct rec_writer *w, unsigned depth)
{
	struct rec_reader f;
	uint16_t tag;
	int ret;

	while ((ret = rec_next_tag(r, &tag, &f)) > 0) {
		FUZZ_CHECK(rec_error(r) == 0, "a field was returned from a failed reader");
		if (tag & T_UNKNOWN) {
			ret = rec_tag_unknown(r, tag);
			FUZZ_CHECK(ret == ((tag & REC_TAG_CRITICAL) ? RW_EVERSION : 0),
				   "rec_tag_unknown(0x%x) gave %d", tag, ret);
			if (ret)
				return;
			rec_put_tagged(w, tag, f.in.p, f.in.len);
			continue;
		}
		rec_tag_begin(w, tag);
		if ((tag & T_NESTED) && depth + 1 < REC_TAG_DEPTH) {
			fields(&f, w, depth + 1);
		} else {
			unsigned cap = (tag >> 3) & 63;

			while (rec_remaining(&f) > 0)
				scalar(&f, w, tag & 7, cap);
			if (tag & T_FAIL) {
				int before = rec_error(&f);

				ret = rec_fail(&f, RW_ECORRUPT, "fuzz field");
				FUZZ_CHECK(ret == (before ? before : RW_ECORRUPT), "rec_fail gave %d", ret);
				FUZZ_CHECK(before || rec_error_field(r) != NULL,
					   "rec_fail's name did not reach the parent");
			}
		}
		/* a field's failure is its parent's */
		if (rec_error(&f)) {
			FUZZ_CHECK(rec_error(r) == rec_error(&f), "field error %d, parent %d",
				   rec_error(&f), rec_error(r));
			return;
		}
		ret = rec_expect_end(&f);
		FUZZ_CHECK(ret == 0, "a field read to its end has %d", ret);
		rec_tag_end(w);
	}
	FUZZ_CHECK(ret == 0 || ret == rec_error(r), "rec_next_tag gave %d, error %d", ret,
		   rec_error(r));
}

static void one(const uint8_t *data, size_t size)
{
	struct rec_header h;
	struct rec_reader r;
	struct rec_writer w;
	const uint8_t *out;
	size_t out_len;
	int ret, peek;

	peek = rec_peek(data, size, &h);
	ret = rec_open(&r, data, size, NULL, 0, UINT32_MAX);
	if (ret) {
		FUZZ_CHECK(ret == RW_ECORRUPT || ret == RW_ECHECKSUM, "rec_open gave %d", ret);
		FUZZ_CHECK(rec_error(&r) == ret && rec_remaining(&r) == 0, "a failed open reads");
		return;
	}
	FUZZ_CHECK(peek == 0 && h.length == size - REC_HEADER_SIZE, "opened, but peek says %d",
		   peek);
	FUZZ_CHECK(rec_version(&r) == h.version, "version %u, header %u", rec_version(&r),
		   h.version);
	FUZZ_CHECK(rec_remaining(&r) == h.length, "%zu bytes to read of %u", rec_remaining(&r),
		   h.length);
	/* kind and version ranges */
	{
		struct rec_reader r2;

		if (h.version > 0) {
			ret = rec_open(&r2, data, size, NULL, 0, h.version - 1);
			FUZZ_CHECK(ret == RW_EVERSION, "version above the range gave %d", ret);
		}
		ret = rec_open(&r2, data, size, "no such kind", 0, UINT32_MAX);
		FUZZ_CHECK(ret == (h.kind == rec_kind_id("no such kind") ? 0 : RW_ECORRUPT),
			   "wrong kind gave %d", ret);
	}

	payload_len = h.length;
	rec_writer_init(&w, "", h.version);
	w.kind = h.kind;
	for (unsigned i = 0; i < (h.version & 3); i++)
		scalar(&r, &w, 3, 0);
	fields(&r, &w, 0);
	if (rec_error(&r) == 0) {
		ret = rec_expect_end(&r);
		FUZZ_CHECK(ret == 0, "read to the end, yet %d", ret);
		ret = rec_finish(&w, &out, &out_len);
		FUZZ_CHECK(ret == 0, "rec_finish gave %d", ret);
		FUZZ_CHECK(out_len == size && memcmp(out, data, size) == 0,
			   "the writer made %zu bytes of a %zu-byte record, or other bytes",
			   out_len, size);
	} else {
		ret = rec_error(&r);
		FUZZ_CHECK(ret == RW_ECORRUPT || ret == RW_EVERSION, "read error %d", ret);
		FUZZ_CHECK(rec_expect_end(&r) == ret, "rec_expect_end forgot the error");
	}
	rec_writer_free(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_run_fixed(one, data, size);
	return 0;
}
