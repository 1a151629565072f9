#include "schedule.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "machine.h"
#include "util.h"

struct sched {
	struct machine *m;
	uint64_t period;
	void (*on_skip)(void *, int);
	void *opaque;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	uint64_t next;            /* CLOCK_MONOTONIC ns of the next due one */
	uint64_t taken, skipped, failed;
};

static void *sched_thread(void *arg)
{
	struct sched *s = arg;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		while (!s->stop) {
			uint64_t now = rw_now_ns();
			if (now >= s->next)
				break;
			struct timespec ts = { .tv_sec = (time_t)(s->next / 1000000000ULL),
					       .tv_nsec = (long)(s->next % 1000000000ULL) };
			pthread_cond_timedwait(&s->cond, &s->lock, &ts);
		}
		if (s->stop)
			break;
		pthread_mutex_unlock(&s->lock);

		if (vm_stopped(machine_vm(s->m))) {
			pthread_mutex_lock(&s->lock);
			break;
		}
		int ret = machine_checkpoint_periodic(s->m, NULL);

		pthread_mutex_lock(&s->lock);
		if (ret == 0) {
			s->taken++;
		} else if (ret == RW_EBUSY) {
			s->skipped++;
		} else {
			s->failed++;
		}
		/* the next period boundary still ahead: never a burst to catch up */
		uint64_t now = rw_now_ns();
		s->next += s->period;
		if (s->next <= now)
			s->next = now + s->period - (now - s->next) % s->period;
		/*
		 * Until the first checkpoint is stored (a full one: the slowest
		 * there is), periods that find it still persisting are counted,
		 * not reported: nothing was missed that could have been taken.
		 */
		bool quiet = ret == RW_EBUSY && !machine_committed_any(s->m);
		if (ret && s->on_skip && !quiet) {
			pthread_mutex_unlock(&s->lock);
			s->on_skip(s->opaque, ret);
			pthread_mutex_lock(&s->lock);
		}
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

int sched_start(struct machine *m, uint64_t period_ns, void (*on_skip)(void *opaque, int err),
		void *opaque, struct sched **out)
{
	struct sched *s;
	pthread_condattr_t ca;
	int ret;

	*out = NULL;
	if (period_ns < 1000000ULL)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->m = m;
	s->period = period_ns;
	s->on_skip = on_skip;
	s->opaque = opaque;
	s->next = rw_now_ns() + period_ns;
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	ret = -pthread_create(&s->thread, NULL, sched_thread, s);
	if (ret) {
		pthread_cond_destroy(&s->cond);
		pthread_mutex_destroy(&s->lock);
		free(s);
		return ret;
	}
	*out = s;
	return 0;
}

void sched_stop(struct sched *s)
{
	if (!s)
		return;
	rw_thread_stop(s->thread, &s->lock, &s->cond, &s->stop);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

void sched_status(struct sched *s, struct sched_status *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&s->lock);
	st->period_ns = s->period;
	st->taken = s->taken;
	st->skipped = s->skipped;
	st->failed = s->failed;
	uint64_t now = rw_now_ns();
	st->next_in_ns = s->next > now ? s->next - now : 0;
	pthread_mutex_unlock(&s->lock);
}
