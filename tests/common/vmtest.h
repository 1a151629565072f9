/*
 * vmtest.h - helpers for tests that drive a VM's devices by hand.
 */
#ifndef RW_TESTS_VMTEST_H
#define RW_TESTS_VMTEST_H

#include <criterion/criterion.h>
#include <sys/epoll.h>

#include "device.h"
#include "record.h"
#include "util.h"
#include "vm.h"

/*
 * Play the event thread for a while: dispatch what the VM's epoll set
 * reports, as vm.c's loop does. Returns how many callbacks ran. A set that
 * stays ready for more than max callbacks (a device spinning the event
 * thread) fails the test.
 */
static inline unsigned rw_test_run_events(struct vm *vm, int timeout_ms, unsigned max)
{
	struct epoll_event evs[8];
	unsigned ran = 0;
	int n;

	while ((n = epoll_wait(vm->epfd, evs, ARRAY_SIZE(evs), timeout_ms)) > 0) {
		cr_assert_lt(ran, max, "the event set never goes quiet: something spins");
		for (int i = 0; i < n; i++) {
			struct vm_event *e = &vm->events[evs[i].data.u64];

			e->fn(e->opaque, e->fd, evs[i].events);
			ran++;
		}
		timeout_ms = 0;
	}
	return ran;
}

/*
 * Validate a device record the way a restore does, then load it: 0, or
 * the error with *field naming what the device refused (NULL if nothing).
 */
static inline int rw_test_load_record(struct device *dev, const uint8_t *data, size_t len,
				      const char **field)
{
	const struct device_type *t = dev->type;
	struct rec_reader r;
	int ret;

	*field = NULL;
	ret = rec_open(&r, data, len, t->name, t->min_version, t->state_version);
	if (ret)
		return ret;
	ret = t->ops->validate(dev, &r, rec_version(&r));
	if (ret) {
		*field = rec_error_field(&r);
		return ret;
	}
	cr_assert_eq(rec_open(&r, data, len, t->name, t->min_version, t->state_version), 0);
	return t->ops->load(dev, &r, rec_version(&r));
}

#endif
