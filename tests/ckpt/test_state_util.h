/*
 * test_state_util.h - helpers shared by the state-record tests.
 */
#ifndef RW_TESTS_STATE_UTIL_H
#define RW_TESTS_STATE_UTIL_H

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "board.h"
#include "record.h"
#include "state.h"
#include "testutil.h"
#include "util.h"
#include "vcpu.h"
#include "vcpu_state.h"
#include "vm.h"

/*
 * A VM of ncpus vCPUs with the board's devices, booted into guest (no vCPU
 * running yet). console: file for the UART's output, NULL for /dev/null.
 */
static inline struct vm *st_make_vm(const char *guest, unsigned ncpus, const char *args,
				    const char *console)
{
	struct vm_config cfg;
	struct vm *vm = NULL;

	rw_test_require_kvm();
	config_init(&cfg);
	cfg.ncpus = ncpus;
	cfg.mem_size = 64 * MiB;
	cfg.serial_in = false;
	snprintf(cfg.kernel, sizeof(cfg.kernel), "%s", rw_test_guest(guest));
	snprintf(cfg.serial_out, sizeof(cfg.serial_out), "%s", console ? console : "/dev/null");
	if (args)
		snprintf(cfg.args, sizeof(cfg.args), "%s", args);
	cr_assert_eq(vm_create(&cfg, &vm), 0);
	cr_assert_eq(board_build(vm), 0);
	cr_assert_eq(vm_boot(vm), 0);
	return vm;
}

/* A zeroed heap vcpu_state (it is ~70 KiB), then filled from vCPU i. */
static inline struct vcpu_state *st_capture_vcpu(struct vm *vm, unsigned i)
{
	struct vcpu_state *st = calloc(1, sizeof(*st));

	cr_assert_not_null(st);
	cr_assert_eq(vcpu_state_save(vm->vcpus[i], st), 0);
	return st;
}

static inline struct platform_state *st_capture_platform(struct vm *vm)
{
	struct platform_state *st = calloc(1, sizeof(*st));

	cr_assert_not_null(st);
	cr_assert_eq(platform_state_save(vm, st), 0);
	return st;
}

/* Offset of the first differing byte, or -1 if equal. */
static inline long st_first_diff(const void *a, const void *b, size_t n)
{
	const uint8_t *x = a, *y = b;

	for (size_t i = 0; i < n; i++)
		if (x[i] != y[i])
			return (long)i;
	return -1;
}

/* A fresh, well-formed record of kind/version holding payload bytes. */
static inline uint8_t *st_wrap(const char *kind, uint32_t version, const void *payload, size_t n,
			       size_t *len)
{
	struct rec_writer w;
	uint8_t *buf = NULL;

	rec_writer_init(&w, kind, version);
	rec_put_bytes(&w, payload, n);
	cr_assert_eq(rec_take(&w, &buf, len), 0);
	rec_writer_free(&w);
	return buf;
}

static inline const uint8_t *st_payload(const uint8_t *rec)
{
	return rec + REC_HEADER_SIZE;
}

#endif
