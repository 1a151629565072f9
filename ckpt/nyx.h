/*
 * nyx.h - libnyx.so: the interface AFL++ loads for its Nyx mode
 * (afl-fuzz -X, -Y), served by a rewind VM through librewind.
 *
 * afl-fuzz dlopen()s libnyx.so from AFL_PATH (or its own directory) and
 * resolves the functions below by name; the "target" it is given is a share
 * directory (fuzz_share.h: rewind.json, the guest image, config.ron). Each
 * afl-fuzz process runs its own VM on its own thread.
 *
 * Two generations of the interface are served by one library:
 *
 *  - AFL++ up to 4.0x (Debian 12 ships 4.04c): the runner is made from a
 *    path,  nyx_new(sharedir, workdir, cpu_id, input_buffer_size,
 *    input_buffer_write_protection), or nyx_new_parent()/nyx_new_child()
 *    in -Y mode.
 *  - Later AFL++: a configuration object first, nyx_config_load(sharedir)
 *    and nyx_config_set_*(), then  nyx_new(config, worker_id).
 *
 * Both call the same symbol nyx_new with different arguments, so the
 * library tells them apart at run time without guessing: nyx_config_load()
 * returns objects this library allocated and records, and nyx_new() treats
 * its first argument as a configuration only if it is one of those (a
 * pointer comparison, nothing is read through it); otherwise it is a share
 * directory's path. The two signatures cannot be written as one C
 * prototype, so nyx_new is not declared here: callers use the two
 * function types below. Under the x86-64 System V ABI both pass their
 * leading arguments in the same registers, and the definition reads the
 * later ones only in the 4.0x case.
 *
 * Then, for both: per input, nyx_set_afl_input() (or write the input
 * buffer), nyx_exec(), and read the bitmap and, if wanted, the aux string.
 *   nyx_exec()   resets the VM to the guest's snapshot if the previous run
 *                needs it (lazily: the fuzzer reads the bitmap after
 *                nyx_exec() returns), hands the guest the input
 *                (rw_payload()) and runs it to its next event:
 *                  rw_done()                          -> NYX_NORMAL
 *                  a crash report or CPU exception    -> NYX_CRASH
 *                  the VM died (triple fault, ...)    -> NYX_CRASH
 *                  the guest exited instead of done   -> NYX_CRASH
 *                  the run outlasted the timeout      -> NYX_TIMEOUT
 *                  rewind failed, or the input is
 *                  longer than the input buffer       -> NYX_ERROR
 *                The aux string says what happened in one line (the crash's
 *                vector, RIP, error code and CR2, or the code the target
 *                reported; rewind's message for a dead VM; why an error).
 *   the bitmap   a copy of the guest's coverage map (RW_HC_COVERAGE) as the
 *                run left it: AFL++ writes into its bitmap (it classifies
 *                counts in place, and overwrites every byte of a crash's
 *                trace), so it never gets the guest's own map.
 *
 * Errors: a function that makes something returns NULL and prints one line
 * on stderr naming the share directory and what is wrong; nyx_exec()
 * returns NYX_ERROR and says why on stderr and in the aux string. No input
 * and no share directory makes the library crash.
 */
#ifndef RW_CKPT_NYX_H
#define RW_CKPT_NYX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* libnyx's NyxReturnValue; AFL++ spells them Normal, Crash, Asan, ... */
enum NyxReturnValue {
	NYX_NORMAL = 0,
	NYX_CRASH = 1,
	NYX_ASAN = 2,                    /* not produced */
	NYX_TIMEOUT = 3,
	NYX_INVALID_WRITE_TO_PAYLOAD = 4, /* not produced: the guest gets a copy */
	NYX_ERROR = 5,
	NYX_IO_ERROR = 6,                /* not produced */
	NYX_ABORT = 7,                   /* not produced */
};

/* libnyx's NyxProcessRole (StandAlone, Parent, Child). */
enum NyxProcessRole {
	NYX_STANDALONE = 0,
	NYX_PARENT = 1,
	NYX_CHILD = 2,
};

/* The inputs a runner accepts when the fuzzer does not say (afl-fuzz's
   longest input), or the share directory's payload_size if larger. */
#define NYX_DEFAULT_INPUT_BUFFER (1u << 20)

/* ---- the two forms of nyx_new ---- */
typedef void *nyx_new_config_fn(void *config, uint32_t worker_id);
typedef void *nyx_new_sharedir_fn(const char *sharedir, const char *workdir, uint32_t cpu_id,
				  uint32_t input_buffer_size, bool input_buffer_write_protection);

/* ---- AFL++ 4.0x: runners from a path (cpu_id: the thread is pinned to it) ---- */
void *nyx_new_parent(const char *sharedir, const char *workdir, uint32_t cpu_id,
		     uint32_t input_buffer_size, bool input_buffer_write_protection);
void *nyx_new_child(const char *sharedir, const char *workdir, uint32_t cpu_id, uint32_t worker_id);

/* ---- later AFL++: a configuration object (NULL and a message on failure) ---- */
void *nyx_config_load(const char *sharedir);
void nyx_config_free(void *config);
void nyx_config_set_workdir_path(void *config, const char *workdir);
void nyx_config_set_input_buffer_size(void *config, uint32_t input_buffer_size);
void nyx_config_set_input_buffer_write_protection(void *config, bool enable);
void nyx_config_set_hprintf_fd(void *config, int32_t fd); /* the guest's console */
void nyx_config_set_process_role(void *config, enum NyxProcessRole role);
void nyx_config_set_reuse_snapshot_path(void *config, const char *path);
bool nyx_config_set_aux_buffer_size(void *config, uint32_t size); /* n * 4096 */
uint64_t nyx_get_target_hash64(void *config); /* of the image and settings */
bool nyx_remove_work_dir(const char *workdir);

/* ---- a runner ---- */
void nyx_shutdown(void *runner);                 /* idempotent */
void nyx_option_set_reload_mode(void *runner, bool enable);
void nyx_option_set_timeout(void *runner, uint8_t timeout_sec, uint32_t timeout_usec);
void nyx_option_apply(void *runner);             /* applies the two above */
void nyx_set_afl_input(void *runner, uint8_t *buffer, uint32_t size);
enum NyxReturnValue nyx_exec(void *runner);
uint8_t *nyx_get_bitmap_buffer(void *runner);
size_t nyx_get_bitmap_buffer_size(void *runner);
uint32_t nyx_get_aux_string(void *runner, uint8_t *buffer, uint32_t size);
/* The input buffer: a 32-bit little-endian length, then the bytes. */
uint8_t *nyx_get_input_buffer(void *runner);

#ifdef __cplusplus
}
#endif

#endif
