/*
 * dirty.h - which guest pages changed, for checkpoints and for resets.
 *
 * Sources: KVM's dirty ring per vCPU (harvested at every pause and on
 * KVM_EXIT_DIRTY_RING_FULL) or KVM's dirty bitmap with manual protection
 * (KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG), plus every write the VMM itself
 * makes into guest memory (mem_write / mem_mark_dirty), which KVM never sees.
 *
 * Consumers: two epochs, each a bitmap over RAM pages (memfd page offsets):
 *   checkpoint epoch  pages changed since the last checkpoint was captured
 *   reset epoch       pages changed since the reset root was taken
 * Every change is recorded in both, so neither consumer can take bits from
 * the other. A consumer takes its bits (clearing them) when it captures a
 * page set, and gives them back if what it captured is not made durable:
 * bits are only lost once the checkpoint that holds them is committed.
 *
 * A write by the VMM that restores one epoch's baseline (a rollback writing
 * checkpoint pages, a reset writing root pages) is recorded only in the
 * other epoch: dirty_note_restored().
 *
 * Threads: dirty_harvest() needs every vCPU outside KVM_RUN (paused);
 * dirty_harvest_vcpu() runs on a vCPU's own thread on a ring-full exit;
 * marking is lock-free from any thread.
 */
#ifndef RW_CKPT_DIRTY_H
#define RW_CKPT_DIRTY_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

struct vm;
struct vcpu;
struct dirty_tracker;

enum dirty_epoch { DIRTY_CKPT = 0, DIRTY_RESET = 1, DIRTY_NR_EPOCHS };

/* Ring entries per vCPU. See dirty.c for why this size. */
#define DIRTY_RING_ENTRIES 65536u

/*
 * Start tracking on vm (which was created with cfg.dirty_ring_entries set
 * for ring mode). The checkpoint epoch starts with every page that holds
 * data marked (the first checkpoint is full); the reset epoch starts clear.
 * Installs vm's memory dirty hook and ring-full hook.
 * Errors: RW_ENOKVMCAP (bitmap mode without manual protect), -errno.
 */
int dirty_start(struct vm *vm, bool ring, struct dirty_tracker **out) RW_MUST_CHECK;
void dirty_stop(struct dirty_tracker *t);

/* Collect what KVM logged into both epochs, re-arming write protection. */
int dirty_harvest(struct dirty_tracker *t) RW_MUST_CHECK;
/*
 * Ring mode, from vcpu's thread on KVM_EXIT_DIRTY_RING_FULL: harvest that
 * vCPU's ring. Returns the entries harvested (0 in bitmap mode) or -errno.
 */
int dirty_harvest_vcpu(struct dirty_tracker *t, struct vcpu *vcpu) RW_MUST_CHECK;

/*
 * Take the epoch's dirty pages: returns their RAM page offsets, ascending,
 * in a malloc'ed array (*pages, caller frees) and clears them in the epoch.
 * Returns the count, or -ENOMEM.
 */
int64_t dirty_take(struct dirty_tracker *t, enum dirty_epoch e, uint64_t **pages);
/*
 * dirty_take() into a caller's array of cap entries (cap >= dirty_npages()
 * always suffices). Returns the count.
 */
uint64_t dirty_take_into(struct dirty_tracker *t, enum dirty_epoch e, uint64_t *pages, uint64_t cap);
/* Give pages taken with dirty_take back to the epoch (capture failed). */
void dirty_give_back(struct dirty_tracker *t, enum dirty_epoch e, const uint64_t *pages, uint64_t n);
/* Mark/clear everything in an epoch. */
void dirty_mark_all(struct dirty_tracker *t, enum dirty_epoch e);
void dirty_clear(struct dirty_tracker *t, enum dirty_epoch e);
/* Count of marked pages in an epoch. */
uint64_t dirty_count(struct dirty_tracker *t, enum dirty_epoch e);
/* Is page marked in epoch? */
bool dirty_test(struct dirty_tracker *t, enum dirty_epoch e, uint64_t page);

/*
 * The VMM just wrote pages [first, first+n) to restore epoch `restored`'s
 * baseline: record the change in every other epoch only.
 */
void dirty_note_restored(struct dirty_tracker *t, enum dirty_epoch restored, uint64_t first,
			 uint64_t n);

/*
 * The hot set (bitmap mode only): pages the guest writes every iteration of
 * a reset loop. Re-arming write protection on them would cost a fault on the
 * next write, more than copying them back, so harvests leave them writable:
 * KVM keeps reporting them dirty and every harvest puts them in both epochs.
 * Returns false (and does nothing) in ring mode, where KVM re-arms every
 * harvested page.
 */
bool dirty_set_hot(struct dirty_tracker *t, uint64_t page, bool hot);
bool dirty_is_hot(const struct dirty_tracker *t, uint64_t page);
/* Drop the whole hot set; the pages are protected again at the next harvest. */
void dirty_clear_hot(struct dirty_tracker *t);
uint64_t dirty_hot_count(const struct dirty_tracker *t);

/* Pages in the RAM offset space. */
uint64_t dirty_npages(const struct dirty_tracker *t);
bool dirty_uses_ring(const struct dirty_tracker *t);

#endif
