/*
 * bench_store.h - `rewind-bench store`: the checkpoint store against raw
 * LMDB and memcpy.
 */
#ifndef RW_BENCH_BENCH_STORE_H
#define RW_BENCH_BENCH_STORE_H

/*
 * rewind-bench store [--pages N] [--dir DIR] [--rounds R]
 *
 * Prints one JSON line:
 *   {"bench":"store","pages":N,"store_ns_per_page":..,"lmdb_raw_ns_per_page":..,
 *    "ratio":..,"read_gbps":..,"run_gbps":..,"memcpy_gbps":..}
 * read_gbps reads the whole checkpoint into a buffer (store_snap_read),
 * run_gbps walks it as runs copied into a buffer (store_snap_foreach_run).
 * Returns 0, 1 on a failure (reported on stderr), 2 on a usage error.
 */
int bench_store_main(int argc, char **argv);

#endif
