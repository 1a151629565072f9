/*
 * virtio_mmio.h - the virtio-mmio transport, version 2 ("modern") register
 * layout only (virtio 1.2 section 4.2.2).
 *
 * A device (virtio_blk.c) embeds a struct virtio_mmio and hands it a const
 * table of its own callbacks (struct virtio_mmio_dev_ops). The transport's
 * bus handlers are a separate const table inside virtio_mmio.c; nobody
 * patches either at run time.
 *
 * Registers (offsets in the window; all 32-bit, little-endian):
 *   0x000 MagicValue "virt"         0x050 QueueNotify (w)
 *   0x004 Version = 2               0x060 InterruptStatus (r)
 *   0x008 DeviceID                  0x064 InterruptACK (w)
 *   0x00c VendorID                  0x070 Status (rw)
 *   0x010 DeviceFeatures (r)        0x080/0x084 QueueDescLow/High (w)
 *   0x014 DeviceFeaturesSel (w)     0x090/0x094 QueueDriverLow/High (w)
 *   0x020 DriverFeatures (w)        0x0a0/0x0a4 QueueDeviceLow/High (w)
 *   0x024 DriverFeaturesSel (w)     0x0fc ConfigGeneration (r)
 *   0x030 QueueSel (w)              0x100+ device configuration space
 *   0x034 QueueNumMax (r)
 *   0x038 QueueNum (w)
 *   0x044 QueueReady (rw)
 * Register accesses other than aligned 32-bit ones are ignored (reads give
 * 0); the configuration space takes 1, 2, 4 and 8-byte accesses. Registers
 * that do not exist read as 0 and ignore writes.
 *
 * Behaviour:
 *   - Status = 0 resets the device: in-flight requests are drained first,
 *     then features, queues, interrupt status and the line go back to
 *     power-on state. The driver cannot clear NEEDS_RESET other than by
 *     that reset.
 *   - FEATURES_OK is accepted only if the features the driver wrote are a
 *     subset of the offered ones and include VIRTIO_F_VERSION_1; otherwise
 *     the bit stays clear (the driver reads Status back to find out).
 *     DriverFeatures writes after FEATURES_OK are ignored.
 *   - QueueNum and the ring addresses latch while the queue is not ready
 *     (ignored while it is); QueueReady = 1 checks them (virtio.h) and a bad
 *     layout puts the device in DEVICE_NEEDS_RESET instead. QueueReady = 0
 *     drains the device and disables the queue.
 *   - QueueNotify runs the device's notify callback synchronously on the
 *     vCPU thread that wrote it, once DRIVER_OK and FEATURES_OK are set and
 *     unless the device needs a reset; a notify before DRIVER_OK is ignored
 *     (DRIVER_OK itself notifies every ready queue once).
 *   - Interrupts: a level-triggered line (vm_irq_line) that is high exactly
 *     while InterruptStatus is non-zero.
 *   - Guest errors: virtio_mmio_fail() sets DEVICE_NEEDS_RESET, raises a
 *     configuration-change interrupt and stops all queue processing until
 *     the driver resets the device. Guest errors are logged once per device
 *     (later ones at debug level), whatever their kind.
 *
 * Locking: one mutex per transport covers the transport and the device
 * behind it; every callback in virtio_mmio_dev_ops runs with it held, and
 * the device takes it (virtio_mmio_lock) on any other thread (I/O
 * completions on the event thread).
 *
 * Record: the transport's fields are part of the device's record, written
 * by virtio_mmio_save() and parsed by virtio_mmio_parse(); the layout is in
 * virtio_mmio.c.
 */
#ifndef RW_DEVICES_VIRTIO_MMIO_H
#define RW_DEVICES_VIRTIO_MMIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "virtio.h"

struct vm;
struct rec_writer;
struct rec_reader;

#define VIRTIO_MMIO_MAGIC 0x74726976u /* "virt" */
#define VIRTIO_MMIO_VERSION 2u
#define VIRTIO_MMIO_VENDOR 0x52574e44u /* "DNWR": rewind */
#define VIRTIO_MMIO_CONFIG 0x100u
#define VIRTIO_MMIO_MAX_QUEUES 8u

enum virtio_mmio_reg {
	VIRTIO_MMIO_MAGIC_VALUE = 0x000,
	VIRTIO_MMIO_VERSION_REG = 0x004,
	VIRTIO_MMIO_DEVICE_ID = 0x008,
	VIRTIO_MMIO_VENDOR_ID = 0x00c,
	VIRTIO_MMIO_DEVICE_FEATURES = 0x010,
	VIRTIO_MMIO_DEVICE_FEATURES_SEL = 0x014,
	VIRTIO_MMIO_DRIVER_FEATURES = 0x020,
	VIRTIO_MMIO_DRIVER_FEATURES_SEL = 0x024,
	VIRTIO_MMIO_QUEUE_SEL = 0x030,
	VIRTIO_MMIO_QUEUE_NUM_MAX = 0x034,
	VIRTIO_MMIO_QUEUE_NUM = 0x038,
	VIRTIO_MMIO_QUEUE_READY = 0x044,
	VIRTIO_MMIO_QUEUE_NOTIFY = 0x050,
	VIRTIO_MMIO_INTERRUPT_STATUS = 0x060,
	VIRTIO_MMIO_INTERRUPT_ACK = 0x064,
	VIRTIO_MMIO_STATUS = 0x070,
	VIRTIO_MMIO_QUEUE_DESC_LOW = 0x080,
	VIRTIO_MMIO_QUEUE_DESC_HIGH = 0x084,
	VIRTIO_MMIO_QUEUE_DRIVER_LOW = 0x090,
	VIRTIO_MMIO_QUEUE_DRIVER_HIGH = 0x094,
	VIRTIO_MMIO_QUEUE_DEVICE_LOW = 0x0a0,
	VIRTIO_MMIO_QUEUE_DEVICE_HIGH = 0x0a4,
	VIRTIO_MMIO_CONFIG_GENERATION = 0x0fc,
};

/* What a device tells the transport. Called with the transport lock held. */
struct virtio_mmio_dev_ops {
	/* The driver notified ready queue q (device is live). */
	void (*notify)(void *opaque, unsigned q);
	/* Wait until no request is in flight (completing them). */
	void (*drain)(void *opaque);
	/* Device-specific part of a reset (after drain). May be NULL. */
	void (*reset)(void *opaque);
	/* Read len bytes of configuration space at off (within config_len). */
	void (*config_read)(void *opaque, uint32_t off, void *data, uint32_t len);
};

/* Fixed properties of a device, given at init. */
struct virtio_mmio_params {
	uint32_t device_id;       /* 2 = block */
	uint64_t features;        /* offered */
	unsigned nqueues;         /* 1..VIRTIO_MMIO_MAX_QUEUES */
	uint16_t queue_max;       /* QueueNumMax of every queue */
	uint32_t config_len;      /* bytes of configuration space */
};

/* Guest-visible transport state: what the record holds. */
struct virtio_mmio_state {
	uint32_t status;
	uint64_t acked;           /* driver features, offered bits only */
	uint64_t unoffered;       /* driver features written that were not offered */
	uint32_t dev_features_sel;
	uint32_t drv_features_sel;
	uint32_t queue_sel;
	uint32_t isr;             /* InterruptStatus */
	uint32_t config_gen;
	struct virtq vq[VIRTIO_MMIO_MAX_QUEUES];
};

struct virtio_mmio {
	pthread_mutex_t lock;
	struct vm *vm;
	const char *name;         /* the device's id, for messages (not copied) */
	uint64_t base;
	uint32_t irq;
	struct virtio_mmio_params p;
	const struct virtio_mmio_dev_ops *ops;
	void *opaque;

	struct virtio_mmio_state st; /* under lock */

	int irq_level;            /* last level driven, -1 = unknown */
	bool quiesced;            /* notifies are held until resume */
	uint32_t pending;         /* queues notified while quiesced */
	bool warned;              /* a guest error was logged */
	bool irq_warned;
	bool on_bus;
};

/*
 * Set up t for a device and claim [base, base + RW_VIRTIO_WINDOW) on the
 * VM's MMIO bus; publish the window in vm->virtio[] (boot info). Nothing is
 * published on failure. Returns 0, -EINVAL (bad params), -ENOSPC (no boot
 * info slot left), -EEXIST (window taken), -ENOMEM.
 */
int virtio_mmio_init(struct virtio_mmio *t, struct vm *vm, uint64_t base, uint32_t irq,
		     const struct virtio_mmio_params *p, const struct virtio_mmio_dev_ops *ops,
		     void *opaque, const char *name) RW_MUST_CHECK;
/* Release the window and its boot info slot. The device must have drained first. */
void virtio_mmio_uninit(struct virtio_mmio *t);

void virtio_mmio_lock(struct virtio_mmio *t);
void virtio_mmio_unlock(struct virtio_mmio *t);

/* Lock held: may queue q's buffers be processed (device live, queue ready)? */
bool virtio_mmio_queue_live(const struct virtio_mmio *t, unsigned q);
static inline struct virtq *virtio_mmio_vq(struct virtio_mmio *t, unsigned q)
{
	return &t->st.vq[q];
}

/*
 * Lock held: the device put buffers in q's used ring; interrupt the driver
 * unless it asked not to be.
 */
void virtio_mmio_used(struct virtio_mmio *t, unsigned q);

/*
 * Lock held: an unrecoverable guest error. Sets DEVICE_NEEDS_RESET, raises
 * a configuration-change interrupt, stops queue processing; logs why (once
 * per device).
 */
void virtio_mmio_fail(struct virtio_mmio *t, const char *why);

/* Lock held: a guest error that only fails one request; logged once per device. */
void virtio_mmio_guest_error(struct virtio_mmio *t, const char *why);

/* Power-on reset (device_ops.reset, Status = 0). Lock held. */
void virtio_mmio_reset_locked(struct virtio_mmio *t);

/*
 * Quiesce: hold notifies and drain in-flight requests. Resume: run the
 * queues notified meanwhile. Take the lock themselves.
 */
void virtio_mmio_quiesce(struct virtio_mmio *t);
void virtio_mmio_resume(struct virtio_mmio *t);

/* Record: transport fields (lock held by the caller). */
void virtio_mmio_save(const struct virtio_mmio *t, struct rec_writer *w);
/*
 * Parse the transport fields into *st and check them against t (offered
 * features, queue count and limits, guest RAM) without touching t.
 * Returns 0 or the reader's error with the field named (rec_fail).
 */
int virtio_mmio_parse(const struct virtio_mmio *t, struct rec_reader *r,
		      struct virtio_mmio_state *st) RW_MUST_CHECK;
/*
 * Lock held, device drained: replace the transport state with *st (which
 * virtio_mmio_parse accepted) and drive the interrupt line to match.
 */
int virtio_mmio_apply(struct virtio_mmio *t, const struct virtio_mmio_state *st) RW_MUST_CHECK;

/*
 * The kernel command-line form of vm's virtio-mmio windows, for a Linux
 * guest: "virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=...". Returns
 * the length it needed (as snprintf).
 */
int virtio_mmio_cmdline(const struct vm *vm, char *buf, size_t len);

#endif
