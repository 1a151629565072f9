/*
 * virtio.c - the split virtqueue, device side (contract in virtio.h).
 */
#include "virtio.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

#include "memory.h"

/* ------------------------------------------------------------ guest access */

/*
 * Single loads and stores of guest ring fields. Relaxed atomics make each
 * one a single access the compiler may neither repeat nor tear; the
 * acquire/release points are explicit where they are needed.
 */
static inline uint16_t ld16(const uint8_t *p)
{
	return le16toh(__atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED));
}

static inline uint32_t ld32(const uint8_t *p)
{
	return le32toh(__atomic_load_n((const uint32_t *)p, __ATOMIC_RELAXED));
}

static inline uint64_t ld64(const uint8_t *p)
{
	return le64toh(__atomic_load_n((const uint64_t *)p, __ATOMIC_RELAXED));
}

static inline void st32(uint8_t *p, uint32_t v)
{
	__atomic_store_n((uint32_t *)p, htole32(v), __ATOMIC_RELAXED);
}

/* ----------------------------------------------------------------- set-up */

void vq_init(struct virtq *vq, uint16_t max)
{
	memset(vq, 0, sizeof(*vq));
	vq->max = max;
	vq->num = max; /* QueueNum starts at the maximum, as most devices do */
}

void vq_reset(struct virtq *vq)
{
	vq_init(vq, vq->max);
}

static bool aligned(uint64_t v, uint64_t a)
{
	return (v & (a - 1)) == 0;
}

int vq_check_layout(const struct guest_mem *mem, uint32_t size, uint16_t max, uint64_t desc,
		    uint64_t avail, uint64_t used, const char **why)
{
	if (size == 0 || size > max || size > VIRTQ_MAX_SIZE || (size & (size - 1))) {
		*why = "queue size (must be a power of two, at most QueueNumMax)";
		return -EINVAL;
	}
	if (!aligned(desc, VIRTQ_DESC_ALIGN) || !mem_range_ok(mem, desc, VIRTQ_DESC_BYTES(size))) {
		*why = "descriptor table address (must be 16-byte aligned, inside guest RAM)";
		return -EINVAL;
	}
	if (!aligned(avail, VIRTQ_AVAIL_ALIGN) || !mem_range_ok(mem, avail, VIRTQ_AVAIL_BYTES(size))) {
		*why = "driver area address (must be 2-byte aligned, inside guest RAM)";
		return -EINVAL;
	}
	if (!aligned(used, VIRTQ_USED_ALIGN) || !mem_range_ok(mem, used, VIRTQ_USED_BYTES(size))) {
		*why = "device area address (must be 4-byte aligned, inside guest RAM)";
		return -EINVAL;
	}
	return 0;
}

int vq_attach(struct virtq *vq, const struct guest_mem *mem)
{
	const char *why;
	int ret;

	ret = vq_check_layout(mem, vq->num, vq->max, vq->desc_gpa, vq->avail_gpa, vq->used_gpa,
			      &why);
	if (ret)
		return ret;
	vq->size = (uint16_t)vq->num;
	vq->desc = mem_gpa_to_hva(mem, vq->desc_gpa, VIRTQ_DESC_BYTES(vq->size));
	vq->avail = mem_gpa_to_hva(mem, vq->avail_gpa, VIRTQ_AVAIL_BYTES(vq->size));
	vq->used = mem_gpa_to_hva(mem, vq->used_gpa, VIRTQ_USED_BYTES(vq->size));
	if (!vq->desc || !vq->avail || !vq->used)
		return -EINVAL;
	vq->ready = true;
	return 0;
}

int vq_enable(struct virtq *vq, const struct guest_mem *mem, const char **why)
{
	int ret = vq_check_layout(mem, vq->num, vq->max, vq->desc_gpa, vq->avail_gpa,
				  vq->used_gpa, why);

	if (ret)
		return ret;
	vq->last_avail = 0;
	vq->used_idx = 0;
	ret = vq_attach(vq, mem);
	if (ret)
		*why = "queue layout";
	return ret;
}

void vq_disable(struct virtq *vq)
{
	vq->ready = false;
	vq->size = 0;
	vq->desc = vq->avail = vq->used = NULL;
	vq->last_avail = 0;
	vq->used_idx = 0;
}

/* ------------------------------------------------------------- avail side */

int vq_avail(struct virtq *vq, uint16_t *end, const char **why)
{
	/* acquire: the ring entries and descriptors published up to idx */
	uint16_t idx = le16toh(__atomic_load_n((const uint16_t *)(vq->avail + 2), __ATOMIC_ACQUIRE));
	uint16_t n = (uint16_t)(idx - vq->last_avail);

	*end = idx;
	if (n > vq->size) {
		*why = "avail index more than a queue size ahead of the device";
		return VQ_EGUEST;
	}
	return n;
}

int vq_pop(struct virtq *vq, const struct guest_mem *mem, struct vq_chain *c, const char **why)
{
	uint16_t slot = vq->last_avail & (vq->size - 1);
	uint16_t i = ld16(vq->avail + 4 + 2u * slot);
	bool seen_write = false;

	vq->last_avail++;
	c->head = i;
	c->nsegs = 0;
	c->ndesc = 0;
	c->rlen = c->wlen = 0;
	c->overflow = c->bad_order = c->bad_addr = false;
	memset(&c->last, 0, sizeof(c->last));

	for (;;) {
		const uint8_t *d;
		struct vq_seg s;
		uint16_t flags, next;

		if (i >= vq->size) {
			*why = c->ndesc ? "descriptor next index out of range"
					: "avail ring head index out of range";
			return VQ_EGUEST;
		}
		/*
		 * At most size distinct descriptors exist: a longer chain
		 * revisits one, i.e. it loops.
		 */
		if (++c->ndesc > vq->size) {
			*why = "descriptor chain longer than the queue (a loop)";
			return VQ_EGUEST;
		}
		d = vq->desc + (uint64_t)i * VIRTQ_DESC_SIZE;
		s.gpa = ld64(d);
		s.len = ld32(d + 8);
		flags = ld16(d + 12);
		next = ld16(d + 14);
		if (flags & VIRTQ_DESC_F_INDIRECT) {
			*why = "indirect descriptor (VIRTIO_F_INDIRECT_DESC was not offered)";
			return VQ_EGUEST;
		}
		s.write = flags & VIRTQ_DESC_F_WRITE;
		s.hva = s.len ? mem_gpa_to_hva(mem, s.gpa, s.len) : NULL;
		if (s.len && !s.hva)
			c->bad_addr = true;
		if (s.write)
			seen_write = true;
		else if (seen_write)
			c->bad_order = true;
		if (s.write)
			c->wlen += s.len;
		else
			c->rlen += s.len;
		if (s.len) {
			if (c->nsegs < c->cap)
				c->segs[c->nsegs++] = s;
			else
				c->overflow = true;
		}
		c->last = s;
		if (!(flags & VIRTQ_DESC_F_NEXT))
			return 0;
		i = next;
	}
}

/* -------------------------------------------------------------- used side */

void vq_push(struct virtq *vq, struct guest_mem *mem, uint16_t head, uint32_t len)
{
	uint16_t slot = vq->used_idx & (vq->size - 1);
	uint64_t off = 4 + 8ull * slot;

	st32(vq->used + off, head);
	st32(vq->used + off + 4, len);
	mem_mark_dirty(mem, vq->used_gpa + off, 8);
	vq->used_idx++;
	/* release: the entry (and the buffers' contents) before the index */
	__atomic_store_n((uint16_t *)(vq->used + 2), htole16(vq->used_idx), __ATOMIC_RELEASE);
	mem_mark_dirty(mem, vq->used_gpa + 2, 2);
}

bool vq_should_interrupt(struct virtq *vq)
{
	/* the used index store must be visible before the flags are read */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return !(ld16(vq->avail) & VIRTQ_AVAIL_F_NO_INTERRUPT);
}
