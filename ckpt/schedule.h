/*
 * schedule.h - periodic checkpoints (--checkpoint-every, --keep).
 *
 * A thread takes a checkpoint every period. If the previous checkpoint is
 * still persisting when the next is due, the due one is skipped and
 * reported, and the schedule moves to the next period boundary: checkpoints
 * never queue up behind a slow store. Retention (--keep) is the machine's
 * (machine_set_retention).
 */
#ifndef RW_CKPT_SCHEDULE_H
#define RW_CKPT_SCHEDULE_H

#include <stdint.h>

#include "err.h"

struct machine;
struct sched;

struct sched_status {
	uint64_t period_ns;
	uint64_t taken;       /* checkpoints started by the schedule */
	uint64_t skipped;     /* due while the previous one was persisting */
	uint64_t failed;      /* could not be taken (capture error) */
	uint64_t next_in_ns;  /* until the next one is due */
};

/*
 * Start taking a checkpoint of m every period_ns (>= 1 ms). on_skip, if
 * not NULL, is called (on the schedule's thread) for every skipped one.
 */
int sched_start(struct machine *m, uint64_t period_ns, void (*on_skip)(void *opaque, int err),
		void *opaque, struct sched **out) RW_MUST_CHECK;
/* Stop and join. NULL is ok. */
void sched_stop(struct sched *s);
void sched_status(struct sched *s, struct sched_status *st);

#endif
