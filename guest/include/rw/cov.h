/*
 * rw/cov.h - edge coverage for fuzz targets, AFL style.
 *
 * Build the program's own sources with the compiler's coverage
 * instrumentation (rewind-guest.mk: RW_COVERAGE=1; RewindGuest.cmake:
 * rw_guest_program(... COVERAGE); by hand: gcc -fsanitize-coverage=trace-pc,
 * clang -fsanitize-coverage=trace-pc-guard) and link with librw.a as usual:
 * the instrumented code calls the hooks below, which pull this runtime
 * (lib/cov.c) into the image. Never instrument the SDK itself: the kernel
 * runs at CPL0 and must not call CPL3 code, and the runtime must not call
 * itself.
 *
 * The map: rw_cov_map, RW_COV_MAP_SIZE bytes (a power of two, 64 KiB by
 * default) in the image's .bss, page aligned so it fills whole pages. One
 * byte per edge counts how often the edge was taken (wrapping 255 -> 1,
 * never to 0).
 *   gcc (trace-pc):   the edge is hash(this block's PC) ^ prev, and prev
 *                     becomes hash >> 1: AFL's classic scheme, with the
 *                     hash of the call site standing in for AFL's random
 *                     block id.
 *   clang (trace-pc-guard): clang instruments edges itself; each edge's
 *                     guard gets its own map index (1, 2, ... wrapping
 *                     past the map's end) when the module constructors
 *                     call __sanitizer_cov_trace_pc_guard_init().
 *
 * Life of the map. A constructor announces it to the host with
 * RW_HC_COVERAGE (rw_coverage_map(); a host that does not know the call
 * answers -ENOSYS and the program just goes on). rw_snapshot() zeroes the
 * map and prev right before the reset root is taken, so the root holds an
 * empty map and every reset (which copies back the pages the run dirtied)
 * empties it again: the host reads it after a run and never clears it.
 *
 * One vCPU: prev is a single global, as SDK fuzz targets run their target
 * on vCPU 0 only. Instrumented code running on several vCPUs at once still
 * counts into the map, but its edges mix and its counts may race.
 */
#ifndef RW_GUEST_COV_H
#define RW_GUEST_COV_H

#include "rw.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The map size librw.a was built with (its -DRW_COV_MAP_SIZE). */
#ifndef RW_COV_MAP_SIZE
#define RW_COV_MAP_SIZE 65536
#endif

/* Keeps a function out of the coverage instrumentation. */
#if defined(__clang__)
#define RW_COV_NO_INSTRUMENT __attribute__((no_sanitize("coverage")))
#elif defined(__has_attribute)
#if __has_attribute(no_sanitize_coverage)
#define RW_COV_NO_INSTRUMENT __attribute__((no_sanitize_coverage))
#endif
#endif
#ifndef RW_COV_NO_INSTRUMENT
#define RW_COV_NO_INSTRUMENT
#endif

/* The map: rw_cov_size() bytes, page aligned. */
extern uint8_t rw_cov_map[];
size_t rw_cov_size(void);

/*
 * What the host answered to the announcement: 0 when it reads the map, a
 * negative errno otherwise (-ENOSYS: no coverage consumer), 1 before the
 * announcement was made.
 */
int64_t rw_cov_status(void);

/* Zero the map and prev (what rw_snapshot() does before the root). */
void rw_cov_reset(void);

/* Bytes of the map that are not zero: the edges seen since the last reset. */
size_t rw_cov_count(void);

/* Called by rw_snapshot() right before RW_HC_SNAPSHOT: announce, reset. */
void rw_cov_prepare_root(void);

/* The compiler's hooks (see above). */
void __sanitizer_cov_trace_pc(void);
void __sanitizer_cov_trace_pc_guard_init(uint32_t *start, uint32_t *stop);
void __sanitizer_cov_trace_pc_guard(uint32_t *guard);

#ifdef __cplusplus
}
#endif

#endif
