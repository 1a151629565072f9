/*
 * dirtier: writes N distinct pages per round.
 *
 * args: "pages=N rounds=R [snapshot]" (defaults pages=256 rounds=1).
 *
 *   Round r (1-based) writes 8 words into each of the N pages of a buffer,
 *   one every 512 bytes, with values that depend on (r, page, word), so
 *   every page differs from every other page and from its previous round.
 *   After R rounds it prints
 *       dirtier: pages=N rounds=R checksum=0x<16 hex digits>
 *   and exits 0. rounds=0 means forever (nothing is printed).
 *
 *   With "snapshot" it is a reset-harness workload: rw_snapshot() once, then
 *   each iteration dirties the N pages and calls rw_done(0), so the host
 *   resets it to the snapshot every time. Without a harness it says so and
 *   exits 1. "sleep=NS" makes each round or iteration also sleep NS
 *   nanoseconds on the LAPIC timer: it then enters the SDK kernel, takes a
 *   timer interrupt and changes LAPIC state.
 */
#include <rw/rw.h>

static uint64_t mix(uint64_t r, uint64_t page, uint64_t k)
{
	uint64_t x = (r << 40) ^ (page << 8) ^ k;

	x *= RW_CSUM_G;
	x ^= x >> 31;
	return x | 1; /* never zero: the page is really written */
}

static void dirty(uint8_t *buf, uint64_t pages, uint64_t round)
{
	for (uint64_t p = 0; p < pages; p++) {
		uint64_t *pg = (uint64_t *)(buf + p * RW_PAGE_SIZE);

		for (uint64_t k = 0; k < 8; k++)
			pg[k * 64] = mix(round, p, k);
	}
}

int rw_main(const char *args)
{
	uint64_t pages = rw_arg_u64(args, "pages", 256);
	uint64_t rounds = rw_arg_u64(args, "rounds", 1);
	uint64_t sleep = rw_arg_u64(args, "sleep", 0);
	uint8_t *buf;

	if (!pages)
		pages = 1;
	buf = rw_page_alloc(pages);
	if (!buf) {
		rw_printf("dirtier: cannot allocate %llu pages (%llu free)\n",
			  (unsigned long long)pages, (unsigned long long)rw_page_free_count());
		return 1;
	}
	if (rw_arg_has(args, "snapshot")) {
		int64_t r = rw_snapshot();

		if (r < 0) {
			rw_printf("dirtier: no reset harness (snapshot returned %lld)\n", (long long)r);
			return 1;
		}
		for (uint64_t it = 1;; it++) {
			dirty(buf, pages, it);
			if (sleep)
				rw_sleep_ns(sleep);
			r = rw_done(0);
			if (r < 0) {
				rw_printf("dirtier: no reset harness (done returned %lld)\n", (long long)r);
				return 1;
			}
		}
	}
	for (uint64_t r = 1; rounds == 0 || r <= rounds; r++) {
		dirty(buf, pages, r);
		if (sleep)
			rw_sleep_ns(sleep);
	}
	rw_printf("dirtier: pages=%llu rounds=%llu checksum=0x%016llx\n", (unsigned long long)pages,
		  (unsigned long long)rounds,
		  (unsigned long long)rw_checksum(buf, pages * RW_PAGE_SIZE));
	return 0;
}
