/*
 * fuzz_export.c - `rewind import`: store_import() of an export file
 * (store/export.c) into a store, then the store checked.
 *
 * One store (in a tmpfs scratch directory, opened once, without syncs)
 * serves every run; it holds one empty checkpoint, the baseline, and goes
 * back to exactly that after each run. The input is written to a file and
 * imported with its checksums made right (every frame's, the header's,
 * each record's data checksum, the checkpoint record's) and its chunk keys
 * recomputed from their content (references to a recomputed key, in later
 * nodes and in the checkpoint's roots, follow it), with the end frame's
 * counts and offset set to the frames found, which lets mutations reach the
 * frame contents; and, for one input in four (or when nothing needed
 * fixing), as it is.
 *
 * Contract, refused file: an error store.h lists, a section and a detail
 * that say where (for damage in the file), and the store unchanged.
 * Imported file: store_verify() finds nothing wrong; every map's tree holds
 * exactly the pages its record says are present, none past the map's end
 * (a diff against the baseline reports them); every record reads back with
 * its checksum; and deleting the checkpoint frees every chunk it brought.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "fuzz_common.h"
#include "store_internal.h"
#include "util.h"

#define XF_HDR 32
#define FR_CKPT 1u
#define FR_RECORD 2u
#define FR_CHUNK 3u
#define FR_END 4u
#define MAX_FRAMES 4096

static struct store *store;
static uint64_t baseline;
static char file[4200];

/* ------------------------------------------------------------ the fix-up */

struct frame {
	size_t off;
	uint32_t type, len;
};

struct remap {
	struct store_hash from[MAX_FRAMES], to[MAX_FRAMES];
	size_t n;
};

static struct frame frames[MAX_FRAMES];
static struct remap remap;

static void remap_key(uint8_t *k)
{
	for (size_t i = 0; i < remap.n; i++) {
		if (memcmp(k, remap.from[i].b, 16) == 0) {
			memcpy(k, remap.to[i].b, 16);
			return;
		}
	}
}

/* A chunk frame's payload: its references follow recomputed keys, then its key is recomputed. */
static void fix_chunk(uint8_t *p, uint32_t len)
{
	uint8_t *content = p + 20;
	size_t clen = len - 20;
	struct store_hash k;

	if (p[0] == CHUNK_NODE && clen >= NODE_HDR) {
		uint32_t count = get_le32(content + 4);

		for (uint32_t i = 0; i < count && NODE_HDR + 16 * ((size_t)i + 1) <= clen; i++)
			remap_key(content + NODE_HDR + 16 * (size_t)i);
	}
	if ((p[0] != CHUNK_PAGE && p[0] != CHUNK_NODE) || clen == 0)
		return;
	store_hash_data(NULL, p[0], content, clen, &k);
	if (memcmp(k.b, p + 4, 16) && remap.n < MAX_FRAMES) {
		memcpy(remap.from[remap.n].b, p + 4, 16);
		remap.to[remap.n++] = k;
		memcpy(p + 4, k.b, 16);
	}
}

/* The checkpoint record (crec.c's layout): roots follow recomputed keys, checksum made right. */
static void fix_crec(uint8_t *p, uint32_t len)
{
	size_t end, at = 32, nmaps;

	if (len < 12)
		return;
	end = len - 8;
	if (at + 4 > end)
		goto sum;
	at += 4 + get_le32(p + at); /* label */
	if (at + 4 > end)
		goto sum;
	at += 4 + (size_t)get_le32(p + at); /* config */
	if (at + 4 > end)
		goto sum;
	nmaps = get_le32(p + at);
	at += 4;
	for (size_t i = 0; i < nmaps && at + 2 <= end; i++) {
		at += 2 + get_le16(p + at) + 17; /* name, npages, present, height */
		if (at + 16 > end)
			break;
		remap_key(p + at);
		at += 16;
	}
sum:
	put_le64(p + end, XXH3_64bits(p, end));
}

/* Make buf's checksums, keys and counts right; false if nothing changed. */
static bool fix_export(uint8_t *buf, size_t n, const uint8_t *orig)
{
	size_t nf = 0, off = XF_HDR;
	uint64_t chunks = 0, records = 0;

	if (n < XF_HDR)
		return false;
	put_le64(buf + 24, XXH3_64bits(buf, 24));
	while (n - off >= 16 && nf < MAX_FRAMES) {
		uint32_t len = get_le32(buf + off + 4);

		if (len > n - off - 16)
			break;
		frames[nf++] = (struct frame){ off, get_le32(buf + off), len };
		off += 16 + (size_t)len;
	}
	remap.n = 0;
	for (size_t i = 0; i < nf; i++) {
		if (frames[i].type == FR_CHUNK && frames[i].len >= 20) {
			fix_chunk(buf + frames[i].off + 8, frames[i].len);
			chunks++;
		}
	}
	for (size_t i = 0; i < nf; i++) {
		uint8_t *p = buf + frames[i].off + 8;
		uint32_t len = frames[i].len;

		switch (frames[i].type) {
		case FR_CKPT:
			fix_crec(p, len);
			break;
		case FR_RECORD:
			records++;
			if (len >= 14 && len - 14 >= get_le16(p)) {
				size_t nlen = get_le16(p);

				put_le64(p + 6 + nlen, XXH3_64bits(p + 14 + nlen, len - 14 - nlen));
			}
			break;
		case FR_END:
			if (len == 24) {
				put_le64(p, chunks);
				put_le64(p + 8, records);
				put_le64(p + 16, frames[i].off);
			}
			break;
		}
	}
	for (size_t i = 0; i < nf; i++)
		put_le64(buf + frames[i].off + 8 + frames[i].len,
			 XXH3_64bits(buf + frames[i].off, 8 + (size_t)frames[i].len));
	return memcmp(buf, orig, n) != 0;
}

/* ------------------------------------------------------------ the checks */

static int first_problem(void *arg, const struct store_problem *p)
{
	char *msg = arg;

	if (!msg[0])
		snprintf(msg, 512, "%s: %s", store_problem_name(p->kind), p->detail);
	return 0;
}

/* Nothing wrong in the store. */
static void verify(const char *when)
{
	struct store_verify_stats vs;
	char msg[512] = "";
	int ret = store_verify(store, first_problem, msg, &vs);

	FUZZ_CHECK(ret == 0 && vs.problems == 0, "%s: verify gave %d, %llu problems (%s)", when,
		   ret, (unsigned long long)vs.problems, msg);
}

/* The store holds the baseline and nothing else. */
static void only_baseline(const char *when)
{
	struct store_stats st;
	int ret = store_stats(store, &st);

	FUZZ_CHECK(ret == 0, "%s: store_stats gave %d", when, ret);
	FUZZ_CHECK(st.checkpoints == 1 && st.chunks == 0 && st.records == 0,
		   "%s: %llu checkpoints, %llu chunks, %llu records left", when,
		   (unsigned long long)st.checkpoints, (unsigned long long)st.chunks,
		   (unsigned long long)st.records);
}

struct count {
	uint64_t pages, npages;
	bool beyond;
};

static int count_range(void *arg, uint64_t first, uint64_t n)
{
	struct count *c = arg;

	c->pages += n;
	if (first >= c->npages || n > c->npages - first)
		c->beyond = true;
	return 0;
}

static void check_map(uint64_t id, const struct store_map_info *m)
{
	struct count c = { .npages = m->npages };
	int ret = store_diff(store, baseline, id, m->name, count_range, &c, NULL);

	FUZZ_CHECK(ret == 0, "diff of map %s gave %d", m->name ? m->name : "memory", ret);
	FUZZ_CHECK(!c.beyond, "map %s: pages past its end (%llu pages)",
		   m->name ? m->name : "memory", (unsigned long long)m->npages);
	FUZZ_CHECK(c.pages == m->present, "map %s: %llu pages present, the record says %llu",
		   m->name ? m->name : "memory", (unsigned long long)c.pages,
		   (unsigned long long)m->present);
}

static int read_record(void *arg, const struct store_record_info *ri)
{
	struct store_snap *sn = arg;
	uint32_t version;
	void *data;
	size_t len;
	int ret = store_snap_record(sn, ri->name, &data, &len, &version);

	FUZZ_CHECK(ret == 0, "record %s does not read back: %d", ri->name, ret);
	FUZZ_CHECK(len == ri->len && version == ri->version, "record %s changed", ri->name);
	free(data);
	return 0;
}

static void imported(uint64_t id)
{
	const struct store_ckpt_info *info;
	struct store_snap *sn;
	uint64_t freed = 0;
	int ret;

	verify("after an import");
	ret = store_snap_open(store, id, &sn);
	FUZZ_CHECK(ret == 0, "the imported checkpoint does not open: %d", ret);
	info = store_snap_info(sn);
	FUZZ_CHECK(info->parent == 0 && info->id == id, "imported with a parent");
	check_map(id, &info->mem);
	for (size_t i = 0; i < info->ndisks; i++)
		check_map(id, &info->disks[i]);
	ret = store_snap_foreach_record(sn, read_record, sn);
	FUZZ_CHECK(ret == 0, "listing the records gave %d", ret);
	store_snap_close(sn);

	ret = store_delete(store, id, &freed);
	FUZZ_CHECK(ret == 0, "deleting the imported checkpoint gave %d", ret);
	only_baseline("after deleting the imported checkpoint");
}

static void one(const uint8_t *data, size_t size)
{
	struct store_xfer_error xe;
	struct store_xfer_stats xs;
	uint64_t id = 0;
	int fd, ret;

	fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FUZZ_CHECK(fd >= 0 && rw_write_all(fd, data, size) == 0 && close(fd) == 0,
		   "cannot write %s", file);
	ret = store_import(store, file, NULL, NULL, &id, &xs, &xe);
	if (ret) {
		FUZZ_CHECK(ret == RW_ECORRUPT || ret == RW_ECHECKSUM || ret == RW_EVERSION ||
				   ret == -ENOMEM,
			   "import gave %d (%s)", ret, rw_errname(ret));
		if (ret != -ENOMEM)
			FUZZ_CHECK(xe.section[0] && xe.detail[0] && xe.offset <= size,
				   "refused (%s) without saying where: section '%s', detail '%s', "
				   "offset %llu of %zu",
				   rw_errname(ret), xe.section, xe.detail,
				   (unsigned long long)xe.offset, size);
		only_baseline("after a refused import");
		return;
	}
	FUZZ_CHECK(id > baseline && xs.bytes == size, "imported as %llu, %llu bytes",
		   (unsigned long long)id, (unsigned long long)xs.bytes);
	imported(id);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct store_open_opts o = {
		.flags = STORE_OPEN_CREATE | STORE_OPEN_NOSYNC,
		.initial_map_size = 64ULL << 20,
	};
	struct store_ckpt *c;
	char dir[4200];
	int ret;

	snprintf(dir, sizeof(dir), "%s/store", fuzz_tmpdir("export"));
	snprintf(file, sizeof(file), "%s/input.rwx", fuzz_tmpdir("export"));
	ret = store_open(dir, &o, &store);
	FUZZ_CHECK(ret == 0, "store_open %s: %d", dir, ret);
	ret = store_ckpt_begin(store, 0, &c);
	FUZZ_CHECK(ret == 0, "store_ckpt_begin: %d", ret);
	ret = store_ckpt_commit(c, &baseline, NULL);
	FUZZ_CHECK(ret == 0, "the baseline checkpoint: %d", ret);
	only_baseline("at start");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *fixed = fuzz_dup(data, size);

	/*
	 * An import costs about a millisecond here, nearly all of it ASan
	 * mapping and unmapping the import's 1 MiB read buffer, so the input
	 * as it is (which mostly fails a checksum) is imported only for one
	 * input in four, chosen by its hash; the fixed-up copy always.
	 */
	if (fix_export(fixed, size, data)) {
		if ((XXH3_64bits(data, size) & 3) == 0)
			one(data, size);
		one(fixed, size);
	} else {
		one(data, size);
	}
	free(fixed);
	return 0;
}
