/*
 * virtio_mmio.c - virtio-mmio transport, version 2 (contract in
 * virtio_mmio.h).
 *
 * Transport part of a virtio device's record (base/record.h encoding,
 * little-endian, in this order; the device writes its own fields around
 * it):
 *
 *   u32  device_id           must equal the device's
 *   u32  status              VIRTIO_STATUS_* bits only
 *   u64  features_offered    must equal what this device offers
 *   u64  features_acked      written by the driver, subset of offered
 *   u64  features_unoffered  bits the driver wrote that were not offered
 *                            (disjoint from offered; zero under FEATURES_OK)
 *   u32  device_features_sel
 *   u32  driver_features_sel
 *   u32  queue_sel
 *   u32  interrupt_status    VIRTIO_INT_* bits only
 *   u32  config_generation
 *   u16  nqueues             must equal the device's queue count
 *   per queue:
 *     u16  num_max           must equal the device's QueueNumMax
 *     u32  num               QueueNum as written (checked only when ready)
 *     bool ready
 *     u64  desc              QueueDesc
 *     u64  driver            QueueDriver (avail ring)
 *     u64  device            QueueDevice (used ring)
 *     u16  last_avail_idx
 *     u16  used_idx
 *
 * Checks on a ready queue: size a power of two in 1..num_max, each ring
 * aligned and inside guest RAM for that size; last_avail_idx == used_idx
 * (a quiesced device has nothing in flight) unless the device needs a
 * reset, when the avail side may be ahead by at most the queue size (the
 * chain that broke it was consumed without a used entry). A queue that is
 * not ready has both indices zero.
 */
#include "virtio_mmio.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "log.h"
#include "memory.h"
#include "record.h"
#include "rw/abi.h"
#include "util.h"
#include "vm.h"

/* ----------------------------------------------------------------- helpers */

static bool q_valid(const struct virtio_mmio *t, uint32_t q)
{
	return q < t->p.nqueues;
}

static struct virtq *sel_vq(struct virtio_mmio *t)
{
	return q_valid(t, t->st.queue_sel) ? &t->st.vq[t->st.queue_sel] : NULL;
}

static bool device_live(const struct virtio_mmio *t)
{
	uint32_t s = t->st.status;
	uint32_t want = VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_FEATURES_OK;

	return (s & want) == want && !(s & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED));
}

bool virtio_mmio_queue_live(const struct virtio_mmio *t, unsigned q)
{
	return device_live(t) && q_valid(t, q) && t->st.vq[q].ready;
}

/* Drive the line to (InterruptStatus != 0). Lock held. */
static void update_line(struct virtio_mmio *t)
{
	int level = t->st.isr != 0;
	int ret;

	if (level == t->irq_level)
		return;
	ret = vm_irq_line(t->vm, t->irq, level);
	if (ret) {
		if (!t->irq_warned)
			rw_warn("%s: setting IRQ %u to %d: %s", t->name, t->irq, level,
				rw_strerror(ret));
		t->irq_warned = true;
		t->irq_level = -1;
		return;
	}
	t->irq_level = level;
}

/* A guest error and what came of it: the first one per device is a warning. */
static void log_guest(struct virtio_mmio *t, const char *why, const char *outcome)
{
	if (!t->warned) {
		t->warned = true;
		rw_warn("%s: guest error: %s; %s (further guest errors of this device are logged "
			"at debug level)", t->name, why, outcome);
	} else {
		rw_debug("%s: guest error: %s; %s", t->name, why, outcome);
	}
}

void virtio_mmio_fail(struct virtio_mmio *t, const char *why)
{
	if (t->st.status & VIRTIO_STATUS_NEEDS_RESET)
		return;
	log_guest(t, why, "the device needs a reset");
	t->st.status |= VIRTIO_STATUS_NEEDS_RESET;
	t->st.isr |= VIRTIO_INT_CONFIG;
	update_line(t);
}

void virtio_mmio_guest_error(struct virtio_mmio *t, const char *why)
{
	log_guest(t, why, "the request fails");
}

void virtio_mmio_used(struct virtio_mmio *t, unsigned q)
{
	if (!vq_should_interrupt(&t->st.vq[q]))
		return;
	t->st.isr |= VIRTIO_INT_VRING;
	update_line(t);
}

void virtio_mmio_lock(struct virtio_mmio *t)
{
	pthread_mutex_lock(&t->lock);
}

void virtio_mmio_unlock(struct virtio_mmio *t)
{
	pthread_mutex_unlock(&t->lock);
}

/* ------------------------------------------------------------------- reset */

static void state_reset(struct virtio_mmio *t)
{
	uint32_t gen = t->st.config_gen;

	memset(&t->st, 0, sizeof(t->st));
	t->st.config_gen = gen; /* a counter: it never goes back */
	for (unsigned q = 0; q < t->p.nqueues; q++)
		vq_init(&t->st.vq[q], t->p.queue_max);
}

void virtio_mmio_reset_locked(struct virtio_mmio *t)
{
	t->ops->drain(t->opaque);
	if (t->ops->reset)
		t->ops->reset(t->opaque);
	state_reset(t);
	t->pending = 0;
	update_line(t);
}

/* ---------------------------------------------------------------- registers */

static bool features_acceptable(const struct virtio_mmio *t)
{
	return t->st.unoffered == 0 && (t->st.acked & VIRTIO_BIT(VIRTIO_F_VERSION_1));
}

static void notify_queue(struct virtio_mmio *t, unsigned q)
{
	if (t->quiesced) {
		t->pending |= 1u << q;
		return;
	}
	if (virtio_mmio_queue_live(t, q))
		t->ops->notify(t->opaque, q);
}

static void write_status(struct virtio_mmio *t, uint32_t v)
{
	uint32_t old = t->st.status;
	uint32_t s;

	if (v == 0) {
		virtio_mmio_reset_locked(t);
		return;
	}
	/*
	 * Bits only ever get set until the next reset (the driver may not
	 * clear one; NEEDS_RESET is the device's). Unknown bits are dropped.
	 */
	s = old | (v & VIRTIO_STATUS_ALL & ~VIRTIO_STATUS_NEEDS_RESET);
	if ((s & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK) &&
	    !features_acceptable(t)) {
		s &= ~VIRTIO_STATUS_FEATURES_OK;
		rw_debug("%s: FEATURES_OK refused (driver features 0x%llx, offered 0x%llx)",
			 t->name, (unsigned long long)(t->st.acked | t->st.unoffered),
			 (unsigned long long)t->p.features);
	}
	t->st.status = s;
	if ((s & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK))
		for (unsigned q = 0; q < t->p.nqueues; q++)
			notify_queue(t, q);
}

static void write_driver_features(struct virtio_mmio *t, uint32_t v)
{
	uint32_t sel = t->st.drv_features_sel;
	uint64_t mask, bits;

	if (t->st.status & VIRTIO_STATUS_FEATURES_OK) {
		rw_debug("%s: DriverFeatures written after FEATURES_OK: ignored", t->name);
		return;
	}
	if (sel > 1) /* no feature bit above 63 exists in virtio 1.2 */
		return;
	mask = 0xffffffffULL << (32 * sel);
	bits = (uint64_t)v << (32 * sel);
	t->st.acked = (t->st.acked & ~mask) | (bits & t->p.features);
	t->st.unoffered = (t->st.unoffered & ~mask) | (bits & ~t->p.features);
}

static void write_queue_ready(struct virtio_mmio *t, struct virtq *vq, uint32_t v)
{
	const char *why = NULL;

	if (v && !vq->ready) {
		if (vq_enable(vq, &t->vm->mem, &why))
			virtio_mmio_fail(t, why);
	} else if (!v && vq->ready) {
		t->ops->drain(t->opaque);
		vq_disable(vq);
	}
}

/* Set the low or high half of a 64-bit register. */
static void set_half(uint64_t *reg, bool high, uint32_t v)
{
	if (high)
		*reg = (*reg & 0xffffffffULL) | ((uint64_t)v << 32);
	else
		*reg = (*reg & ~0xffffffffULL) | v;
}

static uint32_t reg_read(struct virtio_mmio *t, uint64_t off)
{
	struct virtq *vq = sel_vq(t);

	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE:
		return VIRTIO_MMIO_MAGIC;
	case VIRTIO_MMIO_VERSION_REG:
		return VIRTIO_MMIO_VERSION;
	case VIRTIO_MMIO_DEVICE_ID:
		return t->p.device_id;
	case VIRTIO_MMIO_VENDOR_ID:
		return VIRTIO_MMIO_VENDOR;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		if (t->st.dev_features_sel > 1)
			return 0;
		return (uint32_t)(t->p.features >> (32 * t->st.dev_features_sel));
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		return vq ? vq->max : 0;
	case VIRTIO_MMIO_QUEUE_READY:
		return vq ? vq->ready : 0;
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		return t->st.isr;
	case VIRTIO_MMIO_STATUS:
		return t->st.status;
	case VIRTIO_MMIO_CONFIG_GENERATION:
		return t->st.config_gen;
	default:
		return 0; /* write-only or unassigned */
	}
}

static void reg_write(struct virtio_mmio *t, uint64_t off, uint32_t v)
{
	struct virtq *vq = sel_vq(t);

	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		t->st.dev_features_sel = v;
		return;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		write_driver_features(t, v);
		return;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		t->st.drv_features_sel = v;
		return;
	case VIRTIO_MMIO_QUEUE_SEL:
		t->st.queue_sel = v;
		return;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		if (q_valid(t, v))
			notify_queue(t, v);
		return;
	case VIRTIO_MMIO_INTERRUPT_ACK:
		t->st.isr &= ~v;
		update_line(t);
		return;
	case VIRTIO_MMIO_STATUS:
		write_status(t, v);
		return;
	default:
		break;
	}
	/* queue registers: they latch only while the queue is not ready */
	if (!vq)
		return;
	if (off == VIRTIO_MMIO_QUEUE_READY) {
		write_queue_ready(t, vq, v);
		return;
	}
	if (vq->ready) {
		rw_debug("%s: queue register 0x%llx written while the queue is ready: ignored",
			 t->name, (unsigned long long)off);
		return;
	}
	switch (off) {
	case VIRTIO_MMIO_QUEUE_NUM:
		vq->num = v;
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		set_half(&vq->desc_gpa, off == VIRTIO_MMIO_QUEUE_DESC_HIGH, v);
		break;
	case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
	case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
		set_half(&vq->avail_gpa, off == VIRTIO_MMIO_QUEUE_DRIVER_HIGH, v);
		break;
	case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
	case VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
		set_half(&vq->used_gpa, off == VIRTIO_MMIO_QUEUE_DEVICE_HIGH, v);
		break;
	default:
		break; /* read-only or unassigned */
	}
}

static void mmio_read(void *opaque, struct vcpu *vcpu, uint64_t off, void *data, uint32_t len)
{
	struct virtio_mmio *t = opaque;

	memset(data, 0, len);
	pthread_mutex_lock(&t->lock);
	if (off >= VIRTIO_MMIO_CONFIG) {
		uint64_t c = off - VIRTIO_MMIO_CONFIG;

		if (c < t->p.config_len && len <= t->p.config_len - c)
			t->ops->config_read(t->opaque, (uint32_t)c, data, len);
	} else if (len == 4 && !(off & 3)) {
		uint32_t v = htole32(reg_read(t, off));

		memcpy(data, &v, 4);
	} else {
		log_guest(t, "a register read that is not 32-bit and aligned", "it reads 0");
	}
	pthread_mutex_unlock(&t->lock);
}

static void mmio_write(void *opaque, struct vcpu *vcpu, uint64_t off, const void *data,
		       uint32_t len)
{
	struct virtio_mmio *t = opaque;
	uint32_t v;

	pthread_mutex_lock(&t->lock);
	if (off >= VIRTIO_MMIO_CONFIG) {
		/* the configuration space is read-only for every device here */
	} else if (len == 4 && !(off & 3)) {
		memcpy(&v, data, 4);
		reg_write(t, off, le32toh(v));
	} else {
		log_guest(t, "a register write that is not 32-bit and aligned", "it is ignored");
	}
	pthread_mutex_unlock(&t->lock);
}

static const struct bus_ops virtio_mmio_bus_ops = {
	.read = mmio_read,
	.write = mmio_write,
};

/* ----------------------------------------------------------------- set-up */

int virtio_mmio_init(struct virtio_mmio *t, struct vm *vm, uint64_t base, uint32_t irq,
		     const struct virtio_mmio_params *p, const struct virtio_mmio_dev_ops *ops,
		     void *opaque, const char *name)
{
	int ret;

	memset(t, 0, sizeof(*t));
	if (!p->nqueues || p->nqueues > VIRTIO_MMIO_MAX_QUEUES || !p->queue_max ||
	    (p->queue_max & (p->queue_max - 1)) || p->queue_max > VIRTQ_MAX_SIZE ||
	    p->config_len > RW_VIRTIO_WINDOW - VIRTIO_MMIO_CONFIG || !ops->notify || !ops->drain ||
	    !ops->config_read)
		return -EINVAL;
	if (vm->nr_virtio >= ARRAY_SIZE(vm->virtio) || vm->nr_virtio >= RW_VIRTIO_MAX)
		return -ENOSPC;
	t->vm = vm;
	t->name = name;
	t->base = base;
	t->irq = irq;
	t->p = *p;
	t->ops = ops;
	t->opaque = opaque;
	t->irq_level = -1;
	state_reset(t);
	pthread_mutex_init(&t->lock, NULL);
	ret = bus_register(&vm->buses[BUS_MMIO], base, RW_VIRTIO_WINDOW, &virtio_mmio_bus_ops, t,
			   name);
	if (ret) {
		pthread_mutex_destroy(&t->lock);
		return ret;
	}
	t->on_bus = true;
	vm->virtio[vm->nr_virtio].base = base;
	vm->virtio[vm->nr_virtio].irq = irq;
	vm->virtio[vm->nr_virtio].device_id = p->device_id;
	vm->nr_virtio++;
	return 0;
}

void virtio_mmio_uninit(struct virtio_mmio *t)
{
	struct vm *vm = t->vm;

	if (!t->on_bus)
		return;
	if (bus_unregister(&vm->buses[BUS_MMIO], t->base))
		rw_debug("%s: was not on the bus", t->name);
	for (unsigned i = 0; i < vm->nr_virtio; i++) {
		if (vm->virtio[i].base != t->base)
			continue;
		memmove(&vm->virtio[i], &vm->virtio[i + 1],
			(vm->nr_virtio - i - 1) * sizeof(vm->virtio[0]));
		vm->nr_virtio--;
		break;
	}
	t->on_bus = false;
	pthread_mutex_destroy(&t->lock);
}

void virtio_mmio_quiesce(struct virtio_mmio *t)
{
	pthread_mutex_lock(&t->lock);
	t->quiesced = true;
	t->ops->drain(t->opaque);
	pthread_mutex_unlock(&t->lock);
}

void virtio_mmio_resume(struct virtio_mmio *t)
{
	uint32_t pending;

	pthread_mutex_lock(&t->lock);
	t->quiesced = false;
	pending = t->pending;
	t->pending = 0;
	for (unsigned q = 0; q < t->p.nqueues; q++)
		if (pending & (1u << q))
			notify_queue(t, q);
	pthread_mutex_unlock(&t->lock);
}

int virtio_mmio_cmdline(const struct vm *vm, char *buf, size_t len)
{
	size_t n = 0;

	if (len)
		buf[0] = '\0';
	for (unsigned i = 0; i < vm->nr_virtio; i++) {
		int k = snprintf(n < len ? buf + n : NULL, n < len ? len - n : 0,
				 "%svirtio_mmio.device=%lluK@0x%llx:%u", i ? " " : "",
				 (unsigned long long)(RW_VIRTIO_WINDOW / 1024),
				 (unsigned long long)vm->virtio[i].base, vm->virtio[i].irq);
		if (k < 0)
			return k;
		n += (size_t)k;
	}
	return (int)n;
}

/* ------------------------------------------------------------------ record */

void virtio_mmio_save(const struct virtio_mmio *t, struct rec_writer *w)
{
	const struct virtio_mmio_state *st = &t->st;

	rec_put_u32(w, t->p.device_id);
	rec_put_u32(w, st->status);
	rec_put_u64(w, t->p.features);
	rec_put_u64(w, st->acked);
	rec_put_u64(w, st->unoffered);
	rec_put_u32(w, st->dev_features_sel);
	rec_put_u32(w, st->drv_features_sel);
	rec_put_u32(w, st->queue_sel);
	rec_put_u32(w, st->isr);
	rec_put_u32(w, st->config_gen);
	rec_put_u16(w, (uint16_t)t->p.nqueues);
	for (unsigned q = 0; q < t->p.nqueues; q++) {
		const struct virtq *vq = &st->vq[q];

		rec_put_u16(w, vq->max);
		rec_put_u32(w, vq->num);
		rec_put_bool(w, vq->ready);
		rec_put_u64(w, vq->desc_gpa);
		rec_put_u64(w, vq->avail_gpa);
		rec_put_u64(w, vq->used_gpa);
		rec_put_u16(w, vq->last_avail);
		rec_put_u16(w, vq->used_idx);
	}
}

static int parse_queue(const struct virtio_mmio *t, struct rec_reader *r, uint32_t status,
		       struct virtq *vq)
{
	const char *why;
	uint16_t max, ahead;

	vq_init(vq, t->p.queue_max);
	rec_get_u16(r, &max);
	rec_get_u32(r, &vq->num);
	rec_get_bool(r, &vq->ready);
	rec_get_u64(r, &vq->desc_gpa);
	rec_get_u64(r, &vq->avail_gpa);
	rec_get_u64(r, &vq->used_gpa);
	rec_get_u16(r, &vq->last_avail);
	if (rec_get_u16(r, &vq->used_idx))
		return rec_error(r);
	if (max != t->p.queue_max)
		return rec_fail(r, RW_ECORRUPT, "queue num_max (differs from this device's)");
	if (!vq->ready) {
		if (vq->last_avail || vq->used_idx)
			return rec_fail(r, RW_ECORRUPT, "last_avail_idx/used_idx (queue not ready)");
		return 0;
	}
	if (vq_check_layout(&t->vm->mem, vq->num, t->p.queue_max, vq->desc_gpa, vq->avail_gpa,
			    vq->used_gpa, &why))
		return rec_fail(r, RW_ECORRUPT, why);
	ahead = (uint16_t)(vq->last_avail - vq->used_idx);
	if (!(status & VIRTIO_STATUS_NEEDS_RESET) && ahead)
		return rec_fail(r, RW_ECORRUPT,
				"last_avail_idx (ahead of used_idx in a quiesced device)");
	if (ahead > vq->num)
		return rec_fail(r, RW_ECORRUPT,
				"last_avail_idx (more than a queue size ahead of used_idx)");
	return 0;
}

int virtio_mmio_parse(const struct virtio_mmio *t, struct rec_reader *r,
		      struct virtio_mmio_state *st)
{
	uint32_t device_id;
	uint64_t offered;
	uint16_t nqueues;
	int ret;

	memset(st, 0, sizeof(*st));
	rec_get_u32(r, &device_id);
	rec_get_u32(r, &st->status);
	rec_get_u64(r, &offered);
	rec_get_u64(r, &st->acked);
	rec_get_u64(r, &st->unoffered);
	rec_get_u32(r, &st->dev_features_sel);
	rec_get_u32(r, &st->drv_features_sel);
	rec_get_u32(r, &st->queue_sel);
	rec_get_u32(r, &st->isr);
	rec_get_u32(r, &st->config_gen);
	if (rec_get_u16(r, &nqueues))
		return rec_error(r);
	if (device_id != t->p.device_id)
		return rec_fail(r, RW_ECORRUPT, "device_id");
	if (st->status & ~VIRTIO_STATUS_ALL)
		return rec_fail(r, RW_ECORRUPT, "status (unknown bits)");
	if (offered != t->p.features)
		return rec_fail(r, RW_ECORRUPT,
				"features_offered (differ from what this device offers)");
	if (st->acked & ~offered)
		return rec_fail(r, RW_ECORRUPT, "features_acked (not a subset of features_offered)");
	if (st->unoffered & offered)
		return rec_fail(r, RW_ECORRUPT, "features_unoffered (overlap features_offered)");
	if ((st->status & VIRTIO_STATUS_FEATURES_OK) &&
	    (st->unoffered || !(st->acked & VIRTIO_BIT(VIRTIO_F_VERSION_1))))
		return rec_fail(r, RW_ECORRUPT,
				"features_acked (FEATURES_OK with features the device refuses)");
	if (st->isr & ~VIRTIO_INT_ALL)
		return rec_fail(r, RW_ECORRUPT, "interrupt_status (unknown bits)");
	if (nqueues != t->p.nqueues)
		return rec_fail(r, RW_ECORRUPT, "queue count (differs from this device's)");
	for (unsigned q = 0; q < nqueues; q++) {
		ret = parse_queue(t, r, st->status, &st->vq[q]);
		if (ret)
			return ret;
	}
	return 0;
}

int virtio_mmio_apply(struct virtio_mmio *t, const struct virtio_mmio_state *st)
{
	int ret;

	t->st = *st;
	for (unsigned q = 0; q < t->p.nqueues; q++) {
		struct virtq *vq = &t->st.vq[q];

		vq->size = 0;
		vq->desc = vq->avail = vq->used = NULL;
		if (vq->ready) {
			vq->ready = false;
			ret = vq_attach(vq, &t->vm->mem);
			if (ret) {
				state_reset(t);
				update_line(t);
				return ret;
			}
		}
	}
	t->pending = 0;
	t->irq_level = -1; /* drive the line whatever KVM holds */
	update_line(t);
	return 0;
}
