/*
 * tlv_parse.h - a small type-length-value parser with two planted bugs: the
 * fuzzing example. The same source builds into the guest image tlv.elf
 * (programs/tlv.c) and natively (programs/tlv_native.c, -DTLV_NATIVE), so a
 * host-side fuzzer can run the very same parser either way. Freestanding:
 * it needs only <stddef.h> and <stdint.h>.
 *
 * An input is a sequence of records:
 *
 *     type (1 byte) | len (1 byte) | value (len bytes)
 *
 *   0x00 PAD     any len; ignored
 *   0x01 INT     len 1..8: a little-endian unsigned integer, added to sum
 *   0x02 NAME    len 1..TLV_NAME_MAX: the name (a later one replaces it)
 *   0x03 NEST    the value is a sequence of records itself, parsed the same
 *                way; at most TLV_MAX_DEPTH levels deep
 *   0x04 CSUM    len 1: the sum, modulo 256, of the bytes of this sequence
 *                before this record
 *   0x05 FRAG    len >= 3: off (1 byte), total (2 bytes, little-endian),
 *                then data: a fragment of a message reassembled in a
 *                TLV_FRAG_MAX-byte buffer. off 0 starts a message of total
 *                bytes (one longer than the buffer is dropped and counted);
 *                a fragment at off > 0 must end within total
 *   0x7e VENDOR  any len: a vendor extension, ignored
 *   0xff END     ends this sequence; what follows it is not parsed
 *
 * A record that does not fit in its sequence, an unknown type or a bad
 * value stops the parse with a negative TLV_E* code.
 *
 * The planted bugs (what a fuzzer should find):
 *   TLV_BUG_MAGIC  a VENDOR record whose value starts with "RWND": the
 *                  parser calls TLV_BUG(TLV_BUG_MAGIC).
 *   NULL write     FRAG stores a message's total before it checks it, so
 *                  after an oversized first fragment has been dropped, a
 *                  fragment at off > 0 passes the bounds check and is
 *                  copied to NULL + off: a page fault (the guest's kernel
 *                  reports it as a crash; natively SIGSEGV).
 */
#ifndef TLV_PARSE_H
#define TLV_PARSE_H

#include <stddef.h>
#include <stdint.h>

/*
 * TLV_BUG(code): what the parser does when it hits a planted bug. The guest
 * reports it to the fuzzing harness (which resets the VM; without a harness
 * rw_report_crash() returns and the parse goes on); a native build must
 * really crash, for a native fuzzer to see it. Define TLV_BUG (-D, when
 * compiling tlv_parse.c) to do something else.
 */
#ifndef TLV_BUG
#ifdef TLV_NATIVE
#define TLV_BUG(code) __builtin_trap()
#else
#include <rw/rw.h>
#define TLV_BUG(code) ((void)rw_report_crash(code))
#endif
#endif

enum tlv_type {
	TLV_PAD = 0x00,
	TLV_INT = 0x01,
	TLV_NAME = 0x02,
	TLV_NEST = 0x03,
	TLV_CSUM = 0x04,
	TLV_FRAG = 0x05,
	TLV_VENDOR = 0x7e,
	TLV_END = 0xff,
};

enum tlv_error {
	TLV_ETRUNC = 1, /* a record runs past the end of its sequence */
	TLV_ETYPE,      /* unknown record type */
	TLV_EINVAL,     /* a length the type does not allow */
	TLV_EDEPTH,     /* NEST deeper than TLV_MAX_DEPTH */
	TLV_ECSUM,      /* CSUM does not match */
	TLV_ERANGE,     /* a fragment outside its message */
};

#define TLV_BUG_MAGIC 0x7e
#define TLV_NAME_MAX 32
#define TLV_MAX_DEPTH 4
#define TLV_FRAG_MAX 512

struct tlv_result {
	unsigned records;        /* records parsed, at every depth */
	unsigned depth;          /* deepest NEST level reached */
	uint64_t sum;            /* of the INT records */
	char name[TLV_NAME_MAX + 1];
	unsigned checksums;      /* CSUM records that matched */
	unsigned frag_bytes;     /* fragment bytes stored */
	unsigned dropped;        /* oversized messages dropped */
	unsigned vendor;         /* VENDOR records */
	unsigned vendor_tag[8];  /* per nibble of "RWND": tags that matched up
				    to it (high nibble of byte 0 first) */
};

/*
 * Parse len bytes at buf into *res (cleared first). Returns the number of
 * records parsed (>= 0), or -TLV_E* at the first bad record.
 */
int tlv_parse(const uint8_t *buf, size_t len, struct tlv_result *res);

/*
 * Write a well-formed input that uses every record type (a seed for a
 * fuzzer) into buf; returns its length, or 0 if cap is too small.
 */
size_t tlv_sample(uint8_t *buf, size_t cap);

#endif
