/*
 * floor: args "n=N" (default 100000): N RW_HC_VERSION hypercalls from CPL3
 * back to back (N MMIO exits), then exit 0 without printing. A benchmark
 * times the run to get the cost of the cheapest guest-to-host call.
 * Exits 1 if the VMM answers anything but RW_ABI_VERSION.
 */
#include <rw/rw.h>

int rw_main(const char *args)
{
	uint64_t n = rw_arg_u64(args, "n", 100000);
	int64_t bad = 0;

	for (uint64_t i = 0; i < n; i++)
		bad |= rw_hypercall0(RW_HC_VERSION) ^ RW_ABI_VERSION;
	return bad ? 1 : 0;
}
