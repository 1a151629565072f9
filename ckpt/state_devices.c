/*
 * state_devices.c - the device registry (device records saved, validated
 * and loaded through each device type's ops) and the check of a
 * checkpoint's record names (contract in state.h).
 */
#include "state.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "log.h"
#include "state_codec.h"
#include "vm.h"

static bool saves_state(const struct device *dev)
{
	return dev->type && dev->type->ops && dev->type->ops->save;
}

int state_devices_save(struct vm *vm, state_put_fn put, void *arg)
{
	for (struct device *dev = vm->devices; dev; dev = dev->next) {
		const struct device_type *t = dev->type;
		char key[STATE_KEY_MAX];
		struct rec_writer w;
		const uint8_t *data;
		size_t len;
		int ret;

		if (!saves_state(dev))
			continue;
		device_record_key(dev, key, sizeof(key));
		rec_writer_init(&w, t->name, t->state_version);
		ret = t->ops->save(dev, &w);
		if (!ret)
			ret = rec_finish(&w, &data, &len);
		if (ret) {
			rw_error("%s: saving the device's state: %s", key, rw_strerror(ret));
			rec_writer_free(&w);
			return ret;
		}
		ret = put(arg, key, t->state_version, data, len);
		rec_writer_free(&w);
		if (ret)
			return ret;
	}
	return 0;
}

/* Explain a device op's refusal, with the field it named if it named one. */
static int refuse_device(struct why *w, const struct rec_reader *r, int err, const char *op)
{
	if (rec_error(r) && rec_error_field(r))
		return state_refuse(w, err, "%s: %s", rec_error_field(r), rw_strerror(err));
	if (rec_error(r))
		return state_refuse(w, err, "payload offset %zu: %s (truncated or malformed)",
			      rec_error_offset(r), rw_strerror(err));
	return state_refuse(w, err, "%s: %s", op, rw_strerror(err));
}

/* Find and open dev's record; explains every failure. */
static int open_device_record(struct device *dev, state_lookup_fn lookup, void *arg,
			      struct rec_reader *r, struct why *w)
{
	const struct device_type *t = dev->type;
	const void *data = NULL;
	size_t len = 0;
	int ret;

	if (!t->ops->load)
		return state_refuse(w, -ENOSYS, "record: type \"%s\" saves state but cannot load it",
			      t->name);
	ret = lookup(arg, w->key, &data, &len);
	if (ret == RW_ENOTFOUND)
		return state_refuse(w, ret, "record: missing (the VM has this device, so the checkpoint "
				      "must hold its state)");
	if (ret)
		return state_refuse(w, ret, "record: cannot be read: %s", rw_strerror(ret));
	return state_open_record(r, data, len, t->name, t->min_version, t->state_version, w);
}

/*
 * Open the record of every device that saves state and hand it to its
 * type's load op, or (load false) to its validate op if it has one.
 */
static int walk_records(struct vm *vm, state_lookup_fn lookup, void *arg, bool load, char *why,
			size_t whylen)
{
	for (struct device *dev = vm->devices; dev; dev = dev->next) {
		char key[STATE_KEY_MAX];
		struct rec_reader r;
		struct why w;
		int ret;

		if (!saves_state(dev))
			continue;
		device_record_key(dev, key, sizeof(key));
		state_why_init(&w, why, whylen, key);
		ret = open_device_record(dev, lookup, arg, &r, &w);
		if (ret)
			return ret;
		if (load)
			ret = dev->type->ops->load(dev, &r, rec_version(&r));
		else if (dev->type->ops->validate)
			ret = dev->type->ops->validate(dev, &r, rec_version(&r));
		if (ret)
			return refuse_device(&w, &r, ret, load ? "load" : "validate");
	}
	if (why && whylen)
		why[0] = '\0';
	return 0;
}

int state_devices_validate(struct vm *vm, state_lookup_fn lookup, void *arg, char *why,
			   size_t whylen)
{
	return walk_records(vm, lookup, arg, false, why, whylen);
}

int state_devices_load(struct vm *vm, state_lookup_fn lookup, void *arg, char *why,
		       size_t whylen)
{
	return walk_records(vm, lookup, arg, true, why, whylen);
}

/* ------------------------------------------------------------ record names */

/* Index of name in names[0..n), or n. */
static size_t find_name(const char *const names[], size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (names[i] && strcmp(names[i], name) == 0)
			return i;
	return n;
}

static bool is_expected(const struct vm *vm, const char *name)
{
	char key[STATE_KEY_MAX];

	if (strcmp(name, STATE_KEY_PLATFORM) == 0)
		return true;
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (state_vcpu_key(i, key, sizeof(key)) == 0 && strcmp(name, key) == 0)
			return true;
	for (const struct device *dev = vm->devices; dev; dev = dev->next) {
		if (!saves_state(dev))
			continue;
		device_record_key(dev, key, sizeof(key));
		if (strcmp(name, key) == 0)
			return true;
	}
	return false;
}

int state_check_names(const struct vm *vm, const char *const names[], size_t n, char *why,
		      size_t whylen)
{
	char key[STATE_KEY_MAX];
	struct why w;

	state_why_init(&w, why, whylen, "checkpoint");
	for (size_t i = 0; i < n; i++) {
		if (!names[i])
			return state_refuse(&w, RW_ECORRUPT, "records[%zu]: no name", i);
		w.key = names[i];
		if (!is_expected(vm, names[i]))
			return state_refuse(&w, RW_ECORRUPT,
				      "record: not a vCPU, the platform or a device of this VM");
		if (find_name(names, i, names[i]) < i)
			return state_refuse(&w, RW_ECORRUPT, "record: appears twice");
	}

	for (unsigned i = 0; i < vm->ncpus; i++) {
		state_vcpu_key(i, key, sizeof(key));
		w.key = key;
		if (find_name(names, n, key) == n)
			return state_refuse(&w, RW_ENOTFOUND, "record: missing");
	}
	w.key = STATE_KEY_PLATFORM;
	if (find_name(names, n, STATE_KEY_PLATFORM) == n)
		return state_refuse(&w, RW_ENOTFOUND, "record: missing");
	for (const struct device *dev = vm->devices; dev; dev = dev->next) {
		if (!saves_state(dev))
			continue;
		device_record_key(dev, key, sizeof(key));
		w.key = key;
		if (find_name(names, n, key) == n)
			return state_refuse(&w, RW_ENOTFOUND, "record: missing");
	}
	if (why && whylen)
		why[0] = '\0';
	return 0;
}
