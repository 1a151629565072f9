/*
 * blkcheck: writes and verifies a deterministic pattern on a virtio-blk
 * disk (used by the tests).
 *
 * args: "mode=M [seed=S] [sectors=N] [disk=I] [start=K]"
 *       (defaults seed=1 sectors=64 disk=0 start=0)
 *
 *   Byte o of the disk (o = sector * 512 + i) in the pattern is
 *   rw_host_pattern(S, o) (rw/abi.h), so a host test can compute it too.
 *   The pattern's hash over sectors K..K+N-1 is
 *       h = 0; for each sector: h = rw_checksum({h, rw_checksum(sector)}, 16)
 *   (two little-endian 64-bit words), printed as 16 hex digits.
 *
 *   mode=write        write the pattern to N sectors from K, flush;
 *                     prints "blkcheck: wrote <N> sectors <hash>"
 *   mode=verify       read them back and compare; prints
 *                     "blkcheck: ok <hash>" (exit 0) or
 *                     "blkcheck: mismatch at sector <X>" (exit 1)
 *   mode=writeverify  both, in one run (a disk's writes live in an overlay
 *                     that ends with the VM)
 *   mode=id           "blkcheck: id <string>" (GET_ID)
 *   mode=info         "blkcheck: disk <I> capacity <sectors> ro <0|1> flush <0|1>"
 *
 *   Errors: "blkcheck: no disk <I> (error <e>)" exits 2; an I/O error
 *   prints "blkcheck: <read|write|flush|id> error <e> at sector <X>" and
 *   exits 1 (e is a negative errno, RW_E* in rw/virtio_blk.h).
 */
#include <rw/rw.h>
#include <rw/virtio_blk.h>

#define CHUNK_SECTORS 256u

static void fill(uint8_t *p, uint64_t seed, uint64_t sector, uint32_t n)
{
	uint64_t o = sector * RW_BLK_SECTOR_SIZE;

	for (uint64_t i = 0; i < (uint64_t)n * RW_BLK_SECTOR_SIZE; i++)
		p[i] = rw_host_pattern(seed, o + i);
}

static uint64_t fold(uint64_t h, const uint8_t *p, uint32_t n)
{
	for (uint32_t s = 0; s < n; s++) {
		uint64_t pair[2] = { h, rw_checksum(p + (uint64_t)s * RW_BLK_SECTOR_SIZE,
						    RW_BLK_SECTOR_SIZE) };

		h = rw_checksum(pair, sizeof(pair));
	}
	return h;
}

static int do_write(struct rw_blk *d, uint8_t *buf, uint64_t seed, uint64_t start, uint64_t count)
{
	uint64_t h = 0;
	int ret;

	for (uint64_t s = start; s < start + count; s += CHUNK_SECTORS) {
		uint32_t n = start + count - s < CHUNK_SECTORS ? (uint32_t)(start + count - s)
							       : CHUNK_SECTORS;

		fill(buf, seed, s, n);
		h = fold(h, buf, n);
		ret = rw_blk_write(d, s, buf, n);
		if (ret < 0) {
			rw_printf("blkcheck: write error %d at sector %llu\n", ret,
				  (unsigned long long)s);
			return 1;
		}
	}
	ret = rw_blk_flush(d);
	if (ret < 0) {
		rw_printf("blkcheck: flush error %d at sector %llu\n", ret,
			  (unsigned long long)(start + count));
		return 1;
	}
	rw_printf("blkcheck: wrote %llu sectors %016llx\n", (unsigned long long)count,
		  (unsigned long long)h);
	return 0;
}

static int do_verify(struct rw_blk *d, uint8_t *buf, uint8_t *want, uint64_t seed, uint64_t start,
		     uint64_t count)
{
	uint64_t h = 0;

	for (uint64_t s = start; s < start + count; s += CHUNK_SECTORS) {
		uint32_t n = start + count - s < CHUNK_SECTORS ? (uint32_t)(start + count - s)
							       : CHUNK_SECTORS;
		int ret = rw_blk_read(d, s, buf, n);

		if (ret < 0) {
			rw_printf("blkcheck: read error %d at sector %llu\n", ret,
				  (unsigned long long)s);
			return 1;
		}
		fill(want, seed, s, n);
		for (uint32_t k = 0; k < n; k++) {
			uint64_t off = (uint64_t)k * RW_BLK_SECTOR_SIZE;

			if (memcmp(buf + off, want + off, RW_BLK_SECTOR_SIZE) != 0) {
				rw_printf("blkcheck: mismatch at sector %llu\n",
					  (unsigned long long)(s + k));
				return 1;
			}
		}
		h = fold(h, buf, n);
	}
	rw_printf("blkcheck: ok %016llx\n", (unsigned long long)h);
	return 0;
}

int rw_main(const char *args)
{
	uint64_t seed = rw_arg_u64(args, "seed", 1);
	uint64_t count = rw_arg_u64(args, "sectors", 64);
	uint64_t start = rw_arg_u64(args, "start", 0);
	unsigned disk = (unsigned)rw_arg_u64(args, "disk", 0);
	size_t chunk_pages = CHUNK_SECTORS * RW_BLK_SECTOR_SIZE / RW_PAGE_SIZE;
	bool wr = rw_arg_has(args, "mode=write") || rw_arg_has(args, "mode=writeverify");
	bool ver = rw_arg_has(args, "mode=verify") || rw_arg_has(args, "mode=writeverify");
	struct rw_blk d;
	uint8_t *buf, *want;
	int ret;

	if (!wr && !ver && !rw_arg_has(args, "mode=id") && !rw_arg_has(args, "mode=info")) {
		rw_print("blkcheck: usage: mode=write|verify|writeverify|id|info [seed=S] "
			 "[sectors=N] [disk=I] [start=K]\n");
		return 2;
	}
	ret = rw_blk_open(disk, &d);
	if (ret < 0) {
		rw_printf("blkcheck: no disk %u (error %d)\n", disk, ret);
		return 2;
	}
	if (rw_arg_has(args, "mode=info")) {
		rw_printf("blkcheck: disk %u capacity %llu ro %d flush %d\n", disk,
			  (unsigned long long)rw_blk_capacity(&d), rw_blk_readonly(&d) ? 1 : 0,
			  (d.features >> RW_VIRTIO_BLK_F_FLUSH) & 1 ? 1 : 0);
		return 0;
	}
	if (rw_arg_has(args, "mode=id")) {
		char id[RW_VIRTIO_BLK_ID_BYTES + 1];

		ret = rw_blk_get_id(&d, id);
		if (ret < 0) {
			rw_printf("blkcheck: id error %d at sector 0\n", ret);
			return 1;
		}
		rw_printf("blkcheck: id %s\n", id);
		return 0;
	}
	buf = rw_page_alloc(chunk_pages);
	want = rw_page_alloc(chunk_pages);
	if (!buf || !want) {
		rw_print("blkcheck: out of memory\n");
		return 2;
	}
	if (wr && do_write(&d, buf, seed, start, count))
		return 1;
	if (ver && do_verify(&d, buf, want, seed, start, count))
		return 1;
	return 0;
}
