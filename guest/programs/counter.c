/*
 * counter: a long deterministic computation at CPL3.
 *
 * args: "N", "iterations=N" or "n=N" (K/M/G suffixes allowed); default
 * COUNTER_DEFAULT_ITERS, about 1.7 s on the development machines.
 *
 * It keeps a 4 MiB array in memory and walks it in a data-dependent order:
 * each step mixes the array word it lands on into the state and writes the
 * word back changed, so the result depends on every step and on memory
 * contents (a lost or stale page changes it). Prints exactly one line:
 *
 *     counter: checksum=0x<16 hex digits>
 */
#include <rw/rw.h>

#define COUNTER_DEFAULT_ITERS 60000000ULL
#define ARRAY_BYTES (4ULL << 20)
#define WORDS (ARRAY_BYTES / 8)

int rw_main(const char *args)
{
	uint64_t iters = rw_arg_u64(args, "iterations", rw_arg_u64(args, "n", 0));
	uint64_t *a, x = 0x243f6a8885a308d3ULL;

	if (!iters && args[0] >= '0' && args[0] <= '9')
		iters = rw_strtoul(args, NULL, 0);
	if (!iters)
		iters = COUNTER_DEFAULT_ITERS;
	a = rw_page_alloc(ARRAY_BYTES / RW_PAGE_SIZE);
	if (!a) {
		rw_print("counter: not enough memory for the 4 MiB array\n");
		return 1;
	}
	for (uint64_t i = 0; i < WORDS; i++)
		a[i] = i * RW_CSUM_G;
	for (uint64_t n = 0; n < iters; n++) {
		uint64_t *w;

		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		w = &a[(x >> 29) & (WORDS - 1)];
		x ^= *w;
		*w = (*w + x) ^ n;
	}
	rw_printf("counter: checksum=0x%016llx\n",
		  (unsigned long long)(rw_checksum(a, ARRAY_BYTES) ^ x));
	return 0;
}
