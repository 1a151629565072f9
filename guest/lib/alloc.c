/*
 * alloc.c - the page allocator over the free RAM described by boot info.
 *
 * Free memory is every RAM range of rw_boot_info.ram[] above free_start
 * (the image, the stacks and the fixed low pages sit below it). Pages are
 * handed out from the front of each range in turn (a bump pointer); freed
 * runs go on an address-sorted list, merged with their neighbours, and are
 * reused first-fit. The list lives in the free pages themselves: the first
 * page of a free run holds its length and the next run.
 */
#include "rw/rw.h"

struct free_run {
	uint64_t npages;
	struct free_run *next;
};

static struct {
	struct rw_spinlock lock;
	int ready;
	unsigned nr, cur;
	uint64_t next[RW_BOOT_MAX_RAM]; /* bump pointer of each range */
	uint64_t end[RW_BOOT_MAX_RAM];
	struct free_run *free;
} pa = { RW_SPINLOCK_INIT, 0, 0, 0, { 0 }, { 0 }, NULL };

static void pa_init(void)
{
	const struct rw_boot_info *bi = rw_boot_info();
	unsigned n = bi->nr_ram < RW_BOOT_MAX_RAM ? bi->nr_ram : RW_BOOT_MAX_RAM;

	for (unsigned i = 0; i < n; i++) {
		uint64_t lo = bi->ram[i].base, hi = bi->ram[i].base + bi->ram[i].size;

		if (lo < bi->free_start)
			lo = bi->free_start;
		lo = (lo + RW_PAGE_SIZE - 1) & ~(RW_PAGE_SIZE - 1);
		hi &= ~(RW_PAGE_SIZE - 1);
		if (lo >= hi)
			continue;
		pa.next[pa.nr] = lo;
		pa.end[pa.nr] = hi;
		pa.nr++;
	}
	pa.ready = 1;
}

/* Insert [addr, addr + npages) into the free list, merging neighbours. */
static void pa_insert(uint64_t addr, uint64_t npages)
{
	struct free_run **pp = &pa.free, *prev = NULL;
	struct free_run *run = (struct free_run *)addr;

	while (*pp && (uint64_t)*pp < addr) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	run->npages = npages;
	run->next = *pp;
	*pp = run;
	if (run->next && addr + npages * RW_PAGE_SIZE == (uint64_t)run->next) {
		run->npages += run->next->npages;
		run->next = run->next->next;
	}
	if (prev && (uint64_t)prev + prev->npages * RW_PAGE_SIZE == addr) {
		prev->npages += run->npages;
		prev->next = run->next;
	}
}

void *rw_page_alloc(size_t npages)
{
	uint64_t bytes = (uint64_t)npages * RW_PAGE_SIZE;
	void *ret = NULL;

	if (!npages || npages > (UINT64_MAX >> 12))
		return NULL;
	rw_spin_lock(&pa.lock);
	if (!pa.ready)
		pa_init();
	for (struct free_run **pp = &pa.free; *pp; pp = &(*pp)->next) {
		struct free_run *run = *pp;

		if (run->npages < npages)
			continue;
		if (run->npages == npages) {
			*pp = run->next;
		} else {
			struct free_run *rest = (struct free_run *)((uint64_t)run + bytes);

			rest->npages = run->npages - npages;
			rest->next = run->next;
			*pp = rest;
		}
		ret = run;
		goto out;
	}
	for (; pa.cur < pa.nr; pa.cur++) {
		if (pa.end[pa.cur] - pa.next[pa.cur] >= bytes) {
			ret = (void *)pa.next[pa.cur];
			pa.next[pa.cur] += bytes;
			goto out;
		}
		/* too small for this request: keep what is left for smaller ones */
		if (pa.end[pa.cur] > pa.next[pa.cur])
			pa_insert(pa.next[pa.cur], (pa.end[pa.cur] - pa.next[pa.cur]) / RW_PAGE_SIZE);
		pa.next[pa.cur] = pa.end[pa.cur];
	}
out:
	rw_spin_unlock(&pa.lock);
	return ret;
}

void rw_page_free(void *p, size_t npages)
{
	if (!p || !npages)
		return;
	rw_spin_lock(&pa.lock);
	pa_insert((uint64_t)p & ~(RW_PAGE_SIZE - 1), npages);
	rw_spin_unlock(&pa.lock);
}

size_t rw_page_free_count(void)
{
	size_t n = 0;

	rw_spin_lock(&pa.lock);
	if (!pa.ready)
		pa_init();
	for (unsigned i = pa.cur; i < pa.nr; i++)
		n += (pa.end[i] - pa.next[i]) / RW_PAGE_SIZE;
	for (struct free_run *r = pa.free; r; r = r->next)
		n += r->npages;
	rw_spin_unlock(&pa.lock);
	return n;
}
