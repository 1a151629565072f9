/*
 * bench_devices.h - `rewind-bench devices`: virtio-blk throughput against
 * the host's own I/O on the same file.
 */
#ifndef RW_BENCH_BENCH_DEVICES_H
#define RW_BENCH_BENCH_DEVICES_H

/*
 * rewind-bench devices [--mib N] [--seconds S] [--dir DIR]
 *
 * Builds a VM with one virtio-blk on an N MiB file (default 64) in DIR
 * (default $TMPDIR or /var/tmp) and drives the device from the host side
 * as a guest driver would: chains of header, one data buffer and status in
 * the queue, QueueNotify through the MMIO bus, completions through the
 * VM's event set. For each engine, operation (read, write), request size
 * (4 and 64 KiB) and queue depth (1, 32) it prints one line:
 *
 *   {"bench":"devices.blk","engine":"uring","writes":"inline","op":"read",
 *    "req_kib":4,"qd":32,"mib_s":..,"host_direct_mib_s":..,
 *    "host_buffered_mib_s":..,"vs_direct":..}
 *
 * engine is the engine in use (uring falls back to sync where io_uring is
 * unavailable); writes says how whole-block overlay writes went: "ring"
 * (io_uring) or "inline" (disk.h explains the probe). Write rows come
 * three times: uring as probed, uring with ring writes forced, sync.
 *
 * host_direct_mib_s is fio-style direct I/O (O_DIRECT, io_uring at the
 * same queue depth) on the same file (writes: on a scratch file of the same
 * size), host_buffered_mib_s plain pread/pwrite through the page cache,
 * both measured in the same run for S seconds each (default 0.5). The
 * device reads through the page cache (the file is warm) and writes to its
 * copy-on-write overlay. Returns 0, 1 on a failure, 2 on a usage error.
 */
int bench_devices_main(int argc, char **argv);

#endif
