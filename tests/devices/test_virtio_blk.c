/*
 * virtio-mmio transport and virtio-blk on a real KVM VM built by
 * board_build() with --disk configurations. No vCPU runs: the test plays
 * the guest driver through the MMIO bus (bus_dispatch), builds its
 * virtqueues in guest RAM itself, and plays the event thread (run_events)
 * for io_uring completions.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "board.h"
#include "bus.h"
#include "device.h"
#include "disk.h"
#include "memory.h"
#include "record.h"
#include "rw/abi.h"
#include "disk_files.h"
#include "testutil.h"
#include "vmtest.h"
#include "util.h"
#include "virtio.h"
#include "virtio_blk.h"
#include "virtio_mmio.h"
#include "vm.h"

#define RAM (64 * MiB)
#define WIN0 RW_GPA_VIRTIO_BASE
#define WIN1 (RW_GPA_VIRTIO_BASE + RW_VIRTIO_WINDOW)
#define AREA_A (16 * MiB) /* queue of the device at WIN0 */
#define AREA_B (20 * MiB) /* queue of the device at WIN1 */
#define DATA (32 * MiB)   /* data buffers */
#define DISK_BYTES (1 * MiB)

#define ST_ACK VIRTIO_STATUS_ACKNOWLEDGE
#define ST_DRV VIRTIO_STATUS_DRIVER
#define ST_FOK VIRTIO_STATUS_FEATURES_OK
#define ST_DOK VIRTIO_STATUS_DRIVER_OK
#define ST_NR VIRTIO_STATUS_NEEDS_RESET

/* ---------------------------------------------------------- the machine */

static uint8_t pat(uint64_t seed, uint64_t i)
{
	uint64_t x = (seed + 1) * 0x9e3779b97f4a7c15ULL ^ (i * 0xbf58476d1ce4e5b9ULL);

	x ^= x >> 31;
	return (uint8_t)(x ^ (x >> 17));
}

static void fill(void *buf, uint64_t len, uint64_t seed)
{
	for (uint64_t i = 0; i < len; i++)
		((uint8_t *)buf)[i] = pat(seed, i);
}

static char *make_file(const char *tag, uint64_t size, uint64_t seed)
{
	char *path = malloc(4096);
	uint8_t *buf = malloc(size);

	snprintf(path, 4096, "%s/disk.img", rw_test_tmpdir(tag));
	fill(buf, size, seed);
	write_disk_file(path, buf, size);
	free(buf);
	return path;
}

struct disk_spec {
	const char *path;
	const char *id;   /* NULL: from the address */
	bool ro;
	enum disk_engine engine;
};

static struct vm *machine(const struct disk_spec *d, unsigned n)
{
	struct vm_config cfg;
	struct vm *vm = NULL;

	rw_test_require_kvm();
	config_init(&cfg);
	cfg.mem_size = RAM;
	cfg.serial_in = false;
	snprintf(cfg.serial_out, sizeof(cfg.serial_out), "/dev/null");
	snprintf(cfg.kernel, sizeof(cfg.kernel), "%s", rw_test_guest("hello"));
	for (unsigned i = 0; i < n; i++) {
		struct vm_disk_config *c = &cfg.disks[cfg.ndisks++];

		snprintf(c->path, sizeof(c->path), "%s", d[i].path);
		if (d[i].id)
			snprintf(c->id, sizeof(c->id), "%s", d[i].id);
		c->ro = d[i].ro;
		c->engine = d[i].engine;
	}
	cr_assert_eq(vm_create(&cfg, &vm), 0);
	cr_assert_eq(board_build(vm), 0);
	cr_assert_eq(vm_boot(vm), 0);
	return vm;
}

/* Two disks "a" (uring) and "b" (sync) on the given files. */
static struct vm *machine2_on(const char *pa, const char *pb)
{
	struct disk_spec d[2] = {
		{ pa, "a", false, DISK_ENGINE_URING },
		{ pb, "b", false, DISK_ENGINE_SYNC },
	};

	return machine(d, 2);
}

/* Two disks "a" (uring) and "b" (sync) on fresh 1 MiB files. */
static struct vm *machine2(char **pa, char **pb)
{
	struct disk_spec d[2] = {
		{ make_file("vblk-a", DISK_BYTES, 1), "a", false, DISK_ENGINE_URING },
		{ make_file("vblk-b", DISK_BYTES, 2), "b", false, DISK_ENGINE_SYNC },
	};
	struct vm *vm = machine(d, 2);

	if (pa)
		*pa = (char *)d[0].path;
	else
		free((char *)d[0].path);
	if (pb)
		*pb = (char *)d[1].path;
	else
		free((char *)d[1].path);
	return vm;
}

static struct device *dev_at(struct vm *vm, const char *id)
{
	struct device *d = vm_find_device(vm, VIRTIO_BLK_TYPE_NAME, id);

	cr_assert_not_null(d, "no virtio-blk '%s'", id);
	return d;
}

static unsigned run_events(struct vm *vm, int timeout_ms)
{
	return rw_test_run_events(vm, timeout_ms, 100000);
}

/* ------------------------------------------------------- the guest's side */

static uint32_t rd(struct vm *vm, uint64_t base, uint32_t off)
{
	uint32_t v = 0xdeadbeef;

	cr_assert(bus_dispatch(&vm->buses[BUS_MMIO], NULL, base + off, &v, 4, false));
	return v;
}

static void wr(struct vm *vm, uint64_t base, uint32_t off, uint32_t v)
{
	cr_assert(bus_dispatch(&vm->buses[BUS_MMIO], NULL, base + off, &v, 4, true));
}

static void *hva(struct vm *vm, uint64_t gpa, uint64_t len)
{
	void *p = mem_gpa_to_hva(&vm->mem, gpa, len);

	cr_assert_not_null(p, "gpa 0x%llx", (unsigned long long)gpa);
	return p;
}

struct drv {
	struct vm *vm;
	uint64_t base;
	uint16_t size;
	uint64_t desc, avail, used, hdr, status;
	uint16_t avail_idx, used_idx;
};

static uint64_t offered(struct vm *vm, uint64_t base)
{
	wr(vm, base, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	uint64_t lo = rd(vm, base, VIRTIO_MMIO_DEVICE_FEATURES);
	wr(vm, base, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	return lo | (uint64_t)rd(vm, base, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
}

static void ack_features(struct vm *vm, uint64_t base, uint64_t f)
{
	wr(vm, base, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(vm, base, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)f);
	wr(vm, base, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(vm, base, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(f >> 32));
}

static void queue_regs(struct drv *d)
{
	struct vm *vm = d->vm;

	wr(vm, d->base, VIRTIO_MMIO_QUEUE_SEL, 0);
	wr(vm, d->base, VIRTIO_MMIO_QUEUE_NUM, d->size);
	wr(vm, d->base, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)d->desc);
	wr(vm, d->base, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(d->desc >> 32));
	wr(vm, d->base, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)d->avail);
	wr(vm, d->base, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (uint32_t)(d->avail >> 32));
	wr(vm, d->base, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)d->used);
	wr(vm, d->base, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (uint32_t)(d->used >> 32));
}

/* The driver's initialisation sequence (virtio 1.2 3.1.1 and 4.2.3). */
static void drv_init(struct drv *d, struct vm *vm, uint64_t base, uint64_t area, uint16_t size)
{
	uint64_t want = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_BLK_F_FLUSH) |
			VIRTIO_BIT(VIRTIO_BLK_F_RO) | VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) |
			VIRTIO_BIT(VIRTIO_BLK_F_SIZE_MAX) | VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE);

	memset(d, 0, sizeof(*d));
	d->vm = vm;
	d->base = base;
	d->size = size;
	d->desc = area;
	d->avail = area + 0x2000;
	d->used = area + 0x3000;
	d->hdr = area + 0x5000;
	d->status = area + 0x5100;
	memset(hva(vm, area, 0x6000), 0, 0x6000);

	wr(vm, base, VIRTIO_MMIO_STATUS, 0);
	cr_assert_eq(rd(vm, base, VIRTIO_MMIO_STATUS), 0);
	wr(vm, base, VIRTIO_MMIO_STATUS, ST_ACK);
	wr(vm, base, VIRTIO_MMIO_STATUS, ST_ACK | ST_DRV);
	ack_features(vm, base, offered(vm, base) & want);
	wr(vm, base, VIRTIO_MMIO_STATUS, ST_ACK | ST_DRV | ST_FOK);
	cr_assert_eq(rd(vm, base, VIRTIO_MMIO_STATUS), ST_ACK | ST_DRV | ST_FOK);
	wr(vm, base, VIRTIO_MMIO_QUEUE_SEL, 0);
	cr_assert_eq(rd(vm, base, VIRTIO_MMIO_QUEUE_READY), 0);
	cr_assert_eq(rd(vm, base, VIRTIO_MMIO_QUEUE_NUM_MAX), VIRTIO_BLK_QUEUE_MAX);
	queue_regs(d);
	wr(vm, base, VIRTIO_MMIO_QUEUE_READY, 1);
	cr_assert_eq(rd(vm, base, VIRTIO_MMIO_QUEUE_READY), 1);
	wr(vm, base, VIRTIO_MMIO_STATUS, ST_ACK | ST_DRV | ST_FOK | ST_DOK);
	cr_assert_eq(rd(vm, base, VIRTIO_MMIO_STATUS), ST_ACK | ST_DRV | ST_FOK | ST_DOK);
}

static void set_desc(struct drv *d, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	uint8_t *p = hva(d->vm, d->desc + 16ull * i, 16);

	memcpy(p, &addr, 8);
	memcpy(p + 8, &len, 4);
	memcpy(p + 12, &flags, 2);
	memcpy(p + 14, &next, 2);
}

static void set_avail_idx(struct drv *d, uint16_t idx)
{
	__atomic_store_n((uint16_t *)hva(d->vm, d->avail + 2, 2), idx, __ATOMIC_RELEASE);
}

static void publish(struct drv *d, uint16_t head)
{
	uint16_t *ring = hva(d->vm, d->avail + 4, 2ull * d->size);

	ring[d->avail_idx % d->size] = head;
	set_avail_idx(d, ++d->avail_idx);
}

static void notify(struct drv *d)
{
	wr(d->vm, d->base, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
}

static uint16_t used_idx(struct drv *d)
{
	return __atomic_load_n((uint16_t *)hva(d->vm, d->used + 2, 2), __ATOMIC_ACQUIRE);
}

/* Wait for the next used entry (playing the event thread). */
static void wait_used(struct drv *d, uint32_t *id, uint32_t *len)
{
	uint64_t t0 = rw_now_ns();
	uint8_t *e;

	while (used_idx(d) == d->used_idx) {
		cr_assert_lt(rw_now_ns() - t0, 5000000000ULL, "no completion within 5 s");
		run_events(d->vm, 10);
	}
	e = hva(d->vm, d->used + 4 + 8ull * (d->used_idx % d->size), 8);
	if (id)
		memcpy(id, e, 4);
	if (len)
		memcpy(len, e + 4, 4);
	d->used_idx++;
}

static uint32_t device_status(struct drv *d)
{
	return rd(d->vm, d->base, VIRTIO_MMIO_STATUS);
}

/* A standard 3-descriptor request at head 0; returns the status byte. */
static uint8_t request(struct drv *d, uint32_t type, uint64_t sector, uint64_t data, uint32_t len,
		       bool dev_writes, uint32_t *used_len)
{
	uint8_t *hdr = hva(d->vm, d->hdr, 16), *st = hva(d->vm, d->status, 1);
	uint16_t n = 0;
	uint32_t id;

	memcpy(hdr, &type, 4);
	memset(hdr + 4, 0, 4);
	memcpy(hdr + 8, &sector, 8);
	*st = 0xee;
	set_desc(d, n, d->hdr, 16, VIRTQ_DESC_F_NEXT, (uint16_t)(n + 1));
	n++;
	if (len) {
		set_desc(d, n, data, len, VIRTQ_DESC_F_NEXT | (dev_writes ? VIRTQ_DESC_F_WRITE : 0),
			 (uint16_t)(n + 1));
		n++;
	}
	set_desc(d, n, d->status, 1, VIRTQ_DESC_F_WRITE, 0);
	publish(d, 0);
	notify(d);
	wait_used(d, &id, used_len);
	cr_assert_eq(id, 0);
	return *st;
}

static uint8_t blk_read(struct drv *d, uint64_t sector, uint64_t data, uint32_t len)
{
	return request(d, VIRTIO_BLK_T_IN, sector, data, len, true, NULL);
}

static uint8_t blk_write(struct drv *d, uint64_t sector, uint64_t data, uint32_t len)
{
	return request(d, VIRTIO_BLK_T_OUT, sector, data, len, false, NULL);
}

/* ------------------------------------------------------------- records */

static size_t save(struct device *dev, uint8_t **out)
{
	struct rec_writer w;
	size_t len;

	rec_writer_init(&w, dev->type->name, dev->type->state_version);
	cr_assert_eq(dev->type->ops->save(dev, &w), 0);
	cr_assert_eq(rec_take(&w, out, &len), 0);
	rec_writer_free(&w);
	return len;
}

/* What the checkpoint layer does: open, validate, then load. */
static int load(struct device *dev, const uint8_t *data, size_t len, const char **field)
{
	return rw_test_load_record(dev, data, len, field);
}

/* The record, decoded field by field (virtio_blk.c and virtio_mmio.c). */
struct blk_rec {
	uint64_t base;
	uint32_t irq, device_id, status;
	uint64_t offered, acked, unoffered;
	uint32_t dsel, fsel, qsel, isr, gen;
	uint16_t nq, qmax;
	uint32_t qnum;
	bool ready;
	uint64_t desc, drv, dev;
	uint16_t last_avail, used;
	uint32_t version;       /* of the record: 1 sampled a large disk's identity */
	uint64_t size;
	uint8_t hash[16];
	uint64_t nranges;
	uint64_t ranges[64][2];
};

static void rec_decode(const uint8_t *data, size_t len, struct blk_rec *f)
{
	struct rec_reader r;

	memset(f, 0, sizeof(*f));
	cr_assert_eq(rec_open(&r, data, len, VIRTIO_BLK_TYPE_NAME, 1, VIRTIO_BLK_STATE_VERSION), 0);
	f->version = r.version;
	rec_get_u64(&r, &f->base);
	rec_get_u32(&r, &f->irq);
	rec_get_u32(&r, &f->device_id);
	rec_get_u32(&r, &f->status);
	rec_get_u64(&r, &f->offered);
	rec_get_u64(&r, &f->acked);
	rec_get_u64(&r, &f->unoffered);
	rec_get_u32(&r, &f->dsel);
	rec_get_u32(&r, &f->fsel);
	rec_get_u32(&r, &f->qsel);
	rec_get_u32(&r, &f->isr);
	rec_get_u32(&r, &f->gen);
	rec_get_u16(&r, &f->nq);
	cr_assert_eq(f->nq, 1);
	rec_get_u16(&r, &f->qmax);
	rec_get_u32(&r, &f->qnum);
	rec_get_bool(&r, &f->ready);
	rec_get_u64(&r, &f->desc);
	rec_get_u64(&r, &f->drv);
	rec_get_u64(&r, &f->dev);
	rec_get_u16(&r, &f->last_avail);
	rec_get_u16(&r, &f->used);
	rec_get_u64(&r, &f->size);
	rec_get_bytes(&r, f->hash, 16);
	rec_get_u64(&r, &f->nranges);
	cr_assert_leq(f->nranges, 64);
	for (uint64_t i = 0; i < f->nranges; i++) {
		rec_get_u64(&r, &f->ranges[i][0]);
		rec_get_u64(&r, &f->ranges[i][1]);
	}
	cr_assert_eq(rec_expect_end(&r), 0, "the record layout is not the documented one");
}

static size_t rec_encode(const struct blk_rec *f, uint8_t **out)
{
	struct rec_writer w;
	size_t len;

	rec_writer_init(&w, VIRTIO_BLK_TYPE_NAME, f->version);
	rec_put_u64(&w, f->base);
	rec_put_u32(&w, f->irq);
	rec_put_u32(&w, f->device_id);
	rec_put_u32(&w, f->status);
	rec_put_u64(&w, f->offered);
	rec_put_u64(&w, f->acked);
	rec_put_u64(&w, f->unoffered);
	rec_put_u32(&w, f->dsel);
	rec_put_u32(&w, f->fsel);
	rec_put_u32(&w, f->qsel);
	rec_put_u32(&w, f->isr);
	rec_put_u32(&w, f->gen);
	rec_put_u16(&w, f->nq);
	rec_put_u16(&w, f->qmax);
	rec_put_u32(&w, f->qnum);
	rec_put_bool(&w, f->ready);
	rec_put_u64(&w, f->desc);
	rec_put_u64(&w, f->drv);
	rec_put_u64(&w, f->dev);
	rec_put_u16(&w, f->last_avail);
	rec_put_u16(&w, f->used);
	rec_put_u64(&w, f->size);
	rec_put_bytes(&w, f->hash, 16);
	rec_put_u64(&w, f->nranges);
	for (uint64_t i = 0; i < f->nranges; i++) {
		rec_put_u64(&w, f->ranges[i][0]);
		rec_put_u64(&w, f->ranges[i][1]);
	}
	cr_assert_eq(rec_take(&w, out, &len), 0);
	rec_writer_free(&w);
	return len;
}

/* ===================================================== transport tests */

Test(virtio_mmio, identity_features_and_config)
{
	struct vm *vm = machine2(NULL, NULL);
	uint64_t f = offered(vm, WIN0);
	uint64_t cap;
	uint32_t lo, hi;
	uint16_t narrow = 0x1234;

	cr_assert_eq(rd(vm, WIN0, VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
	cr_assert_eq(rd(vm, WIN0, VIRTIO_MMIO_VERSION_REG), 2);
	cr_assert_eq(rd(vm, WIN0, VIRTIO_MMIO_DEVICE_ID), 2);
	cr_assert_eq(rd(vm, WIN0, VIRTIO_MMIO_VENDOR_ID), VIRTIO_MMIO_VENDOR);
	cr_assert(f & VIRTIO_BIT(VIRTIO_F_VERSION_1));
	cr_assert(f & VIRTIO_BIT(VIRTIO_BLK_F_FLUSH));
	cr_assert(f & VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX));
	cr_assert(f & VIRTIO_BIT(VIRTIO_BLK_F_SIZE_MAX));
	cr_assert_not(f & VIRTIO_BIT(VIRTIO_BLK_F_RO));
	cr_assert_not(f & VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC));
	cr_assert_not(f & VIRTIO_BIT(VIRTIO_F_EVENT_IDX));
	wr(vm, WIN0, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
	cr_assert_eq(rd(vm, WIN0, VIRTIO_MMIO_DEVICE_FEATURES), 0);

	/* queues: one, of 256 */
	wr(vm, WIN0, VIRTIO_MMIO_QUEUE_SEL, 0);
	cr_assert_eq(rd(vm, WIN0, VIRTIO_MMIO_QUEUE_NUM_MAX), 256);
	wr(vm, WIN0, VIRTIO_MMIO_QUEUE_SEL, 1);
	cr_assert_eq(rd(vm, WIN0, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
	cr_assert_eq(rd(vm, WIN0, VIRTIO_MMIO_QUEUE_READY), 0);

	/* configuration space: 32-bit halves, a 64-bit read and bytes */
	lo = rd(vm, WIN0, VIRTIO_MMIO_CONFIG + VIRTIO_BLK_CFG_CAPACITY);
	hi = rd(vm, WIN0, VIRTIO_MMIO_CONFIG + VIRTIO_BLK_CFG_CAPACITY + 4);
	cr_assert_eq(((uint64_t)hi << 32 | lo), DISK_BYTES / 512);
	cr_assert(bus_dispatch(&vm->buses[BUS_MMIO], NULL, WIN0 + VIRTIO_MMIO_CONFIG, &cap, 8, false));
	cr_assert_eq(cap, DISK_BYTES / 512);
	cr_assert_eq(rd(vm, WIN0, VIRTIO_MMIO_CONFIG + VIRTIO_BLK_CFG_SEG_MAX), VIRTIO_BLK_SEG_MAX);
	cr_assert_eq(rd(vm, WIN0, VIRTIO_MMIO_CONFIG + VIRTIO_BLK_CFG_SIZE_MAX), VIRTIO_BLK_SIZE_MAX);
	cr_assert_eq(rd(vm, WIN0, VIRTIO_MMIO_CONFIG + VIRTIO_BLK_CFG_BLK_SIZE), 512);
	cr_assert_eq(rd(vm, WIN0, VIRTIO_MMIO_CONFIG_GENERATION), 0);
	/* a register access that is not 32-bit is ignored and reads 0 */
	cr_assert(bus_dispatch(&vm->buses[BUS_MMIO], NULL, WIN0, &narrow, 2, false));
	cr_assert_eq(narrow, 0);
	vm_destroy(vm);
}

Test(virtio_mmio, feature_negotiation_refuses_what_was_not_offered)
{
	struct vm *vm = machine2(NULL, NULL);
	uint64_t f = offered(vm, WIN0);
	struct drv d;

	/* an unoffered feature (indirect descriptors) */
	wr(vm, WIN0, VIRTIO_MMIO_STATUS, ST_ACK | ST_DRV);
	ack_features(vm, WIN0, f | VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC));
	wr(vm, WIN0, VIRTIO_MMIO_STATUS, ST_ACK | ST_DRV | ST_FOK);
	cr_assert_eq(rd(vm, WIN0, VIRTIO_MMIO_STATUS), ST_ACK | ST_DRV, "FEATURES_OK accepted");
	/* rewriting the same half without it makes the set acceptable again */
	ack_features(vm, WIN0, f);
	wr(vm, WIN0, VIRTIO_MMIO_STATUS, ST_ACK | ST_DRV | ST_FOK);
	cr_assert_eq(rd(vm, WIN0, VIRTIO_MMIO_STATUS), ST_ACK | ST_DRV | ST_FOK);

	/* a modern device needs VIRTIO_F_VERSION_1 */
	wr(vm, WIN0, VIRTIO_MMIO_STATUS, 0);
	wr(vm, WIN0, VIRTIO_MMIO_STATUS, ST_ACK | ST_DRV);
	ack_features(vm, WIN0, f & ~VIRTIO_BIT(VIRTIO_F_VERSION_1));
	wr(vm, WIN0, VIRTIO_MMIO_STATUS, ST_ACK | ST_DRV | ST_FOK);
	cr_assert_eq(rd(vm, WIN0, VIRTIO_MMIO_STATUS), ST_ACK | ST_DRV);

	/* the driver cannot clear a bit, nor set NEEDS_RESET */
	drv_init(&d, vm, WIN0, AREA_A, 8);
	wr(vm, WIN0, VIRTIO_MMIO_STATUS, ST_ACK | ST_NR);
	cr_assert_eq(rd(vm, WIN0, VIRTIO_MMIO_STATUS), ST_ACK | ST_DRV | ST_FOK | ST_DOK);
	/* features cannot change after FEATURES_OK */
	ack_features(vm, WIN0, f | VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC));
	cr_assert_eq(blk_read(&d, 0, DATA, 512), VIRTIO_BLK_S_OK);
	vm_destroy(vm);
}

Test(virtio_mmio, reset_and_queue_disable)
{
	struct vm *vm = machine2(NULL, NULL);
	struct drv d;

	drv_init(&d, vm, WIN0, AREA_A, 16);
	cr_assert_eq(blk_read(&d, 0, DATA, 4096), VIRTIO_BLK_S_OK);
	cr_assert_neq(rd(vm, WIN0, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	/* ring registers do not change under a live queue */
	wr(vm, WIN0, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1234);
	cr_assert_eq(blk_read(&d, 1, DATA, 512), VIRTIO_BLK_S_OK);
	/* QueueReady = 0 */
	wr(vm, WIN0, VIRTIO_MMIO_QUEUE_READY, 0);
	cr_assert_eq(rd(vm, WIN0, VIRTIO_MMIO_QUEUE_READY), 0);
	/* Status = 0: back to power-on */
	wr(vm, WIN0, VIRTIO_MMIO_STATUS, 0);
	cr_assert_eq(rd(vm, WIN0, VIRTIO_MMIO_STATUS), 0);
	cr_assert_eq(rd(vm, WIN0, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	cr_assert_eq(rd(vm, WIN0, VIRTIO_MMIO_QUEUE_READY), 0);
	drv_init(&d, vm, WIN0, AREA_A, 16);
	cr_assert_eq(blk_read(&d, 2, DATA, 512), VIRTIO_BLK_S_OK);
	vm_destroy(vm);
}

/* The level KVM's IOAPIC sees on a pin (IRR follows the line of a masked pin). */
static int ioapic_line(struct vm *vm, unsigned pin)
{
	struct kvm_irqchip chip = { .chip_id = KVM_IRQCHIP_IOAPIC };

	cr_assert_eq(ioctl(vm->fd, KVM_GET_IRQCHIP, &chip), 0);
	return (chip.chip.ioapic.irr >> pin) & 1;
}

#define IRQ_A 16 /* GSI of the window at WIN0 (board.c) */

Test(virtio_mmio, interrupt_line_follows_interrupt_status)
{
	struct vm *vm = machine2(NULL, NULL);
	struct drv d;

	cr_assert_eq(vm->nr_virtio, 2);
	cr_assert_eq(vm->virtio[0].irq, IRQ_A);
	drv_init(&d, vm, WIN0, AREA_A, 8);
	cr_assert_eq(ioapic_line(vm, IRQ_A), 0);
	cr_assert_eq(blk_read(&d, 0, DATA, 512), VIRTIO_BLK_S_OK);
	cr_assert_eq(rd(vm, WIN0, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_VRING);
	cr_assert_eq(ioapic_line(vm, IRQ_A), 1);
	wr(vm, WIN0, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_INT_VRING);
	cr_assert_eq(rd(vm, WIN0, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	cr_assert_eq(ioapic_line(vm, IRQ_A), 0);
	/* a driver that polls asks for no interrupt and gets none */
	*(uint16_t *)hva(vm, d.avail, 2) = VIRTQ_AVAIL_F_NO_INTERRUPT;
	cr_assert_eq(blk_read(&d, 0, DATA, 512), VIRTIO_BLK_S_OK);
	cr_assert_eq(rd(vm, WIN0, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	cr_assert_eq(ioapic_line(vm, IRQ_A), 0);
	vm_destroy(vm);
}

Test(virtio_mmio, boot_info_lists_the_disks)
{
	struct vm *vm = machine2(NULL, NULL);
	const struct rw_boot_info *bi = hva(vm, RW_GPA_BOOT_INFO, sizeof(*bi));
	char line[256];

	cr_assert_eq(bi->nr_virtio, 2);
	cr_assert_eq(bi->virtio[0].base, WIN0);
	cr_assert_eq(bi->virtio[0].irq, 16);
	cr_assert_eq(bi->virtio[0].device_id, 2);
	cr_assert_eq(bi->virtio[1].base, WIN1);
	cr_assert_eq(bi->virtio[1].irq, 17);
	virtio_mmio_cmdline(vm, line, sizeof(line));
	cr_assert_str_eq(line, "virtio_mmio.device=4K@0xd0000000:16 virtio_mmio.device=4K@0xd0001000:17");
	vm_destroy(vm);
}

/* ====================================================== block requests */

struct dirty_log {
	uint8_t pages[RAM / 4096];
};

static void dirty_mark(void *opaque, uint64_t first, uint64_t n)
{
	struct dirty_log *log = opaque;

	for (uint64_t p = first; p < first + n && p < ARRAY_SIZE(log->pages); p++)
		log->pages[p] = 1;
}

static void read_write_round_trip(enum disk_engine engine)
{
	struct disk_spec spec = { make_file("vblk-rw", DISK_BYTES, 11), "rw", false, engine };
	XXH128_hash_t before = file_hash(spec.path);
	struct vm *vm = machine(&spec, 1);
	struct dirty_log *log = calloc(1, sizeof(*log));
	uint8_t *file = malloc(DISK_BYTES), *buf, want[8192];
	uint32_t len;
	struct drv d;

	fill(file, DISK_BYTES, 11);
	drv_init(&d, vm, WIN0, AREA_A, 64);
	vm->mem.dirty = (struct mem_dirty_hook){ dirty_mark, log };

	/* read: the data lands in guest RAM, and every page written is reported */
	buf = hva(vm, DATA + 100, 8192);
	cr_assert_eq(request(&d, VIRTIO_BLK_T_IN, 8, DATA + 100, 8192, true, &len), VIRTIO_BLK_S_OK);
	cr_assert_eq(len, 8193);
	cr_assert_eq(memcmp(buf, file + 8 * 512, 8192), 0);
	for (uint64_t p = DATA / 4096; p <= (DATA + 100 + 8191) / 4096; p++)
		cr_assert(log->pages[p], "data page %llu not marked dirty", (unsigned long long)p);
	cr_assert(log->pages[d.status / 4096], "status byte not marked dirty");
	cr_assert(log->pages[d.used / 4096], "used ring not marked dirty");

	/* aligned write, then a sector write inside it, then read back */
	fill(want, 8192, 12);
	memcpy(hva(vm, DATA, 8192), want, 8192);
	cr_assert_eq(request(&d, VIRTIO_BLK_T_OUT, 64, DATA, 8192, false, &len), VIRTIO_BLK_S_OK);
	cr_assert_eq(len, 1);
	fill(want + 1024, 512, 13);
	memcpy(hva(vm, DATA, 512), want + 1024, 512);
	cr_assert_eq(blk_write(&d, 66, DATA, 512), VIRTIO_BLK_S_OK);
	memset(hva(vm, DATA, 8192), 0, 8192);
	cr_assert_eq(blk_read(&d, 64, DATA, 8192), VIRTIO_BLK_S_OK);
	cr_assert_eq(memcmp(hva(vm, DATA, 8192), want, 8192), 0);
	/* the last sector of the disk */
	cr_assert_eq(blk_read(&d, DISK_BYTES / 512 - 1, DATA, 512), VIRTIO_BLK_S_OK);
	cr_assert_eq(memcmp(hva(vm, DATA, 512), file + DISK_BYTES - 512, 512), 0);

	vm->mem.dirty = (struct mem_dirty_hook){ 0 };
	vm_destroy(vm);
	cr_assert(XXH128_isEqual(before, file_hash(spec.path)), "the backing file was written");
	free(log);
	free(file);
	free((char *)spec.path);
}

Test(virtio_blk, read_write_uring)
{
	read_write_round_trip(DISK_ENGINE_URING);
}

Test(virtio_blk, read_write_sync)
{
	read_write_round_trip(DISK_ENGINE_SYNC);
}

Test(virtio_blk, flush_get_id_and_unsupported)
{
	struct disk_spec spec[2] = {
		{ make_file("vblk-id", 64 << 10, 1), "data-disk", false, DISK_ENGINE_URING },
		{ make_file("vblk-id2", 64 << 10, 1), NULL, false, DISK_ENGINE_URING },
	};
	struct vm *vm = machine(spec, 2);
	char *id = hva(vm, DATA, 64);
	uint32_t len;
	struct drv d;

	cr_assert_not_null(vm_find_device(vm, VIRTIO_BLK_TYPE_NAME, "virtio-blk@mmio-0xd0001000"));
	drv_init(&d, vm, WIN0, AREA_A, 8);
	cr_assert_eq(request(&d, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, &len), VIRTIO_BLK_S_OK);
	cr_assert_eq(len, 1);
	memset(id, 'x', 64);
	cr_assert_eq(request(&d, VIRTIO_BLK_T_GET_ID, 0, DATA, 20, true, &len), VIRTIO_BLK_S_OK);
	cr_assert_eq(len, 21);
	cr_assert_eq(memcmp(id, "data-disk\0\0\0\0\0\0\0\0\0\0\0", 20), 0);
	memset(id, 'x', 64);
	cr_assert_eq(request(&d, VIRTIO_BLK_T_GET_ID, 0, DATA, 4, true, &len), VIRTIO_BLK_S_OK);
	cr_assert_eq(memcmp(id, "dataxxxx", 8), 0);
	cr_assert_eq(request(&d, 42, 0, 0, 0, false, &len), VIRTIO_BLK_S_UNSUPP);
	cr_assert_eq(request(&d, 11 /* DISCARD, not offered */, 0, 0, 0, false, NULL),
		     VIRTIO_BLK_S_UNSUPP);

	drv_init(&d, vm, WIN1, AREA_B, 8);
	memset(id, 'x', 64);
	cr_assert_eq(request(&d, VIRTIO_BLK_T_GET_ID, 0, DATA, 20, true, NULL), VIRTIO_BLK_S_OK);
	cr_assert_eq(memcmp(id, "virtio-blk@mmio-0xd0", 20), 0);
	vm_destroy(vm);
	free((char *)spec[0].path);
	free((char *)spec[1].path);
}

Test(virtio_blk, readonly_disk_refuses_writes)
{
	struct disk_spec spec = { make_file("vblk-ro", 64 << 10, 3), "ro", true, DISK_ENGINE_URING };
	struct vm *vm = machine(&spec, 1);
	struct drv d;

	cr_assert(offered(vm, WIN0) & VIRTIO_BIT(VIRTIO_BLK_F_RO));
	drv_init(&d, vm, WIN0, AREA_A, 8);
	cr_assert_eq(blk_write(&d, 0, DATA, 512), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(blk_read(&d, 0, DATA, 512), VIRTIO_BLK_S_OK);
	cr_assert_eq(disk_present_count(virtio_blk_disk(dev_at(vm, "ro"))), 0);
	vm_destroy(vm);
	free((char *)spec.path);
}

Test(virtio_blk, out_of_range_and_malformed_requests_fail_with_ioerr)
{
	struct vm *vm = machine2(NULL, NULL);
	uint64_t cap = DISK_BYTES / 512;
	uint8_t *st;
	uint32_t t;
	struct drv d;

	drv_init(&d, vm, WIN0, AREA_A, 8);
	st = hva(vm, d.status, 1);
	cr_assert_eq(blk_read(&d, cap, DATA, 512), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(blk_read(&d, cap - 1, DATA, 1024), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(blk_write(&d, 1ULL << 63, DATA, 512), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(blk_write(&d, UINT64_MAX, DATA, 4096), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(blk_read(&d, cap - 1, DATA, 512), VIRTIO_BLK_S_OK);
	/* data in the wrong direction */
	cr_assert_eq(request(&d, VIRTIO_BLK_T_IN, 0, DATA, 512, false, NULL), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(request(&d, VIRTIO_BLK_T_OUT, 0, DATA, 512, true, NULL), VIRTIO_BLK_S_IOERR);
	/* not a whole number of sectors */
	cr_assert_eq(blk_read(&d, 0, DATA, 100), VIRTIO_BLK_S_IOERR);
	/* a header of 8 bytes */
	t = VIRTIO_BLK_T_IN;
	memcpy(hva(vm, d.hdr, 4), &t, 4);
	set_desc(&d, 0, d.hdr, 8, VIRTQ_DESC_F_NEXT, 1);
	set_desc(&d, 1, d.status, 1, VIRTQ_DESC_F_WRITE, 0);
	*st = 0xee;
	publish(&d, 0);
	notify(&d);
	wait_used(&d, NULL, NULL);
	cr_assert_eq(*st, VIRTIO_BLK_S_IOERR);
	/* a readable buffer after a writable one */
	set_desc(&d, 0, d.hdr, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(&d, 1, DATA, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	set_desc(&d, 2, DATA + 512, 512, VIRTQ_DESC_F_NEXT, 3);
	set_desc(&d, 3, d.status, 1, VIRTQ_DESC_F_WRITE, 0);
	*st = 0xee;
	publish(&d, 0);
	notify(&d);
	wait_used(&d, NULL, NULL);
	cr_assert_eq(*st, VIRTIO_BLK_S_IOERR);
	/* framing is free: header and data in one buffer, data and status in another */
	{
		uint8_t *p = hva(vm, DATA, 4096 + 16);
		uint64_t sector = 3;

		t = VIRTIO_BLK_T_IN;
		memset(p, 0, 16);
		memcpy(p, &t, 4);
		memcpy(p + 8, &sector, 8);
		set_desc(&d, 0, DATA, 16, VIRTQ_DESC_F_NEXT, 1);
		set_desc(&d, 1, DATA + 8192, 1000, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
		set_desc(&d, 2, DATA + 8192 + 1000, 24 + 1, VIRTQ_DESC_F_WRITE, 0);
		publish(&d, 0);
		notify(&d);
		wait_used(&d, NULL, NULL);
		cr_assert_eq(*(uint8_t *)hva(vm, DATA + 8192 + 1024, 1), VIRTIO_BLK_S_OK);
	}
	cr_assert_eq(device_status(&d) & ST_NR, 0);
	vm_destroy(vm);
}

/* ======================================================== a hostile guest */

/* The device works: a good request on a fresh queue succeeds. */
static void assert_works(struct vm *vm, uint64_t base, uint64_t area)
{
	struct drv d;

	drv_init(&d, vm, base, area, 16);
	cr_assert_eq(blk_read(&d, 1, DATA + 65536, 1024), VIRTIO_BLK_S_OK);
	cr_assert_eq(blk_write(&d, 1, DATA + 65536, 1024), VIRTIO_BLK_S_OK);
}

/* After the bad chain: the request failed with IOERR, nothing else broke. */
static void expect_ioerr(struct drv *d, struct vm *vm)
{
	wait_used(d, NULL, NULL);
	cr_assert_eq(*(uint8_t *)hva(vm, d->status, 1), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(device_status(d) & ST_NR, 0);
	cr_assert_eq(blk_read(d, 0, DATA, 512), VIRTIO_BLK_S_OK, "the queue broke");
	assert_works(vm, WIN1, AREA_B);
}

/*
 * After the bad chain: DEVICE_NEEDS_RESET and a configuration interrupt;
 * the queue no longer moves; the other device works; a reset recovers.
 */
static void expect_needs_reset(struct drv *d, struct vm *vm)
{
	uint16_t used = used_idx(d);

	cr_assert(device_status(d) & ST_NR, "DEVICE_NEEDS_RESET not set");
	cr_assert(rd(vm, d->base, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_INT_CONFIG);
	cr_assert_eq(ioapic_line(vm, IRQ_A), 1);
	/* a good request is no longer processed */
	set_desc(d, 0, d->hdr, 16, VIRTQ_DESC_F_NEXT, 1);
	memset(hva(vm, d->hdr, 16), 0, 16);
	set_desc(d, 1, d->status, 1, VIRTQ_DESC_F_WRITE, 0);
	publish(d, 0);
	notify(d);
	run_events(vm, 10);
	cr_assert_eq(used_idx(d), used);
	cr_assert_eq(ioapic_line(vm, IRQ_A), 1, "the line dropped without an ACK");
	assert_works(vm, WIN1, AREA_B);
	assert_works(vm, WIN0, AREA_A);
	wr(vm, WIN0, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_INT_ALL);
	cr_assert_eq(ioapic_line(vm, IRQ_A), 0);
}

/* Header + one data buffer (gpa, len) + status, at head 0. */
static void bad_data_chain(struct drv *d, uint64_t gpa, uint32_t len)
{
	uint32_t t = VIRTIO_BLK_T_IN;

	memset(hva(d->vm, d->hdr, 16), 0, 16);
	memcpy(hva(d->vm, d->hdr, 4), &t, 4);
	set_desc(d, 0, d->hdr, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(d, 1, gpa, len, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	set_desc(d, 2, d->status, 1, VIRTQ_DESC_F_WRITE, 0);
	*(uint8_t *)hva(d->vm, d->status, 1) = 0xee;
	publish(d, 0);
	notify(d);
}

static struct vm *hostile(struct drv *d, uint16_t size)
{
	struct vm *vm = machine2(NULL, NULL);

	drv_init(d, vm, WIN0, AREA_A, size);
	return vm;
}

Test(hostile, buffer_outside_ram)
{
	struct drv d;
	struct vm *vm = hostile(&d, 8);

	bad_data_chain(&d, 0xe0000000ULL, 512); /* the PCI hole */
	expect_ioerr(&d, vm);
	bad_data_chain(&d, RAM - 256, 512);     /* straddles the end of RAM */
	expect_ioerr(&d, vm);
	bad_data_chain(&d, UINT64_MAX - 100, 512); /* wraps around */
	expect_ioerr(&d, vm);
	vm_destroy(vm);
}

Test(hostile, huge_length)
{
	struct drv d;
	struct vm *vm = hostile(&d, 8);

	bad_data_chain(&d, DATA, 0xffffffffu);
	expect_ioerr(&d, vm);
	vm_destroy(vm);
}

Test(hostile, descriptor_loop)
{
	struct drv d;
	struct vm *vm = hostile(&d, 8);

	set_desc(&d, 0, d.hdr, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(&d, 1, DATA, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 0);
	publish(&d, 0);
	notify(&d);
	expect_needs_reset(&d, vm);
	vm_destroy(vm);
}

Test(hostile, chain_longer_than_the_queue)
{
	struct drv d;
	struct vm *vm = hostile(&d, 4);

	/* 0 -> 1 -> 2 -> 3 -> 1: five descriptors in a queue of four */
	set_desc(&d, 0, d.hdr, 16, VIRTQ_DESC_F_NEXT, 1);
	for (uint16_t i = 1; i < 4; i++)
		set_desc(&d, i, DATA, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
			 (uint16_t)(i == 3 ? 1 : i + 1));
	publish(&d, 0);
	notify(&d);
	expect_needs_reset(&d, vm);
	vm_destroy(vm);
}

Test(hostile, next_index_out_of_range)
{
	struct drv d;
	struct vm *vm = hostile(&d, 8);

	set_desc(&d, 0, d.hdr, 16, VIRTQ_DESC_F_NEXT, 8);
	publish(&d, 0);
	notify(&d);
	expect_needs_reset(&d, vm);
	vm_destroy(vm);
}

Test(hostile, head_index_out_of_range)
{
	struct drv d;
	struct vm *vm = hostile(&d, 8);

	publish(&d, 300);
	notify(&d);
	expect_needs_reset(&d, vm);
	vm_destroy(vm);
}

Test(hostile, avail_index_far_ahead)
{
	struct drv d;
	struct vm *vm = hostile(&d, 8);

	set_avail_idx(&d, 9); /* 9 new entries in a queue of 8 */
	notify(&d);
	d.avail_idx = 9;
	expect_needs_reset(&d, vm);
	vm_destroy(vm);
}

Test(hostile, indirect_descriptor)
{
	struct drv d;
	struct vm *vm = hostile(&d, 8);

	set_desc(&d, 0, DATA, 64, VIRTQ_DESC_F_INDIRECT, 0);
	publish(&d, 0);
	notify(&d);
	expect_needs_reset(&d, vm);
	vm_destroy(vm);
}

Test(hostile, no_writable_status_byte)
{
	struct drv d;
	struct vm *vm = hostile(&d, 8);

	set_desc(&d, 0, d.hdr, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(&d, 1, d.status, 1, 0, 0); /* read-only */
	publish(&d, 0);
	notify(&d);
	expect_needs_reset(&d, vm);
	vm_destroy(vm);
}

Test(hostile, status_byte_outside_ram)
{
	struct drv d;
	struct vm *vm = hostile(&d, 8);

	set_desc(&d, 0, d.hdr, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(&d, 1, 0xe0000000ULL, 1, VIRTQ_DESC_F_WRITE, 0);
	publish(&d, 0);
	notify(&d);
	expect_needs_reset(&d, vm);
	vm_destroy(vm);
}

/* QueueReady = 1 with a bad layout: the queue stays off, the device needs a reset. */
static void bad_layout(uint16_t size, uint64_t desc, uint64_t avail, uint64_t used)
{
	static char *pa, *pb;
	struct vm *vm;

	if (!pa) {
		pa = make_file("vblk-layout-a", DISK_BYTES, 1);
		pb = make_file("vblk-layout-b", DISK_BYTES, 2);
	}
	vm = machine2_on(pa, pb);
	struct drv d = { .vm = vm, .base = WIN0, .size = size, .desc = desc, .avail = avail,
			 .used = used };

	wr(vm, WIN0, VIRTIO_MMIO_STATUS, ST_ACK | ST_DRV);
	ack_features(vm, WIN0, VIRTIO_BIT(VIRTIO_F_VERSION_1));
	wr(vm, WIN0, VIRTIO_MMIO_STATUS, ST_ACK | ST_DRV | ST_FOK);
	queue_regs(&d);
	wr(vm, WIN0, VIRTIO_MMIO_QUEUE_READY, 1);
	cr_assert_eq(rd(vm, WIN0, VIRTIO_MMIO_QUEUE_READY), 0);
	cr_assert(rd(vm, WIN0, VIRTIO_MMIO_STATUS) & ST_NR);
	cr_assert(rd(vm, WIN0, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_INT_CONFIG);
	assert_works(vm, WIN1, AREA_B);
	assert_works(vm, WIN0, AREA_A);
	vm_destroy(vm);
}

Test(hostile, rings_outside_ram_at_queue_ready)
{
	bad_layout(8, 0xe0000000ULL, AREA_A + 0x2000, AREA_A + 0x3000);
	bad_layout(8, AREA_A, RAM - 4, AREA_A + 0x3000);
	bad_layout(256, AREA_A, AREA_A + 0x2000, RAM - 1024);
}

Test(hostile, bad_queue_size_or_alignment_at_queue_ready)
{
	bad_layout(3, AREA_A, AREA_A + 0x2000, AREA_A + 0x3000);
	bad_layout(512, AREA_A, AREA_A + 0x2000, AREA_A + 0x3000);
	bad_layout(0, AREA_A, AREA_A + 0x2000, AREA_A + 0x3000);
	bad_layout(8, AREA_A + 8, AREA_A + 0x2000, AREA_A + 0x3000);
	bad_layout(8, AREA_A, AREA_A + 0x2001, AREA_A + 0x3000);
	bad_layout(8, AREA_A, AREA_A + 0x2000, AREA_A + 0x3002);
}

Test(hostile, guest_errors_are_logged_once_per_device)
{
	char path[4096];
	struct drv d;
	struct vm *vm = hostile(&d, 8);
	char text[8192] = { 0 };
	int fd, saved = dup(2);
	unsigned n = 0;

	snprintf(path, sizeof(path), "%s/stderr", rw_test_tmpdir("vblk-log"));
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	dup2(fd, 2);
	for (int i = 0; i < 5; i++) {
		bad_data_chain(&d, 0xe0000000ULL, 512);
		wait_used(&d, NULL, NULL);
	}
	publish(&d, 300);
	notify(&d);
	dup2(saved, 2);
	close(saved);
	cr_assert(device_status(&d) & ST_NR);
	cr_assert_geq(pread(fd, text, sizeof(text) - 1, 0), 0);
	close(fd);
	for (const char *p = text; (p = strstr(p, "warning: a: guest error")); p++)
		n++;
	cr_assert_eq(n, 1, "guest errors logged %u times:\n%s", n, text);
	cr_assert_not_null(strstr(text, "a:"), "the message names the device: %s", text);
	vm_destroy(vm);
}

/* ========================================================= both engines */

Test(virtio_blk, engines_give_identical_results)
{
	char *path = make_file("vblk-eng", DISK_BYTES, 21);
	struct disk_spec spec[2] = {
		{ path, "u", false, DISK_ENGINE_URING },
		{ path, "s", false, DISK_ENGINE_SYNC },
	};
	struct vm *vm = machine(spec, 2);
	struct drv du, ds;
	uint64_t x = 99;

	cr_assert_eq(disk_engine_used(virtio_blk_disk(dev_at(vm, "u"))), DISK_ENGINE_URING);
	cr_assert_eq(disk_engine_used(virtio_blk_disk(dev_at(vm, "s"))), DISK_ENGINE_SYNC);
	/* writes through the ring too, whatever the file system (the probe's choice is tested in test_disk.c) */
	disk_set_uring_writes(virtio_blk_disk(dev_at(vm, "u")), true);
	drv_init(&du, vm, WIN0, AREA_A, 32);
	drv_init(&ds, vm, WIN1, AREA_B, 32);
	for (int i = 0; i < 120; i++) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		uint32_t sectors = 1 + (uint32_t)((x >> 33) % 40);
		uint64_t sector = (x >> 13) % (DISK_BYTES / 512 + 4); /* some beyond the end */
		bool write = (x >> 5) & 1;
		uint8_t su, ss;

		if (write) {
			fill(hva(vm, DATA, sectors * 512), sectors * 512, (uint64_t)i);
			su = blk_write(&du, sector, DATA, sectors * 512);
			ss = blk_write(&ds, sector, DATA, sectors * 512);
		} else {
			su = blk_read(&du, sector, DATA, sectors * 512);
			ss = blk_read(&ds, sector, DATA + MiB, sectors * 512);
			if (su == VIRTIO_BLK_S_OK)
				cr_assert_eq(memcmp(hva(vm, DATA, sectors * 512),
						    hva(vm, DATA + MiB, sectors * 512), sectors * 512),
					     0, "request %d read different bytes", i);
		}
		cr_assert_eq(su, ss, "request %d: status %u vs %u", i, su, ss);
	}
	vm_destroy(vm);
	free(path);
}

Test(virtio_blk, quiesce_drains_requests_in_flight)
{
	struct vm *vm = machine2(NULL, NULL);
	struct device *dev = dev_at(vm, "a");
	uint8_t *rec;
	struct blk_rec f;
	struct drv d;
	size_t len;

	drv_init(&d, vm, WIN0, AREA_A, 64);
	/* 16 reads of 64 KiB in separate chains, one notify, no event thread */
	for (uint16_t i = 0; i < 16; i++) {
		uint16_t h = (uint16_t)(3 * i);
		uint64_t hdr = d.hdr + 16ull * i;
		uint32_t t = VIRTIO_BLK_T_IN;
		uint64_t sector = 128ull * i;

		memcpy(hva(vm, hdr, 4), &t, 4);
		memcpy(hva(vm, hdr + 8, 8), &sector, 8);
		set_desc(&d, h, hdr, 16, VIRTQ_DESC_F_NEXT, (uint16_t)(h + 1));
		set_desc(&d, (uint16_t)(h + 1), DATA + 65536ull * i, 65536,
			 VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, (uint16_t)(h + 2));
		set_desc(&d, (uint16_t)(h + 2), d.status + i, 1, VIRTQ_DESC_F_WRITE, 0);
		publish(&d, h);
	}
	notify(&d);
	cr_assert_eq(dev->type->ops->quiesce(dev), 0);
	cr_assert_eq(used_idx(&d), 16, "quiesce returned with requests in flight");
	for (uint16_t i = 0; i < 16; i++)
		cr_assert_eq(*(uint8_t *)hva(vm, d.status + i, 1), VIRTIO_BLK_S_OK);
	d.used_idx = 16;
	len = save(dev, &rec);
	rec_decode(rec, len, &f);
	cr_assert_eq(f.last_avail, 16);
	cr_assert_eq(f.used, 16);
	free(rec);
	/* notifies wait for resume */
	cr_assert_eq(dev->type->ops->resume(dev), 0);
	cr_assert_eq(blk_read(&d, 0, DATA, 512), VIRTIO_BLK_S_OK);
	vm_destroy(vm);
}

/*
 * The checkpoint path: a vCPU thread submitted reads that miss the page
 * cache and went back to "running" (here: blocked, as if parked by the
 * pause barrier); another thread quiesces the device and must find every
 * request completed.
 */
struct submitter {
	struct drv *d;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int stage; /* 0 start, 1 submitted, 2 released */
};

static void *submit_then_park(void *arg)
{
	struct submitter *s = arg;

	notify(s->d);
	pthread_mutex_lock(&s->lock);
	s->stage = 1;
	pthread_cond_broadcast(&s->cond);
	while (s->stage != 2)
		pthread_cond_wait(&s->cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

Test(virtio_blk, quiesce_from_another_thread_with_cold_reads)
{
	char *pa;
	struct vm *vm = machine2(&pa, NULL);
	struct device *dev = dev_at(vm, "a");
	struct submitter s = { .stage = 0 };
	pthread_t th;
	struct drv d;
	int fd;

	drv_init(&d, vm, WIN0, AREA_A, 64);
	fd = open(pa, O_RDONLY);
	cr_assert_geq(fd, 0);
	fdatasync(fd);
	cr_assert_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	close(fd);
	for (uint16_t i = 0; i < 16; i++) {
		uint16_t h = (uint16_t)(3 * i);
		uint64_t hdr = d.hdr + 16ull * i;
		uint32_t t = VIRTIO_BLK_T_IN;
		uint64_t sector = 128ull * i;

		memcpy(hva(vm, hdr, 4), &t, 4);
		memcpy(hva(vm, hdr + 8, 8), &sector, 8);
		set_desc(&d, h, hdr, 16, VIRTQ_DESC_F_NEXT, (uint16_t)(h + 1));
		set_desc(&d, (uint16_t)(h + 1), DATA + 65536ull * i, 65536,
			 VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, (uint16_t)(h + 2));
		set_desc(&d, (uint16_t)(h + 2), d.status + i, 1, VIRTQ_DESC_F_WRITE, 0);
		publish(&d, h);
	}
	s.d = &d;
	pthread_mutex_init(&s.lock, NULL);
	pthread_cond_init(&s.cond, NULL);
	cr_assert_eq(pthread_create(&th, NULL, submit_then_park, &s), 0);
	pthread_mutex_lock(&s.lock);
	while (s.stage != 1)
		pthread_cond_wait(&s.cond, &s.lock);
	pthread_mutex_unlock(&s.lock);

	cr_assert_eq(dev->type->ops->quiesce(dev), 0);
	cr_assert_eq(used_idx(&d), 16, "quiesce returned with requests in flight");
	for (uint16_t i = 0; i < 16; i++) {
		uint8_t *want = malloc(65536);

		cr_assert_eq(*(uint8_t *)hva(vm, d.status + i, 1), VIRTIO_BLK_S_OK);
		fd = open(pa, O_RDONLY);
		cr_assert_eq(rw_pread_all(fd, want, 65536, 65536ull * i), 0);
		close(fd);
		cr_assert_eq(memcmp(hva(vm, DATA + 65536ull * i, 65536), want, 65536), 0);
		free(want);
	}
	pthread_mutex_lock(&s.lock);
	s.stage = 2;
	pthread_cond_broadcast(&s.cond);
	pthread_mutex_unlock(&s.lock);
	pthread_join(th, NULL);
	cr_assert_eq(dev->type->ops->resume(dev), 0);
	vm_destroy(vm);
	free(pa);
}

/* ============================================================== records */

Test(virtio_blk_state, two_disks_have_their_own_records)
{
	char *pa, *pb;
	struct vm *vm = machine2(&pa, &pb);
	struct device *a = dev_at(vm, "a"), *b = dev_at(vm, "b");
	char ka[DEV_KEY_MAX], kb[DEV_KEY_MAX];
	uint8_t *ra, *rb;
	size_t la, lb;
	const char *field;
	struct drv da, db;

	device_record_key(a, ka, sizeof(ka));
	device_record_key(b, kb, sizeof(kb));
	cr_assert_str_eq(ka, "dev/virtio-blk/a");
	cr_assert_str_eq(kb, "dev/virtio-blk/b");
	cr_assert(virtio_blk_is(a));
	cr_assert_str_eq(disk_name(virtio_blk_disk(a)), "a");
	cr_assert_str_eq(disk_name(virtio_blk_disk(b)), "b");

	drv_init(&da, vm, WIN0, AREA_A, 16);
	drv_init(&db, vm, WIN1, AREA_B, 32);
	fill(hva(vm, DATA, 8192), 8192, 31);
	cr_assert_eq(blk_write(&da, 8, DATA, 8192), VIRTIO_BLK_S_OK);
	fill(hva(vm, DATA, 4096), 4096, 32);
	cr_assert_eq(blk_write(&db, 800, DATA, 4096), VIRTIO_BLK_S_OK);
	la = save(a, &ra);
	lb = save(b, &rb);
	cr_assert(la != lb || memcmp(ra, rb, la), "two disks wrote the same record");
	/* a's record does not fit b (another window, another disk) */
	cr_assert_eq(load(b, ra, la, &field), RW_ECORRUPT);
	cr_assert_not_null(strstr(field, "base"), "%s", field);
	vm_destroy(vm);
	free(ra);
	free(rb);
	free(pa);
	free(pb);
}

/*
 * Save a machine with activity on both disks, build a fresh one on the
 * same files, load the records and the overlay blocks (as the checkpoint
 * layer does), save again: equal bytes, and the disks read back what was
 * written.
 */
Test(virtio_blk_state, save_load_save_gives_equal_bytes)
{
	char *pa, *pb;
	struct vm *vm = machine2(&pa, &pb);
	struct disk_spec spec[2] = {
		{ pa, "a", false, DISK_ENGINE_URING },
		{ pb, "b", false, DISK_ENGINE_SYNC },
	};
	const char *ids[2] = { "a", "b" };
	uint8_t *rec[2], *rec2, blk[4096], want[3][8192];
	size_t len[2], len2;
	struct drv d[2];
	struct vm *vm2;
	const char *field;

	drv_init(&d[0], vm, WIN0, AREA_A, 16);
	drv_init(&d[1], vm, WIN1, AREA_B, 64);
	fill(want[0], 8192, 41);
	fill(want[1], 8192, 42);
	memset(want[2], 0, sizeof(want[2]));
	memcpy(hva(vm, DATA, 8192), want[0], 8192);
	cr_assert_eq(blk_write(&d[0], 16, DATA, 8192), VIRTIO_BLK_S_OK);
	memcpy(hva(vm, DATA, 8192), want[2], 8192); /* zeros: present, not absent */
	cr_assert_eq(blk_write(&d[0], 64, DATA, 4096), VIRTIO_BLK_S_OK);
	memcpy(hva(vm, DATA, 8192), want[1], 8192);
	cr_assert_eq(blk_write(&d[1], 1000, DATA, 8192), VIRTIO_BLK_S_OK);
	cr_assert_eq(blk_read(&d[1], 0, DATA, 512), VIRTIO_BLK_S_OK); /* ISR left set */

	for (int i = 0; i < 2; i++) {
		struct device *dev = dev_at(vm, ids[i]);

		cr_assert_eq(dev->type->ops->quiesce(dev), 0);
		len[i] = save(dev, &rec[i]);
	}
	vm2 = machine(spec, 2);
	/* the checkpoint layer restores guest memory before the records */
	memcpy(vm2->mem.hva, vm->mem.hva, RAM);
	for (int i = 0; i < 2; i++) {
		struct device *dev = dev_at(vm2, ids[i]);
		struct disk *from = virtio_blk_disk(dev_at(vm, ids[i]));
		struct disk *to = virtio_blk_disk(dev);
		uint64_t s, c;

		cr_assert_eq(load(dev, rec[i], len[i], &field), 0, "%s", field ? field : "");
		for (uint64_t at = 0; disk_present_next(from, at, &s, &c); at = s + c)
			for (uint64_t blkno = s; blkno < s + c; blkno++) {
				cr_assert_eq(disk_read_block(from, blkno, blk), 0);
				cr_assert_eq(disk_restore_block(to, blkno, blk, DISK_EPOCH_CKPT), 0);
			}
		len2 = save(dev, &rec2);
		cr_assert_eq(len2, len[i]);
		cr_assert_eq(memcmp(rec2, rec[i], len2), 0, "%s: records differ", ids[i]);
		free(rec2);
		free(rec[i]);
	}
	vm_destroy(vm);
	/* the restored devices carry on where the first ones were */
	for (int i = 0; i < 2; i++)
		d[i].vm = vm2;
	cr_assert_eq(rd(vm2, WIN1, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_VRING);
	cr_assert_eq(blk_read(&d[0], 16, DATA, 8192), VIRTIO_BLK_S_OK);
	cr_assert_eq(memcmp(hva(vm2, DATA, 8192), want[0], 8192), 0);
	cr_assert(disk_block_present(virtio_blk_disk(dev_at(vm2, "a")), 8));
	cr_assert_eq(blk_read(&d[1], 1000, DATA, 8192), VIRTIO_BLK_S_OK);
	cr_assert_eq(memcmp(hva(vm2, DATA, 8192), want[1], 8192), 0);
	vm_destroy(vm2);
	free(pa);
	free(pb);
}

/* Load a record changed by edit into a's device; expect it refused naming `needle`. */
static void refused(struct vm *vm, const uint8_t *good, size_t glen, void (*edit)(struct blk_rec *),
		    const char *needle)
{
	struct device *dev = dev_at(vm, "a");
	struct blk_rec f;
	uint8_t *bad, *before, *after;
	size_t blen, l1, l2;
	const char *field;

	rec_decode(good, glen, &f);
	edit(&f);
	blen = rec_encode(&f, &bad);
	l1 = save(dev, &before);
	cr_assert_eq(load(dev, bad, blen, &field), RW_ECORRUPT, "accepted (%s)", needle);
	cr_assert_not_null(field, "refused without naming a field (%s)", needle);
	cr_assert_not_null(strstr(field, needle), "field '%s', expected '%s'", field, needle);
	l2 = save(dev, &after);
	cr_assert(l1 == l2 && !memcmp(before, after, l1), "a refused record changed the device");
	free(bad);
	free(before);
	free(after);
}

static void e_acked(struct blk_rec *f) { f->acked |= VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC); }
static void e_size3(struct blk_rec *f) { f->qnum = 3; }
static void e_size2048(struct blk_rec *f) { f->qnum = 2048; }
static void e_desc(struct blk_rec *f) { f->desc = 0xe0000000ULL; }
static void e_used(struct blk_rec *f) { f->dev = RAM - 8; }
static void e_ahead(struct blk_rec *f) { f->last_avail = (uint16_t)(f->used + 5); }
static void e_far_ahead(struct blk_rec *f)
{
	f->status |= VIRTIO_STATUS_NEEDS_RESET;
	f->last_avail = (uint16_t)(f->used + 17);
}
static void e_hash(struct blk_rec *f) { f->hash[3] ^= 1; }
static void e_size(struct blk_rec *f) { f->size += 4096; }
static void e_ranges(struct blk_rec *f)
{
	f->nranges = 1;
	f->ranges[0][0] = DISK_BYTES / 4096 - 1;
	f->ranges[0][1] = 2;
}
static void e_overlap(struct blk_rec *f)
{
	f->nranges = 2;
	f->ranges[0][0] = 4;
	f->ranges[0][1] = 4;
	f->ranges[1][0] = 6;
	f->ranges[1][1] = 1;
}
static void e_offered(struct blk_rec *f) { f->offered |= VIRTIO_BIT(VIRTIO_BLK_F_RO); }
static void e_nq(struct blk_rec *f) { f->qmax = 1024; }
static void e_status(struct blk_rec *f) { f->status |= 0x20; }
static void e_isr(struct blk_rec *f) { f->isr = 4; }
static void e_base(struct blk_rec *f) { f->base += 0x1000; }
static void e_fok(struct blk_rec *f) { f->acked &= ~VIRTIO_BIT(VIRTIO_F_VERSION_1); }

Test(virtio_blk_state, corrupt_records_are_refused_naming_the_field)
{
	struct vm *vm = machine2(NULL, NULL);
	struct device *dev = dev_at(vm, "a");
	uint8_t *good, *trunc;
	size_t glen;
	struct drv d;
	struct rec_reader r;
	struct blk_rec f;

	drv_init(&d, vm, WIN0, AREA_A, 16);
	fill(hva(vm, DATA, 4096), 4096, 5);
	cr_assert_eq(blk_write(&d, 8, DATA, 4096), VIRTIO_BLK_S_OK);
	glen = save(dev, &good);
	rec_decode(good, glen, &f);
	cr_assert_eq(f.qnum, 16);
	cr_assert(f.ready);
	cr_assert_eq(f.nranges, 1);

	refused(vm, good, glen, e_acked, "features_acked");
	refused(vm, good, glen, e_fok, "features_acked");
	refused(vm, good, glen, e_offered, "features_offered");
	refused(vm, good, glen, e_size3, "queue size");
	refused(vm, good, glen, e_size2048, "queue size");
	refused(vm, good, glen, e_desc, "descriptor table");
	refused(vm, good, glen, e_used, "device area");
	refused(vm, good, glen, e_ahead, "last_avail_idx");
	refused(vm, good, glen, e_far_ahead, "more than a queue size");
	refused(vm, good, glen, e_hash, "disk identity");
	refused(vm, good, glen, e_size, "disk size");
	refused(vm, good, glen, e_ranges, "present ranges");
	refused(vm, good, glen, e_overlap, "present ranges");
	refused(vm, good, glen, e_nq, "num_max");
	refused(vm, good, glen, e_status, "status");
	refused(vm, good, glen, e_isr, "interrupt_status");
	refused(vm, good, glen, e_base, "base");

	/* framing: truncated, bad checksum, future version */
	trunc = malloc(glen);
	memcpy(trunc, good, glen);
	trunc[glen - 1] ^= 0xff;
	const uint32_t v = VIRTIO_BLK_STATE_VERSION;
	cr_assert_eq(rec_open(&r, trunc, glen, VIRTIO_BLK_TYPE_NAME, 1, v), RW_ECHECKSUM);
	cr_assert_eq(rec_open(&r, good, glen - 3, VIRTIO_BLK_TYPE_NAME, 1, v), RW_ECORRUPT);
	cr_assert_eq(dev->type->ops->validate(dev, &r, v), RW_ECORRUPT);
	cr_assert_eq(rec_open(&r, good, glen, VIRTIO_BLK_TYPE_NAME, 1, v), 0);
	cr_assert_eq(dev->type->ops->validate(dev, &r, v + 1), RW_EVERSION);

	/*
	 * A version 1 record (taken when a large disk's identity was sampled)
	 * still loads: for this small disk the two identities are the same
	 * hash, and a different one is still refused.
	 */
	struct blk_rec old;
	uint8_t *v1;
	size_t v1len;
	const char *field = NULL;

	rec_decode(good, glen, &old);
	cr_assert_eq(old.version, v);
	old.version = 1;
	v1len = rec_encode(&old, &v1);
	cr_assert_eq(load(dev, v1, v1len, &field), 0, "a version 1 record was refused (%s)",
		     field ? field : "?");
	free(v1);
	old.hash[0] ^= 1;
	v1len = rec_encode(&old, &v1);
	cr_assert_eq(load(dev, v1, v1len, &field), RW_ECORRUPT);
	cr_assert_not_null(field);
	cr_assert_not_null(strstr(field, "disk identity"), "field '%s'", field);
	free(v1);
	free(trunc);
	free(good);
	vm_destroy(vm);
}

Test(virtio_blk_state, restore_with_another_disk_file_is_refused)
{
	char *pa;
	struct vm *vm = machine2(&pa, NULL);
	struct disk_spec other = { make_file("vblk-other", DISK_BYTES, 77), "a", false,
				   DISK_ENGINE_URING };
	struct disk_spec bigger = { make_file("vblk-big", DISK_BYTES + 4096, 1), "a", false,
				    DISK_ENGINE_URING };
	uint8_t *rec;
	size_t len;
	const char *field;
	struct vm *vm2;

	len = save(dev_at(vm, "a"), &rec);
	vm2 = machine(&other, 1);
	cr_assert_eq(load(dev_at(vm2, "a"), rec, len, &field), RW_ECORRUPT);
	cr_assert_not_null(strstr(field, "disk identity"), "%s", field);
	vm_destroy(vm2);
	vm2 = machine(&bigger, 1);
	cr_assert_eq(load(dev_at(vm2, "a"), rec, len, &field), RW_ECORRUPT);
	cr_assert_not_null(strstr(field, "disk size"), "%s", field);
	vm_destroy(vm2);
	vm_destroy(vm);
	free(rec);
	free(pa);
	free((char *)other.path);
	free((char *)bigger.path);
}

Test(virtio_blk_state, a_device_that_needs_a_reset_round_trips)
{
	struct vm *vm = machine2(NULL, NULL);
	struct device *dev = dev_at(vm, "a");
	uint8_t *r1, *r2;
	size_t l1, l2;
	const char *field;
	struct drv d;

	drv_init(&d, vm, WIN0, AREA_A, 8);
	cr_assert_eq(blk_read(&d, 0, DATA, 512), VIRTIO_BLK_S_OK);
	set_desc(&d, 0, d.hdr, 16, VIRTQ_DESC_F_NEXT, 0); /* loops on itself */
	publish(&d, 0);
	notify(&d);
	cr_assert(device_status(&d) & ST_NR);
	l1 = save(dev, &r1);
	cr_assert_eq(load(dev, r1, l1, &field), 0, "%s", field ? field : "");
	l2 = save(dev, &r2);
	cr_assert(l1 == l2 && !memcmp(r1, r2, l1));
	cr_assert(device_status(&d) & ST_NR);
	free(r1);
	free(r2);
	vm_destroy(vm);
}
