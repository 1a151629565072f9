/*
 * restore.c - a checkpoint back into a VM (DESIGN section 6): into a new
 * one (machine_restore) or into the running one, in place
 * (machine_rollback). Either way every record is decoded and validated
 * into an image before memory is filled or any state is applied.
 */
#include "machine_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "board.h"
#include "device.h"
#include "log.h"
#include "rw/abi.h"
#include "state.h"
#include "util.h"
#include "vm.h"

/* ------------------------------------------------- loading a checkpoint */

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

/* The checkpoint holds exactly the records vm needs. */
static int check_names(struct vm *vm, struct store_snap *sn, char *why, size_t whylen)
{
	struct name_list names = { 0 };
	int ret = store_snap_foreach_record(sn, collect_name, &names);

	if (!ret)
		ret = state_check_names(vm, (const char *const *)names.names, names.n, why, whylen);
	for (size_t i = 0; i < names.n; i++)
		free(names.names[i]);
	free(names.names);
	return ret;
}

/* Decode one vCPU's record of sn; on failure why names it. */
static int load_vcpu(struct vm *vm, struct store_snap *sn, unsigned i, struct vcpu_state *st,
		     char *why, size_t whylen)
{
	char key[64], msg[256] = "";
	void *data = NULL;
	size_t len;
	uint32_t version;
	int ret;

	state_vcpu_key(i, key, sizeof(key));
	ret = store_snap_record(sn, key, &data, &len, &version);
	if (!ret)
		ret = state_vcpu_decode(vm, i, data, len, st, msg, sizeof(msg));
	free(data);
	if (ret)
		snprintf(why, whylen, "record %s: %s", key, msg[0] ? msg : rw_strerror(ret));
	return ret;
}

/* Decode the platform record of sn; on failure why names it. */
static int load_platform(struct vm *vm, struct store_snap *sn, struct platform_state *st,
			 char *why, size_t whylen)
{
	char msg[256] = "";
	void *data = NULL;
	size_t len;
	uint32_t version;
	int ret;

	ret = store_snap_record(sn, STATE_KEY_PLATFORM, &data, &len, &version);
	if (!ret)
		ret = state_platform_decode(vm, data, len, st, msg, sizeof(msg));
	free(data);
	if (ret)
		snprintf(why, whylen, "record %s: %s", STATE_KEY_PLATFORM,
			 msg[0] ? msg : rw_strerror(ret));
	return ret;
}

/* Every device's record of sn, as stored; a missing one is left out. */
static int load_device_records(struct vm *vm, struct store_snap *sn, struct vm_image *img,
			       char *why, size_t whylen)
{
	char key[DEV_KEY_MAX];

	for (struct device *d = vm->devices; d; d = d->next) {
		void *data = NULL;
		size_t len;
		uint32_t version;

		if (!d->type->ops->save)
			continue;
		device_record_key(d, key, sizeof(key));
		int ret = store_snap_record(sn, key, &data, &len, &version);
		if (ret == RW_ENOTFOUND)
			continue; /* the registry names it */
		if (!ret)
			ret = image_put_record(img, key, version, data, len);
		free(data);
		if (ret) {
			snprintf(why, whylen, "record %s: %s", key, rw_strerror(ret));
			return ret;
		}
	}
	return 0;
}

/*
 * Decode and validate every record of snapshot sn into img, against vm,
 * before any of it is applied. On failure, logs one line naming the
 * checkpoint, the record and what is wrong.
 */
static int load_validate(struct vm *vm, uint64_t id, struct store_snap *sn, struct vm_image *img)
{
	char why[320] = "";
	int ret;

	ret = check_names(vm, sn, why, sizeof(why));
	if (ret) {
		rw_error("checkpoint %" PRIu64 ": %s", id, why[0] ? why : rw_strerror(ret));
		return ret;
	}
	ret = image_init(img, vm->ncpus);
	if (ret)
		return ret;
	for (unsigned i = 0; !ret && i < vm->ncpus; i++)
		ret = load_vcpu(vm, sn, i, img->vcpus[i], why, sizeof(why));
	if (!ret)
		ret = load_platform(vm, sn, &img->platform, why, sizeof(why));
	if (!ret) {
		ret = load_device_records(vm, sn, img, why, sizeof(why));
		if (!ret)
			ret = image_validate_devices(img, vm, why, sizeof(why));
	}
	if (ret) {
		rw_error("checkpoint %" PRIu64 ": %s", id, why[0] ? why : rw_strerror(ret));
		image_free(img);
	}
	return ret;
}

/* Apply what load_validate accepted. vCPUs must not be running. */
static int load_apply(struct vm *vm, uint64_t id, struct vm_image *img)
{
	char why[320] = "";
	int ret = image_apply(img, vm, NULL, why, sizeof(why));

	if (ret)
		rw_error("checkpoint %" PRIu64 ": %s", id, why[0] ? why : rw_strerror(ret));
	return ret;
}

/* ------------------------------------------------------ device content */

/* A set of block or page numbers. */
struct block_set {
	uint64_t *p;
	uint64_t n, cap;
	bool all;                 /* every block: the set is not known */
};

static int set_add(struct block_set *s, uint64_t first, uint64_t n)
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

static int set_add_range(void *arg, uint64_t first, uint64_t n)
{
	return set_add(arg, first, n);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Sort the set and drop repeats. */
static void set_sort(struct block_set *s)
{
	uint64_t u = 0;

	if (!s->n)
		return;
	qsort(s->p, s->n, sizeof(s->p[0]), cmp_u64);
	for (uint64_t i = 0; i < s->n; i++)
		if (u == 0 || s->p[i] != s->p[u - 1])
			s->p[u++] = s->p[i];
	s->n = u;
}

static bool set_has(const struct block_set *s, uint64_t x)
{
	return s->all || (s->n && bsearch(&x, s->p, s->n, sizeof(x), cmp_u64) != NULL);
}

/* The runs of blocks a device holds, to compare before and after a load. */
struct held_set {
	uint64_t (*r)[2];         /* start, count */
	uint64_t n;
};

static int held_snapshot(struct device *d, struct held_set *hs)
{
	uint64_t from = 0, start, count;

	hs->r = NULL;
	hs->n = 0;
	while (d->type->content->held_next(d, from, &start, &count)) {
		uint64_t (*p)[2] = realloc(hs->r, (hs->n + 1) * sizeof(*p));
		if (!p)
			return -ENOMEM;
		hs->r = p;
		hs->r[hs->n][0] = start;
		hs->r[hs->n][1] = count;
		hs->n++;
		from = start + count;
	}
	return 0;
}

static bool held_in(const struct held_set *hs, uint64_t idx)
{
	uint64_t lo = 0, hi = hs->n;

	while (lo < hi) {
		uint64_t mid = (lo + hi) / 2;
		if (idx < hs->r[mid][0])
			hi = mid;
		else if (idx >= hs->r[mid][0] + hs->r[mid][1])
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

/*
 * After the device records of checkpoint sn were loaded (which set which
 * blocks each device holds): give every held block the checkpoint's content
 * where it may differ: a block in changed (changed since the head, or
 * differing between head and target; NULL = every block), or one the
 * device did not hold before the load (before NULL = it held none).
 */
static int restore_content(struct store_snap *sn, struct device *d, const struct held_set *before,
			   struct block_set *changed)
{
	const struct device_content_ops *ops = d->type->content;
	uint64_t from = 0, start, count;
	uint8_t *buf = malloc(RW_PAGE_SIZE);
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	if (changed && !changed->all && changed->n)
		qsort(changed->p, changed->n, sizeof(changed->p[0]), cmp_u64);
	while (!ret && ops->held_next(d, from, &start, &count)) {
		for (uint64_t b = start; !ret && b < start + count; b++) {
			bool need = !changed || changed->all || !before || !held_in(before, b) ||
				    set_has(changed, b);
			if (!need)
				continue;
			ret = store_snap_read(sn, ops->name(d), b, 1, buf);
			if (!ret)
				ret = ops->restore(d, b, buf);
		}
		from = start + count;
	}
	free(buf);
	return ret;
}

/* ------------------------------------------------------------- restore */

struct fill {
	struct vm *vm;
	const struct machine_opts *o;
	uint64_t done, total;
};

static int fill_run(void *arg, uint64_t first, uint64_t npages, const void *data)
{
	struct fill *f = arg;
	struct vm *vm = f->vm;

	if (first + npages > vm->mem.size / RW_PAGE_SIZE)
		return RW_ECORRUPT;
	memcpy(vm->mem.hva + first * RW_PAGE_SIZE, data, npages * RW_PAGE_SIZE);
	f->done += npages;
	if (f->o->progress)
		f->o->progress(f->o->progress_arg, f->done, f->total);
	return 0;
}

/* Every device's content as checkpoint id holds it, into a new VM. */
static int restore_all_content(struct vm *vm, uint64_t id, struct store_snap *sn)
{
	for (struct device *d = vm->devices; d; d = d->next) {
		const struct device_content_ops *ops = d->type->content;
		if (!ops)
			continue;
		int ret = restore_content(sn, d, NULL, NULL);
		if (ret) {
			rw_error("checkpoint %" PRIu64 ": restoring disk %s: %s", id, ops->name(d),
				 store_error_detail() ? store_error_detail() : rw_strerror(ret));
			return ret;
		}
		/* the content equals the checkpoint: nothing changed since it */
		uint64_t *b = NULL;
		if (ops->take_changed(d, &b) >= 0)
			free(b);
	}
	return 0;
}

/* Open the checkpoint's disks where the user says they are now. */
static int move_disks(struct vm_config *cfg, uint64_t id, const struct machine_opts *o)
{
	char name[DEV_ID_MAX + 32], names[512];

	for (unsigned k = 0; k < o->ndisk_paths; k++) {
		const struct machine_disk_path *dp = &o->disk_paths[k];
		unsigned i;

		for (i = 0; i < cfg->ndisks; i++) {
			board_disk_name(cfg, i, name, sizeof(name));
			if (strcmp(name, dp->name) == 0)
				break;
		}
		if (i == cfg->ndisks) {
			names[0] = 0;
			for (unsigned j = 0; j < cfg->ndisks; j++) {
				board_disk_name(cfg, j, name, sizeof(name));
				snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s",
					 j ? ", " : "", name);
			}
			rw_error("checkpoint %" PRIu64 ": --disk %s=...: it has no disk by that name "
				 "(%s%s)", id, dp->name, cfg->ndisks ? "its disks: " : "no disks",
				 names);
			return RW_ENOTFOUND;
		}
		if (strlen(dp->path) >= sizeof(cfg->disks[i].path))
			return -ENAMETOOLONG;
		snprintf(cfg->disks[i].path, sizeof(cfg->disks[i].path), "%s", dp->path);
	}
	return 0;
}

/* After the disks did not open: name the ones that are not where the checkpoint says. */
static void explain_missing_disks(const struct vm_config *cfg)
{
	char name[DEV_ID_MAX + 32];

	for (unsigned i = 0; i < cfg->ndisks; i++) {
		if (access(cfg->disks[i].path, R_OK) == 0)
			continue;
		board_disk_name(cfg, i, name, sizeof(name));
		rw_error("restore: disk %s is not at %s any more: give its place with --disk %s=PATH",
			 name, cfg->disks[i].path, name);
	}
}

int machine_restore(uint64_t id, const struct machine_opts *o, struct machine **out)
{
	struct store_snap *sn = NULL;
	struct vm_image img = { 0 };
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
	ret = machine_open_store(m, false);
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
	machine_host_cfg(&cfg, o);
	snprintf(cfg.serial_out, sizeof(cfg.serial_out), "%s", o->serial_out ? o->serial_out : "");
	ret = move_disks(&cfg, id, o);
	if (ret)
		goto fail;
	ret = machine_build_vm(m, &cfg);
	if (ret) {
		explain_missing_disks(&cfg);
		goto fail;
	}
	/* everything is checked before memory is filled or state applied */
	ret = load_validate(m->vm, id, sn, &img);
	if (ret)
		goto fail;
	struct fill fill = { m->vm, o, 0, info->mem.present };
	ret = store_snap_foreach_run(sn, NULL, 0, info->mem.npages, fill_run, &fill);
	if (o->progress)
		o->progress(o->progress_arg, fill.total, fill.total);
	if (ret) {
		rw_error("checkpoint %" PRIu64 ": reading memory: %s", id,
			 store_error_detail() ? store_error_detail() : rw_strerror(ret));
		goto fail;
	}
	ret = load_apply(m->vm, id, &img);
	if (!ret)
		ret = restore_all_content(m->vm, id, sn);
	if (ret)
		goto fail;
	m->config_blob = malloc(info->config_len);
	if (!m->config_blob) {
		ret = -ENOMEM;
		goto fail;
	}
	memcpy(m->config_blob, info->config, info->config_len);
	m->config_len = info->config_len;
	image_free(&img);
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
	image_free(&img);
	store_snap_close(sn);
	machine_destroy(m);
	return ret;
}

/* ------------------------------------------------------------ rollback */

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

/*
 * What may differ between the running state and checkpoint id in a space
 * (name NULL: guest memory): what changed since the head, plus what differs
 * between the head and id. changed holds the first part on entry. A head
 * that is gone (deleted) makes it every block.
 */
static int add_head_diff(struct machine *m, uint64_t id, const char *name, struct block_set *s)
{
	if (m->head_id == id)
		return 0;
	int d = m->head_id ? store_diff(m->store, m->head_id, id, name, set_add_range, s, NULL)
			   : RW_ENOTFOUND;
	if (d == RW_ENOTFOUND) {
		s->all = true;
		return 0;
	}
	return d;
}

/*
 * Apply the target's image (vCPUs, platform, devices: a device's load sets
 * which content blocks it holds), then rewrite the content blocks that
 * changed since the head or differ between head and target.
 */
static int rollback_devices(struct machine *m, struct store_snap *sn, uint64_t id,
			    struct vm_image *img)
{
	struct vm *vm = m->vm;
	unsigned n = 0, i = 0;
	int ret = 0;

	for (struct device *d = vm->devices; d; d = d->next)
		n += d->type->content != NULL;
	struct held_set *before = calloc(n ? n : 1, sizeof(*before));
	struct block_set *changed = calloc(n ? n : 1, sizeof(*changed));
	if (!before || !changed) {
		free(before);
		free(changed);
		return -ENOMEM;
	}
	for (struct device *d = vm->devices; d && !ret; d = d->next) {
		if (!d->type->content)
			continue;
		uint64_t *blocks = NULL;
		int64_t k = d->type->content->take_changed(d, &blocks);
		if (k < 0) {
			ret = (int)k;
			break;
		}
		for (int64_t j = 0; !ret && j < k; j++)
			ret = set_add(&changed[i], blocks[j], 1);
		free(blocks);
		if (!ret && m->head_id)
			ret = add_head_diff(m, id, d->type->content->name(d), &changed[i]);
		if (!ret)
			ret = held_snapshot(d, &before[i]);
		i++;
	}
	if (!ret)
		ret = load_apply(vm, id, img);
	i = 0;
	for (struct device *d = vm->devices; d && !ret; d = d->next) {
		if (!d->type->content)
			continue;
		bool all = changed[i].all;
		ret = restore_content(sn, d, all ? NULL : &before[i], all ? NULL : &changed[i]);
		i++;
	}
	for (unsigned j = 0; j < n; j++) {
		free(before[j].r);
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
	struct vm_image img = { 0 };
	struct block_set set = { 0 };
	uint64_t *dirty = NULL;
	int64_t nd = 0;
	int ret;

	if (!m->store)
		return -ENOSYS;
	ret = machine_acquire(m, true);
	if (ret)
		return ret;
	ret = store_snap_open(m->store, id, &sn);
	if (ret) {
		rw_error("rollback: checkpoint %" PRIu64 ": %s", id,
			 store_error_detail() ? store_error_detail() : rw_strerror(ret));
		goto out_release;
	}
	const struct store_ckpt_info *info = store_snap_info(sn);
	if (info->config_len != m->config_len || memcmp(info->config, m->config_blob, m->config_len)) {
		rw_error("rollback: checkpoint %" PRIu64 " belongs to a VM with another configuration",
			 id);
		ret = RW_ECORRUPT;
		goto out_snap;
	}
	ret = load_validate(vm, id, sn, &img);
	if (ret)
		goto out_snap;

	vm_pause(vm);
	machine_quiesce_devices(vm, false);
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
		ret = set_add(&set, dirty[i], 1);
	if (!ret)
		ret = add_head_diff(m, id, NULL, &set);
	if (!ret && set.all) {
		/* the head is gone (deleted): rewrite everything */
		set.n = 0;
		set.all = false;
		ret = set_add(&set, 0, vm->mem.size / RW_PAGE_SIZE);
	}
	if (ret)
		goto out_giveback;
	set_sort(&set);
	ret = rewrite_pages(m, sn, set.p, set.n);
	if (!ret)
		ret = rollback_devices(m, sn, id, &img);
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
	machine_quiesce_devices(vm, true);
	vm_resume(vm);
	image_free(&img);
out_snap:
	store_snap_close(sn);
out_release:
	free(dirty);
	free(set.p);
	machine_release(m);
	return ret;
}
