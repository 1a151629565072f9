/*
 * virtio_blk.c - virtio-blk device (behaviour in virtio_blk.h).
 *
 * Record, version 1 (base/record.h encoding, little-endian, in this order):
 *
 *   u64  base            binding: MMIO window of the instance that wrote it
 *   u32  irq             binding: its interrupt line
 *   ...  transport       virtio_mmio_save(): status, features offered /
 *                        acked / unoffered, selectors, interrupt status,
 *                        config generation, queue count, per queue its
 *                        registers and indices (layout in virtio_mmio.c)
 *   u64  disk_size       binding: bytes of the disk the record was taken with
 *   u8   disk_hash[16]   binding: its identity (disk.h)
 *   u64  nranges         runs of blocks present in the overlay
 *   nranges x { u64 start, u64 count }   ascending, count >= 1, separated
 *                        by at least one absent block, inside the disk
 *   ...  tagged fields (none in version 1; unknown ones are skipped)
 *
 * A disk of another size or content than the record's is refused (field
 * "disk size ..." or "disk identity ..."), so a restore given the wrong
 * file says which disk (the record key holds the id) and why. The overlay
 * blocks' content is not in the record: the checkpoint layer stores and
 * restores it (disk_read_block / disk_restore_block); the present map says
 * which blocks come from there and which from the backing file.
 */
#include "virtio_blk.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "device.h"
#include "disk.h"
#include "log.h"
#include "memory.h"
#include "record.h"
#include "util.h"
#include "virtio.h"
#include "virtio_mmio.h"
#include "vm.h"

#define BLK_HDR_BYTES 16u

/* A request handed to the disk. */
struct blk_req {
	struct disk_req io;
	uint16_t head;
	uint8_t *status;
	uint64_t status_gpa;
	uint32_t wlen;          /* writable bytes of the chain */
	unsigned niov;
	uint64_t *gpa;          /* guest address of each iov entry */
	struct iovec iov[];     /* then gpa[niov] */
};

struct virtio_blk {
	struct device dev;      /* first: container_of from ops */
	struct virtio_mmio t;
	struct disk *disk;
	uint8_t config[VIRTIO_BLK_CONFIG_LEN];
	char gid[VIRTIO_BLK_ID_BYTES];
	struct blk_req *inflight[VIRTIO_BLK_QUEUE_MAX]; /* by head index */
	unsigned ninflight;
	bool io_warned;
	struct vq_seg segs[VIRTIO_BLK_SEG_MAX + 2];   /* vq_pop scratch */
	struct iovec iov[VIRTIO_BLK_SEG_MAX + 2];     /* parse scratch */
	uint64_t gpa[VIRTIO_BLK_SEG_MAX + 2];
};

static struct virtio_blk *to_blk(const struct device *dev)
{
	return container_of(dev, struct virtio_blk, dev);
}

/* ------------------------------------------------------------- completion */

/* Bytes of the chain the device wrote, counted from the first writable one. */
static uint32_t used_len(uint32_t wlen, uint32_t prefix)
{
	return prefix + 1 == wlen ? wlen : prefix;
}

/*
 * Write the status byte and return the chain. prefix = data bytes written
 * from the start of the writable part. Lock held.
 */
static void finish(struct virtio_blk *b, uint16_t head, uint8_t *status, uint64_t status_gpa,
		   uint32_t wlen, uint8_t st, uint32_t prefix)
{
	__atomic_store_n(status, st, __ATOMIC_RELAXED);
	mem_mark_dirty(&b->dev.vm->mem, status_gpa, 1);
	vq_push(virtio_mmio_vq(&b->t, 0), &b->dev.vm->mem, head, used_len(wlen, prefix));
	virtio_mmio_used(&b->t, 0);
}

/* A disk request came back. Lock held. */
static void complete_req(struct virtio_blk *b, struct blk_req *r)
{
	uint32_t data = (uint32_t)r->io.len;
	uint8_t st = VIRTIO_BLK_S_OK;

	if (!r->io.write) {
		/* the kernel wrote into these pages, even if it then failed */
		for (unsigned i = 0; i < r->niov; i++)
			mem_mark_dirty(&b->dev.vm->mem, r->gpa[i], r->iov[i].iov_len);
	}
	if (r->io.result) {
		st = VIRTIO_BLK_S_IOERR;
		data = 0;
		if (!b->io_warned)
			rw_warn("%s: disk I/O failed: %s (further failures are not logged)",
				b->dev.id, rw_strerror(r->io.result));
		b->io_warned = true;
	} else if (r->io.write) {
		data = 0;
	}
	finish(b, r->head, r->status, r->status_gpa, r->wlen, st, data);
	if (b->inflight[r->head] == r) {
		b->inflight[r->head] = NULL;
		b->ninflight--;
	}
	free(r);
}

static void complete_list(struct virtio_blk *b, struct disk_req *list)
{
	while (list) {
		struct disk_req *next = list->next;

		complete_req(b, container_of(list, struct blk_req, io));
		list = next;
	}
}

/* Wait for every request in flight. Lock held. */
static void blk_drain(void *opaque)
{
	struct virtio_blk *b = opaque;

	while (b->ninflight) {
		struct disk_req *list = disk_reap(b->disk, true);

		if (!list) {
			rw_error("%s: %u requests in flight that the disk does not know about",
				 b->dev.id, b->ninflight);
			break;
		}
		complete_list(b, list);
	}
}

/* Event thread: the disk's completion eventfd fired. */
static void blk_event(void *opaque, int fd, uint32_t events)
{
	struct virtio_blk *b = opaque;

	disk_event_clear(b->disk);
	virtio_mmio_lock(&b->t);
	complete_list(b, disk_reap(b->disk, false));
	virtio_mmio_unlock(&b->t);
}

/* --------------------------------------------------------------- requests */

/* Map [skip, skip+len) of one side of the chain to b->iov / b->gpa. */
static unsigned chain_iov(struct virtio_blk *b, const struct vq_chain *c, bool write,
			  uint64_t skip, uint64_t len)
{
	unsigned n = 0;

	for (unsigned i = 0; i < c->nsegs && len; i++) {
		const struct vq_seg *s = &c->segs[i];
		uint64_t k;

		if (s->write != write)
			continue;
		if (skip >= s->len) {
			skip -= s->len;
			continue;
		}
		k = MIN((uint64_t)s->len - skip, len);
		b->iov[n].iov_base = (uint8_t *)s->hva + skip;
		b->iov[n].iov_len = k;
		b->gpa[n] = s->gpa + skip;
		n++;
		len -= k;
		skip = 0;
	}
	return n;
}

/* Copy len bytes at offset skip of the chain's readable (or writable) side. */
static void chain_copy(struct virtio_blk *b, const struct vq_chain *c, bool write,
		       uint64_t skip, void *buf, uint64_t len)
{
	unsigned n = chain_iov(b, c, write, skip, len);
	uint8_t *p = buf;

	for (unsigned i = 0; i < n; i++) {
		memcpy(p, b->iov[i].iov_base, b->iov[i].iov_len);
		p += b->iov[i].iov_len;
	}
}

/*
 * One chain. Fails the request (IOERR/UNSUPP) when a status byte can be
 * written, else puts the device in DEVICE_NEEDS_RESET. Lock held.
 */
static void handle_chain(struct virtio_blk *b, const struct vq_chain *c)
{
	struct virtio_mmio *t = &b->t;
	const struct vq_seg *last = &c->last;
	uint64_t cap = disk_size(b->disk) / DISK_SECTOR_SIZE;
	uint8_t hdr[BLK_HDR_BYTES], *status;
	uint64_t status_gpa, sector, data;
	uint32_t type, wlen;
	const char *why = NULL;
	uint8_t st = VIRTIO_BLK_S_IOERR;
	uint32_t prefix = 0;
	struct blk_req *r;
	unsigned n;
	bool write;

	if (b->inflight[c->head]) {
		virtio_mmio_fail(t, "a descriptor chain still in flight was made available again");
		return;
	}
	if (!last->write || !last->len || !last->hva) {
		virtio_mmio_fail(t, "request without a writable status byte inside guest RAM");
		return;
	}
	status = (uint8_t *)last->hva + last->len - 1;
	status_gpa = last->gpa + last->len - 1;
	wlen = (uint32_t)MIN(c->wlen, (uint64_t)UINT32_MAX);

	if (c->bad_order)
		why = "a device-readable buffer after a device-writable one";
	else if (c->bad_addr)
		why = "a buffer outside guest RAM (or longer than it)";
	else if (c->overflow) /* segs holds seg_max data buffers, a header and a status */
		why = "more data segments than seg_max";
	else if (c->rlen + c->wlen > VIRTIO_BLK_MAX_BYTES)
		why = "a request larger than the device accepts";
	else if (c->rlen < BLK_HDR_BYTES)
		why = "a request header shorter than 16 bytes";
	if (why)
		goto fail;

	chain_copy(b, c, false, 0, hdr, sizeof(hdr));
	type = get_le32(hdr);
	sector = get_le64(hdr + 8);

	switch (type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		write = type == VIRTIO_BLK_T_OUT;
		if (write ? c->wlen != 1 : c->rlen != BLK_HDR_BYTES) {
			why = write ? "an OUT request with device-writable data"
				    : "an IN request with device-readable data";
			goto fail;
		}
		data = write ? c->rlen - BLK_HDR_BYTES : c->wlen - 1;
		if (data % DISK_SECTOR_SIZE) {
			why = "a data length that is not a multiple of 512";
			goto fail;
		}
		if (sector > cap || data / DISK_SECTOR_SIZE > cap - sector) {
			rw_debug("%s: sectors %llu+%llu beyond the disk's %llu", b->dev.id,
				 (unsigned long long)sector,
				 (unsigned long long)(data / DISK_SECTOR_SIZE),
				 (unsigned long long)cap);
			goto fail_quiet;
		}
		if (write && disk_readonly(b->disk))
			goto fail_quiet;
		if (!data) {
			st = VIRTIO_BLK_S_OK;
			break;
		}
		/* a disk write takes the guest's readable buffers, a read fills writable ones */
		n = chain_iov(b, c, !write, write ? BLK_HDR_BYTES : 0, data);
		r = malloc(sizeof(*r) + n * (sizeof(struct iovec) + sizeof(uint64_t)));
		if (!r) {
			rw_error("%s: out of memory for a request", b->dev.id);
			goto fail_quiet;
		}
		memset(r, 0, sizeof(*r));
		r->head = c->head;
		r->status = status;
		r->status_gpa = status_gpa;
		r->wlen = wlen;
		r->niov = n;
		r->gpa = (uint64_t *)(r->iov + n);
		memcpy(r->iov, b->iov, n * sizeof(struct iovec));
		memcpy(r->gpa, b->gpa, n * sizeof(uint64_t));
		r->io.write = write;
		r->io.offset = sector * DISK_SECTOR_SIZE;
		r->io.len = data;
		r->io.iov = r->iov;
		r->io.iovcnt = n;
		b->inflight[c->head] = r;
		b->ninflight++;
		if (disk_submit(b->disk, &r->io))
			complete_req(b, r);
		return;
	case VIRTIO_BLK_T_FLUSH:
		if (c->rlen != BLK_HDR_BYTES || c->wlen != 1) {
			why = "a FLUSH request with data";
			goto fail;
		}
		st = VIRTIO_BLK_S_OK;
		break;
	case VIRTIO_BLK_T_GET_ID:
		if (c->rlen != BLK_HDR_BYTES) {
			why = "a GET_ID request with device-readable data";
			goto fail;
		}
		data = MIN(c->wlen - 1, (uint64_t)VIRTIO_BLK_ID_BYTES);
		n = chain_iov(b, c, true, 0, data);
		for (unsigned i = 0, off = 0; i < n; i++) {
			memcpy(b->iov[i].iov_base, b->gid + off, b->iov[i].iov_len);
			mem_mark_dirty(&b->dev.vm->mem, b->gpa[i], b->iov[i].iov_len);
			off += (unsigned)b->iov[i].iov_len;
		}
		prefix = (uint32_t)data;
		st = VIRTIO_BLK_S_OK;
		break;
	default:
		rw_debug("%s: unsupported request type %u", b->dev.id, type);
		st = VIRTIO_BLK_S_UNSUPP;
		break;
	}
	finish(b, c->head, status, status_gpa, wlen, st, prefix);
	return;

fail:
	virtio_mmio_guest_error(t, why);
fail_quiet:
	finish(b, c->head, status, status_gpa, wlen, VIRTIO_BLK_S_IOERR, 0);
}

/* The driver notified the queue. Lock held. */
static void blk_notify(void *opaque, unsigned q)
{
	struct virtio_blk *b = opaque;
	struct virtq *vq = virtio_mmio_vq(&b->t, q);
	struct vq_chain c = { .segs = b->segs, .cap = ARRAY_SIZE(b->segs) };
	const char *why = NULL;
	uint16_t end;

	/*
	 * Only what was available when the notify came: the driver notifies
	 * again for anything it adds later, and a vCPU cannot keep this one
	 * busy forever.
	 */
	if (vq_avail(vq, &end, &why) < 0) {
		virtio_mmio_fail(&b->t, why);
		return;
	}
	while (vq->last_avail != end && virtio_mmio_queue_live(&b->t, q)) {
		if (vq_pop(vq, &b->dev.vm->mem, &c, &why)) {
			virtio_mmio_fail(&b->t, why);
			break;
		}
		handle_chain(b, &c);
	}
	disk_kick(b->disk);
	/* what the kernel finished during submission completes now */
	complete_list(b, disk_reap(b->disk, false));
}

static void blk_config_read(void *opaque, uint32_t off, void *data, uint32_t len)
{
	struct virtio_blk *b = opaque;

	memcpy(data, b->config + off, len);
}

static const struct virtio_mmio_dev_ops blk_transport_ops = {
	.notify = blk_notify,
	.drain = blk_drain,
	.reset = NULL,
	.config_read = blk_config_read,
};

/* ---------------------------------------------------------------- record */

struct blk_state {
	struct virtio_mmio_state t;
	struct disk_range *ranges;
	uint64_t nranges;
};

static int blk_save(const struct device *dev, struct rec_writer *w)
{
	struct virtio_blk *b = to_blk(dev);
	uint8_t hash[DISK_HASH_BYTES];
	uint64_t size, start, count, n = 0;

	virtio_mmio_lock(&b->t);
	rec_put_u64(w, b->t.base);
	rec_put_u32(w, b->t.irq);
	virtio_mmio_save(&b->t, w);
	disk_identity(b->disk, &size, hash);
	rec_put_u64(w, size);
	rec_put_bytes(w, hash, sizeof(hash));
	for (uint64_t from = 0; disk_present_next(b->disk, from, &start, &count);
	     from = start + count)
		n++;
	rec_put_u64(w, n);
	for (uint64_t from = 0; disk_present_next(b->disk, from, &start, &count);
	     from = start + count) {
		rec_put_u64(w, start);
		rec_put_u64(w, count);
	}
	virtio_mmio_unlock(&b->t);
	return rec_writer_error(w);
}

static int blk_parse(const struct virtio_blk *b, struct rec_reader *r, uint32_t version,
		     struct blk_state *st)
{
	uint8_t hash[DISK_HASH_BYTES], want_hash[DISK_HASH_BYTES];
	uint64_t base, size, want_size, nblocks = disk_nblocks(b->disk), prev_end = 0;
	struct rec_reader field;
	uint32_t irq;
	uint16_t tag;
	int ret;

	memset(st, 0, sizeof(*st));
	if (version != 1 && version != 2)
		return rec_fail(r, RW_EVERSION, "version");
	rec_get_u64(r, &base);
	if (rec_get_u32(r, &irq))
		return rec_error(r);
	if (base != b->t.base)
		return rec_fail(r, RW_ECORRUPT, "base (record of another MMIO window)");
	if (irq != b->t.irq)
		return rec_fail(r, RW_ECORRUPT, "irq (record of another interrupt line)");
	ret = virtio_mmio_parse(&b->t, r, &st->t);
	if (ret)
		return ret;
	rec_get_u64(r, &size);
	if (rec_get_bytes(r, hash, sizeof(hash)))
		return rec_error(r);
	disk_identity(b->disk, &want_size, want_hash);
	/* version 1 hashed a disk over 256 MiB by samples */
	if (version == 1 && size == want_size && disk_identity_v1(b->disk, want_hash))
		return rec_fail(r, -EIO, "disk identity (the disk file cannot be read)");
	if (size != want_size)
		return rec_fail(r, RW_ECORRUPT,
				"disk size (this disk file's size differs from the checkpoint's)");
	if (memcmp(hash, want_hash, sizeof(hash)))
		return rec_fail(r, RW_ECORRUPT,
				"disk identity (this disk file's content differs from the "
				"checkpoint's)");
	if (rec_get_u64(r, &st->nranges))
		return rec_error(r);
	/* runs are separated by absent blocks, each field pair is 16 bytes */
	if (st->nranges > (nblocks + 1) / 2 || st->nranges > rec_remaining(r) / 16)
		return rec_fail(r, RW_ECORRUPT, "present range count");
	if (st->nranges) {
		st->ranges = calloc(st->nranges, sizeof(*st->ranges));
		if (!st->ranges)
			return rec_fail(r, -ENOMEM, "present ranges");
	}
	for (uint64_t i = 0; i < st->nranges; i++) {
		struct disk_range *g = &st->ranges[i];

		rec_get_u64(r, &g->start);
		if (rec_get_u64(r, &g->count))
			return rec_error(r);
		if (!g->count || g->start >= nblocks || g->count > nblocks - g->start ||
		    (i && g->start <= prev_end))
			return rec_fail(r, RW_ECORRUPT,
					"present ranges (empty, overlapping, unordered or beyond "
					"the disk)");
		prev_end = g->start + g->count;
	}
	while ((ret = rec_next_tag(r, &tag, &field)) > 0)
		if (rec_tag_unknown(r, tag))
			return rec_error(r);
	if (ret < 0 || rec_expect_end(r))
		return rec_error(r);
	return 0;
}

static int blk_validate(const struct device *dev, struct rec_reader *r, uint32_t version)
{
	struct blk_state st;
	int ret = blk_parse(to_blk(dev), r, version, &st);

	free(st.ranges);
	return ret;
}

static int blk_load(struct device *dev, struct rec_reader *r, uint32_t version)
{
	struct virtio_blk *b = to_blk(dev);
	struct blk_state st;
	int ret;

	ret = blk_parse(b, r, version, &st);
	if (ret)
		goto out;
	virtio_mmio_lock(&b->t);
	blk_drain(b);
	ret = disk_present_set(b->disk, st.ranges, st.nranges);
	if (!ret)
		ret = virtio_mmio_apply(&b->t, &st.t);
	virtio_mmio_unlock(&b->t);
out:
	free(st.ranges);
	return ret;
}

/* ------------------------------------------------------------ device ops */

static void blk_destroy(struct device *dev)
{
	struct virtio_blk *b = to_blk(dev);

	virtio_mmio_lock(&b->t);
	blk_drain(b);
	virtio_mmio_unlock(&b->t);
	virtio_mmio_uninit(&b->t);
	disk_close(b->disk);
	free(b);
}

static int blk_quiesce(struct device *dev)
{
	virtio_mmio_quiesce(&to_blk(dev)->t);
	return 0;
}

static int blk_resume(struct device *dev)
{
	virtio_mmio_resume(&to_blk(dev)->t);
	return 0;
}

static int blk_reset(struct device *dev)
{
	struct virtio_blk *b = to_blk(dev);

	virtio_mmio_lock(&b->t);
	virtio_mmio_reset_locked(&b->t);
	virtio_mmio_unlock(&b->t);
	return 0;
}

static const struct device_ops blk_ops = {
	.destroy = blk_destroy,
	.quiesce = blk_quiesce,
	.resume = blk_resume,
	.reset = blk_reset,
	.save = blk_save,
	.validate = blk_validate,
	.load = blk_load,
};

/* ---------------------------------------------------------------- content */

/* The disk's blocks are the device's content; its overlay holds them. */
static const char *blk_content_name(const struct device *dev)
{
	return disk_name(to_blk(dev)->disk);
}

static uint64_t blk_content_nblocks(const struct device *dev)
{
	return disk_nblocks(to_blk(dev)->disk);
}

static int64_t blk_take_changed(struct device *dev, uint64_t **blocks)
{
	return disk_take_dirty(to_blk(dev)->disk, DISK_EPOCH_CKPT, blocks);
}

static void blk_give_back(struct device *dev, const uint64_t *blocks, uint64_t n)
{
	disk_give_back(to_blk(dev)->disk, DISK_EPOCH_CKPT, blocks, n);
}

static int blk_content_read(struct device *dev, uint64_t first, uint64_t n, void *buf)
{
	return disk_read_present(to_blk(dev)->disk, first, n, buf);
}

static bool blk_held_next(const struct device *dev, uint64_t from, uint64_t *start, uint64_t *count)
{
	return disk_present_next(to_blk(dev)->disk, from, start, count);
}

static int blk_content_restore(struct device *dev, uint64_t idx, const void *buf)
{
	return disk_restore_block(to_blk(dev)->disk, idx, buf, DISK_EPOCH_CKPT);
}

static int blk_read_current(struct device *dev, uint64_t idx, void *buf)
{
	return disk_read_block(to_blk(dev)->disk, idx, buf);
}

static const struct device_content_ops blk_content_ops = {
	.name = blk_content_name,
	.nblocks = blk_content_nblocks,
	.take_changed = blk_take_changed,
	.give_back = blk_give_back,
	.read = blk_content_read,
	.held_next = blk_held_next,
	.restore = blk_content_restore,
	.read_current = blk_read_current,
};

const struct device_type virtio_blk_device_type = {
	.name = VIRTIO_BLK_TYPE_NAME,
	.state_version = VIRTIO_BLK_STATE_VERSION,
	.min_version = 1,
	.ops = &blk_ops,
	.content = &blk_content_ops,
};

struct device *virtio_blk_device(struct virtio_blk *b)
{
	return &b->dev;
}

bool virtio_blk_is(const struct device *dev)
{
	return dev && dev->type == &virtio_blk_device_type;
}

struct virtio_blk *virtio_blk_from_device(struct device *dev)
{
	return virtio_blk_is(dev) ? to_blk(dev) : NULL;
}

struct disk *virtio_blk_disk(struct device *dev)
{
	return virtio_blk_is(dev) ? to_blk(dev)->disk : NULL;
}

/* ----------------------------------------------------------------- create */

static void build_config(struct virtio_blk *b)
{
	uint8_t *c = b->config;

	memset(c, 0, sizeof(b->config));
	put_le64(c + VIRTIO_BLK_CFG_CAPACITY, disk_size(b->disk) / DISK_SECTOR_SIZE);
	put_le32(c + VIRTIO_BLK_CFG_SIZE_MAX, VIRTIO_BLK_SIZE_MAX);
	put_le32(c + VIRTIO_BLK_CFG_SEG_MAX, VIRTIO_BLK_SEG_MAX);
	put_le32(c + VIRTIO_BLK_CFG_BLK_SIZE, DISK_SECTOR_SIZE);
	/* topology: 2^3 logical blocks per physical block, min/opt I/O one block */
	c[VIRTIO_BLK_CFG_TOPOLOGY] = 3;
	c[VIRTIO_BLK_CFG_TOPOLOGY + 1] = 0;
	put_le16(c + VIRTIO_BLK_CFG_TOPOLOGY + 2, DISK_BLOCK_SIZE / DISK_SECTOR_SIZE);
	put_le32(c + VIRTIO_BLK_CFG_TOPOLOGY + 4, DISK_BLOCK_SIZE / DISK_SECTOR_SIZE);
	put_le16(c + VIRTIO_BLK_CFG_NUM_QUEUES, 1);
}

static bool id_ok(const char *id)
{
	size_t n = strlen(id);

	if (!n || n >= DEV_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (id[i] <= ' ' || id[i] == '/' || id[i] > '~')
			return false;
	return true;
}

int virtio_blk_create(struct vm *vm, uint64_t base, uint32_t irq,
		      const struct vm_disk_config *cfg, struct virtio_blk **out)
{
	struct virtio_mmio_params p = {
		.device_id = VIRTIO_ID_BLOCK,
		.nqueues = 1,
		.queue_max = VIRTIO_BLK_QUEUE_MAX,
		.config_len = VIRTIO_BLK_CONFIG_LEN,
	};
	struct virtio_blk *b;
	int ret = -ENOMEM, efd;

	*out = NULL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return ret;
	b->dev.type = &virtio_blk_device_type;
	if (cfg->id[0])
		snprintf(b->dev.id, sizeof(b->dev.id), "%s", cfg->id);
	else
		snprintf(b->dev.id, sizeof(b->dev.id), "virtio-blk@mmio-0x%llx",
			 (unsigned long long)base);
	ret = -EINVAL;
	if (!id_ok(b->dev.id)) {
		rw_error("virtio-blk: invalid id '%s'", b->dev.id);
		goto fail_free;
	}
	/* the likely refusal comes before anything is opened or claimed */
	ret = -EEXIST;
	if (vm_find_device(vm, VIRTIO_BLK_TYPE_NAME, b->dev.id)) {
		rw_error("%s: two disks have this id (give each --disk its own id=)", b->dev.id);
		goto fail_free;
	}
	memset(b->gid, 0, sizeof(b->gid));
	memcpy(b->gid, b->dev.id, MIN(strlen(b->dev.id), sizeof(b->gid)));

	ret = disk_open(cfg, b->dev.id, &b->disk);
	if (ret)
		goto fail_free;
	build_config(b);
	p.features = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_BLK_F_SIZE_MAX) |
		     VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) | VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) |
		     VIRTIO_BIT(VIRTIO_BLK_F_FLUSH) | VIRTIO_BIT(VIRTIO_BLK_F_TOPOLOGY);
	if (disk_readonly(b->disk))
		p.features |= VIRTIO_BIT(VIRTIO_BLK_F_RO);
	ret = virtio_mmio_init(&b->t, vm, base, irq, &p, &blk_transport_ops, b, b->dev.id);
	if (ret) {
		rw_error("%s: placing the device at 0x%llx: %s", b->dev.id,
			 (unsigned long long)base,
			 ret == -ENOSPC ? "no virtio slot left" : rw_strerror(ret));
		goto fail_disk;
	}
	efd = disk_event_fd(b->disk);
	if (efd >= 0) {
		ret = vm_event_add(vm, efd, blk_event, b);
		if (ret) {
			rw_error("%s: watching I/O completions: %s", b->dev.id, rw_strerror(ret));
			goto fail_transport;
		}
	}
	ret = vm_add_device(vm, &b->dev);
	if (ret) {
		/* closing the disk closes its eventfd, which leaves the epoll set */
		rw_error("%s: adding the device: %s", b->dev.id, rw_strerror(ret));
		goto fail_transport;
	}
	*out = b;
	return 0;

fail_transport:
	virtio_mmio_uninit(&b->t);
fail_disk:
	disk_close(b->disk);
fail_free:
	free(b);
	return ret;
}
