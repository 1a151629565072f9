/*
 * image.h - one VM's machine state held in memory: every vCPU, the
 * platform (PICs, IOAPIC, PIT, clock) and each device's record.
 *
 * It is the one form that state takes between a VM and wherever it goes:
 *
 *   capture   a checkpoint's pause fills it (the vCPUs save their own state
 *             as they park, image_save_platform_devices the rest); the
 *             writer encodes it into the store. librewind's fast reset
 *             keeps one as its root (image_save).
 *   validate  a restore or rollback decodes a checkpoint's records into an
 *             image (every vCPU and platform record is checked as it is
 *             decoded), then image_validate_devices has every device check
 *             its record, all before the VM is touched.
 *   apply     image_apply puts it back: vCPUs, platform, devices, in that
 *             order. The fast reset passes the shortcuts it has proved safe.
 *
 * Device records are kept encoded (the format of base/record.h), exactly as
 * the device registry (state.h) writes and reads them.
 */
#ifndef RW_CKPT_IMAGE_H
#define RW_CKPT_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "state.h"
#include "vcpu_state.h"

struct vm;

struct image_rec {
	char key[STATE_KEY_MAX];
	uint32_t version;
	uint8_t *data;
	size_t len;
};

struct vm_image {
	unsigned ncpus;
	struct vcpu_state **vcpus;  /* ncpus states, 64-byte aligned */
	struct platform_state platform;
	struct image_rec *recs;     /* device records, in device-list order */
	unsigned nrecs;
};

/* Room for ncpus vCPU states; no records yet. 0 or -ENOMEM (img freed). */
int image_init(struct vm_image *img, unsigned ncpus) RW_MUST_CHECK;
/* Free everything; safe on a zeroed or already freed image. */
void image_free(struct vm_image *img);
/* Drop the device records, keep the vCPU states' memory. */
void image_drop_records(struct vm_image *img);

/* Registry callbacks (state_put_fn, state_lookup_fn) over img's records. */
int image_put_record(void *img, const char *key, uint32_t version, const void *data, size_t len);
int image_lookup_record(void *img, const char *key, const void **data, size_t *len);

/*
 * Save the platform and every device record of vm (paused, devices
 * quiesced) into img, replacing its records. The vCPUs are not touched:
 * vm_pause_capture() saves them in parallel, or image_save() does.
 */
int image_save_platform_devices(struct vm_image *img, struct vm *vm) RW_MUST_CHECK;
/* The whole state of a VM whose vCPUs are stopped at an exit, here. */
int image_save(struct vm_image *img, struct vm *vm) RW_MUST_CHECK;

/*
 * Have every device of vm check its record in img (state_devices_validate),
 * touching nothing. 0, or an error with "<key>: <field>: <reason>" in why.
 */
int image_validate_devices(struct vm_image *img, struct vm *vm, char *why, size_t whylen) RW_MUST_CHECK;

/* Shortcuts for image_apply(); 0 applies everything. */
struct image_apply_opts {
	unsigned vcpu_flags;     /* VCPU_LOAD_* for vCPU 0 (a one-vCPU VM) */
	bool clock_only;         /* platform: only the clock changed */
};

/*
 * Put img back into vm: every vCPU, the platform, every device record. The
 * vCPUs must not be running. On failure why says which part and step.
 * What was applied before the failure stays applied.
 */
int image_apply(struct vm_image *img, struct vm *vm, const struct image_apply_opts *o,
		char *why, size_t whylen) RW_MUST_CHECK;

#endif
