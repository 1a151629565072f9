/*
 * fuzz_common.h - what the libFuzzer harnesses share.
 *
 * A harness feeds its input to a decoder and checks the decoder's contract
 * (error codes, messages, outputs on failure, round trips on success). Bad
 * input must come back as an error: a harness never stops on it. Only a
 * broken contract stops it, with FUZZ_CHECK(), which prints what was broken
 * and aborts so that libFuzzer keeps the input as a crash.
 *
 * Most formats carry a checksum, which random mutations almost never get
 * right. So each harness runs its decoder twice: on the input as it is, and
 * on a copy whose checksums (and lengths) are made right again
 * (fuzz_fix_record() and the like), which lets mutations reach the parsing
 * and the checks behind the checksum.
 */
#ifndef RW_FUZZ_COMMON_H
#define RW_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* A broken contract: report it and stop (libFuzzer saves the input). */
#define FUZZ_CHECK(cond, ...)                                                          \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "%s:%d: contract broken: %s: ", __FILE__,      \
				__LINE__, #cond);                                      \
			fprintf(stderr, __VA_ARGS__);                                  \
			fputc('\n', stderr);                                           \
			abort();                                                       \
		}                                                                      \
	} while (0)

/* The harnesses' entry points (libFuzzer's). */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * A copy of a record (base/record.h) whose length field and checksum are
 * made right for its size, in *out (free() it); the magic is left as it
 * is. Returns true if the copy differs from the input, false (and *out
 * NULL) if the input is already right or too short to be a record.
 */
bool fuzz_fix_record(const uint8_t *in, size_t n, uint8_t **out);

/*
 * What a record harness does with its input: one(data, size), then one()
 * again on fuzz_fix_record()'s copy if that differs from the input.
 */
void fuzz_run_fixed(void (*one)(const uint8_t *data, size_t size), const uint8_t *data,
		    size_t size);

/* A heap copy of n bytes (so that ASan sees reads past them), never NULL. */
uint8_t *fuzz_dup(const void *p, size_t n);

/* True if the n bytes at p are all zero. */
bool fuzz_is_zero(const void *p, size_t n);

/*
 * Is why a refusal of the record named key: "<key>: <field>: <reason>"
 * (state.h)? Empty is never right.
 */
bool fuzz_why_names(const char *why, const char *key);

struct vm;

/* The XSAVE area of fuzz_vm_init()'s VMs: legacy region, header, AVX. */
#define FUZZ_XSAVE_SIZE 832u

/*
 * A VM as the record decoders and device validators see it, made by hand
 * without KVM (no fds, no vCPU threads): ncpus vCPUs; mem bytes of RAM laid
 * out in the board's slots (below 3 GiB, then from 4 GiB), backed by an
 * anonymous mapping if map is true (else no host memory: only addresses
 * are checked); an XSAVE size of FUZZ_XSAVE_SIZE and the MSR list of a
 * typical x86-64 KVM host, TSC first and TSC_DEADLINE last.
 */
void fuzz_vm_init(struct vm *vm, unsigned ncpus, uint64_t mem, bool map);

/*
 * fuzz_vm_init() with 64 MiB of mapped RAM, then the board's devices as a
 * restore builds them (board_build): the console UART on /dev/null and one
 * virtio-blk, id "data" (sync engine), of a 64 KiB disk whose bytes are the
 * same on every run. Exits if it cannot. (fuzz_board.c)
 */
void fuzz_board_init(struct vm *vm);

/*
 * A scratch directory for a harness: $REWIND_FUZZ_TMP if set (the ctest
 * wrapper makes one in a tmpfs), else a new one under /dev/shm (or $TMPDIR,
 * or /tmp), removed at exit. Never NULL (exits if none can be made).
 */
const char *fuzz_tmpdir(const char *tag);

#endif
