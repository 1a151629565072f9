/*
 * tlv: the fuzzing example, built with coverage. The parser and its two
 * planted bugs are in tlv_parse.c (format and bugs in tlv_parse.h); this is
 * the guest side of the reset-harness protocol around it, as in fuzzme.c:
 * take the snapshot once, then per input fetch the payload, parse it, and
 * say done with the parser's result (records parsed, or -TLV_E*).
 *
 *   VENDOR record starting "RWND"  rw_report_crash(TLV_BUG_MAGIC = 0x7e)
 *   the FRAG NULL write            a page fault, reported by the SDK kernel
 *
 * Without a harness it parses its built-in sample once and prints what it
 * found and what coverage saw, then exits with 1:
 *   tlv: no reset harness attached
 *   tlv: sample <len> bytes: <records> records, depth <d>, sum <s>, name <name>
 *   tlv: coverage map 0x<gpa> <size> bytes, host answered <errno or 0>, <n> edges
 */
#include <rw/cov.h>
#include <rw/rw.h>

#include "tlv_parse.h"

static uint8_t input[4096];

int rw_main(const char *args)
{
	struct tlv_result res;
	int64_t n;
	int r;

	(void)args;
	if (rw_snapshot() < 0) {
		n = (int64_t)tlv_sample(input, sizeof(input));
		r = tlv_parse(input, (size_t)n, &res);
		rw_print("tlv: no reset harness attached\n");
		rw_printf("tlv: sample %lld bytes: %d records, depth %u, sum %llu, name %s\n",
			  (long long)n, r, res.depth, (unsigned long long)res.sum, res.name);
		rw_printf("tlv: coverage map %p %zu bytes, host answered %lld, %zu edges\n",
			  (void *)rw_cov_map, rw_cov_size(), (long long)rw_cov_status(),
			  rw_cov_count());
		return 1;
	}
	n = rw_payload(input, sizeof(input));
	if (n < 0)
		n = 0;
	rw_done(tlv_parse(input, (size_t)n, &res));
	rw_print("tlv: the harness did not reset\n");
	return 1;
}
