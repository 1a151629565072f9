/*
 * serial.h - 16550A UART ("serial" device type).
 *
 * One instance per port, registered on the VM's port-I/O bus at base..base+7
 * with the id "serial@0x<base>" ("serial@0x3f8"). It implements what a Linux
 * 8250 driver (and the guest SDK's console) uses: RBR/THR, IER, IIR with
 * FIFO bits and interrupt priorities, FCR, LCR with DLAB and the divisor
 * latch, MCR with loopback and OUT2, LSR, MSR with delta bits, SCR.
 *
 * Reset state: as PC firmware leaves a console port (rewind has none):
 * FIFOs enabled with trigger level 1, 8N1, divisor 1 (115200 baud); IER,
 * MCR and SCR zero. A guest need not write FCR, which would discard input
 * already waiting (guest/include/rw/abi.h relies on this).
 *
 * Transmit: the transmitter is infinitely fast; every byte written to THR
 * leaves at once (THR and the shift register are always empty) and goes to
 * the output fd. Output is buffered per line: a '\n', a full buffer,
 * serial_flush(), quiesce and destroy write it out, and a partial line is
 * written at most SERIAL_FLUSH_DELAY_MS later by the VM's event thread.
 * Bytes are never dropped while the fd accepts them; a full pipe blocks the
 * writing vCPU (back-pressure). A write error is logged once and the output
 * is discarded from then on.
 *
 * Receive: a 16-byte FIFO (1 byte with FIFOs disabled) filled by
 * serial_feed(), which accepts only what fits: the host side is flow
 * controlled and loses nothing. The overrun error (LSR.OE) arises only in
 * loopback, where the guest itself overfills the FIFO.
 *
 * Interrupt: level-triggered on GSI `irq` through vm_irq_line(). The line is
 * high while an enabled interrupt is pending (IIR bit 0 clear) and MCR.OUT2
 * is set, as on PC hardware where OUT2 gates the UART's interrupt output. In
 * loopback the OUT2 pin is forced inactive, so the line stays low (IIR still
 * shows the pending interrupt).
 *
 * Threads: vCPU threads (register access), the event thread (input, timed
 * flush) and the checkpoint code call in concurrently; every entry point
 * takes the instance's mutex.
 *
 * Record (version 1) layout is described in serial.c.
 */
#ifndef RW_DEVICES_SERIAL_H
#define RW_DEVICES_SERIAL_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct vm;
struct serial;
struct device;

#define SERIAL_TYPE_NAME "serial"  /* on disk: record key dev/serial/<id> */
#define SERIAL_STATE_VERSION 1
#define SERIAL_NR_PORTS 8
#define SERIAL_FIFO_SIZE 16
#define SERIAL_FLUSH_DELAY_MS 10

#define SERIAL_COM1_BASE 0x3f8
#define SERIAL_COM1_IRQ 4
#define SERIAL_COM2_BASE 0x2f8
#define SERIAL_COM2_IRQ 3

/* Register offsets from the base port. */
enum serial_reg {
	SERIAL_RBR = 0, /* read, DLAB=0 */
	SERIAL_THR = 0, /* write, DLAB=0 */
	SERIAL_DLL = 0, /* DLAB=1 */
	SERIAL_IER = 1, /* DLAB=0 */
	SERIAL_DLM = 1, /* DLAB=1 */
	SERIAL_IIR = 2, /* read */
	SERIAL_FCR = 2, /* write */
	SERIAL_LCR = 3,
	SERIAL_MCR = 4,
	SERIAL_LSR = 5,
	SERIAL_MSR = 6,
	SERIAL_SCR = 7,
};

/* The device type (name "serial", record version 1). */
extern const struct device_type serial_device_type;

/*
 * Create a UART at port base with interrupt line irq, register it on
 * vm->buses[BUS_PIO] and on the VM's device list (vm_destroy() destroys it).
 * Must be called before vm_start(). Transmitted bytes go to out_fd, which the
 * serial only borrows: the caller keeps it open until the VM is destroyed
 * and closes it (STDOUT_FILENO is the usual choice). out_fd -1 discards
 * output.
 *
 * Errors: -EEXIST (a serial at base, or the ports are taken), -EINVAL
 * (base + 8 beyond the port space), -ENOMEM, -errno (timerfd).
 */
int serial_create(struct vm *vm, uint16_t base, uint32_t irq, int out_fd,
		  struct serial **out) RW_MUST_CHECK;

/*
 * serial_create(), but the serial takes ownership of out_fd (a file the
 * caller opened for it): it is closed when the serial is destroyed, and also
 * when this call fails.
 */
int serial_create_owned(struct vm *vm, uint16_t base, uint32_t irq, int out_fd,
			struct serial **out) RW_MUST_CHECK;

/* The embedded device (id "serial@0x3f8"). */
struct device *serial_device(struct serial *s);

/* The serial a device is, or NULL if dev is not of serial_device_type. */
struct serial *serial_from_device(struct device *dev);

/*
 * Push received bytes into the RX FIFO. Accepts as many as fit (none while
 * the UART is in loopback or quiesced) and returns that count (0..len), then
 * raises the interrupt as IER/IIR dictate. When it accepted fewer than len,
 * the rx-notify callback fires once the receiver is empty and can accept
 * input again. Any thread; never calls the rx-notify callback itself.
 */
int serial_feed(struct serial *s, const void *buf, size_t len);

/*
 * Install the callback that serial_feed() promises (fn NULL removes it). It
 * is called without the serial's lock held, on the thread that emptied the
 * receiver (a vCPU thread reading RBR, or a thread calling reset, load or
 * resume), so it may call serial_feed(). Whoever installs it must keep
 * opaque valid until it is removed or the VM's threads have stopped.
 */
void serial_set_rx_notify(struct serial *s, void (*fn)(void *opaque), void *opaque);

/*
 * Write the buffered output now. Returns 0, or the error of a failed write
 * (then or earlier: output has been discarded since).
 */
int serial_flush(struct serial *s);

/*
 * Observer of the interrupt line: fn(opaque, level) runs after every change
 * of the level the serial drives, with the serial's lock held (it must not
 * call into the serial). For tests and tracing; fn NULL removes it.
 */
void serial_set_irq_hook(struct serial *s, void (*fn)(void *opaque, int level), void *opaque);

/* Level the serial currently drives on its interrupt line (0 or 1). */
int serial_irq_level(struct serial *s);

#endif
