/*
 * Copy-on-write disks (devices/disk.c) without a VM: the --disk parser,
 * the overlay (the backing file is never written), read-modify-write of
 * partial blocks, both engines giving the same bytes, the two dirty epochs
 * and block restore.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "config.h"
#include "disk.h"
#include "disk_files.h"
#include "disk_identity.h"
#include "testutil.h"
#include "util.h"

/* ------------------------------------------------------------- helpers */

static uint8_t pattern_byte(uint64_t seed, uint64_t i)
{
	uint64_t x = (seed + 1) * 0x9e3779b97f4a7c15ULL ^ (i * 0xbf58476d1ce4e5b9ULL);

	x ^= x >> 31;
	return (uint8_t)(x ^ (x >> 17));
}

static void fill(void *buf, uint64_t len, uint64_t seed, uint64_t base)
{
	uint8_t *p = buf;

	for (uint64_t i = 0; i < len; i++)
		p[i] = pattern_byte(seed, base + i);
}

/* A backing file of size bytes with pattern seed; its path in a scratch dir. */
static const char *make_backing(const char *tag, uint64_t size, uint64_t seed)
{
	static __thread char path[4096];
	const char *dir = rw_test_tmpdir(tag);
	uint8_t *buf = malloc(size ? size : 1);

	cr_assert_not_null(buf);
	fill(buf, size, seed, 0);
	snprintf(path, sizeof(path), "%s/disk.img", dir);
	write_disk_file(path, buf, size);
	free(buf);
	return path;
}

static struct disk *open_disk(const char *path, enum disk_engine engine, bool ro)
{
	struct vm_disk_config cfg = { .ro = ro, .engine = engine };
	struct disk *d = NULL;

	snprintf(cfg.path, sizeof(cfg.path), "%s", path);
	cr_assert_eq(disk_open(&cfg, "t", &d), 0);
	return d;
}

/* Run one request to completion, whatever the engine. */
static int io(struct disk *d, bool write, uint64_t off, void *buf, uint64_t len)
{
	struct iovec iov[3];
	struct disk_req r = { .write = write, .offset = off, .len = len, .iov = iov };
	uint64_t third = (len / 3) & ~511ULL;

	/* split the buffer unevenly so that slicing is exercised */
	iov[0] = (struct iovec){ buf, third ? third - 100 : len };
	r.iovcnt = 1;
	if (third) {
		iov[1] = (struct iovec){ (uint8_t *)buf + third - 100, 300 };
		iov[2] = (struct iovec){ (uint8_t *)buf + third + 200, len - third - 200 };
		r.iovcnt = 3;
	}
	if (!disk_submit(d, &r)) {
		disk_kick(d);
		struct disk_req *done = NULL;

		while (!done)
			done = disk_reap(d, true);
		cr_assert_eq(done, &r);
		cr_assert_null(done->next);
	}
	cr_assert_eq(disk_inflight(d), 0);
	return r.result;
}

/* -------------------------------------------------------------- parser */

Test(disk, parse_accepts_the_documented_forms)
{
	struct vm_disk_config c;
	char why[256];

	cr_assert_eq(disk_config_parse("a.img", &c, why, sizeof(why)), 0);
	cr_assert_str_eq(c.path, "a.img");
	cr_assert_str_eq(c.id, "");
	cr_assert_not(c.ro);
	cr_assert_eq(c.engine, DISK_ENGINE_URING);

	cr_assert_eq(disk_config_parse("/x/b.img,id=data,ro,engine=sync", &c, why, sizeof(why)), 0);
	cr_assert_str_eq(c.path, "/x/b.img");
	cr_assert_str_eq(c.id, "data");
	cr_assert(c.ro);
	cr_assert_eq(c.engine, DISK_ENGINE_SYNC);

	cr_assert_eq(disk_config_parse("odd,,name.img,engine=uring", &c, why, sizeof(why)), 0);
	cr_assert_str_eq(c.path, "odd,name.img");
	cr_assert_eq(c.engine, DISK_ENGINE_URING);
}

Test(disk, parse_refuses_with_a_reason)
{
	static const struct {
		const char *arg, *needle;
	} bad[] = {
		{ "", "empty disk path" },
		{ ",ro", "empty disk path" },
		{ "a.img,rw", "unknown disk option 'rw'" },
		{ "a.img,engine=aio", "engine 'aio'" },
		{ "a.img,id=", "1 to 47" },
		{ "a.img,id=a/b", "letters, digits" },
		{ "a.img,ro,ro", "'ro' given twice" },
		{ "a.img,id=x,id=y", "'id' given twice" },
		{ "a.img,", "empty option" },
		{ "a.img,id=0123456789012345678901234567890123456789012345678", "1 to 47" },
	};
	struct vm_disk_config c;
	char why[256];

	for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
		cr_assert_eq(disk_config_parse(bad[i].arg, &c, why, sizeof(why)), -EINVAL, "%s",
			     bad[i].arg);
		cr_assert_not_null(strstr(why, bad[i].needle), "'%s' gave '%s'", bad[i].arg, why);
	}
}

/* --------------------------------------------------------------- open */

Test(disk, size_is_rounded_down_and_empty_files_are_refused)
{
	const char *p = make_backing("disk-size", 3 * 4096 + 700, 1);
	struct vm_disk_config cfg = { 0 };
	struct disk *d = open_disk(p, DISK_ENGINE_SYNC, false);
	uint8_t blk[4096], want[4096];

	cr_assert_eq(disk_size(d), 3 * 4096 + 512);
	cr_assert_eq(disk_nblocks(d), 4);
	/* the last block: 512 bytes of the file, then zeros (not the file's tail) */
	cr_assert_eq(disk_read_block(d, 3, blk), 0);
	memset(want, 0, sizeof(want));
	fill(want, 512, 1, 3 * 4096);
	cr_assert_eq(memcmp(blk, want, sizeof(want)), 0);
	cr_assert_eq(disk_read_block(d, 4, blk), -EINVAL);
	disk_close(d);

	p = make_backing("disk-empty", 511, 1);
	snprintf(cfg.path, sizeof(cfg.path), "%s", p);
	cr_assert_eq(disk_open(&cfg, "t", &d), -EINVAL);
	snprintf(cfg.path, sizeof(cfg.path), "%s/nonexistent", rw_test_tmpdir("disk-none"));
	cr_assert_eq(disk_open(&cfg, "t", &d), -ENOENT);
}

Test(disk, identity_depends_on_size_and_content)
{
	const char *p1 = make_backing("disk-id1", 3 << 20, 7);
	char p1c[4096];
	uint8_t h1[16], h2[16], h3[16];
	uint64_t s1, s2, s3;
	struct disk *d;
	int fd;

	snprintf(p1c, sizeof(p1c), "%s", p1);
	d = open_disk(p1c, DISK_ENGINE_SYNC, false);
	disk_identity(d, &s1, h1);
	disk_close(d);
	/* same content: same identity */
	d = open_disk(make_backing("disk-id2", 3 << 20, 7), DISK_ENGINE_SYNC, false);
	disk_identity(d, &s2, h2);
	disk_close(d);
	cr_assert_eq(s1, s2);
	cr_assert_eq(memcmp(h1, h2, 16), 0);
	/* one byte changed in the last MiB: different identity */
	fd = open(p1c, O_WRONLY);
	cr_assert_eq(rw_pwrite_all(fd, "X", 1, (3 << 20) - 5), 0);
	close(fd);
	d = open_disk(p1c, DISK_ENGINE_SYNC, false);
	disk_identity(d, &s3, h3);
	disk_close(d);
	cr_assert_eq(s3, s1);
	cr_assert_neq(memcmp(h1, h3, 16), 0);
}

/* The cache entry of an image: <cache>/rewind/disk-identity/<dev>-<ino>. */
static void entry_path(char *out, size_t len, const char *cache, int fd)
{
	struct stat st;

	cr_assert_eq(fstat(fd, &st), 0);
	snprintf(out, len, "%s/rewind/disk-identity/%llx-%llx", cache, (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
}

static void put_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
}

/* A changed file's ctime must be older than the hash's start to be cached. */
static void let_ctime_age(void)
{
	usleep(150 * 1000);
}

/*
 * An image just over the cache threshold (sparse): its identity covers every
 * byte, so a byte between the blocks the version 1 identity sampled changes
 * it; the result is cached, the cache is what answers next time, a damaged
 * entry is ignored and rewritten, and a change to the file is never
 * answered from the cache.
 */
Test(disk, large_identity_covers_every_byte_and_is_cached, .timeout = 300)
{
	const char *dir = rw_test_tmpdir("disk-idcache");
	const uint64_t size = DISK_IDENTITY_CACHE_MIN + (1 << 20);
	/* between two of the 1024 blocks the sampled identity reads */
	const uint64_t gap = (1 << 20) + 100 * ((size - (2 << 20)) / 1024) + (128 << 10);
	char img[4096], cache[4096], entry[4200], text[256];
	uint8_t h1[16], h2[16], h3[16], s1[16], s2[16];
	int fd;

	snprintf(cache, sizeof(cache), "%s/cache", dir);
	cr_assert_eq(setenv("XDG_CACHE_HOME", cache, 1), 0);
	snprintf(img, sizeof(img), "%s/big.img", dir);
	fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)size), 0);
	cr_assert_eq(rw_pwrite_all(fd, "rewind", 6, 0), 0);
	entry_path(entry, sizeof(entry), cache, fd);
	let_ctime_age();

	cr_assert_eq(disk_identity_compute(fd, img, size, h1), 0);
	cr_assert_eq(access(entry, R_OK), 0, "no cache entry at %s", entry);
	cr_assert_eq(disk_identity_sampled(fd, size, s1), 0);

	/* the entry answers: one that names another hash is believed */
	FILE *f = fopen(entry, "r");
	cr_assert_not_null(f);
	cr_assert_not_null(fgets(text, sizeof(text), f));
	fclose(f);
	size_t tl = strlen(text);
	cr_assert_eq(text[tl - 1], '\n');
	cr_assert_eq(strncmp(text, "rewind-disk-identity 1 ", 23), 0, "entry: %s", text);
	text[tl - 2] = text[tl - 2] == '0' ? '1' : '0';
	put_file(entry, text);
	cr_assert_eq(disk_identity_compute(fd, img, size, h2), 0);
	cr_assert_neq(memcmp(h1, h2, 16), 0, "the cache entry was not read");

	/* a damaged entry is ignored, and rewritten */
	put_file(entry, "rewind-disk-identity 1 garbage\n");
	cr_assert_eq(disk_identity_compute(fd, img, size, h2), 0);
	cr_assert_eq(memcmp(h1, h2, 16), 0);
	cr_assert_eq(disk_identity_compute(fd, img, size, h2), 0);
	cr_assert_eq(memcmp(h1, h2, 16), 0);
	f = fopen(entry, "r");
	cr_assert_not_null(f);
	cr_assert_not_null(fgets(text, sizeof(text), f));
	fclose(f);
	cr_assert_eq(strncmp(text, "rewind-disk-identity 1 ", 23), 0, "not rewritten: %s", text);

	/* one byte the samples skip: the full identity changes, not from the cache */
	cr_assert_eq(rw_pwrite_all(fd, "X", 1, gap), 0);
	let_ctime_age();
	cr_assert_eq(disk_identity_sampled(fd, size, s2), 0);
	cr_assert_eq(memcmp(s1, s2, 16), 0, "the byte at %llu is not between samples",
		     (unsigned long long)gap);
	cr_assert_eq(disk_identity_compute(fd, img, size, h3), 0);
	cr_assert_neq(memcmp(h1, h3, 16), 0, "a changed byte kept the identity");
	/* and the new identity is what the cache now holds */
	cr_assert_eq(disk_identity_compute(fd, img, size, h2), 0);
	cr_assert_eq(memcmp(h3, h2, 16), 0);
	close(fd);
}

/* An image at the threshold or below is hashed on every open, never cached. */
Test(disk, small_identity_is_not_cached)
{
	const char *dir = rw_test_tmpdir("disk-idsmall");
	const char *p = make_backing("disk-idsmall-img", 1 << 20, 5);
	char cache[4096], entry[4200];
	uint8_t h[16];
	int fd;

	snprintf(cache, sizeof(cache), "%s/cache", dir);
	cr_assert_eq(setenv("XDG_CACHE_HOME", cache, 1), 0);
	fd = open(p, O_RDONLY);
	cr_assert_geq(fd, 0);
	entry_path(entry, sizeof(entry), cache, fd);
	let_ctime_age();
	cr_assert_eq(disk_identity_compute(fd, p, 1 << 20, h), 0);
	cr_assert_neq(access(entry, F_OK), 0, "a small image was cached");
	close(fd);
}

/* ------------------------------------------------------------- overlay */

static void overlay_semantics(enum disk_engine engine, bool ring_writes)
{
	const uint64_t size = 1 << 20;
	const char *p = make_backing(engine == DISK_ENGINE_URING ? "disk-ov-u" : "disk-ov-s", size, 3);
	XXH128_hash_t before = file_hash(p);
	struct disk *d = open_disk(p, engine, false);
	uint8_t *view = malloc(size), *buf = malloc(64 << 10), *got = malloc(size);

	cr_assert_eq(disk_engine_used(d), engine);
	disk_set_uring_writes(d, ring_writes);
	cr_assert_eq(disk_uring_writes(d), ring_writes);
	fill(view, size, 3, 0);
	/* aligned, unaligned head/tail, sub-block, spanning and zero writes */
	static const struct {
		uint64_t off, len;
	} w[] = {
		{ 8192, 16384 }, { 512, 512 }, { 4096 * 20 + 1536, 4096 * 3 }, { 3584, 1024 },
		{ 65536, 65536 }, { size - 512, 512 }, { 4096 * 40, 4096 },
	};
	for (unsigned i = 0; i < ARRAY_SIZE(w); i++) {
		if (i == ARRAY_SIZE(w) - 1)
			memset(buf, 0, w[i].len);
		else
			fill(buf, w[i].len, 100 + i, 0);
		cr_assert_eq(io(d, true, w[i].off, buf, w[i].len), 0, "write %u", i);
		memcpy(view + w[i].off, buf, w[i].len);
	}
	/* whole-disk read in pieces of several sizes, across present/absent runs */
	for (uint64_t off = 0; off < size;) {
		uint64_t len = MIN((uint64_t)(off % 3 + 1) * 12288 + 512, size - off);

		cr_assert_eq(io(d, false, off, got + off, len), 0);
		off += len;
	}
	cr_assert_eq(memcmp(got, view, size), 0, "the disk's view differs from what was written");
	/* block-level view agrees */
	for (uint64_t b = 0; b < disk_nblocks(d); b++) {
		cr_assert_eq(disk_read_block(d, b, buf), 0);
		cr_assert_eq(memcmp(buf, view + b * 4096, 4096), 0, "block %llu",
			     (unsigned long long)b);
	}
	/* a block written with zeros is present, not absent */
	cr_assert(disk_block_present(d, 40));
	cr_assert_not(disk_block_present(d, 41));
	/* the backing file is never written */
	XXH128_hash_t after = file_hash(p);
	cr_assert(XXH128_isEqual(before, after), "the backing file changed");
	disk_close(d);
	free(view);
	free(buf);
	free(got);
}

Test(disk, overlay_uring_ring_writes)
{
	overlay_semantics(DISK_ENGINE_URING, true);
}

Test(disk, overlay_uring_inline_writes)
{
	overlay_semantics(DISK_ENGINE_URING, false);
}

Test(disk, overlay_sync)
{
	overlay_semantics(DISK_ENGINE_SYNC, false);
}

Test(disk, engines_agree_byte_for_byte)
{
	const uint64_t size = 512 << 10;
	char path[4096];
	struct disk *du, *ds;
	uint8_t *bu = malloc(size), *bs = malloc(size), *buf = malloc(32768);
	uint64_t x = 12345;

	snprintf(path, sizeof(path), "%s", make_backing("disk-eng", size, 9));
	du = open_disk(path, DISK_ENGINE_URING, false);
	ds = open_disk(path, DISK_ENGINE_SYNC, false);
	disk_set_uring_writes(du, true);
	for (int i = 0; i < 200; i++) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		uint64_t sectors = 1 + (x >> 33) % 64;
		uint64_t sector = (x >> 17) % (size / 512 - sectors + 1);
		bool write = (x >> 7) & 1;

		if (write) {
			fill(buf, sectors * 512, (uint64_t)i, 0);
			cr_assert_eq(io(du, true, sector * 512, buf, sectors * 512), 0);
			cr_assert_eq(io(ds, true, sector * 512, buf, sectors * 512), 0);
		} else {
			cr_assert_eq(io(du, false, sector * 512, bu, sectors * 512), 0);
			cr_assert_eq(io(ds, false, sector * 512, bs, sectors * 512), 0);
			cr_assert_eq(memcmp(bu, bs, sectors * 512), 0, "read %d differs", i);
		}
	}
	cr_assert_eq(io(du, false, 0, bu, size), 0);
	cr_assert_eq(io(ds, false, 0, bs, size), 0);
	cr_assert_eq(memcmp(bu, bs, size), 0);
	for (uint64_t b = 0; b < disk_nblocks(du); b++)
		cr_assert_eq(disk_block_present(du, b), disk_block_present(ds, b));
	disk_close(du);
	disk_close(ds);
	free(bu);
	free(bs);
	free(buf);
}

Test(disk, many_requests_in_flight_then_partial_write)
{
	const uint64_t size = 1 << 20;
	const char *p = make_backing("disk-batch", size, 5);
	struct disk *d = open_disk(p, DISK_ENGINE_URING, false);
	static struct disk_req r[64];
	static struct iovec iov[64];
	static uint8_t data[64][4096];
	uint8_t blk[4096], want[4096];
	unsigned sync_done = 0, reaped = 0;

	disk_set_uring_writes(d, true);
	/* 64 aligned writes queued in one batch... */
	for (unsigned i = 0; i < 64; i++) {
		fill(data[i], 4096, 50 + i, 0);
		iov[i] = (struct iovec){ data[i], 4096 };
		r[i] = (struct disk_req){ .write = true, .offset = i * 4096ULL, .len = 4096,
					  .iov = &iov[i], .iovcnt = 1 };
		sync_done += disk_submit(d, &r[i]);
	}
	/* ...then, before kicking, a sector write into block 10: it must wait for them */
	uint8_t sec[512];
	struct iovec siov = { sec, 512 };
	struct disk_req s = { .write = true, .offset = 10 * 4096 + 1024, .len = 512, .iov = &siov,
			      .iovcnt = 1 };

	fill(sec, 512, 999, 0);
	cr_assert_eq(disk_submit(d, &s), 1);
	cr_assert_eq(s.result, 0);
	disk_kick(d);
	while (disk_inflight(d))
		for (struct disk_req *q = disk_reap(d, true); q; q = q->next) {
			cr_assert_eq(q->result, 0);
			reaped++;
		}
	cr_assert_eq(reaped + sync_done, 64);
	cr_assert_eq(disk_read_block(d, 10, blk), 0);
	memcpy(want, data[10], 4096);
	memcpy(want + 1024, sec, 512);
	cr_assert_eq(memcmp(blk, want, 4096), 0, "the sector write lost the block write or vice versa");
	cr_assert_eq(disk_present_count(d), 64);
	disk_close(d);
}

Test(disk, readonly_and_bad_requests)
{
	const char *p = make_backing("disk-ro", 64 << 10, 5);
	struct disk *d = open_disk(p, DISK_ENGINE_URING, true);
	uint8_t buf[4096];

	cr_assert(disk_readonly(d));
	cr_assert_eq(io(d, true, 0, buf, 4096), -EROFS);
	cr_assert_eq(io(d, false, 60 << 10, buf, 4096), 0);
	cr_assert_eq(io(d, false, 62 << 10, buf, 4096), -EINVAL); /* past the end */
	cr_assert_eq(io(d, false, 100, buf, 512), -EINVAL);       /* not sector aligned */
	cr_assert_eq(disk_present_count(d), 0);
	disk_close(d);
}

/* ------------------------------------------------------ dirty and restore */

Test(disk, dirty_epochs_take_and_give_back)
{
	const char *p = make_backing("disk-dirty", 256 << 10, 2);
	struct disk *d = open_disk(p, DISK_ENGINE_URING, false);
	uint8_t buf[16384];
	uint64_t *blocks;
	int64_t n;

	fill(buf, sizeof(buf), 1, 0);
	cr_assert_eq(io(d, true, 5 * 4096, buf, 8192), 0);   /* blocks 5, 6 */
	cr_assert_eq(io(d, true, 2 * 4096 + 512, buf, 512), 0); /* block 2 */
	cr_assert_eq(io(d, true, 40 * 4096, buf, 4096), 0);  /* block 40 */

	n = disk_take_dirty(d, DISK_EPOCH_CKPT, &blocks);
	cr_assert_eq(n, 4);
	cr_assert_eq(blocks[0], 2);
	cr_assert_eq(blocks[1], 5);
	cr_assert_eq(blocks[2], 6);
	cr_assert_eq(blocks[3], 40);
	/* taken means cleared, in that epoch only */
	cr_assert_eq(disk_dirty_count(d, DISK_EPOCH_CKPT), 0);
	cr_assert_eq(disk_dirty_count(d, DISK_EPOCH_RESET), 4);
	/* a failed capture gives them back */
	disk_give_back(d, DISK_EPOCH_CKPT, blocks, (uint64_t)n);
	free(blocks);
	cr_assert_eq(disk_dirty_count(d, DISK_EPOCH_CKPT), 4);
	n = disk_take_dirty(d, DISK_EPOCH_CKPT, &blocks);
	cr_assert_eq(n, 4);
	free(blocks);
	cr_assert_eq(disk_take_dirty(d, DISK_EPOCH_CKPT, &blocks), 0);
	cr_assert_null(blocks);
	cr_assert_eq(disk_take_dirty(d, 7, &blocks), -EINVAL);
	disk_close(d);
}

Test(disk, restore_block_brings_back_either_content)
{
	const char *p = make_backing("disk-restore", 64 << 10, 4);
	struct disk *d = open_disk(p, DISK_ENGINE_SYNC, false);
	uint8_t orig[4096], mine[4096], ckpt[4096], blk[4096];
	uint64_t *blocks;

	cr_assert_eq(disk_read_block(d, 3, orig), 0);
	fill(mine, 4096, 77, 0);
	fill(ckpt, 4096, 78, 0);
	cr_assert_eq(io(d, true, 3 * 4096, mine, 4096), 0);
	cr_assert(disk_block_present(d, 3));
	cr_assert_eq(disk_take_dirty(d, DISK_EPOCH_CKPT, &blocks), 1);
	free(blocks);
	cr_assert_eq(disk_take_dirty(d, DISK_EPOCH_RESET, &blocks), 1);
	free(blocks);

	/* back to the backing file's content: marks the reset epoch only */
	cr_assert_eq(disk_restore_block(d, 3, NULL, DISK_EPOCH_CKPT), 0);
	cr_assert_not(disk_block_present(d, 3));
	cr_assert_eq(disk_read_block(d, 3, blk), 0);
	cr_assert_eq(memcmp(blk, orig, 4096), 0);
	cr_assert_eq(disk_dirty_count(d, DISK_EPOCH_CKPT), 0);
	cr_assert_eq(disk_dirty_count(d, DISK_EPOCH_RESET), 1);

	/* to a checkpoint's content: present again, the checkpoint epoch marked */
	cr_assert_eq(disk_restore_block(d, 3, ckpt, DISK_EPOCH_RESET), 0);
	cr_assert(disk_block_present(d, 3));
	cr_assert_eq(disk_read_block(d, 3, blk), 0);
	cr_assert_eq(memcmp(blk, ckpt, 4096), 0);
	cr_assert_eq(disk_dirty_count(d, DISK_EPOCH_CKPT), 1);
	cr_assert_eq(io(d, false, 3 * 4096, blk, 4096), 0);
	cr_assert_eq(memcmp(blk, ckpt, 4096), 0);

	cr_assert_eq(disk_restore_block(d, 16, NULL, 0), -EINVAL);
	cr_assert_eq(disk_restore_block(d, 3, NULL, 2), -EINVAL);
	disk_close(d);
}

Test(disk, present_ranges_round_trip)
{
	const char *p = make_backing("disk-ranges", 256 << 10, 4);
	struct disk *d = open_disk(p, DISK_ENGINE_SYNC, false);
	struct disk_range want[] = { { 0, 2 }, { 5, 1 }, { 9, 20 }, { 63, 1 } };
	struct disk_range bad[] = { { 5, 1 }, { 4, 1 } };
	struct disk_range got[8];
	uint64_t s, c, n = 0;

	cr_assert_eq(disk_present_set(d, want, ARRAY_SIZE(want)), 0);
	for (uint64_t from = 0; disk_present_next(d, from, &s, &c); from = s + c)
		got[n++] = (struct disk_range){ s, c };
	cr_assert_eq(n, ARRAY_SIZE(want));
	cr_assert_eq(memcmp(got, want, sizeof(want)), 0);
	cr_assert_eq(disk_present_count(d), 24);
	cr_assert_eq(disk_present_set(d, bad, 2), -EINVAL);
	cr_assert_eq(disk_present_count(d), 24, "a refused set changed the map");
	cr_assert_eq(disk_present_set(d, NULL, 0), 0);
	cr_assert_eq(disk_present_count(d), 0);
	disk_close(d);
}
