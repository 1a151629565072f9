/*
 * disk.h - copy-on-write disks and their I/O engines.
 *
 * A disk is a backing file that is never written (opened O_RDONLY) plus an
 * overlay that takes every write:
 *
 *   - the disk's size is the backing file's size rounded down to 512 bytes
 *     (an empty file, or one shorter than a sector, is refused); it is cut
 *     into 4 KiB blocks, the last one possibly partial (its bytes beyond
 *     the size read as zeros);
 *   - the overlay is an unlinked temporary file (O_TMPFILE, mode 0600, in
 *     $TMPDIR or /var/tmp), sparse, holding block i at offset i * 4 KiB,
 *     plus an in-memory "present" bitmap: a present block is read from the
 *     overlay, any other block from the backing file. A block the guest
 *     wrote zeros to is present (and zero), which is not the same as absent;
 *   - a write covering whole blocks goes straight to the overlay; a write
 *     covering part of a block (512-byte sectors) reads the block from the
 *     current view, merges and writes the whole block (read-modify-write).
 *
 * Changed blocks are tracked for the checkpoint layer exactly like guest
 * pages (ckpt/dirty.h): two epochs, DISK_EPOCH_CKPT (changed since the last
 * checkpoint captured them) and DISK_EPOCH_RESET (since the reset root),
 * both marked by every guest write; a restore of one epoch's baseline marks
 * only the other. The values equal enum dirty_epoch's DIRTY_CKPT/DIRTY_RESET.
 *
 * Identity: the size plus an XXH3-128 of sampled content (the first and the
 * last MiB of the disk and the size), computed at open. A checkpoint records
 * it so that a restore given another file is refused.
 *
 * Engines: io_uring (liburing, the default) or synchronous
 * preadv/pwritev. With io_uring, disk_submit() queues SQEs, disk_kick()
 * submits them, the ring's eventfd (disk_event_fd) becomes readable when
 * completions arrive and disk_reap() returns the finished requests. Reads
 * (from the backing file and the overlay) always go through the ring: a
 * page-cache hit completes during submission, a miss completes
 * asynchronously without blocking the vCPU. Whole-block writes to the
 * overlay go through the ring only where its file system takes buffered
 * writes without blocking (probed at open with RWF_NOWAIT); elsewhere
 * (ext4, tmpfs) io_uring would hand each one to a worker thread, which
 * measured 2 to 5 times slower than the plain copy into the page cache, so
 * they are written inline. A partial-block write is a read-modify-write
 * done inline; with ring writes it first waits for every request in flight
 * (two writes to different sectors of one block must not lose each other's
 * bytes). Short transfers are finished synchronously. If the ring cannot be
 * created (io_uring disabled by the host, say) the disk falls back to the
 * sync engine and says so once.
 *
 * Flush: the overlay lives exactly as long as the VM (it is unlinked), so
 * there is nothing to make durable; data survives through checkpoints.
 *
 * Threads: every function takes the disk's mutex; callbacks are never
 * called with it held. The checkpoint API (take/give back/read/restore/
 * present ranges) is meant for a quiesced device: it is safe at any time
 * but only consistent with no request in flight.
 */
#ifndef RW_DEVICES_DISK_H
#define RW_DEVICES_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "config.h"
#include "err.h"

#define DISK_BLOCK_SIZE 4096u
#define DISK_BLOCK_SHIFT 12
#define DISK_SECTOR_SIZE 512u
#define DISK_HASH_BYTES 16u

enum disk_epoch { DISK_EPOCH_CKPT = 0, DISK_EPOCH_RESET = 1, DISK_NR_EPOCHS = 2 };

struct disk;

/* A run of present blocks. */
struct disk_range {
	uint64_t start;
	uint64_t count;
};

/*
 * One I/O request. The caller fills the "in" fields and owns the struct
 * until disk_submit() says it completed or disk_reap() returns it.
 */
struct disk_req {
	/* in */
	bool write;
	uint64_t offset;            /* bytes, multiple of 512 */
	uint64_t len;               /* bytes, multiple of 512, offset+len <= size */
	const struct iovec *iov;    /* exactly len bytes of buffers */
	unsigned iovcnt;            /* 1..256 */
	void *opaque;
	/* out */
	int result;                 /* 0 or -errno */
	/* disk.c's own */
	struct disk_req *next;
	unsigned subs_left;
	void *priv;
};

/*
 * Parse a --disk argument "PATH[,id=NAME][,ro][,engine=uring|sync]" into
 * *out (cleared first). A comma inside PATH is written ",,". NAME is 1 to
 * RW_DISK_ID_MAX-1 characters of [A-Za-z0-9._-]. On error returns -EINVAL
 * with a one-line explanation in why (no prefix, no newline).
 */
int disk_config_parse(const char *arg, struct vm_disk_config *out, char *why,
		      size_t whylen) RW_MUST_CHECK;

/*
 * Open cfg->path read-only, create its overlay and its engine. name is the
 * instance id (copied; disk_name). Errors are logged with the path:
 * -ENOENT/-EACCES/..., -EINVAL (empty, not a regular file or block device),
 * -ENOMEM.
 */
int disk_open(const struct vm_disk_config *cfg, const char *name, struct disk **out) RW_MUST_CHECK;
/* Close the disk; no request may be in flight (drain with disk_reap). */
void disk_close(struct disk *d);

const char *disk_name(const struct disk *d);
uint64_t disk_size(const struct disk *d);         /* bytes, multiple of 512 */
uint64_t disk_nblocks(const struct disk *d);
bool disk_readonly(const struct disk *d);
enum disk_engine disk_engine_used(const struct disk *d);
/*
 * The backing file's size and identity: XXH3-128 of all its bytes, then
 * its size (devices/disk_identity.h says how a large file's is cached).
 */
void disk_identity(const struct disk *d, uint64_t *size, uint8_t hash[DISK_HASH_BYTES]);
/*
 * The identity as device records of version 1 hold it (a file larger than
 * 256 MiB hashed by samples), computed on the first call. 0 or -errno.
 */
int disk_identity_v1(struct disk *d, uint8_t hash[DISK_HASH_BYTES]) RW_MUST_CHECK;

/* ---- I/O (the device) ---- */

/*
 * Start r. Returns 1 if r already completed (r->result set: sync engine,
 * an inline write, an error found up front: -EINVAL for a misaligned,
 * empty or out-of-range request or a bad iovcnt, -EROFS for a write to a
 * read-only disk), 0 if it is in flight and will come back from
 * disk_reap(). I/O errors come back as -errno in r->result.
 */
int disk_submit(struct disk *d, struct disk_req *r);
/* Hand the queued requests to the kernel (the end of a batch). */
void disk_kick(struct disk *d);
/*
 * Completed requests, as a list through ->next (NULL if none). With wait,
 * blocks until at least one completes unless none is in flight.
 */
struct disk_req *disk_reap(struct disk *d, bool wait);
/* Requests submitted and not yet returned by disk_submit/disk_reap. */
unsigned disk_inflight(const struct disk *d);
/* Whether whole-block overlay writes go through the ring (see above). */
bool disk_uring_writes(const struct disk *d);
/*
 * Override the probe (tests and benches): send whole-block overlay writes
 * through the ring, or write them inline. Waits for requests in flight.
 * No effect on the sync engine.
 */
void disk_set_uring_writes(struct disk *d, bool on);
/* eventfd readable when completions wait for disk_reap, or -1 (sync engine). */
int disk_event_fd(const struct disk *d);
/* Consume the eventfd's count (before reaping). */
void disk_event_clear(struct disk *d);

/* ---- the checkpoint layer (device quiesced) ---- */

/*
 * Take the epoch's changed blocks: ascending indices in a malloc'ed array
 * (*blocks, caller frees; NULL when none), cleared in the epoch. Returns
 * the count, or -EINVAL (epoch), -ENOMEM (nothing cleared).
 */
int64_t disk_take_dirty(struct disk *d, int epoch, uint64_t **blocks);
/* Mark blocks changed again in epoch (a capture that failed). */
void disk_give_back(struct disk *d, int epoch, const uint64_t *blocks, uint64_t n);
/* Count of changed blocks in epoch (0 for a bad epoch). */
uint64_t disk_dirty_count(const struct disk *d, int epoch);

/*
 * Read block idx as the guest sees it now (4 KiB into buf; bytes beyond the
 * disk's size are zero). Returns 0, -EINVAL (idx), -EIO/-errno.
 */
int disk_read_block(struct disk *d, uint64_t idx, void *buf) RW_MUST_CHECK;
bool disk_block_present(const struct disk *d, uint64_t idx);
/*
 * Read blocks [first, first+n) for a checkpoint: present blocks from the
 * overlay, one read per run of them; absent blocks (served by the backing
 * file) as zeros. Returns 0, -EINVAL, -errno.
 */
int disk_read_present(struct disk *d, uint64_t first, uint64_t n, void *buf) RW_MUST_CHECK;

/*
 * Put block idx back to a checkpoint's content: data (4 KiB, written to the
 * overlay, the block becomes present) or NULL (the block leaves the overlay
 * and reads from the backing file again). Marks the block changed in every
 * epoch except restored_epoch. Returns 0, -EINVAL (idx, epoch), -errno.
 */
int disk_restore_block(struct disk *d, uint64_t idx, const void *data,
		       int restored_epoch) RW_MUST_CHECK;

/*
 * The first run of present blocks at or after block `from`: true with
 * *start and *count set, or false if there is none.
 */
bool disk_present_next(const struct disk *d, uint64_t from, uint64_t *start,
		       uint64_t *count);
/* Number of present blocks. */
uint64_t disk_present_count(const struct disk *d);
/*
 * Replace the present map with ranges[0..n) (ascending, disjoint, inside
 * the disk: the caller checked). Blocks leaving the overlay are freed
 * there; the content of blocks entering it is the caller's to restore
 * (disk_restore_block). Epochs are not touched. Returns 0 or -EINVAL.
 */
int disk_present_set(struct disk *d, const struct disk_range *ranges, uint64_t n) RW_MUST_CHECK;

#endif
