/*
 * guard.h - the structural guard of a store's data file (guard.c), shared
 * inside store/ only.
 *
 * LMDB trusts its file: it follows page numbers and node offsets from the
 * map without checking them, so one damaged page can end the process with
 * SIGBUS (a page past the end of a truncated file) or SIGSEGV (an offset
 * that leaves the page), or abort() in one of its assertions. The guard
 * reads the file with pread(), never through the map, and checks every
 * page LMDB could follow before LMDB is handed the file:
 *
 *   guard_meta_read()  both meta pages, the one LMDB picks, the page size,
 *                      the file's length against the pages the meta needs
 *                      (before mdb_env_open(), which maps the file)
 *   guard_walk()       every branch and leaf page of the free, main and
 *                      named databases reachable from that meta: page
 *                      numbers, flags, lower/upper, node offsets and sizes,
 *                      key order, child and overflow page numbers, overflow
 *                      runs inside the file, depths, counts, no page reached
 *                      twice, free-list entries (every page LMDB's writer
 *                      would reuse) distinct from the pages in use
 *   guard_value_ok()   the header of an overflow page LMDB is about to free
 *                      or overwrite (a delete reads its page count)
 *
 * Overflow pages of the named databases are checked for position and
 * length by the walk, their headers only before a write touches them: a
 * reader never looks at an overflow header, and reading every one (one per
 * stored page) would cost as much as reading the whole file.
 */
#ifndef RW_STORE_GUARD_H
#define RW_STORE_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

struct store;

#define GUARD_WHY_MAX 384
/* The named databases of a store, in the order guard_walk() reports them. */
enum guard_db_id {
	GDB_META, GDB_HEAD, GDB_BODY, GDB_CKPT, GDB_RECORD,
	GDB_NAMED,                    /* count of the above */
	GDB_MAIN = GDB_NAMED,         /* LMDB's main database (names -> roots) */
	GDB_FREE,                     /* LMDB's free-page database */
	GDB_ALL,
};
extern const char *const guard_db_names[GDB_ALL];

/* One LMDB database record (MDB_db) as stored. */
struct guard_db {
	uint32_t pad;
	uint16_t flags, depth;
	uint64_t branch, leaf, overflow, entries, root;
};

struct guard_meta {
	uint64_t pgno;
	uint16_t pflags;
	uint32_t magic, version, psize;
	uint64_t address, mapsize, last_pg, txnid;
	struct guard_db db[2];        /* [0] free, [1] main */
	bool ok;                      /* passed its own checks */
	char why[96];                 /* if not ok */
};

/* The data file of a store, opened for pread. */
struct guard_file {
	int fd;
	char *name;                   /* "DIR/data.mdb", for messages */
	uint64_t size;                /* bytes */
	uint32_t psize;               /* page size, from meta page 0 */
	struct guard_meta meta[2];
	int pick;                     /* the meta LMDB uses (larger txnid) */
};

/*
 * Open DIR/data.mdb read-only. 0, -ENOENT (no file), -EACCES, other errnos;
 * why says what in words (with the file's name).
 */
int guard_file_open(struct guard_file *f, const char *dir, char *why, size_t len);
void guard_file_close(struct guard_file *f);

/*
 * Read and check both meta pages and choose the one LMDB uses; check the
 * file holds at least both meta pages. 0, or RW_ECORRUPT with why
 * ("meta page 1 damaged (bad magic)", "truncated to N of M bytes").
 * With any_meta, one good meta is enough (salvage): f->pick is then a good
 * one, the newest.
 */
int guard_meta_read(struct guard_file *f, bool any_meta, char *why, size_t len);

/* Called for each entry of a named database, in key order (salvage). */
struct guard_visit {
	int (*entry)(void *arg, enum guard_db_id db, const void *key, size_t klen,
		     const void *val, size_t vlen);
	/*
	 * A damaged page, and the subtree below it skipped: the entries with
	 * keys in [lo, hi) may be lost (NULL: unbounded on that side).
	 */
	int (*damage)(void *arg, enum guard_db_id db, uint64_t pgno, const char *why,
		      const void *lo, size_t lol, const void *hi, size_t hil);
	void *arg;
	/* May be NULL: pages read so far of the file's total, now and then. */
	void (*progress)(void *arg, uint64_t done, uint64_t total);
};

/*
 * Walk every page reachable from meta f->pick (see above). With visit NULL
 * the first damage stops the walk: RW_ECORRUPT, why saying which page and
 * what ("page 812 damaged: node 3 runs past the end of the page (body
 * database)", or "truncated to N of M bytes"). With visit, damaged
 * subtrees are reported and skipped and the values of every entry are
 * read (overflow values too) and passed on; the walk returns 0 unless a
 * callback fails or memory runs out.
 */
int guard_walk(struct guard_file *f, const struct guard_visit *visit, char *why,
	       size_t len);

/* ---- the guard of an open store (struct store's guard) ---- */

struct store_guard {
	int fd;                       /* the data file, read-only, for pread */
	char *name;                   /* "DIR/data.mdb" */
	uint32_t psize;
	bool damaged;                 /* no write transaction may start */
	char why[GUARD_WHY_MAX];      /* what is damaged */
	/* where LMDB maps the file (guard_value_ok), from mdb_env_info() */
	uintptr_t map_base, map_len;
};

/*
 * Before mdb_env_open(): if DIR/data.mdb exists and is not empty, check its
 * meta pages and length and keep it open for pread in *out. *out is NULL
 * for a store about to be created (no file, or an empty one with create).
 * 0, or an error with store_note() set: RW_ECORRUPT (damaged or
 * truncated), RW_ENOTSTORE, -EACCES ("permission denied").
 */
int guard_precheck(const char *dir, bool create, struct store_guard **out);
/*
 * After mdb_env_open(): walk the pages of the snapshot a read transaction
 * sees (the transaction keeps a concurrent writer from reusing them).
 * 0, or RW_ECORRUPT with store_note() set.
 */
int guard_check_env(struct store_guard *g, MDB_env *env);
void guard_free(struct store_guard *g);

/*
 * Before LMDB frees or overwrites the value v (just read in txn of s): if
 * it lives on overflow pages of the map, check their header by pread (a
 * delete frees as many pages as the header says, from the page number it
 * says). 0, or RW_ECORRUPT with s marked damaged.
 */
int guard_value_ok(struct store *s, const MDB_val *v);
/*
 * Delete key from dbi after guard_value_ok() on its value. 0, RW_ENOTFOUND,
 * RW_ECORRUPT, or another store error.
 */
int guard_del(struct store *s, MDB_txn *txn, MDB_dbi dbi, MDB_val *key);
/* Refuse a write on a store marked damaged: 0 or RW_ECORRUPT (noted). */
int guard_write_ok(struct store *s);

/* ---- error detail (store_error_detail()) ---- */

/* Set this thread's detail of the last failure (printf format). */
void store_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Put a prefix before this thread's detail, if there is one. */
void store_note_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Clear it (at the start of a public call). */
void store_note_clear(void);
/*
 * Mark s damaged: no write transaction starts on it from now on; why is
 * kept for the message of each refusal. Also sets this thread's detail.
 */
void store_mark_damaged(struct store *s, const char *why);

#endif
