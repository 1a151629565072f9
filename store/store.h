/*
 * store.h - rewind's content-addressed checkpoint store.
 *
 * A store is a directory holding one LMDB environment. It keeps every
 * checkpoint rewind takes:
 *
 *   chunk       content-addressed bytes: key = XXH3-128 of the content (seeded
 *               by the chunk kind, so a page can never be mistaken for a tree
 *               node), with an exact reference count. A chunk is freed in the
 *               same transaction that drops its last reference. On a hash hit
 *               the bytes are compared before the chunk is shared; different
 *               bytes under one key fail with RW_ECOLLISION and never replace
 *               or share the stored chunk. Pages of all zeros are never stored
 *               (they are holes).
 *   map         a page map (guest memory, or one disk's 4 KiB blocks) as a
 *               tree of chunks: a leaf lists the keys of STORE_FANOUT pages,
 *               an inner node the keys of STORE_FANOUT children. Nodes are
 *               chunks too, so checkpoints share every unchanged subtree: an
 *               incremental checkpoint writes its new pages plus one path of
 *               nodes per changed leaf.
 *   checkpoint  id (monotonic, never reused), parent id (0 = none; history is
 *               a tree), wall time, label, an opaque VM configuration blob,
 *               the memory map, any number of named disk maps, and any
 *               number of named records ("vcpu/0", "dev/virtio-blk/data"),
 *               each carrying a format version and a checksum checked on
 *               every read.
 *
 * Layout of the LMDB databases (all integers little-endian, written field by
 * field):
 *
 *   meta     "magic" -> "rewind-store"; "format" -> u32; "fanout" -> u32;
 *            "next-id" -> u64
 *   head     key[16] -> u8 format | u8 kind | u8 codec | u8 0 | u32 length |
 *                       u64 refcount | first 16 bytes of the content
 *   body     key[16] | first 16 bytes of the content -> content bytes
 *                       16..length (absent when length <= 16)
 *   ckpt     u64 id (big-endian, so ids sort) -> checkpoint record
 *   record   u64 id (big-endian) | name -> u32 version | u32 0 |
 *                       u64 XXH3-64 of the data | data
 *
 * The content is split between head and body so that a 4 KiB page fills
 * exactly one LMDB overflow page (a 4096-byte value would take two), and so
 * that reference counts are updated in small values. The body's key repeats
 * the first 16 bytes, so that reading a chunk's content is one lookup (by
 * key prefix) in the body database alone.
 *
 * Errors: every function returns 0 or a negative code: a negative errno or a
 * project code from err.h (decode with rw_strerror()). No LMDB code leaves
 * this module. The codes each function can return are listed with it;
 * -ENOMEM and -EIO are possible almost everywhere and are not repeated.
 *
 * Caveats
 * =======
 * - One writer at a time: commits, deletes, gc and imports of all processes
 *   on a store are serialised by LMDB's writer lock. Any number of processes
 *   may read meanwhile; readers never block the writer.
 * - Never use a store handle across fork(): open the store again in the
 *   child (LMDB's rule). Criterion tests therefore open stores inside tests.
 * - A struct store may be shared by threads. A struct store_ckpt and a
 *   struct store_snap may be used by one thread at a time (any thread).
 * - A page read of 1024 pages or more (store_snap_read, _read_pages,
 *   _foreach_run) runs part of its work on one helper thread, started with
 *   every signal blocked and joined before the call returns, and holds a
 *   second LMDB reader slot meanwhile.
 * - Keep readers short. A read call holds an LMDB read transaction only for
 *   its own duration, but a long read (a whole-checkpoint run walk, verify,
 *   export) keeps the pages it sees from being reused, so the file grows
 *   while it runs.
 * - The map grows by itself. Growing needs every read call of this process
 *   to finish first; commit waits for them. Do not call a store function
 *   from inside a callback of another store function.
 * - Durability: by default a commit returns after the data and the meta page
 *   are on disk (fdatasync). STORE_OPEN_NOMETASYNC skips one sync per
 *   commit: an operating-system crash or power loss may undo the last
 *   commits, never corrupt the store. STORE_OPEN_NOSYNC skips all syncs:
 *   an operating-system crash or power loss may lose recent checkpoints or
 *   corrupt the store. A crash or kill -9 of the process alone loses nothing
 *   that was committed, in every mode.
 * - A checkpoint being built keeps a private copy of each distinct page
 *   added to it until commit or abort, so memory use follows the dirty set.
 * - A full disk fails the commit with RW_ESTORE_FULL and leaves every
 *   committed checkpoint intact.
 */
#ifndef RW_STORE_STORE_H
#define RW_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Bytes in a page (memory) and in a block (disk). */
#define STORE_PAGE_SIZE 4096u
/* Entries in a tree node (leaf or inner). Recorded in the store's meta. */
#define STORE_FANOUT 64u
/* Store format written and read by this code (the only one it reads;
 * format 1 had 16-byte body keys). */
#define STORE_FORMAT_VERSION 2u

/* Limits; exceeding one gives RW_ELIMIT. */
#define STORE_NAME_MAX 255u                  /* record and disk names */
#define STORE_LABEL_MAX 1024u                /* checkpoint labels */
#define STORE_BLOB_MAX (64u << 20)           /* config blob, one record */
#define STORE_MAP_PAGES_MAX (1ull << 40)     /* pages in one map (4 PiB) */
#define STORE_MAPS_MAX 256u                  /* disks in one checkpoint + 1 */

struct store;       /* an open store */
struct store_ckpt;  /* a checkpoint being built */
struct store_snap;  /* a committed checkpoint opened for reading */

/* A chunk key: XXH3-128 in canonical (big-endian) byte order. */
struct store_hash {
	uint8_t b[16];
};

/*
 * One line saying what was wrong when this thread's last store call failed
 * on damage, naming the file and the place: "store DIR/data.mdb: truncated
 * to 8192 of 65536 bytes", "store DIR/data.mdb: page 812 damaged: ...",
 * "chunk 3f2a... of checkpoint 7 (memory page 513) does not match its
 * hash". NULL when there is nothing to add to rw_strerror() of the code.
 * Valid until the thread's next store call.
 */
const char *store_error_detail(void);

/* Lower-case hex of a key into buf (33 bytes). Returns buf. */
char *store_hash_hex(const struct store_hash *h, char buf[33]);
/* True if h is all zeros, the key of a hole (never stored). */
bool store_hash_is_zero(const struct store_hash *h);

/* ------------------------------------------------------------------------
 * Opening and closing
 * ------------------------------------------------------------------------ */

enum store_open_flags {
	STORE_OPEN_CREATE = 1u << 0,      /* create the directory and store if absent */
	STORE_OPEN_NOMETASYNC = 1u << 1,  /* relaxed: see Caveats */
	STORE_OPEN_NOSYNC = 1u << 2,      /* more relaxed: see Caveats */
	STORE_OPEN_NO_READ_VERIFY = 1u << 3, /* reads skip re-hashing chunks */
};

struct store_open_opts {
	unsigned flags;             /* enum store_open_flags */
	uint64_t initial_map_size;  /* bytes; 0 = default (1 GiB or 2x the file) */
	uint64_t stage_cache_bytes; /* page staging memory kept between checkpoints;
				       0 = default (64 MiB) */
	uint32_t found_format;      /* out: on RW_EVERSION, the store's version */
};

/*
 * Open the store in directory path.
 *
 * With STORE_OPEN_CREATE a missing directory is created (mode 0700) and an
 * empty directory becomes a new store; the store's files are created mode
 * 0600. Without it, the directory must already hold a store.
 *
 * @param path   directory of the store
 * @param opts   options, or NULL for defaults; found_format is written back
 * @param out    receives the handle; free it with store_close()
 * @return 0, or
 *   RW_ENOTSTORE  path is missing, not a directory, or holds no rewind store
 *   RW_EVERSION   the store's format is not STORE_FORMAT_VERSION (or its
 *                 fanout differs); opts->found_format says which
 *   RW_ECORRUPT   the data file is damaged or truncated (checked with pread
 *                 before LMDB maps it: meta pages, length, every branch
 *                 and leaf page; see README "A damaged store"), or the
 *                 store's meta data is; store_error_detail() says where
 *   -EACCES, -EROFS, -EINVAL, -EMFILE and other errnos from the file system
 *   RW_ESTORE_FULL no space to create the store
 */
int store_open(const char *path, struct store_open_opts *opts,
	       struct store **out) RW_MUST_CHECK;

/* Close a store. Every ckpt and snap of it must be closed first. NULL is ok. */
void store_close(struct store *s);

/*
 * The checkpoints labelled label: up to max ids into ids (ascending), their
 * total count into *n (which may exceed max). 0 or a store error.
 */
int store_find_label(struct store *s, const char *label, uint64_t *ids, size_t max,
		     size_t *n) RW_MUST_CHECK;

/*
 * Remove the store at path that a command created and could not use: its
 * files and the directory. Only a store without a checkpoint is removed
 * (anything else in the directory is left alone). 0 or -errno.
 */
int store_remove_new(const char *path);

/* The directory the store was opened from; valid until store_close(). */
const char *store_path(const struct store *s);

/* ------------------------------------------------------------------------
 * Building a checkpoint
 * ------------------------------------------------------------------------ */

/* Counts of one commit, also kept in the checkpoint record. */
struct store_commit_stats {
	uint64_t pages;        /* pages and blocks added (after last-wins) */
	uint64_t zero_pages;   /* of which all-zero (holes, not stored) */
	uint64_t new_chunks;   /* chunks created: pages and tree nodes */
	uint64_t new_bytes;    /* content bytes of the chunks created */
	uint64_t dedup_hits;   /* pages that matched a chunk already stored */
	uint64_t new_nodes;    /* tree nodes created (included in new_chunks) */
	uint64_t commit_ns;    /* time spent in store_ckpt_commit() */
};

/*
 * Begin a checkpoint.
 *
 * With parent == 0 the checkpoint starts empty: no memory, no disks. With a
 * parent it starts as a copy of the parent's memory map and disk maps (not
 * its records, label or config): only pages added afterwards are written.
 * Nothing is locked or written until store_ckpt_commit().
 *
 * @param s       the store
 * @param parent  id of the parent checkpoint, or 0
 * @param out     receives the builder; it ends with commit or abort
 * @return 0, or
 *   RW_ENOTFOUND  no checkpoint parent
 *   RW_ECORRUPT, RW_ECHECKSUM  the parent's record is damaged
 */
int store_ckpt_begin(struct store *s, uint64_t parent,
		     struct store_ckpt **out) RW_MUST_CHECK;

/*
 * Set the label (a short human string, copied) and the VM configuration
 * (an opaque blob the VMM defines, copied). Calling again replaces.
 * @return 0, RW_ELIMIT (too long), RW_EPOISONED (an earlier step failed)
 */
int store_ckpt_set_label(struct store_ckpt *c, const char *label) RW_MUST_CHECK;
int store_ckpt_set_config(struct store_ckpt *c, const void *data,
			  size_t len) RW_MUST_CHECK;

/*
 * Set the size in pages of guest memory (disk == NULL) or of a disk in
 * 4 KiB blocks (disk = its name). A disk not inherited from the parent is
 * created by this call. Shrinking drops the pages past the new end.
 * @return 0, RW_ELIMIT (npages > STORE_MAP_PAGES_MAX, name too long, too
 *   many disks), -EINVAL (empty name), RW_EPOISONED
 */
int store_ckpt_set_size(struct store_ckpt *c, const char *disk,
			uint64_t npages) RW_MUST_CHECK;

/*
 * Remove a disk inherited from the parent from this checkpoint.
 * @return 0, RW_ENOTFOUND (no such disk), RW_EPOISONED
 */
int store_ckpt_drop_disk(struct store_ckpt *c, const char *disk) RW_MUST_CHECK;

/*
 * Add n pages: page idx[i] gets the 4096 bytes at data + i * 4096.
 *
 * disk == NULL adds guest memory pages, otherwise blocks of that disk.
 * The bytes are hashed and copied now (the caller may reuse the buffer on
 * return); a page of all zeros becomes a hole. Adding a page twice keeps
 * the last. Indices need not be sorted, but ascending order is cheapest.
 * Any failure poisons the checkpoint: later calls return RW_EPOISONED and
 * only abort (or a failing commit) remains.
 *
 * @return 0, or
 *   -ERANGE       an index is at or past the map's size
 *   RW_ENOTFOUND  no such disk
 *   RW_ECOLLISION a page hashes to the all-zero key without being zero
 *   RW_EPOISONED  an earlier step failed
 */
int store_ckpt_add_pages(struct store_ckpt *c, const char *disk,
			 const uint64_t *idx, const void *data,
			 size_t n) RW_MUST_CHECK;

/* As store_ckpt_add_pages() for the n consecutive pages from first. */
int store_ckpt_add_range(struct store_ckpt *c, const char *disk,
			 uint64_t first, const void *data,
			 size_t n) RW_MUST_CHECK;

/*
 * Add a named record: data (copied) saved under name with a format version
 * the caller defines. Names are non-empty, at most STORE_NAME_MAX bytes,
 * and unique within a checkpoint. Records are not inherited from a parent.
 * @return 0, -EEXIST (name already added), -EINVAL (empty name),
 *   RW_ELIMIT (name or data too long), RW_EPOISONED
 */
int store_ckpt_put_record(struct store_ckpt *c, const char *name,
			  uint32_t version, const void *data,
			  size_t len) RW_MUST_CHECK;

/*
 * Commit the checkpoint in one LMDB write transaction and free c, whether
 * the commit succeeds or not.
 *
 * Waits for the writer lock. Stores the new pages and tree nodes, takes the
 * references, writes the records and the checkpoint record, then syncs as
 * the open flags say. The map grows as needed. On failure nothing is
 * written.
 *
 * @param c      the checkpoint; freed
 * @param id     out: the new checkpoint's id (may be NULL)
 * @param stats  out: counts (may be NULL)
 * @return 0, or
 *   RW_EPOISONED  an earlier step failed
 *   RW_ENOTFOUND  the parent was deleted since store_ckpt_begin()
 *   RW_ECOLLISION a page or node has the key of a different stored chunk
 *   RW_ECORRUPT, RW_ECHECKSUM  a stored chunk the commit reads is damaged
 *   RW_ESTORE_FULL the disk is full (or the file size limit was reached)
 *   RW_EBUSY      too many LMDB readers
 */
int store_ckpt_commit(struct store_ckpt *c, uint64_t *id,
		      struct store_commit_stats *stats) RW_MUST_CHECK;

/* Drop a checkpoint being built and free c. NULL is ok. */
void store_ckpt_abort(struct store_ckpt *c);

/* ------------------------------------------------------------------------
 * Reading checkpoints
 * ------------------------------------------------------------------------ */

/* One map of a checkpoint. */
struct store_map_info {
	const char *name;        /* NULL for guest memory, else the disk name */
	uint64_t npages;         /* size in pages (blocks) */
	uint64_t present;        /* pages that are not holes */
	unsigned height;         /* node levels of the tree (>= 1) */
	struct store_hash root;  /* zero if every page is a hole */
};

/*
 * A checkpoint record. Pointers are owned by the snap or by the caller of the
 * callback that received it, and are valid only as long as that lasts.
 */
struct store_ckpt_info {
	uint64_t id;
	uint64_t parent;           /* 0 = none; may name a deleted checkpoint */
	uint64_t time_ns;          /* wall time (CLOCK_REALTIME) at commit */
	const char *label;         /* "" if none */
	const void *config;        /* VM configuration blob (NULL if empty) */
	size_t config_len;
	struct store_map_info mem; /* guest memory (name NULL) */
	size_t ndisks;
	const struct store_map_info *disks;
	size_t nrecords;           /* named records */
	uint64_t record_bytes;     /* their total data size */
	struct store_commit_stats stats; /* counts of the commit */
};

/*
 * Open a committed checkpoint for reading.
 * @return 0, RW_ENOTFOUND, RW_ECORRUPT / RW_ECHECKSUM (record damaged),
 *   RW_EBUSY (too many LMDB readers)
 */
int store_snap_open(struct store *s, uint64_t id,
		    struct store_snap **out) RW_MUST_CHECK;
void store_snap_close(struct store_snap *sn);

/* The checkpoint's record; valid until store_snap_close(). */
const struct store_ckpt_info *store_snap_info(const struct store_snap *sn);

/* The map of guest memory (disk NULL) or of a disk; NULL if no such disk. */
const struct store_map_info *store_snap_map(const struct store_snap *sn,
					    const char *disk);

/*
 * Read n pages from first into buf (n * 4096 bytes); holes read as zeros.
 * Each chunk is re-hashed unless the store was opened with
 * STORE_OPEN_NO_READ_VERIFY.
 *
 * This is the fastest way to restore many pages: one call for a whole
 * range (or map) looks its chunks up in key order, then copies each page
 * once, straight into buf, and re-hashes the copy. A read of 1024 pages or
 * more uses one helper thread (on a machine with more than one CPU) and a
 * second LMDB reader slot for its duration. The snap keeps the lookup
 * scratch of its largest read (56 bytes a page, for at most 64 Ki pages at
 * a time) until it is closed.
 * @return 0, or
 *   -ERANGE       the range goes past the map's end
 *   RW_ENOTFOUND  no such disk, or the checkpoint was deleted meanwhile
 *   RW_ECHECKSUM  a chunk does not match its key (the damage is not copied
 *                 out as good data; buf contents are then unspecified)
 *   RW_ECORRUPT   a tree node or chunk header is damaged
 */
int store_snap_read(struct store_snap *sn, const char *disk, uint64_t first,
		    uint64_t n, void *buf) RW_MUST_CHECK;

/*
 * Read the listed pages of a map into an image of the whole map: page
 * idx[i] is written to image + idx[i] * 4096 (a hole as zeros); pages not
 * listed are left alone. One call for a scattered set (the pages a rollback
 * rewrites) costs what store_snap_read() costs for as many pages, not a
 * walk per piece.
 * @param idx  ascending page indices, no repeats
 * @return 0, -EINVAL (idx not strictly ascending), -ERANGE (an index at or
 *   past the map's end), or the other errors of store_snap_read()
 */
int store_snap_read_pages(struct store_snap *sn, const char *disk,
			  const uint64_t *idx, size_t n, void *image) RW_MUST_CHECK;

/*
 * Called for a run of npages consecutive non-hole pages starting at first;
 * data (npages * 4096 bytes, checked against the chunk keys) is valid only
 * during the call: it is a buffer of the snap, not the store's map (the map
 * holds a page in two pieces, the body's key and its value, so there is no
 * whole page there to point at). The callback runs on the caller's thread. Return 0 to go on;
 * any other value stops the walk and is returned by the walker.
 */
typedef int (*store_run_fn)(void *arg, uint64_t first, uint64_t npages,
			    const void *data);

/*
 * Stream the non-hole pages of [first, first + n) as runs, in ascending
 * order: holes are skipped without reading anything. Runs are maximal but
 * at most STORE_RUN_MAX pages long (a longer run comes in pieces). Lookups
 * are batched as in store_snap_read(); for a walk of 1024 pages or more a
 * helper thread copies and checks the next run while the callback handles
 * the current one. A damaged chunk stops the walk before the run holding
 * it: every run before it has been passed to fn. To restore into memory
 * that is already zero, this copies once more than store_snap_read() (into
 * the run buffer, then wherever fn puts it) but writes no holes.
 * @return 0, the callback's non-zero value, or the errors of
 *   store_snap_read()
 */
#define STORE_RUN_MAX 256u
int store_snap_foreach_run(struct store_snap *sn, const char *disk,
			   uint64_t first, uint64_t n, store_run_fn fn,
			   void *arg) RW_MUST_CHECK;

/* A named record of a checkpoint, as listed. */
struct store_record_info {
	const char *name;
	uint32_t version;
	uint64_t len;
	uint64_t checksum;   /* XXH3-64 of the data */
};

/*
 * Read one record into a malloc'd buffer the caller frees. The checksum is
 * verified first.
 * @return 0, or
 *   RW_ENOTFOUND  no record of that name (or the checkpoint was deleted)
 *   RW_ECHECKSUM  the data does not match its checksum
 *   RW_ECORRUPT   the record's header is damaged
 */
int store_snap_record(struct store_snap *sn, const char *name, void **data,
		      size_t *len, uint32_t *version) RW_MUST_CHECK;

/*
 * List the records in name order (checksums are not checked here).
 * fn returns 0 to go on, anything else stops the walk and is returned.
 * @return 0, the callback's value, RW_ECORRUPT
 */
int store_snap_foreach_record(struct store_snap *sn,
			      int (*fn)(void *arg,
					const struct store_record_info *ri),
			      void *arg) RW_MUST_CHECK;

/*
 * Call fn for every checkpoint in id order; info is valid during the call.
 * fn returns 0 to go on, anything else stops and is returned.
 * @return 0, the callback's value, RW_ECORRUPT / RW_ECHECKSUM (a damaged
 *   checkpoint record: the walk stops there)
 */
int store_list(struct store *s,
	       int (*fn)(void *arg, const struct store_ckpt_info *info),
	       void *arg) RW_MUST_CHECK;

/* ------------------------------------------------------------------------
 * Comparing, deleting, accounting
 * ------------------------------------------------------------------------ */

/* Work done by a diff (to show that only differing subtrees are walked). */
struct store_diff_stats {
	uint64_t nodes_read;   /* tree nodes loaded */
	uint64_t changed;      /* pages reported */
};

/* A range of changed pages [first, first + n). Same return rule as above. */
typedef int (*store_range_fn)(void *arg, uint64_t first, uint64_t n);

/*
 * Report the pages of map disk (NULL = memory) that differ between
 * checkpoints a and b, as ascending maximal ranges. Only subtrees whose keys
 * differ are read. A map missing from one side, or the part past the end
 * of the shorter map, compares as holes.
 * @return 0, the callback's value, RW_ENOTFOUND (no such checkpoint),
 *   RW_ECORRUPT
 */
int store_diff(struct store *s, uint64_t a, uint64_t b, const char *disk,
	       store_range_fn fn, void *arg,
	       struct store_diff_stats *stats) RW_MUST_CHECK;

/*
 * Delete checkpoint id: its record, its named records, and every chunk whose
 * last reference it held, in one transaction.
 * @param freed_bytes  out: content bytes freed (may be NULL)
 * @return 0, RW_ENOTFOUND, RW_ECORRUPT (a reference to drop is missing or
 *   a node is damaged: nothing is deleted), RW_ESTORE_FULL
 */
int store_delete(struct store *s, uint64_t id,
		 uint64_t *freed_bytes) RW_MUST_CHECK;

struct store_stats {
	uint64_t checkpoints;
	uint64_t chunks;          /* all chunks */
	uint64_t page_chunks;     /* of which pages and blocks */
	uint64_t node_chunks;     /* of which tree nodes */
	uint64_t page_bytes;      /* content bytes of page chunks */
	uint64_t node_bytes;      /* content bytes of node chunks */
	uint64_t logical_bytes;   /* sum over checkpoints of non-hole pages * 4096 */
	double dedup_ratio;       /* logical_bytes / page_bytes (0 if empty) */
	uint64_t records;
	uint64_t record_bytes;
	uint64_t file_bytes;      /* size of the LMDB data file */
	uint64_t map_bytes;       /* current LMDB map size */
};

/* Whole-store counts. @return 0, RW_ECORRUPT */
int store_stats(struct store *s, struct store_stats *out) RW_MUST_CHECK;

/*
 * Content bytes and chunks only checkpoint id references: what deleting it
 * would free (record bytes not included).
 * @return 0, RW_ENOTFOUND, RW_ECORRUPT
 */
int store_exclusive(struct store *s, uint64_t id, uint64_t *bytes,
		    uint64_t *chunks) RW_MUST_CHECK;

/* ------------------------------------------------------------------------
 * Checking and repairing
 * ------------------------------------------------------------------------ */

enum store_problem_kind {
	STORE_PROB_CHUNK_HASH = 1,  /* content does not match its key */
	STORE_PROB_CHUNK_FORMAT,    /* bad header, length, or missing body */
	STORE_PROB_NODE,            /* tree node malformed or wrong level/kind */
	STORE_PROB_MISSING,         /* a referenced chunk is absent */
	STORE_PROB_REFCOUNT,        /* stored count differs from references */
	STORE_PROB_UNREFERENCED,    /* a chunk nothing references (a leak) */
	STORE_PROB_ORPHAN_BODY,     /* body without a head */
	STORE_PROB_CKPT,            /* checkpoint record damaged */
	STORE_PROB_RECORD,          /* named record fails its checksum/header */
	STORE_PROB_ORPHAN_RECORD,   /* named record of no checkpoint */
	STORE_PROB_META,            /* meta data wrong (next id too low, ...) */
};

/* Stable short name of a problem kind ("chunk-hash"). Never NULL. */
const char *store_problem_name(enum store_problem_kind kind);

/* One problem found by store_verify(); valid during the callback only. */
struct store_problem {
	enum store_problem_kind kind;
	int code;                  /* RW_ECHECKSUM, RW_ECORRUPT, RW_ENOTFOUND */
	bool has_chunk;
	struct store_hash chunk;   /* the chunk concerned, if has_chunk */
	uint64_t ckpt;             /* checkpoint the record belongs to, or 0 */
	const char *record;        /* record name, or NULL */
	const char *detail;        /* one line of explanation */
	size_t naffected;          /* checkpoints whose data this damages */
	const uint64_t *affected;
};

struct store_verify_stats {
	uint64_t chunks;           /* chunks re-hashed */
	uint64_t bytes;            /* content bytes re-hashed */
	uint64_t checkpoints;
	uint64_t records;
	uint64_t problems;
};

/*
 * Check the whole store: re-hash every chunk, check every node and every
 * reference (from nodes and from checkpoints), compare every reference count
 * with the references that exist, check every checkpoint record and named
 * record. Each problem is passed to fn (may be NULL) with the checkpoints it
 * affects; fn returns 0 to go on, anything else stops and is returned.
 * Runs in one read transaction; writers are not blocked.
 * @return 0 when the walk finished (problems are counted in stats), the
 *   callback's value, or RW_EBUSY
 */
int store_verify(struct store *s,
		 int (*fn)(void *arg, const struct store_problem *p),
		 void *arg, struct store_verify_stats *stats) RW_MUST_CHECK;

struct store_gc_stats {
	uint64_t chunks_freed;     /* chunks no checkpoint reaches */
	uint64_t bytes_freed;      /* their content bytes */
	uint64_t refs_fixed;       /* live chunks whose count was wrong */
	uint64_t bodies_freed;     /* bodies without a head */
	uint64_t records_freed;    /* named records of no checkpoint */
	uint64_t missing;          /* referenced chunks absent (not repairable) */
};

/*
 * Collect leftovers: chunks no checkpoint reaches, bodies without heads,
 * records of deleted checkpoints, and reference counts that differ from the
 * live references (set to the exact count). Finds nothing in a store that
 * only saw clean commits and deletes. dry_run only counts. One write
 * transaction.
 * @return 0, RW_ECORRUPT (a live chunk is damaged or missing: nothing is
 *   changed, run verify), RW_ESTORE_FULL
 */
int store_gc(struct store *s, bool dry_run,
	     struct store_gc_stats *stats) RW_MUST_CHECK;

/* ------------------------------------------------------------------------
 * Export and import
 * ------------------------------------------------------------------------ */

/* Progress: done out of total units (chunks for export, bytes for import). */
typedef void (*store_progress_fn)(void *arg, uint64_t done, uint64_t total);

/* Where an import failed: filled when import returns an error. */
struct store_xfer_error {
	uint64_t offset;       /* byte offset in the file of the failing item */
	char section[24];      /* "header", "checkpoint", "record", "chunk", "end" */
	char detail[160];      /* one line: what was wrong */
};

struct store_xfer_stats {
	uint64_t chunks;       /* chunk frames written / read */
	uint64_t new_chunks;   /* import: chunks the store did not have */
	uint64_t records;
	uint64_t bytes;        /* file size */
	uint64_t original_id;  /* import: the checkpoint's id where it was exported */
};

/*
 * Export checkpoint id to one self-contained file: a header, the checkpoint
 * record, its named records, every chunk its maps reference (children
 * before parents), and an end frame; each frame carries an XXH3-64
 * checksum. The file (mode 0600) is written with io_uring under a temporary
 * name, synced, and renamed into place, so a failed export leaves no file.
 * An existing file of that name is replaced only once the new one is
 * complete.
 * @return 0, RW_ENOTFOUND, RW_ECORRUPT / RW_ECHECKSUM (the checkpoint is
 *   damaged), errnos of the file system and io_uring (-ENOSPC, -EACCES, ...)
 */
int store_export(struct store *s, uint64_t id, const char *file,
		 store_progress_fn progress, void *arg,
		 struct store_xfer_stats *stats) RW_MUST_CHECK;

/*
 * Import a file written by store_export() as a new checkpoint (no parent),
 * sharing the chunks the store already has. It keeps the id it had where it
 * was exported (stats->original_id) when this store has no checkpoint by
 * that id; otherwise it gets the store's next id. Its label is kept. Every frame is checked
 * (checksum, chunk keys, node structure, references) and everything happens
 * in one write transaction: on any failure the store is left as it was and
 * err (may be NULL) says where.
 * @return 0, or
 *   RW_ECORRUPT   truncated or malformed file
 *   RW_ECHECKSUM  a frame or chunk fails its checksum
 *   RW_EVERSION   the file's format is newer than this code
 *   RW_ECOLLISION a chunk has the key of different stored content
 *   RW_ESTORE_FULL, errnos of the file system
 */
int store_import(struct store *s, const char *file, store_progress_fn progress,
		 void *arg, uint64_t *id, struct store_xfer_stats *stats,
		 struct store_xfer_error *err) RW_MUST_CHECK;

/* ------------------------------------------------------------------------
 * Salvage
 * ------------------------------------------------------------------------ */

enum store_salvage_kind {
	STORE_SALVAGE_SAVED = 1,  /* checkpoint id was copied whole */
	STORE_SALVAGE_LOST,       /* checkpoint id was not copied: why */
	STORE_SALVAGE_DAMAGE,     /* a damaged part of the file, skipped: why */
};

/* One line of a salvage's report; valid during the callback only. */
struct store_salvage_item {
	enum store_salvage_kind kind;
	uint64_t id;              /* the checkpoint (0 for DAMAGE) */
	const char *label;        /* its label; NULL if its record is lost */
	const char *why;          /* LOST, DAMAGE: one line; NULL for SAVED */
};

struct store_salvage_stats {
	uint64_t saved;           /* checkpoints copied */
	uint64_t lost;            /* checkpoints found but not copied */
	uint64_t damaged;         /* damaged pages (meta pages included) */
	uint64_t chunks;          /* chunks in the new store */
	uint64_t chunks_dropped;  /* chunks copied but reached by no saved checkpoint */
};

/*
 * Copy every intact checkpoint of the store in directory from into a new
 * store in directory to (created; it must not exist or be empty). The
 * damaged store is read with pread only, never mapped or written, whatever
 * its damage: a damaged B-tree page loses the entries below it, nothing
 * else. A checkpoint is saved whole or not at all: its record, every page
 * and tree node of every map (re-hashed), every named record (checksum,
 * and for records in the base record format their own header and
 * checksum). Saved checkpoints keep their ids, parents, times and labels;
 * the new store passes store_verify(). fn (may be NULL) is told about every
 * damaged part and every checkpoint, saved or not, in id order. progress
 * (may be NULL) is called now and then with done out of total, a share of
 * the whole salvage.
 * @return 0 (whatever was lost; see stats), or
 *   RW_ENOTSTORE  no data file in from
 *   RW_ECORRUPT   both meta pages damaged (nothing to start from)
 *   RW_EVERSION   the store's format is not STORE_FORMAT_VERSION
 *   -EEXIST       to is not empty
 *   the callback's non-zero value, errnos of the file system
 */
int store_salvage(const char *from, const char *to,
		  int (*fn)(void *arg, const struct store_salvage_item *it), void *arg,
		  store_progress_fn progress, void *parg,
		  struct store_salvage_stats *stats) RW_MUST_CHECK;

#endif
