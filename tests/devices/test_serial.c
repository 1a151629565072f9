/*
 * The 16550A UART and the console, driven through a real VM's port-I/O bus
 * exactly as a guest's in/out instructions are, with the interrupt line
 * checked both through the serial's hook and in KVM's in-kernel PIC.
 *
 * No vCPU runs: the tests play the guest (bus_dispatch) and the event
 * thread (run_events() below, which dispatches the VM's own epoll set).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "bus.h"
#include "console.h"
#include "device.h"
#include "record.h"
#include "serial.h"
#include "testutil.h"
#include "vmtest.h"
#include "util.h"
#include "vm.h"

#define COM1 SERIAL_COM1_BASE
#define COM2 SERIAL_COM2_BASE

#define RBR 0
#define THR 0
#define DLL 0
#define IER 1
#define DLM 1
#define IIR 2
#define FCR 2
#define LCR 3
#define MCR 4
#define LSR 5
#define MSR 6
#define SCR 7

/* ------------------------------------------------------------- helpers */

static struct vm *new_vm(void)
{
	struct vm_config cfg;
	struct vm *vm = NULL;

	rw_test_require_kvm();
	config_init(&cfg);
	cfg.mem_size = 16 * MiB;
	cfg.serial_in = false;
	cr_assert_eq(vm_create(&cfg, &vm), 0);
	return vm;
}

static struct serial *new_serial(struct vm *vm, uint16_t base, uint32_t irq, int out_fd)
{
	struct serial *s = NULL;

	cr_assert_eq(serial_create(vm, base, irq, out_fd, &s), 0);
	cr_assert_not_null(s);
	return s;
}

static uint8_t in8(struct vm *vm, uint16_t port)
{
	uint8_t v = 0;

	cr_assert(bus_dispatch(&vm->buses[BUS_PIO], NULL, port, &v, 1, false), "port 0x%x", port);
	return v;
}

static void out8(struct vm *vm, uint16_t port, uint8_t v)
{
	cr_assert(bus_dispatch(&vm->buses[BUS_PIO], NULL, port, &v, 1, true), "port 0x%x", port);
}

/* What KVM's PIC sees on an ISA line (last_irr tracks the input level). */
static int pic_line(struct vm *vm, unsigned irq)
{
	struct kvm_irqchip chip = { .chip_id = KVM_IRQCHIP_PIC_MASTER };

	cr_assert_eq(ioctl(vm->fd, KVM_GET_IRQCHIP, &chip), 0, "KVM_GET_IRQCHIP: %s", strerror(errno));
	return (chip.chip.pic.last_irr >> irq) & 1;
}

/* Level-change log kept by the irq hook. */
struct irq_log {
	int levels[64];
	unsigned n;
};

static void irq_hook(void *opaque, int level)
{
	struct irq_log *log = opaque;

	if (log->n < ARRAY_SIZE(log->levels))
		log->levels[log->n++] = level;
}

/* Both views of the line must agree. */
static void assert_line(struct vm *vm, struct serial *s, unsigned irq, int level)
{
	cr_assert_eq(serial_irq_level(s), level, "serial drives %d, expected %d",
		     serial_irq_level(s), level);
	cr_assert_eq(pic_line(vm, irq), level, "PIC sees %d, expected %d", pic_line(vm, irq), level);
}

static unsigned run_events(struct vm *vm, int timeout_ms)
{
	return rw_test_run_events(vm, timeout_ms, 1000);
}

/* Nothing ready on the VM's event set (the console is not spinning). */
static void assert_event_set_idle(struct vm *vm)
{
	struct epoll_event ev;

	cr_assert_eq(epoll_wait(vm->epfd, &ev, 1, 0), 0, "event thread would wake");
}

static size_t save(struct serial *s, uint8_t **out)
{
	struct device *dev = serial_device(s);
	struct rec_writer w;
	size_t len;

	rec_writer_init(&w, dev->type->name, dev->type->state_version);
	cr_assert_eq(dev->type->ops->save(dev, &w), 0);
	cr_assert_eq(rec_take(&w, out, &len), 0);
	rec_writer_free(&w);
	return len;
}

/* What the checkpoint code does: open, validate, then load. */
static int load(struct serial *s, const uint8_t *data, size_t len, const char **field)
{
	return rw_test_load_record(serial_device(s), data, len, field);
}

static void assert_same_record(struct serial *a, struct serial *b)
{
	uint8_t *ra, *rb;
	size_t la = save(a, &ra), lb = save(b, &rb);

	cr_assert_eq(la, lb);
	cr_assert_eq(memcmp(ra, rb, la), 0, "records differ");
	free(ra);
	free(rb);
}

/* ------------------------------------------------------------ registers */

Test(serial, reset_values_and_id)
{
	struct vm *vm = new_vm();
	struct serial *s = new_serial(vm, COM1, 4, -1);

	cr_assert_str_eq(serial_device(s)->id, "serial@0x3f8");
	cr_assert_eq(vm_find_device(vm, "serial", "serial@0x3f8"), serial_device(s));
	cr_assert_eq(serial_from_device(serial_device(s)), s);
	/* as firmware leaves it: FIFOs on, 8N1, 115200 */
	cr_assert_eq(in8(vm, COM1 + IER), 0);
	cr_assert_eq(in8(vm, COM1 + IIR), 0xc1);
	cr_assert_eq(in8(vm, COM1 + LCR), 0x03);
	cr_assert_eq(in8(vm, COM1 + MCR), 0);
	cr_assert_eq(in8(vm, COM1 + LSR), 0x60);
	cr_assert_eq(in8(vm, COM1 + MSR), 0xb0);
	cr_assert_eq(in8(vm, COM1 + SCR), 0);
	assert_line(vm, s, 4, 0);
	vm_destroy(vm);
}

Test(serial, second_instance_on_same_ports_refused)
{
	struct vm *vm = new_vm();
	struct serial *s = new_serial(vm, COM1, 4, -1), *t = NULL;

	cr_assert_eq(serial_create(vm, COM1, 4, -1, &t), -EEXIST);
	cr_assert_null(t);
	cr_assert_eq(serial_create(vm, COM1 + 4, 4, -1, &t), -EEXIST, "overlapping ports");
	cr_assert_eq(serial_create(vm, 0xfffc, 4, -1, &t), -EINVAL, "beyond port space");
	(void)s;
	vm_destroy(vm);
}

Test(serial, divisor_latch_via_dlab)
{
	struct vm *vm = new_vm();
	struct serial *s = new_serial(vm, COM1, 4, -1);

	out8(vm, COM1 + IER, 0x05);
	out8(vm, COM1 + LCR, 0x80 | 0x03);
	cr_assert_eq(in8(vm, COM1 + DLL), 1, "reset divisor: 115200 baud");
	cr_assert_eq(in8(vm, COM1 + DLM), 0);
	out8(vm, COM1 + DLL, 0x01);
	out8(vm, COM1 + DLM, 0x02);
	cr_assert_eq(in8(vm, COM1 + DLL), 0x01);
	cr_assert_eq(in8(vm, COM1 + DLM), 0x02);
	cr_assert_eq(in8(vm, COM1 + LCR), 0x83);
	out8(vm, COM1 + LCR, 0x03);
	/* with DLAB clear the same ports are RBR/THR and IER again */
	cr_assert_eq(in8(vm, COM1 + IER), 0x05);
	out8(vm, COM1 + IER, 0x01);
	out8(vm, COM1 + LCR, 0x83);
	cr_assert_eq(in8(vm, COM1 + DLM), 0x02, "IER write did not touch DLM");
	cr_assert_eq(in8(vm, COM1 + DLL), 0x01);
	/* a THR write with DLAB set goes to DLL, not to the output */
	out8(vm, COM1 + THR, 0x30);
	cr_assert_eq(in8(vm, COM1 + DLL), 0x30);
	(void)s;
	vm_destroy(vm);
}

Test(serial, scratch_and_reserved_bits)
{
	struct vm *vm = new_vm();
	struct serial *s = new_serial(vm, COM1, 4, -1);

	out8(vm, COM1 + SCR, 0x5a);
	cr_assert_eq(in8(vm, COM1 + SCR), 0x5a);
	out8(vm, COM1 + IER, 0xff);
	cr_assert_eq(in8(vm, COM1 + IER), 0x0f);
	out8(vm, COM1 + MCR, 0xe0);
	cr_assert_eq(in8(vm, COM1 + MCR), 0x00);
	(void)s;
	vm_destroy(vm);
}

Test(serial, wide_access_is_split_into_bytes)
{
	struct vm *vm = new_vm();
	struct serial *s = new_serial(vm, COM1, 4, -1);
	uint16_t w = 0x0380; /* LCR <- 0x80 (DLAB), then MCR <- 0x03 */
	uint16_t r = 0;

	cr_assert(bus_dispatch(&vm->buses[BUS_PIO], NULL, COM1 + LCR, &w, 2, true));
	cr_assert_eq(in8(vm, COM1 + LCR), 0x80);
	cr_assert_eq(in8(vm, COM1 + MCR), 0x03);
	cr_assert(bus_dispatch(&vm->buses[BUS_PIO], NULL, COM1 + LCR, &r, 2, false));
	cr_assert_eq(r, 0x0380);
	(void)s;
	vm_destroy(vm);
}

/* -------------------------------------------------------------- interrupts */

Test(serial, thre_interrupt_semantics)
{
	struct vm *vm = new_vm();
	struct serial *s = new_serial(vm, COM1, 4, -1);
	struct irq_log log = { 0 };

	serial_set_irq_hook(s, irq_hook, &log);
	out8(vm, COM1 + MCR, 0x08); /* OUT2: let the interrupt out */
	assert_line(vm, s, 4, 0);

	/* enabling ETBEI with THR empty raises THRE at once */
	out8(vm, COM1 + IER, 0x02);
	assert_line(vm, s, 4, 1);
	cr_assert_eq(in8(vm, COM1 + IIR), 0xc2);
	/* that IIR read cleared it */
	assert_line(vm, s, 4, 0);
	cr_assert_eq(in8(vm, COM1 + IIR), 0xc1);

	/* writing THR: the byte leaves at once and THRE is pending again */
	out8(vm, COM1 + THR, 'a');
	assert_line(vm, s, 4, 1);
	cr_assert_eq(in8(vm, COM1 + LSR) & 0x60, 0x60);
	/* reading LSR does not clear THRE; disabling ETBEI masks it */
	assert_line(vm, s, 4, 1);
	out8(vm, COM1 + IER, 0x00);
	assert_line(vm, s, 4, 0);
	cr_assert_eq(in8(vm, COM1 + IIR), 0xc1);
	/* re-enabling while still pending raises it again */
	out8(vm, COM1 + IER, 0x02);
	assert_line(vm, s, 4, 1);

	/* OUT2 gates the line; IIR still shows the interrupt */
	out8(vm, COM1 + MCR, 0x00);
	assert_line(vm, s, 4, 0);
	out8(vm, COM1 + MCR, 0x08);
	assert_line(vm, s, 4, 1);
	cr_assert_eq(in8(vm, COM1 + IIR), 0xc2);
	assert_line(vm, s, 4, 0);

	/* every change seen once, in order */
	int expect[] = { 1, 0, 1, 0, 1, 0, 1, 0 };
	cr_assert_eq(log.n, ARRAY_SIZE(expect));
	for (unsigned i = 0; i < log.n; i++)
		cr_assert_eq(log.levels[i], expect[i], "change %u", i);
	vm_destroy(vm);
}

/*
 * All four sources pending at once; clearing them one by one walks IIR down
 * the priority order: line status, RX data, THR empty, modem status.
 */
Test(serial, iir_priorities)
{
	struct vm *vm = new_vm();
	struct serial *s = new_serial(vm, COM1, 4, -1);

	out8(vm, COM1 + FCR, 0x01); /* FIFO on, trigger 1 */
	out8(vm, COM1 + MCR, 0x10); /* loopback */
	cr_assert_eq(in8(vm, COM1 + MSR) & 0xf0, 0x00);
	for (unsigned i = 0; i < 17; i++)
		out8(vm, COM1 + THR, (uint8_t)('A' + i)); /* the 17th overruns */
	out8(vm, COM1 + MCR, 0x12); /* RTS -> CTS changes: DCTS */
	out8(vm, COM1 + IER, 0x0f);

	cr_assert_eq(in8(vm, COM1 + IIR), 0xc6, "line status first");
	cr_assert_eq(in8(vm, COM1 + LSR), 0x63, "DR OE THRE TEMT");
	cr_assert_eq(in8(vm, COM1 + LSR), 0x61, "OE cleared by the read");
	cr_assert_eq(in8(vm, COM1 + IIR), 0xc4, "then received data");
	for (unsigned i = 0; i < 16; i++)
		cr_assert_eq(in8(vm, COM1 + RBR), 'A' + i);
	cr_assert_eq(in8(vm, COM1 + LSR), 0x60);
	cr_assert_eq(in8(vm, COM1 + IIR), 0xc2, "then THR empty (cleared by this read)");
	cr_assert_eq(in8(vm, COM1 + IIR), 0xc0, "then modem status");
	cr_assert_eq(in8(vm, COM1 + MSR), 0x11, "CTS with its delta");
	cr_assert_eq(in8(vm, COM1 + MSR), 0x10, "delta cleared by the read");
	cr_assert_eq(in8(vm, COM1 + IIR), 0xc1, "nothing pending");
	assert_line(vm, s, 4, 0);
	vm_destroy(vm);
}

Test(serial, rx_interrupt_and_line_level)
{
	struct vm *vm = new_vm();
	struct serial *s = new_serial(vm, COM2, 3, -1);

	out8(vm, COM2 + IER, 0x01);
	cr_assert_eq(serial_feed(s, "x", 1), 1);
	cr_assert_eq(in8(vm, COM2 + IIR), 0xc4);
	assert_line(vm, s, 3, 0); /* OUT2 clear: gated */
	out8(vm, COM2 + MCR, 0x0b); /* DTR RTS OUT2 */
	assert_line(vm, s, 3, 1);
	cr_assert_eq(in8(vm, COM2 + LSR) & 0x01, 1);
	cr_assert_eq(in8(vm, COM2 + RBR), 'x');
	assert_line(vm, s, 3, 0);
	cr_assert_eq(in8(vm, COM2 + IIR), 0xc1);
	cr_assert_eq(in8(vm, COM2 + LSR) & 0x01, 0);
	vm_destroy(vm);
}

Test(serial, fifo_trigger_level_and_timeout)
{
	struct vm *vm = new_vm();
	struct serial *s = new_serial(vm, COM1, 4, -1);

	out8(vm, COM1 + FCR, 0xc7); /* enable, clear both, trigger 14 */
	out8(vm, COM1 + IER, 0x01);
	cr_assert_eq(serial_feed(s, "12345", 5), 5);
	cr_assert_eq(in8(vm, COM1 + IIR), 0xcc, "below the trigger: character timeout");
	cr_assert_eq(serial_feed(s, "abcdefghi", 9), 9);
	cr_assert_eq(in8(vm, COM1 + IIR), 0xc4, "at the trigger: data available");
	/* FCR RX clear empties the FIFO */
	out8(vm, COM1 + FCR, 0xc3);
	cr_assert_eq(in8(vm, COM1 + LSR) & 0x01, 0);
	cr_assert_eq(in8(vm, COM1 + IIR), 0xc1);
	/* FIFO off: IIR loses its FIFO bits */
	out8(vm, COM1 + FCR, 0x00);
	cr_assert_eq(in8(vm, COM1 + IIR), 0x01);
	vm_destroy(vm);
}

Test(serial, rx_fifo_fill_and_flow_control)
{
	struct vm *vm = new_vm();
	struct serial *s = new_serial(vm, COM1, 4, -1);
	char in[20];

	for (unsigned i = 0; i < sizeof(in); i++)
		in[i] = (char)('a' + i);
	/* FIFOs off: a single holding register */
	out8(vm, COM1 + FCR, 0x00);
	cr_assert_eq(serial_feed(s, in, sizeof(in)), 1);
	cr_assert_eq(serial_feed(s, in + 1, 1), 0);
	cr_assert_eq(in8(vm, COM1 + RBR), 'a');

	out8(vm, COM1 + FCR, 0x01);
	cr_assert_eq(serial_feed(s, in, sizeof(in)), 16, "the FIFO takes 16");
	cr_assert_eq(serial_feed(s, in, sizeof(in)), 0);
	cr_assert_eq(in8(vm, COM1 + LSR), 0x61, "flow control: no overrun");
	for (unsigned i = 0; i < 16; i++)
		cr_assert_eq(in8(vm, COM1 + RBR), 'a' + i);
	cr_assert_eq(in8(vm, COM1 + LSR), 0x60);
	cr_assert_eq(in8(vm, COM1 + RBR), 0, "empty FIFO reads 0");
	vm_destroy(vm);
}

Test(serial, overrun_without_fifo_keeps_newest)
{
	struct vm *vm = new_vm();
	struct serial *s = new_serial(vm, COM1, 4, -1);

	out8(vm, COM1 + FCR, 0x00);
	out8(vm, COM1 + MCR, 0x10);
	out8(vm, COM1 + THR, '1');
	out8(vm, COM1 + THR, '2');
	cr_assert_eq(in8(vm, COM1 + LSR), 0x63);
	cr_assert_eq(in8(vm, COM1 + RBR), '2', "the unread byte was overwritten");
	cr_assert_eq(in8(vm, COM1 + LSR), 0x60);
	(void)s;
	vm_destroy(vm);
}

Test(serial, loopback)
{
	char dir_tmpl[] = "/tmp/rw-serial-XXXXXX";
	char *dir = mkdtemp(dir_tmpl);
	char path[256];
	struct vm *vm = new_vm();
	struct serial *s;
	size_t len;
	int fd;

	snprintf(path, sizeof(path), "%s/out", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(serial_create_owned(vm, COM1, 4, fd, &s), 0);

	/* the modem outputs come back on the inputs */
	out8(vm, COM1 + MCR, 0x10 | 0x0f);
	cr_assert_eq(in8(vm, COM1 + MSR) & 0xf0, 0xf0);
	out8(vm, COM1 + MCR, 0x10 | 0x0a); /* RTS OUT2: Linux's loopback probe */
	cr_assert_eq(in8(vm, COM1 + MSR) & 0xf0, 0x90);
	out8(vm, COM1 + MCR, 0x10 | 0x08);
	cr_assert_eq(in8(vm, COM1 + MSR), 0x81, "CTS fell: DCTS");

	/* THR comes back on RBR, not on the output; input from the host waits */
	out8(vm, COM1 + IER, 0x01);
	out8(vm, COM1 + THR, 'L');
	cr_assert_eq(serial_feed(s, "h", 1), 0, "receiver disconnected in loopback");
	cr_assert_eq(in8(vm, COM1 + IIR), 0xc4);
	assert_line(vm, s, 4, 0); /* OUT2 pin forced inactive in loopback */
	cr_assert_eq(in8(vm, COM1 + RBR), 'L');

	out8(vm, COM1 + MCR, 0x08);
	cr_assert_eq(in8(vm, COM1 + MSR) & 0xf0, 0xb0, "the far end again");
	cr_assert_eq(serial_feed(s, "h", 1), 1);
	assert_line(vm, s, 4, 1);
	cr_assert_eq(in8(vm, COM1 + RBR), 'h');
	cr_assert_eq(serial_flush(s), 0);
	rw_test_slurp(path, &len);
	cr_assert_eq(len, 0, "loopback bytes never reached the output");
	vm_destroy(vm);
	unlink(path);
	rmdir(dir);
}

Test(serial, modem_status_interrupt)
{
	struct vm *vm = new_vm();
	struct serial *s = new_serial(vm, COM1, 4, -1);

	out8(vm, COM1 + IER, 0x08);
	out8(vm, COM1 + MCR, 0x18); /* loopback + OUT2: DCD stays, CTS/DSR fall */
	cr_assert_eq(in8(vm, COM1 + IIR), 0xc0);
	cr_assert_eq(in8(vm, COM1 + MSR), 0x80 | 0x03);
	cr_assert_eq(in8(vm, COM1 + IIR), 0xc1);
	(void)s;
	vm_destroy(vm);
}

Test(serial, reset_op)
{
	struct vm *vm = new_vm();
	struct serial *s = new_serial(vm, COM1, 4, -1);
	struct device *dev = serial_device(s);

	out8(vm, COM1 + MCR, 0x08);
	out8(vm, COM1 + IER, 0x03);
	out8(vm, COM1 + SCR, 0x77);
	out8(vm, COM1 + LCR, 0x1f);
	cr_assert_eq(serial_feed(s, "abc", 3), 3);
	assert_line(vm, s, 4, 1);
	cr_assert_eq(dev->type->ops->reset(dev), 0);
	assert_line(vm, s, 4, 0);
	cr_assert_eq(in8(vm, COM1 + IER), 0);
	cr_assert_eq(in8(vm, COM1 + SCR), 0);
	cr_assert_eq(in8(vm, COM1 + LSR), 0x60);
	cr_assert_eq(in8(vm, COM1 + LCR), 0x03);
	cr_assert_eq(in8(vm, COM1 + IIR), 0xc1);
	vm_destroy(vm);
}

/* ---------------------------------------------------------------- output */

Test(serial, transmit_to_file_exact_bytes)
{
	char dir_tmpl[] = "/tmp/rw-serial-XXXXXX";
	char *dir = mkdtemp(dir_tmpl);
	char path[256];
	struct vm *vm = new_vm();
	struct serial *s;
	uint8_t all[256];
	const char *got;
	size_t len;
	int fd;

	snprintf(path, sizeof(path), "%s/out", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(serial_create_owned(vm, COM1, 4, fd, &s), 0);

	for (const char *p = "hello\n"; *p; p++)
		out8(vm, COM1 + THR, (uint8_t)*p);
	got = rw_test_slurp(path, &len);
	cr_assert_str_eq(got, "hello\n", "a full line is written at once");
	for (const char *p = "partial"; *p; p++)
		out8(vm, COM1 + THR, (uint8_t)*p);
	/* the partial line goes out when the flush timer fires on the event thread */
	cr_assert_geq(run_events(vm, 1000), 1);
	got = rw_test_slurp(path, &len);
	cr_assert_str_eq(got, "hello\npartial");

	/* every byte value, unchanged (no CR insertion, NUL kept) */
	for (unsigned i = 0; i < 256; i++) {
		all[i] = (uint8_t)i;
		out8(vm, COM1 + THR, all[i]);
	}
	/* destroy flushes the rest and closes the owned fd */
	vm_destroy(vm);
	got = rw_test_slurp(path, &len);
	cr_assert_eq(len, 13 + 256);
	cr_assert_eq(memcmp(got + 13, all, 256), 0);
	unlink(path);
	rmdir(dir);
}

Test(serial, borrowed_fd_not_closed)
{
	int p[2];
	struct vm *vm = new_vm();
	struct serial *s;
	char buf[8];

	cr_assert_eq(pipe(p), 0);
	s = new_serial(vm, COM1, 4, p[1]);
	out8(vm, COM1 + THR, 'z');
	cr_assert_eq(serial_flush(s), 0);
	vm_destroy(vm);
	cr_assert_eq(write(p[1], "y", 1), 1, "the borrowed fd is still open");
	cr_assert_eq(read(p[0], buf, sizeof(buf)), 2);
	cr_assert_eq(memcmp(buf, "zy", 2), 0);
	close(p[0]);
	close(p[1]);
}

Test(serial, write_error_reported_once)
{
	int p[2];
	struct vm *vm = new_vm();
	struct serial *s;

	signal(SIGPIPE, SIG_IGN);
	cr_assert_eq(pipe(p), 0);
	close(p[0]);
	s = new_serial(vm, COM1, 4, p[1]);
	out8(vm, COM1 + THR, '\n');
	cr_assert_eq(serial_flush(s), -EPIPE);
	out8(vm, COM1 + THR, '\n');
	cr_assert_eq(serial_flush(s), -EPIPE, "sticky, no crash");
	vm_destroy(vm);
	close(p[1]);
}

/* --------------------------------------------------------------- records */

/* Put a serial in a busy state through the bus and the host side. */
static void drive_state(struct vm *vm, uint16_t base, struct serial *s, const char *input)
{
	out8(vm, base + LCR, 0x83);
	out8(vm, base + DLL, 0x01);
	out8(vm, base + DLM, 0x00);
	out8(vm, base + LCR, 0x03);
	out8(vm, base + FCR, 0x87); /* FIFO, trigger 8 */
	out8(vm, base + MCR, 0x0b);
	out8(vm, base + IER, 0x0f);
	out8(vm, base + SCR, (uint8_t)base);
	cr_assert_eq(serial_feed(s, input, strlen(input)), (int)strlen(input));
}

/* Every register as the guest sees it, without side effects on state. */
static void assert_same_registers(struct vm *va, uint16_t a, struct vm *vb, uint16_t b)
{
	static const unsigned regs[] = { IER, LCR, MCR, SCR, LSR, MSR };

	for (unsigned i = 0; i < ARRAY_SIZE(regs); i++)
		cr_assert_eq(in8(va, a + regs[i]), in8(vb, b + regs[i]), "register %u", regs[i]);
}

Test(serial, save_load_save_equal_bytes)
{
	struct vm *va = new_vm(), *vb = new_vm();
	struct serial *a = new_serial(va, COM1, 4, -1), *b = new_serial(vb, COM1, 4, -1);
	uint8_t *rec;
	size_t len;
	const char *field;

	drive_state(va, COM1, a, "abcdefghij");
	in8(va, COM1 + RBR); /* consume one */
	out8(va, COM1 + MCR, 0x1b); /* loopback: deltas latch */
	out8(va, COM1 + THR, '!');
	len = save(a, &rec);

	cr_assert_eq(load(b, rec, len, &field), 0);
	assert_same_record(a, b);
	assert_line(vb, b, 4, serial_irq_level(a));
	/* the guest sees the same machine: IIR, then the FIFO contents */
	cr_assert_eq(in8(va, COM1 + IIR), in8(vb, COM1 + IIR));
	assert_same_registers(va, COM1, vb, COM1);
	for (unsigned i = 0; i < 10; i++)
		cr_assert_eq(in8(va, COM1 + RBR), in8(vb, COM1 + RBR), "FIFO byte %u", i);
	assert_same_record(a, b);
	free(rec);
	vm_destroy(va);
	vm_destroy(vb);
}

Test(serial, two_instances_restore_their_own_state)
{
	struct vm *va = new_vm(), *vb = new_vm();
	struct serial *a1 = new_serial(va, COM1, 4, -1), *a2 = new_serial(va, COM2, 3, -1);
	struct serial *b1 = new_serial(vb, COM1, 4, -1), *b2 = new_serial(vb, COM2, 3, -1);
	uint8_t *r1, *r2;
	size_t l1, l2;
	const char *field;
	char key1[DEV_KEY_MAX], key2[DEV_KEY_MAX];

	device_record_key(serial_device(a1), key1, sizeof(key1));
	device_record_key(serial_device(a2), key2, sizeof(key2));
	cr_assert_str_eq(key1, "dev/serial/serial@0x3f8");
	cr_assert_str_eq(key2, "dev/serial/serial@0x2f8");

	drive_state(va, COM1, a1, "one");
	out8(va, COM2 + SCR, 0x22);
	cr_assert_eq(serial_feed(a2, "2", 1), 1);
	out8(va, COM2 + MCR, 0x08);
	out8(va, COM2 + IER, 0x01);
	l1 = save(a1, &r1);
	l2 = save(a2, &r2);

	/* crossing them over is refused: each record is bound to its port */
	cr_assert_eq(load(b2, r1, l1, &field), RW_ECORRUPT);
	cr_assert_not_null(field);
	cr_assert_eq(load(b1, r2, l2, &field), RW_ECORRUPT);

	cr_assert_eq(load(b1, r1, l1, &field), 0);
	cr_assert_eq(load(b2, r2, l2, &field), 0);
	assert_same_record(a1, b1);
	assert_same_record(a2, b2);
	assert_line(vb, b1, 4, 1);
	assert_line(vb, b2, 3, 1);
	cr_assert_eq(in8(vb, COM1 + SCR), COM1 & 0xff);
	cr_assert_eq(in8(vb, COM2 + SCR), 0x22);
	cr_assert_eq(in8(vb, COM2 + RBR), '2');
	cr_assert_eq(in8(vb, COM1 + RBR), 'o');
	free(r1);
	free(r2);
	vm_destroy(va);
	vm_destroy(vb);
}

/* The v1 fields in record order, for crafting records by hand. */
struct v1 {
	uint16_t base;
	uint32_t irq;
	uint8_t ier, lcr, mcr, lsr, msr, scr, dll, dlm, fcr, iir, thre, count;
	uint8_t rx[32];
};

static const struct v1 v1_reset = {
	.base = COM1, .irq = 4, .lcr = 0x03, .lsr = 0x60, .msr = 0xb0, .dll = 1, .fcr = 0x01,
	.iir = 0xc1,
};

static size_t craft(const struct v1 *f, uint32_t version, uint8_t **out)
{
	struct rec_writer w;
	size_t len;

	rec_writer_init(&w, SERIAL_TYPE_NAME, version);
	rec_put_u16(&w, f->base);
	rec_put_u32(&w, f->irq);
	rec_put_u8(&w, f->ier);
	rec_put_u8(&w, f->lcr);
	rec_put_u8(&w, f->mcr);
	rec_put_u8(&w, f->lsr);
	rec_put_u8(&w, f->msr);
	rec_put_u8(&w, f->scr);
	rec_put_u8(&w, f->dll);
	rec_put_u8(&w, f->dlm);
	rec_put_u8(&w, f->fcr);
	rec_put_u8(&w, f->iir);
	rec_put_u8(&w, f->thre);
	rec_put_u8(&w, f->count);
	/* a count beyond the array only needs to be claimed, not backed */
	rec_put_bytes(&w, f->rx, MIN(f->count, sizeof(f->rx)));
	cr_assert_eq(rec_take(&w, out, &len), 0);
	rec_writer_free(&w);
	return len;
}

Test(serial, crafted_reset_record_matches_save)
{
	struct vm *vm = new_vm();
	struct serial *s = new_serial(vm, COM1, 4, -1);
	uint8_t *a, *b;
	size_t la, lb;

	la = save(s, &a);
	lb = craft(&v1_reset, 1, &b);
	cr_assert_eq(la, lb);
	cr_assert_eq(memcmp(a, b, la), 0, "the layout in serial.c is the layout written");
	free(a);
	free(b);
	vm_destroy(vm);
}

/* Load rec into s and expect err; s must be unchanged afterwards. */
static void expect_refused(struct serial *s, const uint8_t *rec, size_t len, int err,
			   const char *field, const char *what)
{
	uint8_t *before, *after;
	size_t lb, la;
	const char *got;

	lb = save(s, &before);
	cr_assert_eq(load(s, rec, len, &got), err, "%s: got %s", what,
		     rw_errname(load(s, rec, len, &got)));
	if (field)
		cr_assert(got && strstr(got, field), "%s: field %s, expected %s", what,
			  got ? got : "(none)", field);
	la = save(s, &after);
	cr_assert_eq(la, lb);
	cr_assert_eq(memcmp(before, after, la), 0, "%s: a refused record changed the device", what);
	free(before);
	free(after);
}

/* Records that parse but describe a UART that cannot exist. */
static const struct {
	const char *what, *field;
} bad_cases[] = {
	{ "FIFO count 17", "rx_count" },
	{ "FIFO count 200", "rx_count" },
	{ "2 bytes without FIFO", "rx_count" },
	{ "bool 2", NULL },
	{ "IER high bits", "ier" },
	{ "MCR high bits", "mcr" },
	{ "FCR self-clearing bit", "fcr" },
	{ "DR without data", "lsr" },
	{ "data without DR", "lsr" },
	{ "THRE clear", "lsr" },
	{ "parity error", "lsr" },
	{ "MSR inputs", "msr" },
	{ "MSR not following loopback", "msr" },
	{ "IIR inconsistent", "iir" },
	{ "other port", "base" },
	{ "other irq", "irq" },
};

static void bad_edit(unsigned i, struct v1 *f)
{
	switch (i) {
	case 0: f->fcr = 1; f->iir = 0xc1; f->count = 17; f->lsr = 0x61; break;
	case 1: f->fcr = 1; f->count = 200; break;
	case 2: f->fcr = 0; f->iir = 0x01; f->count = 2; f->lsr = 0x61; break;
	case 3: f->thre = 2; break;
	case 4: f->ier = 0x10; break;
	case 5: f->mcr = 0x20; break;
	case 6: f->fcr = 0x03; break;
	case 7: f->lsr = 0x61; break;
	case 8: f->count = 1; break;
	case 9: f->lsr = 0x40; break;
	case 10: f->lsr = 0x64; break;
	case 11: f->msr = 0x30; break;
	case 12: f->mcr = 0x10; break;
	case 13: f->ier = 0x02; f->thre = 1; break;
	case 14: f->base = COM2; break;
	case 15: f->irq = 3; break;
	}
}

Test(serial, corrupt_records_refused_cleanly)
{
	struct vm *vm = new_vm();
	struct serial *s = new_serial(vm, COM1, 4, -1);
	struct v1 f;
	uint8_t *rec, *copy;
	size_t len;

	out8(vm, COM1 + SCR, 0x99); /* a state to compare against */

	/* truncated anywhere: refused by the header check */
	f = v1_reset;
	f.fcr = 0x01;
	f.count = 3;
	f.lsr = 0x61;
	f.ier = 0x01;
	f.iir = 0xc4;
	len = craft(&f, 1, &rec);
	for (size_t cut = 0; cut < len; cut++) {
		copy = malloc(cut ? cut : 1);
		memcpy(copy, rec, cut);
		expect_refused(s, copy, cut, RW_ECORRUPT, NULL, "truncated");
		free(copy);
	}
	/* the same record whole is fine */
	{
		const char *field;
		struct vm *v2 = new_vm();
		struct serial *t = new_serial(v2, COM1, 4, -1);

		cr_assert_eq(load(t, rec, len, &field), 0, "field %s", field ? field : "");
		vm_destroy(v2);
	}

	/* payload cut short with a valid header: every cut refused by validate */
	for (size_t cut = 0; cut < len - REC_HEADER_SIZE; cut++) {
		struct rec_writer w;
		uint8_t *short_rec;
		size_t slen;

		rec_writer_init(&w, SERIAL_TYPE_NAME, 1);
		rec_put_bytes(&w, rec + REC_HEADER_SIZE, cut);
		cr_assert_eq(rec_take(&w, &short_rec, &slen), 0);
		rec_writer_free(&w);
		expect_refused(s, short_rec, slen, RW_ECORRUPT, NULL, "short payload");
		free(short_rec);
	}

	/* bad checksum */
	copy = malloc(len);
	memcpy(copy, rec, len);
	copy[len - 1] ^= 0x40;
	expect_refused(s, copy, len, RW_ECHECKSUM, NULL, "checksum");
	free(copy);
	free(rec);

	/* wrong version, through the header and straight to validate */
	len = craft(&v1_reset, 2, &rec);
	expect_refused(s, rec, len, RW_EVERSION, NULL, "version 2");
	{
		struct rec_reader r;
		struct device *dev = serial_device(s);

		cr_assert_eq(rec_open(&r, rec, len, SERIAL_TYPE_NAME, 0, 9), 0);
		cr_assert_eq(dev->type->ops->validate(dev, &r, 2), RW_EVERSION);
	}
	free(rec);

	/* a record of another kind */
	{
		struct rec_writer w;

		rec_writer_init(&w, "virtio-blk", 1);
		rec_put_u32(&w, 0);
		cr_assert_eq(rec_take(&w, &rec, &len), 0);
		rec_writer_free(&w);
		expect_refused(s, rec, len, RW_ECORRUPT, NULL, "kind");
		free(rec);
	}

	/* semantically invalid values, each named */
	for (unsigned i = 0; i < ARRAY_SIZE(bad_cases); i++) {
		f = v1_reset;
		bad_edit(i, &f);
		len = craft(&f, 1, &rec);
		expect_refused(s, rec, len, RW_ECORRUPT, bad_cases[i].field, bad_cases[i].what);
		free(rec);
	}
	cr_assert_eq(in8(vm, COM1 + SCR), 0x99);
	vm_destroy(vm);
}

Test(serial, tagged_extension_skipped_critical_refused)
{
	struct vm *vm = new_vm();
	struct serial *s = new_serial(vm, COM1, 4, -1);
	struct v1 f = v1_reset;
	struct rec_writer w;
	uint8_t *base, *rec;
	size_t blen, len;
	const char *field;

	f.scr = 0x42;
	blen = craft(&f, 1, &base);

	/* a newer writer's optional field is skipped */
	rec_writer_init(&w, SERIAL_TYPE_NAME, 1);
	rec_put_bytes(&w, base + REC_HEADER_SIZE, blen - REC_HEADER_SIZE);
	rec_put_tagged(&w, 0x0001, "future", 6);
	cr_assert_eq(rec_take(&w, &rec, &len), 0);
	rec_writer_free(&w);
	cr_assert_eq(load(s, rec, len, &field), 0);
	cr_assert_eq(in8(vm, COM1 + SCR), 0x42);
	free(rec);

	/* a field marked critical is not */
	rec_writer_init(&w, SERIAL_TYPE_NAME, 1);
	rec_put_bytes(&w, base + REC_HEADER_SIZE, blen - REC_HEADER_SIZE);
	rec_put_tagged(&w, REC_TAG_CRITICAL | 1, "must", 4);
	cr_assert_eq(rec_take(&w, &rec, &len), 0);
	rec_writer_free(&w);
	expect_refused(s, rec, len, RW_EVERSION, NULL, "critical tag");
	free(rec);
	free(base);
	vm_destroy(vm);
}

Test(serial, quiesce_holds_input_resume_releases)
{
	struct vm *vm = new_vm();
	struct serial *s = new_serial(vm, COM1, 4, -1);
	struct device *dev = serial_device(s);

	cr_assert_eq(dev->type->ops->quiesce(dev), 0);
	cr_assert_eq(serial_feed(s, "q", 1), 0, "no input while quiesced");
	cr_assert_eq(dev->type->ops->resume(dev), 0);
	cr_assert_eq(serial_feed(s, "q", 1), 1);
	vm_destroy(vm);
}

/* ---------------------------------------------------------------- console */

struct quit_flag {
	int calls;
};

static void on_quit(void *opaque)
{
	((struct quit_flag *)opaque)->calls++;
}

/* Read everything the guest can see now, as an interrupt handler would. */
static size_t guest_drain(struct vm *vm, uint16_t base, char *buf, size_t cap)
{
	size_t n = 0;

	while (n < cap && (in8(vm, base + LSR) & 0x01))
		buf[n++] = (char)in8(vm, base + RBR);
	return n;
}

Test(console, pipe_input_reaches_guest)
{
	struct vm *vm = new_vm();
	struct serial *s = new_serial(vm, COM1, 4, -1);
	struct console *c;
	struct quit_flag q = { 0 };
	char buf[64];
	int p[2];

	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(console_attach(vm, s, p[0], on_quit, &q, &c), 0);
	out8(vm, COM1 + FCR, 0x01);
	out8(vm, COM1 + MCR, 0x08);
	out8(vm, COM1 + IER, 0x01);
	assert_event_set_idle(vm);
	cr_assert_eq(write(p[1], "hi\x01x", 4), 4);
	cr_assert_geq(run_events(vm, 1000), 1);
	assert_line(vm, s, 4, 1);
	cr_assert_eq(guest_drain(vm, COM1, buf, sizeof(buf)), 4);
	cr_assert_eq(memcmp(buf, "hi\x01x", 4), 0, "not a terminal: no escape processing");
	assert_line(vm, s, 4, 0);
	cr_assert_eq(q.calls, 0);
	vm_destroy(vm);
	close(p[0]);
	close(p[1]);
}

/* More input than the FIFO holds: nothing lost, nothing spins. */
Test(console, backlog_waits_for_guest_without_spinning)
{
	struct vm *vm = new_vm();
	struct serial *s = new_serial(vm, COM1, 4, -1);
	struct console *c;
	static char in[20000], got[20000];
	size_t n = 0;
	int p[2];

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (char)(i * 7 + i / 251);
	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(fcntl(p[1], F_SETPIPE_SZ, 65536), 65536);
	cr_assert_eq(console_attach(vm, s, p[0], NULL, NULL, &c), 0);
	out8(vm, COM1 + FCR, 0x01);
	cr_assert_eq(write(p[1], in, sizeof(in)), (ssize_t)sizeof(in));
	close(p[1]);

	while (n < sizeof(in)) {
		run_events(vm, 0);
		/* the FIFO is full and the pipe still has data, yet nothing is ready */
		if (n + CONSOLE_PENDING < sizeof(in))
			assert_event_set_idle(vm);
		size_t k = guest_drain(vm, COM1, got + n, sizeof(got) - n);
		cr_assert_gt(k, 0, "stalled at %zu", n);
		n += k;
	}
	cr_assert_eq(memcmp(in, got, sizeof(in)), 0);
	/* EOF: reading stops for good, the event set goes quiet */
	run_events(vm, 100);
	cr_assert(console_input_ended(c));
	assert_event_set_idle(vm);
	vm_destroy(vm);
	close(p[0]);
}

struct event_thread {
	struct vm *vm;
	int stop; /* atomic */
};

static void *event_thread_fn(void *arg)
{
	struct event_thread *et = arg;
	struct epoll_event evs[8];

	while (!__atomic_load_n(&et->stop, __ATOMIC_ACQUIRE)) {
		int n = epoll_wait(et->vm->epfd, evs, ARRAY_SIZE(evs), 10);

		for (int i = 0; i < n; i++) {
			struct vm_event *e = &et->vm->events[evs[i].data.u64];

			e->fn(e->opaque, e->fd, evs[i].events);
		}
	}
	return NULL;
}

struct feeder {
	int fd;
	const char *buf;
	size_t len;
};

static void *feeder_fn(void *arg)
{
	struct feeder *f = arg;

	for (size_t off = 0; off < f->len;) {
		ssize_t n = write(f->fd, f->buf + off, MIN(f->len - off, (size_t)777));

		if (n <= 0)
			break;
		off += (size_t)n;
	}
	close(f->fd);
	return NULL;
}

/*
 * The threads of a running VM at once: a writer filling the pipe, the event
 * thread feeding the UART, a "vCPU" draining it and toggling registers.
 * Everything arrives in order; nothing deadlocks.
 */
Test(console, concurrent_event_thread_and_vcpu, .timeout = 120)
{
	struct vm *vm = new_vm();
	struct serial *s = new_serial(vm, COM1, 4, -1);
	struct console *c;
	static char in[300000], got[300000];
	struct event_thread et = { .vm = vm };
	struct feeder f;
	pthread_t ev, wr;
	size_t n = 0;
	int p[2];

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (char)(i * 13 + i / 4099);
	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(console_attach(vm, s, p[0], NULL, NULL, &c), 0);
	out8(vm, COM1 + MCR, 0x0b);
	out8(vm, COM1 + IER, 0x0f);
	f = (struct feeder){ p[1], in, sizeof(in) };
	cr_assert_eq(pthread_create(&ev, NULL, event_thread_fn, &et), 0);
	cr_assert_eq(pthread_create(&wr, NULL, feeder_fn, &f), 0);
	for (unsigned spins = 0; n < sizeof(in); spins++) {
		size_t k = guest_drain(vm, COM1, got + n, sizeof(got) - n);

		n += k;
		in8(vm, COM1 + IIR);
		out8(vm, COM1 + SCR, (uint8_t)spins);
		if (!k)
			usleep(100);
		cr_assert_lt(spins, 10000000u, "stalled at %zu", n);
	}
	__atomic_store_n(&et.stop, 1, __ATOMIC_RELEASE);
	pthread_join(ev, NULL);
	pthread_join(wr, NULL);
	cr_assert_eq(memcmp(in, got, sizeof(in)), 0);
	vm_destroy(vm);
	close(p[0]);
}

Test(console, regular_file_and_dev_null)
{
	char dir_tmpl[] = "/tmp/rw-console-XXXXXX";
	char *dir = mkdtemp(dir_tmpl);
	char path[256];
	static char in[10000], got[10000];
	struct vm *vm = new_vm();
	struct serial *s1 = new_serial(vm, COM1, 4, -1), *s2 = new_serial(vm, COM2, 3, -1);
	struct console *c1, *c2, *c3;
	size_t n = 0;
	int fd, null_fd;

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (char)(i ^ (i >> 8));
	snprintf(path, sizeof(path), "%s/in", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_eq(write(fd, in, sizeof(in)), (ssize_t)sizeof(in));
	cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
	null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	cr_assert_eq(console_attach(vm, s1, fd, NULL, NULL, &c1), 0);
	cr_assert_eq(console_attach(vm, s2, null_fd, NULL, NULL, &c2), 0);
	cr_assert_eq(console_attach(vm, s2, null_fd, NULL, NULL, &c3), -EEXIST);
	cr_assert_null(c3);
	while (n < sizeof(in)) {
		run_events(vm, 0);
		size_t k = guest_drain(vm, COM1, got + n, sizeof(got) - n);
		cr_assert_gt(k, 0, "stalled at %zu", n);
		n += k;
	}
	cr_assert_eq(memcmp(in, got, sizeof(in)), 0);
	run_events(vm, 0);
	cr_assert(console_input_ended(c1));
	cr_assert(console_input_ended(c2));
	assert_event_set_idle(vm);
	vm_destroy(vm);
	close(fd);
	close(null_fd);
	unlink(path);
	rmdir(dir);
}

Test(console, escape_sequences)
{
	struct vm *vm = new_vm();
	struct serial *s = new_serial(vm, COM1, 4, -1);
	struct console *c;
	struct quit_flag q = { 0 };
	char buf[64];
	int p[2];

	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(console_attach_flags(vm, s, p[0], CONSOLE_ESCAPE, on_quit, &q, &c), 0);
	out8(vm, COM1 + FCR, 0x01);
	/* ^A^A is one ^A; ^A c passes both; a ^A split across reads still works */
	cr_assert_eq(write(p[1], "a\x01\x01" "b\x01" "c\x01", 7), 7);
	run_events(vm, 1000);
	cr_assert_eq(guest_drain(vm, COM1, buf, sizeof(buf)), 5);
	cr_assert_eq(memcmp(buf, "a\x01" "b\x01" "c", 5), 0);
	cr_assert_eq(write(p[1], "d", 1), 1);
	run_events(vm, 1000);
	cr_assert_eq(guest_drain(vm, COM1, buf, sizeof(buf)), 2);
	cr_assert_eq(memcmp(buf, "\x01" "d", 2), 0);
	cr_assert_eq(q.calls, 0);

	/* ^A x quits: what came before is delivered, what follows is not */
	cr_assert_eq(write(p[1], "e\x01xfgh", 6), 6);
	run_events(vm, 1000);
	cr_assert_eq(q.calls, 1);
	cr_assert(console_input_ended(c));
	cr_assert_eq(guest_drain(vm, COM1, buf, sizeof(buf)), 1);
	cr_assert_eq(buf[0], 'e');
	cr_assert_eq(write(p[1], "i", 1), 1);
	run_events(vm, 100);
	assert_event_set_idle(vm);
	cr_assert_eq(in8(vm, COM1 + LSR) & 0x01, 0);
	vm_destroy(vm);
	close(p[0]);
	close(p[1]);
}

Test(console, detach_stops_input)
{
	struct vm *vm = new_vm();
	struct serial *s = new_serial(vm, COM1, 4, -1);
	struct console *c;
	int p[2];

	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(console_attach(vm, s, p[0], NULL, NULL, &c), 0);
	console_detach(c);
	console_detach(c);
	console_detach(NULL);
	cr_assert_eq(write(p[1], "x", 1), 1);
	cr_assert_eq(run_events(vm, 50), 0);
	cr_assert_eq(in8(vm, COM1 + LSR) & 0x01, 0);
	cr_assert(console_input_ended(c));
	vm_destroy(vm);
	close(p[0]);
	close(p[1]);
}

/* A pseudo-terminal pair; the slave plays stdin. */
static void open_pty(int *master, int *slave)
{
	*master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	cr_assert_geq(*master, 0);
	cr_assert_eq(grantpt(*master), 0);
	cr_assert_eq(unlockpt(*master), 0);
	*slave = open(ptsname(*master), O_RDWR | O_NOCTTY | O_CLOEXEC);
	cr_assert_geq(*slave, 0);
}

static void assert_raw(int fd)
{
	struct termios t;

	cr_assert_eq(tcgetattr(fd, &t), 0);
	cr_assert_eq(t.c_lflag & (ECHO | ICANON | ISIG | IEXTEN), 0);
	cr_assert_eq(t.c_iflag & (IXON | INLCR | IGNCR | ISTRIP), 0);
	cr_assert(t.c_iflag & ICRNL, "Enter arrives as \\n");
	cr_assert_eq(t.c_oflag & (OPOST | ONLCR), (tcflag_t)(OPOST | ONLCR), "output processing kept");
	cr_assert_eq(t.c_cc[VMIN], 1);
}

static void assert_termios_eq(int fd, const struct termios *want)
{
	struct termios t;

	cr_assert_eq(tcgetattr(fd, &t), 0);
	cr_assert_eq(t.c_lflag, want->c_lflag);
	cr_assert_eq(t.c_iflag, want->c_iflag);
	cr_assert_eq(t.c_oflag, want->c_oflag);
	cr_assert_eq(t.c_cflag, want->c_cflag);
}

Test(console, terminal_raw_mode_and_restore)
{
	struct vm *vm = new_vm();
	struct serial *s1 = new_serial(vm, COM1, 4, -1), *s2 = new_serial(vm, COM2, 3, -1);
	struct console *c, *c2;
	struct quit_flag q = { 0 };
	struct termios before;
	char buf[8];
	int m, sl;

	open_pty(&m, &sl);
	cr_assert_eq(tcgetattr(sl, &before), 0);
	cr_assert(before.c_lflag & ICANON);
	cr_assert_eq(console_attach(vm, s1, sl, on_quit, &q, &c), 0);
	assert_raw(sl);
	/* a second console cannot take the terminal too, but still attaches */
	cr_assert_eq(console_attach(vm, s2, sl, NULL, NULL, &c2), 0);
	console_detach(c2);
	assert_raw(sl);

	/* keys arrive at once, unprocessed but for Enter; ^A x quits (a terminal has escapes) */
	out8(vm, COM1 + FCR, 0x01);
	cr_assert_eq(write(m, "\r\x03", 2), 2);
	for (int i = 0; i < 50 && !(in8(vm, COM1 + LSR) & 1); i++)
		run_events(vm, 20);
	run_events(vm, 20);
	cr_assert_eq(guest_drain(vm, COM1, buf, sizeof(buf)), 2);
	cr_assert_eq(memcmp(buf, "\n\x03", 2), 0, "Enter arrives as \\n, ^C as a byte");
	cr_assert_eq(write(m, "\x01x", 2), 2);
	for (int i = 0; i < 50 && !q.calls; i++)
		run_events(vm, 20);
	cr_assert_eq(q.calls, 1);

	console_detach(c);
	assert_termios_eq(sl, &before);
	vm_destroy(vm);
	close(sl);
	close(m);
}

Test(console, terminal_restored_by_vm_destroy)
{
	struct vm *vm = new_vm();
	struct serial *s = new_serial(vm, COM1, 4, -1);
	struct console *c;
	struct termios before;
	int m, sl;

	open_pty(&m, &sl);
	cr_assert_eq(tcgetattr(sl, &before), 0);
	cr_assert_eq(console_attach(vm, s, sl, NULL, NULL, &c), 0);
	assert_raw(sl);
	vm_destroy(vm);
	assert_termios_eq(sl, &before);
	close(sl);
	close(m);
}

/*
 * In a child: attach a console to the pty slave, then end as `how` says.
 * The parent checks the terminal afterwards.
 */
enum child_end { END_SIGNAL, END_EXIT };

static void child_run(int slave, int ready_fd, enum child_end how)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE };
	struct vm_config cfg;
	struct vm *vm;
	struct serial *s;
	struct console *c;

	for (unsigned i = 0; i < ARRAY_SIZE(sigs); i++)
		signal(sigs[i], SIG_DFL);
	config_init(&cfg);
	cfg.mem_size = 16 * MiB;
	if (vm_create(&cfg, &vm) || serial_create(vm, COM1, 4, -1, &s) ||
	    console_attach(vm, s, slave, NULL, NULL, &c))
		_exit(100);
	if (write(ready_fd, "r", 1) != 1)
		_exit(101);
	if (how == END_EXIT)
		exit(0); /* no detach, no destroy: atexit restores */
	for (;;)
		pause();
}

static void check_child_end(enum child_end how, int sig)
{
	struct termios before;
	int m, sl, rp[2], status;
	char c;
	pid_t pid;

	rw_test_require_kvm();
	open_pty(&m, &sl);
	cr_assert_eq(tcgetattr(sl, &before), 0);
	cr_assert_eq(pipe(rp), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(rp[0]);
		child_run(sl, rp[1], how);
	}
	close(rp[1]);
	cr_assert_eq(read(rp[0], &c, 1), 1, "child ready");
	if (how == END_SIGNAL) {
		assert_raw(sl);
		cr_assert_eq(kill(pid, sig), 0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	if (how == END_SIGNAL)
		cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == sig,
			  "child died of its signal (status 0x%x)", status);
	else
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status 0x%x", status);
	assert_termios_eq(sl, &before);
	close(rp[0]);
	close(sl);
	close(m);
}

Test(console, terminal_restored_on_sigterm)
{
	check_child_end(END_SIGNAL, SIGTERM);
}

Test(console, terminal_restored_on_sighup)
{
	check_child_end(END_SIGNAL, SIGHUP);
}

Test(console, terminal_restored_on_sigint)
{
	check_child_end(END_SIGNAL, SIGINT);
}

Test(console, terminal_restored_on_sigpipe)
{
	check_child_end(END_SIGNAL, SIGPIPE);
}

Test(console, terminal_restored_at_exit)
{
	check_child_end(END_EXIT, 0);
}
