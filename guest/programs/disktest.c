/*
 * disktest: gives every disk its own content, then keeps checking it.
 *
 * args: "[sectors=N] [period_ms=M]" (defaults 64 and 50).
 *
 * Disk i gets rw_host_pattern(i + 1, offset) over its first N sectors, then
 * "disktest: wrote <ndisks> disks" is printed. From then on, every M ms:
 *   - every disk is read back and compared: its first N sectors against the
 *     pattern, and sector N against what the backing file held there at the
 *     start (a block the guest never wrote comes from the disk file);
 *     "disktest: verify ok <round>" or "disktest: verify FAILED disk <i>
 *     sector <s>" is printed;
 *   - one sector of disk 0, a different one each round, is read into a
 *     page of its own (dma_page) that the CPU never writes: only the device
 *     changes that page, which makes it a test of the VMM's own dirty
 *     tracking.
 * It never exits: the host stops it.
 */
#include <rw/rw.h>
#include <rw/virtio_blk.h>

#define MAX_DISKS 8

static struct rw_blk disks[MAX_DISKS];
static uint8_t sector_n[MAX_DISKS][512]; /* sector N as the disk file had it */

static void fill(uint8_t *buf, unsigned disk, uint64_t sector)
{
	for (unsigned i = 0; i < 512; i++)
		buf[i] = rw_host_pattern(disk + 1, sector * 512 + i);
}

int rw_main(const char *args)
{
	uint64_t n = rw_arg_u64(args, "sectors", 64), period = rw_arg_u64(args, "period_ms", 50);
	int ndisks = rw_blk_count();
	uint8_t buf[512], want[512];
	uint8_t *dma_page = rw_page_alloc(1);

	if (ndisks <= 0 || !dma_page || n == 0) {
		rw_print("disktest: needs at least one writable disk\n");
		return 2;
	}
	if (ndisks > MAX_DISKS)
		ndisks = MAX_DISKS;
	for (int d = 0; d < ndisks; d++) {
		if (rw_blk_open((unsigned)d, &disks[d]) || rw_blk_capacity(&disks[d]) <= n ||
		    rw_blk_read(&disks[d], n, sector_n[d], 1)) {
			rw_printf("disktest: disk %d cannot be opened or is too small\n", d);
			return 2;
		}
		for (uint64_t s = 0; s < n; s++) {
			fill(buf, (unsigned)d, s);
			if (rw_blk_write(&disks[d], s, buf, 1)) {
				rw_printf("disktest: write error on disk %d\n", d);
				return 1;
			}
		}
	}
	rw_printf("disktest: wrote %d disks\n", ndisks);
	for (uint64_t round = 1;; round++) {
		rw_sleep_ms(period);
		for (int d = 0; d < ndisks; d++) {
			for (uint64_t s = 0; s <= n; s++) {
				if (rw_blk_read(&disks[d], s, buf, 1)) {
					rw_printf("disktest: read error on disk %d\n", d);
					return 1;
				}
				if (s < n)
					fill(want, (unsigned)d, s);
				if (memcmp(buf, s < n ? want : sector_n[d], 512)) {
					rw_printf("disktest: verify FAILED disk %d sector %llu\n", d,
						  (unsigned long long)s);
					return 1;
				}
			}
		}
		if (rw_blk_read(&disks[0], round % n, dma_page, 1)) {
			rw_print("disktest: read error on disk 0\n");
			return 1;
		}
		rw_printf("disktest: verify ok %llu\n", (unsigned long long)round);
	}
}
