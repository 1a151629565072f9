/*
 * test_store_damage.c - damaged copies of a good store: no store operation
 * may end the process with a signal, and every failure is a clean error
 * that says what is wrong. And salvage.
 *
 * A good store (checkpoints with memory, a disk, records on overflow
 * pages, a deleted checkpoint so the free list is not empty) is damaged in
 * copies: truncation at a random byte and at a page boundary, bit flips in
 * the meta pages and in branch, leaf and overflow pages (found by reading
 * the page headers), random flips and 16-byte runs of random bytes. Each
 * copy is opened in a child process that runs what every command runs
 * (open, list, verify, read every checkpoint's pages and records, stats,
 * gc, export); the parent sees a signal death as a signal.
 *
 * The seed comes from the time and is printed; REWIND_DAMAGE_SEED=N replays
 * one run.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "helpers.h"
#include "record.h"

#define NCKPT 5
#define MEM_PAGES 700
#define DISK_BLOCKS 96
#define COPIES 110        /* per test; two tests */

static const char *tmp;
static char *good;
static uint8_t *img;      /* the good data file */
static size_t img_len;
static uint64_t *pg_kind[4];  /* pages by kind: meta, branch, leaf, overflow */
static size_t npg_kind[4];

static void setup(void)
{
	tmp = rw_test_tmpdir("damage");
	cr_assert(asprintf(&good, "%s/good", tmp) > 0);
}

static void teardown(void)
{
	rm_rf(tmp);
	free(good);
	free(img);
	for (int i = 0; i < 4; i++)
		free(pg_kind[i]);
}

static uint64_t rng_state;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static uint64_t seed_from_env(void)
{
	const char *e = getenv("REWIND_DAMAGE_SEED");
	struct timespec ts;

	if (e && *e)
		return strtoull(e, NULL, 0);
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec;
}

/* A record in the base record format, with len payload bytes. */
static uint8_t *vm_record(const char *kind, size_t len, uint64_t seed, size_t *out_len)
{
	struct rec_writer w;
	uint8_t *data, *pay = malloc(len);

	for (size_t i = 0; i < len; i++)
		pay[i] = (uint8_t)(seed * 31 + i * 7);
	rec_writer_init(&w, kind, 1);
	cr_assert_eq(rec_put_bytes(&w, pay, len), 0);
	cr_assert_eq(rec_take(&w, &data, out_len), 0);
	rec_writer_free(&w);
	free(pay);
	return data;
}

/* The good store: NCKPT checkpoints in a chain, one more deleted. */
static void build_good(void)
{
	struct store *s = open_store(good, STORE_OPEN_NOSYNC);
	uint8_t *buf = malloc((size_t)MEM_PAGES * PG);
	uint64_t parent = 0, id;

	for (int c = 0; c <= NCKPT; c++) {
		struct store_ckpt *ck;
		char label[32];
		size_t rl;
		uint8_t *r1 = vm_record("vcpu", 5000 + (size_t)c * 100, (uint64_t)c, &rl);

		cr_assert_eq(store_ckpt_begin(s, parent, &ck), 0);
		cr_assert_eq(store_ckpt_set_size(ck, NULL, MEM_PAGES), 0);
		cr_assert_eq(store_ckpt_set_size(ck, "vda", DISK_BLOCKS), 0);
		/* the first checkpoint writes everything, later ones a third */
		for (uint64_t i = 0; i < MEM_PAGES; i++) {
			if (c && i % 3 != (uint64_t)c % 3)
				continue;
			if (i % 17 == 5)
				memset(buf, 0, PG);
			else
				page_fill(buf, (uint64_t)c * 100000 + i + 1);
			cr_assert_eq(store_ckpt_add_pages(ck, NULL, &i, buf, 1), 0);
		}
		for (uint64_t i = 0; i < DISK_BLOCKS; i += 2) {
			page_fill(buf, 7000000 + (uint64_t)c * 1000 + i);
			cr_assert_eq(store_ckpt_add_pages(ck, "vda", &i, buf, 1), 0);
		}
		snprintf(label, sizeof(label), "checkpoint-%d", c);
		cr_assert_eq(store_ckpt_set_label(ck, label), 0);
		cr_assert_eq(store_ckpt_set_config(ck, label, strlen(label)), 0);
		cr_assert_eq(store_ckpt_put_record(ck, "vcpu/0", 1, r1, rl), 0);
		cr_assert_eq(store_ckpt_put_record(ck, "dev/serial", 1, label, strlen(label)), 0);
		cr_assert_eq(store_ckpt_commit(ck, &id, NULL), 0);
		free(r1);
		parent = id;
	}
	/* a deleted checkpoint: the free list has pages */
	cr_assert_eq(store_delete(s, 3, NULL), 0);
	verify_clean(s);
	store_close(s);
	free(buf);
}

static void load_image(void)
{
	char *p;
	FILE *f;

	cr_assert(asprintf(&p, "%s/data.mdb", good) > 0);
	f = fopen(p, "rb");
	cr_assert(f);
	fseek(f, 0, SEEK_END);
	img_len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	img = malloc(img_len);
	cr_assert_eq(fread(img, 1, img_len, f), img_len);
	fclose(f);
	free(p);
	/* classify the pages by their headers */
	for (uint64_t pg = 0; pg < img_len / PG; pg++) {
		const uint8_t *h = img + pg * PG;
		uint64_t no;
		uint16_t fl;
		int k;

		memcpy(&no, h, 8);
		memcpy(&fl, h + 10, 2);
		if (no != pg)
			continue;
		k = fl == 0x08 ? 0 : fl == 0x01 ? 1 : fl == 0x02 ? 2 : fl == 0x04 ? 3 : -1;
		if (k < 0)
			continue;
		pg_kind[k] = realloc(pg_kind[k], (npg_kind[k] + 1) * sizeof(uint64_t));
		pg_kind[k][npg_kind[k]++] = pg;
	}
	for (int k = 0; k < 4; k++)
		cr_assert_gt(npg_kind[k], 0, "no page of kind %d in the good store", k);
}

/* ---- the child: every operation a command runs ---- */

/* Child exit codes: 0 every operation ran (errors were clean), REFUSED the
 * store was refused at open with a clean error, anything else unclean (a
 * sanitizer's report exits 1). */
#define REFUSED 10

static int bad(const char *what, int rc)
{
	fprintf(stderr, "unclean failure: %s: %d (%s), detail: %s\n", what, rc,
		rw_strerror(rc), store_error_detail() ? store_error_detail() : "(none)");
	return 3;
}

/* The errors a damaged store may give (anything else is unclean). */
static bool clean(int rc)
{
	return rc == 0 || rc == RW_ENOTFOUND || rc == RW_ECORRUPT || rc == RW_ECHECKSUM ||
	       rc == RW_ENOTSTORE || rc == RW_EVERSION;
}

static int list_cb(void *arg, const struct store_ckpt_info *i)
{
	(void)arg; (void)i;
	return 0;
}

static int run_cb(void *arg, uint64_t first, uint64_t n, const void *data)
{
	(void)arg; (void)first; (void)n; (void)data;
	return 0;
}

struct names {
	char v[16][STORE_NAME_MAX + 1];
	int n;
};

static int name_cb(void *arg, const struct store_record_info *ri)
{
	struct names *nm = arg;

	if (nm->n < 16)
		snprintf(nm->v[nm->n++], sizeof(nm->v[0]), "%s", ri->name);
	return 0;
}

static int child_ops(const char *dir, const char *exp)
{
	struct store *s;
	struct store_stats ss;
	struct store_verify_stats vs;
	struct store_gc_stats gs;
	struct store_xfer_stats xs;
	uint8_t *buf = malloc((size_t)MEM_PAGES * PG);
	int rc;

	rc = store_open(dir, NULL, &s);
	if (rc) {
		/* a damaged file must be named */
		if (rc == RW_ECORRUPT && (!store_error_detail() ||
					  !strstr(store_error_detail(), "data.mdb")))
			return bad("open", rc);
		return clean(rc) ? REFUSED : bad("open", rc);
	}
	rc = store_list(s, list_cb, NULL);
	if (!clean(rc))
		return bad("list", rc);
	rc = store_verify(s, NULL, NULL, &vs);
	if (rc)
		return bad("verify", rc);
	for (uint64_t id = 1; id <= NCKPT + 1; id++) {
		struct store_snap *sn;
		struct names nm = { .n = 0 };

		rc = store_snap_open(s, id, &sn);
		if (rc) {
			if (!clean(rc))
				return bad("snap_open", rc);
			continue;
		}
		const struct store_ckpt_info *info = store_snap_info(sn);
		rc = store_snap_read(sn, NULL, 0, info->mem.npages > MEM_PAGES ? MEM_PAGES
				     : info->mem.npages, buf);
		if (rc == RW_ECHECKSUM && (!store_error_detail() ||
					   !strstr(store_error_detail(), "checkpoint")))
			return bad("read: a chunk's hash failed without naming it", rc);
		if (!clean(rc) && rc != -ERANGE)
			return bad("read", rc);
		for (size_t d = 0; d < info->ndisks; d++) {
			rc = store_snap_foreach_run(sn, info->disks[d].name, 0,
						    info->disks[d].npages, run_cb, NULL);
			if (!clean(rc) && rc != -ERANGE)
				return bad("runs", rc);
		}
		rc = store_snap_foreach_record(sn, name_cb, &nm);
		if (!clean(rc))
			return bad("records", rc);
		for (int i = 0; i < nm.n; i++) {
			void *data;
			size_t len;

			rc = store_snap_record(sn, nm.v[i], &data, &len, NULL);
			if (!rc)
				free(data);
			else if (!clean(rc))
				return bad("record", rc);
		}
		store_snap_close(sn);
	}
	rc = store_stats(s, &ss);
	if (!clean(rc))
		return bad("stats", rc);
	rc = store_export(s, NCKPT + 1, exp, NULL, NULL, &xs);
	if (!clean(rc))
		return bad("export", rc);
	rc = store_gc(s, false, &gs);
	if (!clean(rc))
		return bad("gc", rc);
	store_close(s);
	free(buf);
	return 0;
}

/* ---- damage ---- */

enum dmg { D_TRUNC, D_TRUNC_PAGE, D_META, D_BRANCH, D_LEAF, D_OVERFLOW, D_FLIPS, D_RUN, D_N };
static const char *const dmg_name[D_N] = {
	"truncate", "truncate-page", "meta", "branch", "leaf", "overflow", "flips", "run",
};

static size_t damage(uint8_t *b, size_t len, enum dmg d, char *what, size_t wl)
{
	uint64_t pg, off;
	int k;

	switch (d) {
	case D_TRUNC:
		len = (size_t)(rnd() % len);
		snprintf(what, wl, "truncate to %zu", len);
		return len;
	case D_TRUNC_PAGE:
		len = (size_t)(rnd() % (len / PG)) * PG;
		snprintf(what, wl, "truncate to %zu", len);
		return len;
	case D_META: case D_BRANCH: case D_LEAF: case D_OVERFLOW:
		k = d - D_META;
		pg = pg_kind[k][rnd() % npg_kind[k]];
		/* mostly the header and the first nodes, else anywhere */
		off = rnd() % 3 ? rnd() % (d == D_META ? 152 : 64) : rnd() % PG;
		b[pg * PG + off] ^= (uint8_t)(1u << (rnd() % 8));
		snprintf(what, wl, "flip in %s page %llu at %llu", dmg_name[d],
			 (unsigned long long)pg, (unsigned long long)off);
		return len;
	case D_FLIPS:
		for (int i = 0, n = 1 + (int)(rnd() % 8); i < n; i++)
			b[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
		snprintf(what, wl, "random flips");
		return len;
	default:
		off = rnd() % (len - 16);
		for (int i = 0; i < 16; i++)
			b[off + (uint64_t)i] = (uint8_t)rnd();
		snprintf(what, wl, "16 random bytes at %llu", (unsigned long long)off);
		return len;
	}
}

static void run_copies(unsigned part)
{
	uint64_t seed = seed_from_env() + part;
	uint8_t *b;
	char *dir, *file, *exp;
	int counts[4] = { 0 };  /* ok, clean error, unclean, signal */

	rng_state = seed * 0x9e3779b97f4a7c15ull | 1;
	fprintf(stderr, "damage part %u: seed %llu (REWIND_DAMAGE_SEED=%llu replays it)\n",
		part, (unsigned long long)seed, (unsigned long long)(seed - part));
	build_good();
	load_image();
	b = malloc(img_len);
	cr_assert(asprintf(&dir, "%s/copy", tmp) > 0);
	cr_assert(asprintf(&file, "%s/data.mdb", dir) > 0);
	cr_assert(asprintf(&exp, "%s/out.rwx", tmp) > 0);
	for (int i = 0; i < COPIES; i++) {
		enum dmg d = (enum dmg)(part ? 2 + (unsigned)i % (D_N - 2) : (unsigned)i % D_N);
		char what[128];
		size_t len;
		FILE *f;
		pid_t pid;
		int st;

		memcpy(b, img, img_len);
		len = damage(b, img_len, d, what, sizeof(what));

		rm_rf(dir);
		cr_assert_eq(mkdir(dir, 0700), 0);
		f = fopen(file, "wb");
		cr_assert(f);
		cr_assert_eq(fwrite(b, 1, len, f), len);
		fclose(f);
		pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) {
			alarm(60);
			_exit(child_ops(dir, exp));
		}
		cr_assert_eq(waitpid(pid, &st, 0), pid);
		if (WIFSIGNALED(st)) {
			counts[3]++;
			cr_log_error("copy %d (%s): killed by signal %d (seed %llu)", i, what,
				     WTERMSIG(st), (unsigned long long)(seed - part));
		} else {
			int code = WEXITSTATUS(st);
			counts[code == 0 ? 0 : code == REFUSED ? 1 : 2]++;
			if (code && code != REFUSED)
				cr_log_error("copy %d (%s): unclean failure (seed %llu)", i, what,
					     (unsigned long long)(seed - part));
		}
	}
	fprintf(stderr, "damage part %u: %d copies: %d fine, %d refused at open, %d unclean, "
		"%d signal deaths\n", part, COPIES, counts[0], counts[1], counts[2], counts[3]);
	cr_expect_eq(counts[3], 0, "%d signal deaths (seed %llu)", counts[3],
		     (unsigned long long)(seed - part));
	cr_expect_eq(counts[2], 0, "%d unclean failures (seed %llu)", counts[2],
		     (unsigned long long)(seed - part));
	free(b);
	free(dir);
	free(file);
	free(exp);
}

TestSuite(store_damage, .init = setup, .fini = teardown, .timeout = 120);

/* truncations and every kind of flip */
Test(store_damage, copies_all_kinds)
{
	run_copies(0);
}

/* flips in meta, branch, leaf and overflow pages, runs */
Test(store_damage, copies_pages)
{
	run_copies(1);
}

/* ---- salvage ---- */

struct sv_seen {
	uint64_t saved[16], lost[16];
	int nsaved, nlost;
	char lost_why[256];
};

static int sv_cb(void *arg, const struct store_salvage_item *it)
{
	struct sv_seen *sv = arg;

	if (it->kind == STORE_SALVAGE_SAVED && sv->nsaved < 16)
		sv->saved[sv->nsaved++] = it->id;
	if (it->kind == STORE_SALVAGE_LOST && sv->nlost < 16) {
		sv->lost[sv->nlost++] = it->id;
		snprintf(sv->lost_why, sizeof(sv->lost_why), "%s", it->why);
	}
	return 0;
}

struct progress_seen {
	uint64_t calls, last, total;
	bool backwards, past_total;
};

static void progress_cb(void *arg, uint64_t done, uint64_t total)
{
	struct progress_seen *p = arg;

	if (done < p->last)
		p->backwards = true;
	if (done > total)
		p->past_total = true;
	p->calls++;
	p->last = done;
	p->total = total;
}

Test(store_damage, salvage_saves_the_intact_checkpoints, .timeout = 60)
{
	struct progress_seen pr = { 0 };
	struct store_salvage_stats st;
	struct sv_seen sv = { .nsaved = 0 };
	struct store *s;
	uint8_t *page = malloc(PG);
	char *file, *to;
	int rc;

	build_good();
	/* a page only the last checkpoint (6) has: index 2, written by c = 5 */
	page_fill(page, 5ull * 100000 + 2 + 1);
	cr_assert(asprintf(&file, "%s/data.mdb", good) > 0);
	cr_assert_eq(flip_in_file(file, page + 64, 64), 0);
	cr_assert(asprintf(&to, "%s/saved", tmp) > 0);
	rc = store_salvage(good, to, sv_cb, &sv, progress_cb, &pr, &st);
	cr_assert_eq(rc, 0, "salvage: %s (%s)", rw_strerror(rc),
		     store_error_detail() ? store_error_detail() : "");
	/* one report per checkpoint at least, never backwards, ending at the total */
	cr_assert_geq(pr.calls, (uint64_t)NCKPT);
	cr_assert(!pr.backwards && !pr.past_total);
	cr_assert(pr.total > 0 && pr.last == pr.total, "progress ended at %" PRIu64 " of %" PRIu64,
		  pr.last, pr.total);
	cr_assert_eq(sv.nlost, 1);
	cr_assert_eq(sv.lost[0], NCKPT + 1);
	cr_assert(strstr(sv.lost_why, "does not match its hash"), "%s", sv.lost_why);
	cr_assert_eq(sv.nsaved, NCKPT - 1);   /* 1, 2, 4, 5 (3 was deleted) */
	cr_assert_eq(st.saved, (uint64_t)NCKPT - 1);
	s = open_store(to, 0);
	verify_clean(s);
	for (int i = 0; i < sv.nsaved; i++) {
		struct store_snap *sn;
		uint8_t *mem = malloc((size_t)MEM_PAGES * PG);
		void *data;
		size_t len;

		cr_assert_eq(store_snap_open(s, sv.saved[i], &sn), 0);
		cr_assert_eq(store_snap_read(sn, NULL, 0, MEM_PAGES, mem), 0);
		cr_assert_eq(store_snap_record(sn, "vcpu/0", &data, &len, NULL), 0);
		free(data);
		store_snap_close(sn);
		free(mem);
	}
	struct store_snap *none;
	cr_assert_eq(store_snap_open(s, NCKPT + 1, &none), RW_ENOTFOUND);
	store_close(s);
	free(file);
	free(to);
	free(page);
}

Test(store_damage, salvage_of_a_damaged_tree, .timeout = 60)
{
	struct store_salvage_stats st;
	struct sv_seen sv = { .nsaved = 0 };
	struct store *s;
	char *file, *to;
	int rc;

	build_good();
	load_image();
	/* break a leaf page's header: the walk skips it, salvage goes on */
	uint64_t pg = pg_kind[2][npg_kind[2] / 2];
	cr_assert(asprintf(&file, "%s/data.mdb", good) > 0);
	int fd = open(file, O_RDWR);
	uint8_t junk[8] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	cr_assert_eq(pwrite(fd, junk, 8, (off_t)(pg * PG + 8)), 8);
	close(fd);
	cr_assert_eq(store_open(good, NULL, &s), RW_ECORRUPT);
	cr_assert(strstr(store_error_detail(), "damaged"), "%s", store_error_detail());
	cr_assert(asprintf(&to, "%s/saved", tmp) > 0);
	rc = store_salvage(good, to, sv_cb, &sv, NULL, NULL, &st);
	cr_assert_eq(rc, 0, "salvage: %s", rw_strerror(rc));
	cr_assert_geq(st.damaged, 1);
	cr_assert_eq(st.saved + st.lost, (uint64_t)sv.nsaved + (uint64_t)sv.nlost);
	s = open_store(to, 0);
	verify_clean(s);
	store_close(s);
	free(file);
	free(to);
}
