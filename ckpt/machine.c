/*
 * machine.c - a VM plus what checkpointing needs: dirty tracking, the store
 * and the writer thread.
 *
 * Taking a checkpoint (DESIGN section 3):
 *   1. pause every vCPU (the barrier), quiesce devices
 *   2. harvest KVM's dirty log into the checkpoint epoch
 *   3. capture vCPU, platform and device state (raw KVM images; encoded later)
 *   4. take the epoch's dirty pages and copy them to a staging buffer
 *   5. resume devices and vCPUs              <- the guest runs again
 *   6. the writer thread encodes the records, hashes and stores the pages
 *      and commits the checkpoint in one store transaction; on failure the
 *      captured dirty bits go back to the epoch, so the next checkpoint
 *      still holds every page changed since the last good one.
 *
 * One operation (capture+persist, rollback) runs at a time: `busy` is set
 * from the capture until the writer has committed, so the next checkpoint's
 * parent is always known and committed.
 */
#include "machine.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "board.h"
#include "console.h"
#include "dirty.h"
#include "disk.h"
#include "log.h"
#include "rw/abi.h"
#include "state.h"
#include "store.h"
#include "util.h"
#include "vcpu.h"
#include "vcpu_state.h"
#include "virtio_blk.h"
#include "vm.h"

/*
 * A captured checkpoint on its way to the store. pages, data and vcpus point
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
	struct vcpu_state **vcpus;
	struct platform_state platform;
	struct dev_rec *devs;     /* device records, encoded during the pause */
	unsigned ndevs;
	struct disk_cap *disks;
	unsigned ndisks;
	uint64_t pause_ns;
	uint64_t t_resume;
	struct ckpt_report rep;
	bool done;
	bool waited;              /* a caller waits and frees; else the writer frees */
};

struct dev_rec {
	char key[DEV_KEY_MAX];
	uint32_t version;
	uint8_t *data;
	size_t len;
};

/* The blocks of one disk changed since the last checkpoint. */
struct disk_cap {
	struct disk *disk;
	uint64_t nblocks;         /* the disk's size in blocks */
	uint64_t *blocks;         /* ascending; malloc'ed */
	uint64_t n;
	uint8_t *data;            /* n * 4096: content, zeros for absent blocks */
};

/*
 * A second thread for the page copy of large captures: while the vCPUs are
 * parked their cores are idle, so two copies run side by side.
 */
#define COPY_SPLIT_MIN 512

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

	/* retention: ids this machine committed, oldest first */
	unsigned keep;
	uint64_t *own;
	unsigned nown, capown;
	uint64_t deleted;

	struct copier copier;

	/* staging for the capture in flight (see struct capture) */
	uint64_t *stage_pages;     /* dirty_npages() entries */
	uint8_t *stage_data;
	uint64_t stage_data_pages; /* capacity of stage_data */
	struct vcpu_state **stage_vcpus;
};

/* ------------------------------------------------------------- helpers */

static void capture_free(struct capture *c, unsigned ncpus)
{
	(void)ncpus;
	if (!c)
		return;
	for (unsigned i = 0; i < c->ndevs; i++)
		free(c->devs[i].data);
	free(c->devs);
	for (unsigned i = 0; i < c->ndisks; i++) {
		free(c->disks[i].blocks);
		free(c->disks[i].data);
	}
	free(c->disks);
	free(c);
}

static int put_dev(void *arg, const char *key, uint32_t version, const void *data, size_t len)
{
	struct capture *c = arg;
	struct dev_rec *d = realloc(c->devs, (c->ndevs + 1) * sizeof(*d));

	if (!d)
		return -ENOMEM;
	c->devs = d;
	d = &c->devs[c->ndevs];
	memset(d, 0, sizeof(*d));
	snprintf(d->key, sizeof(d->key), "%s", key);
	d->version = version;
	d->len = len;
	d->data = malloc(len ? len : 1);
	if (!d->data)
		return -ENOMEM;
	memcpy(d->data, data, len);
	c->ndevs++;
	return 0;
}

static int quiesce_devices(struct vm *vm, bool resume)
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

/* ------------------------------------------------------------- capture */

/*
 * Steps 1-5 with the VM paused. Returns 0 with *out filled, or an error
 * with the dirty bits untouched.
 */
/* Copy pages[0..n) of guest RAM (hva) to dst, page by page. */
static void copy_pages(uint8_t *dst, const uint8_t *hva, const uint64_t *pages, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		memcpy(dst + i * RW_PAGE_SIZE, hva + pages[i] * RW_PAGE_SIZE, RW_PAGE_SIZE);
}

static void *copier_thread(void *arg)
{
	struct copier *cp = arg;

	pthread_mutex_lock(&cp->lock);
	for (;;) {
		while (!cp->work && !cp->stop)
			pthread_cond_wait(&cp->cond, &cp->lock);
		if (cp->stop)
			break;
		pthread_mutex_unlock(&cp->lock);
		copy_pages(cp->dst, cp->hva, cp->pages, cp->n);
		pthread_mutex_lock(&cp->lock);
		cp->work = false;
		pthread_cond_broadcast(&cp->cond);
	}
	pthread_mutex_unlock(&cp->lock);
	return NULL;
}

static void copier_start(struct copier *cp)
{
	sigset_t all, old;

	pthread_mutex_init(&cp->lock, NULL);
	pthread_cond_init(&cp->cond, NULL);
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	cp->started = pthread_create(&cp->thread, NULL, copier_thread, cp) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void copier_stop(struct copier *cp)
{
	if (!cp->started)
		return;
	pthread_mutex_lock(&cp->lock);
	cp->stop = true;
	pthread_cond_broadcast(&cp->cond);
	pthread_mutex_unlock(&cp->lock);
	pthread_join(cp->thread, NULL);
	pthread_cond_destroy(&cp->cond);
	pthread_mutex_destroy(&cp->lock);
	cp->started = false;
}

/* Copy the capture's pages, the second half on the copier when it pays. */
static void copy_capture(struct machine *m, struct capture *c)
{
	const uint8_t *hva = m->vm->mem.hva;
	struct copier *cp = &m->copier;
	uint64_t half = c->npages / 2;

	if (!cp->started || c->npages < COPY_SPLIT_MIN) {
		copy_pages(c->data, hva, c->pages, c->npages);
		return;
	}
	pthread_mutex_lock(&cp->lock);
	cp->dst = c->data + half * RW_PAGE_SIZE;
	cp->hva = hva;
	cp->pages = c->pages + half;
	cp->n = c->npages - half;
	cp->work = true;
	pthread_cond_broadcast(&cp->cond);
	pthread_mutex_unlock(&cp->lock);
	copy_pages(c->data, hva, c->pages, half);
	pthread_mutex_lock(&cp->lock);
	while (cp->work)
		pthread_cond_wait(&cp->cond, &cp->lock);
	pthread_mutex_unlock(&cp->lock);
}

static int stage_alloc(struct machine *m)
{
	struct vm *vm = m->vm;

	if (m->stage_pages)
		return 0;
	m->stage_pages = malloc(dirty_npages(m->dirty) * sizeof(uint64_t));
	m->stage_vcpus = calloc(vm->ncpus, sizeof(m->stage_vcpus[0]));
	if (!m->stage_pages || !m->stage_vcpus)
		return -ENOMEM;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		m->stage_vcpus[i] = aligned_alloc(64, ALIGN_UP(sizeof(struct vcpu_state), 64));
		if (!m->stage_vcpus[i])
			return -ENOMEM;
	}
	return 0;
}

static void stage_free(struct machine *m)
{
	if (m->stage_vcpus)
		for (unsigned i = 0; i < m->vm->ncpus; i++)
			free(m->stage_vcpus[i]);
	free(m->stage_vcpus);
	free(m->stage_pages);
	if (m->stage_data)
		munmap(m->stage_data, m->stage_data_pages * RW_PAGE_SIZE);
}

/* Make room for n pages of staging (keeps what was faulted in). */
static int stage_reserve(struct machine *m, uint64_t n)
{
	uint8_t *p;
	uint64_t cap;

	if (n <= m->stage_data_pages)
		return 0;
	cap = MAX(n, m->stage_data_pages * 2);
	cap = MIN(cap, dirty_npages(m->dirty));
	p = mmap(NULL, cap * RW_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	if (m->stage_data)
		munmap(m->stage_data, m->stage_data_pages * RW_PAGE_SIZE);
	m->stage_data = p;
	m->stage_data_pages = cap;
	return 0;
}

/* Give every disk's captured blocks back to its checkpoint epoch. */
static void disks_give_back(struct capture *c)
{
	for (unsigned i = 0; i < c->ndisks; i++)
		disk_give_back(c->disks[i].disk, DISK_EPOCH_CKPT, c->disks[i].blocks, c->disks[i].n);
}

/*
 * With the devices quiesced: take each disk's changed blocks and read their
 * content (an absent block, one that reads from the backing file again, is
 * stored as a hole; the device record says which blocks are present).
 */
static int capture_disks(struct vm *vm, struct capture *c)
{
	unsigned n = 0;
	int ret = 0;

	for (struct device *d = vm->devices; d; d = d->next)
		if (virtio_blk_is(d))
			n++;
	if (!n)
		return 0;
	c->disks = calloc(n, sizeof(c->disks[0]));
	if (!c->disks)
		return -ENOMEM;
	for (struct device *d = vm->devices; d && !ret; d = d->next) {
		if (!virtio_blk_is(d))
			continue;
		struct disk_cap *dc = &c->disks[c->ndisks];
		dc->disk = virtio_blk_disk(d);
		dc->nblocks = disk_nblocks(dc->disk);
		int64_t k = disk_take_dirty(dc->disk, DISK_EPOCH_CKPT, &dc->blocks);
		if (k < 0) {
			ret = (int)k;
			break;
		}
		dc->n = (uint64_t)k;
		c->ndisks++;
		dc->data = malloc((dc->n ? dc->n : 1) * RW_PAGE_SIZE);
		if (!dc->data) {
			ret = -ENOMEM;
			break;
		}
		/* one read per run of consecutive changed blocks */
		for (uint64_t i = 0; i < dc->n && !ret;) {
			uint64_t j = i + 1;
			while (j < dc->n && dc->blocks[j] == dc->blocks[j - 1] + 1)
				j++;
			ret = disk_read_present(dc->disk, dc->blocks[i], j - i, dc->data + i * RW_PAGE_SIZE);
			i = j;
		}
	}
	if (ret)
		disks_give_back(c);
	return ret;
}

static int capture(struct machine *m, const char *label, struct capture **out)
{
	struct vm *vm = m->vm;
	struct capture *c = calloc(1, sizeof(*c));
	uint64_t t0;
	int ret;

	if (!c)
		return -ENOMEM;
	ret = stage_alloc(m);
	if (ret) {
		free(c);
		return ret;
	}
	c->parent = m->head_id;
	snprintf(c->label, sizeof(c->label), "%s", label ? label : "");
	c->vcpus = m->stage_vcpus;
	c->pages = m->stage_pages;
	t0 = rw_now_ns();

	uint64_t t[6] = { 0 };

	/* each vCPU saves its own state while this thread does the rest */
	vm_pause_capture(vm, c->vcpus);
	t[0] = rw_now_ns();
	ret = quiesce_devices(vm, false);
	if (!ret)
		ret = dirty_harvest(m->dirty);
	t[1] = rw_now_ns();
	if (!ret)
		ret = platform_state_save(vm, &c->platform);
	if (!ret)
		ret = state_devices_save(vm, put_dev, c);
	if (!ret)
		ret = capture_disks(vm, c);
	t[2] = rw_now_ns();
	/* the page copy needs no vCPU state: it runs while the vCPUs save theirs */
	bool taken = false;
	if (!ret) {
		c->npages = dirty_take_into(m->dirty, DIRTY_CKPT, c->pages, dirty_npages(m->dirty));
		taken = true;
		ret = stage_reserve(m, c->npages);
		if (!ret) {
			c->data = m->stage_data;
			copy_capture(m, c);
		}
	}
	t[3] = rw_now_ns();
	int r = vm_capture_finish(vm);
	if (!ret)
		ret = r;
	if (ret && taken) {
		dirty_give_back(m->dirty, DIRTY_CKPT, c->pages, c->npages);
		disks_give_back(c);
	}
	t[4] = rw_now_ns();
	quiesce_devices(vm, true);
	t[5] = rw_now_ns();
	vm_resume(vm);
	c->t_resume = rw_now_ns();
	c->pause_ns = c->t_resume - t0;
	if (!ret)
		rw_debug("pause %.0f us: barrier %.0f, harvest %.0f, platform and devices %.0f, "
			 "dirty scan and copy %.0f, vCPU state (rest) %.0f, devices back %.0f, resume %.0f",
			 (double)c->pause_ns / 1e3, (double)(t[0] - t0) / 1e3,
			 (double)(t[1] - t[0]) / 1e3, (double)(t[2] - t[1]) / 1e3,
			 (double)(t[3] - t[2]) / 1e3, (double)(t[4] - t[3]) / 1e3,
			 (double)(t[5] - t[4]) / 1e3, (double)(c->t_resume - t[5]) / 1e3);
	if (ret) {
		capture_free(c, vm->ncpus);
		return ret;
	}
	*out = c;
	return 0;
}

/* ------------------------------------------------------------- persist */

/* Step 6, on the writer thread. */
static int persist(struct machine *m, struct capture *c, uint64_t *id, struct store_commit_stats *st)
{
	struct vm *vm = m->vm;
	struct store_ckpt *sc = NULL;
	char key[64];
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
	for (uint64_t i = 0; !ret && i < c->npages; i += 1024) {
		uint64_t k = MIN((uint64_t)1024, c->npages - i);
		if (inject && i + k >= c->npages / 2) {
			ret = RW_EINJECTED; /* part-way through the pages */
			break;
		}
		ret = store_ckpt_add_pages(sc, NULL, c->pages + i, c->data + i * RW_PAGE_SIZE, k);
	}
	if (!ret && inject)
		ret = RW_EINJECTED;
	for (unsigned i = 0; !ret && i < vm->ncpus; i++) {
		uint8_t *buf = NULL;
		size_t len = 0;

		ret = state_vcpu_encode(vm, i, c->vcpus[i], &buf, &len);
		if (!ret) {
			state_vcpu_key(i, key, sizeof(key));
			ret = store_ckpt_put_record(sc, key, STATE_VCPU_VERSION, buf, len);
		}
		free(buf);
	}
	if (!ret) {
		uint8_t *buf = NULL;
		size_t len = 0;

		ret = state_platform_encode(vm, &c->platform, &buf, &len);
		if (!ret)
			ret = store_ckpt_put_record(sc, STATE_KEY_PLATFORM, STATE_PLATFORM_VERSION, buf, len);
		free(buf);
	}
	for (unsigned i = 0; !ret && i < c->ndevs; i++)
		ret = store_ckpt_put_record(sc, c->devs[i].key, c->devs[i].version, c->devs[i].data,
					    c->devs[i].len);
	for (unsigned i = 0; !ret && i < c->ndisks; i++) {
		const struct disk_cap *dc = &c->disks[i];
		const char *name = disk_name(dc->disk);

		ret = store_ckpt_set_size(sc, name, dc->nblocks);
		for (uint64_t k = 0; !ret && k < dc->n; k += 1024)
			ret = store_ckpt_add_pages(sc, name, dc->blocks + k, dc->data + k * RW_PAGE_SIZE,
						   MIN((uint64_t)1024, dc->n - k));
	}
	if (ret) {
		store_ckpt_abort(sc);
		return ret;
	}
	return store_ckpt_commit(sc, id, st);
}

/*
 * After a commit: remember the id, and delete the oldest of this machine's
 * checkpoints beyond the retention count, never the head. Writer thread.
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
				if (m->own[at] != m->head_id)
					break;
			if (at < m->nown - keep)
				victim = m->own[at];
		}
		pthread_mutex_unlock(&m->lock);
		if (!victim)
			return;
		int ret = store_delete(m->store, victim, NULL);
		if (ret && ret != RW_ENOTFOUND) {
			rw_warn("retention: deleting checkpoint %" PRIu64 ": %s", victim, rw_strerror(ret));
			return;
		}
		pthread_mutex_lock(&m->lock);
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

		struct ckpt_report *r = &c->rep;
		memset(r, 0, sizeof(*r));
		r->parent = c->parent;
		snprintf(r->label, sizeof(r->label), "%s", c->label);
		r->dirty_pages = c->npages;
		for (unsigned i = 0; i < c->ndisks; i++)
			r->dirty_blocks += c->disks[i].n;
		r->pause_ns = c->pause_ns;
		r->persist_ns = rw_now_ns() - c->t_resume;
		r->err = ret;
		if (ret == 0) {
			r->id = id;
			r->new_chunks = st.new_chunks;
			r->dedup_hits = st.dedup_hits;
			r->zero_pages = st.zero_pages;
			r->bytes_written = st.new_bytes;
		} else {
			/* the pages were not made durable: they stay dirty */
			dirty_give_back(m->dirty, DIRTY_CKPT, c->pages, c->npages);
			disks_give_back(c);
		}
		pthread_mutex_lock(&m->lock);
		if (ret == 0) {
			m->head_id = id;
			m->last_id = id;
		}
		pthread_mutex_unlock(&m->lock);
		if (ret == 0)
			retain(m, id);
		if (m->opts.on_report)
			m->opts.on_report(m->opts.opaque, r);

		pthread_mutex_lock(&m->lock);
		m->checkpoints++;
		m->last = *r;
		m->job = NULL;
		m->busy = false;
		c->done = true;
		if (!c->waited)
			capture_free(c, m->vm->ncpus);
		pthread_cond_broadcast(&m->cond);
	}
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

/* ---------------------------------------------------------- operations */

/* Wait for the machine to be free and take it. With !wait, RW_EBUSY. */
static int acquire(struct machine *m, bool wait)
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

static void release(struct machine *m)
{
	pthread_mutex_lock(&m->lock);
	m->busy = false;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

int machine_checkpoint(struct machine *m, const char *label, bool wait, struct ckpt_report *rep)
{
	struct capture *c = NULL;
	int ret;

	if (rep)
		memset(rep, 0, sizeof(*rep));
	if (!m->store)
		return -ENOSYS;
	if (label && strlen(label) >= sizeof(c->label))
		return RW_ELIMIT;
	ret = acquire(m, wait);
	if (ret)
		return ret;
	ret = capture(m, label, &c);
	if (ret) {
		release(m);
		return ret;
	}
	if (rep && !wait) {
		rep->parent = c->parent;
		rep->pause_ns = c->pause_ns;
		rep->dirty_pages = c->npages;
	}
	pthread_mutex_lock(&m->lock);
	c->waited = wait;
	m->job = c; /* busy stays set until the writer is done */
	pthread_cond_broadcast(&m->cond);
	if (wait) {
		while (!c->done)
			pthread_cond_wait(&m->cond, &m->lock);
		if (rep)
			*rep = c->rep;
		ret = c->rep.err;
		capture_free(c, m->vm->ncpus);
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

/* ------------------------------------------------- loading a checkpoint */

/* Machine state of a checkpoint, decoded and validated, not yet applied. */
struct loaded_state {
	struct vcpu_state **vcpus;
	unsigned ncpus;
	struct platform_state platform;
};

static void loaded_free(struct loaded_state *ls)
{
	if (ls->vcpus)
		for (unsigned i = 0; i < ls->ncpus; i++)
			free(ls->vcpus[i]);
	free(ls->vcpus);
	memset(ls, 0, sizeof(*ls));
}

struct name_list {
	char **names;
	size_t n;
};

static int collect_name(void *arg, const struct store_record_info *ri)
{
	struct name_list *l = arg;
	char **p = realloc(l->names, (l->n + 1) * sizeof(*p));

	if (!p)
		return -ENOMEM;
	l->names = p;
	l->names[l->n] = strdup(ri->name);
	if (!l->names[l->n])
		return -ENOMEM;
	l->n++;
	return 0;
}

/* Records read for one registry call; freed when it returns. */
struct snap_lookup {
	struct store_snap *sn;
	void **bufs;
	size_t n;
};

static int snap_lookup(void *arg, const char *key, const void **data, size_t *len)
{
	struct snap_lookup *l = arg;
	uint32_t version;
	void *buf = NULL, **p;
	int ret;

	p = realloc(l->bufs, (l->n + 1) * sizeof(*p));
	if (!p)
		return -ENOMEM;
	l->bufs = p;
	ret = store_snap_record(l->sn, key, &buf, len, &version);
	if (ret)
		return ret;
	l->bufs[l->n++] = buf;
	*data = buf;
	return 0;
}

static void snap_lookup_done(struct snap_lookup *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->bufs[i]);
	free(l->bufs);
	l->bufs = NULL;
	l->n = 0;
}

/*
 * Decode and validate every record of snapshot sn against vm before any of
 * it is applied. On failure, logs one line naming the checkpoint, the
 * record and what is wrong.
 */
static int load_validate(struct vm *vm, uint64_t id, struct store_snap *sn, struct loaded_state *ls)
{
	struct name_list names = { 0 };
	char why[256] = "", key[64];
	void *data = NULL;
	size_t len;
	uint32_t version;
	int ret;

	memset(ls, 0, sizeof(*ls));
	ret = store_snap_foreach_record(sn, collect_name, &names);
	if (!ret)
		ret = state_check_names(vm, (const char *const *)names.names, names.n, why, sizeof(why));
	for (size_t i = 0; i < names.n; i++)
		free(names.names[i]);
	free(names.names);
	if (ret) {
		rw_error("checkpoint %" PRIu64 ": %s", id, why[0] ? why : rw_strerror(ret));
		return ret;
	}
	ls->ncpus = vm->ncpus;
	ls->vcpus = calloc(vm->ncpus, sizeof(ls->vcpus[0]));
	if (!ls->vcpus)
		return -ENOMEM;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		ls->vcpus[i] = aligned_alloc(64, ALIGN_UP(sizeof(struct vcpu_state), 64));
		if (!ls->vcpus[i]) {
			ret = -ENOMEM;
			goto fail;
		}
		state_vcpu_key(i, key, sizeof(key));
		ret = store_snap_record(sn, key, &data, &len, &version);
		if (!ret)
			ret = state_vcpu_decode(vm, i, data, len, ls->vcpus[i], why, sizeof(why));
		free(data);
		data = NULL;
		if (ret) {
			rw_error("checkpoint %" PRIu64 ": record %s: %s", id, key,
				 why[0] ? why : rw_strerror(ret));
			goto fail;
		}
	}
	ret = store_snap_record(sn, STATE_KEY_PLATFORM, &data, &len, &version);
	if (!ret)
		ret = state_platform_decode(vm, data, len, &ls->platform, why, sizeof(why));
	free(data);
	if (ret) {
		rw_error("checkpoint %" PRIu64 ": record %s: %s", id, STATE_KEY_PLATFORM,
			 why[0] ? why : rw_strerror(ret));
		goto fail;
	}
	struct snap_lookup l = { .sn = sn };
	ret = state_devices_validate(vm, snap_lookup, &l, why, sizeof(why));
	snap_lookup_done(&l);
	if (ret) {
		rw_error("checkpoint %" PRIu64 ": %s", id, why[0] ? why : rw_strerror(ret));
		goto fail;
	}
	return 0;
fail:
	loaded_free(ls);
	return ret;
}

/* Apply what load_validate accepted. vCPUs must not be running. */
static int load_apply(struct vm *vm, uint64_t id, struct store_snap *sn, struct loaded_state *ls)
{
	const char *step = NULL;
	char why[256] = "";
	int ret;

	for (unsigned i = 0; i < vm->ncpus; i++) {
		ret = vcpu_state_load(vm->vcpus[i], ls->vcpus[i], &step);
		if (ret) {
			rw_error("checkpoint %" PRIu64 ": loading vcpu/%u: %s: %s", id, i, step,
				 rw_strerror(ret));
			return ret;
		}
	}
	ret = platform_state_load(vm, &ls->platform, &step);
	if (ret) {
		rw_error("checkpoint %" PRIu64 ": loading %s: %s: %s", id, STATE_KEY_PLATFORM, step,
			 rw_strerror(ret));
		return ret;
	}
	struct snap_lookup l = { .sn = sn };
	ret = state_devices_load(vm, snap_lookup, &l, why, sizeof(why));
	snap_lookup_done(&l);
	if (ret)
		rw_error("checkpoint %" PRIu64 ": %s", id, why[0] ? why : rw_strerror(ret));
	return ret;
}

/* ------------------------------------------------------- disk content */

/* A disk's present ranges, to compare before and after a device load. */
struct present_set {
	struct disk_range *r;
	uint64_t n;
};

static int present_snapshot(struct disk *d, struct present_set *ps)
{
	uint64_t from = 0, start, count;

	ps->r = NULL;
	ps->n = 0;
	while (disk_present_next(d, from, &start, &count)) {
		struct disk_range *p = realloc(ps->r, (ps->n + 1) * sizeof(*p));
		if (!p)
			return -ENOMEM;
		ps->r = p;
		ps->r[ps->n++] = (struct disk_range){ start, count };
		from = start + count;
	}
	return 0;
}

static bool present_in(const struct present_set *ps, uint64_t idx)
{
	uint64_t lo = 0, hi = ps->n;

	while (lo < hi) {
		uint64_t mid = (lo + hi) / 2;
		if (idx < ps->r[mid].start)
			hi = mid;
		else if (idx >= ps->r[mid].start + ps->r[mid].count)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

static int cmp_u64(const void *a, const void *b);

/*
 * After the device records of checkpoint sn were loaded (which set each
 * disk's present map): give every present block the checkpoint's content
 * where it may differ: a block in changed[] (changed since the head, or
 * differing between head and target; may be NULL = every block), or one
 * that was not present before the load (before may be NULL = none was).
 */
static int restore_disk(struct store_snap *sn, struct disk *d,
			const struct present_set *before, uint64_t *changed, uint64_t nchanged)
{
	uint64_t from = 0, start, count;
	uint8_t *buf = malloc(RW_PAGE_SIZE);
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	if (changed)
		qsort(changed, nchanged, sizeof(changed[0]), cmp_u64);
	while (!ret && disk_present_next(d, from, &start, &count)) {
		for (uint64_t b = start; !ret && b < start + count; b++) {
			bool need = !changed || !before || !present_in(before, b);
			if (!need)
				need = bsearch(&b, changed, nchanged, sizeof(b), cmp_u64) != NULL;
			if (!need)
				continue;
			ret = store_snap_read(sn, disk_name(d), b, 1, buf);
			if (!ret)
				ret = disk_restore_block(d, b, buf, DISK_EPOCH_CKPT);
		}
		from = start + count;
	}
	free(buf);
	return ret;
}

/* ------------------------------------------------------------ rollback */

struct page_set {
	uint64_t *p;
	uint64_t n, cap;
};

static int page_set_add(struct page_set *s, uint64_t first, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		if (s->n == s->cap) {
			uint64_t cap = s->cap ? s->cap * 2 : 1024, *p = realloc(s->p, cap * sizeof(*p));
			if (!p)
				return -ENOMEM;
			s->p = p;
			s->cap = cap;
		}
		s->p[s->n++] = first + i;
	}
	return 0;
}

static int diff_range(void *arg, uint64_t first, uint64_t n)
{
	return page_set_add(arg, first, n);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Rewrite the given pages (sorted, unique) from the snapshot, in one read. */
static int rewrite_pages(struct machine *m, struct store_snap *sn, const uint64_t *pages, uint64_t n)
{
	int ret;

	if (!n)
		return 0;
	ret = store_snap_read_pages(sn, NULL, pages, n, m->vm->mem.hva);
	if (ret)
		return ret;
	/* the checkpoint epoch now matches the target; the reset epoch does not */
	if (m->dirty)
		for (uint64_t i = 0; i < n;) {
			uint64_t j = i + 1;
			while (j < n && pages[j] == pages[j - 1] + 1)
				j++;
			dirty_note_restored(m->dirty, DIRTY_CKPT, pages[i], j - i);
			i = j;
		}
	return 0;
}

static int disk_range_add(void *arg, uint64_t first, uint64_t n)
{
	return page_set_add(arg, first, n);
}

/*
 * Apply the target's records (vCPUs, platform, devices: the device load sets
 * each disk's present map), then rewrite the disk blocks that changed since
 * the head or differ between head and target.
 */
static int rollback_disks(struct machine *m, struct store_snap *sn, uint64_t id,
			  struct loaded_state *ls)
{
	struct vm *vm = m->vm;
	unsigned n = 0, i = 0;
	int ret = 0;

	for (struct device *d = vm->devices; d; d = d->next)
		if (virtio_blk_is(d))
			n++;
	struct present_set *before = calloc(n ? n : 1, sizeof(*before));
	struct page_set *changed = calloc(n ? n : 1, sizeof(*changed));
	if (!before || !changed) {
		free(before);
		free(changed);
		return -ENOMEM;
	}
	for (struct device *d = vm->devices; d && !ret; d = d->next) {
		if (!virtio_blk_is(d))
			continue;
		struct disk *dk = virtio_blk_disk(d);
		uint64_t *blocks = NULL;
		int64_t k = disk_take_dirty(dk, DISK_EPOCH_CKPT, &blocks);
		if (k < 0) {
			ret = (int)k;
			break;
		}
		for (int64_t j = 0; !ret && j < k; j++)
			ret = page_set_add(&changed[i], blocks[j], 1);
		free(blocks);
		if (!ret && m->head_id && m->head_id != id) {
			ret = store_diff(m->store, m->head_id, id, disk_name(dk), disk_range_add,
					 &changed[i], NULL);
			if (ret == RW_ENOTFOUND) { /* head deleted: every block */
				free(changed[i].p);
				changed[i] = (struct page_set){ 0 };
				changed[i].n = UINT64_MAX;
				ret = 0;
			}
		}
		if (!ret)
			ret = present_snapshot(dk, &before[i]);
		i++;
	}
	if (!ret)
		ret = load_apply(vm, id, sn, ls);
	i = 0;
	for (struct device *d = vm->devices; d && !ret; d = d->next) {
		if (!virtio_blk_is(d))
			continue;
		bool all = changed[i].n == UINT64_MAX;
		ret = restore_disk(sn, virtio_blk_disk(d), all ? NULL : &before[i],
				   all ? NULL : changed[i].p, all ? 0 : changed[i].n);
		i++;
	}
	for (unsigned j = 0; j < n; j++) {
		free(before[j].r);
		if (changed[j].n != UINT64_MAX)
			free(changed[j].p);
	}
	free(before);
	free(changed);
	return ret;
}

int machine_rollback(struct machine *m, uint64_t id)
{
	struct vm *vm = m->vm;
	struct store_snap *sn = NULL;
	struct loaded_state ls = { 0 };
	struct page_set set = { 0 };
	uint64_t *dirty = NULL;
	int64_t nd = 0;
	int ret;

	if (!m->store)
		return -ENOSYS;
	ret = acquire(m, true);
	if (ret)
		return ret;
	ret = store_snap_open(m->store, id, &sn);
	if (ret) {
		rw_error("rollback: checkpoint %" PRIu64 ": %s", id, rw_strerror(ret));
		goto out_release;
	}
	const struct store_ckpt_info *info = store_snap_info(sn);
	if (info->config_len != m->config_len || memcmp(info->config, m->config_blob, m->config_len)) {
		rw_error("rollback: checkpoint %" PRIu64 " belongs to a VM with another configuration",
			 id);
		ret = RW_ECORRUPT;
		goto out_snap;
	}
	ret = load_validate(vm, id, sn, &ls);
	if (ret)
		goto out_snap;

	vm_pause(vm);
	quiesce_devices(vm, false);
	ret = dirty_harvest(m->dirty);
	if (ret)
		goto out_resume;
	/* pages changed since the head, plus those differing head -> target */
	nd = dirty_take(m->dirty, DIRTY_CKPT, &dirty);
	if (nd < 0) {
		ret = (int)nd;
		goto out_resume;
	}
	for (int64_t i = 0; !ret && i < nd; i++)
		ret = page_set_add(&set, dirty[i], 1);
	if (!ret && m->head_id != id) {
		int d = m->head_id ? store_diff(m->store, m->head_id, id, NULL, diff_range, &set, NULL)
				   : RW_ENOTFOUND;
		if (d == RW_ENOTFOUND) {
			/* the head is gone (deleted): rewrite everything */
			set.n = 0;
			ret = page_set_add(&set, 0, vm->mem.size / RW_PAGE_SIZE);
		} else {
			ret = d;
		}
	}
	if (ret)
		goto out_giveback;
	qsort(set.p, set.n, sizeof(set.p[0]), cmp_u64);
	uint64_t u = 0;
	for (uint64_t i = 0; i < set.n; i++)
		if (u == 0 || set.p[i] != set.p[u - 1])
			set.p[u++] = set.p[i];
	set.n = u;
	ret = rewrite_pages(m, sn, set.p, set.n);
	if (!ret)
		ret = rollback_disks(m, sn, id, &ls);
	if (ret) {
		/* guest memory is part old, part new: it cannot run on */
		struct vm_stop_info why = { .reason = VM_STOP_ERROR, .err = ret };
		snprintf(why.msg, sizeof(why.msg), "rollback to checkpoint %" PRIu64 " failed: %s", id,
			 rw_strerror(ret));
		dirty_mark_all(m->dirty, DIRTY_CKPT);
		vm_request_stop(vm, &why);
		goto out_resume;
	}
	pthread_mutex_lock(&m->lock);
	m->head_id = id;
	m->state_gen++;
	pthread_mutex_unlock(&m->lock);
	goto out_resume;

out_giveback:
	dirty_give_back(m->dirty, DIRTY_CKPT, dirty, (uint64_t)nd);
out_resume:
	quiesce_devices(vm, true);
	vm_resume(vm);
	loaded_free(&ls);
out_snap:
	store_snap_close(sn);
out_release:
	free(dirty);
	free(set.p);
	release(m);
	return ret;
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

static int machine_alloc(const struct machine_opts *o, struct machine **out)
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
static int open_store(struct machine *m, bool create)
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
static int machine_attach(struct machine *m, bool create_store)
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
		ret = open_store(m, create_store);
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

static void host_cfg(struct vm_config *cfg, const struct machine_opts *o)
{
	cfg->dirty_ring_entries = (o && o->store_dir && o->dirty == DIRTY_RING) ? DIRTY_RING_ENTRIES : 0;
	if (o && !o->console_stdin)
		cfg->serial_in = false;
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
	host_cfg(&cfg, o);
	ret = vm_create(&cfg, &m->vm);
	if (ret)
		goto fail;
	ret = board_build(m->vm);
	if (ret)
		goto fail;
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

static int fill_run(void *arg, uint64_t first, uint64_t npages, const void *data)
{
	struct vm *vm = arg;

	if (first + npages > vm->mem.size / RW_PAGE_SIZE)
		return RW_ECORRUPT;
	memcpy(vm->mem.hva + first * RW_PAGE_SIZE, data, npages * RW_PAGE_SIZE);
	return 0;
}

int machine_restore(uint64_t id, const struct machine_opts *o, struct machine **out)
{
	struct store_snap *sn = NULL;
	struct loaded_state ls = { 0 };
	struct vm_config cfg;
	struct machine *m;
	char why[256] = "";
	int ret;

	*out = NULL;
	if (!o || !o->store_dir)
		return -EINVAL;
	ret = machine_alloc(o, &m);
	if (ret)
		return ret;
	ret = open_store(m, false);
	if (ret)
		goto fail;
	ret = store_snap_open(m->store, id, &sn);
	if (ret) {
		rw_error("checkpoint %" PRIu64 ": %s", id,
			 ret == RW_ENOTFOUND ? "no such checkpoint in the store" : rw_strerror(ret));
		goto fail;
	}
	const struct store_ckpt_info *info = store_snap_info(sn);
	ret = info->config ? state_config_decode(info->config, info->config_len, &cfg, why, sizeof(why))
			   : RW_ECORRUPT;
	if (ret) {
		rw_error("checkpoint %" PRIu64 ": configuration: %s", id,
			 why[0] ? why : "missing");
		goto fail;
	}
	if (info->mem.npages != cfg.mem_size / RW_PAGE_SIZE) {
		rw_error("checkpoint %" PRIu64 ": memory map has %" PRIu64 " pages, the configuration says %" PRIu64,
			 id, info->mem.npages, (uint64_t)(cfg.mem_size / RW_PAGE_SIZE));
		ret = RW_ECORRUPT;
		goto fail;
	}
	host_cfg(&cfg, o);
	snprintf(cfg.serial_out, sizeof(cfg.serial_out), "%s", o->serial_out ? o->serial_out : "");
	ret = vm_create(&cfg, &m->vm);
	if (ret)
		goto fail;
	ret = board_build(m->vm);
	if (ret)
		goto fail;
	/* everything is checked before memory is filled or state applied */
	ret = load_validate(m->vm, id, sn, &ls);
	if (ret)
		goto fail;
	ret = store_snap_foreach_run(sn, NULL, 0, info->mem.npages, fill_run, m->vm);
	if (ret) {
		rw_error("checkpoint %" PRIu64 ": reading memory: %s", id, rw_strerror(ret));
		goto fail;
	}
	ret = load_apply(m->vm, id, sn, &ls);
	for (struct device *d = m->vm->devices; !ret && d; d = d->next) {
		if (!virtio_blk_is(d))
			continue;
		ret = restore_disk(sn, virtio_blk_disk(d), NULL, NULL, 0);
		if (ret) {
			rw_error("checkpoint %" PRIu64 ": restoring disk %s: %s", id,
				 disk_name(virtio_blk_disk(d)), rw_strerror(ret));
			break;
		}
		/* the disk equals the checkpoint: nothing changed since it */
		uint64_t *b = NULL;
		if (disk_take_dirty(virtio_blk_disk(d), DISK_EPOCH_CKPT, &b) >= 0)
			free(b);
	}
	if (ret)
		goto fail;
	m->config_blob = malloc(info->config_len);
	if (!m->config_blob) {
		ret = -ENOMEM;
		goto fail;
	}
	memcpy(m->config_blob, info->config, info->config_len);
	m->config_len = info->config_len;
	loaded_free(&ls);
	store_snap_close(sn);
	sn = NULL;
	ret = machine_attach(m, false);
	if (ret)
		goto fail;
	/* memory equals checkpoint id: nothing is dirty relative to it */
	dirty_clear(m->dirty, DIRTY_CKPT);
	m->head_id = id;
	*out = m;
	return 0;
fail:
	loaded_free(&ls);
	store_snap_close(sn);
	machine_destroy(m);
	return ret;
}

int machine_start(struct machine *m)
{
	int ret;

	if (m->store && !m->writer_started) {
		ret = -pthread_create(&m->writer, NULL, writer_thread, m);
		if (ret)
			return ret;
		m->writer_started = true;
		copier_start(&m->copier); /* optional: without it one thread copies */
	}
	return vm_start(m->vm);
}

static void writer_join(struct machine *m)
{
	if (!m->writer_started)
		return;
	pthread_mutex_lock(&m->lock);
	m->writer_stop = true;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	pthread_join(m->writer, NULL);
	m->writer_started = false;
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
	writer_join(m);
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
	free(m->store_dir);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cond);
	free(m);
}

struct vm *machine_vm(struct machine *m)
{
	return m->vm;
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

int machine_read_disk_block(struct machine *m, const char *disk_id, uint64_t idx, void *buf)
{
	struct vm *vm = m->vm;
	struct device *dev = vm_find_device(vm, "virtio-blk", disk_id);
	int ret;

	if (!dev || !virtio_blk_is(dev))
		return RW_ENOTFOUND;
	vm_pause(vm);
	ret = dev->type->ops->quiesce ? dev->type->ops->quiesce(dev) : 0;
	if (!ret)
		ret = disk_read_block(virtio_blk_disk(dev), idx, buf);
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
	pthread_mutex_unlock(&m->lock);
	if (m->store_dir) {
		snprintf(path, sizeof(path), "%s/data.mdb", m->store_dir);
		if (stat(path, &sb) == 0)
			st->store_bytes = (uint64_t)sb.st_blocks * 512;
	}
}
