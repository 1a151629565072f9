/*
 * state_config.c - the configuration record ("config"; layout and checks in
 * state.h), with the hooks for tagged fields that other code owns.
 */
#include "state.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "memory.h"
#include "state_codec.h"
#include "util.h"

#define CONFIG_KEY "config"

static bool bounded(const char *s, size_t cap)
{
	return strnlen(s, cap) < cap;
}

int state_config_encode_ext(const struct vm_config *cfg, const struct state_config_ext *ext,
			    uint8_t **buf, size_t *len)
{
	struct rec_writer w;
	int ret;

	*buf = NULL;
	*len = 0;
	if (!bounded(cfg->kernel, sizeof(cfg->kernel)) || !bounded(cfg->args, sizeof(cfg->args)) ||
	    !bounded(cfg->serial_out, sizeof(cfg->serial_out)))
		return -EINVAL;
	rec_writer_init(&w, STATE_KIND_CONFIG, STATE_CONFIG_VERSION);
	rec_put_u64(&w, cfg->mem_size);
	rec_put_u32(&w, cfg->ncpus);
	rec_put_u32(&w, (uint32_t)cfg->entry);
	rec_put_str(&w, cfg->kernel);
	rec_put_str(&w, cfg->args);
	rec_put_str(&w, cfg->serial_out);
	rec_put_u8(&w, cfg->serial_in ? 1 : 0);
	ret = 0;
	for (unsigned i = 0; i < cfg->ndisks && i < RW_MAX_DISKS; i++) {
		const struct vm_disk_config *d = &cfg->disks[i];
		uint8_t ro = d->ro ? 1 : 0, engine = (uint8_t)d->engine;

		if (!bounded(d->path, sizeof(d->path)) || !bounded(d->id, sizeof(d->id))) {
			ret = -EINVAL;
			break;
		}
		rec_tag_begin(&w, STATE_CFG_TAG_DISK);
		rec_put_tagged(&w, STATE_CFG_DISK_PATH, d->path, strlen(d->path));
		rec_put_tagged(&w, STATE_CFG_DISK_ID, d->id, strlen(d->id));
		rec_put_tagged(&w, STATE_CFG_DISK_RO, &ro, 1);
		rec_put_tagged(&w, STATE_CFG_DISK_ENGINE, &engine, 1);
		rec_tag_end(&w);
	}
	if (!ret && ext && ext->put)
		ret = ext->put(ext->arg, &w);
	if (!ret)
		ret = rec_take(&w, buf, len);
	rec_writer_free(&w);
	return ret;
}

int state_config_encode(const struct vm_config *cfg, uint8_t **buf, size_t *len)
{
	return state_config_encode_ext(cfg, NULL, buf, len);
}

/* Read a string field, naming it if it is missing, too long or has a NUL. */
static int get_str_field(struct rec_reader *r, struct why *w, const char *name, char *buf,
			 size_t cap)
{
	if (rec_error(r))
		return state_refuse_reader(w, r, "mem_size, ncpus, entry");
	if (rec_get_str(r, buf, cap))
		return state_refuse(w, rec_error(r),
			      "%s: truncated, longer than %zu bytes, or holding a NUL", name,
			      cap - 1);
	return 0;
}

/* A string field of a disk: its bytes, no NUL, shorter than cap. */
static int disk_str(struct rec_reader *f, char *buf, size_t cap, const char *name)
{
	size_t n = rec_remaining(f);

	if (n >= cap)
		return rec_fail(f, RW_ECORRUPT, name);
	if (rec_get_bytes(f, buf, n))
		return rec_fail(f, RW_ECORRUPT, name);
	buf[n] = 0;
	if (strlen(buf) != n)
		return rec_fail(f, RW_ECORRUPT, name);
	return 0;
}

/* One STATE_CFG_TAG_DISK field into the next slot of cfg->disks. */
static int parse_disk(struct rec_reader *field, struct vm_config *cfg, struct why *w)
{
	struct vm_disk_config d = { 0 };
	struct rec_reader f;
	uint16_t tag;
	uint8_t v;
	bool have_path = false;
	int ret;

	if (cfg->ndisks >= RW_MAX_DISKS)
		return state_refuse(w, RW_ECORRUPT, "disks: more than %d", RW_MAX_DISKS);
	while ((ret = rec_next_tag(field, &tag, &f)) > 0) {
		switch (tag) {
		case STATE_CFG_DISK_PATH:
			if (disk_str(&f, d.path, sizeof(d.path), "disk.path"))
				return state_refuse_reader(w, &f, "disk.path");
			have_path = d.path[0] != 0;
			break;
		case STATE_CFG_DISK_ID:
			if (disk_str(&f, d.id, sizeof(d.id), "disk.id"))
				return state_refuse_reader(w, &f, "disk.id");
			break;
		case STATE_CFG_DISK_RO:
			if (rec_get_u8(&f, &v) || v > 1)
				return state_refuse(w, RW_ECORRUPT, "disk %u: ro: not 0 or 1", cfg->ndisks);
			d.ro = v;
			break;
		case STATE_CFG_DISK_ENGINE:
			if (rec_get_u8(&f, &v) || v > DISK_ENGINE_SYNC)
				return state_refuse(w, RW_ECORRUPT, "disk %u: engine: unknown", cfg->ndisks);
			d.engine = (enum disk_engine)v;
			break;
		default:
			if (rec_tag_unknown(field, tag))
				return state_refuse(w, RW_EVERSION, "disk %u: tag 0x%04x: unknown critical field",
					      cfg->ndisks, tag);
		}
	}
	if (ret < 0)
		return state_refuse_reader(w, field, "disk");
	if (!have_path)
		return state_refuse(w, RW_ECORRUPT, "disk %u: path: missing or empty", cfg->ndisks);
	for (unsigned i = 0; d.id[0] && i < cfg->ndisks; i++)
		if (strcmp(cfg->disks[i].id, d.id) == 0)
			return state_refuse(w, RW_ECORRUPT, "disk %u: id '%s' used twice", cfg->ndisks, d.id);
	cfg->disks[cfg->ndisks++] = d;
	return 0;
}

static int parse_config(struct rec_reader *r, const struct state_config_ext *ext,
			struct vm_config *cfg, struct why *w)
{
	struct rec_reader field;
	uint32_t ncpus, entry;
	uint8_t serial_in;
	uint16_t tag;
	int ret;

	cfg->mem_size = g64(r);
	ncpus = g32(r);
	entry = g32(r);
	if ((ret = get_str_field(r, w, "kernel", cfg->kernel, sizeof(cfg->kernel))) ||
	    (ret = get_str_field(r, w, "args", cfg->args, sizeof(cfg->args))) ||
	    (ret = get_str_field(r, w, "serial_out", cfg->serial_out, sizeof(cfg->serial_out))))
		return ret;
	serial_in = g8(r);
	if (rec_error(r))
		return state_refuse_reader(w, r, "serial_in");

	while ((ret = rec_next_tag(r, &tag, &field)) > 0) {
		int took = 0;

		if (tag == STATE_CFG_TAG_DISK) {
			ret = parse_disk(&field, cfg, w);
			if (ret)
				return ret;
			continue;
		}
		if (ext && ext->tag) {
			took = ext->tag(ext->arg, tag, &field);
			if (took < 0) {
				if (!rec_error(r))
					rec_fail(r, took, "tagged field");
				return state_refuse_reader(w, r, "tagged fields");
			}
		}
		if (!took && rec_tag_unknown(r, tag))
			return state_refuse(w, RW_EVERSION,
				      "tag 0x%04x: a critical field this build does not know", tag);
		if (rec_error(r))
			return state_refuse_reader(w, r, "tagged fields");
	}
	if (ret < 0 || rec_expect_end(r))
		return state_refuse_reader(w, r, "tagged fields");

	if (cfg->mem_size < RW_MEM_MIN || cfg->mem_size > RW_MEM_MAX)
		return state_refuse(w, RW_ECORRUPT, "mem_size: %llu bytes, outside %llu MiB..%llu GiB",
			      (unsigned long long)cfg->mem_size, RW_MEM_MIN >> 20, RW_MEM_MAX >> 30);
	if (cfg->mem_size % (2 * MiB))
		return state_refuse(w, RW_ECORRUPT, "mem_size: %llu bytes, not a multiple of 2 MiB",
			      (unsigned long long)cfg->mem_size);
	if (ncpus < 1 || ncpus > RW_MAX_CPUS)
		return state_refuse(w, RW_ECORRUPT, "ncpus: %u, outside 1..%u", ncpus, RW_MAX_CPUS);
	cfg->ncpus = ncpus;
	if (entry != VM_ENTRY_KERNEL && entry != VM_ENTRY_USER)
		return state_refuse(w, RW_ECORRUPT, "entry: %u is not a known entry", entry);
	cfg->entry = (enum vm_entry)entry;
	if (serial_in > 1)
		return state_refuse(w, RW_ECORRUPT, "serial_in: %u, not 0 or 1", serial_in);
	cfg->serial_in = serial_in;
	return 0;
}

int state_config_decode_ext(const void *buf, size_t len, const struct state_config_ext *ext,
			    struct vm_config *out, char *why, size_t whylen)
{
	struct rec_reader r;
	struct why w;
	int ret;

	state_why_init(&w, why, whylen, CONFIG_KEY);
	config_init(out);
	ret = state_open_record(&r, buf, len, STATE_KIND_CONFIG, 1, STATE_CONFIG_VERSION, &w);
	if (!ret)
		ret = parse_config(&r, ext, out, &w);
	if (ret)
		config_init(out);
	return ret;
}

int state_config_decode(const void *buf, size_t len, struct vm_config *out, char *why,
			size_t whylen)
{
	return state_config_decode_ext(buf, len, NULL, out, why, whylen);
}
