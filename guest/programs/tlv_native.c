/*
 * tlv_native: the TLV parser of tlv_parse.c built for the host, to compare
 * with the guest image tlv.elf and for native fuzzers (AFL++ style: the
 * input is the file named on the command line, or stdin). The same 4096
 * bytes at most are parsed as in the guest. A planted bug crashes the
 * process (SIGILL from __builtin_trap(), or SIGSEGV from the NULL write).
 *
 *   tlv_native FILE|-      parse; prints "records <r> depth <d> sum <s>
 *                          name <name>" or "error <-code>"; exit 0 or 1
 *   tlv_native --sample    write the built-in well-formed input to stdout
 *                          (a seed)
 */
#include <stdio.h>
#include <string.h>

#include "tlv_parse.h"

int main(int argc, char **argv)
{
	static uint8_t buf[4096];
	struct tlv_result res;
	FILE *f = stdin;
	size_t n;
	int r;

	if (argc > 1 && strcmp(argv[1], "--sample") == 0) {
		n = tlv_sample(buf, sizeof(buf));
		return fwrite(buf, 1, n, stdout) == n ? 0 : 1;
	}
	if (argc > 1 && strcmp(argv[1], "-") != 0) {
		f = fopen(argv[1], "rb");
		if (!f) {
			perror(argv[1]);
			return 2;
		}
	}
	n = fread(buf, 1, sizeof(buf), f);
	if (f != stdin)
		fclose(f);
	r = tlv_parse(buf, n, &res);
	if (r < 0) {
		printf("error %d\n", r);
		return 1;
	}
	printf("records %d depth %u sum %llu name %s\n", r, res.depth,
	       (unsigned long long)res.sum, res.name);
	return 0;
}
