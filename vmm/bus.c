#include "bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Index of the first range with base > addr. */
static unsigned upper_bound(const struct bus *bus, uint64_t addr)
{
	unsigned lo = 0, hi = bus->nr;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (bus->ranges[mid].base <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int bus_register(struct bus *bus, uint64_t base, uint64_t len, const struct bus_ops *ops,
		 void *opaque, const char *name)
{
	unsigned pos;

	if (!len || !ops || base + len - 1 < base)
		return -EINVAL;
	pos = upper_bound(bus, base);
	/* the range before must end before base; the one at pos must start after */
	if (pos > 0) {
		const struct bus_range *prev = &bus->ranges[pos - 1];
		if (prev->base + prev->len - 1 >= base)
			return -EEXIST;
	}
	if (pos < bus->nr && bus->ranges[pos].base <= base + len - 1)
		return -EEXIST;
	if (bus->nr == bus->cap) {
		unsigned cap = bus->cap ? bus->cap * 2 : 8;
		struct bus_range *r = realloc(bus->ranges, cap * sizeof(*r));
		if (!r)
			return -ENOMEM;
		bus->ranges = r;
		bus->cap = cap;
	}
	memmove(&bus->ranges[pos + 1], &bus->ranges[pos], (bus->nr - pos) * sizeof(bus->ranges[0]));
	bus->ranges[pos] = (struct bus_range){ base, len, ops, opaque, name };
	bus->nr++;
	return 0;
}

int bus_unregister(struct bus *bus, uint64_t base)
{
	for (unsigned i = 0; i < bus->nr; i++) {
		if (bus->ranges[i].base == base) {
			memmove(&bus->ranges[i], &bus->ranges[i + 1],
				(bus->nr - i - 1) * sizeof(bus->ranges[0]));
			bus->nr--;
			return 0;
		}
	}
	return -ENOENT;
}

const struct bus_range *bus_find(const struct bus *bus, uint64_t addr)
{
	unsigned pos = upper_bound(bus, addr);

	if (pos == 0)
		return NULL;
	const struct bus_range *r = &bus->ranges[pos - 1];
	return addr - r->base < r->len ? r : NULL;
}

static void log_unclaimed(struct bus *bus, uint64_t addr, uint32_t len, bool is_write)
{
	unsigned n = __atomic_load_n(&bus->nr_logged, __ATOMIC_RELAXED);

	for (unsigned i = 0; i < n && i < sizeof(bus->logged) / sizeof(bus->logged[0]); i++)
		if (bus->logged[i] == addr)
			return;
	if (n < sizeof(bus->logged) / sizeof(bus->logged[0])) {
		bus->logged[n] = addr;
		__atomic_store_n(&bus->nr_logged, n + 1, __ATOMIC_RELAXED);
	} else {
		return; /* enough said */
	}
	rw_debug("unclaimed %s of %u bytes at 0x%llx (%s)", is_write ? "write" : "read", len,
		 (unsigned long long)addr, is_write ? "ignored" : "reads all ones");
}

bool bus_dispatch(struct bus *bus, struct vcpu *vcpu, uint64_t addr, void *data, uint32_t len,
		  bool is_write)
{
	const struct bus_range *r = bus_find(bus, addr);

	if (!r || len > r->len - (addr - r->base)) {
		if (!is_write)
			memset(data, 0xff, len);
		log_unclaimed(bus, addr, len, is_write);
		return false;
	}
	if (is_write) {
		if (r->ops->write)
			r->ops->write(r->opaque, vcpu, addr - r->base, data, len);
	} else {
		if (r->ops->read)
			r->ops->read(r->opaque, vcpu, addr - r->base, data, len);
		else
			memset(data, 0xff, len);
	}
	return true;
}

void bus_free(struct bus *bus)
{
	free(bus->ranges);
	memset(bus, 0, sizeof(*bus));
}
