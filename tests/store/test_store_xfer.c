/*
 * test_store_xfer.c - export and import.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "helpers.h"

STORE_SUITE(store_xfer, "store-xfer", 60);

#define NPG 700

/* A checkpoint with memory, a disk, records, holes and repeated pages. */
static uint64_t make_source(struct store *s)
{
	struct store_ckpt *c;
	uint8_t *buf = malloc(NPG * PG);
	uint64_t a, b;

	for (int i = 0; i < NPG; i++) {
		if (i % 7 == 0)
			memset(buf + (size_t)i * PG, 0, PG);
		else
			page_fill(buf + (size_t)i * PG, 1 + (uint64_t)(i % 300));
	}
	cr_assert_eq(store_ckpt_begin(s, 0, &c), 0);
	cr_assert_eq(store_ckpt_set_size(c, NULL, 5000), 0);
	cr_assert_eq(store_ckpt_add_range(c, NULL, 100, buf, NPG), 0);
	cr_assert_eq(store_ckpt_commit(c, &a, NULL), 0);
	cr_assert_eq(store_ckpt_begin(s, a, &c), 0);
	cr_assert_eq(store_ckpt_set_label(c, "before-upgrade"), 0);
	cr_assert_eq(store_ckpt_set_config(c, "{\"mem\":\"20M\"}", 14), 0);
	cr_assert_eq(store_ckpt_set_size(c, "data", 300), 0);
	cr_assert_eq(store_ckpt_add_range(c, "data", 10, buf + PG, 50), 0);
	cr_assert_eq(store_ckpt_add_range(c, NULL, 4000, buf + 2 * PG, 20), 0);
	cr_assert_eq(store_ckpt_put_record(c, "vcpu/0", 2, "registers", 9), 0);
	cr_assert_eq(store_ckpt_put_record(c, "dev/virtio-blk/data", 1, buf + PG, 3000), 0);
	cr_assert_eq(store_ckpt_put_record(c, "vm/empty", 1, "", 0), 0);
	cr_assert_eq(store_ckpt_commit(c, &b, NULL), 0);
	free(buf);
	return b;
}

static void same_checkpoint(struct store *s1, uint64_t a, struct store *s2, uint64_t b)
{
	struct store_snap *x, *y;
	uint8_t *p = malloc(5000 * PG), *q = malloc(5000 * PG);
	const char *names[] = { "vcpu/0", "dev/virtio-blk/data", "vm/empty" };

	cr_assert_eq(store_snap_open(s1, a, &x), 0);
	cr_assert_eq(store_snap_open(s2, b, &y), 0);
	const struct store_ckpt_info *ix = store_snap_info(x), *iy = store_snap_info(y);
	cr_assert_str_eq(ix->label, iy->label);
	cr_assert_eq(ix->config_len, iy->config_len);
	cr_assert_eq(memcmp(ix->config, iy->config, ix->config_len), 0);
	cr_assert_eq(ix->time_ns, iy->time_ns);
	cr_assert_eq(ix->mem.npages, iy->mem.npages);
	cr_assert_eq(memcmp(&ix->mem.root, &iy->mem.root, 16), 0);
	cr_assert_eq(ix->ndisks, iy->ndisks);
	cr_assert_eq(ix->nrecords, iy->nrecords);
	cr_assert_eq(store_snap_read(x, NULL, 0, 5000, p), 0);
	cr_assert_eq(store_snap_read(y, NULL, 0, 5000, q), 0);
	cr_assert_eq(memcmp(p, q, 5000 * PG), 0);
	cr_assert_eq(store_snap_read(x, "data", 0, 300, p), 0);
	cr_assert_eq(store_snap_read(y, "data", 0, 300, q), 0);
	cr_assert_eq(memcmp(p, q, 300 * PG), 0);
	for (size_t i = 0; i < 3; i++) {
		void *d1, *d2;
		size_t l1, l2;
		uint32_t v1, v2;

		cr_assert_eq(store_snap_record(x, names[i], &d1, &l1, &v1), 0);
		cr_assert_eq(store_snap_record(y, names[i], &d2, &l2, &v2), 0);
		cr_assert_eq(l1, l2);
		cr_assert_eq(v1, v2);
		cr_assert_eq(memcmp(d1, d2, l1), 0);
		free(d1);
		free(d2);
	}
	store_snap_close(x);
	store_snap_close(y);
	free(p);
	free(q);
}

struct prog {
	uint64_t calls, last, total;
	bool monotonic;
};

static void prog_cb(void *arg, uint64_t done, uint64_t total)
{
	struct prog *p = arg;

	if (done < p->last)
		p->monotonic = false;
	p->last = done;
	p->total = total;
	p->calls++;
}

Test(store_xfer, export_import_roundtrip)
{
	struct store *s = open_store(dir, 0), *t;
	char *file, *dir2;
	struct store_xfer_stats xs, is;
	struct store_xfer_error err;
	struct prog pe = { .monotonic = true }, pi = { .monotonic = true };
	uint64_t b = make_source(s), nid;
	struct stat st;

	cr_assert(asprintf(&file, "%s/ckpt.rwx", tmp) > 0);
	cr_assert(asprintf(&dir2, "%s/other", tmp) > 0);
	int rc = store_export(s, b, file, prog_cb, &pe, &xs);
	cr_assert_eq(rc, 0, "export: %s", rw_strerror(rc));
	cr_assert_eq(stat(file, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	cr_assert_eq((uint64_t)st.st_size, xs.bytes);
	cr_assert_eq(xs.records, 3);
	cr_assert(pe.monotonic && pe.calls > 0 && pe.last == pe.total && pe.total == xs.chunks);

	t = open_store(dir2, 0);
	rc = store_import(t, file, prog_cb, &pi, &nid, &is, &err);
	cr_assert_eq(rc, 0, "import: %s at %lu (%s): %s", rw_strerror(rc),
		     (unsigned long)err.offset, err.section, err.detail);
	cr_assert_eq(nid, b, "the import did not keep the checkpoint's id");
	cr_assert_eq(is.original_id, b);
	cr_assert_eq(is.chunks, xs.chunks);
	cr_assert_eq(is.new_chunks, xs.chunks);
	cr_assert(pi.monotonic && pi.last == (uint64_t)st.st_size);
	same_checkpoint(s, b, t, nid);
	verify_clean(t);

	/* a second import shares every chunk */
	rc = store_import(t, file, NULL, NULL, &nid, &is, &err);
	cr_assert_eq(rc, 0);
	cr_assert_eq(nid, b + 1, "the id is taken: the next one");
	cr_assert_eq(is.original_id, b);
	cr_assert_eq(is.new_chunks, 0);
	verify_clean(t);
	/* deleting one copy keeps the other whole */
	cr_assert_eq(store_delete(t, b, NULL), 0);
	verify_clean(t);
	same_checkpoint(s, b, t, b + 1);
	cr_assert_eq(store_export(s, 99, file, NULL, NULL, NULL), RW_ENOTFOUND);
	store_close(t);
	store_close(s);
	free(file);
	free(dir2);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY);
	uint8_t *b;

	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &st), 0);
	b = malloc((size_t)st.st_size);
	cr_assert_eq(read(fd, b, (size_t)st.st_size), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

static void spit(const char *path, const uint8_t *b, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, b, len), (ssize_t)len);
	close(fd);
}

struct snapshot {
	struct store_stats st;
	unsigned n;
};

static int n_cb(void *arg, const struct store_ckpt_info *i)
{
	(void)i;
	(*(unsigned *)arg)++;
	return 0;
}

static void take(struct store *t, struct snapshot *sn)
{
	cr_assert_eq(store_stats(t, &sn->st), 0);
	sn->n = 0;
	cr_assert_eq(store_list(t, n_cb, &sn->n), 0);
}

/* The import fails, says where, and the target is as it was. */
static void refused(struct store *t, const char *file, const struct snapshot *before,
		    const char *what, uint64_t lo, uint64_t hi)
{
	struct store_xfer_error err;
	struct snapshot after;
	uint64_t id;
	int rc = store_import(t, file, NULL, NULL, &id, NULL, &err);

	cr_assert(rc == RW_ECORRUPT || rc == RW_ECHECKSUM,
		  "%s: import gave %s (%d)", what, rw_strerror(rc), rc);
	cr_assert_neq(err.section[0], 0, "%s: no section", what);
	cr_assert_neq(err.detail[0], 0, "%s: no detail", what);
	cr_assert(err.offset >= lo && err.offset <= hi,
		  "%s: offset %lu not in [%lu, %lu] (%s: %s)", what,
		  (unsigned long)err.offset, (unsigned long)lo, (unsigned long)hi,
		  err.section, err.detail);
	take(t, &after);
	cr_assert_eq(after.n, before->n, "%s: checkpoints changed", what);
	cr_assert_eq(after.st.chunks, before->st.chunks, "%s: chunks changed", what);
	cr_assert_eq(after.st.records, before->st.records, "%s: records changed", what);
}

/* Offsets of the frames of an export file. */
static size_t frames(const uint8_t *b, size_t len, size_t *off, uint32_t *type, size_t max)
{
	size_t n = 0;

	for (size_t o = 32; o + 16 <= len && n < max;) {
		uint32_t fl;

		memcpy(&fl, b + o + 4, 4);
		off[n] = o;
		memcpy(&type[n], b + o, 4);
		n++;
		o += 16 + fl;
	}
	return n;
}

Test(store_xfer, corrupt_and_truncated_files_are_refused)
{
	struct store *s = open_store(dir, 0), *t;
	char *file, *bad, *dir2;
	size_t len, off[4096];
	uint32_t type[4096];
	uint8_t *orig, *b;
	struct snapshot before;
	uint64_t id = make_source(s);

	cr_assert(asprintf(&file, "%s/ckpt.rwx", tmp) > 0);
	cr_assert(asprintf(&bad, "%s/bad.rwx", tmp) > 0);
	cr_assert(asprintf(&dir2, "%s/target", tmp) > 0);
	cr_assert_eq(store_export(s, id, file, NULL, NULL, NULL), 0);
	orig = slurp(file, &len);
	size_t nf = frames(orig, len, off, type, 4096);
	cr_assert_gt(nf, 10);
	cr_assert_eq(type[0], 1);
	cr_assert_eq(type[nf - 1], 4);

	/* the target already holds a checkpoint that shares chunks */
	t = open_store(dir2, 0);
	uint64_t idx[3] = { 0, 1, 2 }, seed[3] = { 1, 2, 3 };
	commit_pages(t, 0, 3, idx, seed, 3, NULL);
	take(t, &before);

	/* truncated anywhere */
	size_t cuts[] = { 0, 7, 31, 32, 40, off[1] + 3, off[4] + 16, off[nf / 2] + 100,
			  off[nf - 1], len - 1 };
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		char what[64];

		spit(bad, orig, cuts[i]);
		snprintf(what, sizeof(what), "truncated to %zu", cuts[i]);
		refused(t, bad, &before, what, 0, cuts[i]);
	}
	/* trailing garbage */
	b = malloc(len + 5);
	memcpy(b, orig, len);
	memcpy(b + len, "junk!", 5);
	spit(bad, b, len + 5);
	refused(t, bad, &before, "trailing bytes", len, len);

	/* one flipped byte in each region: header, each frame kind, checksums */
	size_t flips[] = { 3, 26, off[0] + 20, off[1] + 18, off[2] + 1, off[5] + 60,
			   off[nf / 2] + 2000, off[nf - 2] + 30, off[nf - 1] + 17,
			   len - 1 };
	for (size_t i = 0; i < sizeof(flips) / sizeof(flips[0]); i++) {
		char what[64];
		size_t f = flips[i];
		size_t fs = 0;

		memcpy(b, orig, len);
		b[f] ^= 0x40;
		spit(bad, b, len);
		for (size_t k = 0; k < nf; k++)
			if (off[k] <= f)
				fs = off[k];
		snprintf(what, sizeof(what), "flip at %zu", f);
		refused(t, bad, &before, what, f < 32 ? 0 : fs, f);
	}

	/* a reserved header field that is not 0, with a header checksum that fits */
	memcpy(b, orig, len);
	b[20] = 1;
	uint64_t hsum = XXH3_64bits(b, 24);
	memcpy(b + 24, &hsum, 8);
	spit(bad, b, len);
	refused(t, bad, &before, "reserved header field", 20, 20);

	/* a chunk whose frame checksum is right but whose content is not its key */
	size_t ck = 0;
	for (size_t k = 0; k < nf; k++)
		if (type[k] == 3 && orig[off[k] + 8] == 1) {
			ck = off[k];
			break;
		}
	cr_assert_neq(ck, 0);
	memcpy(b, orig, len);
	uint32_t fl;
	memcpy(&fl, b + ck + 4, 4);
	b[ck + 8 + 20 + 100] ^= 1;
	uint64_t sum = XXH3_64bits(b + ck, 8 + fl);
	memcpy(b + ck + 8 + fl, &sum, 8);
	spit(bad, b, len);
	struct store_xfer_error err;
	uint64_t nid;
	cr_assert_eq(store_import(t, bad, NULL, NULL, &nid, NULL, &err), RW_ECHECKSUM);
	cr_assert_eq(err.offset, ck);
	cr_assert_str_eq(err.section, "chunk");
	cr_assert(strstr(err.detail, "does not match its key"), "%s", err.detail);

	/* a newer format */
	memcpy(b, orig, len);
	b[8] = 9;
	uint64_t hs = XXH3_64bits(b, 24);
	memcpy(b + 24, &hs, 8);
	spit(bad, b, len);
	cr_assert_eq(store_import(t, bad, NULL, NULL, &nid, NULL, &err), RW_EVERSION);

	/* and the untouched file still imports */
	cr_assert_eq(store_import(t, file, NULL, NULL, &nid, NULL, &err), 0);
	verify_clean(t);
	store_close(t);
	store_close(s);
	free(orig);
	free(b);
	free(file);
	free(bad);
	free(dir2);
}
