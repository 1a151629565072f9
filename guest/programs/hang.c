/*
 * hang: a fuzz target that hangs when asked to, for a harness's timeouts.
 *
 * After the snapshot, the first byte of each input says what to do:
 *   'u'  spin at CPL3 for ever
 *   'k'  spin in the kernel (CPL0) with interrupts off (RW_SYS_SPIN)
 *   'h'  halt with interrupts off (RW_SYS_HALT)
 * Anything else writes the input's length into `counter` and says done
 * with the length, so a harness can check that the run after a hang is a
 * normal one and that memory came back.
 */
#include <rw/rw.h>

static uint8_t input[256];
volatile uint64_t counter;

int rw_main(const char *args)
{
	(void)args;
	if (rw_snapshot() < 0) {
		rw_print("hang: no reset harness attached\n");
		return 1;
	}
	int64_t n = rw_payload(input, sizeof(input));
	if (n > 0) {
		switch (input[0]) {
		case 'u':
			for (;;)
				counter++;
		case 'k':
			rw_syscall0(RW_SYS_SPIN);
			break;
		case 'h':
			rw_syscall0(RW_SYS_HALT);
			break;
		}
	}
	counter += (uint64_t)(n > 0 ? n : 0);
	rw_done(n);
	return 1;
}
