/*
 * machine.c - a VM plus what checkpointing needs: dirty tracking, the store
 * and the writer thread. This file holds the machine's life cycle and the
 * checkpoint operation from start to end; the stages it calls are in
 * capture.c (the pause), persist.c (the writer) and restore.c (restore and
 * rollback), which machine_internal.h describes.
 *
 * One operation (capture+persist, rollback) runs at a time: `busy` is set
 * from the capture until the writer has committed, so the next checkpoint's
 * parent is always known and committed.
 */
#include "machine_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "board.h"
#include "console.h"
#include "device.h"
#include "log.h"
#include "rw/abi.h"
#include "state.h"
#include "util.h"
#include "vcpu.h"
#include "vm.h"

/* ---------------------------------------------------------- operations */

int machine_quiesce_devices(struct vm *vm, bool resume)
{
	int ret = 0;

	for (struct device *d = vm->devices; d; d = d->next) {
		int (*op)(struct device *) = resume ? d->type->ops->resume : d->type->ops->quiesce;
		if (op) {
			int r = op(d);
			if (r && !ret)
				ret = r;
		}
	}
	return ret;
}

int machine_acquire(struct machine *m, bool wait)
{
	pthread_mutex_lock(&m->lock);
	while (m->busy) {
		if (!wait) {
			pthread_mutex_unlock(&m->lock);
			return RW_EBUSY;
		}
		pthread_cond_wait(&m->cond, &m->lock);
	}
	m->busy = true;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

void machine_release(struct machine *m)
{
	pthread_mutex_lock(&m->lock);
	m->busy = false;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

/*
 * A checkpoint, start to end:
 *   1. take the machine: one operation at a time
 *   2. capture: pause the guest, copy out its state, changed pages and
 *      changed content blocks, resume it (capture.c)
 *   3. hand the capture to the writer, which stores and commits it while
 *      the guest runs (persist.c); the machine stays taken until then
 *   4. with wait, wait for the commit and report it
 */
static int checkpoint(struct machine *m, const char *label, bool wait, bool periodic,
		      struct ckpt_report *rep)
{
	struct capture *c = NULL;
	int ret;

	if (rep)
		memset(rep, 0, sizeof(*rep));
	if (!m->store)
		return -ENOSYS;
	if (label && strlen(label) >= sizeof(c->label))
		return RW_ELIMIT;
	ret = machine_acquire(m, wait);                               /* 1 */
	if (ret)
		return ret;
	ret = capture_take(m, label, &c);                             /* 2 */
	if (ret) {
		machine_release(m);
		return ret;
	}
	if (rep && !wait) {
		rep->parent = c->parent;
		rep->pause_ns = c->pause_ns;
		rep->dirty_pages = c->npages;
	}
	pthread_mutex_lock(&m->lock);
	c->waited = wait;
	c->periodic = periodic;
	persist_hand_over(m, c);                                      /* 3 */
	if (wait) {                                                   /* 4 */
		while (!c->done)
			pthread_cond_wait(&m->cond, &m->lock);
		if (rep)
			*rep = c->rep;
		ret = c->rep.err;
		capture_free(c);
	}
	pthread_mutex_unlock(&m->lock);
	return ret;
}

int machine_checkpoint(struct machine *m, const char *label, bool wait, struct ckpt_report *rep)
{
	return checkpoint(m, label, wait, false, rep);
}

int machine_checkpoint_periodic(struct machine *m, struct ckpt_report *rep)
{
	return checkpoint(m, "periodic", false, true, rep);
}

bool machine_pinned_locked(struct machine *m, uint64_t id)
{
	for (unsigned i = 0; i < m->npins; i++)
		if (m->pins[i] == id)
			return true;
	return false;
}

int machine_pin(struct machine *m, uint64_t id, bool pin)
{
	struct store_snap *sn;
	int ret = 0;

	if (!m->store)
		return -ENOSYS;
	/*
	 * Under the lock, so that retention (retain() in persist.c) either
	 * sees the pin before it picks a victim, or has picked this one
	 * (retiring) or deleted it already, and the pin is refused.
	 */
	pthread_mutex_lock(&m->lock);
	if (pin) {
		ret = id == m->retiring ? RW_ENOTFOUND : store_snap_open(m->store, id, &sn);
		if (ret) {
			pthread_mutex_unlock(&m->lock);
			return ret;
		}
		store_snap_close(sn);
	}
	bool has = machine_pinned_locked(m, id);
	if (pin && !has) {
		uint64_t *p = realloc(m->pins, (m->npins + 1) * sizeof(*p));
		if (!p)
			ret = -ENOMEM;
		else {
			m->pins = p;
			m->pins[m->npins++] = id;
		}
	} else if (!pin && has) {
		for (unsigned i = 0; i < m->npins; i++)
			if (m->pins[i] == id)
				m->pins[i] = m->pins[--m->npins];
	}
	pthread_mutex_unlock(&m->lock);
	return ret;
}

void machine_inject_persist_failures(struct machine *m, unsigned n)
{
	pthread_mutex_lock(&m->lock);
	m->inject_failures = n;
	pthread_mutex_unlock(&m->lock);
}

/* ---------------------------------------------------------- hypercalls */

struct hc_ckpt {
	struct machine *m;
	char label[128];
	uint64_t gen;
};

/* After the RW_HC_CHECKPOINT load completed: take the checkpoint here. */
static void hc_checkpoint_deferred(struct vcpu *v, void *opaque)
{
	struct hc_ckpt *h = opaque;
	struct machine *m = h->m;
	struct ckpt_report rep;
	struct kvm_regs regs;
	int ret;

	vm_vcpu_block_begin(m->vm, v);
	ret = machine_checkpoint(m, h->label, true, &rep);
	vm_vcpu_block_end(m->vm, v);
	/* the guest sees the id; a restored copy of this state sees 0 */
	pthread_mutex_lock(&m->lock);
	bool same = m->state_gen == h->gen;
	pthread_mutex_unlock(&m->lock);
	if (same && vcpu_get_regs(v, &regs) == 0) {
		regs.rax = ret ? (uint64_t)(int64_t)ret : rep.id;
		if (vcpu_set_regs(v, &regs))
			rw_warn("vCPU %u: cannot return the checkpoint id", v->index);
	}
	free(h);
}

static bool machine_hypercall(void *opaque, struct vcpu *v, unsigned nr, const uint64_t a[4], int64_t *ret)
{
	struct machine *m = opaque;

	switch (nr) {
	case RW_HC_CHECKPOINT: {
		struct hc_ckpt *h;
		uint64_t len = MIN(a[1], (uint64_t)sizeof(h->label) - 1);

		if (!m->store)
			return false; /* -ENOSYS from the core */
		h = calloc(1, sizeof(*h));
		if (!h) {
			*ret = -ENOMEM;
			return true;
		}
		h->m = m;
		if (len && mem_read(&m->vm->mem, a[0], h->label, len)) {
			free(h);
			*ret = -EFAULT;
			return true;
		}
		pthread_mutex_lock(&m->lock);
		h->gen = m->state_gen;
		pthread_mutex_unlock(&m->lock);
		vcpu_defer(v, hc_checkpoint_deferred, h);
		*ret = 0;
		return true;
	}
	default:
		return false;
	}
}

/* ------------------------------------------------------- life cycle */

int machine_alloc(const struct machine_opts *o, struct machine **out)
{
	struct machine *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	if (o)
		m->opts = *o;
	if (m->opts.store_dir) {
		m->store_dir = strdup(m->opts.store_dir);
		if (!m->store_dir) {
			free(m);
			return -ENOMEM;
		}
		m->opts.store_dir = m->store_dir;
	}
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	*out = m;
	return 0;
}

/* Open (or create) the machine's store, saying once what went wrong. */
int machine_open_store(struct machine *m, bool create)
{
	struct store_open_opts so = { 0 };
	int ret;

	so.flags = (create ? STORE_OPEN_CREATE : 0) |
		   (m->opts.relaxed_sync ? STORE_OPEN_NOMETASYNC : 0);
	ret = store_open(m->store_dir, &so, &m->store);
	if (ret == RW_EVERSION)
		rw_error("store %s has format version %u; this rewind reads version %u", m->store_dir,
			 so.found_format, STORE_FORMAT_VERSION);
	else if (ret && store_error_detail())
		rw_error("opening store %s: %s", m->store_dir, store_error_detail());
	else if (ret)
		rw_error("opening store %s: %s", m->store_dir, rw_strerror(ret));
	return ret;
}

/* Everything after the VM exists: console, store, dirty tracking, hooks. */
int machine_attach(struct machine *m, bool create_store)
{
	struct vm *vm = m->vm;
	int ret;

	if (m->opts.console_stdin && vm->cfg.serial_in) {
		ret = console_attach(vm, board_serial(vm), STDIN_FILENO, (void (*)(void *))machine_quit,
				     m, &m->console);
		if (ret) {
			rw_error("attaching stdin to the console: %s", rw_strerror(ret));
			return ret;
		}
	}
	if (!m->store_dir)
		return 0;
	if (!m->store) {
		ret = machine_open_store(m, create_store);
		if (ret)
			return ret;
	}
	ret = dirty_start(vm, m->opts.dirty == DIRTY_RING, &m->dirty);
	if (ret) {
		rw_error("starting dirty tracking: %s", rw_strerror(ret));
		return ret;
	}
	vm->hooks.hypercall = machine_hypercall;
	vm->hooks.opaque = m;
	return 0;
}

void machine_host_cfg(struct vm_config *cfg, const struct machine_opts *o)
{
	cfg->dirty_ring_entries = (o && o->store_dir && o->dirty == DIRTY_RING) ? DIRTY_RING_ENTRIES : 0;
	if (o && !o->console_stdin)
		cfg->serial_in = false;
}

int machine_build_vm(struct machine *m, const struct vm_config *cfg)
{
	int ret = vm_create(cfg, &m->vm);

	return ret ? ret : board_build(m->vm);
}

int machine_create(const struct vm_config *cfg_in, const struct machine_opts *o, struct machine **out)
{
	struct vm_config cfg = *cfg_in;
	struct machine *m;
	int ret;

	*out = NULL;
	ret = machine_alloc(o, &m);
	if (ret)
		return ret;
	machine_host_cfg(&cfg, o);
	ret = machine_build_vm(m, &cfg);
	if (!ret)
		ret = vm_boot(m->vm);
	if (ret)
		goto fail;
	ret = state_config_encode(&m->vm->cfg, &m->config_blob, &m->config_len);
	if (ret)
		goto fail;
	ret = machine_attach(m, true);
	if (ret)
		goto fail;
	*out = m;
	return 0;
fail:
	machine_destroy(m);
	return ret;
}

int machine_start(struct machine *m)
{
	int ret;

	if (m->store && !m->writer_started) {
		ret = persist_start(m);
		if (ret)
			return ret;
		copier_start(&m->copier); /* optional: without it one thread copies */
	}
	return vm_start(m->vm);
}

void machine_wait(struct machine *m, struct vm_stop_info *out)
{
	vm_wait(m->vm, out);
	/* a checkpoint still persisting finishes before the machine stops */
	pthread_mutex_lock(&m->lock);
	while (m->busy)
		pthread_cond_wait(&m->cond, &m->lock);
	pthread_mutex_unlock(&m->lock);
	console_detach(m->console);
}

void machine_destroy(struct machine *m)
{
	if (!m)
		return;
	if (m->vm && m->vm->started) {
		struct vm_stop_info why = { .reason = VM_STOP_REQUEST };
		vm_request_stop(m->vm, &why);
		machine_wait(m, NULL);
	}
	persist_stop(m);
	copier_stop(&m->copier);
	console_detach(m->console);
	if (m->vm)
		stage_free(m);
	if (m->dirty)
		dirty_stop(m->dirty);
	vm_destroy(m->vm);
	store_close(m->store);
	free(m->config_blob);
	free(m->own);
	free(m->pins);
	free(m->store_dir);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cond);
	free(m);
}

struct vm *machine_vm(struct machine *m)
{
	return m->vm;
}

bool machine_committed_any(struct machine *m)
{
	pthread_mutex_lock(&m->lock);
	bool any = m->head_id != 0;
	pthread_mutex_unlock(&m->lock);
	return any;
}

struct store *machine_store(struct machine *m)
{
	return m->store;
}

struct dirty_tracker *machine_dirty(struct machine *m)
{
	return m->dirty;
}

int machine_pause(struct machine *m)
{
	pthread_mutex_lock(&m->lock);
	if (m->paused) {
		pthread_mutex_unlock(&m->lock);
		return 0;
	}
	m->paused = true;
	pthread_mutex_unlock(&m->lock);
	int ret = vm_pause(m->vm);
	return ret == RW_ESTOPPED ? ret : 0;
}

int machine_resume(struct machine *m)
{
	pthread_mutex_lock(&m->lock);
	if (!m->paused) {
		pthread_mutex_unlock(&m->lock);
		return 0;
	}
	m->paused = false;
	pthread_mutex_unlock(&m->lock);
	vm_resume(m->vm);
	return 0;
}

/* The device whose content space is called name, or NULL. */
static struct device *content_device(struct vm *vm, const char *name)
{
	for (struct device *d = vm->devices; d; d = d->next)
		if (d->type->content && strcmp(d->type->content->name(d), name) == 0)
			return d;
	return NULL;
}

int machine_read_disk_block(struct machine *m, const char *disk_id, uint64_t idx, void *buf)
{
	struct vm *vm = m->vm;
	struct device *dev = content_device(vm, disk_id);
	int ret;

	if (!dev)
		return RW_ENOTFOUND;
	vm_pause(vm);
	ret = dev->type->ops->quiesce ? dev->type->ops->quiesce(dev) : 0;
	if (!ret)
		ret = dev->type->content->read_current(dev, idx, buf);
	if (dev->type->ops->resume)
		dev->type->ops->resume(dev);
	vm_resume(vm);
	return ret;
}

void machine_quit(struct machine *m)
{
	struct vm_stop_info why = { .reason = VM_STOP_REQUEST };

	snprintf(why.msg, sizeof(why.msg), "stopped on request");
	vm_request_stop(m->vm, &why);
}

void machine_status(struct machine *m, struct machine_status *st)
{
	struct stat sb;
	char path[RW_PATH_MAX + 16];

	memset(st, 0, sizeof(*st));
	st->running = m->vm->started && !vm_stopped(m->vm);
	st->ncpus = m->vm->ncpus;
	st->mem_size = m->vm->mem.size;
	st->dirty = m->opts.dirty;
	st->store_dir = m->store_dir;
	pthread_mutex_lock(&m->lock);
	st->paused = m->paused;
	st->checkpoints = m->checkpoints;
	st->last_id = m->last_id;
	st->head_id = m->head_id;
	st->last = m->last;
	st->keep = m->keep;
	st->deleted = m->deleted;
	st->pinned = m->npins;
	pthread_mutex_unlock(&m->lock);
	if (m->store_dir) {
		snprintf(path, sizeof(path), "%s/data.mdb", m->store_dir);
		if (stat(path, &sb) == 0)
			st->store_bytes = (uint64_t)sb.st_blocks * 512;
	}
}
