/*
 * machine_internal.h - what the stages of a machine share (machine.h is
 * the interface). A machine's code is split by stage:
 *
 *   machine.c   life cycle: create, start, the checkpoint operation from
 *               start to end, pause, status, hypercalls, destroy
 *   capture.c   the pause: every vCPU parked, state and changed pages and
 *               blocks copied out, the guest resumed
 *   persist.c   the writer thread: a capture into the store, retention
 *   restore.c   a checkpoint back into a new VM (restore) or into the
 *               running one (rollback)
 */
#ifndef RW_CKPT_MACHINE_INTERNAL_H
#define RW_CKPT_MACHINE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "dirty.h"
#include "image.h"
#include "machine.h"
#include "store.h"

struct device;

/* The blocks of one device's content changed since the last checkpoint. */
struct content_cap {
	struct device *dev;
	uint64_t nblocks;         /* the content's size in blocks */
	uint64_t *blocks;         /* ascending; malloc'ed */
	uint64_t n;
	uint8_t *data;            /* n * 4096: as the checkpoint keeps them */
};

/*
 * A captured checkpoint on its way to the store. pages, data and img point
 * into the machine's staging buffers, which only one capture uses at a time
 * (the next capture waits for the writer), so they are allocated once and
 * stay faulted in: the pause costs a copy of the dirty pages, not page
 * faults on fresh memory.
 */
struct capture {
	uint64_t parent;
	char label[128];
	uint64_t *pages;          /* RAM page offsets, ascending */
	uint64_t npages;
	uint8_t *data;            /* npages * 4096 bytes */
	struct vm_image *img;     /* vCPUs, platform, device records */
	struct content_cap *content;
	unsigned ncontent;
	uint64_t pause_ns;
	uint64_t t_resume;
	struct ckpt_report rep;
	bool done;
	bool waited;              /* a caller waits and frees; else the writer frees */
	bool periodic;            /* the scheduler's: retention may delete it */
};

/*
 * A second thread for the page copy of large captures: while the vCPUs are
 * parked their cores are idle, so two copies run side by side.
 */
struct copier {
	pthread_t thread;
	bool started, stop, work;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint8_t *dst;
	const uint8_t *hva;
	const uint64_t *pages;
	uint64_t n;
};

struct machine {
	struct vm *vm;
	struct machine_opts opts;
	char *store_dir;
	struct store *store;
	struct dirty_tracker *dirty;
	struct console *console;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool busy;                 /* an operation holds the machine */
	bool paused;               /* machine_pause() */
	struct capture *job;       /* handed to the writer */
	bool writer_stop;
	pthread_t writer;
	bool writer_started;

	uint64_t head_id;          /* checkpoint the running state descends from */
	uint64_t last_id;
	uint64_t checkpoints;
	struct ckpt_report last;
	uint64_t state_gen;        /* bumps when guest state is replaced */
	uint8_t *config_blob;
	size_t config_len;
	unsigned inject_failures;  /* test hook: persists to fail part-way */

	/* retention: periodic ids this machine committed, oldest first */
	unsigned keep;
	uint64_t *own;
	unsigned nown, capown;
	uint64_t deleted;
	uint64_t *pins;            /* pinned ids, unordered */
	unsigned npins;
	uint64_t retiring;         /* the id retention is deleting now (0: none);
				      a pin of it is refused as not found */

	struct copier copier;

	/* staging for the capture in flight (see struct capture) */
	uint64_t *stage_pages;     /* dirty_npages() entries */
	uint8_t *stage_data;
	uint64_t stage_data_pages; /* capacity of stage_data */
	struct vm_image stage_img;
};

/* machine.c */
int machine_alloc(const struct machine_opts *o, struct machine **out) RW_MUST_CHECK;
int machine_open_store(struct machine *m, bool create) RW_MUST_CHECK;
int machine_attach(struct machine *m, bool create_store) RW_MUST_CHECK;
void machine_host_cfg(struct vm_config *cfg, const struct machine_opts *o);
/* The VM of cfg with the board's devices, not booted. */
int machine_build_vm(struct machine *m, const struct vm_config *cfg) RW_MUST_CHECK;
/* One operation at a time: take the machine (with !wait, RW_EBUSY), give it back. */
int machine_acquire(struct machine *m, bool wait) RW_MUST_CHECK;
void machine_release(struct machine *m);
/* Quiesce every device (or resume them); the first error. */
int machine_quiesce_devices(struct vm *vm, bool resume);

/* capture.c */
int capture_take(struct machine *m, const char *label, struct capture **out) RW_MUST_CHECK;
/* m->lock held */
bool machine_pinned_locked(struct machine *m, uint64_t id);
/* Changed pages and blocks back to the checkpoint epoch: nothing was stored. */
void capture_give_back(struct machine *m, struct capture *c);
void capture_free(struct capture *c);
void copier_start(struct copier *cp);
void copier_stop(struct copier *cp);
void stage_free(struct machine *m);

/* persist.c */
int persist_start(struct machine *m) RW_MUST_CHECK;
/* Hand a capture to the writer (m->lock held); busy stays set until it is done. */
void persist_hand_over(struct machine *m, struct capture *c);
void persist_stop(struct machine *m);

#endif
