#include "device.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vm.h"

int vm_add_device(struct vm *vm, struct device *dev)
{
	size_t n = strnlen(dev->id, sizeof(dev->id));
	struct device **tail;

	if (!dev->type || n == 0 || n == sizeof(dev->id))
		return -EINVAL;
	if (vm_find_device(vm, dev->type->name, dev->id))
		return -EEXIST;
	dev->vm = vm;
	dev->next = NULL;
	for (tail = &vm->devices; *tail; tail = &(*tail)->next)
		;
	*tail = dev;
	return 0;
}

struct device *vm_find_device(struct vm *vm, const char *type, const char *id)
{
	for (struct device *d = vm->devices; d; d = d->next)
		if (strcmp(d->type->name, type) == 0 && strcmp(d->id, id) == 0)
			return d;
	return NULL;
}

void device_record_key(const struct device *dev, char *buf, unsigned len)
{
	snprintf(buf, len, "dev/%s/%s", dev->type->name, dev->id);
}
