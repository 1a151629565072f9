#include "memory.h"

#include <errno.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "rw/abi.h"
#include "util.h"

static int set_slot(int vm_fd, const struct guest_mem *mem, const struct mem_slot *s, uint32_t flags)
{
	struct kvm_userspace_memory_region r = {
		.slot = s->id,
		.flags = flags,
		.guest_phys_addr = s->gpa,
		.memory_size = s->size,
		.userspace_addr = (uint64_t)(uintptr_t)(mem->hva + s->offset),
	};

	return ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &r) ? -errno : 0;
}

int mem_init(struct guest_mem *mem, int vm_fd, uint64_t size, uint32_t slot_flags)
{
	uint64_t low = MIN(size, RW_GPA_PCI_HOLE);
	int ret = -EINVAL;

	memset(mem, 0, sizeof(*mem));
	mem->memfd = -1;
	if (size < RW_MEM_MIN || size > RW_MEM_MAX || size % (2 * MiB))
		goto fail;
	mem->memfd = memfd_create("rewind-guest-ram", MFD_CLOEXEC);
	if (mem->memfd < 0) {
		ret = -errno;
		goto fail;
	}
	if (ftruncate(mem->memfd, (off_t)size)) {
		ret = -errno;
		goto fail_close;
	}
	mem->hva = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, mem->memfd, 0);
	if (mem->hva == MAP_FAILED) {
		ret = -errno;
		mem->hva = NULL;
		goto fail_close;
	}
	mem->size = size;
	mem->slots[0] = (struct mem_slot){ .id = 0, .gpa = 0, .size = low, .offset = 0 };
	mem->nr_slots = 1;
	if (size > low) {
		mem->slots[1] = (struct mem_slot){
			.id = 1, .gpa = RW_GPA_HIGH_RAM, .size = size - low, .offset = low,
		};
		mem->nr_slots = 2;
	}
	ret = mem_set_slot_flags(mem, vm_fd, slot_flags);
	if (ret)
		goto fail_unmap;
	return 0;

fail_unmap:
	munmap(mem->hva, size);
	mem->hva = NULL;
fail_close:
	close(mem->memfd);
	mem->memfd = -1;
fail:
	return ret;
}

int mem_set_slot_flags(struct guest_mem *mem, int vm_fd, uint32_t slot_flags)
{
	for (unsigned i = 0; i < mem->nr_slots; i++) {
		int ret = set_slot(vm_fd, mem, &mem->slots[i], slot_flags);
		if (ret)
			return ret;
	}
	return 0;
}

void mem_free(struct guest_mem *mem)
{
	if (mem->hva)
		munmap(mem->hva, mem->size);
	if (mem->memfd >= 0)
		close(mem->memfd);
	mem->hva = NULL;
	mem->memfd = -1;
}

static const struct mem_slot *find_slot(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < mem->nr_slots; i++) {
		const struct mem_slot *s = &mem->slots[i];
		if (gpa >= s->gpa && gpa - s->gpa < s->size && len <= s->size - (gpa - s->gpa))
			return s;
	}
	return NULL;
}

bool mem_range_ok(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	return find_slot(mem, gpa, len) != NULL;
}

void *mem_gpa_to_hva(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	const struct mem_slot *s = find_slot(mem, gpa, len);

	return s ? mem->hva + s->offset + (gpa - s->gpa) : NULL;
}

bool mem_gpa_to_offset(const struct guest_mem *mem, uint64_t gpa, uint64_t *offset)
{
	const struct mem_slot *s = find_slot(mem, gpa, 1);

	if (!s)
		return false;
	*offset = s->offset + (gpa - s->gpa);
	return true;
}

void mem_mark_dirty(struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	uint64_t off, first, last;

	if (!len || !mem->dirty.mark || !mem_gpa_to_offset(mem, gpa, &off))
		return;
	first = off >> RW_PAGE_SHIFT;
	last = (off + len - 1) >> RW_PAGE_SHIFT;
	mem->dirty.mark(mem->dirty.opaque, first, last - first + 1);
}

int mem_write(struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len)
{
	void *dst = mem_gpa_to_hva(mem, gpa, len);

	if (!dst)
		return -EFAULT;
	memcpy(dst, src, len);
	mem_mark_dirty(mem, gpa, len);
	return 0;
}

int mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len)
{
	const void *src = mem_gpa_to_hva(mem, gpa, len);

	if (!src)
		return -EFAULT;
	memcpy(dst, src, len);
	return 0;
}
