/*
 * crec.c - the store's checkpoint record (written with the base's byte
 * serialiser, codec.h), and the keys of the record DB's named records.
 *
 * Checkpoint record, version 1 (little-endian, field by field):
 *
 *   u32 magic "RWCK"   u16 version (1)   u16 0
 *   u64 id   u64 parent   u64 time_ns (CLOCK_REALTIME)
 *   u32 label_len   label bytes
 *   u32 config_len  config bytes
 *   u32 nmaps, then per map (map 0 is guest memory, with an empty name):
 *       u16 name_len  name  u64 npages  u64 present  u8 height  u8 root[16]
 *   u64 x 7 commit counts (pages, zero_pages, new_chunks, new_bytes,
 *       dedup_hits, new_nodes, commit_ns)
 *   u64 XXH3-64 of every byte above
 */
#include <errno.h>
#include <stdlib.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "store_internal.h"

#define CREC_MAGIC 0x4b435752u
#define CREC_VERSION 1

int crec_encode(const struct store_crec *c, struct byte_writer *w)
{
	size_t llen = c->label ? strlen(c->label) : 0;

	bw_put_u32(w, CREC_MAGIC);
	bw_put_u16(w, CREC_VERSION);
	bw_put_u16(w, 0);
	bw_put_u64(w, c->id);
	bw_put_u64(w, c->parent);
	bw_put_u64(w, c->time_ns);
	bw_put_u32(w, (uint32_t)llen);
	bw_put_bytes(w, c->label, llen);
	bw_put_u32(w, (uint32_t)c->config_len);
	bw_put_bytes(w, c->config, c->config_len);
	bw_put_u32(w, (uint32_t)c->nmaps);
	for (size_t i = 0; i < c->nmaps; i++) {
		const struct map_rec *m = &c->maps[i];
		size_t nlen = m->name ? strlen(m->name) : 0;

		bw_put_u16(w, (uint16_t)nlen);
		bw_put_bytes(w, m->name, nlen);
		bw_put_u64(w, m->npages);
		bw_put_u64(w, m->present);
		bw_put_u8(w, (uint8_t)m->height);
		bw_put_bytes(w, m->root.b, 16);
	}
	bw_put_u64(w, c->stats.pages);
	bw_put_u64(w, c->stats.zero_pages);
	bw_put_u64(w, c->stats.new_chunks);
	bw_put_u64(w, c->stats.new_bytes);
	bw_put_u64(w, c->stats.dedup_hits);
	bw_put_u64(w, c->stats.new_nodes);
	bw_put_u64(w, c->stats.commit_ns);
	if (!w->err)
		bw_put_u64(w, XXH3_64bits(w->buf, w->len));
	return w->err;
}

/* The next len bytes as a malloc'd C string; NULL (error recorded) if not. */
static char *take_str(struct byte_reader *r, size_t len)
{
	const uint8_t *p = br_take(r, len);
	char *s;

	if (!p)
		return NULL;
	if (memchr(p, 0, len)) {
		br_fail(r, RW_ECORRUPT, NULL);
		return NULL;
	}
	s = malloc(len + 1);
	if (!s) {
		br_fail(r, -ENOMEM, NULL);
		return NULL;
	}
	memcpy(s, p, len);
	s[len] = 0;
	return s;
}

int crec_decode(const void *data, size_t len, struct store_crec *c)
{
	struct byte_reader r;
	uint32_t n;

	memset(c, 0, sizeof(*c));
	if (len < 12)
		return RW_ECORRUPT;
	if (XXH3_64bits(data, len - 8) != get_le64((const uint8_t *)data + len - 8))
		return RW_ECHECKSUM;
	br_init(&r, data, len - 8);
	if (br_get_u32(&r) != CREC_MAGIC)
		return RW_ECORRUPT;
	if (br_get_u16(&r) != CREC_VERSION)
		return RW_EVERSION;
	br_get_u16(&r);
	c->id = br_get_u64(&r);
	c->parent = br_get_u64(&r);
	c->time_ns = br_get_u64(&r);
	n = br_get_u32(&r);
	if (n > STORE_LABEL_MAX)
		br_fail(&r, RW_ECORRUPT, NULL);
	c->label = take_str(&r, n);
	n = br_get_u32(&r);
	if (n > STORE_BLOB_MAX)
		br_fail(&r, RW_ECORRUPT, NULL);
	if (!r.err && n) {
		const uint8_t *p = br_take(&r, n);

		c->config = p ? malloc(n) : NULL;
		if (p && !c->config)
			br_fail(&r, -ENOMEM, NULL);
		if (c->config) {
			memcpy(c->config, p, n);
			c->config_len = n;
		}
	}
	n = br_get_u32(&r);
	if (n == 0 || n > STORE_MAPS_MAX)
		br_fail(&r, RW_ECORRUPT, NULL);
	if (!r.err) {
		c->maps = calloc(n, sizeof(*c->maps));
		if (!c->maps)
			br_fail(&r, -ENOMEM, NULL);
		else
			c->nmaps = n;
	}
	for (size_t i = 0; !r.err && i < c->nmaps; i++) {
		struct map_rec *m = &c->maps[i];
		uint16_t nlen = br_get_u16(&r);

		if ((i == 0) != (nlen == 0) || nlen > STORE_NAME_MAX) {
			br_fail(&r, RW_ECORRUPT, NULL);
			break;
		}
		if (nlen)
			m->name = take_str(&r, nlen);
		m->npages = br_get_u64(&r);
		m->present = br_get_u64(&r);
		m->height = br_get_u8(&r);
		br_get_bytes(&r, m->root.b, 16);
		if (r.err)
			break;
		if (m->npages > STORE_MAP_PAGES_MAX || m->present > m->npages ||
		    m->height != tree_height(m->npages) ||
		    (m->present == 0) != store_hash_is_zero(&m->root))
			br_fail(&r, RW_ECORRUPT, NULL);
		for (size_t j = 1; !r.err && j < i; j++)
			if (!strcmp(c->maps[j].name, m->name))
				br_fail(&r, RW_ECORRUPT, NULL);
	}
	c->stats.pages = br_get_u64(&r);
	c->stats.zero_pages = br_get_u64(&r);
	c->stats.new_chunks = br_get_u64(&r);
	c->stats.new_bytes = br_get_u64(&r);
	c->stats.dedup_hits = br_get_u64(&r);
	c->stats.new_nodes = br_get_u64(&r);
	c->stats.commit_ns = br_get_u64(&r);
	if (br_end(&r))
		crec_free(c);
	return r.err;
}

void crec_free(struct store_crec *c)
{
	for (size_t i = 0; i < c->nmaps; i++)
		free(c->maps[i].name);
	free(c->maps);
	free(c->label);
	free(c->config);
	free(c->infos);
	memset(c, 0, sizeof(*c));
}

static void map_info(const struct map_rec *m, struct store_map_info *i)
{
	i->name = m->name;
	i->npages = m->npages;
	i->present = m->present;
	i->height = m->height;
	i->root = m->root;
}

int crec_view(struct store_crec *c)
{
	struct store_ckpt_info *i = &c->info;

	free(c->infos);
	c->infos = NULL;
	if (c->nmaps > 1) {
		c->infos = calloc(c->nmaps - 1, sizeof(*c->infos));
		if (!c->infos)
			return -ENOMEM;
	}
	for (size_t k = 1; k < c->nmaps; k++)
		map_info(&c->maps[k], &c->infos[k - 1]);
	i->id = c->id;
	i->parent = c->parent;
	i->time_ns = c->time_ns;
	i->label = c->label ? c->label : "";
	i->config = c->config;
	i->config_len = c->config_len;
	map_info(&c->maps[0], &i->mem);
	i->ndisks = c->nmaps - 1;
	i->disks = c->infos;
	i->nrecords = c->nrecords;
	i->record_bytes = c->record_bytes;
	i->stats = c->stats;
	return 0;
}

int crec_get(struct store *s, MDB_txn *txn, uint64_t id, struct store_crec *c)
{
	uint8_t kb[8];
	MDB_val k = { 8, kb }, v;
	int rc;

	put_be64(kb, id);
	rc = store_mdb_err(mdb_get(txn, s->ckpt, &k, &v));
	if (rc)
		return rc;
	rc = crec_decode(v.mv_data, v.mv_size, c);
	if (!rc && c->id != id) {
		crec_free(c);
		rc = RW_ECORRUPT;
	}
	return rc;
}

size_t recdb_key(uint8_t *buf, uint64_t id, const char *name, size_t namelen)
{
	put_be64(buf, id);
	memcpy(buf + 8, name, namelen);
	return 8 + namelen;
}

int recdb_count(struct store *s, MDB_txn *txn, uint64_t id, size_t *n,
		uint64_t *bytes)
{
	MDB_cursor *cur;
	uint8_t kb[8];
	MDB_val k = { 8, kb }, v;
	int rc;

	*n = 0;
	*bytes = 0;
	put_be64(kb, id);
	rc = store_mdb_err(mdb_cursor_open(txn, s->rec, &cur));
	if (rc)
		return rc;
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && k.mv_size >= 8 && get_be64(k.mv_data) == id) {
		(*n)++;
		if (v.mv_size >= RECDB_HDR)
			*bytes += v.mv_size - RECDB_HDR;
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : store_mdb_err(rc);
}
