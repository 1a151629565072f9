/*
 * disk_identity.h - the identity of a disk's backing file (devices only).
 *
 * A disk's identity is XXH3-128 over every byte of the file (its size
 * rounded down to a sector) followed by that size as 8 little-endian bytes.
 * A checkpoint records it, and a restore refuses a file whose identity
 * differs, so any change to the base image is caught.
 *
 * Hashing a large image reads all of it, so the result for a regular file
 * larger than DISK_IDENTITY_CACHE_MIN is cached, one small file per image
 * under $XDG_CACHE_HOME/rewind/disk-identity (else ~/.cache/...), named by
 * the image's device and inode and valid while its size, mtime and ctime
 * are unchanged. Any write to the image changes its ctime, which no one can
 * set back. A cache entry is written only when the image's ctime is older
 * than the hash's start by more than a timestamp tick, so a write that
 * lands while it is being hashed is never cached. A damaged, foreign or
 * stale cache entry is ignored and rewritten; a cache that cannot be written
 * costs a hash on every open and nothing else.
 */
#ifndef RW_DEVICES_DISK_IDENTITY_H
#define RW_DEVICES_DISK_IDENTITY_H

#include <stdint.h>

#include "err.h"

#define DISK_IDENTITY_CACHE_MIN (256ULL << 20)

/*
 * The identity of size bytes of the open file fd (path for messages).
 * @return 0, or -errno of a read.
 */
int disk_identity_compute(int fd, const char *path, uint64_t size,
			  uint8_t hash[16]) RW_MUST_CHECK;

/*
 * The identity as records of device state version 1 hold it: the same as
 * above up to DISK_IDENTITY_CACHE_MIN bytes; for a larger file, the hash of
 * its first and last MiB and 1024 evenly spaced 4 KiB blocks, then the size.
 */
int disk_identity_sampled(int fd, uint64_t size, uint8_t hash[16]) RW_MUST_CHECK;

#endif
