/*
 * rewind-bench devices: virtio-blk throughput per engine, beside the
 * host's direct and buffered I/O on the same file (see bench_devices.h).
 */
#include "bench_devices.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "bench.h"
#include "bus.h"
#include "disk.h"
#include "log.h"
#include "memory.h"
#include "rw/abi.h"
#include "virtio.h"
#include "virtio_blk.h"
#include "virtio_mmio.h"
#include "vm.h"

#define QUEUE 256u
#define QD_MAX 64u
#define AREA (16 * MiB)
#define DATA (32 * MiB)
#define REQ_MAX (64 * KiB)

/* ------------------------------------------------------- the guest side */

struct drv {
	struct vm *vm;
	uint64_t base;
	uint64_t desc, avail, used, hdr, status;
	uint16_t avail_idx, used_idx;
	uint64_t done;            /* requests completed */
	uint64_t errors;
};

static uint32_t mmio_rd(struct drv *d, uint32_t off)
{
	uint32_t v = 0;

	bus_dispatch(&d->vm->buses[BUS_MMIO], NULL, d->base + off, &v, 4, false);
	return v;
}

static void mmio_wr(struct drv *d, uint32_t off, uint32_t v)
{
	bus_dispatch(&d->vm->buses[BUS_MMIO], NULL, d->base + off, &v, 4, true);
}

static void *g(struct drv *d, uint64_t gpa, uint64_t len)
{
	return mem_gpa_to_hva(&d->vm->mem, gpa, len);
}

static int drv_init(struct drv *d)
{
	uint32_t st = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;

	d->desc = AREA;
	d->avail = AREA + 0x2000;
	d->used = AREA + 0x3000;
	d->hdr = AREA + 0x5000;
	d->status = AREA + 0x6000;
	memset(g(d, AREA, 0x8000), 0, 0x8000);
	mmio_wr(d, VIRTIO_MMIO_STATUS, 0);
	mmio_wr(d, VIRTIO_MMIO_STATUS, st);
	mmio_wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	mmio_wr(d, VIRTIO_MMIO_DRIVER_FEATURES, 1); /* VIRTIO_F_VERSION_1 */
	mmio_wr(d, VIRTIO_MMIO_STATUS, st | VIRTIO_STATUS_FEATURES_OK);
	mmio_wr(d, VIRTIO_MMIO_QUEUE_SEL, 0);
	mmio_wr(d, VIRTIO_MMIO_QUEUE_NUM, QUEUE);
	mmio_wr(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)d->desc);
	mmio_wr(d, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)d->avail);
	mmio_wr(d, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)d->used);
	mmio_wr(d, VIRTIO_MMIO_QUEUE_READY, 1);
	/* a polling driver: no interrupts */
	*(uint16_t *)g(d, d->avail, 2) = VIRTQ_AVAIL_F_NO_INTERRUPT;
	mmio_wr(d, VIRTIO_MMIO_STATUS, st | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	return (mmio_rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DRIVER_OK) ? 0 : -EIO;
}

static void set_desc(struct drv *d, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	uint8_t *p = g(d, d->desc + 16ull * i, 16);

	memcpy(p, &addr, 8);
	memcpy(p + 8, &len, 4);
	memcpy(p + 12, &flags, 2);
	memcpy(p + 14, &next, 2);
}

/* Dispatch the VM's event set (the event thread's job) until used catches up. */
static void wait_all(struct drv *d)
{
	struct epoll_event evs[8];

	for (;;) {
		uint16_t u = __atomic_load_n((uint16_t *)g(d, d->used + 2, 2), __ATOMIC_ACQUIRE);

		d->done += (uint16_t)(u - d->used_idx);
		d->used_idx = u;
		if (u == d->avail_idx)
			return;
		int n = epoll_wait(d->vm->epfd, evs, 8, 100);

		for (int i = 0; i < n; i++) {
			struct vm_event *e = &d->vm->events[evs[i].data.u64];

			e->fn(e->opaque, e->fd, evs[i].events);
		}
	}
}

/* qd requests of len bytes at sequential offsets from *pos (wrapping), one notify. */
static void batch(struct drv *d, bool write, uint32_t len, unsigned qd, uint64_t *pos,
		  uint64_t disk_bytes)
{
	uint16_t *ring = g(d, d->avail + 4, 2ull * QUEUE);

	for (unsigned i = 0; i < qd; i++) {
		uint32_t type = write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
		uint64_t sector = *pos / 512, hdr = d->hdr + 16ull * i;
		uint16_t h = (uint16_t)(3 * i);

		memcpy(g(d, hdr, 4), &type, 4);
		memcpy(g(d, hdr + 8, 8), &sector, 8);
		set_desc(d, h, hdr, 16, VIRTQ_DESC_F_NEXT, (uint16_t)(h + 1));
		set_desc(d, h + 1u, DATA + (uint64_t)i * REQ_MAX, len,
			 VIRTQ_DESC_F_NEXT | (write ? 0 : VIRTQ_DESC_F_WRITE), (uint16_t)(h + 2));
		set_desc(d, h + 2u, d->status + i, 1, VIRTQ_DESC_F_WRITE, 0);
		ring[d->avail_idx % QUEUE] = h;
		d->avail_idx++;
		*pos += len;
		if (*pos + len > disk_bytes)
			*pos = 0;
	}
	__atomic_store_n((uint16_t *)g(d, d->avail + 2, 2), d->avail_idx, __ATOMIC_RELEASE);
	mmio_wr(d, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	wait_all(d);
	for (unsigned i = 0; i < qd; i++)
		if (*(uint8_t *)g(d, d->status + i, 1) != VIRTIO_BLK_S_OK)
			d->errors++;
}

/* MiB/s of the device for one configuration, or a negative code. */
static double run_device(const char *path, enum disk_engine engine, int ring_writes, bool write,
			 uint32_t len, unsigned qd, double seconds, uint64_t disk_bytes,
			 enum disk_engine *used, bool *used_ring_writes)
{
	struct vm_config cfg;
	struct vm_disk_config dc = { .engine = engine };
	struct vm *vm = NULL;
	struct virtio_blk *b;
	struct drv d = { 0 };
	uint64_t pos = 0, t0, t1, budget = (uint64_t)(seconds * 1e9);
	double mibs = -EIO;

	config_init(&cfg);
	cfg.mem_size = 64 * MiB;
	snprintf(dc.path, sizeof(dc.path), "%s", path);
	snprintf(dc.id, sizeof(dc.id), "bench");
	if (vm_create(&cfg, &vm))
		return -EIO;
	if (virtio_blk_create(vm, RW_GPA_VIRTIO_BASE, 5, &dc, &b))
		goto out;
	struct disk *disk = virtio_blk_disk(virtio_blk_device(b));

	if (ring_writes >= 0)
		disk_set_uring_writes(disk, ring_writes);
	*used = disk_engine_used(disk);
	*used_ring_writes = disk_uring_writes(disk);
	d.vm = vm;
	d.base = RW_GPA_VIRTIO_BASE;
	if (drv_init(&d))
		goto out;
	memset(g(&d, DATA, (uint64_t)qd * REQ_MAX), 0x5a, (uint64_t)qd * REQ_MAX);
	/* warm-up: first touches of the overlay and the ring */
	for (int i = 0; i < 4; i++)
		batch(&d, write, len, qd, &pos, disk_bytes);
	d.done = 0;
	t0 = rw_now_ns();
	do
		batch(&d, write, len, qd, &pos, disk_bytes);
	while ((t1 = rw_now_ns()) - t0 < budget);
	if (d.errors) {
		fprintf(stderr, "rewind-bench: devices: %llu requests failed\n",
			(unsigned long long)d.errors);
		goto out;
	}
	mibs = (double)d.done * len / (double)MiB / ((double)(t1 - t0) / 1e9);
out:
	vm_destroy(vm);
	return mibs;
}

/* ------------------------------------------------------- the host floors */

/* fio-style: O_DIRECT through io_uring at queue depth qd, sequential. */
static double host_direct(const char *path, bool write, uint32_t len, unsigned qd,
			  double seconds, uint64_t bytes)
{
	struct io_uring ring;
	uint8_t *buf = NULL;
	uint64_t pos = 0, done = 0, t0, t1, budget = (uint64_t)(seconds * 1e9);
	unsigned inflight = 0;
	double mibs = -EIO;
	int fd = open(path, (write ? O_WRONLY : O_RDONLY) | O_DIRECT | O_CLOEXEC);

	if (fd < 0) {
		fprintf(stderr, "rewind-bench: devices: O_DIRECT open of %s: %s\n", path,
			strerror(errno));
		return -errno;
	}
	if (io_uring_queue_init(QD_MAX, &ring, 0))
		goto out_fd;
	if (posix_memalign((void **)&buf, 4096, (size_t)qd * len))
		goto out_ring;
	memset(buf, 0x5a, (size_t)qd * len);
	t0 = rw_now_ns();
	for (;;) {
		struct io_uring_cqe *cqe;

		t1 = rw_now_ns();
		while (inflight < qd && t1 - t0 < budget) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			uint8_t *p = buf + (size_t)(inflight % qd) * len;

			if (write)
				io_uring_prep_write(sqe, fd, p, len, pos);
			else
				io_uring_prep_read(sqe, fd, p, len, pos);
			pos += len;
			if (pos + len > bytes)
				pos = 0;
			inflight++;
		}
		if (!inflight)
			break;
		if (io_uring_submit_and_wait(&ring, 1) < 0 || io_uring_wait_cqe(&ring, &cqe))
			goto out_buf;
		if (cqe->res != (int)len) {
			fprintf(stderr, "rewind-bench: devices: direct %s: %s\n",
				write ? "write" : "read", cqe->res < 0 ? strerror(-cqe->res) : "short");
			goto out_buf;
		}
		io_uring_cqe_seen(&ring, cqe);
		inflight--;
		done++;
	}
	mibs = (double)done * len / (double)MiB / ((double)(t1 - t0) / 1e9);
out_buf:
	free(buf);
out_ring:
	io_uring_queue_exit(&ring);
out_fd:
	close(fd);
	return mibs;
}

/* pread/pwrite through the page cache, one request at a time. */
static double host_buffered(const char *path, bool write, uint32_t len, double seconds,
			    uint64_t bytes)
{
	uint8_t *buf = malloc(len);
	uint64_t pos = 0, done = 0, t0, t1, budget = (uint64_t)(seconds * 1e9);
	double mibs = -EIO;
	int fd = open(path, (write ? O_WRONLY : O_RDONLY) | O_CLOEXEC);

	if (fd < 0 || !buf)
		goto out;
	memset(buf, 0x5a, len);
	t0 = rw_now_ns();
	do {
		int ret = write ? rw_pwrite_all(fd, buf, len, pos) : rw_pread_all(fd, buf, len, pos);

		if (ret)
			goto out;
		pos += len;
		if (pos + len > bytes)
			pos = 0;
		done++;
	} while ((t1 = rw_now_ns()) - t0 < budget);
	mibs = (double)done * len / (double)MiB / ((double)(t1 - t0) / 1e9);
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return mibs;
}

/* ------------------------------------------------------------- main */

static int make_file(const char *path, uint64_t bytes)
{
	uint8_t *buf = malloc(MiB);
	uint64_t x = 0x1234567;
	int fd, ret = 0;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || !buf) {
		ret = fd < 0 ? -errno : -ENOMEM;
		goto out;
	}
	for (uint64_t off = 0; off < bytes && !ret; off += MiB) {
		for (size_t i = 0; i < MiB; i += 8) {
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
			memcpy(buf + i, &x, 8);
		}
		ret = rw_write_all(fd, buf, MiB);
	}
	if (!ret && fsync(fd))
		ret = -errno;
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return ret;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: rewind-bench devices [--mib N] [--seconds S] [--dir DIR]\n"
		   "  virtio-blk throughput (uring and sync engines, 4 and 64 KiB requests, queue\n"
		   "  depth 1 and 32) beside O_DIRECT and buffered host I/O on the same file\n");
}

int bench_devices_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mib", required_argument, NULL, 'm' },
		{ "seconds", required_argument, NULL, 's' },
		{ "dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static const uint32_t sizes[] = { 4 * KiB, 64 * KiB };
	static const unsigned qds[] = { 1, 32 };
	uint64_t mib = 64, ms = 500;
	const char *base = NULL;
	char dir[3800], path[4000], scratch[4000];
	double seconds;
	int c, rc = 1;

	optind = 0;
	while ((c = getopt_long(argc, argv, "m:s:d:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (rw_parse_uint(optarg, 1, 1 << 16, &mib))
				goto bad_usage;
			break;
		case 's': {
			char *end;
			double v = strtod(optarg, &end);

			if (*end || !(v > 0 && v <= 60))
				goto bad_usage;
			ms = (uint64_t)(v * 1000);
			break;
		}
		case 'd':
			base = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			goto bad_usage;
		}
	}
	if (optind != argc)
		goto bad_usage;
	seconds = (double)ms / 1000.0;
	if (!base)
		base = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/var/tmp";
	snprintf(dir, sizeof(dir), "%s/rewind-bench-devices-XXXXXX", base);
	if (!mkdtemp(dir)) {
		fprintf(stderr, "rewind-bench: devices: cannot create %s: %s\n", dir,
			strerror(errno));
		return 1;
	}
	snprintf(path, sizeof(path), "%s/disk.img", dir);
	snprintf(scratch, sizeof(scratch), "%s/scratch.img", dir);
	uint64_t bytes = mib * MiB;

	if (make_file(path, bytes) || make_file(scratch, bytes)) {
		fprintf(stderr, "rewind-bench: devices: cannot write %llu MiB files in %s\n",
			(unsigned long long)mib, dir);
		goto out;
	}
	/* warm the page cache: the device reads through it */
	{
		static uint8_t tmp[REQ_MAX];
		int fd = open(path, O_RDONLY | O_CLOEXEC);

		for (uint64_t off = 0; fd >= 0 && off < bytes; off += REQ_MAX)
			if (rw_pread_all(fd, tmp, REQ_MAX, off))
				break;
		if (fd >= 0)
			close(fd);
	}

	for (int w = 0; w < 2; w++)
		for (unsigned si = 0; si < ARRAY_SIZE(sizes); si++)
			for (unsigned qi = 0; qi < ARRAY_SIZE(qds); qi++) {
				const char *host = w ? scratch : path;
				double direct = host_direct(host, w, sizes[si], qds[qi], seconds,
							    bytes);
				double buffered = host_buffered(host, w, sizes[si], seconds, bytes);

				/* uring as configured, uring with ring writes forced (writes), sync */
				for (unsigned ei = 0; ei < 3; ei++) {
					enum disk_engine eng = ei == 2 ? DISK_ENGINE_SYNC
								       : DISK_ENGINE_URING;
					enum disk_engine used = eng;
					bool ring_writes = false;
					double dev;

					if (ei == 1 && !w)
						continue;
					dev = run_device(path, eng, ei == 1 ? 1 : -1, w, sizes[si],
							 qds[qi], seconds, bytes, &used,
							 &ring_writes);
					if (dev < 0 || direct < 0 || buffered < 0) {
						fprintf(stderr, "rewind-bench: devices: a measurement "
								"failed\n");
						goto out;
					}
					bench_emit(json_pack(
						"{s:s, s:s, s:s, s:s, s:I, s:I, s:f, s:f, s:f, s:f}",
						"bench", "devices.blk", "engine",
						used == DISK_ENGINE_URING ? "uring" : "sync",
						"writes",
						used == DISK_ENGINE_SYNC ? "inline"
						: ring_writes		 ? "ring"
									 : "inline",
						"op", w ? "write" : "read", "req_kib",
						(json_int_t)(sizes[si] / KiB), "qd", (json_int_t)qds[qi],
						"mib_s", bench_round(dev), "host_direct_mib_s",
						bench_round(direct), "host_buffered_mib_s",
						bench_round(buffered), "vs_direct",
						bench_round(dev / direct)));
				}
			}
	rc = bench_devices_ckpt();
out:
	unlink(path);
	unlink(scratch);
	rmdir(dir);
	return rc;

bad_usage:
	usage(stderr);
	return 2;
}
