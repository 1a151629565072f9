/*
 * image.c - a VM's machine state in memory (image.h).
 */
#include "image.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "vcpu.h"
#include "vm.h"

int image_init(struct vm_image *img, unsigned ncpus)
{
	memset(img, 0, sizeof(*img));
	img->vcpus = calloc(ncpus, sizeof(img->vcpus[0]));
	if (!img->vcpus)
		return -ENOMEM;
	img->ncpus = ncpus;
	for (unsigned i = 0; i < ncpus; i++) {
		img->vcpus[i] = aligned_alloc(64, ALIGN_UP(sizeof(struct vcpu_state), 64));
		if (!img->vcpus[i]) {
			image_free(img);
			return -ENOMEM;
		}
	}
	return 0;
}

void image_drop_records(struct vm_image *img)
{
	for (unsigned i = 0; i < img->nrecs; i++)
		free(img->recs[i].data);
	free(img->recs);
	img->recs = NULL;
	img->nrecs = 0;
}

void image_free(struct vm_image *img)
{
	image_drop_records(img);
	if (img->vcpus)
		for (unsigned i = 0; i < img->ncpus; i++)
			free(img->vcpus[i]);
	free(img->vcpus);
	memset(img, 0, sizeof(*img));
}

int image_put_record(void *arg, const char *key, uint32_t version, const void *data, size_t len)
{
	struct vm_image *img = arg;
	struct image_rec *r = realloc(img->recs, (img->nrecs + 1) * sizeof(*r));

	if (!r)
		return -ENOMEM;
	img->recs = r;
	r = &img->recs[img->nrecs];
	memset(r, 0, sizeof(*r));
	snprintf(r->key, sizeof(r->key), "%s", key);
	r->version = version;
	r->len = len;
	r->data = malloc(len ? len : 1);
	if (!r->data)
		return -ENOMEM;
	memcpy(r->data, data, len);
	img->nrecs++;
	return 0;
}

int image_lookup_record(void *arg, const char *key, const void **data, size_t *len)
{
	struct vm_image *img = arg;

	for (unsigned i = 0; i < img->nrecs; i++) {
		if (strcmp(img->recs[i].key, key) == 0) {
			*data = img->recs[i].data;
			*len = img->recs[i].len;
			return 0;
		}
	}
	return RW_ENOTFOUND;
}

int image_save_platform_devices(struct vm_image *img, struct vm *vm)
{
	int ret = platform_state_save(vm, &img->platform);

	image_drop_records(img);
	if (!ret)
		ret = state_devices_save(vm, image_put_record, img);
	return ret;
}

int image_save(struct vm_image *img, struct vm *vm)
{
	for (unsigned i = 0; i < img->ncpus; i++) {
		int ret = vcpu_state_save(vm->vcpus[i], img->vcpus[i]);
		if (ret)
			return ret;
	}
	return image_save_platform_devices(img, vm);
}

int image_validate_devices(struct vm_image *img, struct vm *vm, char *why, size_t whylen)
{
	return state_devices_validate(vm, image_lookup_record, img, why, whylen);
}

int image_apply(struct vm_image *img, struct vm *vm, const struct image_apply_opts *o, char *why,
		size_t whylen)
{
	static const struct image_apply_opts all;
	const char *step = NULL;
	int ret;

	if (!o)
		o = &all;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		ret = vcpu_state_load_flags(vm->vcpus[i], img->vcpus[i], o->vcpu_flags, &step);
		if (ret) {
			snprintf(why, whylen, "loading vcpu/%u: %s: %s", i, step, rw_strerror(ret));
			return ret;
		}
	}
	ret = o->clock_only ? platform_state_load_clock(vm, &img->platform, &step)
			    : platform_state_load(vm, &img->platform, &step);
	if (ret) {
		snprintf(why, whylen, "loading %s: %s: %s", STATE_KEY_PLATFORM, step, rw_strerror(ret));
		return ret;
	}
	if (!img->nrecs)
		return 0;
	return state_devices_load(vm, image_lookup_record, img, why, whylen);
}
