/*
 * hypercall.h - the guest's doorbell page (see rw/abi.h, "Hypercalls").
 *
 * The VMM core answers RW_HC_VERSION, EXIT, CRASH, HOST_WRITE and LOG
 * itself; every hypercall is first offered to vm->hooks.hypercall, so the
 * layers above (checkpoints, fuzzing) implement the rest. Unknown numbers
 * return -ENOSYS.
 */
#ifndef RW_VMM_HYPERCALL_H
#define RW_VMM_HYPERCALL_H

#include <stdint.h>

#include "err.h"

struct vm;

/* Largest RW_HC_HOST_WRITE and RW_HC_LOG the VMM honours. */
#define RW_HC_HOST_WRITE_MAX (64ULL << 20)
#define RW_HC_LOG_MAX 1024

/* Claim the doorbell page on vm's MMIO bus. */
int hypercall_init(struct vm *vm) RW_MUST_CHECK;

#endif
