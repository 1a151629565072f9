/*
 * demo: the default demo workload. It keeps evolving state in memory and
 * appends to a log on disk 0, one short line per step.
 *
 * args: "[steps=N] [pages=P] [dirty=D] [sleep_ms=M]"
 *       (defaults steps=0 = forever, pages=2048 = 8 MiB, dirty=64,
 *       sleep_ms=20)
 *
 * Each step n = 1, 2, ...:
 *   1. evolves the state: D pages, picked by a cursor kept in the state's
 *      first word, are rewritten from their old contents and the cursor
 *      (a pure function of the previous state: no time, no randomness);
 *   2. hashes the whole state (rw_checksum over P pages);
 *   3. writes a 512-byte log record (step, state hash) at the next log
 *      sector and the header (sector 0: "RWLOG", record count, P, D, last
 *      hash) to disk 0. Records fill sectors 1 .. capacity-1 and then wrap
 *      to sector 1. The log position lives in memory, so a checkpoint
 *      restore rolls it back with the state and the disk;
 *   4. prints    step <n> state <16 hex digits> log <sector>
 *   5. sleeps M ms (rw_sleep_ms).
 *
 * At start it prints "demo: pages=P dirty=D capacity=C" and reads the
 * header. A valid header written with the same P and D makes it replay the
 * logged number of steps in memory (no I/O), check the state hash against
 * the header's and continue after the last logged step
 * ("demo: resuming after step <c>"); a header with other parameters or a
 * hash that does not match is reported ("demo: log from pages=.. dirty=..,
 * starting over" / "demo: log does not match the state at step <c>,
 * starting over") and the log starts again. With steps=N it stops after
 * step N (counting logged steps) with "demo: done <n> steps state <hash>".
 * Two runs on equal disks print identical lines.
 *
 * Exit: 0 done; 1 disk I/O error ("demo: disk error <e> at step <n>");
 * 2 no writable disk ("demo: needs one writable virtio-blk disk (...)")
 * or not enough memory.
 */
#include <rw/rw.h>
#include <rw/virtio_blk.h>

#define WORDS_PER_PAGE (RW_PAGE_SIZE / 8)

static const char log_magic[8] = "RWLOG";
static const char rec_magic[8] = "RWREC";

/* Sector 0. The check word is rw_checksum of the fields before it. */
struct log_header {
	char magic[8];
	uint64_t count;     /* records written (= last step) */
	uint64_t pages;
	uint64_t dirty;
	uint64_t last_hash; /* state hash after step count */
	uint64_t check;
};

struct log_record {
	char magic[8];
	uint64_t step;
	uint64_t hash;
	uint64_t check;
};

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static void state_init(uint64_t *s, uint64_t pages)
{
	for (uint64_t i = 0; i < pages * WORDS_PER_PAGE; i++)
		s[i] = mix64(i + 0x6a09e667f3bcc909ULL);
}

static void evolve(uint64_t *s, uint64_t pages, uint64_t dirty)
{
	uint64_t x = s[0];

	for (uint64_t k = 0; k < dirty; k++) {
		uint64_t *pg;

		x = mix64(x + k * RW_CSUM_G);
		pg = s + (x % pages) * WORDS_PER_PAGE;
		x ^= pg[(x >> 40) % WORDS_PER_PAGE];
		for (uint64_t i = 0; i < WORDS_PER_PAGE; i++) {
			uint64_t w = (pg[i] ^ (x + i)) * RW_CSUM_M;

			pg[i] = w ^ (w >> 29);
		}
	}
	s[0] = x;
}

static uint64_t log_sector(uint64_t step, uint64_t capacity)
{
	return 1 + (step - 1) % (capacity - 1);
}

int rw_main(const char *args)
{
	uint64_t steps = rw_arg_u64(args, "steps", 0);
	uint64_t pages = rw_arg_u64(args, "pages", 2048);
	uint64_t dirty = rw_arg_u64(args, "dirty", 64);
	uint64_t sleep_ms = rw_arg_u64(args, "sleep_ms", 20);
	struct log_header *hdr;
	struct log_record *rec;
	uint8_t *io;
	uint64_t *state, hash = 0, n = 0, cap, sector;
	struct rw_blk d;
	int ret;

	if (!pages)
		pages = 1;
	ret = rw_blk_open(0, &d);
	if (ret < 0) {
		rw_printf("demo: needs one writable virtio-blk disk (open: error %d)\n", ret);
		return 2;
	}
	cap = rw_blk_capacity(&d);
	if (rw_blk_readonly(&d) || cap < 2) {
		rw_printf("demo: needs one writable virtio-blk disk (ro %d, capacity %llu)\n",
			  rw_blk_readonly(&d) ? 1 : 0, (unsigned long long)cap);
		return 2;
	}
	state = rw_page_alloc(pages);
	io = rw_page_alloc(1);
	if (!state || !io) {
		rw_printf("demo: cannot allocate %llu pages\n", (unsigned long long)pages + 1);
		return 2;
	}
	hdr = (struct log_header *)io;
	rec = (struct log_record *)(io + RW_BLK_SECTOR_SIZE);
	rw_printf("demo: pages=%llu dirty=%llu capacity=%llu\n", (unsigned long long)pages,
		  (unsigned long long)dirty, (unsigned long long)cap);
	state_init(state, pages);

	ret = rw_blk_read(&d, 0, hdr, 1);
	if (ret < 0) {
		rw_printf("demo: disk error %d at step 0\n", ret);
		return 1;
	}
	if (memcmp(hdr->magic, log_magic, sizeof(log_magic)) == 0 &&
	    hdr->check == rw_checksum(hdr, offsetof(struct log_header, check)) && hdr->count) {
		if (hdr->pages != pages || hdr->dirty != dirty) {
			rw_printf("demo: log from pages=%llu dirty=%llu, starting over\n",
				  (unsigned long long)hdr->pages, (unsigned long long)hdr->dirty);
		} else {
			for (uint64_t k = 0; k < hdr->count; k++)
				evolve(state, pages, dirty);
			hash = rw_checksum(state, pages * RW_PAGE_SIZE);
			if (hash == hdr->last_hash) {
				n = hdr->count;
				rw_printf("demo: resuming after step %llu\n", (unsigned long long)n);
			} else {
				rw_printf("demo: log does not match the state at step %llu, "
					  "starting over\n",
					  (unsigned long long)hdr->count);
				state_init(state, pages);
			}
		}
	}

	while (steps == 0 || n < steps) {
		n++;
		evolve(state, pages, dirty);
		hash = rw_checksum(state, pages * RW_PAGE_SIZE);
		sector = log_sector(n, cap);

		memset(rec, 0, RW_BLK_SECTOR_SIZE);
		memcpy(rec->magic, rec_magic, sizeof(rec_magic));
		rec->step = n;
		rec->hash = hash;
		rec->check = rw_checksum(rec, offsetof(struct log_record, check));
		ret = rw_blk_write(&d, sector, rec, 1);
		if (ret == 0) {
			memset(hdr, 0, RW_BLK_SECTOR_SIZE);
			memcpy(hdr->magic, log_magic, sizeof(log_magic));
			hdr->count = n;
			hdr->pages = pages;
			hdr->dirty = dirty;
			hdr->last_hash = hash;
			hdr->check = rw_checksum(hdr, offsetof(struct log_header, check));
			ret = rw_blk_write(&d, 0, hdr, 1);
		}
		if (ret < 0) {
			rw_printf("demo: disk error %d at step %llu\n", ret, (unsigned long long)n);
			return 1;
		}
		rw_printf("step %llu state %016llx log %llu\n", (unsigned long long)n,
			  (unsigned long long)hash, (unsigned long long)sector);
		if (sleep_ms)
			rw_sleep_ms(sleep_ms);
	}
	ret = rw_blk_flush(&d);
	if (ret < 0) {
		rw_printf("demo: disk error %d at step %llu\n", ret, (unsigned long long)n);
		return 1;
	}
	rw_printf("demo: done %llu steps state %016llx\n", (unsigned long long)n,
		  (unsigned long long)hash);
	return 0;
}
