/*
 * store.c - opening a store, LMDB plumbing (errors, transactions, map
 * growth), and the small helpers the rest of store/ shares.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "guard.h"
#include "store_internal.h"

#define STORE_MAGIC "rewind-store"
#define DEFAULT_MAP (1ull << 30)
#define DEFAULT_STAGE_CACHE (64ull << 20)

/* ===================================================================
 * The key-indexed hash table
 * =================================================================== */

static size_t hslot(const struct store_hash *k, size_t cap)
{
	return (size_t)get_le64(k->b + 8) & (cap - 1);
}

int hmap_init(struct hmap *m, size_t expect)
{
	size_t cap = 64;

	while (cap < expect * 2)
		cap *= 2;
	m->e = calloc(cap, sizeof(*m->e));
	m->cap = cap;
	m->n = 0;
	return m->e ? 0 : -ENOMEM;
}

void hmap_free(struct hmap *m)
{
	free(m->e);
	m->e = NULL;
	m->cap = m->n = 0;
}

struct hent *hmap_get(const struct hmap *m, const struct store_hash *k)
{
	if (!m->cap)
		return NULL;
	for (size_t i = hslot(k, m->cap);; i = (i + 1) & (m->cap - 1)) {
		struct hent *e = &m->e[i];
		if (!e->used)
			return NULL;
		if (!memcmp(e->key.b, k->b, 16))
			return e;
	}
}

static int hmap_grow(struct hmap *m)
{
	struct hmap n;

	if (hmap_init(&n, m->cap))
		return -ENOMEM;
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->e[i].used)
			continue;
		size_t j = hslot(&m->e[i].key, n.cap);
		while (n.e[j].used)
			j = (j + 1) & (n.cap - 1);
		n.e[j] = m->e[i];
		n.n++;
	}
	free(m->e);
	*m = n;
	return 0;
}

struct hent *hmap_put(struct hmap *m, const struct store_hash *k, bool *created)
{
	if ((m->n + 1) * 10 > m->cap * 7 && hmap_grow(m))
		return NULL;
	for (size_t i = hslot(k, m->cap);; i = (i + 1) & (m->cap - 1)) {
		struct hent *e = &m->e[i];
		if (!e->used) {
			e->used = true;
			e->key = *k;
			e->val = 0;
			m->n++;
			if (created)
				*created = true;
			return e;
		}
		if (!memcmp(e->key.b, k->b, 16)) {
			if (created)
				*created = false;
			return e;
		}
	}
}

/* ===================================================================
 * Hashing
 * =================================================================== */

#ifdef REWIND_HAVE_XXH_DISPATCH
/*
 * libxxhash's XXH3 with run-time CPU dispatch (AVX2, AVX-512); the inline
 * copy above is built for the baseline instruction set only (SSE2) and
 * takes about twice as long on a page. Both compute the same function.
 */
XXH128_hash_t XXH3_128bits_withSeed_dispatch(const void *input, size_t len,
					     XXH64_hash_t seed);
#endif

void store_hash_data(const struct store *s, int kind, const void *data,
		     size_t len, struct store_hash *out)
{
	XXH64_hash_t seed = kind == CHUNK_NODE ? SEED_NODE : SEED_PAGE;
	XXH128_hash_t h;

#ifdef REWIND_HAVE_XXH_DISPATCH
	h = XXH3_128bits_withSeed_dispatch(data, len, seed);
#else
	h = XXH3_128bits_withSeed(data, len, seed);
#endif
	XXH128_canonical_t c;

	XXH128_canonicalFromHash(&c, h);
	memcpy(out->b, c.digest, 16);
	if (s && s->hash_hook)
		s->hash_hook(s->hash_hook_arg, kind, data, len, out);
}

bool page_is_zero(const void *p)
{
	const uint64_t *q = p;
	uint64_t acc = 0;

	for (size_t i = 0; i < STORE_PAGE_SIZE / 8; i += 8)
		acc |= q[i] | q[i + 1] | q[i + 2] | q[i + 3] | q[i + 4] |
		       q[i + 5] | q[i + 6] | q[i + 7];
	return acc == 0;
}

char *store_hash_hex(const struct store_hash *h, char buf[33])
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < 16; i++) {
		buf[2 * i] = hex[h->b[i] >> 4];
		buf[2 * i + 1] = hex[h->b[i] & 15];
	}
	buf[32] = 0;
	return buf;
}

bool store_hash_is_zero(const struct store_hash *h)
{
	static const struct store_hash z;

	return !memcmp(h->b, z.b, 16);
}

/* ===================================================================
 * LMDB errors, transactions and growth
 * =================================================================== */

int store_mdb_err(int rc)
{
	switch (rc) {
	case 0:
		return 0;
	case MDB_NOTFOUND:
		return RW_ENOTFOUND;
	case MDB_KEYEXIST:
		return -EEXIST;
	case MDB_MAP_FULL:
	case MDB_MAP_RESIZED:
		return STORE_EMAPFULL;
	case MDB_TXN_FULL:
	case MDB_BAD_VALSIZE:
		return RW_ELIMIT;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INCOMPATIBLE:
	case MDB_PANIC:
	case MDB_PAGE_FULL:
	case MDB_CURSOR_FULL:
		return RW_ECORRUPT;
	case MDB_INVALID:
	case MDB_VERSION_MISMATCH:
		return RW_ENOTSTORE;
	case MDB_READERS_FULL:
	case MDB_TLS_FULL:
	case MDB_DBS_FULL:
		return RW_EBUSY;
	case MDB_BAD_TXN:
	case MDB_BAD_RSLOT:
	case MDB_BAD_DBI:
		return RW_EPOISONED;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return RW_ESTORE_FULL;
	default:
		return rc > 0 ? -rc : -EIO;
	}
}

/* Adopt a map grown by another process. */
static int store_adopt_size(struct store *s)
{
	MDB_envinfo info;
	int rc;

	pthread_rwlock_wrlock(&s->map_lock);
	rc = store_mdb_err(mdb_env_set_mapsize(s->env, 0));
	if (!rc && !mdb_env_info(s->env, &info))
		s->map_size = info.me_mapsize;
	pthread_rwlock_unlock(&s->map_lock);
	return rc;
}

int store_txn_begin(struct store *s, bool write, MDB_txn **out)
{
	int rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, out);

	if (rc == MDB_MAP_RESIZED)
		return STORE_EMAPFULL;
	return store_mdb_err(rc);
}

int store_rd_begin(struct store *s, MDB_txn **out)
{
	store_note_clear();
	for (int tries = 0;; tries++) {
		pthread_rwlock_rdlock(&s->map_lock);
		int rc = store_txn_begin(s, false, out);
		if (rc != STORE_EMAPFULL)
			return rc ? (pthread_rwlock_unlock(&s->map_lock), rc) : 0;
		pthread_rwlock_unlock(&s->map_lock);
		if (tries > 8)
			return RW_EBUSY;
		rc = store_adopt_size(s);
		if (rc)
			return rc;
	}
}

void store_rd_end(struct store *s, MDB_txn *txn)
{
	mdb_txn_abort(txn);
	pthread_rwlock_unlock(&s->map_lock);
}

int store_txn_commit(MDB_txn *txn)
{
	return store_mdb_err(mdb_txn_commit(txn));
}

int store_grow(struct store *s)
{
	MDB_envinfo info;
	uint64_t cur, next;
	int rc;

	pthread_rwlock_wrlock(&s->map_lock);
	if (mdb_env_info(s->env, &info)) {
		rc = -EIO;
		goto out;
	}
	cur = info.me_mapsize;
	next = cur < (64ull << 30) ? cur * 2 : cur + (64ull << 30);
	rc = store_mdb_err(mdb_env_set_mapsize(s->env, next));
	if (!rc)
		s->map_size = next;
out:
	pthread_rwlock_unlock(&s->map_lock);
	return rc;
}

/*
 * LMDB reports a short write as EIO ("short write, filesystem full?"): a
 * full file system or a file size limit shows up that way. Tell them apart
 * from a real I/O error by looking at the space left.
 */
static bool store_looks_full(struct store *s)
{
	struct statvfs vfs;
	struct rlimit rl;
	struct stat st;
	char *data;
	bool full = false;

	if (!statvfs(s->path, &vfs) && (uint64_t)vfs.f_bavail * vfs.f_frsize < (8ull << 20))
		return true;
	if (getrlimit(RLIMIT_FSIZE, &rl) || rl.rlim_cur == RLIM_INFINITY)
		return false;
	if (asprintf(&data, "%s/data.mdb", s->path) < 0)
		return false;
	if (!stat(data, &st) && (uint64_t)st.st_size + (8ull << 20) > rl.rlim_cur)
		full = true;
	free(data);
	return full;
}

int store_write_txn(struct store *s, int (*fn)(struct store *s, MDB_txn *txn,
					       void *arg), void *arg)
{
	MDB_txn *txn;
	int rc = -EIO;

	store_note_clear();
	pthread_mutex_lock(&s->write_lock);
	rc = guard_write_ok(s);
	if (rc) {
		pthread_mutex_unlock(&s->write_lock);
		return rc;
	}
	rc = -EIO;
	for (int tries = 0; tries < 64; tries++) {
		pthread_rwlock_rdlock(&s->map_lock);
		rc = store_txn_begin(s, true, &txn);
		if (rc == STORE_EMAPFULL) {
			pthread_rwlock_unlock(&s->map_lock);
			rc = store_adopt_size(s);
			if (rc)
				break;
			continue;
		}
		if (rc) {
			pthread_rwlock_unlock(&s->map_lock);
			break;
		}
		rc = fn(s, txn, arg);
		if (rc == 0)
			rc = store_txn_commit(txn);
		else
			mdb_txn_abort(txn);
		pthread_rwlock_unlock(&s->map_lock);
		if (rc != STORE_EMAPFULL)
			break;
		rc = store_grow(s);
		if (rc)
			break;
		rc = STORE_EMAPFULL;
	}
	if (rc == -EIO && store_looks_full(s))
		rc = RW_ESTORE_FULL;
	pthread_mutex_unlock(&s->write_lock);
	if (rc == STORE_EMAPFULL)
		rc = RW_ESTORE_FULL;
	return rc;
}

/* ===================================================================
 * Meta
 * =================================================================== */

int meta_get_u64(struct store *s, MDB_txn *txn, const char *key, uint64_t *v)
{
	MDB_val k = { strlen(key), (void *)key }, d;
	int rc = store_mdb_err(mdb_get(txn, s->meta, &k, &d));

	if (rc)
		return rc;
	if (d.mv_size == 8)
		*v = get_le64(d.mv_data);
	else if (d.mv_size == 4)
		*v = get_le32(d.mv_data);
	else
		return RW_ECORRUPT;
	return 0;
}

int meta_put_u64(struct store *s, MDB_txn *txn, const char *key, uint64_t v)
{
	uint8_t b[8];
	MDB_val k = { strlen(key), (void *)key }, d = { 8, b };

	put_le64(b, v);
	return store_mdb_err(mdb_put(txn, s->meta, &k, &d, 0));
}

static int meta_put_u32(struct store *s, MDB_txn *txn, const char *key, uint32_t v)
{
	uint8_t b[4];
	MDB_val k = { strlen(key), (void *)key }, d = { 4, b };

	put_le32(b, v);
	return store_mdb_err(mdb_put(txn, s->meta, &k, &d, 0));
}

/* Check (and with create, initialise) the meta DB. */
static int meta_check(struct store *s, MDB_txn *txn, bool create,
		      uint32_t *found)
{
	MDB_val k = { 5, "magic" }, d;
	uint64_t fmt, fanout, next;
	int rc;

	rc = mdb_get(txn, s->meta, &k, &d);
	if (rc == MDB_NOTFOUND) {
		if (!create)
			return RW_ENOTSTORE;
		d.mv_size = sizeof(STORE_MAGIC) - 1;
		d.mv_data = STORE_MAGIC;
		rc = store_mdb_err(mdb_put(txn, s->meta, &k, &d, 0));
		if (!rc)
			rc = meta_put_u32(s, txn, "format", STORE_FORMAT_VERSION);
		if (!rc)
			rc = meta_put_u32(s, txn, "fanout", STORE_FANOUT);
		if (!rc)
			rc = meta_put_u64(s, txn, "next-id", 1);
		return rc;
	}
	if (rc)
		return store_mdb_err(rc);
	if (d.mv_size != sizeof(STORE_MAGIC) - 1 ||
	    memcmp(d.mv_data, STORE_MAGIC, d.mv_size))
		return RW_ENOTSTORE;
	rc = meta_get_u64(s, txn, "format", &fmt);
	if (rc)
		return rc == RW_ENOTFOUND ? RW_ECORRUPT : rc;
	/* older formats are not converted: their layout differs */
	if (fmt != STORE_FORMAT_VERSION) {
		*found = (uint32_t)fmt;
		return RW_EVERSION;
	}
	rc = meta_get_u64(s, txn, "fanout", &fanout);
	if (rc)
		return rc == RW_ENOTFOUND ? RW_ECORRUPT : rc;
	if (fanout != STORE_FANOUT) {
		*found = (uint32_t)fmt;
		return RW_EVERSION;
	}
	rc = meta_get_u64(s, txn, "next-id", &next);
	if (rc)
		return rc == RW_ENOTFOUND ? RW_ECORRUPT : rc;
	return 0;
}

/* ===================================================================
 * Open and close
 * =================================================================== */

static int open_dbis(struct store *s, MDB_txn *txn, bool create)
{
	static const char *const names[] = { "meta", "head", "body", "ckpt", "record" };
	MDB_dbi *dbis[] = { &s->meta, &s->head, &s->body, &s->ckpt, &s->rec };
	int rc;

	for (size_t i = 0; i < 5; i++) {
		rc = mdb_dbi_open(txn, names[i], create ? MDB_CREATE : 0, dbis[i]);
		if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE)
			return RW_ENOTSTORE;
		if (rc)
			return store_mdb_err(rc);
	}
	return 0;
}

/* What store_open() set up besides the environment. */
static void store_free(struct store *s)
{
	pthread_mutex_destroy(&s->write_lock);
	pthread_mutex_destroy(&s->stage_lock);
	pthread_rwlock_destroy(&s->map_lock);
	guard_free(s->guard);
	free(s->path);
	free(s);
}

int store_open(const char *path, struct store_open_opts *opts, struct store **out)
{
	struct store_open_opts def = { 0 };
	struct store *s;
	struct stat st;
	char *data = NULL;
	bool create, exists;
	unsigned mflags;
	uint32_t found = 0;
	MDB_txn *txn;
	MDB_envinfo info;
	uint64_t map;
	struct store_guard *guard = NULL;
	int rc = -ENOMEM;

	store_note_clear();
	if (!opts)
		opts = &def;
	create = opts->flags & STORE_OPEN_CREATE;
	*out = NULL;
	if (!path || !*path)
		return -EINVAL;
	if (stat(path, &st)) {
		if (errno != ENOENT)
			return -errno;
		if (!create)
			return RW_ENOTSTORE;
		if (mkdir(path, 0700) && errno != EEXIST)
			return -errno;
		if (stat(path, &st))
			return -errno;
	}
	if (!S_ISDIR(st.st_mode))
		return RW_ENOTSTORE;
	if (asprintf(&data, "%s/data.mdb", path) < 0)
		return -ENOMEM;
	exists = stat(data, &st) == 0;
	if (!exists && !create) {
		free(data);
		return RW_ENOTSTORE;
	}
	map = opts->initial_map_size ? opts->initial_map_size : DEFAULT_MAP;
	if (exists && (uint64_t)st.st_size * 2 > map)
		map = (uint64_t)st.st_size * 2;
	map = (map + 65535) & ~65535ull;
	free(data);
	/* nothing is mapped before the meta pages and length are checked */
	if (exists) {
		rc = guard_precheck(path, create, &guard);
		if (rc)
			return rc;
	}

	s = calloc(1, sizeof(*s));
	if (!s) {
		guard_free(guard);
		return -ENOMEM;
	}
	s->guard = guard;
	pthread_mutex_init(&s->write_lock, NULL);
	pthread_mutex_init(&s->stage_lock, NULL);
	pthread_rwlock_init(&s->map_lock, NULL);
	s->flags = opts->flags;
	s->stage_free_max = (opts->stage_cache_bytes ? opts->stage_cache_bytes
			     : DEFAULT_STAGE_CACHE) / STAGE_BLOCK_BYTES;
	s->path = strdup(path);
	if (!s->path)
		goto fail_alloc;

	rc = store_mdb_err(mdb_env_create(&s->env));
	if (rc)
		goto fail_alloc;
	mdb_env_set_maxdbs(s->env, 8);
	mdb_env_set_maxreaders(s->env, 254);
	rc = store_mdb_err(mdb_env_set_mapsize(s->env, map));
	if (rc)
		goto fail_env;
	mflags = MDB_NOTLS;
	if (opts->flags & STORE_OPEN_NOSYNC)
		mflags |= MDB_NOSYNC;
	else if (opts->flags & STORE_OPEN_NOMETASYNC)
		mflags |= MDB_NOMETASYNC;
	rc = mdb_env_open(s->env, path, mflags, 0600);
	if (rc) {
		if (rc == EACCES || rc == EROFS)
			store_note("store %s: %s (a store is opened for writing)", path,
				   rc == EACCES ? "permission denied" : "read-only file system");
		rc = rc == EACCES || rc == EROFS || rc == ENOSPC ? store_mdb_err(rc)
		     : rc > 0 && rc != EINVAL ? -rc : RW_ENOTSTORE;
		goto fail_env;
	}
	if (!mdb_env_info(s->env, &info))
		s->map_size = info.me_mapsize;
	/* every page LMDB could follow, before it follows any */
	if (s->guard) {
		rc = guard_check_env(s->guard, s->env);
		if (rc)
			goto fail_env;
	}

	for (int tries = 0;; tries++) {
		rc = store_txn_begin(s, create, &txn);
		if (rc == STORE_EMAPFULL && tries < 4) {
			rc = store_adopt_size(s);
			if (rc)
				goto fail_env;
			continue;
		}
		if (rc)
			goto fail_env;
		rc = open_dbis(s, txn, create);
		if (!rc)
			rc = meta_check(s, txn, create, &found);
		if (rc) {
			mdb_txn_abort(txn);
			if (rc == STORE_EMAPFULL && tries < 4 && !store_grow(s))
				continue;
			goto fail_env;
		}
		rc = store_txn_commit(txn);
		if (rc == STORE_EMAPFULL && tries < 4 && !store_grow(s))
			continue;
		if (rc)
			goto fail_env;
		break;
	}
	store_hash_data(NULL, CHUNK_PAGE, (const uint8_t[STORE_PAGE_SIZE]){ 0 },
			STORE_PAGE_SIZE, &s->zero_page);
	*out = s;
	return 0;

fail_env:
	mdb_env_close(s->env);
fail_alloc:
	if (rc == RW_EVERSION)
		opts->found_format = found;
	store_free(s);
	return rc;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	mdb_env_close(s->env);
	for (size_t i = 0; i < s->nstage_free; i++)
		free(s->stage_free[i]);
	free(s->stage_free);
	store_free(s);
}

struct label_find {
	const char *label;
	uint64_t *ids;
	size_t max, n;
};

static int label_match(void *arg, const struct store_ckpt_info *info)
{
	struct label_find *f = arg;

	if (strcmp(info->label, f->label) == 0) {
		if (f->n < f->max)
			f->ids[f->n] = info->id;
		f->n++;
	}
	return 0;
}

int store_find_label(struct store *s, const char *label, uint64_t *ids, size_t max, size_t *n)
{
	struct label_find f = { label, ids, max, 0 };
	int rc = store_list(s, label_match, &f);

	*n = f.n;
	return rc;
}

static int count_one(void *arg, const struct store_ckpt_info *info)
{
	(void)info;
	(*(uint64_t *)arg)++;
	return 0;
}

int store_remove_new(const char *path)
{
	struct store_open_opts so = { 0 };
	struct store *s = NULL;
	char file[PATH_MAX];
	uint64_t n = 0;
	int ret = store_open(path, &so, &s);

	if (!ret)
		ret = store_list(s, count_one, &n);
	store_close(s);
	if (ret)
		return ret;
	if (n)
		return -ENOTEMPTY;
	static const char *const files[] = { "data.mdb", "lock.mdb" };
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(file, sizeof(file), "%s/%s", path, files[i]);
		if (unlink(file) && errno != ENOENT)
			return -errno;
	}
	return rmdir(path) ? -errno : 0;
}

const char *store_path(const struct store *s)
{
	return s->path;
}

/* ===================================================================
 * Test hooks
 * =================================================================== */

void store_test_set_hash_hook(struct store *s, store_hash_hook_fn fn, void *arg)
{
	s->hash_hook = fn;
	s->hash_hook_arg = arg;
}

void store_test_set_read_window(struct store *s, uint32_t window, uint32_t par_min)
{
	s->read_window = window;
	s->read_par_min = par_min;
}

static int set_format_txn(struct store *s, MDB_txn *txn, void *arg)
{
	return meta_put_u32(s, txn, "format", *(uint32_t *)arg);
}

int store_test_set_format(struct store *s, uint32_t version)
{
	return store_write_txn(s, set_format_txn, &version);
}

struct test_ref_arg {
	const struct store_hash *h;
	int64_t delta;
};

static int test_ref_txn(struct store *s, MDB_txn *txn, void *arg)
{
	struct test_ref_arg *a = arg;

	return chunk_ref(s, txn, a->h, a->delta, NULL);
}

int store_test_ref(struct store *s, const struct store_hash *h, int64_t delta)
{
	struct test_ref_arg a = { h, delta };

	return store_write_txn(s, test_ref_txn, &a);
}

struct test_orphan_arg {
	const void *page;
	struct store_hash *h;
};

static int test_orphan_txn(struct store *s, MDB_txn *txn, void *arg)
{
	struct test_orphan_arg *a = arg;
	bool created;

	return chunk_put(s, txn, a->h, CHUNK_PAGE, a->page, STORE_PAGE_SIZE, 0,
			 &created);
}

int store_test_orphan_chunk(struct store *s, const void *page, struct store_hash *h)
{
	struct test_orphan_arg a = { page, h };

	store_hash_data(s, CHUNK_PAGE, page, STORE_PAGE_SIZE, h);
	return store_write_txn(s, test_orphan_txn, &a);
}

void store_test_page_key(struct store *s, const void *page, struct store_hash *h)
{
	store_hash_data(s, CHUNK_PAGE, page, STORE_PAGE_SIZE, h);
}
