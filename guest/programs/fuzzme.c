/*
 * fuzzme: a small fuzz target, and the shape of one.
 *
 * Reset-harness protocol (rw/rw.h): take the snapshot once, then for every
 * input the harness hands over, run the target on it and say done; the
 * harness resets the VM to the snapshot after each input.
 *
 * The target parses a tiny record format and has two planted bugs:
 *   "BUG!"  reported to the harness with rw_report_crash(0xb06)
 *   "NULL"  dereferences a null pointer: a CPU exception the SDK kernel
 *           reports as a crash
 * Anything else is accepted; the status passed to rw_done() is the number
 * of bytes that parsed.
 */
#include <rw/rw.h>

static uint8_t input[4096];
static uint64_t seen; /* grows with every input: a reset puts it back */

static int target(const uint8_t *buf, int64_t n)
{
	int parsed = 0;

	for (int64_t i = 0; i + 4 <= n; i += 4, parsed += 4) {
		if (buf[i] == 'B' && buf[i + 1] == 'U' && buf[i + 2] == 'G' && buf[i + 3] == '!')
			rw_report_crash(0xb06);
		if (buf[i] == 'N' && buf[i + 1] == 'U' && buf[i + 2] == 'L' && buf[i + 3] == 'L')
			return *(volatile int *)(uintptr_t)(buf[i] - 'N'); /* address 0 */
	}
	return parsed;
}

int rw_main(const char *args)
{
	(void)args;
	if (rw_snapshot() < 0) {
		rw_print("fuzzme: no reset harness attached\n");
		return 1;
	}
	seen++;
	int64_t n = rw_payload(input, sizeof(input));
	if (n < 0)
		n = 0;
	rw_done(target(input, n) + (int)(seen - 1) * 1000);
	rw_print("fuzzme: the harness did not reset\n");
	return 1;
}
