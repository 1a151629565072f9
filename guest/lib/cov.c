/*
 * cov.c - the coverage runtime (rw/cov.h): the map, the hooks the
 * compiler's -fsanitize-coverage instrumentation calls, and the map's
 * announcement to the host.
 *
 * Only the program's objects are instrumented; this file never is (librw is
 * built without the flag, and RW_COV_NO_INSTRUMENT says so again), or the
 * hooks would call themselves. It runs at CPL3 only: the CPL0 kernel cannot
 * reach it (check-cpl0.sh rejects a kernel that refers to anything outside
 * itself).
 */
#include "rw/cov.h"

#if RW_COV_MAP_SIZE < RW_COV_MAP_ALIGN || (RW_COV_MAP_SIZE & (RW_COV_MAP_SIZE - 1))
#error "RW_COV_MAP_SIZE must be a power of two of at least one page"
#endif

#define MAP_MASK ((uint32_t)RW_COV_MAP_SIZE - 1)
#define MAP_BITS __builtin_ctz(RW_COV_MAP_SIZE)

/* Whole pages that hold nothing else, so the host can read them by page. */
uint8_t rw_cov_map[RW_COV_MAP_SIZE] __attribute__((aligned(RW_COV_MAP_ALIGN)));

/* trace-pc: hash of the previous block, shifted (one vCPU, see cov.h). */
static uint32_t prev_loc;
/* trace-pc-guard: the next map index to hand out (0 is never handed out). */
static uint32_t next_guard = 1;
/* The host's answer to RW_HC_COVERAGE; 1 = not asked yet. */
static int64_t announced = 1;

/* Count one more hit into a map byte, wrapping 255 -> 1 (AFL++'s NeverZero). */
RW_COV_NO_INSTRUMENT static inline void hit(uint8_t *b)
{
	uint8_t v = (uint8_t)(*b + 1);

	*b = (uint8_t)(v + (v == 0));
}

/*
 * A block's id: Fibonacci hashing of its call site's address, the top
 * MAP_BITS bits of the product, so nearby blocks land far apart.
 */
RW_COV_NO_INSTRUMENT static inline uint32_t pc_hash(uint64_t pc)
{
	return (uint32_t)((pc * 0x9e3779b97f4a7c15ULL) >> (64 - MAP_BITS));
}

RW_COV_NO_INSTRUMENT void __sanitizer_cov_trace_pc(void)
{
	uint32_t cur = pc_hash((uint64_t)(uintptr_t)__builtin_return_address(0));

	hit(&rw_cov_map[cur ^ prev_loc]);
	prev_loc = cur >> 1;
}

/*
 * Every instrumented module's constructor calls this with the image's whole
 * guard section (rw.ld delimits it), so only the first call assigns.
 */
RW_COV_NO_INSTRUMENT void __sanitizer_cov_trace_pc_guard_init(uint32_t *start, uint32_t *stop)
{
	if (start == stop || *start)
		return;
	for (uint32_t *g = start; g < stop; g++) {
		*g = next_guard;
		next_guard = next_guard == MAP_MASK ? 1 : next_guard + 1;
	}
}

RW_COV_NO_INSTRUMENT void __sanitizer_cov_trace_pc_guard(uint32_t *guard)
{
	hit(&rw_cov_map[*guard & MAP_MASK]);
}

RW_COV_NO_INSTRUMENT size_t rw_cov_size(void)
{
	return RW_COV_MAP_SIZE;
}

RW_COV_NO_INSTRUMENT int64_t rw_cov_status(void)
{
	return announced;
}

RW_COV_NO_INSTRUMENT void rw_cov_reset(void)
{
	memset(rw_cov_map, 0, sizeof(rw_cov_map));
	prev_loc = 0;
}

RW_COV_NO_INSTRUMENT size_t rw_cov_count(void)
{
	size_t n = 0;

	for (size_t i = 0; i < sizeof(rw_cov_map); i++)
		n += rw_cov_map[i] != 0;
	return n;
}

RW_COV_NO_INSTRUMENT static void announce(void)
{
	announced = rw_coverage_map(rw_cov_map, sizeof(rw_cov_map));
}

/*
 * Announce at start-up, on vCPU 0 before rw_main(), so a harness knows the
 * map before the program takes its root.
 */
__attribute__((constructor)) RW_COV_NO_INSTRUMENT static void cov_init(void)
{
	if (announced == 1)
		announce();
}

RW_COV_NO_INSTRUMENT void rw_cov_prepare_root(void)
{
	if (announced == 1)
		announce();
	rw_cov_reset();
}
