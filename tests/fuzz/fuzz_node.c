/*
 * fuzz_node.c - the store's tree nodes and chunk heads (store/chunk.c):
 * node_decode() reads a node's bytes (from the store's file, or from a
 * chunk frame of an export file), head_decode() a chunk head's.
 *
 * Contract: a node is accepted only in its one encoding (node_encode()
 * gives back the same bytes), with a level below TREE_HEIGHT_MAX, 1 to
 * STORE_FANOUT entries, the last one not a hole, and zero entries after
 * it; a head is accepted only with a known kind, codec 0, and a length a
 * chunk of that kind can have. Every refusal is RW_ECORRUPT. The input's
 * first 8 bytes, as a page count, also check tree_height() against
 * tree_span().
 */
#include <string.h>

#include "fuzz_common.h"
#include "store_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t out[NODE_MAX];
	struct chunk_head h;
	struct node n;
	MDB_val v = { size, (void *)data };
	int ret;

	memset(&n, 0x55, sizeof(n));
	ret = node_decode(data, size, &n);
	FUZZ_CHECK(ret == 0 || ret == RW_ECORRUPT, "node_decode gave %d", ret);
	if (!ret) {
		FUZZ_CHECK(n.level < TREE_HEIGHT_MAX && n.count >= 1 && n.count <= STORE_FANOUT,
			   "level %u, %u entries", n.level, n.count);
		FUZZ_CHECK(!store_hash_is_zero(&n.e[n.count - 1]), "the last entry is a hole");
		FUZZ_CHECK(fuzz_is_zero(n.e + n.count, (STORE_FANOUT - n.count) * sizeof(n.e[0])),
			   "entries after the count are not holes");
		FUZZ_CHECK(node_encode(&n, out) == size && memcmp(out, data, size) == 0,
			   "a node accepted in another encoding than its own");
	}

	ret = head_decode(&v, &h);
	FUZZ_CHECK(ret == 0 || ret == RW_ECORRUPT, "head_decode gave %d", ret);
	if (!ret)
		FUZZ_CHECK((h.kind == CHUNK_PAGE && h.len == STORE_PAGE_SIZE) ||
				   (h.kind == CHUNK_NODE && h.len >= 1 && h.len <= CHUNK_MAX),
			   "head of kind %u, %u bytes", h.kind, h.len);

	if (size >= 8) {
		uint64_t np = get_le64(data);
		unsigned ht = tree_height(np);

		FUZZ_CHECK(ht >= 1 && ht <= TREE_HEIGHT_MAX, "tree_height(%llu) = %u",
			   (unsigned long long)np, ht);
		if (np <= STORE_MAP_PAGES_MAX)
			FUZZ_CHECK(tree_span(ht - 1) >= np && (ht == 1 || tree_span(ht - 2) < np),
				   "tree_height(%llu) = %u is not the least that holds it",
				   (unsigned long long)np, ht);
	}
	return 0;
}
