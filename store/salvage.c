/*
 * salvage.c - copy the intact checkpoints of a damaged store into a new one.
 *
 * LMDB never opens the damaged file. The guard's walk (guard.c) reads it
 * with pread from the newest usable meta page, skips every damaged subtree
 * (reporting it with the range of keys it may have held) and hands over
 * every entry it can reach; those are written as they are into a new store.
 * Each checkpoint is then read back through the ordinary read calls of the
 * new store: its record (checksum), every page and tree node of every map
 * (each chunk re-hashed), every named record (checksum, and the base
 * record format's magic, length and checksum where the data is such a
 * record). A checkpoint that fails any of these, or some of whose records
 * may have been in a skipped subtree, is removed again; gc then drops the
 * chunks only those referenced and sets every reference count, and verify
 * must find nothing. So each checkpoint is saved whole or not at all, with
 * its id, parent, time, label and commit counts.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "guard.h"
#include "record.h"
#include "store_internal.h"

#define BATCH_BYTES (16u << 20)
#define BATCH_ENTRIES 4096u

struct sv_ent {
	enum guard_db_id db;
	size_t klen, vlen;
	uint8_t *k;               /* key, then value, in one allocation */
};

struct sv_range {
	enum guard_db_id db;
	uint8_t *lo, *hi;         /* NULL: unbounded */
	size_t lol, hil;
};

struct salvage {
	struct store *dst;
	int (*fn)(void *arg, const struct store_salvage_item *it);
	void *arg;
	store_progress_fn progress;
	void *parg;
	struct store_salvage_stats st;
	struct sv_ent *ents;
	size_t nents, capents, bytes;
	uint64_t *ckpts, *recs;   /* ids of the ckpt and record DB keys */
	size_t nckpts, capckpts, nrecs, caprecs;
	struct sv_range *lost;
	size_t nlost, caplost;
	uint64_t next_id, format;
	bool have_format;
};

static int ids_add(uint64_t **ids, size_t *n, size_t *cap, uint64_t id)
{
	if (*n && (*ids)[*n - 1] == id)
		return 0;
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 64;
		uint64_t *p = realloc(*ids, c * sizeof(*p));
		if (!p)
			return -ENOMEM;
		*ids = p;
		*cap = c;
	}
	(*ids)[(*n)++] = id;
	return 0;
}

static int report(struct salvage *sv, enum store_salvage_kind kind, uint64_t id,
		  const char *label, const char *why)
{
	struct store_salvage_item it = { .kind = kind, .id = id, .label = label, .why = why };

	return sv->fn ? sv->fn(sv->arg, &it) : 0;
}

/* ---- copying what the walk reaches ---- */

static MDB_dbi dbi_of(struct store *s, enum guard_db_id db)
{
	switch (db) {
	case GDB_HEAD: return s->head;
	case GDB_BODY: return s->body;
	case GDB_CKPT: return s->ckpt;
	default: return s->rec;
	}
}

static int put_batch(struct store *s, MDB_txn *txn, void *arg)
{
	struct salvage *sv = arg;

	for (size_t i = 0; i < sv->nents; i++) {
		struct sv_ent *e = &sv->ents[i];
		MDB_val k = { e->klen, e->k }, v = { e->vlen, e->k + e->klen };
		int rc = mdb_put(txn, dbi_of(s, e->db), &k, &v, 0);

		if (rc == MDB_BAD_VALSIZE)
			continue;   /* a key LMDB never wrote: damage, left out */
		if (rc)
			return store_mdb_err(rc);
	}
	return 0;
}

static int flush(struct salvage *sv)
{
	int rc = sv->nents ? store_write_txn(sv->dst, put_batch, sv) : 0;

	for (size_t i = 0; i < sv->nents; i++)
		free(sv->ents[i].k);
	sv->nents = 0;
	sv->bytes = 0;
	return rc;
}

static int on_entry(void *arg, enum guard_db_id db, const void *key, size_t klen,
		    const void *val, size_t vlen)
{
	struct salvage *sv = arg;
	const uint8_t *k = key;
	struct sv_ent *e;
	int rc = 0;

	if (db == GDB_META) {
		if (klen == 7 && !memcmp(key, "next-id", 7) && vlen == 8)
			sv->next_id = get_le64(val);
		if (klen == 6 && !memcmp(key, "format", 6) && (vlen == 4 || vlen == 8)) {
			sv->format = vlen == 4 ? get_le32(val) : get_le64(val);
			sv->have_format = true;
		}
		return 0;   /* the new store has its own */
	}
	if (db == GDB_CKPT && klen == 8)
		rc = ids_add(&sv->ckpts, &sv->nckpts, &sv->capckpts, get_be64(k));
	if (db == GDB_RECORD && klen > 8)
		rc = ids_add(&sv->recs, &sv->nrecs, &sv->caprecs, get_be64(k));
	if (rc)
		return rc;
	if (sv->nents == sv->capents) {
		size_t c = sv->capents ? sv->capents * 2 : 256;
		struct sv_ent *p = realloc(sv->ents, c * sizeof(*p));
		if (!p)
			return -ENOMEM;
		sv->ents = p;
		sv->capents = c;
	}
	e = &sv->ents[sv->nents];
	e->k = malloc(klen + vlen + 1);
	if (!e->k)
		return -ENOMEM;
	memcpy(e->k, key, klen);
	memcpy(e->k + klen, val, vlen);
	e->db = db;
	e->klen = klen;
	e->vlen = vlen;
	sv->nents++;
	sv->bytes += klen + vlen;
	if (sv->nents >= BATCH_ENTRIES || sv->bytes >= BATCH_BYTES)
		return flush(sv);
	return 0;
}

static uint8_t *dup_key(const void *k, size_t n)
{
	uint8_t *p = malloc(n ? n : 1);

	if (p && n)
		memcpy(p, k, n);
	return p;
}

static int on_damage(void *arg, enum guard_db_id db, uint64_t pgno, const char *why,
		     const void *lo, size_t lol, const void *hi, size_t hil)
{
	struct salvage *sv = arg;
	char msg[GUARD_WHY_MAX + 64];

	sv->st.damaged++;
	snprintf(msg, sizeof(msg), "page %llu damaged: %s (%s database)",
		 (unsigned long long)pgno, why, guard_db_names[db]);
	if (db == GDB_CKPT || db == GDB_RECORD) {
		struct sv_range *r;

		if (sv->nlost == sv->caplost) {
			size_t c = sv->caplost ? sv->caplost * 2 : 16;
			r = realloc(sv->lost, c * sizeof(*r));
			if (!r)
				return -ENOMEM;
			sv->lost = r;
			sv->caplost = c;
		}
		r = &sv->lost[sv->nlost];
		memset(r, 0, sizeof(*r));
		r->db = db;
		if ((lo && !(r->lo = dup_key(lo, lol))) || (hi && !(r->hi = dup_key(hi, hil)))) {
			free(r->lo);
			return -ENOMEM;
		}
		r->lol = lol;
		r->hil = hil;
		sv->nlost++;
	}
	return report(sv, STORE_SALVAGE_DAMAGE, 0, NULL, msg);
}

/* ---- checking each checkpoint in the new store ---- */

static int key_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);

	return c ? c : al < bl ? -1 : al > bl;
}

/* May a skipped subtree of db have held keys starting with id's? */
static const struct sv_range *lost_for(const struct salvage *sv, enum guard_db_id db,
				       uint64_t id)
{
	uint8_t a[8], b[8];

	put_be64(a, id);
	put_be64(b, id + 1);
	for (size_t i = 0; i < sv->nlost; i++) {
		const struct sv_range *r = &sv->lost[i];

		if (r->db != db)
			continue;
		/* [lo, hi) meets [a, b) */
		if ((!r->lo || key_cmp(r->lo, r->lol, b, 8) < 0) &&
		    (!r->hi || key_cmp(a, 8, r->hi, r->hil) < 0))
			return r;
	}
	return NULL;
}

static int run_none(void *arg, uint64_t first, uint64_t npages, const void *data)
{
	(void)arg; (void)first; (void)npages; (void)data;
	return 0;
}

struct names {
	char **v;
	size_t n, cap;
};

static int name_cb(void *arg, const struct store_record_info *ri)
{
	struct names *nm = arg;

	if (nm->n == nm->cap) {
		size_t c = nm->cap ? nm->cap * 2 : 16;
		char **p = realloc(nm->v, c * sizeof(*p));
		if (!p)
			return -ENOMEM;
		nm->v = p;
		nm->cap = c;
	}
	nm->v[nm->n] = strdup(ri->name);
	return nm->v[nm->n++] ? 0 : -ENOMEM;
}

static void names_free(struct names *nm)
{
	for (size_t i = 0; i < nm->n; i++)
		free(nm->v[i]);
	free(nm->v);
}

static void why_rc(char *why, size_t len, const char *what, int rc)
{
	const char *d = store_error_detail();

	snprintf(why, len, "%s: %s", what, d ? d : rw_strerror(rc));
}

/* Is checkpoint id whole? 0 and why[0] == 0 if so; why says what is not. */
static int check_ckpt(struct salvage *sv, uint64_t id, char *label, size_t lablen,
		      char *why, size_t len)
{
	struct store_snap *sn;
	struct names nm = { 0 };
	int rc;

	why[0] = 0;
	label[0] = 0;
	rc = store_snap_open(sv->dst, id, &sn);
	if (rc == -ENOMEM)
		return rc;
	if (rc) {
		why_rc(why, len, "its checkpoint record", rc);
		return 0;
	}
	const struct store_ckpt_info *info = store_snap_info(sn);
	snprintf(label, lablen, "%s", info->label);
	if (lost_for(sv, GDB_RECORD, id)) {
		snprintf(why, len, "some of its records were in a damaged part of the file");
		goto out;
	}
	for (size_t m = 0; m <= info->ndisks; m++) {
		const struct store_map_info *mi = m ? &info->disks[m - 1] : &info->mem;

		rc = store_snap_foreach_run(sn, mi->name, 0, mi->npages, run_none, NULL);
		if (rc == -ENOMEM)
			goto out;
		if (rc) {
			char what[300];

			snprintf(what, sizeof(what), "%s%s", mi->name ? "disk " : "memory",
				 mi->name ? mi->name : "");
			why_rc(why, len, what, rc);
			rc = 0;
			goto out;
		}
	}
	rc = store_snap_foreach_record(sn, name_cb, &nm);
	if (rc == -ENOMEM)
		goto out;
	if (rc) {
		why_rc(why, len, "its records", rc);
		rc = 0;
		goto out;
	}
	for (size_t i = 0; i < nm.n && !why[0]; i++) {
		void *data;
		size_t dlen;
		char what[STORE_NAME_MAX + 16];

		snprintf(what, sizeof(what), "record \"%s\"", nm.v[i]);
		rc = store_snap_record(sn, nm.v[i], &data, &dlen, NULL);
		if (rc == -ENOMEM)
			goto out;
		if (rc) {
			why_rc(why, len, what, rc);
			rc = 0;
			break;
		}
		/* VM state records carry their own header and checksum */
		if (dlen >= REC_HEADER_SIZE && !memcmp(data, REC_MAGIC, 4)) {
			struct rec_reader r;
			int rrc = rec_open(&r, data, dlen, NULL, 0, UINT32_MAX);

			if (rrc)
				snprintf(why, len, "%s: %s", what, rw_strerror(rrc));
		}
		free(data);
	}
out:
	names_free(&nm);
	store_snap_close(sn);
	return rc;
}

struct drop {
	const uint64_t *ids;
	size_t n;
};

/* Remove the checkpoints that are not whole, with their records. */
static int drop_txn(struct store *s, MDB_txn *txn, void *arg)
{
	const struct drop *d = arg;
	MDB_cursor *cur;
	int rc, mrc;

	for (size_t i = 0; i < d->n; i++) {
		uint8_t kb[8];
		MDB_val k = { 8, kb }, v;

		put_be64(kb, d->ids[i]);
		mrc = mdb_del(txn, s->ckpt, &k, NULL);
		if (mrc && mrc != MDB_NOTFOUND)
			return store_mdb_err(mrc);
		rc = store_mdb_err(mdb_cursor_open(txn, s->rec, &cur));
		if (rc)
			return rc;
		mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		while (!mrc && k.mv_size >= 8 && get_be64(k.mv_data) == d->ids[i]) {
			mrc = mdb_cursor_del(cur, 0);
			if (!mrc)
				mrc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
		}
		mdb_cursor_close(cur);
		if (mrc && mrc != MDB_NOTFOUND && mrc != EINVAL)
			return store_mdb_err(mrc);
	}
	return 0;
}

static int next_id_txn(struct store *s, MDB_txn *txn, void *arg)
{
	return meta_put_u64(s, txn, "next-id", *(uint64_t *)arg);
}

static int count_problem(void *arg, const struct store_problem *p)
{
	char *first = arg;

	if (!first[0])
		snprintf(first, GUARD_WHY_MAX, "%s: %s", store_problem_name(p->kind), p->detail);
	return 0;
}

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* to must not exist, or be an empty directory. */
static int target_ok(const char *to)
{
	DIR *d = opendir(to);
	struct dirent *e;
	int n = 0;

	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n ? -EEXIST : 0;
}

/*
 * Progress in thousandths: reading the file is the first 400, checking the
 * checkpoints the next 400, collecting and verifying the new store the rest.
 */
#define SV_READ_END 400u
#define SV_CHECK_END 800u
#define SV_ALL 1000u

static void sv_progress(struct salvage *sv, uint64_t at)
{
	if (sv->progress)
		sv->progress(sv->parg, at, SV_ALL);
}

static void walk_progress(void *arg, uint64_t done, uint64_t total)
{
	struct salvage *sv = arg;

	sv_progress(sv, total ? (done < total ? done : total) * SV_READ_END / total : 0);
}

int store_salvage(const char *from, const char *to,
		  int (*fn)(void *arg, const struct store_salvage_item *it), void *arg,
		  store_progress_fn progress, void *parg, struct store_salvage_stats *stats)
{
	struct salvage sv = { .fn = fn, .arg = arg, .progress = progress, .parg = parg };
	struct store_open_opts so = { .flags = STORE_OPEN_CREATE };
	struct guard_visit visit = { on_entry, on_damage, &sv, walk_progress };
	struct guard_file f;
	char why[GUARD_WHY_MAX], label[STORE_LABEL_MAX + 1];
	uint64_t *bad = NULL, max_id = 0;
	size_t nbad = 0, capbad = 0;
	int rc;

	store_note_clear();
	if (stats)
		memset(stats, 0, sizeof(*stats));
	rc = target_ok(to);
	if (rc) {
		store_note("salvage: %s %s", to, rc == -EEXIST ? "is not empty" : strerror(-rc));
		return rc;
	}
	rc = guard_file_open(&f, from, why, sizeof(why));
	if (rc) {
		store_note("%s", why);
		guard_file_close(&f);
		return rc == -ENOENT ? RW_ENOTSTORE : rc;
	}
	rc = guard_meta_read(&f, true, why, sizeof(why));
	if (rc) {
		store_note("%s: nothing can be salvaged", why);
		goto out_file;
	}
	for (int i = 0; i < 2; i++)
		if (!f.meta[i].ok) {
			snprintf(why, sizeof(why), "meta page %d damaged (%s); using meta page %d",
				 i, f.meta[i].why, !i);
			sv.st.damaged++;
			rc = report(&sv, STORE_SALVAGE_DAMAGE, 0, NULL, why);
			if (rc)
				goto out_file;
		}
	rc = store_open(to, &so, &sv.dst);
	if (rc)
		goto out_file;
	rc = guard_walk(&f, &visit, why, sizeof(why));
	if (!rc)
		rc = flush(&sv);
	if (rc)
		goto out;
	if (sv.have_format && sv.format != STORE_FORMAT_VERSION) {
		store_note("salvage: store %s has format version %llu; this rewind reads %u",
			   from, (unsigned long long)sv.format, STORE_FORMAT_VERSION);
		rc = RW_EVERSION;
		goto out;
	}

	/* checkpoints whose records survive but whose checkpoint record does not */
	for (size_t i = 0, j = 0; i < sv.nrecs; i++) {
		while (j < sv.nckpts && sv.ckpts[j] < sv.recs[i])
			j++;
		if (j < sv.nckpts && sv.ckpts[j] == sv.recs[i])
			continue;
		sv.st.lost++;
		rc = ids_add(&bad, &nbad, &capbad, sv.recs[i]);
		if (!rc)
			rc = report(&sv, STORE_SALVAGE_LOST, sv.recs[i], NULL,
				    "its checkpoint record is lost (in a damaged part of the file)");
		if (rc)
			goto out;
	}
	for (size_t i = 0; i < sv.nckpts; i++) {
		uint64_t id = sv.ckpts[i];

		if (id > max_id)
			max_id = id;
		sv_progress(&sv, SV_READ_END + i * (SV_CHECK_END - SV_READ_END) / sv.nckpts);
		rc = check_ckpt(&sv, id, label, sizeof(label), why, sizeof(why));
		if (rc)
			goto out;
		if (why[0]) {
			sv.st.lost++;
			rc = ids_add(&bad, &nbad, &capbad, id);
			if (!rc)
				rc = report(&sv, STORE_SALVAGE_LOST, id, label[0] ? label : NULL,
					    why);
		} else {
			sv.st.saved++;
			rc = report(&sv, STORE_SALVAGE_SAVED, id, label, NULL);
		}
		if (rc)
			goto out;
	}
	for (size_t i = 0; i < sv.nrecs; i++)
		if (sv.recs[i] > max_id)
			max_id = sv.recs[i];
	if (nbad)
		qsort(bad, nbad, sizeof(*bad), u64_cmp);
	struct drop d = { bad, nbad };
	sv_progress(&sv, SV_CHECK_END);
	rc = store_write_txn(sv.dst, drop_txn, &d);
	if (!rc) {
		uint64_t next = sv.next_id > max_id ? sv.next_id : max_id + 1;
		rc = store_write_txn(sv.dst, next_id_txn, &next);
	}
	if (!rc) {
		struct store_gc_stats g;
		rc = store_gc(sv.dst, false, &g);
		sv.st.chunks_dropped = g.chunks_freed;
	}
	if (!rc) {
		struct store_verify_stats vs;
		char first[GUARD_WHY_MAX] = "";

		rc = store_verify(sv.dst, count_problem, first, &vs);
		if (!rc && vs.problems) {
			store_note("salvage: the new store %s fails verify (%s)", to, first);
			rc = RW_ECORRUPT;
		}
		sv.st.chunks = vs.chunks;
	}
	if (!rc)
		sv_progress(&sv, SV_ALL);
out:
	store_close(sv.dst);
out_file:
	guard_file_close(&f);
	for (size_t i = 0; i < sv.nents; i++)
		free(sv.ents[i].k);
	free(sv.ents);
	free(sv.ckpts);
	free(sv.recs);
	for (size_t i = 0; i < sv.nlost; i++) {
		free(sv.lost[i].lo);
		free(sv.lost[i].hi);
	}
	free(sv.lost);
	free(bad);
	if (stats)
		*stats = sv.st;
	return rc;
}
