/*
 * tlv_parse.c - the TLV parser of tlv_parse.h, bugs included. Shared by the
 * guest image (programs/tlv.c) and the native build (programs/tlv_native.c):
 * keep it freestanding.
 */
#include "tlv_parse.h"

struct tlv_state {
	struct tlv_result *res;
	uint8_t *frag_buf;   /* the message being reassembled; NULL before one */
	uint32_t frag_total; /* its length */
	uint8_t pool[TLV_FRAG_MAX];
};

/*
 * Copies go through memcpy (librw's in the guest, libc's natively), which
 * is not instrumented: how long a copy was does not show up as loop counts
 * in the coverage map, so a fuzzer keeps fewer inputs that differ only in
 * a length.
 */
static void copy(uint8_t *dst, const uint8_t *src, size_t n)
{
	__builtin_memcpy(dst, src, n);
}

/*
 * One byte of a tag, compared the way laf-intel and CompCov split compares
 * for fuzzers: the high nibble first, then the whole byte, each match
 * counted on its own. Every nibble that matches is a new edge for a
 * coverage-guided fuzzer (a 1 in 16 guess), while the whole tag stays a
 * 1 in 2^32 guess without coverage. The counts also keep the compiler from
 * folding the compares into one.
 */
static int tag_byte(struct tlv_result *res, unsigned i, uint8_t b, uint8_t c)
{
	if (b >> 4 != c >> 4)
		return 0;
	res->vendor_tag[2 * i]++;
	if (b != c)
		return 0;
	res->vendor_tag[2 * i + 1]++;
	return 1;
}

/* A vendor record: ignored, unless its value starts with the planted tag. */
static void vendor(struct tlv_state *st, const uint8_t *v, size_t n)
{
	struct tlv_result *res = st->res;

	res->vendor++;
	if (n < 4)
		return;
	if (tag_byte(res, 0, v[0], 'R') && tag_byte(res, 1, v[1], 'W') &&
	    tag_byte(res, 2, v[2], 'N') && tag_byte(res, 3, v[3], 'D'))
		TLV_BUG(TLV_BUG_MAGIC); /* planted bug 1 */
}

static int frag(struct tlv_state *st, const uint8_t *v, size_t n)
{
	unsigned off, total;
	size_t dlen;

	if (n < 3)
		return -TLV_EINVAL;
	off = v[0];
	total = v[1] | (unsigned)v[2] << 8;
	dlen = n - 3;
	if (off == 0) {
		/*
		 * Planted bug 2: the total is kept before it is checked. After
		 * an oversized first fragment is dropped, frag_total is large
		 * while frag_buf may still be NULL, so the check below lets a
		 * later fragment through to NULL + off.
		 */
		st->frag_total = total;
		if (total > sizeof(st->pool)) {
			st->res->dropped++;
			return 0;
		}
		if (dlen > total)
			return -TLV_ERANGE;
		st->frag_buf = st->pool;
	} else if (off + dlen > st->frag_total) {
		return -TLV_ERANGE;
	}
	copy(st->frag_buf + off, v + 3, dlen);
	st->res->frag_bytes += (unsigned)dlen;
	return 0;
}

static int parse_seq(struct tlv_state *st, const uint8_t *buf, size_t len, unsigned depth)
{
	struct tlv_result *res = st->res;
	size_t pos = 0;

	if (depth > res->depth)
		res->depth = depth;
	while (pos < len) {
		const uint8_t *v;
		unsigned type, n;
		int err = 0;

		if (len - pos < 2)
			return -TLV_ETRUNC;
		type = buf[pos];
		n = buf[pos + 1];
		if (len - pos - 2 < n)
			return -TLV_ETRUNC;
		v = buf + pos + 2;

		switch (type) {
		case TLV_PAD:
			break;
		case TLV_INT: {
			uint64_t x = 0;

			if (n < 1 || n > 8)
				return -TLV_EINVAL;
			for (unsigned i = n; i-- > 0;)
				x = x << 8 | v[i];
			res->sum += x;
			break;
		}
		case TLV_NAME:
			if (n < 1 || n > TLV_NAME_MAX)
				return -TLV_EINVAL;
			copy((uint8_t *)res->name, v, n);
			res->name[n] = 0;
			break;
		case TLV_NEST:
			if (depth == TLV_MAX_DEPTH)
				return -TLV_EDEPTH;
			err = parse_seq(st, v, n, depth + 1);
			break;
		case TLV_CSUM: {
			uint8_t sum = 0;

			if (n != 1)
				return -TLV_EINVAL;
			for (size_t i = 0; i < pos; i++)
				sum = (uint8_t)(sum + buf[i]);
			if (sum != v[0])
				return -TLV_ECSUM;
			res->checksums++;
			break;
		}
		case TLV_FRAG:
			err = frag(st, v, n);
			break;
		case TLV_VENDOR:
			vendor(st, v, n);
			break;
		case TLV_END:
			res->records++;
			return 0;
		default:
			return -TLV_ETYPE;
		}
		if (err < 0)
			return err;
		res->records++;
		pos += 2 + n;
	}
	return 0;
}

int tlv_parse(const uint8_t *buf, size_t len, struct tlv_result *res)
{
	struct tlv_state st;
	int err;

	__builtin_memset(res, 0, sizeof(*res));
	st.res = res;
	st.frag_buf = NULL;
	st.frag_total = 0;
	err = parse_seq(&st, buf, len, 0);
	return err < 0 ? err : (int)res->records;
}

size_t tlv_sample(uint8_t *buf, size_t cap)
{
	static const uint8_t body[] = {
		TLV_NAME, 5, 's', 'e', 'e', 'd', 's',
		TLV_INT, 4, 0x2a, 0, 0, 0,
		TLV_NEST, 13,
			TLV_INT, 1, 7,
			TLV_FRAG, 8, 0, 5, 0, 'h', 'e', 'l', 'l', 'o',
		TLV_PAD, 2, 0, 0,
		TLV_VENDOR, 4, 'A', 'C', 'M', 'E',
	};
	uint8_t sum = 0;
	size_t n = sizeof(body);

	if (cap < n + 5)
		return 0;
	copy(buf, body, n);
	for (size_t i = 0; i < n; i++)
		sum = (uint8_t)(sum + buf[i]);
	buf[n++] = TLV_CSUM;
	buf[n++] = 1;
	buf[n++] = sum;
	buf[n++] = TLV_END;
	buf[n++] = 0;
	return n;
}
