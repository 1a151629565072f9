/*
 * store_internal.h - shared inside store/ only. LMDB types live here and
 * never in store.h.
 */
#ifndef RW_STORE_STORE_INTERNAL_H
#define RW_STORE_STORE_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "codec.h"
#include "store.h"
#include "store_testing.h"

/* Internal only: the LMDB map is full; grow it and run the transaction again. */
#define STORE_EMAPFULL (-2000)

enum chunk_kind { CHUNK_PAGE = 1, CHUNK_NODE = 2 };

#define HEAD_FORMAT 1
#define HEAD_SIZE 32
#define HEAD_INLINE 16
#define NODE_HDR 8
#define NODE_MAX (NODE_HDR + STORE_FANOUT * 16)
#define CHUNK_MAX (NODE_MAX > STORE_PAGE_SIZE ? NODE_MAX : STORE_PAGE_SIZE)
/* Hash seeds per kind: domain separation between pages and nodes. */
#define SEED_PAGE 0ull
#define SEED_NODE 0x726577696e646e6full
/* A tree's maximum height: 64^7 pages exceeds STORE_MAP_PAGES_MAX. */
#define TREE_HEIGHT_MAX 8
/* Page staging memory comes in blocks of this size. */
#define STAGE_BLOCK_BYTES (4ull << 20)
#define STAGE_BLOCK_PAGES (STAGE_BLOCK_BYTES / STORE_PAGE_SIZE)

struct store {
	MDB_env *env;
	MDB_dbi meta, head, body, ckpt, rec;
	char *path;
	unsigned flags;
	uint64_t map_size;
	pthread_mutex_t write_lock;   /* one committer per process */
	pthread_rwlock_t map_lock;    /* read calls: shared; remap: exclusive */
	struct store_hash zero_page;  /* key a zero page would have */
	/* test hooks (store_testing.h) */
	store_hash_hook_fn hash_hook;
	void *hash_hook_arg;
	uint32_t read_window, read_par_min; /* page walks; 0 = the defaults */
	/* page staging blocks kept between checkpoints */
	pthread_mutex_t stage_lock;
	void **stage_free;
	size_t nstage_free, stage_free_max;
	struct store_guard *guard;    /* the data file's guard (guard.h) */
};

/* ---- hash table keyed by chunk key ---- */
struct hent {
	struct store_hash key;
	uint64_t val;
	bool used;
};
struct hmap {
	struct hent *e;
	size_t cap, n;
};
int hmap_init(struct hmap *m, size_t expect);
void hmap_free(struct hmap *m);
/* Find key; NULL if absent. */
struct hent *hmap_get(const struct hmap *m, const struct store_hash *k);
/* Find or insert (val 0, *created set); NULL on -ENOMEM. */
struct hent *hmap_put(struct hmap *m, const struct store_hash *k, bool *created);

/* ---- hashing ---- */
void store_hash_data(const struct store *s, int kind, const void *data,
		     size_t len, struct store_hash *out);
bool page_is_zero(const void *p);

/* ---- LMDB plumbing (store.c) ---- */
int store_mdb_err(int rc);
/* Begin a txn; handles a map grown by another process. Read calls hold
 * map_lock shared around begin..end (store_rd_begin / store_rd_end). */
int store_txn_begin(struct store *s, bool write, MDB_txn **out);
int store_rd_begin(struct store *s, MDB_txn **out);
void store_rd_end(struct store *s, MDB_txn *txn);
/* Commit; translates errors (STORE_EMAPFULL on map full). */
int store_txn_commit(MDB_txn *txn);
/* Grow the map; caller holds write_lock and no txn. */
int store_grow(struct store *s);
/*
 * Run fn(s, txn, arg) in a write transaction, growing and retrying on a full
 * map, committing on 0 and aborting otherwise. Holds write_lock.
 */
int store_write_txn(struct store *s, int (*fn)(struct store *s, MDB_txn *txn,
					       void *arg), void *arg);

/* ---- chunks (chunk.c) ---- */
struct chunk_head {
	uint8_t kind, codec;
	uint32_t len;
	uint64_t refs;
	uint8_t inline_[HEAD_INLINE];
};
int head_decode(const MDB_val *v, struct chunk_head *h);
/* Read head of key; RW_ENOTFOUND if absent. */
int chunk_head_get(struct store *s, MDB_txn *txn, const struct store_hash *k,
		   struct chunk_head *h);
/*
 * Copy a chunk's content (up to cap bytes) into buf; *len gets its length.
 * If verify, re-hash and return RW_ECHECKSUM on mismatch. If kind_want is
 * not 0 a chunk of another kind gives RW_ECORRUPT.
 */
int chunk_read(struct store *s, MDB_txn *txn, const struct store_hash *k,
	       int kind_want, void *buf, size_t cap, size_t *len, bool verify);
/*
 * Insert chunk (key k, already computed from data) with refcount refs if
 * absent (*created = true); if present compare the bytes (RW_ECOLLISION if
 * different) and leave its refcount alone.
 */
int chunk_put(struct store *s, MDB_txn *txn, const struct store_hash *k,
	      int kind, const void *data, size_t len, uint64_t refs,
	      bool *created);
/*
 * The two halves of chunk_put(): the head (created, or compared with the
 * stored chunk), then, for a created chunk, the body. Between the two the
 * chunk must not be read.
 */
int chunk_put_head(struct store *s, MDB_txn *txn, const struct store_hash *k,
		   int kind, const void *data, size_t len, uint64_t refs,
		   bool *created);
int chunk_put_body(struct store *s, MDB_txn *txn, const struct store_hash *k,
		   const void *data, size_t len);
/* Add delta to a chunk's refcount. RW_ENOTFOUND if absent. */
int chunk_ref(struct store *s, MDB_txn *txn, const struct store_hash *k,
	      int64_t delta, uint64_t *after);
/* Delete head and body of chunk k, whose head is h. */
int chunk_del(struct store *s, MDB_txn *txn, const struct store_hash *k,
	      const struct chunk_head *h);
/* Body key of chunk k: k, then the first 16 content bytes (inl). */
#define BODY_KEY_SIZE (16 + HEAD_INLINE)
void body_key(uint8_t out[BODY_KEY_SIZE], const struct store_hash *k,
	      const uint8_t inl[HEAD_INLINE]);
/* Delete every body whose key starts with k (gc of damaged chunks). */
int body_del_all(struct store *s, MDB_txn *txn, const struct store_hash *k);
/*
 * Drop one reference; when it was the last, free the chunk and (for a node)
 * drop its children's references, recursively. Adds freed content bytes
 * to *freed.
 */
int chunk_unref(struct store *s, MDB_txn *txn, const struct store_hash *k,
		uint64_t *freed);

/* ---- tree nodes ---- */
struct node {
	unsigned level;
	unsigned count;                   /* entries used (rest are zero) */
	struct store_hash e[STORE_FANOUT];
};
/* Parse node content; RW_ECORRUPT on malformed content. */
int node_decode(const void *data, size_t len, struct node *n);
/* Encode a node; returns its length. */
size_t node_encode(const struct node *n, uint8_t *out);
/* Load node k (zero key -> all-zero node of that level). */
int node_load(struct store *s, MDB_txn *txn, const struct store_hash *k,
	      unsigned level, struct node *n, bool verify);
/* Height of a tree over npages pages (at least 1). */
unsigned tree_height(uint64_t npages);
/* Pages under one node of a level: FANOUT^(level+1), saturating. */
uint64_t tree_span(unsigned level);

/* ---- checkpoint records (crec.c) ---- */
struct map_rec {
	char *name;               /* NULL = memory */
	uint64_t npages, present;
	unsigned height;
	struct store_hash root;
};
struct store_crec {
	uint64_t id, parent, time_ns;
	char *label;
	void *config;
	size_t config_len;
	size_t nmaps;             /* maps[0] is memory */
	struct map_rec *maps;
	struct store_commit_stats stats;
	/* filled by the reader from the record DB, not stored in the record */
	size_t nrecords;
	uint64_t record_bytes;
	struct store_map_info *infos;   /* view for store_ckpt_info */
	struct store_ckpt_info info;
};
int crec_encode(const struct store_crec *c, struct byte_writer *w);
/* Decode and validate (checksum, limits, heights). */
int crec_decode(const void *data, size_t len, struct store_crec *c);
void crec_free(struct store_crec *c);
/* Fill c->info from the other fields (pointers into c). */
int crec_view(struct store_crec *c);
/* Read checkpoint id; RW_ENOTFOUND if absent. */
int crec_get(struct store *s, MDB_txn *txn, uint64_t id, struct store_crec *c);

/* ---- named records: the record DB (crec.c) ---- */
/* Count records of checkpoint id (and their data bytes). */
int recdb_count(struct store *s, MDB_txn *txn, uint64_t id, size_t *n,
		uint64_t *bytes);
/* Record DB key: be64 id | name. */
size_t recdb_key(uint8_t *buf, uint64_t id, const char *name, size_t namelen);
/* Record DB value: u32 version | u32 0 | u64 XXH3-64 of the data | data. */
#define RECDB_HDR 16
#define RECDB_KEY_MAX (8 + STORE_NAME_MAX)

/* Meta values. */
int meta_get_u64(struct store *s, MDB_txn *txn, const char *key, uint64_t *v);
int meta_put_u64(struct store *s, MDB_txn *txn, const char *key, uint64_t v);

#endif
