/*
 * fuzz_devices.c - the device records, through the device descriptors'
 * validate ops as a restore reaches them (state_devices_validate(),
 * ckpt/state.h): the serial UART's record and virtio-blk's, which holds
 * the virtio-mmio transport's (queues, features) and the disk's (identity,
 * the blocks its overlay holds).
 *
 * The devices are the board's (fuzz_board_init: a VM made by hand, no
 * KVM). The input is one record; it stands for the device whose kind its
 * header names (for any other kind: the UART if its size is odd, else the
 * disk), and every other device gets the record it saved at start-up.
 *
 * Contract: a refusal is an error the record layer or the device gives,
 * explained as "dev/<type>/<id>: ..." naming the fuzzed device (the saved
 * records of the others are never refused); a record the validators accept
 * loads (state_devices_load), and what the devices then save validates
 * again. The saved records are loaded back after every accepted input.
 */
#include <errno.h>
#include <string.h>

#include "fuzz_common.h"
#include "record.h"
#include "serial.h"
#include "state.h"
#include "virtio_blk.h"
#include "vm.h"

#define MAX_RECORDS 8

struct table {
	char key[MAX_RECORDS][STATE_KEY_MAX];
	uint8_t *data[MAX_RECORDS];
	size_t len[MAX_RECORDS];
	unsigned n;
};

/* Where lookups go: the fuzzed record for one key, a table for the others. */
struct source {
	const struct table *t;
	const char *key;
	const uint8_t *data;
	size_t len;
};

static struct vm vm;
static struct table saved;
static char key_serial[STATE_KEY_MAX], key_blk[STATE_KEY_MAX];

static int table_put(void *arg, const char *key, uint32_t version, const void *data, size_t len)
{
	struct table *t = arg;

	FUZZ_CHECK(t->n < MAX_RECORDS, "more than %d device records", MAX_RECORDS);
	snprintf(t->key[t->n], sizeof(t->key[0]), "%s", key);
	t->data[t->n] = fuzz_dup(data, len);
	t->len[t->n] = len;
	t->n++;
	return 0;
}

static void table_free(struct table *t)
{
	for (unsigned i = 0; i < t->n; i++)
		free(t->data[i]);
	t->n = 0;
}

static int lookup(void *arg, const char *key, const void **data, size_t *len)
{
	const struct source *s = arg;

	if (s->key && strcmp(key, s->key) == 0) {
		*data = s->data;
		*len = s->len;
		return 0;
	}
	for (unsigned i = 0; i < s->t->n; i++) {
		if (strcmp(key, s->t->key[i]) == 0) {
			*data = s->t->data[i];
			*len = s->t->len[i];
			return 0;
		}
	}
	return RW_ENOTFOUND;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct source s = { .t = &saved };
	char why[512];
	int ret;

	fuzz_board_init(&vm);
	snprintf(key_serial, sizeof(key_serial), "dev/%s/serial@0x3f8", SERIAL_TYPE_NAME);
	snprintf(key_blk, sizeof(key_blk), "dev/%s/data", VIRTIO_BLK_TYPE_NAME);
	ret = state_devices_save(&vm, table_put, &saved);
	FUZZ_CHECK(ret == 0, "saving the devices: %d", ret);
	FUZZ_CHECK(saved.n == 2, "%u device records, expected the UART's and the disk's", saved.n);
	ret = state_devices_validate(&vm, lookup, &s, why, sizeof(why));
	FUZZ_CHECK(ret == 0, "the devices refuse their own records: %s", why);
	return 0;
}

static void one(const uint8_t *data, size_t size)
{
	struct rec_header h;
	struct source s = { .t = &saved, .data = data, .len = size };
	struct table again = { .n = 0 };
	struct source s2 = { .t = &again };
	char why[512];
	int ret;

	if (rec_peek(data, size, &h) == 0 && h.kind == rec_kind_id(SERIAL_TYPE_NAME))
		s.key = key_serial;
	else if (rec_peek(data, size, &h) == 0 && h.kind == rec_kind_id(VIRTIO_BLK_TYPE_NAME))
		s.key = key_blk;
	else
		s.key = (size & 1) ? key_serial : key_blk;

	memset(why, 0x55, sizeof(why));
	ret = state_devices_validate(&vm, lookup, &s, why, sizeof(why));
	if (ret) {
		FUZZ_CHECK(ret == RW_ECORRUPT || ret == RW_ECHECKSUM || ret == RW_EVERSION ||
				   ret == -ENOMEM,
			   "%s: error %d (%s)", s.key, ret, rw_errname(ret));
		FUZZ_CHECK(memchr(why, 0, sizeof(why)) && fuzz_why_names(why, s.key),
			   "the refusal of %s is explained as '%.200s'", s.key, why);
		return;
	}
	FUZZ_CHECK(why[0] == 0, "accepted, with a message: %.200s", why);

	/* accepted: it loads, and the state it gives saves to records that validate */
	ret = state_devices_load(&vm, lookup, &s, why, sizeof(why));
	FUZZ_CHECK(ret == 0, "validated, then the load refuses: %s", why);
	ret = state_devices_save(&vm, table_put, &again);
	FUZZ_CHECK(ret == 0, "saving a loaded state: %d", ret);
	ret = state_devices_validate(&vm, lookup, &s2, why, sizeof(why));
	FUZZ_CHECK(ret == 0, "the state loaded from %s saves to a refused record: %s", s.key, why);
	table_free(&again);

	/* back to the start-up state */
	s.key = NULL;
	ret = state_devices_load(&vm, lookup, &s, why, sizeof(why));
	FUZZ_CHECK(ret == 0, "loading the start-up records again: %s", why);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_run_fixed(one, data, size);
	return 0;
}
