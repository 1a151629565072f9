/* Bus decoding: overlap refused, lookup exact, unclaimed accesses. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "bus.h"

static uint64_t last_off;
static uint32_t last_len;

static void rd(void *opaque, struct vcpu *v, uint64_t off, void *data, uint32_t len)
{
	last_off = off;
	last_len = len;
	memset(data, (int)(uintptr_t)opaque, len);
}

static const struct bus_ops ops = { .read = rd };

Test(bus, overlap_refused)
{
	struct bus b = { 0 };

	cr_assert_eq(bus_register(&b, 0x100, 0x10, &ops, NULL, "a"), 0);
	cr_assert_eq(bus_register(&b, 0x200, 0x10, &ops, NULL, "b"), 0);
	cr_assert_eq(bus_register(&b, 0x10f, 1, &ops, NULL, "end"), -EEXIST);
	cr_assert_eq(bus_register(&b, 0xf0, 0x11, &ops, NULL, "start"), -EEXIST);
	cr_assert_eq(bus_register(&b, 0x0, 0x1000, &ops, NULL, "cover"), -EEXIST);
	cr_assert_eq(bus_register(&b, 0x205, 2, &ops, NULL, "inside"), -EEXIST);
	cr_assert_eq(bus_register(&b, 0x110, 0xf0, &ops, NULL, "gap"), 0);
	cr_assert_eq(bus_register(&b, 0, 0, &ops, NULL, "empty"), -EINVAL);
	cr_assert_eq(bus_register(&b, UINT64_MAX, 2, &ops, NULL, "wrap"), -EINVAL);
	cr_assert_eq(b.nr, 3);
	bus_free(&b);
}

Test(bus, dispatch_and_unclaimed)
{
	struct bus b = { 0 };
	uint8_t data[8];

	cr_assert_eq(bus_register(&b, 0x3f8, 8, &ops, (void *)(uintptr_t)0x5a, "uart"), 0);
	cr_assert(bus_dispatch(&b, NULL, 0x3fd, data, 1, false));
	cr_assert_eq(last_off, 5);
	cr_assert_eq(data[0], 0x5a);
	/* unclaimed: all ones, not claimed */
	memset(data, 0, sizeof(data));
	cr_assert_not(bus_dispatch(&b, NULL, 0x3f7, data, 4, false));
	cr_assert_eq(data[0] & data[1] & data[2] & data[3], 0xff);
	/* an access running past the end of a range is unclaimed too */
	cr_assert_not(bus_dispatch(&b, NULL, 0x3ff, data, 2, false));
	cr_assert_not(bus_dispatch(&b, NULL, 0x1000, data, 1, true));
	cr_assert_eq(bus_unregister(&b, 0x3f8), 0);
	cr_assert_null(bus_find(&b, 0x3f8));
	cr_assert_eq(bus_unregister(&b, 0x3f8), -ENOENT);
	bus_free(&b);
}
