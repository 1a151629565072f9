/*
 * rewind.h - librewind: drive a rewind VM from a fuzzing or testing harness.
 *
 * A harness creates a VM from an SDK guest image, runs it until the guest
 * says "snapshot here" (the reset root is taken there), then loops: hand the
 * guest an input (rewind_set_payload), run it until it says "done" or
 * reports a crash, and reset it to the root. A reset copies back only the
 * pages written since the root, from an in-memory image, and reloads the
 * vCPU, platform (PIC, IOAPIC, PIT, clock) and device state from in-memory
 * records: no store, no disk I/O.
 *
 * The guest side is the SDK's fuzzing protocol (rw/rw.h), close to the
 * Nyx/kAFL hypercalls:
 *
 *     guest                          harness (this API)
 *     rw_snapshot()        ------->  REWIND_EV_SNAPSHOT: root taken
 *     n = rw_payload(buf)  <-------  rewind_set_payload() bytes
 *     ... run the target ...
 *     rw_done(status)      ------->  REWIND_EV_DONE       then rewind_reset()
 *     rw_report_crash(c)   ------->  REWIND_EV_CRASH      then rewind_reset()
 *
 * After a reset the guest continues from rw_snapshot(), which then returns 1.
 *
 * Hot set. Dirty tracking works by write-protecting pages; on some hosts
 * (PVM) the first guest write to a protected page costs several times a
 * page copy. Pages the target writes on every iteration are therefore
 * learned (dirty in REWIND_HOT_AFTER consecutive iterations) and kept in a
 * hot set: always copied back, never protected again. Everything else stays
 * tracked. The hot set is relearned every REWIND_HOT_RELEARN resets so that
 * pages the target stopped writing do not stay in it.
 *
 * Threads: a struct rewind_vm is used by one thread at a time; the guest's
 * vCPU runs on the thread that calls rewind_run(). One vCPU.
 *
 * Errors: functions return 0 or a negative code (a negative errno or one of
 * rewind's codes); rewind_strerror() describes it.
 */
#ifndef REWIND_H
#define REWIND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define REWIND_HOT_AFTER 2
#define REWIND_HOT_RELEARN 4096

struct rewind_vm;

struct rewind_config {
	const char *kernel;      /* SDK guest image (ELF); required */
	const char *args;        /* handed to rw_main(); NULL = "" */
	uint64_t mem_size;       /* bytes; 0 = 64 MiB */
	const char *console;     /* file for the guest console; NULL = discard,
				    "-" = stdout */
	int no_hot_set;          /* 1: track every page every iteration */
	int dirty_ring;          /* 1: KVM dirty ring instead of the bitmap
				    (no hot set then) */
};

enum rewind_event_kind {
	REWIND_EV_SNAPSHOT = 1, /* the root was taken; rewind_run() again */
	REWIND_EV_DONE,         /* rw_done(status) */
	REWIND_EV_CRASH,        /* rw_report_crash(code), or a CPU exception */
	REWIND_EV_EXIT,         /* the guest exited (status = exit code) */
	REWIND_EV_FATAL,        /* the VM died (triple fault, emulation failure) */
};

struct rewind_event {
	enum rewind_event_kind kind;
	int64_t status;          /* DONE: the guest's status; EXIT: exit code */
	uint64_t code;           /* CRASH: the guest's code, or the vector */
	uint64_t pc;             /* CRASH: where */
	char message[512];       /* FATAL/CRASH: what happened */
};

struct rewind_stats {
	uint64_t resets;
	uint64_t pages_restored;      /* by the last reset */
	uint64_t pages_restored_total;
	uint64_t hot_pages;           /* current hot set */
	uint64_t root_pages;          /* pages of guest RAM */
	/*
	 * Resets that skipped reloading state the guest provably did not
	 * touch since the last one: the XCRs and debug registers (it made no
	 * exit but MMIO and port accesses), and the local APIC too (it made
	 * no exit but its hypercalls, and no interrupt was raised).
	 */
	uint64_t lean_resets;
	uint64_t lapic_kept_resets;
};

/* Create a VM and load cfg->kernel. It does not run until rewind_run(). */
int rewind_create(const struct rewind_config *cfg, struct rewind_vm **out);
void rewind_destroy(struct rewind_vm *vm);

/*
 * Run the guest until the next event. The first rw_snapshot() takes the
 * root and returns REWIND_EV_SNAPSHOT. After DONE or CRASH, call
 * rewind_reset() before running again (running on continues the guest past
 * rw_done(), which then returns 0). After EXIT or FATAL only a reset (if a
 * root exists) or rewind_destroy() remain.
 */
int rewind_run(struct rewind_vm *vm, struct rewind_event *ev);

/* Take the root now, at the current state (normally the guest does it). */
int rewind_set_root(struct rewind_vm *vm);
/* Back to the root: memory, vCPU, platform and devices. -ENOENT: no root. */
int rewind_reset(struct rewind_vm *vm);

/* The bytes the next rw_payload() gets (copied; at most 16 MiB). */
int rewind_set_payload(struct rewind_vm *vm, const void *data, size_t len);

/* Guest-physical memory access; writes count as changes to undo. */
int rewind_read(struct rewind_vm *vm, uint64_t gpa, void *buf, size_t len);
int rewind_write(struct rewind_vm *vm, uint64_t gpa, const void *buf, size_t len);
/* The guest's RAM as the host sees it (read-only use), and its size. */
const void *rewind_memory(struct rewind_vm *vm, size_t *len);

void rewind_get_stats(struct rewind_vm *vm, struct rewind_stats *st);
const char *rewind_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif
