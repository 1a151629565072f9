/*
 * The device registry (ckpt/state.h): records keyed "dev/<type>/<id>",
 * saved and loaded through the device type's ops, a missing record refused
 * (never skipped), extra or repeated record names refused, and the serial
 * console's record going the whole way through it.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "device.h"
#include "serial.h"
#include "test_state_util.h"

#define WHY 512
#define COM1_KEY "dev/serial/serial@0x3f8"
#define SCR 7

/* ------------------------------------------------------------ record table */

#define TABLE_MAX 16

struct table {
	unsigned n;
	char key[TABLE_MAX][STATE_KEY_MAX];
	uint32_t version[TABLE_MAX];
	uint8_t *data[TABLE_MAX];
	size_t len[TABLE_MAX];
	int fail_put; /* error put returns, 0 = none */
};

static int table_put(void *arg, const char *key, uint32_t version, const void *data, size_t len)
{
	struct table *t = arg;

	if (t->fail_put)
		return t->fail_put;
	cr_assert_lt(t->n, TABLE_MAX);
	snprintf(t->key[t->n], STATE_KEY_MAX, "%s", key);
	t->version[t->n] = version;
	t->data[t->n] = malloc(len);
	cr_assert_not_null(t->data[t->n]);
	memcpy(t->data[t->n], data, len);
	t->len[t->n] = len;
	t->n++;
	return 0;
}

static int table_lookup(void *arg, const char *key, const void **data, size_t *len)
{
	struct table *t = arg;

	for (unsigned i = 0; i < t->n; i++)
		if (strcmp(t->key[i], key) == 0) {
			*data = t->data[i];
			*len = t->len[i];
			return 0;
		}
	return RW_ENOTFOUND;
}

static int find(const struct table *t, const char *key)
{
	for (unsigned i = 0; i < t->n; i++)
		if (strcmp(t->key[i], key) == 0)
			return (int)i;
	return -1;
}

static void table_free(struct table *t)
{
	for (unsigned i = 0; i < t->n; i++)
		free(t->data[i]);
	memset(t, 0, sizeof(*t));
}

static struct vm *plain_vm(unsigned ncpus)
{
	struct vm_config cfg;
	struct vm *vm = NULL;

	rw_test_require_kvm();
	config_init(&cfg);
	cfg.ncpus = ncpus;
	cfg.mem_size = 16 * MiB;
	cfg.serial_in = false;
	snprintf(cfg.serial_out, sizeof(cfg.serial_out), "/dev/null");
	cr_assert_eq(vm_create(&cfg, &vm), 0);
	cr_assert_eq(board_build(vm), 0);
	return vm;
}

static uint8_t pio_in(struct vm *vm, uint16_t port)
{
	uint8_t v = 0;

	cr_assert(bus_dispatch(&vm->buses[BUS_PIO], NULL, port, &v, 1, false));
	return v;
}

static void pio_out(struct vm *vm, uint16_t port, uint8_t v)
{
	cr_assert(bus_dispatch(&vm->buses[BUS_PIO], NULL, port, &v, 1, true));
}

/* ------------------------------------------------------- a test device type */

/*
 * "probe": one u32 of state. Instances are created by the test, several
 * per VM, to show that records are per instance.
 */
struct probe {
	struct device dev;
	uint32_t value;
};

static int probe_save(const struct device *dev, struct rec_writer *w)
{
	const struct probe *p = (const struct probe *)dev;

	return rec_put_u32(w, p->value);
}

static int probe_parse(struct rec_reader *r, uint32_t *v)
{
	rec_get_u32(r, v);
	if (!rec_error(r) && *v == 0xdead)
		return rec_fail(r, RW_ECORRUPT, "value");
	return rec_error(r) ? rec_error(r) : rec_expect_end(r);
}

static int probe_validate(const struct device *dev, struct rec_reader *r, uint32_t version)
{
	uint32_t v;

	return probe_parse(r, &v);
}

static int probe_load(struct device *dev, struct rec_reader *r, uint32_t version)
{
	return probe_parse(r, &((struct probe *)dev)->value);
}

static void probe_destroy(struct device *dev)
{
	free(dev);
}

static const struct device_ops probe_ops = {
	.destroy = probe_destroy,
	.save = probe_save,
	.validate = probe_validate,
	.load = probe_load,
};
static const struct device_type probe_type = { "probe", 1, 1, &probe_ops, NULL };

/* saves but cannot load: the registry must refuse to restore it */
static const struct device_ops halfway_ops = { .destroy = probe_destroy, .save = probe_save };
static const struct device_type halfway_type = { "halfway", 1, 1, &halfway_ops, NULL };

/* keeps no state: no record, and a record under its name is an extra */
static const struct device_ops stateless_ops = { .destroy = probe_destroy };
static const struct device_type stateless_type = { "stateless", 1, 1, &stateless_ops, NULL };

static struct probe *add_probe(struct vm *vm, const struct device_type *type, const char *id,
			       uint32_t value)
{
	struct probe *p = calloc(1, sizeof(*p));

	cr_assert_not_null(p);
	p->dev.type = type;
	snprintf(p->dev.id, sizeof(p->dev.id), "%s", id);
	p->value = value;
	cr_assert_eq(vm_add_device(vm, &p->dev), 0);
	return p;
}

/* ------------------------------------------------------------------ tests */

Test(state_devices, serial_record_roundtrip_through_the_registry, .timeout = 60)
{
	struct vm *vm = plain_vm(1);
	struct table t = { 0 }, again = { 0 };
	char why[WHY];
	int i;

	pio_out(vm, SERIAL_COM1_BASE + SCR, 0x5a);
	pio_out(vm, SERIAL_COM1_BASE + 1, 0x05); /* IER */
	cr_assert_eq(state_devices_save(vm, table_put, &t), 0);
	cr_assert_eq(t.n, 1);
	cr_assert_str_eq(t.key[0], COM1_KEY);
	cr_assert_eq(t.version[0], SERIAL_STATE_VERSION);

	cr_assert_eq(state_devices_validate(vm, table_lookup, &t, why, sizeof(why)), 0, "%s", why);
	pio_out(vm, SERIAL_COM1_BASE + SCR, 0x11);
	pio_out(vm, SERIAL_COM1_BASE + 1, 0x00);
	cr_assert_eq(state_devices_load(vm, table_lookup, &t, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(pio_in(vm, SERIAL_COM1_BASE + SCR), 0x5a);
	cr_assert_eq(pio_in(vm, SERIAL_COM1_BASE + 1), 0x05);

	cr_assert_eq(state_devices_save(vm, table_put, &again), 0);
	i = find(&again, COM1_KEY);
	cr_assert_geq(i, 0);
	cr_assert_eq(again.len[i], t.len[0]);
	cr_assert_eq(memcmp(again.data[i], t.data[0], t.len[0]), 0, "re-saved record differs");
	table_free(&t);
	table_free(&again);
	vm_destroy(vm);
}

Test(state_devices, missing_record_refused, .timeout = 60)
{
	struct vm *vm = plain_vm(1);
	struct table t = { 0 };
	char why[WHY];

	cr_assert_eq(state_devices_validate(vm, table_lookup, &t, why, sizeof(why)), RW_ENOTFOUND);
	cr_assert_not_null(strstr(why, COM1_KEY ": record: missing"), "%s", why);
	cr_assert_eq(state_devices_load(vm, table_lookup, &t, why, sizeof(why)), RW_ENOTFOUND);
	cr_assert_not_null(strstr(why, COM1_KEY), "%s", why);

	/* one instance of a type present, the other missing: still refused */
	add_probe(vm, &probe_type, "a", 1);
	add_probe(vm, &probe_type, "b", 2);
	cr_assert_eq(state_devices_save(vm, table_put, &t), 0);
	cr_assert_eq(t.n, 3);
	free(t.data[2]);
	t.n = 2; /* drop dev/probe/b */
	cr_assert_str_eq(t.key[1], "dev/probe/a");
	cr_assert_eq(state_devices_validate(vm, table_lookup, &t, why, sizeof(why)), RW_ENOTFOUND);
	cr_assert_not_null(strstr(why, "dev/probe/b: record: missing"), "%s", why);
	table_free(&t);
	vm_destroy(vm);
}

Test(state_devices, two_instances_keep_their_own_records, .timeout = 60)
{
	struct vm *vm = plain_vm(1);
	struct probe *a = add_probe(vm, &probe_type, "a", 111);
	struct probe *b = add_probe(vm, &probe_type, "b", 222);
	struct table t = { 0 };
	char why[WHY];

	add_probe(vm, &stateless_type, "quiet", 0);
	cr_assert_eq(state_devices_save(vm, table_put, &t), 0);
	cr_assert_eq(t.n, 3, "serial, probe a, probe b; the stateless device has no record");
	cr_assert_geq(find(&t, "dev/probe/a"), 0);
	cr_assert_geq(find(&t, "dev/probe/b"), 0);
	a->value = b->value = 0;
	cr_assert_eq(state_devices_validate(vm, table_lookup, &t, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(state_devices_load(vm, table_lookup, &t, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(a->value, 111);
	cr_assert_eq(b->value, 222);
	table_free(&t);
	vm_destroy(vm);
}

Test(state_devices, bad_records_refused_naming_device_and_field, .timeout = 60)
{
	struct vm *vm = plain_vm(1);
	struct probe *a = add_probe(vm, &probe_type, "a", 0xdead);
	struct table t = { 0 };
	char why[WHY];
	int s, p;
	size_t wlen;
	uint8_t *w, *orig;
	size_t orig_len;

	cr_assert_eq(state_devices_save(vm, table_put, &t), 0);
	s = find(&t, COM1_KEY);
	p = find(&t, "dev/probe/a");
	cr_assert_geq(s, 0);
	cr_assert_geq(p, 0);

	/* the probe's own validate names its field */
	cr_assert_eq(state_devices_validate(vm, table_lookup, &t, why, sizeof(why)), RW_ECORRUPT);
	cr_assert_not_null(strstr(why, "dev/probe/a: value: "), "%s", why);
	a->value = 7;
	table_free(&t);
	cr_assert_eq(state_devices_save(vm, table_put, &t), 0);
	s = find(&t, COM1_KEY);
	cr_assert_eq(state_devices_validate(vm, table_lookup, &t, why, sizeof(why)), 0, "%s", why);

	/* a flipped bit in the serial record */
	orig = t.data[s];
	orig_len = t.len[s];
	orig[orig_len - 1] ^= 1;
	cr_assert_eq(state_devices_validate(vm, table_lookup, &t, why, sizeof(why)), RW_ECHECKSUM);
	cr_assert_not_null(strstr(why, COM1_KEY ": header: checksum"), "%s", why);
	orig[orig_len - 1] ^= 1;

	/* rx_count beyond the FIFO: the serial's validate names it */
	uint8_t payload[64];
	size_t plen = orig_len - REC_HEADER_SIZE;
	cr_assert_leq(plen, sizeof(payload));
	memcpy(payload, orig + REC_HEADER_SIZE, plen);
	payload[17] = 17; /* u16 base, u32 irq, 10 registers, thre_pending, rx_count */
	w = st_wrap("serial", 1, payload, plen, &wlen);
	t.data[s] = w;
	t.len[s] = wlen;
	cr_assert_eq(state_devices_validate(vm, table_lookup, &t, why, sizeof(why)), RW_ECORRUPT);
	cr_assert_not_null(strstr(why, COM1_KEY ": rx_count"), "%s", why);
	free(w);

	/* a newer version than the type reads */
	w = st_wrap("serial", SERIAL_STATE_VERSION + 1, orig + REC_HEADER_SIZE, plen, &wlen);
	t.data[s] = w;
	t.len[s] = wlen;
	cr_assert_eq(state_devices_validate(vm, table_lookup, &t, why, sizeof(why)), RW_EVERSION);
	cr_assert_not_null(strstr(why, COM1_KEY ": header: version"), "%s", why);
	free(w);

	/* another kind's record under the serial's key */
	w = st_wrap("probe", 1, orig + REC_HEADER_SIZE, plen, &wlen);
	t.data[s] = w;
	t.len[s] = wlen;
	cr_assert_eq(state_devices_validate(vm, table_lookup, &t, why, sizeof(why)), RW_ECORRUPT);
	cr_assert_not_null(strstr(why, "not a \"serial\" record"), "%s", why);
	free(w);

	t.data[s] = orig;
	t.len[s] = orig_len;
	cr_assert_eq(state_devices_validate(vm, table_lookup, &t, why, sizeof(why)), 0, "%s", why);
	table_free(&t);
	vm_destroy(vm);
}

Test(state_devices, save_errors_and_unloadable_types, .timeout = 60)
{
	struct vm *vm = plain_vm(1);
	struct table t = { 0 };
	char why[WHY];

	t.fail_put = RW_EINJECTED;
	cr_assert_eq(state_devices_save(vm, table_put, &t), RW_EINJECTED);
	t.fail_put = 0;

	add_probe(vm, &halfway_type, "h", 3);
	cr_assert_eq(state_devices_save(vm, table_put, &t), 0);
	cr_assert_eq(t.n, 2);
	cr_assert_eq(state_devices_validate(vm, table_lookup, &t, why, sizeof(why)), -ENOSYS);
	cr_assert_not_null(strstr(why, "dev/halfway/h: "), "%s", why);
	table_free(&t);
	vm_destroy(vm);
}

Test(state_devices, record_names_checked_against_the_vm, .timeout = 60)
{
	struct vm *vm = plain_vm(2);
	char why[WHY];
	const char *exact[] = { "vcpu/0", "vcpu/1", STATE_KEY_PLATFORM, COM1_KEY };
	const char *shuffled[] = { COM1_KEY, "vcpu/1", STATE_KEY_PLATFORM, "vcpu/0" };
	static const struct {
		const char *extra;
		const char *named;
	} extras[] = {
		{ "dev/virtio-blk/blk0", "dev/virtio-blk/blk0: record: not" },
		{ "vcpu/2", "vcpu/2: record: not" },
		{ "vcpu/01", "vcpu/01: record: not" },
		{ "vcpu/", "vcpu/: record: not" },
		{ "dev/serial/serial@0x2f8", "dev/serial/serial@0x2f8: record: not" },
		{ "dev/stateless/quiet", "dev/stateless/quiet: record: not" },
		{ "vm/irqchip", "vm/irqchip: record: not" },
		{ "", ": record: not" },
		{ "vcpu/0", "vcpu/0: record: appears twice" },
		{ COM1_KEY, COM1_KEY ": record: appears twice" },
	};

	add_probe(vm, &stateless_type, "quiet", 0);
	cr_assert_eq(state_check_names(vm, exact, 4, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(state_check_names(vm, shuffled, 4, why, sizeof(why)), 0, "%s", why);

	for (unsigned k = 0; k < ARRAY_SIZE(extras); k++) {
		const char *names[5] = { exact[0], exact[1], exact[2], exact[3], extras[k].extra };

		cr_expect_eq(state_check_names(vm, names, 5, why, sizeof(why)), RW_ECORRUPT, "%s",
			     extras[k].extra);
		cr_expect_not_null(strstr(why, extras[k].named), "'%s': %s", extras[k].extra, why);
	}

	/* each required record missing in turn */
	for (unsigned k = 0; k < 4; k++) {
		const char *names[3];
		unsigned n = 0;

		for (unsigned i = 0; i < 4; i++)
			if (i != k)
				names[n++] = exact[i];
		cr_expect_eq(state_check_names(vm, names, 3, why, sizeof(why)), RW_ENOTFOUND, "%s",
			     exact[k]);
		cr_expect_not_null(strstr(why, exact[k]), "%s: %s", exact[k], why);
		cr_expect_not_null(strstr(why, "missing"), "%s", why);
	}
	cr_assert_eq(state_check_names(vm, NULL, 0, why, sizeof(why)), RW_ENOTFOUND);
	vm_destroy(vm);
}
