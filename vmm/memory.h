/*
 * memory.h - guest RAM.
 *
 * Guest RAM is one memfd mapped MAP_SHARED into the VMM. Below 3 GiB it is
 * one KVM memory slot at guest-physical 0; RAM beyond 3 GiB continues at
 * 4 GiB in a second slot (the 32-bit PCI hole is [3 GiB, 4 GiB)). The memfd
 * offset of a page equals its index in the "RAM offset" space: slot 0 covers
 * offsets [0, low), slot 1 covers [low, size).
 *
 * Every write the VMM makes into guest memory (loading the image, device
 * emulation, host writes requested by the guest) goes through mem_write() or
 * is followed by mem_mark_dirty(), so that dirty tracking sees it: KVM only
 * logs the guest's own writes.
 */
#ifndef RW_VMM_MEMORY_H
#define RW_VMM_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define RW_MEM_MIN (16ULL << 20)
#define RW_MEM_MAX (64ULL << 30)

struct mem_slot {
	uint32_t id;       /* KVM slot number */
	uint64_t gpa;      /* guest-physical base */
	uint64_t size;
	uint64_t offset;   /* offset in the memfd and in host mapping */
};

/*
 * Observer for VMM-side writes (the dirty tracker installs one). Called with
 * the RAM-offset page range written. May be called from any thread.
 */
struct mem_dirty_hook {
	void (*mark)(void *opaque, uint64_t first_page, uint64_t npages);
	void *opaque;
};

struct guest_mem {
	int memfd;
	uint8_t *hva;       /* host mapping of the whole memfd */
	uint64_t size;      /* bytes of RAM */
	unsigned nr_slots;
	struct mem_slot slots[2];
	struct mem_dirty_hook dirty;
};

/*
 * Create guest RAM of size bytes (RW_MEM_MIN..RW_MEM_MAX, a multiple of
 * 2 MiB) and register its slots with the VM fd. flags go to every slot
 * (KVM_MEM_LOG_DIRTY_PAGES). Returns 0, -EINVAL (size), -ENOMEM, -errno.
 */
int mem_init(struct guest_mem *mem, int vm_fd, uint64_t size, uint32_t slot_flags) RW_MUST_CHECK;
/* Re-register the slots with new flags (turning dirty logging on or off). */
int mem_set_slot_flags(struct guest_mem *mem, int vm_fd, uint32_t slot_flags) RW_MUST_CHECK;
void mem_free(struct guest_mem *mem);

/*
 * Translate [gpa, gpa+len) to a host pointer. Returns NULL unless the whole
 * range lies in one slot of RAM: use it for every guest-supplied address.
 */
void *mem_gpa_to_hva(const struct guest_mem *mem, uint64_t gpa, uint64_t len);
/* gpa -> RAM offset; returns false if gpa is not RAM. */
bool mem_gpa_to_offset(const struct guest_mem *mem, uint64_t gpa, uint64_t *offset);
/* True if [gpa, gpa+len) is RAM (one slot, no overflow). */
bool mem_range_ok(const struct guest_mem *mem, uint64_t gpa, uint64_t len);

/*
 * Copy into / out of guest memory. mem_write marks the pages dirty. Return 0
 * or -EFAULT when the range is not RAM.
 */
int mem_write(struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len) RW_MUST_CHECK;
int mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len) RW_MUST_CHECK;
/* Tell the dirty tracker that the VMM wrote [gpa, gpa+len) directly. */
void mem_mark_dirty(struct guest_mem *mem, uint64_t gpa, uint64_t len);

#endif
