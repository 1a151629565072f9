/*
 * tlv_afl.c - the fuzzing example's parser (guest/programs/tlv_parse.c) as
 * a native AFL++ target, for rewind-bench fuzz to compare rewind against:
 *
 *   -DTLV_AFL_PERSISTENT  AFL++'s persistent mode: the input arrives in
 *                         shared memory and one process parses inputs in a
 *                         loop (__AFL_LOOP), the fastest native setting;
 *   otherwise             the plain forkserver: one fork per input, the
 *                         input read from the file named on the command line.
 *
 * Built with afl-clang-fast (or afl-cc) and -DTLV_NATIVE, so that a planted
 * bug really crashes. Inputs are cut at 4096 bytes, as in the guest.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tlv_parse.h"

#define TLV_AFL_MAX 4096

#ifdef TLV_AFL_PERSISTENT
__AFL_FUZZ_INIT();

int main(void)
{
	struct tlv_result res;

	__AFL_INIT();
	const unsigned char *buf = __AFL_FUZZ_TESTCASE_BUF;
	while (__AFL_LOOP(1000000)) {
		size_t n = (size_t)__AFL_FUZZ_TESTCASE_LEN;
		(void)tlv_parse(buf, n < TLV_AFL_MAX ? n : TLV_AFL_MAX, &res);
	}
	return 0;
}
#else
int main(int argc, char **argv)
{
	static unsigned char buf[TLV_AFL_MAX];
	struct tlv_result res;
	FILE *f = argc > 1 ? fopen(argv[1], "rb") : stdin;

	if (!f)
		return 2;
	size_t n = fread(buf, 1, sizeof(buf), f);
	if (f != stdin)
		fclose(f);
	return tlv_parse(buf, n, &res) < 0;
}
#endif
