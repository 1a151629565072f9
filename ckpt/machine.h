/*
 * machine.h - a running VM with everything checkpointing needs around it:
 * the board's devices, dirty tracking, the checkpoint store and the writer
 * thread. `rewind run`, `rewind restore`, the control socket, the periodic
 * scheduler and librewind all drive a VM through this interface.
 *
 * Threads: any thread may call these functions, one operation at a time per
 * machine (they serialise on the machine's lock), except from a vCPU thread.
 */
#ifndef RW_CKPT_MACHINE_H
#define RW_CKPT_MACHINE_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "err.h"
#include "vm.h"

struct machine;

enum dirty_mode { DIRTY_RING = 0, DIRTY_BITMAP = 1 };

/* What one checkpoint did (DESIGN section 3). */
struct ckpt_report {
	uint64_t id;            /* 0 until committed */
	uint64_t parent;        /* 0 for the first (full) checkpoint */
	char label[128];
	uint64_t dirty_pages;   /* pages captured */
	uint64_t dirty_blocks;  /* disk blocks captured, all disks */
	uint64_t new_chunks;
	uint64_t dedup_hits;
	uint64_t zero_pages;
	uint64_t bytes_written; /* content bytes of new chunks */
	uint64_t pause_ns;      /* guest stopped: pause .. resume */
	uint64_t persist_ns;    /* resume .. committed */
	int err;                /* 0, or why the checkpoint failed */
};

/* restore: a disk of the checkpoint that is now somewhere else. */
struct machine_disk_path {
	const char *name;           /* as board_disk_name() gives it */
	const char *path;
};

struct machine_opts {
	const char *store_dir;      /* NULL: no store; checkpoints fail -ENOSYS */
	enum dirty_mode dirty;
	bool relaxed_sync;          /* STORE_OPEN_NOMETASYNC */
	bool console_stdin;         /* attach stdin to the UART */
	const char *serial_out;     /* restore: console file; NULL/"" = stdout
				       (where the original run wrote is not reused) */
	/* restore: how far filling memory has come (pages done of total) */
	void (*progress)(void *arg, uint64_t done, uint64_t total);
	void *progress_arg;
	/* restore: disks to open at another path than the checkpoint's */
	const struct machine_disk_path *disk_paths;
	unsigned ndisk_paths;
	/* called on the writer thread after every checkpoint, ok or failed */
	void (*on_report)(void *opaque, const struct ckpt_report *rep);
	void *opaque;
};

/*
 * Keep only the keep most recent periodic checkpoints this machine
 * committed (0 = keep all): after each commit the writer deletes older ones,
 * freeing their chunks in the delete's transaction. Retention touches
 * nothing else: a checkpoint taken by hand (control socket), by the guest,
 * or with a label is kept until it is removed, and so is a pinned one and
 * the one the running state descends from (the head, e.g. after a
 * rollback).
 */
void machine_set_retention(struct machine *m, unsigned keep);

/*
 * Pin checkpoint id (retention never deletes it) or unpin it. Returns 0,
 * RW_ENOTFOUND (no such checkpoint in the store), -ENOSYS (no store) or
 * -ENOMEM.
 */
int machine_pin(struct machine *m, uint64_t id, bool pin) RW_MUST_CHECK;

/* Snapshot of a machine for `status`. */
struct machine_status {
	bool running;               /* started and not stopped */
	bool paused;                /* paused by machine_pause() */
	unsigned ncpus;
	uint64_t mem_size;
	enum dirty_mode dirty;
	const char *store_dir;      /* NULL without a store; valid while m lives */
	uint64_t checkpoints;       /* taken by this machine */
	uint64_t last_id;           /* last committed checkpoint, 0 if none */
	uint64_t head_id;           /* checkpoint the running state descends from */
	struct ckpt_report last;    /* report of the last checkpoint */
	uint64_t store_bytes;       /* size of the store's files, 0 without one */
	unsigned keep;              /* retention, 0 = all */
	uint64_t deleted;           /* checkpoints retention deleted */
	unsigned pinned;            /* checkpoints pinned */
};

/* Build a VM from cfg (board devices included) and boot cfg->kernel. */
int machine_create(const struct vm_config *cfg, const struct machine_opts *o,
		   struct machine **out) RW_MUST_CHECK;
/*
 * Build a VM from checkpoint id of the store at o->store_dir, using only
 * what the checkpoint holds (its configuration, memory, records). Every
 * record is validated before anything runs; a bad one fails with
 * RW_ECORRUPT/RW_EVERSION/RW_ECHECKSUM and a logged line naming it.
 */
int machine_restore(uint64_t id, const struct machine_opts *o, struct machine **out) RW_MUST_CHECK;
int machine_start(struct machine *m) RW_MUST_CHECK;
/* Wait for the VM to stop, then for the writer to finish. */
void machine_wait(struct machine *m, struct vm_stop_info *out);
void machine_destroy(struct machine *m);

struct vm *machine_vm(struct machine *m);
/* The machine's checkpoint store, or NULL without one. */
struct store *machine_store(struct machine *m);
/* The dirty tracker, or NULL without a store. */
struct dirty_tracker *machine_dirty(struct machine *m);

/*
 * Take a checkpoint: pause, capture, resume; the writer persists it. With
 * wait, returns once it is committed (or failed) and fills *rep; without,
 * returns after the guest resumed (rep->id is then 0; on_report tells the
 * rest). RW_EBUSY if the previous checkpoint is still persisting and !wait.
 */
int machine_checkpoint(struct machine *m, const char *label, bool wait,
		       struct ckpt_report *rep) RW_MUST_CHECK;
/*
 * machine_checkpoint() for the periodic scheduler: without wait, labelled
 * "periodic", and subject to retention (machine_set_retention).
 */
int machine_checkpoint_periodic(struct machine *m, struct ckpt_report *rep) RW_MUST_CHECK;
/* Bring the running VM back to checkpoint id, in place. */
int machine_rollback(struct machine *m, uint64_t id) RW_MUST_CHECK;
int machine_pause(struct machine *m) RW_MUST_CHECK;
int machine_resume(struct machine *m) RW_MUST_CHECK;
void machine_status(struct machine *m, struct machine_status *st);
/* Has this machine committed a checkpoint yet (or restored one)? */
bool machine_committed_any(struct machine *m);

/* Ask the VM to stop (as the control socket's quit). */
void machine_quit(struct machine *m);

/*
 * Read block idx (4 KiB) of the disk with instance id disk_id as the guest
 * sees it, with the VM paused and its devices quiesced for the read.
 * Returns 0, RW_ENOTFOUND (no such disk), or the disk's error.
 */
int machine_read_disk_block(struct machine *m, const char *disk_id, uint64_t idx, void *buf) RW_MUST_CHECK;

/* Test hook: the next n checkpoints fail part-way through storing pages. */
void machine_inject_persist_failures(struct machine *m, unsigned n);

#endif
