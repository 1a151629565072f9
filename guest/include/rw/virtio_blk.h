/*
 * rw/virtio_blk.h - a polling virtio-blk driver for guest programs.
 *
 * rewind publishes its disks (rewind run --disk FILE ...) as virtio-mmio
 * devices (virtio 1.2, section 4.2: the "version 2" register layout, modern
 * devices only) whose windows are listed in rw_boot_info.virtio[] with
 * device_id 2. This driver runs entirely at CPL3, in the program's own
 * context:
 *
 *     struct rw_blk d;
 *     char buf[512];
 *
 *     if (rw_blk_open(0, &d) < 0) ...no disk...
 *     rw_blk_read(&d, 0, buf, 1);            // sector 0
 *     rw_blk_write(&d, 7, buf, 1);           // sector 7
 *     rw_blk_flush(&d);
 *
 * How it works. One split virtqueue (queue 0, up to RW_BLK_QUEUE_MAX
 * entries) with its descriptor table, driver ("avail") ring and device
 * ("used") ring in three pages from rw_page_alloc(), plus one page for the
 * request headers and status bytes. Every request is synchronous: the
 * driver builds one descriptor chain (header, data segments, status byte),
 * publishes it in the avail ring, writes QueueNotify (one MMIO exit) and
 * then spins with rw_pause() on the used ring's idx in guest memory until
 * the device has consumed the chain. Spinning on RAM costs no exit; only
 * every RW_BLK_STATUS_POLL spins is the Status register read (one exit), to
 * notice DEVICE_NEEDS_RESET. A request therefore costs one exit when the
 * device completes it promptly. Interrupts are not used: the driver sets
 * VRING_AVAIL_F_NO_INTERRUPT, the SDK kernel leaves the disks' IOAPIC pins
 * masked, and rw_blk_open() masks LINT0 of the calling vCPU's LAPIC (the
 * path from KVM's never-programmed 8259 PIC, which would deliver a
 * device's line as vector <irq>). InterruptStatus is never acknowledged.
 *
 * Memory ordering. The device is another thread of the VMM on another host
 * CPU, reading and writing guest RAM. x86-64 is TSO: stores become visible
 * in program order and loads are not reordered with older loads, so for a
 * single-vCPU polling driver a compiler barrier at each hand-over point is
 * enough: (1) descriptors and avail ring entry written, barrier, avail idx
 * written, barrier, QueueNotify (an MMIO store, which exits, after every
 * earlier store); (2) used idx read, barrier, used entry, status byte and
 * data read. The one pattern that would need a full fence (store the avail
 * idx, then load the device's "no notify" flag or event index) is avoided:
 * the driver always notifies.
 *
 * Limits. A handle is used by one vCPU at a time (no internal lock). One
 * request is in flight at a time. Buffers passed to read/write must be
 * guest RAM (any program memory: static data, stack, rw_page_alloc pages);
 * since RAM is identity mapped their addresses go to the device as they
 * are. Large transfers are split into requests of at most
 * RW_BLK_MAX_REQ_SECTORS sectors, and into segments of at most the
 * device's size_max bytes (VIRTIO_BLK_F_SIZE_MAX) and seg_max segments
 * (VIRTIO_BLK_F_SEG_MAX) when it announces them.
 *
 * Errors. Every int function returns 0 or a negative errno (RW_E*, the
 * Linux values): -RW_EIO when the device answers VIRTIO_BLK_S_IOERR, when it
 * sets DEVICE_NEEDS_RESET or completes a request malformed (a bad used
 * entry, an unwritten status byte); -RW_ENOTSUP for VIRTIO_BLK_S_UNSUPP;
 * -RW_EROFS for a write to a disk that offers VIRTIO_BLK_F_RO (refused
 * without asking the device); -RW_ENODEV when there is no such disk or the
 * device does not speak virtio-mmio version 2 / VIRTIO_F_VERSION_1;
 * -RW_EINVAL / -RW_ERANGE for bad arguments; -RW_ENOMEM when
 * rw_page_alloc() fails. After -RW_EIO because of DEVICE_NEEDS_RESET the
 * handle is "broken": every call fails with -RW_EIO until rw_blk_reset().
 * A request that ends with -RW_ETIMEDOUT (only with a spin_limit) or with
 * a used entry that names the wrong chain leaves the handle broken too.
 */
#ifndef RW_GUEST_VIRTIO_BLK_H
#define RW_GUEST_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "rw.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ====================================================== errno values */
#define RW_EIO 5
#define RW_ENOMEM 12
#define RW_ENODEV 19
#define RW_EINVAL 22
#define RW_EROFS 30
#define RW_ERANGE 34
#define RW_ENOTSUP 95
#define RW_ETIMEDOUT 110

/* ============================================ virtio-mmio (virtio 1.2 4.2.2) */
#define RW_VIRTIO_MMIO_MAGIC 0x74726976u /* "virt" */
#define RW_VIRTIO_MMIO_VERSION 2u
#define RW_VIRTIO_ID_BLOCK 2u

/* Register offsets in a device's MMIO window; all 32-bit wide. */
#define RW_VMMIO_MAGIC_VALUE 0x000
#define RW_VMMIO_VERSION 0x004
#define RW_VMMIO_DEVICE_ID 0x008
#define RW_VMMIO_VENDOR_ID 0x00c
#define RW_VMMIO_DEVICE_FEATURES 0x010
#define RW_VMMIO_DEVICE_FEATURES_SEL 0x014
#define RW_VMMIO_DRIVER_FEATURES 0x020
#define RW_VMMIO_DRIVER_FEATURES_SEL 0x024
#define RW_VMMIO_QUEUE_SEL 0x030
#define RW_VMMIO_QUEUE_NUM_MAX 0x034
#define RW_VMMIO_QUEUE_NUM 0x038
#define RW_VMMIO_QUEUE_READY 0x044
#define RW_VMMIO_QUEUE_NOTIFY 0x050
#define RW_VMMIO_INTERRUPT_STATUS 0x060
#define RW_VMMIO_INTERRUPT_ACK 0x064
#define RW_VMMIO_STATUS 0x070
#define RW_VMMIO_QUEUE_DESC_LOW 0x080
#define RW_VMMIO_QUEUE_DESC_HIGH 0x084
#define RW_VMMIO_QUEUE_DRIVER_LOW 0x090
#define RW_VMMIO_QUEUE_DRIVER_HIGH 0x094
#define RW_VMMIO_QUEUE_DEVICE_LOW 0x0a0
#define RW_VMMIO_QUEUE_DEVICE_HIGH 0x0a4
#define RW_VMMIO_CONFIG_GENERATION 0x0fc
#define RW_VMMIO_CONFIG 0x100

/* Device status bits (virtio 1.2 2.1). */
#define RW_VIRTIO_STATUS_ACKNOWLEDGE 0x01
#define RW_VIRTIO_STATUS_DRIVER 0x02
#define RW_VIRTIO_STATUS_DRIVER_OK 0x04
#define RW_VIRTIO_STATUS_FEATURES_OK 0x08
#define RW_VIRTIO_STATUS_NEEDS_RESET 0x40
#define RW_VIRTIO_STATUS_FAILED 0x80

/* Feature bits (virtio 1.2 5.2.3 and 6). */
#define RW_VIRTIO_BLK_F_SIZE_MAX 1
#define RW_VIRTIO_BLK_F_SEG_MAX 2
#define RW_VIRTIO_BLK_F_RO 5
#define RW_VIRTIO_BLK_F_BLK_SIZE 6
#define RW_VIRTIO_BLK_F_FLUSH 9
#define RW_VIRTIO_F_VERSION_1 32

/* virtio-blk configuration space offsets (virtio 1.2 5.2.4). */
#define RW_VIRTIO_BLK_CFG_CAPACITY 0 /* le64, 512-byte sectors */
#define RW_VIRTIO_BLK_CFG_SIZE_MAX 8 /* le32 */
#define RW_VIRTIO_BLK_CFG_SEG_MAX 12 /* le32 */
#define RW_VIRTIO_BLK_CFG_BLK_SIZE 20 /* le32 */

/* Request types and status values (virtio 1.2 5.2.6). */
#define RW_VIRTIO_BLK_T_IN 0
#define RW_VIRTIO_BLK_T_OUT 1
#define RW_VIRTIO_BLK_T_FLUSH 4
#define RW_VIRTIO_BLK_T_GET_ID 8
#define RW_VIRTIO_BLK_S_OK 0
#define RW_VIRTIO_BLK_S_IOERR 1
#define RW_VIRTIO_BLK_S_UNSUPP 2
#define RW_VIRTIO_BLK_ID_BYTES 20

/* ================================== split virtqueue (virtio 1.2 2.7) */
#define RW_VIRTQ_DESC_F_NEXT 1
#define RW_VIRTQ_DESC_F_WRITE 2     /* device writes (else device reads) */
#define RW_VIRTQ_DESC_F_INDIRECT 4
#define RW_VIRTQ_AVAIL_F_NO_INTERRUPT 1

/* 16-byte aligned, 16 bytes each. */
struct rw_virtq_desc {
	uint64_t addr;  /* guest-physical */
	uint32_t len;
	uint16_t flags; /* RW_VIRTQ_DESC_F_* */
	uint16_t next;  /* valid with F_NEXT */
};

/* The driver area: 2-byte aligned, 6 + 2 * size bytes. */
struct rw_virtq_avail {
	uint16_t flags; /* RW_VIRTQ_AVAIL_F_* */
	uint16_t idx;   /* where the driver puts the next entry (mod size) */
	uint16_t ring[];
	/* then uint16_t used_event (only with VIRTIO_F_EVENT_IDX) */
};

struct rw_virtq_used_elem {
	uint32_t id;  /* head of the consumed chain */
	uint32_t len; /* bytes the device wrote into the chain */
};

/* The device area: 4-byte aligned, 6 + 8 * size bytes. */
struct rw_virtq_used {
	uint16_t flags;
	uint16_t idx;
	struct rw_virtq_used_elem ring[];
	/* then uint16_t avail_event (only with VIRTIO_F_EVENT_IDX) */
};

/* The request header: the first, device-readable descriptor. */
struct rw_virtio_blk_req_hdr {
	uint32_t type; /* RW_VIRTIO_BLK_T_* */
	uint32_t reserved;
	uint64_t sector;
};

/* ================================================================ handle */
#define RW_BLK_SECTOR_SIZE 512u
#define RW_BLK_QUEUE_MAX 256u        /* queue entries the driver asks for, at most */
#define RW_BLK_MAX_REQ_SECTORS 256u  /* sectors per request (128 KiB) */
#define RW_BLK_STATUS_POLL 65536u    /* spins between reads of Status */

/*
 * Queue 0 as the driver sees it: the raw escape hatch (rw_blk_vq()). All
 * three areas live in guest RAM owned by the handle. The fields are
 * volatile-qualified where the device writes.
 */
struct rw_vq_raw {
	struct rw_virtq_desc *desc;           /* size entries */
	struct rw_virtq_avail *avail;
	volatile struct rw_virtq_used *used;
	uint16_t size;      /* entries (a power of two) */
	uint16_t avail_idx; /* the driver's copy of avail->idx */
	uint16_t used_idx;  /* used entries the driver has consumed */
};

/*
 * An open disk. Filled in by rw_blk_open(); the caller owns the storage
 * (it may live anywhere) and treats every field as read-only.
 */
struct rw_blk {
	volatile uint32_t *mmio; /* the MMIO window */
	unsigned index;          /* n-th virtio-blk device in boot info */
	unsigned slot;           /* its index in rw_boot_info.virtio[] */
	uint32_t irq;
	uint64_t features;       /* negotiated (driver features written) */
	uint64_t offered;        /* what the device offered */
	uint64_t capacity;       /* in 512-byte sectors */
	uint32_t blk_size;       /* VIRTIO_BLK_F_BLK_SIZE, else 512 */
	uint32_t size_max;       /* max bytes per data segment, 0 = none */
	uint32_t seg_max;        /* max data segments per request, 0 = none */
	bool ro;                 /* VIRTIO_BLK_F_RO */
	bool broken;             /* DEVICE_NEEDS_RESET seen: call rw_blk_reset */
	uint64_t spin_limit;     /* 0 = wait forever (default); else give up
				    after this many spins with -RW_ETIMEDOUT */
	struct rw_vq_raw vq;
	void *ring_pages;        /* 3 pages: desc, avail, used */
	uint8_t *scratch;        /* 1 page: request header, status, id */
};

/* ================================================================== API */

/*
 * Number of virtio-blk devices (device_id 2) in boot info. No MMIO access.
 */
int rw_blk_count(void);

/*
 * Open the index-th virtio-blk device (0-based, in boot info order) into
 * *out: check MagicValue, Version 2 and DeviceID 2; reset the device;
 * ACKNOWLEDGE, DRIVER; accept VIRTIO_F_VERSION_1 (required) and, when
 * offered, RO, FLUSH, BLK_SIZE, SIZE_MAX and SEG_MAX; FEATURES_OK (checked
 * back); allocate 4 pages (rw_page_alloc) and set up queue 0 with
 * min(QueueNumMax, RW_BLK_QUEUE_MAX) entries (rounded down to a power of
 * two); read the configuration space (capacity etc., consistent under
 * ConfigGeneration); DRIVER_OK. Also masks LAPIC LINT0 (see above).
 * About 35 MMIO exits.
 * Returns 0, -RW_ENODEV (no such device, wrong magic/version/device id,
 * VERSION_1 not offered, FEATURES_OK refused, queue 0 unavailable or
 * already live), -RW_ENOMEM. On failure *out holds nothing to release and
 * the device is left with FAILED set (or untouched when it was not found).
 */
int rw_blk_open(unsigned index, struct rw_blk *out);

/*
 * Reset the device and initialise it again (same pages, empty queue, the
 * same feature negotiation): the way back from DEVICE_NEEDS_RESET or from a
 * queue the caller corrupted through rw_blk_vq(). Clears d->broken.
 * Returns 0 or the errors of rw_blk_open() other than -RW_ENOMEM.
 */
int rw_blk_reset(struct rw_blk *d);

/*
 * Reset the device (Status = 0) and free the handle's pages. The handle
 * must not be used afterwards (rw_blk_open() it again).
 */
void rw_blk_close(struct rw_blk *d);

/*
 * Read nsectors 512-byte sectors starting at sector into buf (guest RAM,
 * nsectors * 512 bytes, any alignment). Waits until the device is done.
 * Returns 0, -RW_EIO, -RW_ENOTSUP, -RW_ERANGE (sector + nsectors beyond
 * the capacity), -RW_EINVAL (buf NULL with nsectors > 0), -RW_ETIMEDOUT
 * (spin_limit reached). nsectors = 0 is a no-op. On error buf may be
 * partly written.
 */
int rw_blk_read(struct rw_blk *d, uint64_t sector, void *buf, uint32_t nsectors);

/*
 * Write nsectors sectors from buf starting at sector. As rw_blk_read(),
 * plus -RW_EROFS when the device offered VIRTIO_BLK_F_RO (nothing is sent).
 * The data is in the device's hands when this returns; it is durable on
 * the backing store only after rw_blk_flush() (rewind's disks are
 * copy-on-write overlays that live as long as the VM: see guest/README.md).
 */
int rw_blk_write(struct rw_blk *d, uint64_t sector, const void *buf, uint32_t nsectors);

/*
 * VIRTIO_BLK_T_FLUSH when FLUSH was negotiated; otherwise 0 at once (a
 * device without FLUSH writes through). Returns 0, -RW_EIO, -RW_ENOTSUP.
 */
int rw_blk_flush(struct rw_blk *d);

/*
 * The device's id string (VIRTIO_BLK_T_GET_ID): up to 20 bytes, written to
 * id and NUL-terminated (id[20] = 0 when all 20 are used). Returns 0,
 * -RW_EIO, -RW_ENOTSUP (the device does not implement GET_ID; id is "").
 */
int rw_blk_get_id(struct rw_blk *d, char id[RW_VIRTIO_BLK_ID_BYTES + 1]);

/* Capacity in 512-byte sectors, as read at open (or at the last reset). */
uint64_t rw_blk_capacity(const struct rw_blk *d);

/* True if the device offered VIRTIO_BLK_F_RO (writes fail with -RW_EROFS). */
bool rw_blk_readonly(const struct rw_blk *d);

/* ====================================================== raw escape hatch */

/*
 * The handle's queue 0, for test programs that build their own (possibly
 * malicious) descriptor chains. The library uses the same queue: between
 * the caller's raw requests and library calls, every chain the caller
 * published must have completed (or the device must have been reset with
 * rw_blk_reset()). The caller may use the handle's scratch page beyond
 * offset 2048 for request headers and status bytes.
 */
struct rw_vq_raw *rw_blk_vq(struct rw_blk *d);

/*
 * Publish head in the avail ring (ring[avail_idx % size] = head, then
 * avail->idx = ++avail_idx, with the barriers described above). Does not
 * notify.
 */
void rw_blk_publish(struct rw_blk *d, uint16_t head);

/* Write QueueNotify = 0 (one MMIO exit). */
void rw_blk_notify(struct rw_blk *d);

/*
 * Wait until the device puts an entry in the used ring, spinning on the
 * used idx in RAM and reading Status every RW_BLK_STATUS_POLL spins.
 * spin_limit = 0 waits forever. On success stores the entry in *elem (may
 * be NULL), advances vq.used_idx and returns 0. Returns -RW_EIO (and sets
 * d->broken) when the device set DEVICE_NEEDS_RESET, -RW_ETIMEDOUT after
 * spin_limit spins.
 */
int rw_blk_wait_used(struct rw_blk *d, uint64_t spin_limit, struct rw_virtq_used_elem *elem);

/* The Status register (one MMIO exit). */
uint32_t rw_blk_status(struct rw_blk *d);

#ifdef __cplusplus
}
#endif

#endif
