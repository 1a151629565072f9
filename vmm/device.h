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

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

struct vm;
struct device;
struct rec_writer; /* base/record.h */
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

/*
 * Content a device owns beyond its record, such as a disk's blocks: a space
 * of 4 KiB blocks that a checkpoint captures by change and keeps under the
 * space's own name, and that a restore or rollback writes back. The
 * device's record says which blocks it holds (for a disk: which ones its
 * overlay has); load() sets that, then the checkpoint layer writes those
 * blocks' content. Every op is called with the device quiesced. A device
 * type without content has no content ops (NULL); one with content needs
 * nothing but these ops for checkpoints to carry it.
 */
struct device_content_ops {
	/* The space's name in a checkpoint (unique within the VM). */
	const char *(*name)(const struct device *dev);
	/* Its size in blocks. */
	uint64_t (*nblocks)(const struct device *dev);
	/*
	 * Take the blocks changed since the last checkpoint took them:
	 * ascending, in a malloc'ed array (*blocks, caller frees; NULL when
	 * none). Returns the count or a negative error (nothing taken).
	 */
	int64_t (*take_changed)(struct device *dev, uint64_t **blocks);
	/* Put taken blocks back among the changed ones (a failed checkpoint). */
	void (*give_back)(struct device *dev, const uint64_t *blocks, uint64_t n);
	/* Blocks [first, first+n) as a checkpoint keeps them (not held: zeros). */
	int (*read)(struct device *dev, uint64_t first, uint64_t n, void *buf);
	/* The first run of held blocks at or after from: true, or false if none. */
	bool (*held_next)(const struct device *dev, uint64_t from, uint64_t *start, uint64_t *count);
	/*
	 * Write a held block back from a checkpoint. It then equals that
	 * checkpoint, so it does not count as changed since it.
	 */
	int (*restore)(struct device *dev, uint64_t idx, const void *buf);
	/* Read block idx as the guest sees it now. */
	int (*read_current)(struct device *dev, uint64_t idx, void *buf);
};

struct device_type {
	const char *name;          /* "serial", "virtio-blk": stable, on disk */
	uint32_t state_version;    /* version save() writes */
	uint32_t min_version;      /* oldest version load() accepts */
	const struct device_ops *ops;
	const struct device_content_ops *content; /* NULL: no content */
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
