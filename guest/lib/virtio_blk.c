/*
 * virtio_blk.c - the SDK's polling virtio-blk driver over virtio-mmio
 * (virtio 1.2 sections 2, 3.1, 4.2 and 5.2). See rw/virtio_blk.h for the
 * contract, the cost model and the memory-ordering argument.
 *
 * Layout of the handle's four pages (rw_page_alloc, identity mapped, so a
 * pointer is the guest-physical address the device is given):
 *
 *   page 0  descriptor table   16 * size bytes (size <= 256: <= 4096)
 *   page 1  driver area        6 + 2 * size bytes
 *   page 2  device area        6 + 8 * size bytes
 *   page 3  scratch: request header at 0, status byte at 16, GET_ID
 *           buffer at 64; offsets 2048.. belong to raw users (rw_blk_vq)
 *
 * Every area is page aligned, more than the 16/2/4-byte alignment the split
 * virtqueue needs (2.7).
 */
#include "rw/virtio_blk.h"

#define BLK_PAGES 4
#define SCRATCH_HDR 0
#define SCRATCH_STATUS 16
#define SCRATCH_ID 64
#define STATUS_UNSET 0xff
#define RESET_READS 1000 /* Status reads while waiting for a reset to finish */
#define CONFIG_TRIES 100 /* ConfigGeneration retries */
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_MASKED 0x10000

/* Keeps the compiler from moving memory accesses across it (see the header). */
#define compiler_barrier() __asm__ volatile("" ::: "memory")

/* ----------------------------------------------------- register access */

/* All control registers are 32 bits wide and read with one aligned access. */
static inline uint32_t mmio_rd(const struct rw_blk *d, unsigned off)
{
	return d->mmio[off / 4];
}

static inline void mmio_wr(const struct rw_blk *d, unsigned off, uint32_t v)
{
	compiler_barrier();
	d->mmio[off / 4] = v;
	compiler_barrier();
}

/* 32-bit configuration fields (and halves of 64-bit ones): 4.2.2.2. */
static inline uint32_t cfg_rd32(const struct rw_blk *d, unsigned off)
{
	return mmio_rd(d, RW_VMMIO_CONFIG + off);
}

static void set_status(struct rw_blk *d, uint32_t bits)
{
	mmio_wr(d, RW_VMMIO_STATUS, bits);
}

static void fail_device(struct rw_blk *d)
{
	set_status(d, mmio_rd(d, RW_VMMIO_STATUS) | RW_VIRTIO_STATUS_FAILED);
}

/* ------------------------------------------------------------ discovery */

static const struct rw_virtio_slot *blk_slot(unsigned index, unsigned *slot)
{
	const struct rw_boot_info *bi = rw_boot_info();
	unsigned n = bi->nr_virtio < RW_VIRTIO_MAX ? bi->nr_virtio : RW_VIRTIO_MAX;

	for (unsigned i = 0; i < n; i++) {
		if (bi->virtio[i].device_id != RW_VIRTIO_ID_BLOCK)
			continue;
		if (index-- == 0) {
			*slot = i;
			return &bi->virtio[i];
		}
	}
	return NULL;
}

int rw_blk_count(void)
{
	const struct rw_boot_info *bi = rw_boot_info();
	unsigned n = bi->nr_virtio < RW_VIRTIO_MAX ? bi->nr_virtio : RW_VIRTIO_MAX;
	int count = 0;

	for (unsigned i = 0; i < n; i++)
		count += bi->virtio[i].device_id == RW_VIRTIO_ID_BLOCK;
	return count;
}

/* ------------------------------------------------------- initialisation */

/*
 * Reset: write 0 to Status, then wait until Status reads 0 (4.2.3.1 and
 * 2.4.2: the reset may complete asynchronously).
 */
static int device_reset(struct rw_blk *d)
{
	set_status(d, 0);
	for (unsigned i = 0; i < RESET_READS; i++)
		if (mmio_rd(d, RW_VMMIO_STATUS) == 0)
			return 0;
	return -RW_ENODEV;
}

/* The largest power of two <= n (n >= 1). */
static uint16_t pow2_floor(uint32_t n)
{
	uint32_t p = 1;

	while (p * 2 <= n)
		p *= 2;
	return (uint16_t)p;
}

/*
 * Configuration fields the driver uses, read consistently: retry while
 * ConfigGeneration changes across the reads (4.2.2.2 / 2.5.1).
 */
static int read_config(struct rw_blk *d)
{
	for (unsigned t = 0; t < CONFIG_TRIES; t++) {
		uint32_t gen = mmio_rd(d, RW_VMMIO_CONFIG_GENERATION);
		uint32_t lo = cfg_rd32(d, RW_VIRTIO_BLK_CFG_CAPACITY);
		uint32_t hi = cfg_rd32(d, RW_VIRTIO_BLK_CFG_CAPACITY + 4);
		uint32_t size_max = 0, seg_max = 0, blk_size = RW_BLK_SECTOR_SIZE;

		if (d->features & (1ULL << RW_VIRTIO_BLK_F_SIZE_MAX))
			size_max = cfg_rd32(d, RW_VIRTIO_BLK_CFG_SIZE_MAX);
		if (d->features & (1ULL << RW_VIRTIO_BLK_F_SEG_MAX))
			seg_max = cfg_rd32(d, RW_VIRTIO_BLK_CFG_SEG_MAX);
		if (d->features & (1ULL << RW_VIRTIO_BLK_F_BLK_SIZE))
			blk_size = cfg_rd32(d, RW_VIRTIO_BLK_CFG_BLK_SIZE);
		if (mmio_rd(d, RW_VMMIO_CONFIG_GENERATION) != gen)
			continue;
		d->capacity = ((uint64_t)hi << 32) | lo;
		d->size_max = size_max;
		d->seg_max = seg_max;
		d->blk_size = blk_size;
		return 0;
	}
	return -RW_ENODEV;
}

/*
 * The initialisation sequence of 3.1.1 on an already mapped handle with
 * its pages: reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK (read back),
 * queue 0 (4.2.3.2), configuration, DRIVER_OK.
 */
static int device_init(struct rw_blk *d)
{
	uint64_t offered, want;
	uint32_t st, qmax;
	uint8_t *pages = d->ring_pages;
	uint64_t a;

	d->broken = false;
	if (device_reset(d) < 0)
		return -RW_ENODEV;
	set_status(d, RW_VIRTIO_STATUS_ACKNOWLEDGE);
	set_status(d, RW_VIRTIO_STATUS_ACKNOWLEDGE | RW_VIRTIO_STATUS_DRIVER);

	mmio_wr(d, RW_VMMIO_DEVICE_FEATURES_SEL, 0);
	offered = mmio_rd(d, RW_VMMIO_DEVICE_FEATURES);
	mmio_wr(d, RW_VMMIO_DEVICE_FEATURES_SEL, 1);
	offered |= (uint64_t)mmio_rd(d, RW_VMMIO_DEVICE_FEATURES) << 32;
	d->offered = offered;
	if (!(offered & (1ULL << RW_VIRTIO_F_VERSION_1)))
		goto fail;
	want = (1ULL << RW_VIRTIO_F_VERSION_1) |
	       (offered & ((1ULL << RW_VIRTIO_BLK_F_RO) | (1ULL << RW_VIRTIO_BLK_F_FLUSH) |
			   (1ULL << RW_VIRTIO_BLK_F_BLK_SIZE) | (1ULL << RW_VIRTIO_BLK_F_SIZE_MAX) |
			   (1ULL << RW_VIRTIO_BLK_F_SEG_MAX)));
	mmio_wr(d, RW_VMMIO_DRIVER_FEATURES_SEL, 0);
	mmio_wr(d, RW_VMMIO_DRIVER_FEATURES, (uint32_t)want);
	mmio_wr(d, RW_VMMIO_DRIVER_FEATURES_SEL, 1);
	mmio_wr(d, RW_VMMIO_DRIVER_FEATURES, (uint32_t)(want >> 32));
	d->features = want;
	d->ro = (want >> RW_VIRTIO_BLK_F_RO) & 1;

	st = RW_VIRTIO_STATUS_ACKNOWLEDGE | RW_VIRTIO_STATUS_DRIVER | RW_VIRTIO_STATUS_FEATURES_OK;
	set_status(d, st);
	if (!(mmio_rd(d, RW_VMMIO_STATUS) & RW_VIRTIO_STATUS_FEATURES_OK))
		goto fail;

	/* Queue 0: must not be live yet, must exist. */
	mmio_wr(d, RW_VMMIO_QUEUE_SEL, 0);
	if (mmio_rd(d, RW_VMMIO_QUEUE_READY) != 0)
		goto fail;
	qmax = mmio_rd(d, RW_VMMIO_QUEUE_NUM_MAX);
	if (qmax == 0)
		goto fail;
	d->vq.size = pow2_floor(qmax < RW_BLK_QUEUE_MAX ? qmax : RW_BLK_QUEUE_MAX);
	memset(pages, 0, 3 * RW_PAGE_SIZE);
	d->vq.desc = (struct rw_virtq_desc *)pages;
	d->vq.avail = (struct rw_virtq_avail *)(pages + RW_PAGE_SIZE);
	d->vq.used = (volatile struct rw_virtq_used *)(pages + 2 * RW_PAGE_SIZE);
	d->vq.avail_idx = 0;
	d->vq.used_idx = 0;
	d->vq.avail->flags = RW_VIRTQ_AVAIL_F_NO_INTERRUPT;
	mmio_wr(d, RW_VMMIO_QUEUE_NUM, d->vq.size);
	a = (uint64_t)d->vq.desc;
	mmio_wr(d, RW_VMMIO_QUEUE_DESC_LOW, (uint32_t)a);
	mmio_wr(d, RW_VMMIO_QUEUE_DESC_HIGH, (uint32_t)(a >> 32));
	a = (uint64_t)d->vq.avail;
	mmio_wr(d, RW_VMMIO_QUEUE_DRIVER_LOW, (uint32_t)a);
	mmio_wr(d, RW_VMMIO_QUEUE_DRIVER_HIGH, (uint32_t)(a >> 32));
	a = (uint64_t)d->vq.used;
	mmio_wr(d, RW_VMMIO_QUEUE_DEVICE_LOW, (uint32_t)a);
	mmio_wr(d, RW_VMMIO_QUEUE_DEVICE_HIGH, (uint32_t)(a >> 32));
	mmio_wr(d, RW_VMMIO_QUEUE_READY, 1);

	if (read_config(d) < 0)
		goto fail;
	set_status(d, st | RW_VIRTIO_STATUS_DRIVER_OK);
	return 0;

fail:
	fail_device(d);
	return -RW_ENODEV;
}

/*
 * Keep device interrupts out of the program. The disks' IOAPIC pins stay
 * masked, but KVM also wires GSIs 0-15 to its emulated 8259 PIC, which
 * nobody programs (vector base 0, nothing masked), and the BSP's LAPIC
 * comes out of reset with LINT0 in ExtINT mode. A device on a GSI below 16
 * that raises its line (the configuration-change interrupt that comes with
 * DEVICE_NEEDS_RESET, which VRING_AVAIL_F_NO_INTERRUPT does not suppress)
 * would arrive as vector <irq>, and the kernel would report it as a CPU
 * exception. Masking LINT0 of the calling vCPU's LAPIC (one MMIO store of
 * the value the SDK kernel itself writes when it first programs the LAPIC)
 * closes that path.
 */
static void mask_legacy_pic_path(void)
{
	volatile uint32_t *lvt_lint0 = (volatile uint32_t *)(RW_GPA_LAPIC + LAPIC_LVT_LINT0);

	*lvt_lint0 = LAPIC_LVT_MASKED;
}

int rw_blk_open(unsigned index, struct rw_blk *out)
{
	const struct rw_virtio_slot *s;
	unsigned slot = 0;
	void *pages;
	int ret;

	memset(out, 0, sizeof(*out));
	s = blk_slot(index, &slot);
	if (!s)
		return -RW_ENODEV;
	out->mmio = (volatile uint32_t *)s->base;
	out->index = index;
	out->slot = slot;
	out->irq = s->irq;
	if (mmio_rd(out, RW_VMMIO_MAGIC_VALUE) != RW_VIRTIO_MMIO_MAGIC ||
	    mmio_rd(out, RW_VMMIO_VERSION) != RW_VIRTIO_MMIO_VERSION ||
	    mmio_rd(out, RW_VMMIO_DEVICE_ID) != RW_VIRTIO_ID_BLOCK) {
		memset(out, 0, sizeof(*out));
		return -RW_ENODEV;
	}
	mask_legacy_pic_path();
	pages = rw_page_alloc(BLK_PAGES);
	if (!pages) {
		memset(out, 0, sizeof(*out));
		return -RW_ENOMEM;
	}
	out->ring_pages = pages;
	out->scratch = (uint8_t *)pages + 3 * RW_PAGE_SIZE;
	ret = device_init(out);
	if (ret < 0) {
		rw_page_free(pages, BLK_PAGES);
		memset(out, 0, sizeof(*out));
	}
	return ret;
}

int rw_blk_reset(struct rw_blk *d)
{
	if (!d->mmio || !d->ring_pages)
		return -RW_EINVAL;
	return device_init(d);
}

void rw_blk_close(struct rw_blk *d)
{
	if (!d->mmio)
		return;
	set_status(d, 0);
	if (d->ring_pages)
		rw_page_free(d->ring_pages, BLK_PAGES);
	memset(d, 0, sizeof(*d));
}

/* ------------------------------------------------------------ raw queue */

struct rw_vq_raw *rw_blk_vq(struct rw_blk *d)
{
	return &d->vq;
}

uint32_t rw_blk_status(struct rw_blk *d)
{
	return mmio_rd(d, RW_VMMIO_STATUS);
}

void rw_blk_publish(struct rw_blk *d, uint16_t head)
{
	struct rw_vq_raw *q = &d->vq;

	q->avail->ring[q->avail_idx & (q->size - 1)] = head;
	/* The entry (and the chain it names) before the index that exposes it. */
	compiler_barrier();
	q->avail_idx++;
	*(volatile uint16_t *)&q->avail->idx = q->avail_idx;
	compiler_barrier();
}

void rw_blk_notify(struct rw_blk *d)
{
	/* mmio_wr's barrier keeps every ring store before this exit. */
	mmio_wr(d, RW_VMMIO_QUEUE_NOTIFY, 0);
}

int rw_blk_wait_used(struct rw_blk *d, uint64_t spin_limit, struct rw_virtq_used_elem *elem)
{
	struct rw_vq_raw *q = &d->vq;
	uint64_t spins = 0;

	for (;;) {
		if (q->used->idx != q->used_idx)
			break;
		rw_pause();
		spins++;
		if (spins % RW_BLK_STATUS_POLL == 0 &&
		    (mmio_rd(d, RW_VMMIO_STATUS) & RW_VIRTIO_STATUS_NEEDS_RESET)) {
			d->broken = true;
			return -RW_EIO;
		}
		if (spin_limit && spins >= spin_limit)
			return -RW_ETIMEDOUT;
	}
	/* The entry, the status byte and the data after the index. */
	compiler_barrier();
	if (elem) {
		elem->id = q->used->ring[q->used_idx & (q->size - 1)].id;
		elem->len = q->used->ring[q->used_idx & (q->size - 1)].len;
	}
	q->used_idx++;
	compiler_barrier();
	return 0;
}

/* ------------------------------------------------------------- requests */

/*
 * One request, synchronously: descriptor 0 = header, 1..n = data (split
 * into segments of at most size_max bytes), n+1 = status. The caller keeps
 * the data within the limits of req_max_sectors().
 */
static int blk_request(struct rw_blk *d, uint32_t type, uint64_t sector, void *buf, uint32_t len,
		       bool device_writes)
{
	struct rw_vq_raw *q = &d->vq;
	struct rw_virtio_blk_req_hdr *hdr = (void *)(d->scratch + SCRATCH_HDR);
	volatile uint8_t *status = d->scratch + SCRATCH_STATUS;
	uint32_t seg = d->size_max && d->size_max < len ? d->size_max : len;
	struct rw_virtq_used_elem e;
	uint16_t n = 0;
	uint8_t st;
	int ret;

	if (d->broken)
		return -RW_EIO;
	/* Header, ceil(len / seg) data segments and status must fit the table. */
	if (q->size < 2 || (len && (len + seg - 1) / seg > (uint32_t)q->size - 2u))
		return -RW_EINVAL;
	hdr->type = type;
	hdr->reserved = 0;
	hdr->sector = sector;
	*status = STATUS_UNSET;

	q->desc[0].addr = (uint64_t)hdr;
	q->desc[0].len = sizeof(*hdr);
	q->desc[0].flags = RW_VIRTQ_DESC_F_NEXT;
	q->desc[0].next = 1;
	for (uint32_t off = 0; off < len; off += seg) {
		uint32_t l = len - off < seg ? len - off : seg;

		n++;
		q->desc[n].addr = (uint64_t)buf + off;
		q->desc[n].len = l;
		q->desc[n].flags = RW_VIRTQ_DESC_F_NEXT | (device_writes ? RW_VIRTQ_DESC_F_WRITE : 0);
		q->desc[n].next = (uint16_t)(n + 1);
	}
	n++;
	q->desc[n].addr = (uint64_t)status;
	q->desc[n].len = 1;
	q->desc[n].flags = RW_VIRTQ_DESC_F_WRITE;
	q->desc[n].next = 0;

	rw_blk_publish(d, 0);
	rw_blk_notify(d);
	ret = rw_blk_wait_used(d, d->spin_limit, &e);
	if (ret < 0) {
		/* The chain may still be in the device's hands: reset needed. */
		d->broken = true;
		return ret;
	}
	if (e.id != 0) {
		d->broken = true;
		return -RW_EIO;
	}
	st = *status;
	if (st == RW_VIRTIO_BLK_S_OK)
		return 0;
	if (st == RW_VIRTIO_BLK_S_UNSUPP)
		return -RW_ENOTSUP;
	return -RW_EIO;
}

/* Sectors per request within the device's segment limits and the queue. */
static uint32_t req_max_sectors(const struct rw_blk *d)
{
	uint64_t segs = d->vq.size - 2u; /* header and status take two */
	uint64_t bytes;

	if (d->vq.size < 3)
		return 0;

	if (d->seg_max && d->seg_max < segs)
		segs = d->seg_max;
	bytes = d->size_max ? segs * d->size_max : (uint64_t)RW_BLK_MAX_REQ_SECTORS * RW_BLK_SECTOR_SIZE;
	bytes /= RW_BLK_SECTOR_SIZE;
	return bytes < RW_BLK_MAX_REQ_SECTORS ? (uint32_t)bytes : RW_BLK_MAX_REQ_SECTORS;
}

static int blk_rw(struct rw_blk *d, uint32_t type, uint64_t sector, void *buf, uint32_t nsectors)
{
	uint32_t max = req_max_sectors(d);

	if (!d->mmio)
		return -RW_ENODEV;
	if (!nsectors)
		return 0;
	if (!buf)
		return -RW_EINVAL;
	if (sector > d->capacity || nsectors > d->capacity - sector)
		return -RW_ERANGE;
	if (type == RW_VIRTIO_BLK_T_OUT && d->ro)
		return -RW_EROFS;
	if (!max)
		return -RW_EINVAL;
	while (nsectors) {
		uint32_t n = nsectors < max ? nsectors : max;
		int ret = blk_request(d, type, sector, buf, n * RW_BLK_SECTOR_SIZE,
				      type == RW_VIRTIO_BLK_T_IN);

		if (ret < 0)
			return ret;
		sector += n;
		buf = (uint8_t *)buf + (uint64_t)n * RW_BLK_SECTOR_SIZE;
		nsectors -= n;
	}
	return 0;
}

int rw_blk_read(struct rw_blk *d, uint64_t sector, void *buf, uint32_t nsectors)
{
	return blk_rw(d, RW_VIRTIO_BLK_T_IN, sector, buf, nsectors);
}

int rw_blk_write(struct rw_blk *d, uint64_t sector, const void *buf, uint32_t nsectors)
{
	return blk_rw(d, RW_VIRTIO_BLK_T_OUT, sector, (void *)buf, nsectors);
}

int rw_blk_flush(struct rw_blk *d)
{
	if (!d->mmio)
		return -RW_ENODEV;
	if (!(d->features & (1ULL << RW_VIRTIO_BLK_F_FLUSH)))
		return 0;
	return blk_request(d, RW_VIRTIO_BLK_T_FLUSH, 0, NULL, 0, false);
}

int rw_blk_get_id(struct rw_blk *d, char id[RW_VIRTIO_BLK_ID_BYTES + 1])
{
	uint8_t *raw = d->scratch + SCRATCH_ID;
	int ret;

	id[0] = 0;
	if (!d->mmio)
		return -RW_ENODEV;
	memset(raw, 0, RW_VIRTIO_BLK_ID_BYTES);
	ret = blk_request(d, RW_VIRTIO_BLK_T_GET_ID, 0, raw, RW_VIRTIO_BLK_ID_BYTES, true);
	if (ret < 0)
		return ret;
	for (unsigned i = 0; i < RW_VIRTIO_BLK_ID_BYTES; i++)
		id[i] = (char)raw[i];
	id[RW_VIRTIO_BLK_ID_BYTES] = 0;
	return 0;
}

uint64_t rw_blk_capacity(const struct rw_blk *d)
{
	return d->capacity;
}

bool rw_blk_readonly(const struct rw_blk *d)
{
	return d->ro;
}
