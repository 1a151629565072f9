/*
 * bench.h - helpers shared by rewind-bench subcommands.
 *
 * Every result is one JSON line on stdout ({"bench":"<name>", ...}), each
 * figure printed beside the physical floor it is compared to, measured in
 * the same run, so that ratios survive noisy machines. Progress and
 * diagnostics go to stderr.
 */
#ifndef RW_BENCH_BENCH_H
#define RW_BENCH_BENCH_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* Print obj as one compact JSON line on stdout and free it. */
void bench_emit(json_t *obj);

/* Round to 3 decimals for stable, readable output. */
double bench_round(double v);

/* Median of n doubles (sorts the array). */
double bench_median(double *v, size_t n);

/* Nanoseconds per 4 KiB page copy (memcpy of npages distinct pages). */
double bench_memcpy_ns_per_page(size_t npages, unsigned reps);

/* Nanoseconds per XXH3-128 of a 4 KiB page. */
double bench_xxh3_ns_per_page(size_t npages, unsigned reps);

/*
 * Nanoseconds per raw LMDB put of a 4 KiB value (random 16-byte keys, one
 * write transaction for npages puts, committed durably), in a fresh
 * environment under dir.
 */
double bench_lmdb_put_ns(const char *dir, size_t npages);

/*
 * µs per bare KVM_RUN round trip: boot an SDK image (an MMIO load exit at
 * CPL3 for VM_ENTRY_USER, an `out` at CPL0 for VM_ENTRY_KERNEL), n times.
 * Negative on failure.
 */
#include "config.h"
double bench_exit_roundtrip_us(const char *image, enum vm_entry entry, unsigned n);

/*
 * The same loop kept open, for benches that time it in blocks between their
 * own, so that both see the same host conditions.
 */
struct bench_exit_loop;
struct bench_exit_loop *bench_exit_loop_open(const char *image, enum vm_entry entry);
double bench_exit_loop_time(struct bench_exit_loop *l, unsigned n);
void bench_exit_loop_close(struct bench_exit_loop *l);

/*
 * A memcpy of n pages kept ready for floors measured beside each sample:
 * the source rotates through at least 64 MiB, more than the caches hold,
 * so that every copy reads memory, as a copy of guest pages does.
 */
struct bench_copy_floor;
struct bench_copy_floor *bench_copy_floor_open(size_t npages);
double bench_copy_floor_us(struct bench_copy_floor *f);
void bench_copy_floor_close(struct bench_copy_floor *f);

/* Path of an SDK guest image by name ("dirtier" -> .../dirtier.elf). */
const char *bench_guest(const char *name);

/* Subcommands. */
int bench_floor_main(int argc, char **argv);
int bench_ckpt_main(int argc, char **argv);
int bench_reset_main(int argc, char **argv);
int bench_fuzz_main(int argc, char **argv);
/* Checkpoints every 500 ms of a guest writing 0, 16, 256 MiB per period. */
int bench_devices_ckpt(void);

#endif
