/*
 * store_testing.h - hooks for tests only. Production code never calls these.
 *
 * They exist so tests can reach states that are hard to produce honestly:
 * two different contents under one key, a store of a newer format, leaked
 * references of the kind a crash in older code could leave.
 */
#ifndef RW_STORE_STORE_TESTING_H
#define RW_STORE_STORE_TESTING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;
struct store_hash;

/*
 * Called after every chunk hash is computed; may overwrite *h (for example
 * to force two contents under one key). kind is 1 for pages, 2 for nodes.
 */
typedef void (*store_hash_hook_fn)(void *arg, int kind, const void *data,
				   size_t len, struct store_hash *h);

/* Install (or with fn NULL remove) the hash hook on this handle. */
void store_test_set_hash_hook(struct store *s, store_hash_hook_fn fn, void *arg);

/*
 * Page walks of this handle look pages up in windows of at most window
 * pages (0 = the default) and use a second thread for windows of at least
 * par_min pages (0 = the default, UINT32_MAX = never). Small values let
 * tests cross window boundaries and take the threaded paths cheaply.
 */
void store_test_set_read_window(struct store *s, uint32_t window, uint32_t par_min);

/* Overwrite the store's recorded format version. @return 0 or an error. */
int store_test_set_format(struct store *s, uint32_t version);

/*
 * Add delta to the reference count of chunk h without any other change
 * (a leak when positive). @return 0, RW_ENOTFOUND
 */
int store_test_ref(struct store *s, const struct store_hash *h, int64_t delta);

/*
 * Store a page chunk with reference count 0 that nothing references, as an
 * interrupted writer of an older layout could leave. *h receives its key.
 */
int store_test_orphan_chunk(struct store *s, const void *page,
			    struct store_hash *h);

/* Key the store gives to a page's content (after the hash hook). */
void store_test_page_key(struct store *s, const void *page, struct store_hash *h);

#endif
