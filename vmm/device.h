/*
 * device.h - device types and instances.
 *
 * A device *type* is a const descriptor (stable on-disk name, record
 * versions, ops). A device *instance* embeds struct device as its first
 * member, is created by the VM from configuration, has an id unique within
 * its type ("serial@0x3f8", "virtio-blk@mmio-0xd0000000", or one given in
 * the configuration) and lives on the VM's device list. Its checkpoint
 * record key is "dev/<type>/<id>".
 *
 * All ops receive the instance; no type keeps a global instance.
 */
#ifndef RW_VMM_DEVICE_H
#define RW_VMM_DEVICE_H

#include <stdint.h>

#include "err.h"

struct vm;
struct device;
struct rec_writer; /* ckpt/record.h */
struct rec_reader;

#define DEV_ID_MAX 64
#define DEV_KEY_MAX (8 + 32 + DEV_ID_MAX)

struct device_ops {
	void (*destroy)(struct device *dev);
	/* Drain in-flight work and stop background activity (may be NULL). */
	int (*quiesce)(struct device *dev);
	int (*resume)(struct device *dev);
	/* Back to power-on state (may be NULL). */
	int (*reset)(struct device *dev);
	/* Guest-visible state, field by field (may be NULL: no record). */
	int (*save)(const struct device *dev, struct rec_writer *w);
	/* Parse and check a record without touching the device. */
	int (*validate)(const struct device *dev, struct rec_reader *r, uint32_t version);
	/* Apply a record that validate() accepted. */
	int (*load)(struct device *dev, struct rec_reader *r, uint32_t version);
};

struct device_type {
	const char *name;          /* "serial", "virtio-blk": stable, on disk */
	uint32_t state_version;    /* version save() writes */
	uint32_t min_version;      /* oldest version load() accepts */
	const struct device_ops *ops;
};

struct device {
	const struct device_type *type;
	char id[DEV_ID_MAX];
	struct vm *vm;
	struct device *next; /* VM's device list, in creation order */
};

/*
 * Add dev to vm's device list. Returns 0, -EEXIST if (type, id) is taken,
 * -EINVAL for an empty or over-long id.
 */
int vm_add_device(struct vm *vm, struct device *dev) RW_MUST_CHECK;
/* Find an instance by type name and id, or NULL. */
struct device *vm_find_device(struct vm *vm, const char *type, const char *id);
/* "dev/<type>/<id>" into buf (DEV_KEY_MAX). */
void device_record_key(const struct device *dev, char *buf, unsigned len);

#endif
