/*
 * ckpt.c - building and committing a checkpoint.
 *
 * Adding pages hashes them and copies each distinct page into staging
 * blocks; nothing touches LMDB until commit. Commit then runs in one write
 * transaction (run again from the staged state if the map must grow):
 *
 *   for each map, bottom-up along the changed paths only:
 *     a leaf with changes = the parent's leaf with the new page keys;
 *     an inner node with changed children = the parent's node with the new
 *     child keys; untouched subtrees keep their keys (shared).
 *   A chunk created here starts with one reference, taken on behalf of the
 *   node (or checkpoint) that is about to point at it. When that node turns
 *   out to be new, it takes a reference on each of its other children; when
 *   it already exists (same content stored before), the references taken
 *   in advance are dropped again. So every count stays exact.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "store_internal.h"
#include "util.h"

#define ZERO_SLOT UINT32_MAX

struct spage {
	uint64_t idx;
	uint64_t seq;            /* order of adding: the last add wins */
	struct store_hash h;
	uint32_t slot;           /* staging slot, or ZERO_SLOT for a hole */
};

struct bmap {
	char *name;              /* NULL = memory */
	uint64_t npages;
	struct spage *pg;
	size_t n, cap;
	bool sorted;
	/* the parent's version of this map (zero root / 0 pages if new) */
	uint64_t p_npages, p_present;
	unsigned p_height;
	struct store_hash p_root;
};

struct srec {
	char *name;
	uint32_t version;
	void *data;
	size_t len;
};

struct store_ckpt {
	struct store *s;
	int err;                 /* poisoned when non-zero */
	uint64_t parent;
	char *label;
	void *config;
	size_t config_len;
	struct bmap *maps;       /* maps[0] is memory */
	size_t nmaps;
	struct srec *recs;
	size_t nrecs, caprecs;
	uint8_t **blocks;
	size_t nblocks, capblocks;
	uint32_t nslots;
	uint64_t seq;
	struct hmap dedup;       /* page key -> slot + 1 */
};

/* ===================================================================
 * Staging memory
 * =================================================================== */

static uint8_t *slot_ptr(const struct store_ckpt *c, uint32_t slot)
{
	return c->blocks[slot / STAGE_BLOCK_PAGES] +
	       (size_t)(slot % STAGE_BLOCK_PAGES) * STORE_PAGE_SIZE;
}

static int slot_new(struct store_ckpt *c, uint32_t *slot)
{
	struct store *s = c->s;

	if (c->nslots == ZERO_SLOT - 1)
		return RW_ELIMIT;
	if (c->nslots == c->nblocks * STAGE_BLOCK_PAGES) {
		uint8_t *b = NULL;

		if (c->nblocks == c->capblocks) {
			size_t cap = c->capblocks ? c->capblocks * 2 : 16;
			uint8_t **nb = realloc(c->blocks, cap * sizeof(*nb));
			if (!nb)
				return -ENOMEM;
			c->blocks = nb;
			c->capblocks = cap;
		}
		pthread_mutex_lock(&s->stage_lock);
		if (s->nstage_free)
			b = s->stage_free[--s->nstage_free];
		pthread_mutex_unlock(&s->stage_lock);
		if (!b)
			b = malloc(STAGE_BLOCK_BYTES);
		if (!b)
			return -ENOMEM;
		c->blocks[c->nblocks++] = b;
	}
	*slot = c->nslots++;
	return 0;
}

static void stage_release(struct store_ckpt *c)
{
	struct store *s = c->s;

	pthread_mutex_lock(&s->stage_lock);
	if (!s->stage_free && s->stage_free_max)
		s->stage_free = calloc(s->stage_free_max, sizeof(void *));
	while (c->nblocks && s->stage_free && s->nstage_free < s->stage_free_max)
		s->stage_free[s->nstage_free++] = c->blocks[--c->nblocks];
	pthread_mutex_unlock(&s->stage_lock);
	while (c->nblocks)
		free(c->blocks[--c->nblocks]);
	free(c->blocks);
	c->blocks = NULL;
	c->nslots = 0;
}

static void ckpt_free(struct store_ckpt *c)
{
	if (!c)
		return;
	stage_release(c);
	hmap_free(&c->dedup);
	for (size_t i = 0; i < c->nmaps; i++) {
		free(c->maps[i].name);
		free(c->maps[i].pg);
	}
	free(c->maps);
	for (size_t i = 0; i < c->nrecs; i++) {
		free(c->recs[i].name);
		free(c->recs[i].data);
	}
	free(c->recs);
	free(c->label);
	free(c->config);
	free(c);
}

void store_ckpt_abort(struct store_ckpt *c)
{
	ckpt_free(c);
}

/* ===================================================================
 * Begin and setters
 * =================================================================== */

int store_ckpt_begin(struct store *s, uint64_t parent, struct store_ckpt **out)
{
	struct store_ckpt *c;
	struct store_crec rec;
	MDB_txn *txn;
	int rc = -ENOMEM;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->s = s;
	c->parent = parent;
	if (hmap_init(&c->dedup, 1024))
		goto fail;
	if (!parent) {
		c->maps = calloc(1, sizeof(*c->maps));
		if (!c->maps)
			goto fail;
		c->nmaps = 1;
		c->maps[0].p_height = 1;
		c->maps[0].sorted = true;
		*out = c;
		return 0;
	}
	rc = store_rd_begin(s, &txn);
	if (rc)
		goto fail;
	rc = crec_get(s, txn, parent, &rec);
	store_rd_end(s, txn);
	if (rc)
		goto fail;
	rc = -ENOMEM;
	c->maps = calloc(rec.nmaps, sizeof(*c->maps));
	if (!c->maps)
		goto fail_rec;
	c->nmaps = rec.nmaps;
	for (size_t i = 0; i < rec.nmaps; i++) {
		struct bmap *m = &c->maps[i];

		m->name = rec.maps[i].name;
		rec.maps[i].name = NULL;
		m->npages = m->p_npages = rec.maps[i].npages;
		m->p_present = rec.maps[i].present;
		m->p_height = rec.maps[i].height;
		m->p_root = rec.maps[i].root;
		m->sorted = true;
	}
	crec_free(&rec);
	*out = c;
	return 0;

fail_rec:
	crec_free(&rec);
fail:
	ckpt_free(c);
	return rc;
}

static struct bmap *find_map(struct store_ckpt *c, const char *disk)
{
	if (!disk)
		return &c->maps[0];
	for (size_t i = 1; i < c->nmaps; i++)
		if (!strcmp(c->maps[i].name, disk))
			return &c->maps[i];
	return NULL;
}

static int poison(struct store_ckpt *c, int rc)
{
	if (rc && !c->err)
		c->err = rc;
	return rc;
}

int store_ckpt_set_label(struct store_ckpt *c, const char *label)
{
	char *l;

	if (c->err)
		return RW_EPOISONED;
	if (label && strlen(label) > STORE_LABEL_MAX)
		return RW_ELIMIT;
	l = label && *label ? strdup(label) : NULL;
	if (label && *label && !l)
		return poison(c, -ENOMEM);
	free(c->label);
	c->label = l;
	return 0;
}

int store_ckpt_set_config(struct store_ckpt *c, const void *data, size_t len)
{
	void *d = NULL;

	if (c->err)
		return RW_EPOISONED;
	if (len > STORE_BLOB_MAX)
		return RW_ELIMIT;
	if (len) {
		d = malloc(len);
		if (!d)
			return poison(c, -ENOMEM);
		memcpy(d, data, len);
	}
	free(c->config);
	c->config = d;
	c->config_len = len;
	return 0;
}

int store_ckpt_set_size(struct store_ckpt *c, const char *disk, uint64_t npages)
{
	struct bmap *m;

	if (c->err)
		return RW_EPOISONED;
	if (npages > STORE_MAP_PAGES_MAX)
		return RW_ELIMIT;
	if (disk && !*disk)
		return -EINVAL;
	if (disk && strlen(disk) > STORE_NAME_MAX)
		return RW_ELIMIT;
	m = find_map(c, disk);
	if (!m) {
		struct bmap *nm;

		if (c->nmaps >= STORE_MAPS_MAX)
			return RW_ELIMIT;
		nm = realloc(c->maps, (c->nmaps + 1) * sizeof(*nm));
		if (!nm)
			return poison(c, -ENOMEM);
		c->maps = nm;
		m = &c->maps[c->nmaps];
		memset(m, 0, sizeof(*m));
		m->name = strdup(disk);
		if (!m->name)
			return poison(c, -ENOMEM);
		m->p_height = 1;
		m->sorted = true;
		c->nmaps++;
	}
	m->npages = npages;
	return 0;
}

int store_ckpt_drop_disk(struct store_ckpt *c, const char *disk)
{
	struct bmap *m;

	if (c->err)
		return RW_EPOISONED;
	if (!disk)
		return -EINVAL;
	m = find_map(c, disk);
	if (!m)
		return RW_ENOTFOUND;
	free(m->name);
	free(m->pg);
	*m = c->maps[--c->nmaps];
	return 0;
}

/* ===================================================================
 * Adding pages and records
 * =================================================================== */

static int add_one(struct store_ckpt *c, struct bmap *m, uint64_t idx,
		   const uint8_t *p)
{
	struct store *s = c->s;
	struct spage *sp;
	struct hent *e;
	bool created;
	int rc;

	if (idx >= m->npages)
		return -ERANGE;
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 1024;
		struct spage *np = realloc(m->pg, cap * sizeof(*np));
		if (!np)
			return -ENOMEM;
		m->pg = np;
		m->cap = cap;
	}
	sp = &m->pg[m->n];
	sp->idx = idx;
	sp->seq = c->seq++;
	store_hash_data(s, CHUNK_PAGE, p, STORE_PAGE_SIZE, &sp->h);
	if (!memcmp(sp->h.b, s->zero_page.b, 16) && page_is_zero(p)) {
		memset(&sp->h, 0, sizeof(sp->h));
		sp->slot = ZERO_SLOT;
	} else {
		if (store_hash_is_zero(&sp->h))
			return RW_ECOLLISION;
		e = hmap_put(&c->dedup, &sp->h, &created);
		if (!e)
			return -ENOMEM;
		if (!created && !memcmp(slot_ptr(c, (uint32_t)(e->val - 1)), p,
					STORE_PAGE_SIZE)) {
			sp->slot = (uint32_t)(e->val - 1);
		} else {
			rc = slot_new(c, &sp->slot);
			if (rc)
				return rc;
			memcpy(slot_ptr(c, sp->slot), p, STORE_PAGE_SIZE);
			if (created)
				e->val = (uint64_t)sp->slot + 1;
		}
	}
	if (m->n && m->pg[m->n - 1].idx >= idx)
		m->sorted = false;
	m->n++;
	return 0;
}

/* Pages idx[0..n) of data, or first..first+n when idx is NULL. */
static int add_pages(struct store_ckpt *c, const char *disk, const uint64_t *idx, uint64_t first,
		     const void *data, size_t n)
{
	struct bmap *m;
	const uint8_t *p = data;

	if (c->err)
		return RW_EPOISONED;
	m = find_map(c, disk);
	if (!m)
		return poison(c, RW_ENOTFOUND);
	for (size_t i = 0; i < n; i++) {
		int rc = add_one(c, m, idx ? idx[i] : first + i, p + i * STORE_PAGE_SIZE);
		if (rc)
			return poison(c, rc);
	}
	return 0;
}

int store_ckpt_add_pages(struct store_ckpt *c, const char *disk,
			 const uint64_t *idx, const void *data, size_t n)
{
	return add_pages(c, disk, idx, 0, data, n);
}

int store_ckpt_add_range(struct store_ckpt *c, const char *disk, uint64_t first,
			 const void *data, size_t n)
{
	return add_pages(c, disk, NULL, first, data, n);
}

int store_ckpt_put_record(struct store_ckpt *c, const char *name,
			  uint32_t version, const void *data, size_t len)
{
	struct srec *r;

	if (c->err)
		return RW_EPOISONED;
	if (!name || !*name)
		return -EINVAL;
	if (strlen(name) > STORE_NAME_MAX || len > STORE_BLOB_MAX)
		return RW_ELIMIT;
	for (size_t i = 0; i < c->nrecs; i++)
		if (!strcmp(c->recs[i].name, name))
			return -EEXIST;
	if (c->nrecs == c->caprecs) {
		size_t cap = c->caprecs ? c->caprecs * 2 : 16;
		struct srec *nr = realloc(c->recs, cap * sizeof(*nr));
		if (!nr)
			return poison(c, -ENOMEM);
		c->recs = nr;
		c->caprecs = cap;
	}
	r = &c->recs[c->nrecs];
	r->name = strdup(name);
	r->data = malloc(len ? len : 1);
	if (!r->name || !r->data) {
		free(r->name);
		free(r->data);
		return poison(c, -ENOMEM);
	}
	if (len)
		memcpy(r->data, data, len);
	r->len = len;
	r->version = version;
	c->nrecs++;
	return 0;
}

/* ===================================================================
 * Commit: building the trees
 * =================================================================== */

struct build {
	struct store *s;
	MDB_txn *txn;
	struct store_ckpt *c;
	struct bmap *m;
	struct store_commit_stats *st;
	int64_t present;         /* change in non-hole pages */
	bool verify;
	bool *created;           /* per staged page: its chunk was created */
};

/* Non-hole pages under key (a node of level, or a page when level < 0). */
static int count_present(struct build *b, const struct store_hash *k, int level,
			 uint64_t *out)
{
	struct node *n;
	int rc;

	if (store_hash_is_zero(k))
		return 0;
	if (level < 0) {
		(*out)++;
		return 0;
	}
	n = malloc(sizeof(*n));
	if (!n)
		return -ENOMEM;
	rc = node_load(b->s, b->txn, k, (unsigned)level, n, b->verify);
	for (unsigned i = 0; !rc && i < n->count; i++)
		rc = count_present(b, &n->e[i], level - 1, out);
	free(n);
	return rc;
}

/*
 * New key of the subtree of `level` covering pages [base, base + span) of
 * the map, given the old subtree (key old of old_level <= level; a lower
 * old_level means the old tree was shorter and sits in child 0) and the
 * staged pages pg[lo, hi) that fall in this range. *pre tells whether the
 * returned key carries a reference taken in advance (see the file comment).
 */
static int update(struct build *b, unsigned level, const struct store_hash *old,
		  unsigned old_level, uint64_t base, size_t lo, size_t hi,
		  uint64_t limit, struct store_hash *out, bool *pre)
{
	struct store *s = b->s;
	uint64_t span = tree_span(level);
	uint64_t end = span > UINT64_MAX - base ? UINT64_MAX : base + span;
	bool cut = end > limit && !store_hash_is_zero(old);
	struct node *cur = NULL, *nn = NULL;
	bool pre_e[STORE_FANOUT] = { false };
	bool created, same;
	uint8_t enc[NODE_MAX];
	size_t len;
	int rc = 0;

	*pre = false;
	if (lo == hi && !cut && old_level == level) {
		*out = *old;
		return 0;
	}
	if (lo == hi && store_hash_is_zero(old)) {
		memset(out, 0, sizeof(*out));
		return 0;
	}
	if (base >= limit) {
		uint64_t cnt = 0;

		rc = count_present(b, old, (int)old_level, &cnt);
		b->present -= (int64_t)cnt;
		memset(out, 0, sizeof(*out));
		return rc;
	}
	cur = malloc(sizeof(*cur));
	nn = malloc(sizeof(*nn));
	rc = -ENOMEM;
	if (!cur || !nn)
		goto out;
	if (old_level == level) {
		rc = node_load(s, b->txn, old, level, cur, b->verify);
		if (rc)
			goto out;
	} else {
		memset(cur, 0, sizeof(*cur));
		cur->level = level;
		cur->e[0] = *old;
	}
	*nn = *cur;
	rc = 0;
	if (level == 0) {
		for (size_t j = lo; j < hi; j++) {
			const struct spage *sp = &b->m->pg[j];
			unsigned i = (unsigned)(sp->idx - base);
			struct store_hash key = sp->h;

			b->st->pages++;
			if (sp->slot == ZERO_SLOT) {
				b->st->zero_pages++;
				memset(&key, 0, sizeof(key));
			} else {
				if (b->created[j]) {
					pre_e[i] = true;
					b->st->new_chunks++;
					b->st->new_bytes += STORE_PAGE_SIZE;
				} else {
					b->st->dedup_hits++;
				}
			}
			nn->e[i] = key;
		}
		for (unsigned i = 0; i < STORE_FANOUT; i++) {
			bool was = !store_hash_is_zero(&cur->e[i]);

			if (base + i >= limit && !store_hash_is_zero(&nn->e[i]))
				memset(&nn->e[i], 0, sizeof(nn->e[i]));
			bool now = !store_hash_is_zero(&nn->e[i]);
			b->present += (int64_t)now - (int64_t)was;
		}
	} else {
		uint64_t cspan = tree_span(level - 1);
		size_t j = lo;

		for (unsigned i = 0; i < STORE_FANOUT; i++) {
			uint64_t cbase = base + i * cspan;
			size_t clo = j;
			const struct store_hash *cold = &cur->e[i];
			/* a lifted old tree sits in child 0 at its own level */
			unsigned clevel = old_level != level && i == 0 ? old_level
								  : level - 1;

			while (j < hi && b->m->pg[j].idx - base < (uint64_t)(i + 1) * cspan)
				j++;
			if (clo == j && store_hash_is_zero(cold))
				continue;
			rc = update(b, level - 1, cold, clevel, cbase, clo, j, limit,
				    &nn->e[i], &pre_e[i]);
			if (rc)
				goto out;
		}
	}

	same = old_level == level && !memcmp(nn->e, cur->e, sizeof(nn->e));
	if (same) {
		*out = *old;
		goto out;
	}
	nn->level = level;
	len = node_encode(nn, enc);
	if (len == NODE_HDR) {
		memset(out, 0, sizeof(*out));
		goto drop_pre;
	}
	store_hash_data(s, CHUNK_NODE, enc, len, out);
	if (store_hash_is_zero(out)) {
		rc = RW_ECOLLISION;
		goto out;
	}
	rc = chunk_put(s, b->txn, out, CHUNK_NODE, enc, len, 1, &created);
	if (rc)
		goto out;
	if (created) {
		*pre = true;
		b->st->new_chunks++;
		b->st->new_nodes++;
		b->st->new_bytes += len;
		for (unsigned i = 0; i < STORE_FANOUT && !rc; i++)
			if (!pre_e[i] && !store_hash_is_zero(&nn->e[i]))
				rc = chunk_ref(s, b->txn, &nn->e[i], 1, NULL);
		goto out;
	}
drop_pre:
	/* the node existed already: give back references taken in advance */
	for (unsigned i = 0; i < STORE_FANOUT && !rc; i++)
		if (pre_e[i])
			rc = chunk_unref(s, b->txn, &nn->e[i], NULL);
out:
	free(cur);
	free(nn);
	return rc;
}

static int spage_cmp(const void *a, const void *b)
{
	const struct spage *x = a, *y = b;

	if (x->idx != y->idx)
		return x->idx < y->idx ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sort staged pages by index, keep the last add of each, drop those past
 * the map's end. Idempotent, so a retried commit can run it again. */
static void prepare_map(struct bmap *m)
{
	size_t w = 0;

	if (!m->sorted && m->n)
		qsort(m->pg, m->n, sizeof(*m->pg), spage_cmp);
	m->sorted = true;
	for (size_t r = 0; r < m->n; r++) {
		if (m->pg[r].idx >= m->npages)
			continue;
		if (r + 1 < m->n && m->pg[r + 1].idx == m->pg[r].idx)
			continue;
		m->pg[w++] = m->pg[r];
	}
	m->n = w;
}

static int spage_key_cmp(const void *a, const void *b, void *arg)
{
	const struct spage *pg = arg;

	return memcmp(pg[*(const size_t *)a].h.b, pg[*(const size_t *)b].h.b, 16);
}

/*
 * Store the chunks of the staged pages, each with the one reference taken
 * in advance. The heads go in in key order, so the inserts walk the head
 * B-tree in order instead of hitting a random leaf each; the bodies of the
 * chunks created go in in page order, so their overflow pages lie in the
 * order a read copies the pages out. Of several pages with one content,
 * the first creates the chunk (or meets the stored one) and the others
 * share it; which page that is does not matter to update().
 */
static int put_pages(struct build *b)
{
	struct bmap *m = b->m;
	const struct spage *prev = NULL;
	size_t *ord, n = 0;
	int rc = 0;

	if (!m->n)
		return 0;
	ord = malloc(m->n * sizeof(*ord));
	if (!ord)
		return -ENOMEM;
	for (size_t j = 0; j < m->n; j++)
		if (m->pg[j].slot != ZERO_SLOT)
			ord[n++] = j;
	qsort_r(ord, n, sizeof(*ord), spage_key_cmp, m->pg);
	for (size_t i = 0; i < n && !rc; i++) {
		const struct spage *sp = &m->pg[ord[i]];

		if (prev && !memcmp(prev->h.b, sp->h.b, 16)) {
			/* same key: same bytes (staging shares the slot) or a
			 * collision */
			if (prev->slot != sp->slot &&
			    memcmp(slot_ptr(b->c, prev->slot), slot_ptr(b->c, sp->slot),
				   STORE_PAGE_SIZE))
				rc = RW_ECOLLISION;
			b->created[ord[i]] = false;
			continue;
		}
		rc = chunk_put_head(b->s, b->txn, &sp->h, CHUNK_PAGE,
				    slot_ptr(b->c, sp->slot), STORE_PAGE_SIZE, 1,
				    &b->created[ord[i]]);
		prev = sp;
	}
	free(ord);
	for (size_t j = 0; j < m->n && !rc; j++)
		if (b->created[j])
			rc = chunk_put_body(b->s, b->txn, &m->pg[j].h,
					    slot_ptr(b->c, m->pg[j].slot), STORE_PAGE_SIZE);
	return rc;
}

static int build_map(struct build *b, struct map_rec *mr, bool *pre)
{
	struct bmap *m = b->m;
	unsigned h = tree_height(m->npages);
	struct store_hash old = m->p_root;
	unsigned old_level = m->p_height - 1;
	int rc;

	b->present = 0;
	rc = put_pages(b);
	if (rc)
		return rc;
	/* a shorter tree: keep the part of the old tree under child 0 */
	while (old_level > h - 1) {
		struct node *n = malloc(sizeof(*n));
		uint64_t cnt = 0;

		if (!n)
			return -ENOMEM;
		rc = node_load(b->s, b->txn, &old, old_level, n, b->verify);
		for (unsigned i = 1; !rc && i < n->count; i++)
			rc = count_present(b, &n->e[i], (int)old_level - 1, &cnt);
		if (!rc)
			old = n->e[0];
		free(n);
		if (rc)
			return rc;
		b->present -= (int64_t)cnt;
		old_level--;
	}
	rc = update(b, h - 1, &old, old_level, 0, 0, m->n, m->npages, &mr->root, pre);
	if (rc)
		return rc;
	if ((int64_t)m->p_present + b->present < 0)
		return RW_ECORRUPT;
	mr->npages = m->npages;
	mr->present = (uint64_t)((int64_t)m->p_present + b->present);
	mr->height = h;
	mr->name = m->name;
	if ((mr->present == 0) != store_hash_is_zero(&mr->root))
		return RW_ECORRUPT;
	return 0;
}

struct commit_ctx {
	struct store_ckpt *c;
	struct store_commit_stats st;
	uint64_t id;
	uint64_t t0;
};

static int put_records(struct store *s, MDB_txn *txn, uint64_t id,
		       const struct srec *recs, size_t n)
{
	uint8_t kb[RECDB_KEY_MAX];

	for (size_t i = 0; i < n; i++) {
		const struct srec *r = &recs[i];
		MDB_val k = { recdb_key(kb, id, r->name, strlen(r->name)), kb };
		MDB_val v = { RECDB_HDR + r->len, NULL };
		int rc = store_mdb_err(mdb_put(txn, s->rec, &k, &v,
					       MDB_RESERVE | MDB_NOOVERWRITE));
		if (rc)
			return rc;
		uint8_t *p = v.mv_data;
		put_le32(p, r->version);
		put_le32(p + 4, 0);
		put_le64(p + 8, XXH3_64bits(r->data, r->len));
		memcpy(p + RECDB_HDR, r->data, r->len);
	}
	return 0;
}

static int commit_txn(struct store *s, MDB_txn *txn, void *arg)
{
	struct commit_ctx *cx = arg;
	struct store_ckpt *c = cx->c;
	struct store_crec rec = { 0 };
	struct byte_writer w = BYTE_WRITER_INIT;
	struct timespec ts;
	uint8_t kb[8];
	MDB_val k, v;
	uint64_t next;
	int rc;

	memset(&cx->st, 0, sizeof(cx->st));
	if (c->parent) {
		struct store_crec prec;

		rc = crec_get(s, txn, c->parent, &prec);
		if (rc)
			return rc;
		crec_free(&prec);
	}
	rc = meta_get_u64(s, txn, "next-id", &next);
	if (rc)
		return rc == RW_ENOTFOUND ? RW_ECORRUPT : rc;
	rec.maps = calloc(c->nmaps, sizeof(*rec.maps));
	if (!rec.maps)
		return -ENOMEM;
	rec.nmaps = c->nmaps;
	for (size_t i = 0; i < c->nmaps; i++) {
		struct build b = { s, txn, c, &c->maps[i], &cx->st, 0,
				   !(s->flags & STORE_OPEN_NO_READ_VERIFY),
				   calloc(c->maps[i].n ? c->maps[i].n : 1, sizeof(bool)) };
		bool pre = false;

		rc = b.created ? build_map(&b, &rec.maps[i], &pre) : -ENOMEM;
		free(b.created);
		if (!rc && !pre && !store_hash_is_zero(&rec.maps[i].root))
			rc = chunk_ref(s, txn, &rec.maps[i].root, 1, NULL);
		if (rc)
			goto out;
	}
	rc = put_records(s, txn, next, c->recs, c->nrecs);
	if (rc)
		goto out;
	clock_gettime(CLOCK_REALTIME, &ts);
	rec.id = next;
	rec.parent = c->parent;
	rec.time_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	rec.label = c->label;
	rec.config = c->config;
	rec.config_len = c->config_len;
	rec.stats = cx->st;
	rec.stats.commit_ns = rw_now_ns() - cx->t0;
	rc = crec_encode(&rec, &w);
	if (rc)
		goto out;
	put_be64(kb, next);
	k.mv_size = 8;
	k.mv_data = kb;
	v.mv_size = w.len;
	v.mv_data = w.buf;
	rc = store_mdb_err(mdb_put(txn, s->ckpt, &k, &v, MDB_NOOVERWRITE));
	if (rc == -EEXIST)
		rc = RW_ECORRUPT;
	if (!rc)
		rc = meta_put_u64(s, txn, "next-id", next + 1);
	if (!rc)
		cx->id = next;
out:
	bw_free(&w);
	free(rec.maps);
	return rc;
}

int store_ckpt_commit(struct store_ckpt *c, uint64_t *id,
		      struct store_commit_stats *stats)
{
	struct commit_ctx cx = { .c = c, .t0 = rw_now_ns() };
	int rc;

	if (c->err) {
		ckpt_free(c);
		return RW_EPOISONED;
	}
	for (size_t i = 0; i < c->nmaps; i++)
		prepare_map(&c->maps[i]);
	rc = store_write_txn(c->s, commit_txn, &cx);
	if (!rc) {
		cx.st.commit_ns = rw_now_ns() - cx.t0;
		if (id)
			*id = cx.id;
		if (stats)
			*stats = cx.st;
	}
	ckpt_free(c);
	return rc;
}
