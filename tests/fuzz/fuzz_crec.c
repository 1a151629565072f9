/*
 * fuzz_crec.c - the store's checkpoint record (store/crec.c): the bytes
 * the store keeps per checkpoint, and the first frame of an export file.
 *
 * Contract: crec_decode() gives RW_ECORRUPT, RW_ECHECKSUM, RW_EVERSION or
 * -ENOMEM and leaves nothing allocated (the record all zero); an accepted
 * record has at most STORE_MAPS_MAX maps, memory first without a name,
 * disks with distinct names, each map within the limits with the height
 * its size needs and a root that is zero exactly when no page is present;
 * crec_view() describes it; and crec_encode() gives back the same bytes
 * (but for the reserved u16 at offset 6, which is written as 0, and the
 * checksum that covers it).
 */
#include <errno.h>
#include <string.h>
#include <xxhash.h>

#include "fuzz_common.h"
#include "store_internal.h"

static void one(const uint8_t *data, size_t size)
{
	struct store_crec c;
	struct byte_writer w = BYTE_WRITER_INIT;
	int ret;

	ret = crec_decode(data, size, &c);
	if (ret) {
		FUZZ_CHECK(ret == RW_ECORRUPT || ret == RW_ECHECKSUM || ret == RW_EVERSION ||
				   ret == -ENOMEM,
			   "error %d (%s)", ret, rw_errname(ret));
		FUZZ_CHECK(fuzz_is_zero(&c, sizeof(c)), "a refused record left something behind");
		return;
	}
	FUZZ_CHECK(c.nmaps >= 1 && c.nmaps <= STORE_MAPS_MAX, "%zu maps", c.nmaps);
	FUZZ_CHECK(c.maps[0].name == NULL, "memory has a name");
	FUZZ_CHECK(!c.label || strlen(c.label) <= STORE_LABEL_MAX, "label too long");
	FUZZ_CHECK(c.config_len <= STORE_BLOB_MAX && (c.config_len == 0) == (c.config == NULL),
		   "config of %zu bytes", c.config_len);
	for (size_t i = 0; i < c.nmaps; i++) {
		const struct map_rec *m = &c.maps[i];

		FUZZ_CHECK(i == 0 || (m->name && m->name[0] && strlen(m->name) <= STORE_NAME_MAX),
			   "map %zu without a name", i);
		for (size_t j = 1; j < i; j++)
			FUZZ_CHECK(strcmp(m->name, c.maps[j].name), "two maps named %s", m->name);
		FUZZ_CHECK(m->npages <= STORE_MAP_PAGES_MAX && m->present <= m->npages &&
				   m->height == tree_height(m->npages) && m->height >= 1 &&
				   m->height <= TREE_HEIGHT_MAX,
			   "map %zu: %llu pages, %llu present, height %u", i,
			   (unsigned long long)m->npages, (unsigned long long)m->present, m->height);
		FUZZ_CHECK((m->present == 0) == store_hash_is_zero(&m->root),
			   "map %zu: root and present count disagree", i);
	}
	ret = crec_view(&c);
	FUZZ_CHECK(ret == 0 || ret == -ENOMEM, "crec_view gave %d", ret);
	if (!ret)
		FUZZ_CHECK(c.info.ndisks == c.nmaps - 1 && c.info.mem.npages == c.maps[0].npages,
			   "the view does not match the record");

	ret = crec_encode(&c, &w);
	FUZZ_CHECK(ret == 0 || ret == -ENOMEM, "crec_encode gave %d", ret);
	if (!ret) {
		FUZZ_CHECK(w.len == size, "%zu bytes decoded, %zu encoded", size, w.len);
		FUZZ_CHECK(memcmp(w.buf, data, 6) == 0 && get_le16(w.buf + 6) == 0 &&
				   memcmp(w.buf + 8, data + 8, size - 16) == 0,
			   "the encoding differs from the decoded bytes");
	}
	bw_free(&w);
	crec_free(&c);
	FUZZ_CHECK(fuzz_is_zero(&c, sizeof(c)), "crec_free left something behind");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *fixed;

	one(data, size);
	/* the same bytes with the trailing XXH3-64 made right */
	if (size >= 12) {
		fixed = fuzz_dup(data, size);
		put_le64(fixed + size - 8, XXH3_64bits(fixed, size - 8));
		if (memcmp(fixed, data, size))
			one(fixed, size);
		free(fixed);
	}
	return 0;
}
