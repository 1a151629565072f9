/*
 * state_codec.c - the helpers the record codecs of state.h share
 * (state_codec.h).
 */
#include "state_codec.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "err.h"

/* ---------------------------------------------------------------- refusals */

void state_why_init(struct why *w, char *buf, size_t len, const char *key)
{
	w->buf = buf;
	w->len = buf ? len : 0;
	w->key = key;
	if (w->len)
		w->buf[0] = '\0';
}

int state_refuse(struct why *w, int err, const char *fmt, ...)
{
	char text[256];
	va_list ap;

	if (w->len) {
		va_start(ap, fmt);
		vsnprintf(text, sizeof(text), fmt, ap);
		va_end(ap);
		snprintf(w->buf, w->len, "%s: %s", w->key, text);
	}
	return err;
}

int state_refuse_reader(struct why *w, const struct rec_reader *r, const char *part)
{
	int err = rec_error(r) ? rec_error(r) : RW_ECORRUPT;
	const char *field = rec_error_field(r);

	if (field)
		return state_refuse(w, err, "%s: %s", field, rw_strerror(err));
	return state_refuse(w, err, "%s: truncated or malformed at payload offset %zu (%s)", part,
		      rec_error_offset(r), rw_strerror(err));
}

int state_open_record(struct rec_reader *r, const void *buf, size_t len, const char *kind,
		uint32_t min_version, uint32_t max_version, struct why *w)
{
	struct rec_header h;
	int ret = rec_open(r, buf, len, kind, min_version, max_version);

	if (!ret)
		return 0;
	if (rec_peek(buf, len, &h))
		return state_refuse(w, ret, "header: not a record (%zu bytes, bad magic or too short)", len);
	switch (ret) {
	case RW_ECHECKSUM:
		return state_refuse(w, ret, "header: checksum mismatch");
	case RW_EVERSION:
		return state_refuse(w, ret, "header: version %u, this build reads %u..%u", h.version,
			      min_version, max_version);
	case RW_ECORRUPT:
		if (h.length > REC_PAYLOAD_MAX || h.length != len - REC_HEADER_SIZE)
			return state_refuse(w, ret, "header: length %u, but %zu payload bytes present",
				      h.length, len - REC_HEADER_SIZE);
		return state_refuse(w, ret, "header: not a \"%s\" record", kind);
	default:
		return state_refuse(w, ret, "header: %s", rw_strerror(ret));
	}
}

int state_skip_tags(struct rec_reader *r)
{
	struct rec_reader field;
	uint16_t tag;
	int ret;

	while ((ret = rec_next_tag(r, &tag, &field)) > 0)
		if (rec_tag_unknown(r, tag))
			return rec_error(r);
	if (ret < 0)
		return ret;
	return rec_expect_end(r);
}

/* ------------------------------------------------------------ field tables */

void state_put_fields(struct rec_writer *w, const void *base, const struct field *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = (const uint8_t *)base + f[i].off;
		uint16_t v16;
		uint32_t v32;
		uint64_t v64;

		switch (f[i].size) {
		case 1:
			rec_put_u8(w, *p);
			break;
		case 2:
			memcpy(&v16, p, sizeof(v16));
			rec_put_u16(w, v16);
			break;
		case 4:
			memcpy(&v32, p, sizeof(v32));
			rec_put_u32(w, v32);
			break;
		case 8:
			memcpy(&v64, p, sizeof(v64));
			rec_put_u64(w, v64);
			break;
		}
	}
}

void state_get_fields(struct rec_reader *r, void *base, const struct field *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t *p = (uint8_t *)base + f[i].off;
		uint16_t v16;
		uint32_t v32;
		uint64_t v64;

		switch (f[i].size) {
		case 1:
			rec_get_u8(r, p);
			break;
		case 2:
			rec_get_u16(r, &v16);
			memcpy(p, &v16, sizeof(v16));
			break;
		case 4:
			rec_get_u32(r, &v32);
			memcpy(p, &v32, sizeof(v32));
			break;
		case 8:
			rec_get_u64(r, &v64);
			memcpy(p, &v64, sizeof(v64));
			break;
		}
	}
}
