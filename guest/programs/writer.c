/*
 * writer: writes to its disk at a set volume per period, and times itself.
 *
 * args: "mib=W period_ms=P periods=N" (defaults 16, 500, 6).
 *
 * Every period it writes W MiB to disk 0 in 64 KiB requests, sequentially
 * and wrapping at the end of the disk, with content that changes every
 * period (nothing deduplicates), then sleeps out the rest of the period.
 * After each period it prints
 *     writer: period <n> bytes <b> us <t>
 * where t is the time the writes took (TSC). W = 0 writes nothing and only
 * keeps time. After N periods: "writer: done", exit 0.
 */
#include <rw/rw.h>
#include <rw/virtio_blk.h>

#define REQ (64u << 10)

int rw_main(const char *args)
{
	uint64_t mib = rw_arg_u64(args, "mib", 16), period = rw_arg_u64(args, "period_ms", 500);
	uint64_t periods = rw_arg_u64(args, "periods", 6), khz = rw_tsc_khz();
	struct rw_blk d;
	uint64_t *buf = rw_page_alloc(REQ / RW_PAGE_SIZE);
	uint64_t pos = 0;

	if (!buf || !khz || rw_blk_count() < 1 || rw_blk_open(0, &d)) {
		rw_print("writer: needs a writable disk and the TSC rate\n");
		return 2;
	}
	uint64_t cap = rw_blk_capacity(&d), per_req = REQ / 512;
	for (uint64_t p = 1; p <= periods; p++) {
		uint64_t t0 = rw_rdtsc(), bytes = 0;

		for (; bytes < mib << 20; bytes += REQ) {
			for (uint64_t i = 0; i < REQ / 8; i += 512)
				buf[i] = p * 0x9e3779b97f4a7c15ULL ^ (pos + i / 64); /* its sector */
			if (pos + per_req > cap)
				pos = 0;
			if (rw_blk_write(&d, pos, buf, (uint32_t)per_req)) {
				rw_print("writer: disk error\n");
				return 1;
			}
			pos += per_req;
		}
		uint64_t us = (rw_rdtsc() - t0) * 1000 / khz;
		rw_printf("writer: period %llu bytes %llu us %llu\n", (unsigned long long)p,
			  (unsigned long long)bytes, (unsigned long long)us);
		if (us / 1000 < period)
			rw_sleep_ms(period - us / 1000);
	}
	rw_print("writer: done\n");
	return 0;
}
