/*
 * bus.h - port-I/O and MMIO address decoding.
 *
 * A VM has two buses (BUS_PIO, BUS_MMIO). A device claims a range with
 * bus_register(); ranges may not overlap. vCPU threads dispatch exits with
 * bus_dispatch(). An access nobody claimed reads as all ones and a write to
 * it is dropped; each such address is logged once at debug level.
 *
 * Concurrency: registration happens while the VM is built, before any vCPU
 * runs; dispatch is lock-free and runs concurrently on every vCPU thread, so
 * handlers do their own locking.
 */
#ifndef RW_VMM_BUS_H
#define RW_VMM_BUS_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

struct vcpu;

enum bus_space { BUS_PIO, BUS_MMIO, BUS_NR };

/*
 * Handlers. offset is relative to the start of the registered range, len is
 * 1, 2, 4 or 8, data is little-endian. read must fill all len bytes.
 */
struct bus_ops {
	void (*read)(void *opaque, struct vcpu *vcpu, uint64_t offset, void *data, uint32_t len);
	void (*write)(void *opaque, struct vcpu *vcpu, uint64_t offset, const void *data, uint32_t len);
};

struct bus_range {
	uint64_t base;
	uint64_t len;
	const struct bus_ops *ops;
	void *opaque;
	const char *name; /* for diagnostics; not copied */
};

struct bus {
	struct bus_range *ranges; /* sorted by base */
	unsigned nr, cap;
	/* unclaimed addresses already logged (bounded) */
	uint64_t logged[32];
	unsigned nr_logged;
};

/* Claim [base, base+len). Returns 0, -EEXIST on overlap, -EINVAL, -ENOMEM. */
int bus_register(struct bus *bus, uint64_t base, uint64_t len, const struct bus_ops *ops,
		 void *opaque, const char *name) RW_MUST_CHECK;
/* Release a range registered at base. Returns 0 or -ENOENT. */
int bus_unregister(struct bus *bus, uint64_t base);
/* Find the range holding addr, or NULL. */
const struct bus_range *bus_find(const struct bus *bus, uint64_t addr);
/* Route one access. Returns true if a device claimed it. */
bool bus_dispatch(struct bus *bus, struct vcpu *vcpu, uint64_t addr, void *data, uint32_t len,
		  bool is_write);
void bus_free(struct bus *bus);

#endif
