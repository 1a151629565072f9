#include "board.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "rw/abi.h"
#include "serial.h"
#include "util.h"
#include "virtio_blk.h"
#include "vm.h"

/*
 * Interrupt lines (GSIs) of the virtio-mmio windows, by slot (window n sits
 * at RW_GPA_VIRTIO_BASE + n * RW_VIRTIO_WINDOW). IOAPIC-only pins 16-23
 * first: a GSI below 16 also drives KVM's 8259 PIC, which comes out of
 * reset unmasked with vector base 0 and reaches the boot vCPU through
 * LINT0 (ExtINT) until the guest masks it, so a level-triggered line
 * raised early (DEVICE_NEEDS_RESET's configuration interrupt) would arrive
 * as exception vector 5. The IOAPIC's pins reset masked. Then ISA lines,
 * skipping the PIT (0), keyboard (1), cascade (2), COM2 (3), COM1 (4), RTC
 * (8) and the FPU (13).
 */
static const uint32_t board_virtio_irqs[RW_VIRTIO_MAX] = {
	16, 17, 18, 19, 20, 21, 22, 23, 5, 6, 7, 9, 10, 11, 12, 14,
};

/* The console UART, writing to stdout or to the --serial-out file. */
static int board_console(struct vm *vm)
{
	struct serial *s;
	int fd, ret;

	if (!vm->cfg.serial_out[0]) {
		ret = serial_create(vm, BOARD_COM1_BASE, BOARD_COM1_IRQ, STDOUT_FILENO, &s);
	} else {
		fd = open(vm->cfg.serial_out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0) {
			ret = -errno;
			rw_error("cannot open --serial-out '%s': %s", vm->cfg.serial_out,
				 strerror(errno));
			return ret;
		}
		ret = serial_create_owned(vm, BOARD_COM1_BASE, BOARD_COM1_IRQ, fd, &s);
	}
	if (ret)
		rw_error("creating the console UART: %s", rw_strerror(ret));
	return ret;
}

void board_disk_name(const struct vm_config *cfg, unsigned i, char *buf, size_t len)
{
	/* the disks are the board's only virtio devices, in windows 0, 1, ... */
	if (cfg->disks[i].id[0])
		snprintf(buf, len, "%s", cfg->disks[i].id);
	else
		snprintf(buf, len, "virtio-blk@mmio-0x%llx",
			 (unsigned long long)(RW_GPA_VIRTIO_BASE + i * RW_VIRTIO_WINDOW));
}

/* One virtio-blk per --disk, in the next free virtio-mmio windows. */
static int board_disks(struct vm *vm)
{
	for (unsigned i = 0; i < vm->cfg.ndisks && i < RW_MAX_DISKS; i++) {
		const struct vm_disk_config *dc = &vm->cfg.disks[i];
		unsigned slot = vm->nr_virtio;
		struct virtio_blk *b;
		int ret;

		if (slot >= ARRAY_SIZE(board_virtio_irqs)) {
			rw_error("disk '%s': no virtio-mmio window left", dc->path);
			return -ENOSPC;
		}
		/* virtio_blk_create() logs its failures with the disk and the cause */
		ret = virtio_blk_create(vm, RW_GPA_VIRTIO_BASE + slot * RW_VIRTIO_WINDOW,
					board_virtio_irqs[slot], dc, &b);
		if (ret)
			return ret;
	}
	return 0;
}

int board_build(struct vm *vm)
{
	int ret = board_console(vm);

	if (!ret)
		ret = board_disks(vm);
	return ret;
}

struct serial *board_serial(struct vm *vm)
{
	char id[DEV_ID_MAX];
	struct device *d;

	snprintf(id, sizeof(id), "serial@0x%x", BOARD_COM1_BASE);
	d = vm_find_device(vm, SERIAL_TYPE_NAME, id);
	return d ? serial_from_device(d) : NULL;
}
