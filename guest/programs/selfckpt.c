/*
 * selfckpt: checkpoints itself, and knows when it was brought back.
 *
 * Prints "selfckpt: state <hash>" for a state it builds in memory, then calls
 * rw_checkpoint("self"):
 *   > 0  "selfckpt: took checkpoint <id>", changes its state and exits 0;
 *   0    (resumed from that checkpoint by a restore or a rollback)
 *        "selfckpt: resumed, state <hash>": the hash must equal the first;
 *   < 0  "selfckpt: no store (<errno>)", exit 1.
 */
#include <rw/rw.h>

#define PAGES 64

int rw_main(const char *args)
{
	uint64_t *state = rw_page_alloc(PAGES);

	(void)args;
	if (!state)
		return 2;
	for (uint64_t i = 0; i < PAGES * RW_PAGE_SIZE / 8; i++)
		state[i] = i * 0x9e3779b97f4a7c15ULL;
	uint64_t h = rw_checksum(state, PAGES * RW_PAGE_SIZE);
	rw_printf("selfckpt: state %016llx\n", (unsigned long long)h);
	int64_t id = rw_checkpoint("self");
	if (id < 0) {
		rw_printf("selfckpt: no store (%lld)\n", (long long)id);
		return 1;
	}
	if (id == 0) {
		rw_printf("selfckpt: resumed, state %016llx\n",
			  (unsigned long long)rw_checksum(state, PAGES * RW_PAGE_SIZE));
		return 0;
	}
	rw_printf("selfckpt: took checkpoint %lld\n", (long long)id);
	for (uint64_t i = 0; i < PAGES * RW_PAGE_SIZE / 8; i++)
		state[i] = ~state[i];
	return 0;
}
