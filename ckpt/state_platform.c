/*
 * state_platform.c - the platform record ("vm/platform": PICs, IOAPIC, PIT,
 * KVM clock; layout and checks in state.h).
 */
#include "state.h"

#include <string.h>

#include "rw/abi.h"
#include "state_codec.h"

/* KVM gives the PICs these edge/level masks and never changes them. */
#define PIC_MASTER_ELCR_MASK 0xf8
#define PIC_SLAVE_ELCR_MASK 0xde
#define PIT_MODE_UNSET 0xff /* KVM's value for a channel never programmed */
#define PIT_COUNT_MAX 0x10000
#define PIT_FLAGS_KNOWN (KVM_PIT_FLAGS_HPET_LEGACY | KVM_PIT_FLAGS_SPEAKER_DATA_ON)
#define CLOCK_FLAGS_KNOWN (KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC)

/* The record's order of each struct's members (state.h). */
#define PIC(m) FIELD(struct kvm_pic_state, m)
static const struct field pic_fields[] = {
	PIC(last_irr), PIC(irr), PIC(imr), PIC(isr), PIC(priority_add), PIC(irq_base),
	PIC(read_reg_select), PIC(poll), PIC(special_mask), PIC(init_state), PIC(auto_eoi),
	PIC(rotate_on_auto_eoi), PIC(special_fully_nested_mode), PIC(init4), PIC(elcr),
	PIC(elcr_mask),
};
#undef PIC

/* Before the redirection table. */
#define IOAPIC(m) FIELD(struct kvm_ioapic_state, m)
static const struct field ioapic_fields[] = {
	IOAPIC(base_address), IOAPIC(ioregsel), IOAPIC(id), IOAPIC(irr),
};
#undef IOAPIC

#define PIT(m) FIELD(struct kvm_pit_channel_state, m)
static const struct field pit_channel_fields[] = {
	PIT(count), PIT(latched_count), PIT(count_latched), PIT(status_latched), PIT(status),
	PIT(read_state), PIT(write_state), PIT(write_latch), PIT(rw_mode), PIT(mode), PIT(bcd),
	PIT(gate), PIT(count_load_time),
};
#undef PIT

#define CLOCK(m) FIELD(struct kvm_clock_data, m)
static const struct field clock_fields[] = {
	CLOCK(clock), CLOCK(flags), CLOCK(realtime), CLOCK(host_tsc),
};
#undef CLOCK

int state_platform_encode(const struct vm *vm, const struct platform_state *st, uint8_t **buf,
			  size_t *len)
{
	const struct kvm_ioapic_state *io = &st->ioapic.chip.ioapic;
	struct rec_writer w;
	int ret;

	*buf = NULL;
	*len = 0;
	rec_writer_init(&w, STATE_KIND_PLATFORM, STATE_PLATFORM_VERSION);
	PUT_FIELDS(&w, &st->pic_master.chip.pic, pic_fields);
	PUT_FIELDS(&w, &st->pic_slave.chip.pic, pic_fields);
	PUT_FIELDS(&w, io, ioapic_fields);
	for (unsigned i = 0; i < KVM_IOAPIC_NUM_PINS; i++)
		rec_put_u64(&w, io->redirtbl[i].bits);
	for (unsigned i = 0; i < 3; i++)
		PUT_FIELDS(&w, &st->pit.channels[i], pit_channel_fields);
	rec_put_u32(&w, st->pit.flags);
	PUT_FIELDS(&w, &st->clock, clock_fields);
	ret = rec_take(&w, buf, len);
	rec_writer_free(&w);
	return ret;
}

static int check_pic(struct why *w, const char *name, const struct kvm_pic_state *p,
		     uint8_t elcr_mask)
{
	if (p->irq_base & 7)
		return state_refuse(w, RW_ECORRUPT, "%s.irq_base: 0x%x is not a multiple of 8", name,
			      p->irq_base);
	if (p->priority_add > 7)
		return state_refuse(w, RW_ECORRUPT, "%s.priority_add: %u, at most 7", name,
			      p->priority_add);
	if (p->init_state > 3)
		return state_refuse(w, RW_ECORRUPT, "%s.init_state: %u, at most 3", name, p->init_state);
	if (p->read_reg_select > 1 || p->poll > 1 || p->special_mask > 1 || p->auto_eoi > 1 ||
	    p->rotate_on_auto_eoi > 1 || p->special_fully_nested_mode > 1 || p->init4 > 1)
		return state_refuse(w, RW_ECORRUPT, "%s: a mode flag is neither 0 nor 1", name);
	if (p->elcr_mask != elcr_mask)
		return state_refuse(w, RW_ECORRUPT, "%s.elcr_mask: 0x%02x, KVM's is 0x%02x", name,
			      p->elcr_mask, elcr_mask);
	if (p->elcr & ~elcr_mask)
		return state_refuse(w, RW_ECORRUPT, "%s.elcr: 0x%02x outside mask 0x%02x", name, p->elcr,
			      elcr_mask);
	return 0;
}

static int check_platform(const struct vm *vm, const struct platform_state *st, struct why *w)
{
	const struct kvm_ioapic_state *io = &st->ioapic.chip.ioapic;
	int ret;

	if (st->pic_master.chip_id != KVM_IRQCHIP_PIC_MASTER ||
	    st->pic_slave.chip_id != KVM_IRQCHIP_PIC_SLAVE || st->ioapic.chip_id != KVM_IRQCHIP_IOAPIC)
		return state_refuse(w, RW_ECORRUPT, "chip_id: irqchips out of order");
	if ((ret = check_pic(w, "pic_master", &st->pic_master.chip.pic, PIC_MASTER_ELCR_MASK)) ||
	    (ret = check_pic(w, "pic_slave", &st->pic_slave.chip.pic, PIC_SLAVE_ELCR_MASK)))
		return ret;

	if (io->base_address != RW_GPA_IOAPIC)
		return state_refuse(w, RW_ECORRUPT, "ioapic.base_address: 0x%llx, the board's is 0x%llx",
			      (unsigned long long)io->base_address,
			      (unsigned long long)RW_GPA_IOAPIC);
	if (io->id > 15)
		return state_refuse(w, RW_ECORRUPT, "ioapic.id: %u, at most 15", io->id);
	if (io->irr >> KVM_IOAPIC_NUM_PINS)
		return state_refuse(w, RW_ECORRUPT, "ioapic.irr: 0x%x names pins beyond %u", io->irr,
			      KVM_IOAPIC_NUM_PINS - 1);

	for (unsigned i = 0; i < 3; i++) {
		const struct kvm_pit_channel_state *c = &st->pit.channels[i];

		if (c->count > PIT_COUNT_MAX)
			return state_refuse(w, RW_ECORRUPT, "pit.channels[%u].count: 0x%x, at most 0x%x", i,
				      c->count, PIT_COUNT_MAX);
		if (c->mode > 5 && c->mode != PIT_MODE_UNSET)
			return state_refuse(w, RW_ECORRUPT, "pit.channels[%u].mode: %u, not 0..5", i,
				      c->mode);
		if (c->rw_mode > 3)
			return state_refuse(w, RW_ECORRUPT, "pit.channels[%u].rw_mode: %u, at most 3", i,
				      c->rw_mode);
		if (c->count_latched > 3)
			return state_refuse(w, RW_ECORRUPT, "pit.channels[%u].count_latched: %u, at most 3",
				      i, c->count_latched);
		if (c->read_state > 4 || c->write_state > 4)
			return state_refuse(w, RW_ECORRUPT,
				      "pit.channels[%u]: read/write state %u/%u, at most 4", i,
				      c->read_state, c->write_state);
		if (c->status_latched > 1 || c->bcd > 1 || c->gate > 1)
			return state_refuse(w, RW_ECORRUPT, "pit.channels[%u]: a flag is neither 0 nor 1",
				      i);
	}
	if (st->pit.flags & ~(uint32_t)PIT_FLAGS_KNOWN)
		return state_refuse(w, RW_ECORRUPT, "pit.flags: unknown flags 0x%x", st->pit.flags);
	if (st->clock.flags & ~(uint32_t)CLOCK_FLAGS_KNOWN)
		return state_refuse(w, RW_ECORRUPT, "clock.flags: unknown flags 0x%x", st->clock.flags);
	return 0;
}

int state_platform_decode(const struct vm *vm, const void *buf, size_t len,
			  struct platform_state *out, char *why, size_t whylen)
{
	struct kvm_ioapic_state *io = &out->ioapic.chip.ioapic;
	const char *part = "pic_master";
	struct rec_reader r;
	struct why w;
	int ret;

	state_why_init(&w, why, whylen, STATE_KEY_PLATFORM);
	memset(out, 0, sizeof(*out));
	ret = state_open_record(&r, buf, len, STATE_KIND_PLATFORM, 1, STATE_PLATFORM_VERSION, &w);
	if (ret)
		return ret;
	out->pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
	out->pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
	out->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	GET_FIELDS(&r, &out->pic_master.chip.pic, pic_fields);
	PART(&r, part, "pic_slave");
	GET_FIELDS(&r, &out->pic_slave.chip.pic, pic_fields);
	PART(&r, part, "ioapic");
	GET_FIELDS(&r, io, ioapic_fields);
	for (unsigned i = 0; i < KVM_IOAPIC_NUM_PINS; i++)
		io->redirtbl[i].bits = g64(&r);
	PART(&r, part, "pit");
	for (unsigned i = 0; i < 3; i++)
		GET_FIELDS(&r, &out->pit.channels[i], pit_channel_fields);
	out->pit.flags = g32(&r);
	PART(&r, part, "clock");
	GET_FIELDS(&r, &out->clock, clock_fields);
	PART(&r, part, "tagged fields");
	if (state_skip_tags(&r) || rec_error(&r))
		ret = state_refuse_reader(&w, &r, part);
	else
		ret = check_platform(vm, out, &w);
	if (ret)
		memset(out, 0, sizeof(*out));
	return ret;
}

int state_platform_check(const struct vm *vm, const struct platform_state *st, char *why,
			 size_t whylen)
{
	struct why w;

	state_why_init(&w, why, whylen, STATE_KEY_PLATFORM);
	return check_platform(vm, st, &w);
}
