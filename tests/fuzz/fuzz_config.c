/*
 * fuzz_config.c - the stored configuration, state_config_decode() and
 * state_config_decode_ext() (ckpt/state.h): the record a restore reads
 * first, before anything else of a checkpoint.
 *
 * Contract: an error is one state.h lists, explained as
 * "config: <field>: <reason>", with the output config_init()'s; an
 * accepted configuration is within the documented limits and encodes to a
 * record that decodes to the same configuration. The _ext variant runs
 * with hooks that take tags 0x0200 and 0x8200 (a u32 each, the value
 * 0xffffffff refused with rec_fail) and that fail with -ENOMEM on 0x0201.
 */
#include <errno.h>
#include <string.h>

#include "config.h"
#include "fuzz_common.h"
#include "memory.h"
#include "state.h"

static struct vm_config cfg, again, init;

static int ext_tag(void *arg, uint16_t tag, struct rec_reader *field)
{
	uint32_t v;

	(void)arg;
	if (tag == 0x0201)
		return -ENOMEM;
	if (tag != 0x0200 && tag != 0x8200)
		return 0;
	if (rec_get_u32(field, &v) || rec_expect_end(field))
		return 1;
	if (v == 0xffffffffu)
		rec_fail(field, RW_ECORRUPT, "ext.value");
	return 1;
}

static const struct state_config_ext ext = { .tag = ext_tag };

static bool config_ok(const struct vm_config *c)
{
	if (c->mem_size < RW_MEM_MIN || c->mem_size > RW_MEM_MAX || c->mem_size % (2 << 20))
		return false;
	if (c->ncpus < 1 || c->ncpus > RW_MAX_CPUS || c->ndisks > RW_MAX_DISKS)
		return false;
	if (c->entry != VM_ENTRY_KERNEL && c->entry != VM_ENTRY_USER)
		return false;
	if (!memchr(c->kernel, 0, sizeof(c->kernel)) || !memchr(c->args, 0, sizeof(c->args)) ||
	    !memchr(c->serial_out, 0, sizeof(c->serial_out)))
		return false;
	for (unsigned i = 0; i < c->ndisks; i++) {
		const struct vm_disk_config *d = &c->disks[i];

		if (!d->path[0] || !memchr(d->path, 0, sizeof(d->path)) ||
		    !memchr(d->id, 0, sizeof(d->id)) || d->engine > DISK_ENGINE_SYNC)
			return false;
		for (unsigned j = 0; j < i; j++)
			if (d->id[0] && strcmp(d->id, c->disks[j].id) == 0)
				return false;
	}
	return true;
}

/* Same configuration (strings up to their NUL: bytes after it mean nothing). */
static bool config_equal(const struct vm_config *a, const struct vm_config *b)
{
	if (a->mem_size != b->mem_size || a->ncpus != b->ncpus || a->entry != b->entry ||
	    strcmp(a->kernel, b->kernel) || strcmp(a->args, b->args) ||
	    strcmp(a->serial_out, b->serial_out) || a->serial_in != b->serial_in ||
	    a->ndisks != b->ndisks || a->dirty_ring_entries != b->dirty_ring_entries)
		return false;
	for (unsigned i = 0; i < a->ndisks; i++)
		if (strcmp(a->disks[i].path, b->disks[i].path) ||
		    strcmp(a->disks[i].id, b->disks[i].id) || a->disks[i].ro != b->disks[i].ro ||
		    a->disks[i].engine != b->disks[i].engine)
			return false;
	return true;
}

static void one(const uint8_t *data, size_t size, const struct state_config_ext *x)
{
	char why[512];
	uint8_t *buf = NULL;
	size_t len = 0;
	int ret;

	memset(why, 0x55, sizeof(why));
	ret = state_config_decode_ext(data, size, x, &cfg, why, sizeof(why));
	if (ret) {
		FUZZ_CHECK(ret == RW_ECORRUPT || ret == RW_ECHECKSUM || ret == RW_EVERSION ||
				   (x && ret == -ENOMEM),
			   "error %d (%s)", ret, rw_errname(ret));
		FUZZ_CHECK(memchr(why, 0, sizeof(why)) && fuzz_why_names(why, "config"),
			   "refusal explained as '%.200s'", why);
		FUZZ_CHECK(memcmp(&cfg, &init, sizeof(cfg)) == 0,
			   "a refused configuration is not config_init()'s");
		return;
	}
	FUZZ_CHECK(config_ok(&cfg), "accepted a configuration outside the limits");
	if (x)
		return;
	ret = state_config_encode(&cfg, &buf, &len);
	FUZZ_CHECK(ret == 0, "an accepted configuration does not encode: %d", ret);
	ret = state_config_decode(buf, len, &again, why, sizeof(why));
	FUZZ_CHECK(ret == 0, "its own encoding is refused: %s", why);
	FUZZ_CHECK(config_equal(&cfg, &again), "the round trip changed it");
	free(buf);
}

static void both(const uint8_t *data, size_t size)
{
	one(data, size, NULL);
	one(data, size, &ext);
	(void)!state_config_decode(data, size, &cfg, NULL, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	config_init(&init);
	fuzz_run_fixed(both, data, size);
	return 0;
}
