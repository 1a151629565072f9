/*
 * The configuration record (ckpt/state.h): round trip, limits on every
 * value, string rules, tagged extensions and the disk hook. No KVM needed.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memory.h"
#include "record.h"
#include "state.h"
#include "util.h"

#define WHY 512

static void sample(struct vm_config *cfg)
{
	config_init(cfg);
	cfg->mem_size = 128 * MiB;
	cfg->ncpus = 4;
	cfg->entry = VM_ENTRY_USER;
	snprintf(cfg->kernel, sizeof(cfg->kernel), "/opt/guests/counter.elf");
	snprintf(cfg->args, sizeof(cfg->args), "iterations=1000 mode=fast");
	snprintf(cfg->serial_out, sizeof(cfg->serial_out), "/tmp/console.txt");
	cfg->serial_in = false;
}

static uint8_t *encode(const struct vm_config *cfg, size_t *len)
{
	uint8_t *buf = NULL;

	cr_assert_eq(state_config_encode(cfg, &buf, len), 0);
	return buf;
}

static void expect_refused(const uint8_t *buf, size_t len, int err, const char *field,
			   const char *what)
{
	struct vm_config out, init;
	char why[WHY] = "";
	int ret = state_config_decode(buf, len, &out, why, sizeof(why));

	cr_expect_eq(ret, err, "%s: got %s (%s), want %s", what, rw_errname(ret), why,
		     rw_errname(err));
	cr_expect_not_null(strstr(why, field), "%s: message '%s' does not name '%s'", what, why,
			   field);
	cr_expect_not_null(strstr(why, "config: "), "%s: '%s'", what, why);
	config_init(&init);
	cr_expect_eq(memcmp(&out, &init, sizeof(out)), 0, "%s: output not reset", what);
}

Test(state_config, roundtrip_is_exact_and_stable)
{
	struct vm_config cfg, out;
	size_t len, again_len;
	uint8_t *buf, *again;
	char why[WHY];
	struct rec_header h;

	sample(&cfg);
	buf = encode(&cfg, &len);
	cr_assert_eq(rec_peek(buf, len, &h), 0);
	cr_assert_eq(h.kind, rec_kind_id(STATE_KIND_CONFIG));
	cr_assert_eq(h.version, STATE_CONFIG_VERSION);
	cr_assert_eq(state_config_decode(buf, len, &out, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(memcmp(&cfg, &out, sizeof(cfg)), 0);
	again = encode(&out, &again_len);
	cr_assert_eq(again_len, len);
	cr_assert_eq(memcmp(again, buf, len), 0);
	free(again);
	free(buf);

	/* the extremes are accepted (empty strings: config_init's) */
	config_init(&cfg);
	cfg.mem_size = RW_MEM_MIN;
	cfg.ncpus = 1;
	cfg.entry = VM_ENTRY_KERNEL;
	cfg.serial_in = true;
	buf = encode(&cfg, &len);
	cr_assert_eq(state_config_decode(buf, len, &out, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(memcmp(&cfg, &out, sizeof(cfg)), 0);
	free(buf);
	cfg.mem_size = RW_MEM_MAX;
	cfg.ncpus = RW_MAX_CPUS;
	memset(cfg.args, 'a', sizeof(cfg.args) - 1);
	cfg.args[sizeof(cfg.args) - 1] = '\0';
	buf = encode(&cfg, &len);
	cr_assert_eq(state_config_decode(buf, len, &out, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(memcmp(&cfg, &out, sizeof(cfg)), 0);
	free(buf);
}

Test(state_config, values_out_of_range_refused)
{
	static const struct {
		uint64_t mem;
		unsigned ncpus;
		unsigned entry;
		const char *field;
	} cases[] = {
		{ 64 * MiB, 0, 0, "ncpus" },
		{ 64 * MiB, 65, 0, "ncpus" },
		{ 64 * MiB, 1000000, 0, "ncpus" },
		{ 15 * MiB, 1, 0, "mem_size" },
		{ 14 * MiB, 1, 0, "mem_size" },
		{ 65 * GiB, 1, 0, "mem_size" },
		{ 66 * GiB, 1, 0, "mem_size" },
		{ 17 * MiB, 1, 0, "mem_size" },
		{ 64 * MiB + 4096, 1, 0, "mem_size" },
		{ 0, 1, 0, "mem_size" },
		{ 64 * MiB, 1, 2, "entry" },
		{ 64 * MiB, 1, 0xffffffffu, "entry" },
	};
	struct vm_config cfg;

	for (unsigned k = 0; k < ARRAY_SIZE(cases); k++) {
		char what[64];
		size_t len;
		uint8_t *buf;

		sample(&cfg);
		cfg.mem_size = cases[k].mem;
		cfg.ncpus = cases[k].ncpus;
		cfg.entry = (enum vm_entry)cases[k].entry;
		snprintf(what, sizeof(what), "case %u (%s)", k, cases[k].field);
		buf = encode(&cfg, &len);
		expect_refused(buf, len, RW_ECORRUPT, cases[k].field, what);
		free(buf);
	}
}

/* A record written field by field, so that the strings can be bad. */
static uint8_t *hand_written(const char *kernel, size_t kernel_len, uint8_t serial_in,
			     const void *tail, size_t tail_len, size_t *len)
{
	struct rec_writer w;
	uint8_t *buf = NULL;

	rec_writer_init(&w, STATE_KIND_CONFIG, 1);
	rec_put_u64(&w, 64 * MiB);
	rec_put_u32(&w, 1);
	rec_put_u32(&w, 0);
	rec_put_blob(&w, kernel, kernel_len);
	rec_put_str(&w, "");
	rec_put_str(&w, "");
	rec_put_u8(&w, serial_in);
	rec_put_bytes(&w, tail, tail_len);
	cr_assert_eq(rec_take(&w, &buf, len), 0);
	rec_writer_free(&w);
	return buf;
}

Test(state_config, strings_and_flags_refused)
{
	static char longpath[RW_PATH_MAX + 1];
	size_t len;
	uint8_t *buf;
	struct vm_config out;
	char why[WHY];

	buf = hand_written("/a\0b", 4, 0, NULL, 0, &len);
	expect_refused(buf, len, RW_ECORRUPT, "kernel", "NUL inside");
	free(buf);

	memset(longpath, 'x', RW_PATH_MAX);
	buf = hand_written(longpath, RW_PATH_MAX, 0, NULL, 0, &len);
	expect_refused(buf, len, RW_ECORRUPT, "kernel", "path of RW_PATH_MAX bytes");
	free(buf);
	buf = hand_written(longpath, RW_PATH_MAX - 1, 0, NULL, 0, &len);
	cr_assert_eq(state_config_decode(buf, len, &out, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(strlen(out.kernel), RW_PATH_MAX - 1);
	free(buf);

	buf = hand_written("/k", 2, 2, NULL, 0, &len);
	expect_refused(buf, len, RW_ECORRUPT, "serial_in", "serial_in 2");
	free(buf);
}

Test(state_config, truncation_flips_version_and_kind_refused)
{
	struct vm_config cfg, out;
	struct rec_writer w;
	size_t len, wlen;
	uint8_t *buf, *wb = NULL;
	char why[WHY];

	sample(&cfg);
	buf = encode(&cfg, &len);
	for (size_t cut = 0; cut < len; cut++)
		cr_assert_eq(state_config_decode(buf, cut, &out, why, sizeof(why)), RW_ECORRUPT,
			     "cut %zu", cut);
	for (size_t cut = 0; cut < len - REC_HEADER_SIZE; cut++) {
		rec_writer_init(&w, STATE_KIND_CONFIG, 1);
		rec_put_bytes(&w, buf + REC_HEADER_SIZE, cut);
		cr_assert_eq(rec_take(&w, &wb, &wlen), 0);
		rec_writer_free(&w);
		int ret = state_config_decode(wb, wlen, &out, why, sizeof(why));
		cr_assert_eq(ret, RW_ECORRUPT, "payload cut %zu: %s (%s)", cut, rw_errname(ret), why);
		free(wb);
	}
	for (size_t i = REC_HEADER_SIZE; i < len; i++) {
		buf[i] ^= 0x04;
		cr_assert_eq(state_config_decode(buf, len, &out, why, sizeof(why)), RW_ECHECKSUM,
			     "byte %zu", i);
		buf[i] ^= 0x04;
	}

	rec_writer_init(&w, STATE_KIND_CONFIG, 2);
	rec_put_bytes(&w, buf + REC_HEADER_SIZE, len - REC_HEADER_SIZE);
	cr_assert_eq(rec_take(&w, &wb, &wlen), 0);
	rec_writer_free(&w);
	expect_refused(wb, wlen, RW_EVERSION, "header: version 2", "version 2");
	free(wb);
	rec_writer_init(&w, STATE_KIND_VCPU, 1);
	rec_put_bytes(&w, buf + REC_HEADER_SIZE, len - REC_HEADER_SIZE);
	cr_assert_eq(rec_take(&w, &wb, &wlen), 0);
	rec_writer_free(&w);
	expect_refused(wb, wlen, RW_ECORRUPT, "not a \"config\" record", "vcpu kind");
	free(wb);
	free(buf);
}

/* ---------------------------------------------------------------- disks */

Test(state_config, disks_round_trip_and_checks)
{
	struct vm_config cfg, out;
	uint8_t *buf = NULL;
	size_t len;
	char why[WHY];

	sample(&cfg);
	cfg.ndisks = 2;
	snprintf(cfg.disks[0].path, sizeof(cfg.disks[0].path), "/img/a.img");
	snprintf(cfg.disks[0].id, sizeof(cfg.disks[0].id), "data");
	snprintf(cfg.disks[1].path, sizeof(cfg.disks[1].path), "/img/b.img");
	cfg.disks[1].ro = true;
	cfg.disks[1].engine = DISK_ENGINE_SYNC;
	cr_assert_eq(state_config_encode(&cfg, &buf, &len), 0);
	cr_assert_eq(state_config_decode(buf, len, &out, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(memcmp(&cfg, &out, sizeof(cfg)), 0, "disks did not round-trip");
	free(buf);

	/* the same id twice is refused, naming it */
	snprintf(cfg.disks[1].id, sizeof(cfg.disks[1].id), "data");
	cr_assert_eq(state_config_encode(&cfg, &buf, &len), 0);
	cr_assert_eq(state_config_decode(buf, len, &out, why, sizeof(why)), RW_ECORRUPT);
	cr_assert_not_null(strstr(why, "'data' used twice"), "%s", why);
	free(buf);

	/* a disk without a path is refused */
	cfg.disks[1].id[0] = 0;
	cfg.disks[1].path[0] = 0;
	cr_assert_eq(state_config_encode(&cfg, &buf, &len), 0);
	cr_assert_eq(state_config_decode(buf, len, &out, why, sizeof(why)), RW_ECORRUPT);
	cr_assert_not_null(strstr(why, "path"), "%s", why);
	free(buf);
}

Test(state_config, unknown_tags)
{
	static const uint8_t skippable[] = { 0x00, 0x02, 2, 0, 0, 0, 'h', 'i' };
	static const uint8_t critical[] = { 0x00, 0x90, 0, 0, 0, 0 };
	struct vm_config out;
	uint8_t *buf;
	size_t len;
	char why[WHY];

	buf = hand_written("/k", 2, 1, skippable, sizeof(skippable), &len);
	cr_assert_eq(state_config_decode(buf, len, &out, why, sizeof(why)), 0, "%s", why);
	cr_assert_str_eq(out.kernel, "/k");
	cr_assert(out.serial_in);
	free(buf);
	buf = hand_written("/k", 2, 1, critical, sizeof(critical), &len);
	expect_refused(buf, len, RW_EVERSION, "tag 0x9000", "critical tag");
	free(buf);
	buf = hand_written("/k", 2, 1, critical, 3, &len);
	expect_refused(buf, len, RW_ECORRUPT, "config: ", "half a tag");
	free(buf);
}

Test(state_config, any_byte_value_decodes_safely)
{
	struct vm_config cfg, out;
	size_t len, plen, wlen;
	uint8_t *buf, *p, *w = NULL;
	struct rec_writer wr;
	char why[WHY];

	sample(&cfg);
	buf = encode(&cfg, &len);
	plen = len - REC_HEADER_SIZE;
	p = malloc(plen);
	for (size_t i = 0; i < plen; i++) {
		const uint8_t vals[3] = { 0x00, 0xff, (uint8_t)(buf[REC_HEADER_SIZE + i] ^ 0x80) };

		for (unsigned k = 0; k < 3; k++) {
			memcpy(p, buf + REC_HEADER_SIZE, plen);
			p[i] = vals[k];
			rec_writer_init(&wr, STATE_KIND_CONFIG, 1);
			rec_put_bytes(&wr, p, plen);
			cr_assert_eq(rec_take(&wr, &w, &wlen), 0);
			rec_writer_free(&wr);
			if (state_config_decode(w, wlen, &out, why, sizeof(why)) != 0)
				cr_assert_not_null(strstr(why, "config: "), "%s", why);
			else
				cr_assert(out.ncpus >= 1 && out.ncpus <= RW_MAX_CPUS);
			free(w);
		}
	}
	free(p);
	free(buf);
}
