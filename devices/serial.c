/*
 * serial.c - 16550A UART (behaviour and threading in serial.h).
 *
 * Record, version 1 (base/record.h encoding, little-endian, in this order):
 *
 *   u16  base        binding: port base of the instance that wrote it
 *   u32  irq         binding: its interrupt line
 *   u8   ier         bits 0-3 (4-7 are zero)
 *   u8   lcr
 *   u8   mcr         bits 0-4 (5-7 are zero)
 *   u8   lsr         as the guest would read it: DR == (rx_count > 0),
 *                    THRE and TEMT set, OE as latched, PE/FE/BI/bit 7 clear
 *   u8   msr         bits 4-7 follow MCR in loopback, else DCD|DSR|CTS;
 *                    bits 0-3 are the latched deltas
 *   u8   scr
 *   u8   dll
 *   u8   dlm
 *   u8   fcr         as programmed: bit 0 FIFO enable, bit 3 DMA mode,
 *                    bits 6-7 RX trigger (1/4/8/14); other bits zero
 *   u8   iir         as a read would return it (checked, not trusted)
 *   bool thre_pending  THR-empty interrupt latched and not yet cleared
 *   u8   rx_count    bytes in the RX FIFO (<= 16, <= 1 with FIFOs off)
 *   u8   rx[rx_count]  oldest first
 *   ...  tagged fields (none in version 1; unknown ones are skipped)
 *
 * The interrupt line level is derived from these on load (IIR is recorded
 * only to be checked against them). The output fd, the output buffer and the input flow control are host
 * state and not recorded.
 */
#include "serial.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "bus.h"
#include "device.h"
#include "log.h"
#include "record.h"
#include "util.h"
#include "vm.h"

/* ----------------------------------------------------------- register bits */

#define IER_RDI 0x01    /* received data available */
#define IER_THRI 0x02   /* THR empty */
#define IER_RLSI 0x04   /* receiver line status */
#define IER_MSI 0x08    /* modem status */
#define IER_MASK 0x0f

#define IIR_NO_INT 0x01
#define IIR_MSI 0x00
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_RLSI 0x06
#define IIR_TIMEOUT 0x0c
#define IIR_FIFO_BITS 0xc0

#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define FCR_CLEAR_TX 0x04
#define FCR_DMA 0x08
#define FCR_TRIGGER 0xc0
#define FCR_KEPT (FCR_ENABLE | FCR_DMA | FCR_TRIGGER)

#define LCR_DLAB 0x80

#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f

#define LSR_DR 0x01
#define LSR_OE 0x02
#define LSR_PE 0x04
#define LSR_FE 0x08
#define LSR_BI 0x10
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define LSR_FIFOE 0x80
#define LSR_ERRORS (LSR_OE | LSR_PE | LSR_FE | LSR_BI)

#define MSR_DCTS 0x01
#define MSR_DDSR 0x02
#define MSR_TERI 0x04
#define MSR_DDCD 0x08
#define MSR_DELTAS 0x0f
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80
/* What the far end shows when not in loopback: a terminal that is there. */
#define MSR_EXTERNAL (MSR_DCD | MSR_DSR | MSR_CTS)

#define SERIAL_TXBUF 4096
/* Divisor 1: 115200 baud from the PC's 1.8432 MHz clock. */
#define SERIAL_RESET_DIVISOR 1

/* ------------------------------------------------------------------ state */

/*
 * Guest-visible state: what the record holds. Kept apart from the host side
 * so that validate() can parse into a scratch copy and load() can apply it
 * in one assignment.
 */
struct serial_state {
	uint8_t ier, lcr, mcr, msr, scr, dll, dlm, fcr;
	uint8_t lsr_err;      /* latched LSR error bits (only OE arises) */
	bool thre_pending;
	uint8_t rx_count;
	uint8_t rx[SERIAL_FIFO_SIZE]; /* oldest first */
};

struct serial {
	struct device dev;    /* first: container_of from ops */
	pthread_mutex_t lock;
	uint16_t base;
	uint32_t irq;
	bool on_bus;

	struct serial_state st;  /* under lock */
	int irq_level;           /* level last driven */
	bool irq_err_logged;

	/* output */
	int out_fd;
	bool own_fd;
	uint8_t txbuf[SERIAL_TXBUF];
	size_t txlen;
	int tx_err;
	int timer_fd;            /* -1: no timed flush, write every byte */
	bool timer_armed;

	/* input flow control */
	bool quiesced;
	bool rx_blocked;         /* a feed came up short; notify when empty */
	void (*rx_notify)(void *opaque);
	void *rx_notify_opaque;

	void (*irq_hook)(void *opaque, int level);
	void *irq_hook_opaque;
};

static struct serial *to_serial(const struct device *dev)
{
	return container_of(dev, struct serial, dev);
}

/* ---------------------------------------------------------- derived values */

static unsigned rx_capacity(const struct serial_state *st)
{
	return (st->fcr & FCR_ENABLE) ? SERIAL_FIFO_SIZE : 1;
}

static unsigned rx_trigger(const struct serial_state *st)
{
	static const uint8_t levels[4] = { 1, 4, 8, 14 };

	return levels[(st->fcr & FCR_TRIGGER) >> 6];
}

static uint8_t lsr_value(const struct serial_state *st)
{
	return st->lsr_err | (st->rx_count ? LSR_DR : 0) | LSR_THRE | LSR_TEMT;
}

/* MSR bits 4-7 as the modem inputs currently show them. */
static uint8_t msr_inputs(uint8_t mcr)
{
	uint8_t v = 0;

	if (!(mcr & MCR_LOOP))
		return MSR_EXTERNAL;
	if (mcr & MCR_RTS)
		v |= MSR_CTS;
	if (mcr & MCR_DTR)
		v |= MSR_DSR;
	if (mcr & MCR_OUT1)
		v |= MSR_RI;
	if (mcr & MCR_OUT2)
		v |= MSR_DCD;
	return v;
}

/*
 * Interrupt identification, highest priority first: receiver line status,
 * received data (or character timeout), THR empty, modem status.
 *
 * Input arrives from the host in bursts and no baud-rate clock is modelled,
 * so a FIFO below its trigger level reports the character timeout at once
 * rather than after four character times: the guest is told about every
 * byte and none sits in the FIFO unnoticed.
 */
static uint8_t iir_id(const struct serial_state *st)
{
	if ((st->ier & IER_RLSI) && (st->lsr_err & LSR_ERRORS))
		return IIR_RLSI;
	if ((st->ier & IER_RDI) && st->rx_count) {
		if ((st->fcr & FCR_ENABLE) && st->rx_count < rx_trigger(st))
			return IIR_TIMEOUT;
		return IIR_RDI;
	}
	if ((st->ier & IER_THRI) && st->thre_pending)
		return IIR_THRI;
	if ((st->ier & IER_MSI) && (st->msr & MSR_DELTAS))
		return IIR_MSI;
	return IIR_NO_INT;
}

static uint8_t iir_value(const struct serial_state *st)
{
	return iir_id(st) | ((st->fcr & FCR_ENABLE) ? IIR_FIFO_BITS : 0);
}

static int irq_wanted(const struct serial_state *st)
{
	if ((st->mcr & (MCR_OUT2 | MCR_LOOP)) != MCR_OUT2)
		return 0;
	return iir_id(st) != IIR_NO_INT;
}

/* Whether serial_feed() would take a byte. */
static bool rx_open(const struct serial *s)
{
	return !s->quiesced && !(s->st.mcr & MCR_LOOP) && s->st.rx_count < rx_capacity(&s->st);
}

/* ------------------------------------------------------------- side effects */

/* Drive the interrupt line to what the state asks for. Lock held. */
static void update_irq(struct serial *s)
{
	int level = irq_wanted(&s->st);
	int ret;

	if (level == s->irq_level)
		return;
	s->irq_level = level;
	ret = vm_irq_line(s->dev.vm, s->irq, level);
	if (ret && !s->irq_err_logged) {
		s->irq_err_logged = true;
		rw_warn("%s: setting IRQ %u to %d: %s", s->dev.id, s->irq, level, rw_strerror(ret));
	}
	if (s->irq_hook)
		s->irq_hook(s->irq_hook_opaque, level);
}

/*
 * After any change: drive the line, and say whether the input side should be
 * told that the receiver is empty again (the caller calls rx_notify after
 * dropping the lock). Lock held.
 */
static bool settle(struct serial *s)
{
	update_irq(s);
	if (s->rx_blocked && s->rx_notify && s->st.rx_count == 0 && rx_open(s)) {
		s->rx_blocked = false;
		return true;
	}
	return false;
}

/* Unlock, then run the rx-notify callback if settle() asked for it. */
static void unlock_and_notify(struct serial *s, bool notify)
{
	void (*fn)(void *) = s->rx_notify;
	void *opaque = s->rx_notify_opaque;

	pthread_mutex_unlock(&s->lock);
	if (notify && fn)
		fn(opaque);
}

/* write(2) until done; waits for a non-blocking fd to drain. 0 or -errno. */
static int write_full(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t k = write(fd, p, n);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd pfd = { .fd = fd, .events = POLLOUT };

				if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
					return -errno;
				continue;
			}
			return -errno;
		}
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Write out the output buffer. Lock held. */
static void flush_locked(struct serial *s)
{
	int ret;

	if (!s->txlen)
		return;
	ret = s->tx_err ? s->tx_err : write_full(s->out_fd, s->txbuf, s->txlen);
	if (ret && !s->tx_err) {
		s->tx_err = ret;
		rw_warn("%s: writing guest output: %s; output is discarded from now on", s->dev.id,
			rw_strerror(ret));
	}
	s->txlen = 0;
}

static void arm_timer(struct serial *s)
{
	struct itimerspec its = {
		.it_value = { .tv_sec = 0, .tv_nsec = SERIAL_FLUSH_DELAY_MS * 1000000L },
	};

	if (timerfd_settime(s->timer_fd, 0, &its, NULL) == 0)
		s->timer_armed = true;
	else
		flush_locked(s); /* cannot wait: write now */
}

/* A byte leaves the transmitter. Lock held. */
static void tx_byte(struct serial *s, uint8_t c)
{
	if (s->out_fd < 0)
		return;
	s->txbuf[s->txlen++] = c;
	if (c == '\n' || s->txlen == sizeof(s->txbuf) || s->timer_fd < 0)
		flush_locked(s);
	else if (!s->timer_armed)
		arm_timer(s);
}

/*
 * A byte arrives at the receiver. With the FIFO full it is an overrun: in
 * FIFO mode the byte is lost, without FIFOs it replaces the unread one.
 * Lock held.
 */
static void rx_byte(struct serial_state *st, uint8_t c)
{
	if (st->rx_count < rx_capacity(st)) {
		st->rx[st->rx_count++] = c;
		return;
	}
	st->lsr_err |= LSR_OE;
	if (!(st->fcr & FCR_ENABLE))
		st->rx[0] = c;
}

static uint8_t rx_pop(struct serial_state *st)
{
	uint8_t c;

	if (!st->rx_count)
		return 0;
	c = st->rx[0];
	st->rx_count--;
	memmove(st->rx, st->rx + 1, st->rx_count);
	return c;
}

static void set_mcr(struct serial_state *st, uint8_t v)
{
	uint8_t before = st->msr & ~MSR_DELTAS;
	uint8_t after = msr_inputs(v);
	uint8_t changed = before ^ after;

	st->mcr = v;
	if (changed & MSR_CTS)
		st->msr |= MSR_DCTS;
	if (changed & MSR_DSR)
		st->msr |= MSR_DDSR;
	if (changed & MSR_DCD)
		st->msr |= MSR_DDCD;
	if ((before & MSR_RI) && !(after & MSR_RI)) /* trailing edge only */
		st->msr |= MSR_TERI;
	st->msr = (st->msr & MSR_DELTAS) | after;
}

static void set_fcr(struct serial_state *st, uint8_t v)
{
	if (!(v & FCR_ENABLE)) {
		/* disabling clears both FIFOs; the other bits are not programmed */
		if (st->fcr & FCR_ENABLE)
			st->rx_count = 0;
		st->fcr &= ~FCR_ENABLE;
		return;
	}
	if (!(st->fcr & FCR_ENABLE))
		st->rx_count = 0; /* enabling clears both FIFOs too */
	st->fcr = v & FCR_KEPT;
	if (v & FCR_CLEAR_RX)
		st->rx_count = 0;
	/* FCR_CLEAR_TX: the transmitter is always empty already */
}

static void set_ier(struct serial_state *st, uint8_t v)
{
	uint8_t old = st->ier;

	st->ier = v & IER_MASK;
	/* enabling the THRE interrupt with THR empty raises it */
	if ((st->ier & IER_THRI) && !(old & IER_THRI))
		st->thre_pending = true;
}

/*
 * Out of reset. rewind has no firmware, so the UART starts the way PC
 * firmware leaves a console port for the OS (guest/include/rw/abi.h): FIFOs
 * enabled and empty with trigger level 1, 8N1 at 115200 baud. Everything
 * else is the 16550's power-on state: interrupts off, MCR clear (OUT2 off,
 * so no IRQ until the guest sets it), no modem deltas.
 */
static void state_reset(struct serial_state *st)
{
	memset(st, 0, sizeof(*st));
	st->fcr = FCR_ENABLE;
	st->lcr = 0x03;
	st->dll = SERIAL_RESET_DIVISOR;
	st->msr = msr_inputs(0);
}

/* ------------------------------------------------------------------- bus */

static uint8_t reg_read(struct serial *s, unsigned off)
{
	struct serial_state *st = &s->st;
	bool dlab = st->lcr & LCR_DLAB;
	uint8_t v;

	switch (off) {
	case SERIAL_RBR:
		return dlab ? st->dll : rx_pop(st);
	case SERIAL_IER:
		return dlab ? st->dlm : st->ier;
	case SERIAL_IIR:
		v = iir_value(st);
		/* reading IIR while it shows THRE clears that interrupt */
		if ((v & 0x0f) == IIR_THRI)
			st->thre_pending = false;
		return v;
	case SERIAL_LCR:
		return st->lcr;
	case SERIAL_MCR:
		return st->mcr;
	case SERIAL_LSR:
		v = lsr_value(st);
		st->lsr_err = 0;
		return v;
	case SERIAL_MSR:
		v = st->msr;
		st->msr &= ~MSR_DELTAS;
		return v;
	case SERIAL_SCR:
		return st->scr;
	default:
		return 0xff;
	}
}

static void reg_write(struct serial *s, unsigned off, uint8_t v)
{
	struct serial_state *st = &s->st;
	bool dlab = st->lcr & LCR_DLAB;

	switch (off) {
	case SERIAL_THR:
		if (dlab) {
			st->dll = v;
			break;
		}
		if (st->mcr & MCR_LOOP)
			rx_byte(st, v);
		else
			tx_byte(s, v);
		/* the byte left at once: THR is empty again */
		st->thre_pending = true;
		break;
	case SERIAL_IER:
		if (dlab)
			st->dlm = v;
		else
			set_ier(st, v);
		break;
	case SERIAL_FCR:
		set_fcr(st, v);
		break;
	case SERIAL_LCR:
		st->lcr = v;
		break;
	case SERIAL_MCR:
		set_mcr(st, v & MCR_MASK);
		break;
	case SERIAL_SCR:
		st->scr = v;
		break;
	default:
		/* LSR and MSR writes (factory test) are ignored */
		break;
	}
}

/*
 * The UART is an 8-bit device: a wider access is split into byte cycles at
 * consecutive ports, as the ISA bus does. Bytes past the 8 ports never reach
 * here (the bus refuses accesses that overrun the range).
 */
static void serial_bus_read(void *opaque, struct vcpu *vcpu, uint64_t offset, void *data,
			    uint32_t len)
{
	struct serial *s = opaque;
	uint8_t *p = data;
	bool notify;

	pthread_mutex_lock(&s->lock);
	for (uint32_t i = 0; i < len; i++)
		p[i] = offset + i < SERIAL_NR_PORTS ? reg_read(s, (unsigned)(offset + i)) : 0xff;
	notify = settle(s);
	unlock_and_notify(s, notify);
}

static void serial_bus_write(void *opaque, struct vcpu *vcpu, uint64_t offset, const void *data,
			     uint32_t len)
{
	struct serial *s = opaque;
	const uint8_t *p = data;
	bool notify;

	pthread_mutex_lock(&s->lock);
	for (uint32_t i = 0; i < len; i++)
		if (offset + i < SERIAL_NR_PORTS)
			reg_write(s, (unsigned)(offset + i), p[i]);
	notify = settle(s);
	unlock_and_notify(s, notify);
}

static const struct bus_ops serial_bus_ops = {
	.read = serial_bus_read,
	.write = serial_bus_write,
};

/* ---------------------------------------------------------- host interface */

int serial_feed(struct serial *s, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t n = 0;

	pthread_mutex_lock(&s->lock);
	while (n < len && rx_open(s))
		rx_byte(&s->st, p[n++]);
	if (n < len)
		s->rx_blocked = true;
	/*
	 * No rx-notify from here: the caller is the input side itself, which may
	 * hold its own lock. A short feed leaves the receiver non-empty or
	 * closed, so there is nothing to announce anyway.
	 */
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return (int)n;
}

void serial_set_rx_notify(struct serial *s, void (*fn)(void *opaque), void *opaque)
{
	pthread_mutex_lock(&s->lock);
	s->rx_notify = fn;
	s->rx_notify_opaque = opaque;
	pthread_mutex_unlock(&s->lock);
}

int serial_flush(struct serial *s)
{
	int ret;

	pthread_mutex_lock(&s->lock);
	flush_locked(s);
	ret = s->tx_err;
	pthread_mutex_unlock(&s->lock);
	return ret;
}

void serial_set_irq_hook(struct serial *s, void (*fn)(void *opaque, int level), void *opaque)
{
	pthread_mutex_lock(&s->lock);
	s->irq_hook = fn;
	s->irq_hook_opaque = opaque;
	pthread_mutex_unlock(&s->lock);
}

int serial_irq_level(struct serial *s)
{
	int level;

	pthread_mutex_lock(&s->lock);
	level = s->irq_level;
	pthread_mutex_unlock(&s->lock);
	return level;
}

struct device *serial_device(struct serial *s)
{
	return &s->dev;
}

struct serial *serial_from_device(struct device *dev)
{
	return dev && dev->type == &serial_device_type ? to_serial(dev) : NULL;
}

/* Event thread: the flush timer expired. */
static void serial_timer_event(void *opaque, int fd, uint32_t events)
{
	struct serial *s = opaque;
	uint64_t expirations;

	if (read(fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
		rw_debug("%s: reading the flush timer: %s", s->dev.id, strerror(errno));
	pthread_mutex_lock(&s->lock);
	s->timer_armed = false;
	flush_locked(s);
	pthread_mutex_unlock(&s->lock);
}

/* ------------------------------------------------------------ device ops */

static void serial_destroy(struct device *dev)
{
	struct serial *s = to_serial(dev);

	pthread_mutex_lock(&s->lock);
	flush_locked(s);
	pthread_mutex_unlock(&s->lock);
	if (s->on_bus && bus_unregister(&dev->vm->buses[BUS_PIO], s->base))
		rw_debug("%s: was not on the bus", dev->id);
	if (s->timer_fd >= 0)
		close(s->timer_fd);
	if (s->own_fd && s->out_fd >= 0)
		close(s->out_fd);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/*
 * Flush the output and hold input until resume, so that the state does not
 * change while it is being saved. A broken output does not fail the
 * checkpoint: it was reported when it broke.
 */
static int serial_quiesce(struct device *dev)
{
	struct serial *s = to_serial(dev);

	pthread_mutex_lock(&s->lock);
	s->quiesced = true;
	flush_locked(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int serial_resume(struct device *dev)
{
	struct serial *s = to_serial(dev);
	bool notify;

	pthread_mutex_lock(&s->lock);
	s->quiesced = false;
	notify = settle(s);
	unlock_and_notify(s, notify);
	return 0;
}

static int serial_reset(struct device *dev)
{
	struct serial *s = to_serial(dev);
	bool notify;

	pthread_mutex_lock(&s->lock);
	flush_locked(s);
	state_reset(&s->st);
	notify = settle(s);
	unlock_and_notify(s, notify);
	return 0;
}

static int serial_save(const struct device *dev, struct rec_writer *w)
{
	struct serial *s = to_serial(dev);
	const struct serial_state *st = &s->st;

	pthread_mutex_lock(&s->lock);
	rec_put_u16(w, s->base);
	rec_put_u32(w, s->irq);
	rec_put_u8(w, st->ier);
	rec_put_u8(w, st->lcr);
	rec_put_u8(w, st->mcr);
	rec_put_u8(w, lsr_value(st));
	rec_put_u8(w, st->msr);
	rec_put_u8(w, st->scr);
	rec_put_u8(w, st->dll);
	rec_put_u8(w, st->dlm);
	rec_put_u8(w, st->fcr);
	rec_put_u8(w, iir_value(st));
	rec_put_bool(w, st->thre_pending);
	rec_put_u8(w, st->rx_count);
	rec_put_bytes(w, st->rx, st->rx_count);
	pthread_mutex_unlock(&s->lock);
	return rec_writer_error(w);
}

/*
 * Parse a record into *st and check every field, touching nothing else.
 * Returns 0 or the reader's error, with the offending field named through
 * rec_fail().
 */
static int serial_parse(const struct serial *s, struct rec_reader *r, uint32_t version,
			struct serial_state *st)
{
	uint16_t base, tag;
	uint32_t irq;
	uint8_t lsr, iir;
	struct rec_reader field;
	int ret;

	memset(st, 0, sizeof(*st));
	if (version != 1)
		return rec_fail(r, RW_EVERSION, "version");
	rec_get_u16(r, &base);
	rec_get_u32(r, &irq);
	rec_get_u8(r, &st->ier);
	rec_get_u8(r, &st->lcr);
	rec_get_u8(r, &st->mcr);
	rec_get_u8(r, &lsr);
	rec_get_u8(r, &st->msr);
	rec_get_u8(r, &st->scr);
	rec_get_u8(r, &st->dll);
	rec_get_u8(r, &st->dlm);
	rec_get_u8(r, &st->fcr);
	rec_get_u8(r, &iir);
	rec_get_bool(r, &st->thre_pending);
	if (rec_get_u8(r, &st->rx_count))
		return rec_error(r);
	if (base != s->base)
		return rec_fail(r, RW_ECORRUPT, "base (record of another port)");
	if (irq != s->irq)
		return rec_fail(r, RW_ECORRUPT, "irq (record of another line)");
	if (st->rx_count > rx_capacity(st))
		return rec_fail(r, RW_ECORRUPT, "rx_count");
	if (rec_get_bytes(r, st->rx, st->rx_count))
		return rec_error(r);
	while ((ret = rec_next_tag(r, &tag, &field)) > 0)
		if (rec_tag_unknown(r, tag))
			return rec_error(r);
	if (ret < 0 || rec_expect_end(r))
		return rec_error(r);

	if (st->ier & ~IER_MASK)
		return rec_fail(r, RW_ECORRUPT, "ier");
	if (st->mcr & ~MCR_MASK)
		return rec_fail(r, RW_ECORRUPT, "mcr");
	if (st->fcr & ~FCR_KEPT)
		return rec_fail(r, RW_ECORRUPT, "fcr");
	if ((lsr & ~LSR_OE) != ((st->rx_count ? LSR_DR : 0) | LSR_THRE | LSR_TEMT))
		return rec_fail(r, RW_ECORRUPT, "lsr");
	st->lsr_err = lsr & LSR_OE;
	if ((st->msr & ~MSR_DELTAS) != msr_inputs(st->mcr))
		return rec_fail(r, RW_ECORRUPT, "msr");
	if (iir != iir_value(st))
		return rec_fail(r, RW_ECORRUPT, "iir");
	return 0;
}

static int serial_validate(const struct device *dev, struct rec_reader *r, uint32_t version)
{
	struct serial_state st;

	return serial_parse(to_serial(dev), r, version, &st);
}

static int serial_load(struct device *dev, struct rec_reader *r, uint32_t version)
{
	struct serial *s = to_serial(dev);
	struct serial_state st;
	bool notify;
	int ret;

	ret = serial_parse(s, r, version, &st);
	if (ret)
		return ret;
	pthread_mutex_lock(&s->lock);
	flush_locked(s);
	s->st = st;
	notify = settle(s);
	unlock_and_notify(s, notify);
	return 0;
}

static const struct device_ops serial_ops = {
	.destroy = serial_destroy,
	.quiesce = serial_quiesce,
	.resume = serial_resume,
	.reset = serial_reset,
	.save = serial_save,
	.validate = serial_validate,
	.load = serial_load,
};

const struct device_type serial_device_type = {
	.name = SERIAL_TYPE_NAME,
	.state_version = SERIAL_STATE_VERSION,
	.min_version = 1,
	.ops = &serial_ops,
};

/* ---------------------------------------------------------------- create */

static int serial_create_common(struct vm *vm, uint16_t base, uint32_t irq, int out_fd,
				bool own_fd, struct serial **out)
{
	struct bus *pio = &vm->buses[BUS_PIO];
	struct serial *s;
	int ret = -ENOMEM;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		goto fail;
	s->dev.type = &serial_device_type;
	snprintf(s->dev.id, sizeof(s->dev.id), "serial@0x%x", base);
	s->base = base;
	s->irq = irq;
	s->out_fd = out_fd;
	s->own_fd = own_fd;
	s->timer_fd = -1;
	state_reset(&s->st);
	pthread_mutex_init(&s->lock, NULL);

	ret = -EINVAL;
	if ((uint32_t)base + SERIAL_NR_PORTS > 0x10000)
		goto fail_free;
	/* the likely refusal comes before anything is claimed */
	ret = -EEXIST;
	if (vm_find_device(vm, SERIAL_TYPE_NAME, s->dev.id))
		goto fail_free;
	if (out_fd >= 0) {
		s->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
		if (s->timer_fd < 0) {
			ret = -errno;
			goto fail_free;
		}
	}
	ret = bus_register(pio, base, SERIAL_NR_PORTS, &serial_bus_ops, s, s->dev.id);
	if (ret)
		goto fail_timer;
	s->on_bus = true;
	ret = vm_add_device(vm, &s->dev);
	if (ret)
		goto fail_bus;
	/*
	 * Last, because the event thread keeps the registration: without it
	 * output is written byte by byte instead of per line.
	 */
	if (s->timer_fd >= 0 && vm_event_add(vm, s->timer_fd, serial_timer_event, s)) {
		rw_debug("%s: no timed flush, writing output unbuffered", s->dev.id);
		close(s->timer_fd);
		s->timer_fd = -1;
	}
	*out = s;
	return 0;

fail_bus:
	bus_unregister(pio, base);
fail_timer:
	if (s->timer_fd >= 0)
		close(s->timer_fd);
fail_free:
	pthread_mutex_destroy(&s->lock);
	free(s);
fail:
	if (own_fd && out_fd >= 0)
		close(out_fd);
	return ret;
}

int serial_create(struct vm *vm, uint16_t base, uint32_t irq, int out_fd, struct serial **out)
{
	return serial_create_common(vm, base, irq, out_fd, false, out);
}

int serial_create_owned(struct vm *vm, uint16_t base, uint32_t irq, int out_fd,
			struct serial **out)
{
	return serial_create_common(vm, base, irq, out_fd, true, out);
}
