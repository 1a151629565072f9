/*
 * fuzz_share.h - the share directory a fuzzer is pointed at: what libnyx.so
 * (nyx.c) reads and `rewind fuzz-share` writes, plus the two steps every
 * user of it takes the same way: start the guest to its snapshot, and say
 * in one line how a run ended.
 *
 *   DIR/rewind.json   the settings, a JSON object:
 *                       "rewind_share"  1 (the format's version; required)
 *                       "kernel"        the guest image's file name in DIR
 *                                       (required; a plain name, no '/')
 *                       "mem_size"      guest RAM in bytes (64 MiB)
 *                       "payload_size"  the most bytes of an input a run
 *                                       hands the guest (1 MiB)
 *                       "timeout_ms"    the longest run; 0 = none (1000)
 *                       "args"          the string handed to rw_main ("")
 *                       "coverage"      false: the guest announces no
 *                                       coverage map, and the bitmap stays
 *                                       empty (true)
 *                     Unknown keys are refused, so a typo is not ignored.
 *   DIR/<kernel>      the guest image, copied in
 *   DIR/config.ron    what afl-fuzz looks for to accept DIR as a Nyx share
 *                     directory; nothing reads its content
 *
 * Errors come back as a negative errno with a sentence in why[] that names
 * the file at fault.
 */
#ifndef RW_CKPT_FUZZ_SHARE_H
#define RW_CKPT_FUZZ_SHARE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rewind.h"

#define FUZZ_SHARE_CONFIG "rewind.json"
#define FUZZ_SHARE_MARKER "config.ron"
#define FUZZ_SHARE_VERSION 1

#define FUZZ_SHARE_MEM_DEFAULT (64ULL << 20)
#define FUZZ_SHARE_PAYLOAD_DEFAULT (1u << 20)  /* afl-fuzz's longest input */
#define FUZZ_SHARE_PAYLOAD_MAX (16u << 20)     /* rewind_set_payload's limit */
#define FUZZ_SHARE_TIMEOUT_DEFAULT_MS 1000u
#define FUZZ_SHARE_TIMEOUT_MAX_MS 3600000u
/* Starting the guest to its snapshot may take this long at least. */
#define FUZZ_SHARE_BOOT_TIMEOUT_MS 10000u
#define FUZZ_SHARE_NAME_MAX 255
#define FUZZ_SHARE_ARGS_MAX 4095

struct fuzz_share {
	char dir[PATH_MAX];
	char kernel[FUZZ_SHARE_NAME_MAX + 1];  /* file name in dir */
	char kernel_path[PATH_MAX];            /* dir/kernel */
	uint64_t mem_size;
	uint32_t payload_size;
	uint32_t timeout_ms;
	char args[FUZZ_SHARE_ARGS_MAX + 1];
	bool coverage;
};

/* The defaults, and no kernel. */
void fuzz_share_init(struct fuzz_share *s);

/* The settings' ranges (kernel name, memory, payload, timeout, args). */
int fuzz_share_check(const struct fuzz_share *s, char *why, size_t n);

/* Is path a readable x86-64 ELF executable? 0, or why not. */
int fuzz_share_check_image(const char *path, char *why, size_t n);

/*
 * Read DIR's settings into *s and check them and the image they name.
 * -ENOENT: DIR, its rewind.json or the image is missing; -EINVAL: damaged.
 */
int fuzz_share_load(const char *dir, struct fuzz_share *s, char *why, size_t n);

/*
 * Make DIR a share directory (DIR is created if missing; its parent must
 * exist): copy image in as s->kernel, then write rewind.json and
 * config.ron, each through a temporary file and a rename. s->dir and
 * s->kernel_path are filled in.
 */
int fuzz_share_save(const char *dir, const char *image, struct fuzz_share *s, char *why, size_t n);

/* The settings as rewind.json holds them (a jansson object, caller owns). */
struct json_t;
struct json_t *fuzz_share_json(const struct fuzz_share *s);

/*
 * Create the VM the settings describe and run it to the guest's
 * rw_snapshot(): the root every reset goes back to. console as in
 * rewind_config (NULL discards the guest's console). The runs that follow
 * have s->timeout_ms; this first one has at least
 * FUZZ_SHARE_BOOT_TIMEOUT_MS. A guest that exits, crashes, hangs or says
 * done before its snapshot is refused, saying which.
 */
int fuzz_share_boot(const struct fuzz_share *s, const char *console, struct rewind_vm **out,
		    char *why, size_t n);

/*
 * How a run ended, in one line: "done: status 3", "crash: exception #PF
 * (vector 14) at RIP 0x..., error code 0x4, CR2 0x0", "crash: the target
 * reported code 0xb06 at 0x...", "timeout: ...", "fatal: ...", "exit: ...".
 * Returns the length written (at most n - 1).
 */
size_t fuzz_share_describe(const struct rewind_event *ev, char *buf, size_t n);

/* The short name of an event's kind: "done", "crash", "timeout", ... */
const char *fuzz_share_event_name(enum rewind_event_kind kind);

/*
 * What a fuzzer makes of a run's event (libnyx's return value): rw_done()
 * is normal; a crash, a dead VM (triple fault, emulation failure) and a
 * guest that exits instead of saying done are crashes: findings about that
 * input, kept and replayable (libnyx's Abort would make afl-fuzz end the
 * whole campaign over one input); a timeout is a timeout. A second
 * snapshot is not a run's end at all.
 */
enum fuzz_outcome {
	FUZZ_NORMAL,
	FUZZ_CRASH,
	FUZZ_TIMEOUT,
	FUZZ_UNEXPECTED,
};
enum fuzz_outcome fuzz_share_outcome(enum rewind_event_kind kind);
const char *fuzz_share_outcome_name(enum fuzz_outcome o); /* "normal", ... */

#endif
