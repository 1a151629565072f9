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
 *     a CPU exception      ------->  REWIND_EV_CRASH      then rewind_reset()
 *     (too long)                     REWIND_EV_TIMEOUT    then rewind_reset()
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
 * Timeouts. With a timeout set, a run that lasts longer comes back as
 * REWIND_EV_TIMEOUT, whatever the guest does (it may spin in user or kernel
 * code, or halt with interrupts off); a reset then makes the VM as good as
 * new. A watchdog thread per VM notices a run that lasts; a run costs it no
 * system call, so an input that does not time out pays nothing for it. A
 * run ends at most a quarter of the timeout (and at least 1 ms) after its
 * timeout. The kick uses signal SIGRTMIN: the thread that calls rewind_run()
 * gets its handler installed and unblocked, and must not block it again.
 *
 * Coverage. A guest built with the SDK's coverage runtime announces its
 * edge map (RW_HC_COVERAGE) before the root is taken; rewind_coverage()
 * returns it. The map is zero at the root, so the reset clears it with the
 * pages the run wrote: a harness reads it after rewind_run(), before
 * rewind_reset().
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
	uint64_t timeout_us;     /* longest run before REWIND_EV_TIMEOUT; 0 = none
				    (rewind_set_timeout changes it) */
};

enum rewind_event_kind {
	REWIND_EV_SNAPSHOT = 1, /* the root was taken; rewind_run() again */
	REWIND_EV_DONE,         /* rw_done(status) */
	REWIND_EV_CRASH,        /* rw_report_crash(code), or a CPU exception */
	REWIND_EV_EXIT,         /* the guest exited (status = exit code) */
	REWIND_EV_FATAL,        /* the VM died (triple fault, emulation failure) */
	REWIND_EV_TIMEOUT,      /* the run lasted longer than the timeout */
};

/* rewind_event.vector of a crash the guest reported itself. */
#define REWIND_NO_VECTOR 0xffffffffu

struct rewind_event {
	enum rewind_event_kind kind;
	int64_t status;          /* DONE: the guest's status; EXIT: exit code */
	uint64_t code;           /* CRASH: the guest's code, or the vector */
	uint64_t pc;             /* CRASH: where (RIP of an exception) */
	char message[512];       /* FATAL/CRASH/TIMEOUT: what happened */
	/* CRASH from a CPU exception; vector is REWIND_NO_VECTOR otherwise */
	uint32_t vector;
	uint64_t error_code;
	uint64_t cr2;            /* the faulting address of a page fault */
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

/* Change the timeout (0 = none) for the runs that follow. */
int rewind_set_timeout(struct rewind_vm *vm, uint64_t timeout_us);

/*
 * The coverage map the guest announced: *map points into guest RAM (valid
 * while the VM lives) and *size is its length. -ENOENT if the guest
 * announced none.
 */
int rewind_coverage(struct rewind_vm *vm, uint8_t **map, size_t *size);

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
