/*
 * capture.c - the pause of a checkpoint (DESIGN section 3, steps 1 to 3):
 * the guest stops, everything the checkpoint needs is copied out, the guest
 * runs again. The writer (persist.c) stores the copy while the guest runs.
 */
#include "machine_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "device.h"
#include "log.h"
#include "rw/abi.h"
#include "util.h"
#include "vm.h"

/* Large captures are split with the copier thread from this many pages on. */
#define COPY_SPLIT_MIN 512

/* ----------------------------------------------------------- page copy */

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

void copier_start(struct copier *cp)
{
	pthread_mutex_init(&cp->lock, NULL);
	pthread_cond_init(&cp->cond, NULL);
	cp->started = rw_thread_start(&cp->thread, copier_thread, cp) == 0;
}

void copier_stop(struct copier *cp)
{
	if (!cp->started)
		return;
	rw_thread_stop(cp->thread, &cp->lock, &cp->cond, &cp->stop);
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

/* -------------------------------------------------------------- staging */

/* The staging buffers, allocated by the first capture that finds them missing. */
static int stage_alloc(struct machine *m)
{
	if (!m->stage_pages) {
		m->stage_pages = malloc(dirty_npages(m->dirty) * sizeof(uint64_t));
		if (!m->stage_pages)
			return -ENOMEM;
	}
	return m->stage_img.vcpus ? 0 : image_init(&m->stage_img, m->vm->ncpus);
}

void stage_free(struct machine *m)
{
	image_free(&m->stage_img);
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

/* -------------------------------------------------------------- content */

static void content_give_back(struct capture *c)
{
	for (unsigned i = 0; i < c->ncontent; i++) {
		struct content_cap *cc = &c->content[i];
		cc->dev->type->content->give_back(cc->dev, cc->blocks, cc->n);
	}
}

/* Take one device's changed blocks and read them, one read per run. */
static int capture_content_of(struct device *d, struct content_cap *cc)
{
	const struct device_content_ops *ops = d->type->content;
	int ret = 0;

	cc->dev = d;
	cc->nblocks = ops->nblocks(d);
	int64_t k = ops->take_changed(d, &cc->blocks);
	if (k < 0)
		return (int)k;
	cc->n = (uint64_t)k;
	cc->data = malloc((cc->n ? cc->n : 1) * RW_PAGE_SIZE);
	if (!cc->data)
		return -ENOMEM;
	for (uint64_t i = 0; i < cc->n && !ret;) {
		uint64_t j = i + 1;
		while (j < cc->n && cc->blocks[j] == cc->blocks[j - 1] + 1)
			j++;
		ret = ops->read(d, cc->blocks[i], j - i, cc->data + i * RW_PAGE_SIZE);
		i = j;
	}
	return ret;
}

/*
 * With the devices quiesced: take every device's changed content blocks and
 * read them (a block the device does not hold is kept as a hole; its record
 * says which it holds). On failure every block taken is given back.
 */
static int capture_content(struct vm *vm, struct capture *c)
{
	unsigned n = 0;
	int ret = 0;

	for (struct device *d = vm->devices; d; d = d->next)
		n += d->type->content != NULL;
	if (!n)
		return 0;
	c->content = calloc(n, sizeof(c->content[0]));
	if (!c->content)
		return -ENOMEM;
	for (struct device *d = vm->devices; d && !ret; d = d->next) {
		if (!d->type->content)
			continue;
		ret = capture_content_of(d, &c->content[c->ncontent]);
		if (ret != 0 && c->content[c->ncontent].blocks == NULL && c->content[c->ncontent].n == 0)
			break; /* nothing was taken from this one */
		c->ncontent++;
	}
	if (ret)
		content_give_back(c);
	return ret;
}

void capture_give_back(struct machine *m, struct capture *c)
{
	dirty_give_back(m->dirty, DIRTY_CKPT, c->pages, c->npages);
	content_give_back(c);
}

void capture_free(struct capture *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->ncontent; i++) {
		free(c->content[i].blocks);
		free(c->content[i].data);
	}
	free(c->content);
	free(c);
}

/* -------------------------------------------------------------- capture */

/*
 * The pause, top to bottom:
 *   1. park every vCPU (the barrier); each saves its own state as it parks
 *   2. quiesce the devices: no I/O in flight
 *   3. harvest KVM's dirty log into the checkpoint epoch
 *   4. save the platform and every device record
 *   5. take each device's changed content blocks and read them
 *   6. take the epoch's dirty pages and copy them to the staging buffer,
 *      while the vCPUs still save their state
 *   7. wait for the vCPUs' saves
 *   8. resume the devices, then the vCPUs    <- the guest runs again
 * Returns 0 with *out filled, or an error with every dirty page and block
 * still counted as changed.
 */
int capture_take(struct machine *m, const char *label, struct capture **out)
{
	struct vm *vm = m->vm;
	struct capture *c = calloc(1, sizeof(*c));
	uint64_t t[6] = { 0 }, t0;
	bool taken = false;
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
	c->img = &m->stage_img;
	c->pages = m->stage_pages;
	t0 = rw_now_ns();

	vm_pause_capture(vm, c->img->vcpus);                          /* 1 */
	t[0] = rw_now_ns();
	ret = machine_quiesce_devices(vm, false);                     /* 2 */
	if (!ret)
		ret = dirty_harvest(m->dirty);                        /* 3 */
	t[1] = rw_now_ns();
	if (!ret)
		ret = image_save_platform_devices(c->img, vm);        /* 4 */
	if (!ret)
		ret = capture_content(vm, c);                         /* 5 */
	t[2] = rw_now_ns();
	if (!ret) {                                                   /* 6 */
		c->npages = dirty_take_into(m->dirty, DIRTY_CKPT, c->pages, dirty_npages(m->dirty));
		taken = true;
		ret = stage_reserve(m, c->npages);
		if (!ret) {
			c->data = m->stage_data;
			copy_capture(m, c);
		}
	}
	t[3] = rw_now_ns();
	int r = vm_capture_finish(vm);                                /* 7 */
	if (!ret)
		ret = r;
	if (ret && taken)
		capture_give_back(m, c);
	t[4] = rw_now_ns();
	machine_quiesce_devices(vm, true);                            /* 8 */
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
		capture_free(c);
		return ret;
	}
	*out = c;
	return 0;
}
