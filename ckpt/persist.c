/*
 * persist.c - the writer thread (DESIGN section 3, step 4): it encodes a
 * capture's records, hashes and stores its pages and content blocks, and
 * commits the checkpoint in one store transaction while the guest runs.
 * On failure the captured pages and blocks go back to the checkpoint
 * epoch, so the next checkpoint still holds every change since the last
 * good one. After a commit, retention deletes what the machine no longer
 * keeps.
 */
#include "machine_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "log.h"
#include "rw/abi.h"
#include "state.h"
#include "util.h"
#include "vm.h"

/* Pages and blocks go to the store in batches of this many. */
#define PERSIST_BATCH 1024

static int put_image(struct vm *vm, struct store_ckpt *sc, const struct vm_image *img)
{
	char key[64];
	int ret = 0;

	for (unsigned i = 0; !ret && i < vm->ncpus; i++) {
		uint8_t *buf = NULL;
		size_t len = 0;

		ret = state_vcpu_encode(vm, i, img->vcpus[i], &buf, &len);
		if (!ret) {
			state_vcpu_key(i, key, sizeof(key));
			ret = store_ckpt_put_record(sc, key, STATE_VCPU_VERSION, buf, len);
		}
		free(buf);
	}
	if (!ret) {
		uint8_t *buf = NULL;
		size_t len = 0;

		ret = state_platform_encode(vm, &img->platform, &buf, &len);
		if (!ret)
			ret = store_ckpt_put_record(sc, STATE_KEY_PLATFORM, STATE_PLATFORM_VERSION, buf, len);
		free(buf);
	}
	for (unsigned i = 0; !ret && i < img->nrecs; i++)
		ret = store_ckpt_put_record(sc, img->recs[i].key, img->recs[i].version,
					    img->recs[i].data, img->recs[i].len);
	return ret;
}

static int put_content(struct store_ckpt *sc, const struct content_cap *cc)
{
	const char *name = cc->dev->type->content->name(cc->dev);
	int ret = store_ckpt_set_size(sc, name, cc->nblocks);

	for (uint64_t k = 0; !ret && k < cc->n; k += PERSIST_BATCH)
		ret = store_ckpt_add_pages(sc, name, cc->blocks + k, cc->data + k * RW_PAGE_SIZE,
					   MIN((uint64_t)PERSIST_BATCH, cc->n - k));
	return ret;
}

/* One capture into the store, committed or not at all. */
static int persist(struct machine *m, struct capture *c, uint64_t *id, struct store_commit_stats *st)
{
	struct vm *vm = m->vm;
	struct store_ckpt *sc = NULL;
	int ret;

	ret = store_ckpt_begin(m->store, c->parent, &sc);
	if (ret)
		return ret;
	pthread_mutex_lock(&m->lock);
	bool inject = m->inject_failures > 0;
	if (inject)
		m->inject_failures--;
	pthread_mutex_unlock(&m->lock);
	ret = store_ckpt_set_label(sc, c->label);
	if (!ret)
		ret = store_ckpt_set_config(sc, m->config_blob, m->config_len);
	if (!ret)
		ret = store_ckpt_set_size(sc, NULL, vm->mem.size / RW_PAGE_SIZE);
	for (uint64_t i = 0; !ret && i < c->npages; i += PERSIST_BATCH) {
		uint64_t k = MIN((uint64_t)PERSIST_BATCH, c->npages - i);
		if (inject && i + k >= c->npages / 2) {
			ret = RW_EINJECTED; /* part-way through the pages */
			break;
		}
		ret = store_ckpt_add_pages(sc, NULL, c->pages + i, c->data + i * RW_PAGE_SIZE, k);
	}
	if (!ret && inject)
		ret = RW_EINJECTED;
	if (!ret)
		ret = put_image(vm, sc, c->img);
	for (unsigned i = 0; !ret && i < c->ncontent; i++)
		ret = put_content(sc, &c->content[i]);
	if (ret) {
		store_ckpt_abort(sc);
		return ret;
	}
	return store_ckpt_commit(sc, id, st);
}

/*
 * After a periodic checkpoint's commit: remember the id, and delete the
 * oldest of this machine's periodic checkpoints beyond the retention count,
 * never the head or a pinned one. Writer thread.
 */
static void retain(struct machine *m, uint64_t id)
{
	pthread_mutex_lock(&m->lock);
	if (m->nown == m->capown) {
		unsigned cap = m->capown ? m->capown * 2 : 64;
		uint64_t *p = realloc(m->own, cap * sizeof(*p));
		if (!p) {
			pthread_mutex_unlock(&m->lock);
			return; /* not tracked: simply kept */
		}
		m->own = p;
		m->capown = cap;
	}
	m->own[m->nown++] = id;
	unsigned keep = m->keep;
	pthread_mutex_unlock(&m->lock);
	if (!keep)
		return;
	for (;;) {
		uint64_t victim = 0;
		unsigned at = 0;

		pthread_mutex_lock(&m->lock);
		if (m->nown > keep) {
			for (at = 0; at < m->nown - keep; at++)
				if (m->own[at] != m->head_id && !machine_pinned_locked(m, m->own[at]))
					break;
			if (at < m->nown - keep)
				victim = m->own[at];
		}
		m->retiring = victim;
		pthread_mutex_unlock(&m->lock);
		if (!victim)
			return;
		int ret = store_delete(m->store, victim, NULL);
		if (ret && ret != RW_ENOTFOUND) {
			rw_warn("retention: deleting checkpoint %" PRIu64 ": %s", victim, rw_strerror(ret));
			pthread_mutex_lock(&m->lock);
			m->retiring = 0;
			pthread_mutex_unlock(&m->lock);
			return;
		}
		pthread_mutex_lock(&m->lock);
		m->retiring = 0;
		memmove(&m->own[at], &m->own[at + 1], (m->nown - at - 1) * sizeof(m->own[0]));
		m->nown--;
		if (ret == 0)
			m->deleted++;
		pthread_mutex_unlock(&m->lock);
	}
}

void machine_set_retention(struct machine *m, unsigned keep)
{
	pthread_mutex_lock(&m->lock);
	m->keep = keep;
	pthread_mutex_unlock(&m->lock);
}

static void fill_report(struct ckpt_report *r, const struct capture *c, int ret, uint64_t id,
			const struct store_commit_stats *st)
{
	memset(r, 0, sizeof(*r));
	r->parent = c->parent;
	snprintf(r->label, sizeof(r->label), "%s", c->label);
	r->dirty_pages = c->npages;
	for (unsigned i = 0; i < c->ncontent; i++)
		r->dirty_blocks += c->content[i].n;
	r->pause_ns = c->pause_ns;
	r->persist_ns = rw_now_ns() - c->t_resume;
	r->err = ret;
	if (ret == 0) {
		r->id = id;
		r->new_chunks = st->new_chunks;
		r->dedup_hits = st->dedup_hits;
		r->zero_pages = st->zero_pages;
		r->bytes_written = st->new_bytes;
	}
}

static void *writer_thread(void *arg)
{
	struct machine *m = arg;

	pthread_mutex_lock(&m->lock);
	for (;;) {
		while (!m->job && !m->writer_stop)
			pthread_cond_wait(&m->cond, &m->lock);
		if (!m->job)
			break;
		struct capture *c = m->job;
		pthread_mutex_unlock(&m->lock);

		struct store_commit_stats st = { 0 };
		uint64_t id = 0;
		int ret = persist(m, c, &id, &st);

		fill_report(&c->rep, c, ret, id, &st);
		if (ret)
			capture_give_back(m, c); /* not durable: still changed */
		pthread_mutex_lock(&m->lock);
		if (ret == 0) {
			m->head_id = id;
			m->last_id = id;
		}
		pthread_mutex_unlock(&m->lock);
		if (ret == 0 && c->periodic)
			retain(m, id);
		if (m->opts.on_report)
			m->opts.on_report(m->opts.opaque, &c->rep);

		pthread_mutex_lock(&m->lock);
		m->checkpoints++;
		m->last = c->rep;
		m->job = NULL;
		m->busy = false;
		c->done = true;
		if (!c->waited)
			capture_free(c);
		pthread_cond_broadcast(&m->cond);
	}
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

int persist_start(struct machine *m)
{
	int ret;

	if (m->writer_started)
		return 0;
	ret = -pthread_create(&m->writer, NULL, writer_thread, m);
	if (ret)
		return ret;
	m->writer_started = true;
	return 0;
}

void persist_hand_over(struct machine *m, struct capture *c)
{
	m->job = c;
	pthread_cond_broadcast(&m->cond);
}

void persist_stop(struct machine *m)
{
	if (!m->writer_started)
		return;
	rw_thread_stop(m->writer, &m->lock, &m->cond, &m->writer_stop);
	m->writer_started = false;
}
