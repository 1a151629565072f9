#include "dirty.h"

#include <errno.h>
#include <stdio.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "vcpu.h"
#include "vm.h"

/*
 * Ring size. KVM stops a vCPU with KVM_EXIT_DIRTY_RING_FULL when a ring
 * reaches its soft limit, but an instruction in flight may push past it. On
 * a host that emulates guest CPL0 code in batches (PVM emulates up to 1024
 * instructions per entry, and one `rep stos` can dirty hundreds of pages) a
 * small ring overflows and loses entries. 65536 entries (1 MiB per vCPU,
 * the largest ring KVM offers here) leave room for a whole batch of
 * page-crossing string instructions; the tests dirty thousands of pages
 * from emulated CPL0 code and check that none is lost.
 */

#define WORD_BITS 64

struct dirty_tracker {
	struct vm *vm;
	bool ring;
	uint64_t npages;
	uint64_t nwords;
	uint64_t *bits[DIRTY_NR_EPOCHS]; /* atomically updated */
	uint64_t *scratch;               /* bitmap mode: one slot's log */
	uint64_t *hot;                   /* bitmap mode: never re-protected */
	uint64_t nhot;
	unsigned empty_full_exits;       /* ring-full exits in a row with nothing to harvest */
};

/* After this many ring-full exits with an empty ring the ring has overflowed. */
#define RING_STUCK_EXITS 10000

/* ---------------------------------------------------------------- marking */

static void mark_range(struct dirty_tracker *t, enum dirty_epoch skip, uint64_t first, uint64_t n)
{
	if (first >= t->npages)
		return;
	if (n > t->npages - first)
		n = t->npages - first;
	for (uint64_t p = first; p < first + n; p++)
		for (int e = 0; e < DIRTY_NR_EPOCHS; e++)
			if ((int)skip != e)
				__atomic_fetch_or(&t->bits[e][p / WORD_BITS], 1ULL << (p % WORD_BITS),
						  __ATOMIC_RELAXED);
}

static void mem_hook(void *opaque, uint64_t first, uint64_t n)
{
	mark_range(opaque, DIRTY_NR_EPOCHS, first, n);
}

static void mark_word(struct dirty_tracker *t, uint64_t word, uint64_t mask)
{
	for (int e = 0; e < DIRTY_NR_EPOCHS; e++)
		__atomic_fetch_or(&t->bits[e][word], mask, __ATOMIC_RELAXED);
}

void dirty_note_restored(struct dirty_tracker *t, enum dirty_epoch restored, uint64_t first,
			 uint64_t n)
{
	mark_range(t, restored, first, n);
}

/* RAM page offset of a (slot, guest frame offset in slot) pair. */
static bool slot_page(struct dirty_tracker *t, uint32_t slot, uint64_t offset, uint64_t *page)
{
	const struct guest_mem *m = &t->vm->mem;

	for (unsigned i = 0; i < m->nr_slots; i++) {
		if (m->slots[i].id == slot && offset < m->slots[i].size / RW_PAGE_SIZE) {
			*page = m->slots[i].offset / RW_PAGE_SIZE + offset;
			return true;
		}
	}
	return false;
}

/* ---------------------------------------------------------------- harvest */

static uint64_t ring_collect(struct dirty_tracker *t, struct vcpu *v)
{
	uint32_t n = t->vm->cfg.dirty_ring_entries;
	uint64_t got = 0;

	for (;;) {
		struct kvm_dirty_gfn *g = &v->ring[v->ring_fetch & (n - 1)];
		uint32_t flags = __atomic_load_n(&g->flags, __ATOMIC_ACQUIRE);
		uint64_t page;

		if (!(flags & KVM_DIRTY_GFN_F_DIRTY))
			break;
		if (slot_page(t, g->slot, g->offset, &page))
			mark_word(t, page / WORD_BITS, 1ULL << (page % WORD_BITS));
		__atomic_store_n(&g->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
		v->ring_fetch++;
		got++;
	}
	return got;
}

int dirty_harvest_vcpu(struct dirty_tracker *t, struct vcpu *v)
{
	uint64_t got;

	if (!t->ring || !v->ring)
		return 0;
	got = ring_collect(t, v);
	if (got && ioctl(t->vm->fd, KVM_RESET_DIRTY_RINGS, 0) < 0)
		return -errno;
	return got > INT32_MAX ? INT32_MAX : (int)got;
}

static int bitmap_harvest(struct dirty_tracker *t)
{
	const struct guest_mem *m = &t->vm->mem;

	for (unsigned i = 0; i < m->nr_slots; i++) {
		const struct mem_slot *s = &m->slots[i];
		uint64_t pages = s->size / RW_PAGE_SIZE, words = (pages + 63) / 64;
		uint64_t base = s->offset / RW_PAGE_SIZE;
		struct kvm_dirty_log log = { .slot = s->id, .dirty_bitmap = t->scratch };
		bool any = false;

		if (ioctl(t->vm->fd, KVM_GET_DIRTY_LOG, &log))
			return -errno;
		for (uint64_t w = 0; w < words; w++) {
			uint64_t bits = t->scratch[w];
			if (!bits)
				continue;
			any = true;
			if (base % 64 == 0) {
				mark_word(t, base / 64 + w, bits);
			} else {
				for (; bits; bits &= bits - 1) {
					uint64_t p = base + w * 64 + (uint64_t)__builtin_ctzll(bits);
					mark_word(t, p / 64, 1ULL << (p % 64));
				}
			}
		}
		/* re-protect what was harvested, except the hot set */
		any = false;
		for (uint64_t w = 0; w < words; w++) {
			uint64_t p0 = base + w * 64;
			uint64_t hot = 0;
			if (p0 % 64 == 0) {
				hot = t->hot[p0 / 64];
			} else {
				for (unsigned b = 0; b < 64; b++) {
					uint64_t p = p0 + b;
					if ((t->hot[p / 64] >> (p % 64)) & 1)
						hot |= 1ULL << b;
				}
			}
			t->scratch[w] &= ~hot;
			if (t->scratch[w])
				any = true;
		}
		if (!any)
			continue;
		struct kvm_clear_dirty_log clr = {
			.slot = s->id, .first_page = 0, .num_pages = (uint32_t)pages,
			.dirty_bitmap = t->scratch,
		};
		if (ioctl(t->vm->fd, KVM_CLEAR_DIRTY_LOG, &clr))
			return -errno;
	}
	return 0;
}

int dirty_harvest(struct dirty_tracker *t)
{
	bool any = false;

	if (!t->ring)
		return bitmap_harvest(t);
	for (unsigned i = 0; i < t->vm->ncpus; i++)
		if (ring_collect(t, t->vm->vcpus[i]))
			any = true;
	if (any && ioctl(t->vm->fd, KVM_RESET_DIRTY_RINGS, 0) < 0)
		return -errno;
	return 0;
}

/*
 * A ring-full exit with nothing to harvest means KVM pushed past the ring's
 * end (entries were lost) and the vCPU will only exit again: stop the VM
 * with the reason instead of spinning.
 */
static void ring_full(void *opaque, struct vcpu *v)
{
	struct dirty_tracker *t = opaque;
	int got = dirty_harvest_vcpu(t, v);

	if (got < 0) {
		rw_error("vCPU %u: harvesting a full dirty ring: %s", v->index, rw_strerror(got));
	} else if (got > 0) {
		__atomic_store_n(&t->empty_full_exits, 0, __ATOMIC_RELAXED);
	} else if (__atomic_add_fetch(&t->empty_full_exits, 1, __ATOMIC_RELAXED) == RING_STUCK_EXITS) {
		struct vm_stop_info why = { .reason = VM_STOP_FATAL, .vcpu = v->index,
					    .kvm_exit = KVM_EXIT_DIRTY_RING_FULL };
		snprintf(why.msg, sizeof(why.msg),
			 "vCPU %u: the dirty ring overflowed (KVM_EXIT_DIRTY_RING_FULL with an empty "
			 "ring): guest code wrote more pages between exits than the ring holds, "
			 "which emulated CPL0 code can do; run with --dirty-log bitmap", v->index);
		vm_request_stop(t->vm, &why);
	}
}

/* ----------------------------------------------------------------- epochs */

int64_t dirty_take(struct dirty_tracker *t, enum dirty_epoch e, uint64_t **pages)
{
	uint64_t *b = t->bits[e], n = 0, cap = 0, *out = NULL;

	for (uint64_t w = 0; w < t->nwords; w++) {
		uint64_t bits = __atomic_exchange_n(&b[w], 0, __ATOMIC_RELAXED);

		for (; bits; bits &= bits - 1) {
			if (n == cap) {
				uint64_t *p;
				cap = cap ? cap * 2 : 1024;
				p = realloc(out, cap * sizeof(*out));
				if (!p) {
					/* put back what was taken, including this word */
					__atomic_fetch_or(&b[w], bits, __ATOMIC_RELAXED);
					dirty_give_back(t, e, out, n);
					free(out);
					return -ENOMEM;
				}
				out = p;
			}
			out[n++] = w * WORD_BITS + (uint64_t)__builtin_ctzll(bits);
		}
	}
	*pages = out;
	return (int64_t)n;
}

uint64_t dirty_take_into(struct dirty_tracker *t, enum dirty_epoch e, uint64_t *pages, uint64_t cap)
{
	uint64_t *b = t->bits[e], n = 0;

	for (uint64_t w = 0; w < t->nwords; w++) {
		if (!__atomic_load_n(&b[w], __ATOMIC_RELAXED))
			continue;
		uint64_t bits = __atomic_exchange_n(&b[w], 0, __ATOMIC_RELAXED);
		for (; bits; bits &= bits - 1) {
			if (n == cap) {
				__atomic_fetch_or(&b[w], bits, __ATOMIC_RELAXED);
				return n;
			}
			pages[n++] = w * WORD_BITS + (uint64_t)__builtin_ctzll(bits);
		}
	}
	return n;
}

void dirty_give_back(struct dirty_tracker *t, enum dirty_epoch e, const uint64_t *pages, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (pages[i] < t->npages)
			__atomic_fetch_or(&t->bits[e][pages[i] / WORD_BITS], 1ULL << (pages[i] % WORD_BITS),
					  __ATOMIC_RELAXED);
}

void dirty_mark_all(struct dirty_tracker *t, enum dirty_epoch e)
{
	for (uint64_t w = 0; w < t->nwords; w++) {
		uint64_t left = t->npages - w * WORD_BITS;
		__atomic_store_n(&t->bits[e][w], left >= 64 ? ~0ULL : (1ULL << left) - 1, __ATOMIC_RELAXED);
	}
}

void dirty_clear(struct dirty_tracker *t, enum dirty_epoch e)
{
	for (uint64_t w = 0; w < t->nwords; w++)
		__atomic_store_n(&t->bits[e][w], 0, __ATOMIC_RELAXED);
}

uint64_t dirty_count(struct dirty_tracker *t, enum dirty_epoch e)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < t->nwords; w++)
		n += (uint64_t)__builtin_popcountll(__atomic_load_n(&t->bits[e][w], __ATOMIC_RELAXED));
	return n;
}

bool dirty_test(struct dirty_tracker *t, enum dirty_epoch e, uint64_t page)
{
	if (page >= t->npages)
		return false;
	return (__atomic_load_n(&t->bits[e][page / WORD_BITS], __ATOMIC_RELAXED) >>
		(page % WORD_BITS)) & 1;
}

bool dirty_set_hot(struct dirty_tracker *t, uint64_t page, bool hot)
{
	uint64_t bit = 1ULL << (page % 64), *w;

	if (t->ring || page >= t->npages)
		return false;
	w = &t->hot[page / 64];
	if (hot && !(*w & bit)) {
		*w |= bit;
		t->nhot++;
	} else if (!hot && (*w & bit)) {
		*w &= ~bit;
		t->nhot--;
		/* KVM still has it writable: mark it so the next harvest re-arms it */
		mark_word(t, page / 64, bit);
	}
	return true;
}

bool dirty_is_hot(const struct dirty_tracker *t, uint64_t page)
{
	return !t->ring && page < t->npages && ((t->hot[page / 64] >> (page % 64)) & 1);
}

void dirty_clear_hot(struct dirty_tracker *t)
{
	if (t->ring)
		return;
	for (uint64_t w = 0; w < t->nwords; w++) {
		if (t->hot[w])
			mark_word(t, w, t->hot[w]);
		t->hot[w] = 0;
	}
	t->nhot = 0;
}

uint64_t dirty_hot_count(const struct dirty_tracker *t)
{
	return t->nhot;
}

uint64_t dirty_npages(const struct dirty_tracker *t)
{
	return t->npages;
}

bool dirty_uses_ring(const struct dirty_tracker *t)
{
	return t->ring;
}

/* ------------------------------------------------------------ start, stop */

/*
 * Pages that hold data: guest RAM is a memfd, and pages never written are
 * holes in it, so SEEK_DATA/SEEK_HOLE skip them without reading.
 */
static void mark_data_pages(struct dirty_tracker *t)
{
	int fd = t->vm->mem.memfd;
	off_t end = (off_t)t->vm->mem.size, pos = 0;

	while (pos < end) {
		off_t data = lseek(fd, pos, SEEK_DATA), hole;
		if (data < 0)
			break;
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0 || hole > end)
			hole = end;
		uint64_t first = (uint64_t)data / RW_PAGE_SIZE;
		uint64_t last = ((uint64_t)hole + RW_PAGE_SIZE - 1) / RW_PAGE_SIZE;
		for (uint64_t p = first; p < last && p < t->npages; p++)
			t->bits[DIRTY_CKPT][p / 64] |= 1ULL << (p % 64);
		pos = hole;
	}
}

int dirty_start(struct vm *vm, bool ring, struct dirty_tracker **out)
{
	struct dirty_tracker *t;
	int ret = -ENOMEM;

	if (ring && !vm->cfg.dirty_ring_entries)
		return -EINVAL;
	if (!ring && !vm->kvm.manual_protect) {
		rw_error("KVM lacks KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 (needed for --dirty-log bitmap)");
		return RW_ENOKVMCAP;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->vm = vm;
	t->ring = ring;
	t->npages = vm->mem.size / RW_PAGE_SIZE;
	t->nwords = (t->npages + WORD_BITS - 1) / WORD_BITS;
	for (int e = 0; e < DIRTY_NR_EPOCHS; e++) {
		t->bits[e] = calloc(t->nwords, sizeof(uint64_t));
		if (!t->bits[e])
			goto fail;
	}
	if (!ring) {
		struct kvm_enable_cap cap = { .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 };

		/* the largest slot's bitmap */
		t->scratch = calloc(t->nwords + 1, sizeof(uint64_t));
		t->hot = calloc(t->nwords, sizeof(uint64_t));
		if (!t->scratch || !t->hot)
			goto fail;
		cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
		if (ioctl(vm->fd, KVM_ENABLE_CAP, &cap)) {
			ret = -errno;
			goto fail;
		}
	}
	mark_data_pages(t);
	vm->mem.dirty = (struct mem_dirty_hook){ .mark = mem_hook, .opaque = t };
	vm->hooks.dirty_ring_full = ring_full;
	vm->hooks.dirty_opaque = t;
	ret = mem_set_slot_flags(&vm->mem, vm->fd, KVM_MEM_LOG_DIRTY_PAGES);
	if (ret) {
		vm->mem.dirty = (struct mem_dirty_hook){ 0 };
		vm->hooks.dirty_ring_full = NULL;
		goto fail;
	}
	*out = t;
	return 0;

fail:
	for (int e = 0; e < DIRTY_NR_EPOCHS; e++)
		free(t->bits[e]);
	free(t->scratch);
	free(t->hot);
	free(t);
	return ret;
}

void dirty_stop(struct dirty_tracker *t)
{
	if (!t)
		return;
	t->vm->mem.dirty = (struct mem_dirty_hook){ 0 };
	t->vm->hooks.dirty_ring_full = NULL;
	if (mem_set_slot_flags(&t->vm->mem, t->vm->fd, 0))
		rw_warn("turning dirty logging off failed");
	for (int e = 0; e < DIRTY_NR_EPOCHS; e++)
		free(t->bits[e]);
	free(t->scratch);
	free(t->hot);
	free(t);
}
