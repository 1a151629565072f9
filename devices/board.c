#include "board.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "serial.h"
#include "vm.h"

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

int board_build(struct vm *vm)
{
	return board_console(vm);
}

struct serial *board_serial(struct vm *vm)
{
	char id[DEV_ID_MAX];
	struct device *d;

	snprintf(id, sizeof(id), "serial@0x%x", BOARD_COM1_BASE);
	d = vm_find_device(vm, SERIAL_TYPE_NAME, id);
	return d ? serial_from_device(d) : NULL;
}
