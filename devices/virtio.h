/*
 * virtio.h - virtio 1.2 constants and the split virtqueue, as the device
 * side sees it.
 *
 * A struct virtq is one queue's device-side state: the registers the driver
 * programs (size, ring addresses, ready) and the two indices the device
 * keeps (the next avail entry to consume, the next used slot to fill). The
 * transport (virtio_mmio.c) owns the queues; the device (virtio_blk.c) pops
 * descriptor chains with vq_pop() and returns them with vq_push().
 *
 * Everything the guest wrote is untrusted:
 *   - vq_enable() refuses a size that is not a power of two in 1..max and
 *     rings that are misaligned or not entirely inside guest RAM;
 *   - vq_avail() refuses an avail index more than `size` entries ahead of
 *     the last one consumed;
 *   - vq_pop() refuses (VQ_EGUEST) a head or next index >= size, a chain of
 *     more than `size` descriptors (which is how a loop shows), and an
 *     indirect descriptor (VIRTIO_F_INDIRECT_DESC is never offered). These
 *     leave the queue unusable: the caller sets DEVICE_NEEDS_RESET.
 *     Buffers outside RAM, readable after writable buffers and chains with
 *     more segments than the caller can hold are reported in the chain
 *     (bad_addr, bad_order, overflow) so that the device can fail just that
 *     request with a status byte.
 *   - each descriptor and ring entry is read from guest memory exactly once
 *     into a local copy, so a guest changing them concurrently cannot make
 *     a checked value differ from the used one.
 *
 * Ring views: the ring host pointers are computed by vq_enable() through
 * mem_gpa_to_hva() after the whole ring was checked to lie in RAM. Guest
 * RAM never moves or shrinks for the life of a VM, so they stay valid until
 * the queue is disabled or reset; every buffer address is translated (and
 * bounds-checked) per chain.
 *
 * Memory ordering (the driver runs concurrently on other CPUs):
 *   - the avail index is loaded with acquire semantics before any ring
 *     entry or descriptor it publishes is read;
 *   - used ring entries are stored before the used index, which is stored
 *     with release semantics, so the driver never sees an index covering an
 *     unwritten entry; the data and status bytes are written before
 *     vq_push() is called;
 *   - vq_should_interrupt() issues a full fence between the used index
 *     store and the load of the driver's avail flags (a store followed by a
 *     load needs one even on x86).
 *
 * Every write into guest memory (used entries, used index) is reported with
 * mem_mark_dirty(), so checkpoints see it.
 *
 * Threads: a virtq has no lock of its own; the transport's lock covers it.
 */
#ifndef RW_DEVICES_VIRTIO_H
#define RW_DEVICES_VIRTIO_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

struct guest_mem;
struct rec_writer;
struct rec_reader;

/* Device status bits (virtio 1.2 section 2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE 0x01u
#define VIRTIO_STATUS_DRIVER 0x02u
#define VIRTIO_STATUS_DRIVER_OK 0x04u
#define VIRTIO_STATUS_FEATURES_OK 0x08u
#define VIRTIO_STATUS_NEEDS_RESET 0x40u
#define VIRTIO_STATUS_FAILED 0x80u
#define VIRTIO_STATUS_ALL                                                              \
	(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK |  \
	 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED)

/* Reserved feature bits (virtio 1.2 section 6). */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_BIT(n) (1ULL << (n))

/* Interrupt status bits (InterruptStatus / InterruptACK). */
#define VIRTIO_INT_VRING 0x1u
#define VIRTIO_INT_CONFIG 0x2u
#define VIRTIO_INT_ALL (VIRTIO_INT_VRING | VIRTIO_INT_CONFIG)

/* Split virtqueue layout (virtio 1.2 section 2.7). */
#define VIRTQ_DESC_F_NEXT 1u
#define VIRTQ_DESC_F_WRITE 2u
#define VIRTQ_DESC_F_INDIRECT 4u
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1u
#define VIRTQ_DESC_SIZE 16u
#define VIRTQ_MAX_SIZE 32768u /* largest split queue the spec allows */

/* Bytes and alignment of each area for a queue of `size` entries. */
#define VIRTQ_DESC_BYTES(size) ((uint64_t)(size) * VIRTQ_DESC_SIZE)
#define VIRTQ_AVAIL_BYTES(size) (6u + 2u * (uint64_t)(size)) /* with used_event */
#define VIRTQ_USED_BYTES(size) (6u + 8u * (uint64_t)(size))  /* with avail_event */
#define VIRTQ_DESC_ALIGN 16u
#define VIRTQ_AVAIL_ALIGN 2u
#define VIRTQ_USED_ALIGN 4u

/* A guest error that leaves the queue unusable (caller: DEVICE_NEEDS_RESET). */
#define VQ_EGUEST RW_EGUEST

struct virtq {
	/* registers (latched as the driver wrote them) */
	uint16_t max;          /* QueueNumMax: fixed by the device */
	uint32_t num;          /* QueueNum */
	bool ready;            /* QueueReady */
	uint64_t desc_gpa;     /* QueueDesc */
	uint64_t avail_gpa;    /* QueueDriver */
	uint64_t used_gpa;     /* QueueDevice */
	/* device indices (meaningful while ready; zero otherwise) */
	uint16_t last_avail;   /* next avail entry to consume */
	uint16_t used_idx;     /* next used slot; mirrors used->idx */
	/* host views, valid while ready */
	uint16_t size;
	uint8_t *desc;
	uint8_t *avail;
	uint8_t *used;
};

/* One buffer of a descriptor chain. hva is NULL when [gpa, gpa+len) is not RAM. */
struct vq_seg {
	uint64_t gpa;
	void *hva;
	uint32_t len;
	bool write;            /* device-writable */
};

/*
 * A descriptor chain. The caller provides segs[cap]; vq_pop() stores the
 * non-empty buffers there in chain order, and keeps walking (and counting)
 * past cap so that the chain's last descriptor and totals are known.
 */
struct vq_chain {
	struct vq_seg *segs;   /* in */
	unsigned cap;          /* in */
	uint16_t head;
	unsigned nsegs;        /* stored in segs (<= cap) */
	unsigned ndesc;        /* descriptors in the chain */
	uint64_t rlen, wlen;   /* device-readable / -writable bytes, whole chain */
	bool overflow;         /* more non-empty buffers than cap */
	bool bad_order;        /* a readable buffer after a writable one */
	bool bad_addr;         /* some buffer is not inside RAM */
	struct vq_seg last;    /* the chain's last descriptor, even if empty */
};

/* Power-on state of a queue whose QueueNumMax is max. */
void vq_init(struct virtq *vq, uint16_t max);

/* Back to the power-on state (registers and indices cleared). */
void vq_reset(struct virtq *vq);

/*
 * Check a queue layout: size a power of two in 1..max, each area aligned as
 * the spec requires and entirely inside guest RAM. Returns 0 or -EINVAL
 * with *why naming the offending field (a string literal).
 */
int vq_check_layout(const struct guest_mem *mem, uint32_t size, uint16_t max, uint64_t desc,
		    uint64_t avail, uint64_t used, const char **why) RW_MUST_CHECK;

/*
 * QueueReady = 1: check the layout (vq_check_layout), compute the host
 * views and start both indices at 0. On error the queue stays not ready.
 */
int vq_enable(struct virtq *vq, const struct guest_mem *mem, const char **why) RW_MUST_CHECK;

/* QueueReady = 0: forget the views and the indices; the registers stay. */
void vq_disable(struct virtq *vq);

/*
 * Recompute the host views of a ready queue whose registers and indices
 * were just loaded from a record (which vq_check_layout() accepted).
 * Returns 0 or -EINVAL.
 */
int vq_attach(struct virtq *vq, const struct guest_mem *mem) RW_MUST_CHECK;

/*
 * Read the avail index (acquire). Returns the number of new entries
 * (0..size) with *end set to the index, or VQ_EGUEST with *why if the
 * index is more than size entries ahead of last_avail.
 */
int vq_avail(struct virtq *vq, uint16_t *end, const char **why);

/*
 * Consume the avail entry at last_avail (the caller knows one exists) and
 * walk its chain into *c (see struct vq_chain). Returns 0, or VQ_EGUEST
 * with *why for a chain that cannot be walked (see the top of this file);
 * the entry is consumed either way.
 */
int vq_pop(struct virtq *vq, const struct guest_mem *mem, struct vq_chain *c, const char **why);

/*
 * Put (head, len) in the used ring and publish it (release), marking the
 * entry and the index dirty in guest memory.
 */
void vq_push(struct virtq *vq, struct guest_mem *mem, uint16_t head, uint32_t len);

/*
 * After vq_push(): should the driver be interrupted? False when it set
 * VIRTQ_AVAIL_F_NO_INTERRUPT (VIRTIO_F_EVENT_IDX is never offered).
 */
bool vq_should_interrupt(struct virtq *vq);

#endif
