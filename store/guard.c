/*
 * guard.c - the structural guard of a store's data file: see guard.h.
 *
 * Why a check before LMDB rather than catching LMDB's faults: a SIGBUS or
 * SIGSEGV handler that longjmps out of an LMDB call leaves LMDB's state
 * (its reader slot, the writer's mutex, a half-built page, the cursor
 * stack) as it was at the fault, and further calls on that environment are
 * undefined; abort() from an LMDB assertion cannot be caught at all; and
 * sanitizer runtimes install their own SIGSEGV handlers. The walk costs a
 * few percent of the file (branch and leaf pages only, about 3% of a store
 * of pages; see README "The store") and leaves LMDB nothing to trip on.
 *
 * The page layout is LMDB 0.9's (lmdb.h, mdb.c): a 16-byte page header
 * (pgno u64, pad u16, flags u16, lower u16, upper u16 or pages u32), node
 * offsets after it, nodes (lo u16, hi u16, flags u16, ksize u16, key,
 * data) packed at the end of the page. Integers are in host order (LMDB
 * files are not portable between byte orders); this is little-endian only.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "guard.h"
#include "store_internal.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "guard.c reads LMDB's host-order pages as little-endian"
#endif

/* LMDB 0.9 constants (mdb.c) */
#define PAGEHDRSZ 16u
#define NODESIZE 8u
#define P_BRANCH 0x01u
#define P_LEAF 0x02u
#define P_OVERFLOW 0x04u
#define P_META 0x08u
#define F_BIGDATA 0x01u
#define F_SUBDATA 0x02u
#define MDB_MAGIC_ 0xBEEFC0DEu
#define MDB_DATA_VERSION_ 1u
#define P_INVALID_ UINT64_MAX
#define CURSOR_STACK_ 32u
#define MAXKEYSIZE 511u
#define DB_SIZE 48u                    /* sizeof(MDB_db) */
#define META_SIZE (PAGEHDRSZ + 136u)   /* header + MDB_meta */
#define INTEGERKEY 0x08u               /* MDB_INTEGERKEY: the free DB's flags */
#define EVEN(n) (((n) + 1u) & ~1u)

const char *const guard_db_names[GDB_ALL] = {
	"meta", "head", "body", "ckpt", "record", "main", "free",
};

/* ===================================================================
 * Error detail
 * =================================================================== */

static __thread char note_buf[GUARD_WHY_MAX + 128];

void store_note(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(note_buf, sizeof(note_buf), fmt, ap);
	va_end(ap);
}

void store_note_prefix(const char *fmt, ...)
{
	char pre[160], old[sizeof(note_buf)];
	va_list ap;

	if (!note_buf[0])
		return;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	size_t pl = strlen(pre), ol = strlen(note_buf);

	memcpy(old, note_buf, ol + 1);
	if (pl + ol >= sizeof(note_buf))
		ol = sizeof(note_buf) - 1 - pl;
	memcpy(note_buf, pre, pl);
	memcpy(note_buf + pl, old, ol);
	note_buf[pl + ol] = 0;
}

void store_note_clear(void)
{
	note_buf[0] = 0;
}

const char *store_error_detail(void)
{
	return note_buf[0] ? note_buf : NULL;
}

/* ===================================================================
 * Reading
 * =================================================================== */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p)
{
	return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

/* pread all of n bytes at off; -EIO on a short read. */
static int pread_all(int fd, void *buf, size_t n, uint64_t off)
{
	uint8_t *p = buf;

	while (n) {
		ssize_t r = pread(fd, p, n, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

int guard_file_open(struct guard_file *f, const char *dir, char *why, size_t len)
{
	struct stat st;

	memset(f, 0, sizeof(*f));
	f->fd = -1;
	if (asprintf(&f->name, "%s/data.mdb", dir) < 0) {
		f->name = NULL;
		return -ENOMEM;
	}
	f->fd = open(f->name, O_RDONLY | O_CLOEXEC);
	if (f->fd < 0 || fstat(f->fd, &st)) {
		int e = errno;

		snprintf(why, len, "store %s: %s", f->name,
			 e == EACCES || e == EPERM ? "permission denied" : strerror(e));
		return e == EPERM ? -EACCES : -e;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, len, "store %s: not a regular file", f->name);
		return RW_ENOTSTORE;
	}
	f->size = (uint64_t)st.st_size;
	return 0;
}

void guard_file_close(struct guard_file *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	free(f->name);
	f->name = NULL;
}

/* ===================================================================
 * Meta pages
 * =================================================================== */

static void db_parse(const uint8_t *p, struct guard_db *d)
{
	d->pad = rd32(p);
	d->flags = rd16(p + 4);
	d->depth = rd16(p + 6);
	d->branch = rd64(p + 8);
	d->leaf = rd64(p + 16);
	d->overflow = rd64(p + 24);
	d->entries = rd64(p + 32);
	d->root = rd64(p + 40);
}

/* A database record's own consistency; NULL if fine. */
static const char *db_check(const struct guard_db *d, uint64_t npages)
{
	if (d->root == P_INVALID_)
		return d->depth || d->entries || d->branch || d->leaf || d->overflow
		       ? "empty database with pages" : NULL;
	if (d->root < 2 || d->root >= npages)
		return "root page number out of range";
	if (d->depth == 0 || d->depth >= CURSOR_STACK_)
		return "tree depth out of range";
	if (d->entries == 0 || d->leaf == 0 ||
	    d->branch > npages || d->leaf > npages || d->overflow > npages)
		return "page counts out of range";
	return NULL;
}

static void meta_parse(const uint8_t *b, unsigned i, uint32_t psize0,
		       struct guard_meta *m)
{
	const uint8_t *mm = b + PAGEHDRSZ;
	const char *bad = NULL;

	m->pgno = rd64(b);
	m->pflags = rd16(b + 10);
	m->magic = rd32(mm);
	m->version = rd32(mm + 4);
	m->address = rd64(mm + 8);
	m->mapsize = rd64(mm + 16);
	db_parse(mm + 24, &m->db[0]);
	db_parse(mm + 72, &m->db[1]);
	m->psize = m->db[0].pad;
	m->last_pg = rd64(mm + 120);
	m->txnid = rd64(mm + 128);

	uint64_t npages = m->last_pg + 1;
	if (m->magic != MDB_MAGIC_)
		bad = "bad magic";
	else if (m->pflags != P_META || m->pgno != i || rd16(b + 8))
		bad = "bad page header";
	else if (m->version != MDB_DATA_VERSION_)
		bad = "unknown LMDB version";
	else if (m->psize < 512 || m->psize > 32768 || (m->psize & (m->psize - 1)) ||
		 (i == 1 && m->psize != psize0))
		bad = "bad page size";
	else if (m->address)
		bad = "fixed map address set";
	else if (m->last_pg < 1 || m->last_pg > (UINT64_MAX >> 16) ||
		 npages * m->psize > m->mapsize)
		bad = "last page out of range";
	else if (m->db[0].flags != INTEGERKEY || m->db[1].flags || m->db[1].pad)
		bad = "bad database flags";
	else if (m->txnid % 2 != i && m->txnid != 0)
		bad = "transaction id in the wrong slot";
	else if (!(bad = db_check(&m->db[0], npages)))
		bad = db_check(&m->db[1], npages);
	m->ok = !bad;
	snprintf(m->why, sizeof(m->why), "%s", bad ? bad : "");
}

int guard_meta_read(struct guard_file *f, bool any_meta, char *why, size_t len)
{
	uint8_t b[META_SIZE];
	struct guard_meta *m0 = &f->meta[0], *m1 = &f->meta[1];
	int rc;

	if (f->size < META_SIZE) {
		snprintf(why, len, "store %s: truncated to %llu bytes (shorter than its meta "
			 "page)", f->name, (unsigned long long)f->size);
		return RW_ECORRUPT;
	}
	rc = pread_all(f->fd, b, sizeof(b), 0);
	if (rc) {
		snprintf(why, len, "store %s: reading meta page 0: %s", f->name, strerror(-rc));
		return rc;
	}
	meta_parse(b, 0, 0, m0);
	/* LMDB reads meta page 1 at meta page 0's page size */
	f->psize = m0->ok ? m0->psize : 4096;
	if (f->size < (uint64_t)f->psize + META_SIZE && any_meta && m0->ok) {
		f->meta[1].ok = false;
		snprintf(f->meta[1].why, sizeof(f->meta[1].why), "missing");
		f->pick = 0;
		return 0;
	}
	if (f->size < (uint64_t)f->psize + META_SIZE) {
		if (m0->ok)
			snprintf(why, len, "store %s: truncated to %llu of %llu bytes", f->name,
				 (unsigned long long)f->size,
				 (unsigned long long)((m0->last_pg + 1) * m0->psize));
		else
			snprintf(why, len, "store %s: truncated to %llu bytes, meta page 0 "
				 "damaged (%s)", f->name, (unsigned long long)f->size, m0->why);
		return RW_ECORRUPT;
	}
	rc = pread_all(f->fd, b, sizeof(b), f->psize);
	if (rc) {
		snprintf(why, len, "store %s: reading meta page 1: %s", f->name, strerror(-rc));
		return rc;
	}
	meta_parse(b, 1, f->psize, m1);
	if (m0->magic != MDB_MAGIC_ && m1->magic != MDB_MAGIC_ && !any_meta) {
		snprintf(why, len, "store %s: not an LMDB file", f->name);
		return RW_ENOTSTORE;
	}
	if (!m0->ok && !m1->ok) {
		if (!strcmp(m0->why, m1->why))
			snprintf(why, len, "store %s: meta page 0 and 1 damaged (%s)", f->name,
				 m0->why);
		else
			snprintf(why, len, "store %s: meta page 0 and 1 damaged (%s; %s)",
				 f->name, m0->why, m1->why);
		return RW_ECORRUPT;
	}
	if (!m0->ok || !m1->ok) {
		int bad = m0->ok ? 1 : 0;

		f->pick = !bad;
		if (!any_meta) {
			snprintf(why, len, "store %s: meta page %d damaged (%s)", f->name, bad,
				 f->meta[bad].why);
			return RW_ECORRUPT;
		}
	} else {
		/* the two metas are the last two commits (or both the empty
		 * store's): their ids differ by one */
		uint64_t hi = m0->txnid > m1->txnid ? m0->txnid : m1->txnid;
		uint64_t lo = m0->txnid > m1->txnid ? m1->txnid : m0->txnid;

		f->pick = m0->txnid < m1->txnid;
		if (hi - lo != 1 && hi != 0) {
			if (!any_meta) {
				snprintf(why, len, "store %s: meta page 0 and 1 damaged "
					 "(transaction ids %llu and %llu)", f->name,
					 (unsigned long long)m0->txnid,
					 (unsigned long long)m1->txnid);
				return RW_ECORRUPT;
			}
		} else if (f->meta[!f->pick].last_pg > f->meta[f->pick].last_pg) {
			/* the file never shrinks */
			if (!any_meta) {
				snprintf(why, len, "store %s: meta page %d damaged (last page)",
					 f->name, f->pick);
				return RW_ECORRUPT;
			}
			f->pick = !f->pick;
		}
	}
	/* Both meta pages are read through the map by every transaction.
	 * The pages after them may legitimately end before the meta's last
	 * page (LMDB does not write pages freed in the transaction that
	 * allocated them): the walk checks every page it reaches. */
	if (f->size < 2ull * f->psize && !any_meta) {
		snprintf(why, len, "store %s: truncated to %llu of %llu bytes", f->name,
			 (unsigned long long)f->size,
			 (unsigned long long)((f->meta[f->pick].last_pg + 1) * f->psize));
		return RW_ECORRUPT;
	}
	return 0;
}

/* ===================================================================
 * The walk
 * =================================================================== */

struct gwalk {
	struct guard_file *f;
	const struct guard_meta *m;
	const struct guard_visit *visit;
	uint32_t psize, nodemax;
	uint64_t npages;          /* last_pg + 1 */
	uint64_t fpages;          /* pages wholly inside the file */
	uint8_t *seen;            /* bit per page below fpages */
	uint8_t *pages;           /* one page buffer per level */
	uint8_t *vbuf;            /* an overflow value (visit, free DB) */
	size_t vcap;
	/* the database being walked */
	enum guard_db_id db;
	const struct guard_db *rec;
	uint64_t nbranch, nleaf, nover, nentries;
	uint64_t nclaimed;        /* pages claimed so far, all databases */
	bool skipped;             /* a subtree was skipped (visit) */
	struct guard_db sub[GDB_NAMED];
	bool has_sub[GDB_NAMED];
	uint64_t *freed;          /* free-list page numbers, checked last */
	size_t nfreed, capfreed;
	char *why;              /* the message, without visit */
	/* keys a damage report may have lost: [dlo, dhi) */
	const uint8_t *dlo, *dhi;
	size_t dlol, dhil;
	uint8_t dkey[MAXKEYSIZE + 1];  /* one entry's key, and its successor */
	size_t whylen;
};

static const char *db_name(enum guard_db_id db)
{
	return guard_db_names[db];
}


/*
 * Return values inside the walk: 0 fine; negative: stop (an error, or
 * without visit the first damage, with its message in why); GW_SKIP: with
 * visit, the page (and what is below it) was reported and is skipped;
 * GW_SKIP_ENTRY: one entry's value was reported and is skipped.
 */
#define GW_SKIP 1
#define GW_SKIP_ENTRY 2

static int damage(struct gwalk *w, uint64_t pgno, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int damage(struct gwalk *w, uint64_t pgno, const char *fmt, ...)
{
	char msg[GUARD_WHY_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (w->visit) {
		w->skipped = true;
		if (w->visit->damage) {
			int rc = w->visit->damage(w->visit->arg, w->db, pgno, msg, w->dlo,
						  w->dlol, w->dhi, w->dhil);
			if (rc)
				return rc < 0 ? rc : -EINVAL;
		}
		return GW_SKIP;
	}
	snprintf(w->why, w->whylen, "store %s: page %llu damaged: %s (%s database)",
		 w->f->name, (unsigned long long)pgno, msg, db_name(w->db));
	return RW_ECORRUPT;
}

/* Page pgno reaches past the end of the file. */
static int truncated(struct gwalk *w, uint64_t pgno)
{
	if (w->visit)
		return damage(w, pgno, "past the end of the file (truncated to %llu of %llu "
			      "bytes)", (unsigned long long)w->f->size,
			      (unsigned long long)(w->npages * w->psize));
	snprintf(w->why, w->whylen, "store %s: truncated to %llu of %llu bytes", w->f->name,
		 (unsigned long long)w->f->size, (unsigned long long)(w->npages * w->psize));
	return RW_ECORRUPT;
}

static bool seen_test_set(struct gwalk *w, uint64_t pgno)
{
	uint8_t bit = (uint8_t)(1u << (pgno & 7));
	bool was = w->seen[pgno >> 3] & bit;

	w->seen[pgno >> 3] |= bit;
	return was;
}

/* Claim the run [pgno, pgno + n) that page from refers to. */
static int claim(struct gwalk *w, uint64_t from, uint64_t pgno, uint64_t n,
		 const char *what)
{
	if (pgno < 2 || pgno >= w->npages || n > w->npages - pgno)
		return damage(w, from, "%s page number %llu out of range", what,
			      (unsigned long long)pgno);
	if (pgno + n > w->fpages)
		return truncated(w, pgno);
	for (uint64_t i = 0; i < n; i++)
		if (seen_test_set(w, pgno + i))
			return damage(w, from, "%s page %llu is used twice", what,
				      (unsigned long long)(pgno + i));
	if (w->visit && w->visit->progress &&
	    (w->nclaimed >> 12) != ((w->nclaimed + n) >> 12))
		w->visit->progress(w->visit->arg, w->nclaimed + n, w->fpages);
	w->nclaimed += n;
	return 0;
}

/* Compare keys as the database does: integers (free DB) or bytes. */
static int key_cmp(const struct gwalk *w, const uint8_t *a, size_t al,
		   const uint8_t *b, size_t bl)
{
	if (w->db == GDB_FREE) {
		uint64_t x = al == 8 ? rd64(a) : 0, y = bl == 8 ? rd64(b) : 0;
		return x < y ? -1 : x > y;
	}
	int c = memcmp(a, b, al < bl ? al : bl);
	return c ? c : al < bl ? -1 : al > bl;
}

static int vbuf_need(struct gwalk *w, size_t n)
{
	if (n <= w->vcap)
		return 0;
	size_t cap = w->vcap ? w->vcap : 65536;
	while (cap < n)
		cap *= 2;
	uint8_t *p = realloc(w->vbuf, cap);
	if (!p)
		return -ENOMEM;
	w->vbuf = p;
	w->vcap = cap;
	return 0;
}

/* An entry-level failure: skip the entry (visit) or stop. */
static int entry_skip(int rc)
{
	return rc < 0 ? rc : rc ? GW_SKIP_ENTRY : 0;
}

/* A free-list entry: txnid -> IDL (count, then page numbers, descending). */
static int free_entry(struct gwalk *w, uint64_t from, const uint8_t *key, size_t klen,
		      const uint8_t *val, size_t vlen)
{
	uint64_t n;

	if (klen != 8 || rd64(key) > w->m->txnid)
		return damage(w, from, "free-list key is not a past transaction id");
	if (vlen < 8 || vlen % 8 || (n = rd64(val)) != vlen / 8 - 1)
		return damage(w, from, "free-list entry has a bad length");
	for (uint64_t i = 1; i <= n; i++) {
		uint64_t pg = rd64(val + 8 * i);
		if (pg < 2 || pg >= w->npages || (i > 1 && pg >= rd64(val + 8 * (i - 1))))
			return damage(w, from, "free-list page number %llu out of range or "
				      "order", (unsigned long long)pg);
		if (w->nfreed == w->capfreed) {
			size_t cap = w->capfreed ? w->capfreed * 2 : 1024;
			uint64_t *p = realloc(w->freed, cap * sizeof(*p));
			if (!p)
				return -ENOMEM;
			w->freed = p;
			w->capfreed = cap;
		}
		w->freed[w->nfreed++] = pg;
	}
	return 0;
}

/* An overflow value: its run, and (visit, free DB) its bytes in *val. */
static int leaf_bigvalue(struct gwalk *w, uint64_t pgno, uint64_t ov, uint32_t dsize,
			 const uint8_t **val)
{
	uint64_t n = ((uint64_t)PAGEHDRSZ - 1 + dsize) / w->psize + 1;
	int rc = claim(w, pgno, ov, n, "overflow");

	if (rc)
		return rc;
	w->nover += n;
	if (!w->visit && w->db != GDB_FREE)
		return 0;
	if (vbuf_need(w, PAGEHDRSZ + (size_t)dsize))
		return -ENOMEM;
	rc = pread_all(w->f->fd, w->vbuf, PAGEHDRSZ + (size_t)dsize, ov * w->psize);
	if (rc)
		return damage(w, ov, "overflow page unreadable (%s)", strerror(-rc));
	if (rd64(w->vbuf) != ov || rd16(w->vbuf + 10) != P_OVERFLOW || rd32(w->vbuf + 12) != n)
		return damage(w, ov, "bad overflow page header");
	*val = w->vbuf + PAGEHDRSZ;
	return 0;
}

/* One leaf node: flags, sizes, value; *nsize gets its size on the page. */
static int leaf_node(struct gwalk *w, uint64_t pgno, const uint8_t *pg, unsigned i,
		     const uint8_t *nd, unsigned ksize, unsigned *nsize)
{
	unsigned nflags = rd16(nd + 4);
	uint32_t dsize = rd16(nd) | (uint32_t)rd16(nd + 2) << 16;
	const uint8_t *key = nd + NODESIZE, *val = NULL;
	uint64_t off = (uint64_t)(nd - pg);
	int rc;

	if (nflags & F_BIGDATA) {
		if (nflags != F_BIGDATA || w->db == GDB_MAIN)
			return damage(w, pgno, "node %u has bad flags", i);
		if (off + NODESIZE + ksize + 8 > w->psize)
			return damage(w, pgno, "node %u runs past the end of the page", i);
		if ((uint64_t)NODESIZE + ksize + dsize <= w->nodemax)
			return damage(w, pgno, "node %u: a small value on overflow pages", i);
		*nsize = NODESIZE + ksize + 8;
		w->nentries++;
		/* a damaged value loses this key only: [key, key "\0") */
		const uint8_t *plo = w->dlo, *phi = w->dhi;
		size_t plol = w->dlol, phil = w->dhil;

		memcpy(w->dkey, key, ksize);
		w->dkey[ksize] = 0;
		w->dlo = w->dhi = w->dkey;
		w->dlol = ksize;
		w->dhil = ksize + 1;
		rc = leaf_bigvalue(w, pgno, rd64(key + ksize), dsize, &val);
		w->dlo = plo;
		w->dhi = phi;
		w->dlol = plol;
		w->dhil = phil;
		if (rc)
			return entry_skip(rc);
		if (!val)
			return 0;
	} else {
		if (off + NODESIZE + ksize + dsize > w->psize)
			return damage(w, pgno, "node %u runs past the end of the page", i);
		*nsize = NODESIZE + ksize + dsize;
		val = key + ksize;
		if (nflags == F_SUBDATA && w->db == GDB_MAIN) {
			int id;

			if (dsize != DB_SIZE)
				return damage(w, pgno, "database record %u has a bad size", i);
			for (id = 0; id < GDB_NAMED; id++)
				if (strlen(guard_db_names[id]) == ksize &&
				    !memcmp(key, guard_db_names[id], ksize))
					break;
			if (id == GDB_NAMED)
				return damage(w, pgno, "unknown database name in node %u", i);
			db_parse(val, &w->sub[id]);
			w->has_sub[id] = true;
			w->nentries++;
			return 0;
		}
		if (nflags || w->db == GDB_MAIN)
			return damage(w, pgno, "node %u has bad flags", i);
		if ((uint64_t)NODESIZE + ksize + dsize > w->nodemax)
			return damage(w, pgno, "node %u is larger than a node can be", i);
		w->nentries++;
	}
	if (w->db == GDB_FREE)
		return entry_skip(free_entry(w, pgno, key, ksize, val, dsize));
	if (w->visit && w->visit->entry) {
		rc = w->visit->entry(w->visit->arg, w->db, key, ksize, val, dsize);
		if (rc)
			return rc < 0 ? rc : -EINVAL;
	}
	return 0;
}

/*
 * Check page pgno (already claimed) at depth level (1 = root) and what is
 * below it. Its keys must lie in [lo, hi) (NULL: unbounded).
 */
static int visit_page(struct gwalk *w, uint64_t pgno, unsigned level,
		      const uint8_t *lo, size_t lol, const uint8_t *hi, size_t hil)
{
	uint8_t *pg = w->pages + (size_t)(level - 1) * w->psize;
	unsigned flags, lower, upper, nkeys, used = 0;
	const uint8_t *prev = NULL;
	size_t prevl = 0;
	int rc;

	w->dlo = lo;
	w->dlol = lol;
	w->dhi = hi;
	w->dhil = hil;
	rc = pread_all(w->f->fd, pg, w->psize, pgno * w->psize);
	if (rc)
		return damage(w, pgno, "unreadable (%s)", strerror(-rc));
	flags = rd16(pg + 10);
	lower = rd16(pg + 12);
	upper = rd16(pg + 14);
	if (rd64(pg) != pgno)
		return damage(w, pgno, "page header names page %llu",
			      (unsigned long long)rd64(pg));
	if (flags != P_BRANCH && flags != P_LEAF)
		return damage(w, pgno, "bad page flags 0x%x", flags);
	if ((flags == P_LEAF) != (level == w->rec->depth))
		return damage(w, pgno, "%s page at depth %u of a tree of depth %u",
			      flags == P_LEAF ? "leaf" : "branch", level, w->rec->depth);
	if (lower < PAGEHDRSZ || (lower - PAGEHDRSZ) % 2 || upper > w->psize || lower > upper)
		return damage(w, pgno, "bad free-space bounds (%u, %u)", lower, upper);
	nkeys = (lower - PAGEHDRSZ) / 2;
	if (nkeys < (flags == P_BRANCH ? 2u : 1u))
		return damage(w, pgno, "%u keys on a %s page", nkeys,
			      flags == P_BRANCH ? "branch" : "leaf");
	if (flags == P_BRANCH)
		w->nbranch++;
	else
		w->nleaf++;

	for (unsigned i = 0; i < nkeys; i++) {
		unsigned off = rd16(pg + PAGEHDRSZ + 2 * i), ksize, nsize = 0;
		const uint8_t *nd = pg + off;

		if (off < upper || off % 2 || off + NODESIZE > w->psize)
			return damage(w, pgno, "node %u at a bad offset (%u)", i, off);
		ksize = rd16(nd + 6);
		if (off + NODESIZE + ksize > w->psize)
			return damage(w, pgno, "key %u runs past the end of the page", i);
		/* the first key of a branch page is not used */
		if (flags == P_LEAF || i > 0) {
			const uint8_t *key = nd + NODESIZE;

			if (ksize == 0 || ksize > MAXKEYSIZE ||
			    (w->db == GDB_FREE && ksize != 8))
				return damage(w, pgno, "key %u has a bad size (%u)", i, ksize);
			if ((prev && key_cmp(w, prev, prevl, key, ksize) >= 0) ||
			    (lo && key_cmp(w, lo, lol, key, ksize) > 0) ||
			    (hi && key_cmp(w, key, ksize, hi, hil) >= 0))
				return damage(w, pgno, "key %u out of order", i);
			prev = key;
			prevl = ksize;
		}
		if (flags == P_LEAF) {
			rc = leaf_node(w, pgno, pg, i, nd, ksize, &nsize);
			if (rc < 0 || rc == GW_SKIP)
				return rc;
		} else {
			nsize = NODESIZE + ksize;
		}
		used += EVEN(nsize);
	}
	/* nodes are packed from upper to the end of the page */
	if (used != w->psize - upper)
		return damage(w, pgno, "nodes do not fill the page as its header says");
	if (flags == P_LEAF)
		return 0;

	for (unsigned i = 0; i < nkeys; i++) {
		const uint8_t *nd = pg + rd16(pg + PAGEHDRSZ + 2 * i);
		const uint8_t *nd1 = i + 1 < nkeys ? pg + rd16(pg + PAGEHDRSZ + 2 * (i + 1))
				     : NULL;
		uint64_t child = rd16(nd) | (uint64_t)rd16(nd + 2) << 16 |
				 (uint64_t)rd16(nd + 4) << 32;
		const uint8_t *clo = i ? nd + NODESIZE : lo;
		size_t clol = i ? rd16(nd + 6) : lol;
		const uint8_t *chi = nd1 ? nd1 + NODESIZE : hi;
		size_t chil = nd1 ? rd16(nd1 + 6) : hil;

		w->dlo = clo;
		w->dlol = clol;
		w->dhi = chi;
		w->dhil = chil;
		rc = claim(w, pgno, child, 1, "child");
		if (!rc)
			rc = visit_page(w, child, level + 1, clo, clol, chi, chil);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Walk one database from its record. */
static int walk_db(struct gwalk *w, enum guard_db_id db, const struct guard_db *rec)
{
	const char *bad;
	int rc;

	w->db = db;
	w->rec = rec;
	w->nbranch = w->nleaf = w->nover = w->nentries = 0;
	w->skipped = false;
	w->dlo = w->dhi = NULL;
	w->dlol = w->dhil = 0;
	if ((bad = db_check(rec, w->npages)) ||
	    (db < GDB_NAMED && (rec->flags || rec->pad)))
		return damage(w, 0, "database record: %s", bad ? bad : "bad flags");
	if (rec->root == P_INVALID_)
		return 0;
	rc = claim(w, 0, rec->root, 1, "root");
	if (!rc)
		rc = visit_page(w, rec->root, 1, NULL, 0, NULL, 0);
	if (rc || w->skipped || w->visit)
		return rc;   /* (salvage keeps what it found whatever the counts) */
	if (w->nbranch != rec->branch || w->nleaf != rec->leaf ||
	    w->nover != rec->overflow || w->nentries != rec->entries)
		return damage(w, rec->root, "its database record counts %llu/%llu/%llu pages "
			      "and %llu entries, the tree has %llu/%llu/%llu and %llu",
			      (unsigned long long)rec->branch, (unsigned long long)rec->leaf,
			      (unsigned long long)rec->overflow, (unsigned long long)rec->entries,
			      (unsigned long long)w->nbranch, (unsigned long long)w->nleaf,
			      (unsigned long long)w->nover, (unsigned long long)w->nentries);
	return 0;
}

int guard_walk(struct guard_file *f, const struct guard_visit *visit, char *why,
	       size_t len)
{
	const struct guard_meta *m = &f->meta[f->pick];
	struct gwalk w = {
		.f = f, .m = m, .visit = visit, .psize = f->psize,
		.npages = m->last_pg + 1, .why = why, .whylen = len,
	};
	int rc;

	w.nodemax = (((w.psize - PAGEHDRSZ) / 2) & ~1u) - 2;
	w.fpages = f->size / w.psize;
	if (w.fpages > w.npages)
		w.fpages = w.npages;
	w.seen = calloc((size_t)(w.fpages + 8) / 8, 1);
	w.pages = malloc((size_t)CURSOR_STACK_ * w.psize);
	if (!w.seen || !w.pages) {
		rc = -ENOMEM;
		goto out;
	}
	w.seen[0] |= 3;   /* the meta pages */
	rc = walk_db(&w, GDB_MAIN, &m->db[1]);
	for (int id = 0; rc >= 0 && id < GDB_NAMED; id++)
		if (w.has_sub[id])
			rc = walk_db(&w, (enum guard_db_id)id, &w.sub[id]);
	if (!visit && rc >= 0)
		rc = walk_db(&w, GDB_FREE, &m->db[0]);
	/* every page the writer may reuse is one no tree uses */
	for (size_t i = 0; !visit && rc >= 0 && i < w.nfreed; i++) {
		uint64_t pg = w.freed[i];
		if (pg < w.fpages && seen_test_set(&w, pg)) {
			w.db = GDB_FREE;
			rc = damage(&w, m->db[0].root, "free-list page %llu is in use",
				    (unsigned long long)pg);
		}
	}
	if (rc > 0)
		rc = 0;
out:
	free(w.seen);
	free(w.pages);
	free(w.vbuf);
	free(w.freed);
	return rc;
}

/* ===================================================================
 * The guard of an open store
 * =================================================================== */

int guard_precheck(const char *dir, bool create, struct store_guard **out)
{
	struct guard_file f;
	struct store_guard *g;
	char why[GUARD_WHY_MAX];
	int rc;

	*out = NULL;
	rc = guard_file_open(&f, dir, why, sizeof(why));
	if (rc == -ENOENT) {
		guard_file_close(&f);
		return 0;
	}
	if (rc) {
		if (f.name)
			store_note("%s", why);
		guard_file_close(&f);
		return rc;
	}
	if (f.size == 0) {
		/* an empty file: LMDB would make it a new environment */
		rc = create ? 0 : RW_ECORRUPT;
		if (rc)
			store_note("store %s: truncated to 0 bytes", f.name);
		guard_file_close(&f);
		return rc;
	}
	rc = guard_meta_read(&f, false, why, sizeof(why));
	if (rc) {
		store_note("%s", why);
		guard_file_close(&f);
		return rc;
	}
	g = calloc(1, sizeof(*g));
	if (!g) {
		guard_file_close(&f);
		return -ENOMEM;
	}
	g->fd = f.fd;
	g->name = f.name;
	g->psize = f.psize;
	*out = g;
	return 0;
}

int guard_check_env(struct store_guard *g, MDB_env *env)
{
	char why[GUARD_WHY_MAX];
	int rc = 0;

	for (int tries = 0; tries < 8; tries++) {
		struct guard_file f = { .fd = g->fd, .name = g->name };
		struct stat st;
		MDB_txn *txn, *txn2;
		uint64_t id;

		rc = store_mdb_err(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn));
		if (rc)
			return rc;
		id = mdb_txn_id(txn);
		rc = fstat(g->fd, &st) ? -errno : 0;
		f.size = (uint64_t)st.st_size;
		if (!rc)
			rc = guard_meta_read(&f, false, why, sizeof(why));
		if (!rc && f.meta[f.pick].txnid != id) {
			/* the other meta, if a writer committed since the
			 * transaction began; its pages stay while it is open */
			if (f.meta[!f.pick].txnid == id) {
				f.pick = !f.pick;
			} else {
				mdb_txn_abort(txn);
				continue;
			}
		}
		if (!rc)
			rc = guard_walk(&f, NULL, why, sizeof(why));
		mdb_txn_abort(txn);
		if (rc != RW_ECORRUPT)
			return rc;
		/* a writer that committed meanwhile may have torn a meta read:
		 * look again if the snapshot moved */
		if (mdb_txn_begin(env, NULL, MDB_RDONLY, &txn2))
			break;
		uint64_t id2 = mdb_txn_id(txn2);
		mdb_txn_abort(txn2);
		if (id2 == id)
			break;
	}
	if (rc == RW_ECORRUPT)
		store_note("%s", why);
	return rc ? rc : RW_EBUSY;
}

void guard_free(struct store_guard *g)
{
	if (!g)
		return;
	if (g->fd >= 0)
		close(g->fd);
	free(g->name);
	free(g);
}

/* Where LMDB maps the data file now, from its own account of the map. */
static bool map_find(struct store *s, struct store_guard *g)
{
	MDB_envinfo info;

	if (mdb_env_info(s->env, &info) || !info.me_mapaddr)
		return false;
	g->map_base = (uintptr_t)info.me_mapaddr;
	g->map_len = info.me_mapsize;
	return true;
}

int guard_value_ok(struct store *s, const MDB_val *v)
{
	struct store_guard *g = s->guard;
	uintptr_t p = (uintptr_t)v->mv_data;
	uint8_t h[PAGEHDRSZ];
	uint64_t pgno, n;
	char why[GUARD_WHY_MAX];
	int rc;

	if (!g || !p)
		return 0;
	if (!map_find(s, g)) /* the map moves when the store grows it: ask each time */
		return 0;
	if (p < g->map_base || p - g->map_base >= g->map_len)
		return 0;   /* not in the map: a page this transaction wrote */
	if ((p - g->map_base) % g->psize != PAGEHDRSZ)
		return 0;   /* inside a leaf page */
	pgno = (p - g->map_base) / g->psize;
	n = ((uint64_t)PAGEHDRSZ - 1 + v->mv_size) / g->psize + 1;
	rc = pread_all(g->fd, h, sizeof(h), pgno * g->psize);
	if (!rc && rd64(h) == pgno && rd16(h + 10) == P_OVERFLOW && rd32(h + 12) == n)
		return 0;
	if (rc)
		snprintf(why, sizeof(why), "store %s: page %llu unreadable: %s", g->name,
			 (unsigned long long)pgno, strerror(-rc));
	else
		snprintf(why, sizeof(why), "store %s: page %llu damaged: bad overflow page "
			 "header (page %llu, flags 0x%x, %u pages; the value needs %llu)",
			 g->name, (unsigned long long)pgno, (unsigned long long)rd64(h),
			 rd16(h + 10), rd32(h + 12), (unsigned long long)n);
	store_mark_damaged(s, why);
	return RW_ECORRUPT;
}

int guard_del(struct store *s, MDB_txn *txn, MDB_dbi dbi, MDB_val *key)
{
	MDB_val v;
	int rc = store_mdb_err(mdb_get(txn, dbi, key, &v));

	if (!rc)
		rc = guard_value_ok(s, &v);
	if (!rc)
		rc = store_mdb_err(mdb_del(txn, dbi, key, NULL));
	return rc;
}

void store_mark_damaged(struct store *s, const char *why)
{
	if (s->guard) {
		s->guard->damaged = true;
		snprintf(s->guard->why, sizeof(s->guard->why), "%s", why);
	}
	store_note("%s", why);
}

int guard_write_ok(struct store *s)
{
	if (!s->guard || !s->guard->damaged)
		return 0;
	store_note("%s (the store is not written to)", s->guard->why);
	return RW_ECORRUPT;
}
