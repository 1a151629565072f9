/*
 * board.h - the standard rewind machine: which devices sit where.
 *
 *   serial@0x3f8   16550A UART, IRQ 4, the guest console (cfg.serial_out)
 *   hypercall page at RW_GPA_HYPERCALL (created by vm_create)
 *
 * A new device type is placed here with one call.
 */
#ifndef RW_DEVICES_BOARD_H
#define RW_DEVICES_BOARD_H

#include <stddef.h>

#include "config.h"
#include "err.h"

struct vm;
struct serial;

#define BOARD_COM1_BASE 0x3f8
#define BOARD_COM1_IRQ 4

/*
 * Create the board's devices on vm from vm->cfg. Errors are logged with the
 * device and the cause (e.g. the --serial-out file cannot be created).
 */
int board_build(struct vm *vm) RW_MUST_CHECK;

/*
 * The name board_build() gives disk i of cfg: its configured id, or the
 * id of its virtio-mmio window ("virtio-blk@mmio-0xd0000000"). It names the
 * disk in checkpoints (`rewind inspect`) and in `restore --disk NAME=PATH`.
 */
void board_disk_name(const struct vm_config *cfg, unsigned i, char *buf, size_t len);

/* The console UART of a VM built by board_build(), or NULL. */
struct serial *board_serial(struct vm *vm);

#endif
