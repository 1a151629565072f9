/*
 * disk.c - copy-on-write disks with io_uring and sync engines (contract in
 * disk.h).
 *
 * Layout of the work:
 *   bitmaps        present map and the two dirty epochs, one bit per block
 *   parsing        --disk PATH[,id=NAME][,ro][,engine=uring|sync]
 *   open/close     backing file, identity hash, overlay, engine
 *   views          which file serves a byte range; read-modify-write
 *   sync engine    preadv/pwritev, also used to finish short transfers
 *   uring engine   one SQE per run of same-source blocks, completions
 *   checkpoint API take/give back dirty blocks, read and restore blocks
 */
#include "disk.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "device.h"
#include "disk_identity.h"
#include "log.h"
#include "util.h"

/* SQ entries of a disk's ring: a queue's worth of requests. */
#define DISK_URING_ENTRIES 256u
/* Most iovec entries one request may carry (below the kernel's UIO_MAXIOV). */
#define DISK_IOV_MAX 256u

struct disk {
	pthread_mutex_t lock;
	char name[DEV_ID_MAX];
	int fd;                    /* backing file, O_RDONLY */
	int ofd;                   /* overlay, unlinked */
	uint64_t size;             /* bytes, multiple of 512 */
	uint64_t nblocks;
	size_t words;              /* of each bitmap */
	bool ro;
	enum disk_engine engine;   /* in use */
	uint8_t hash[DISK_HASH_BYTES];
	uint8_t hash_v1[DISK_HASH_BYTES]; /* disk_identity_v1(), once asked for */
	bool have_hash_v1;
	uint64_t *present;
	uint64_t *dirty[DISK_NR_EPOCHS];
	uint8_t *block;            /* DISK_BLOCK_SIZE scratch for read-modify-write */

	/* io_uring engine */
	struct io_uring ring;
	int efd;
	bool uring_writes;         /* overlay writes through the ring too */
	unsigned queued;           /* SQEs prepared, not yet submitted */
	unsigned outstanding;      /* SQEs without a completion yet */
	unsigned inflight;         /* requests accepted, not yet handed back */
	struct disk_req *done;     /* finished, for disk_reap */
	struct disk_req **done_tail;
};

/* One SQE's worth of a request: a byte range served by one file. */
struct disk_sub {
	struct disk_req *req;
	int fd;
	uint64_t off;
	uint64_t len;
	struct iovec *iov;
	unsigned iovcnt;
};

struct disk_priv {
	unsigned nsubs;
	struct disk_sub subs[];    /* then the iovec slices */
};

/* ------------------------------------------------------------------ bitmaps */

/* The lock of a disk that a const function only reads under. */
static pthread_mutex_t *lock_of(const struct disk *d)
{
	return (pthread_mutex_t *)&d->lock;
}

static inline bool bit_test(const uint64_t *map, uint64_t i)
{
	return (map[i >> 6] >> (i & 63)) & 1;
}

static inline void bit_set(uint64_t *map, uint64_t i)
{
	map[i >> 6] |= 1ULL << (i & 63);
}

static inline void bit_clear(uint64_t *map, uint64_t i)
{
	map[i >> 6] &= ~(1ULL << (i & 63));
}

static void bits_set_range(uint64_t *map, uint64_t first, uint64_t n)
{
	for (uint64_t i = first; i < first + n;) {
		if ((i & 63) == 0 && first + n - i >= 64) {
			map[i >> 6] = ~0ULL;
			i += 64;
		} else {
			bit_set(map, i++);
		}
	}
}

/* First index >= from whose bit equals `set`, or nbits. */
static uint64_t bits_find(const uint64_t *map, uint64_t nbits, uint64_t from, bool set)
{
	while (from < nbits) {
		uint64_t w = map[from >> 6];

		if (!set)
			w = ~w;
		w &= ~0ULL << (from & 63);
		if (w) {
			uint64_t i = (from & ~63ULL) + (uint64_t)__builtin_ctzll(w);
			return i < nbits ? i : nbits;
		}
		from = (from & ~63ULL) + 64;
	}
	return nbits;
}

static uint64_t bits_count(const uint64_t *map, size_t words)
{
	uint64_t n = 0;

	for (size_t i = 0; i < words; i++)
		n += (uint64_t)__builtin_popcountll(map[i]);
	return n;
}

/* Blocks [first, first+n) were written by the guest. Lock held. */
static void mark_written(struct disk *d, uint64_t first, uint64_t n)
{
	bits_set_range(d->present, first, n);
	for (int e = 0; e < DISK_NR_EPOCHS; e++)
		bits_set_range(d->dirty[e], first, n);
}

/* ------------------------------------------------------------------ parsing */

static int why_set(char *why, size_t whylen, const char *fmt, const char *arg)
{
	if (why && whylen)
		snprintf(why, whylen, fmt, arg);
	return -EINVAL;
}

static bool id_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

int disk_config_parse(const char *arg, struct vm_disk_config *out, char *why, size_t whylen)
{
	const char *p = arg;
	size_t n = 0;
	bool seen_id = false, seen_ro = false, seen_engine = false;

	memset(out, 0, sizeof(*out));
	out->engine = DISK_ENGINE_URING;
	if (why && whylen)
		why[0] = '\0';
	if (!arg)
		return why_set(why, whylen, "%smissing disk path", "");
	/* the path runs to the first single comma; ",," is a literal comma */
	while (*p && !(p[0] == ',' && p[1] != ',')) {
		if (n + 1 >= sizeof(out->path))
			return why_set(why, whylen, "%sdisk path too long", "");
		out->path[n++] = *p;
		p += (p[0] == ',') ? 2 : 1;
	}
	out->path[n] = '\0';
	if (!n)
		return why_set(why, whylen, "%sempty disk path (expected PATH[,id=NAME][,ro]"
				"[,engine=uring|sync])", "");
	while (*p == ',') {
		const char *opt = ++p;
		size_t len = strcspn(opt, ",");
		char buf[128];

		p += len;
		if (len >= sizeof(buf))
			return why_set(why, whylen, "option too long: '%.40s...'", opt);
		memcpy(buf, opt, len);
		buf[len] = '\0';
		if (!strcmp(buf, "ro")) {
			if (seen_ro)
				return why_set(why, whylen, "'%s' given twice", "ro");
			seen_ro = true;
			out->ro = true;
		} else if (!strncmp(buf, "id=", 3)) {
			const char *id = buf + 3;
			size_t idlen = strlen(id);

			if (seen_id)
				return why_set(why, whylen, "'%s' given twice", "id");
			seen_id = true;
			if (!idlen || idlen >= sizeof(out->id))
				return why_set(why, whylen, "id '%s' must be 1 to 47 characters", id);
			for (size_t i = 0; i < idlen; i++)
				if (!id_char_ok(id[i]))
					return why_set(why, whylen,
						       "id '%s' may only hold letters, digits, '.', "
						       "'_' and '-'", id);
			memcpy(out->id, id, idlen + 1);
		} else if (!strncmp(buf, "engine=", 7)) {
			if (seen_engine)
				return why_set(why, whylen, "'%s' given twice", "engine");
			seen_engine = true;
			if (!strcmp(buf + 7, "uring"))
				out->engine = DISK_ENGINE_URING;
			else if (!strcmp(buf + 7, "sync"))
				out->engine = DISK_ENGINE_SYNC;
			else
				return why_set(why, whylen, "engine '%s': expected uring or sync",
					       buf + 7);
		} else if (!len) {
			return why_set(why, whylen, "%sempty option (a stray ',')", "");
		} else {
			return why_set(why, whylen, "unknown disk option '%s' (expected id=NAME, ro "
					"or engine=uring|sync)", buf);
		}
	}
	return 0;
}

/* --------------------------------------------------------------- open/close */

static int backing_size(int fd, const char *path, uint64_t *size)
{
	struct stat st;

	if (fstat(fd, &st))
		return -errno;
	if (S_ISREG(st.st_mode)) {
		*size = (uint64_t)st.st_size;
		return 0;
	}
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, size))
			return -errno;
		return 0;
	}
	rw_error("disk '%s' is neither a regular file nor a block device", path);
	return -EINVAL;
}

static int open_overlay(const char *name)
{
	const char *dir = getenv("TMPDIR");
	char path[RW_PATH_MAX];
	int fd;

	if (!dir || !*dir)
		dir = "/var/tmp";
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
		int err = -errno;

		rw_error("%s: cannot create the overlay in '%s': %s", name, dir, strerror(errno));
		return err;
	}
	/* no O_TMPFILE on this file system: create, then unlink at once */
	snprintf(path, sizeof(path), "%s/rewind-overlay-XXXXXX", dir);
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0) {
		int err = -errno;

		rw_error("%s: cannot create the overlay in '%s': %s", name, dir, strerror(errno));
		return err;
	}
	unlink(path);
	return fd;
}

/*
 * Can the overlay's file system take a buffered write without blocking?
 * If not (ext4, tmpfs here), io_uring hands every overlay write to an
 * io-wq worker thread, serialised per file: measured 2 to 5 times slower
 * than writing inline (rewind-bench devices), because an overlay write is
 * only a copy into the page cache. Block 0 is absent from the overlay, so
 * the probe's zeros there are never read; its space is given back.
 */
static bool overlay_nowait_writes(struct disk *d)
{
	static const uint8_t zero[DISK_SECTOR_SIZE];
	struct iovec iov = { (void *)zero, sizeof(zero) };
	ssize_t n = pwritev2(d->ofd, &iov, 1, 0, RWF_NOWAIT);
	bool ok = n >= 0 || errno == EAGAIN;

	if (n > 0 && fallocate(d->ofd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
			       DISK_BLOCK_SIZE))
		rw_debug("%s: freeing the overlay probe: %s", d->name, strerror(errno));
	return ok;
}

static void uring_setup(struct disk *d)
{
	int ret;

	d->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->efd < 0) {
		ret = -errno;
		goto fail;
	}
	ret = io_uring_queue_init(DISK_URING_ENTRIES, &d->ring, 0);
	if (ret)
		goto fail_efd;
	/*
	 * Only completions that happen after submission returned signal the
	 * eventfd: those found during submission are reaped by the submitting
	 * thread at once, and waking the event thread for them would cost a
	 * context switch per request for nothing.
	 */
	ret = io_uring_register_eventfd_async(&d->ring, d->efd);
	if (ret)
		goto fail_ring;
	d->engine = DISK_ENGINE_URING;
	d->uring_writes = overlay_nowait_writes(d);
	rw_debug("%s: io_uring engine, overlay writes %s", d->name,
		 d->uring_writes ? "through the ring" : "inline");
	return;

fail_ring:
	io_uring_queue_exit(&d->ring);
fail_efd:
	close(d->efd);
fail:
	d->efd = -1;
	d->engine = DISK_ENGINE_SYNC;
	rw_warn("%s: io_uring is not available (%s): using the sync engine", d->name,
		rw_strerror(ret));
}

int disk_open(const struct vm_disk_config *cfg, const char *name, struct disk **out)
{
	struct disk *d;
	uint64_t bytes;
	int ret = -ENOMEM;

	*out = NULL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->fd = d->ofd = d->efd = -1;
	d->done_tail = &d->done;
	d->ro = cfg->ro;
	d->engine = DISK_ENGINE_SYNC;
	snprintf(d->name, sizeof(d->name), "%s", name);
	pthread_mutex_init(&d->lock, NULL);

	d->fd = open(cfg->path, O_RDONLY | O_CLOEXEC);
	if (d->fd < 0) {
		ret = -errno;
		rw_error("%s: cannot open disk '%s': %s", name, cfg->path, strerror(errno));
		goto fail;
	}
	ret = backing_size(d->fd, cfg->path, &bytes);
	if (ret) {
		if (ret != -EINVAL)
			rw_error("%s: size of disk '%s': %s", name, cfg->path, rw_strerror(ret));
		goto fail;
	}
	d->size = bytes & ~(uint64_t)(DISK_SECTOR_SIZE - 1);
	if (!d->size) {
		rw_error("%s: disk '%s' is empty (it needs at least one 512-byte sector)", name,
			 cfg->path);
		ret = -EINVAL;
		goto fail;
	}
	d->nblocks = (d->size + DISK_BLOCK_SIZE - 1) >> DISK_BLOCK_SHIFT;
	d->words = (d->nblocks + 63) / 64;
	ret = -ENOMEM;
	d->present = calloc(d->words, sizeof(uint64_t));
	d->dirty[0] = calloc(d->words, sizeof(uint64_t));
	d->dirty[1] = calloc(d->words, sizeof(uint64_t));
	d->block = malloc(DISK_BLOCK_SIZE);
	if (!d->present || !d->dirty[0] || !d->dirty[1] || !d->block)
		goto fail;
	ret = disk_identity_compute(d->fd, cfg->path, d->size, d->hash);
	if (ret) {
		rw_error("%s: reading disk '%s': %s", name, cfg->path, rw_strerror(ret));
		goto fail;
	}
	d->ofd = open_overlay(name);
	if (d->ofd < 0) {
		ret = d->ofd;
		goto fail;
	}
	if (ftruncate(d->ofd, (off_t)(d->nblocks * DISK_BLOCK_SIZE))) {
		ret = -errno;
		rw_error("%s: sizing the overlay: %s", name, strerror(errno));
		goto fail;
	}
	if (cfg->engine == DISK_ENGINE_URING)
		uring_setup(d);
	*out = d;
	return 0;

fail:
	disk_close(d);
	return ret;
}

void disk_close(struct disk *d)
{
	if (!d)
		return;
	if (d->engine == DISK_ENGINE_URING) {
		io_uring_queue_exit(&d->ring);
		close(d->efd);
	}
	while (d->done) {
		struct disk_req *r = d->done;

		d->done = r->next;
		free(r->priv);
	}
	if (d->ofd >= 0)
		close(d->ofd);
	if (d->fd >= 0)
		close(d->fd);
	free(d->present);
	free(d->dirty[0]);
	free(d->dirty[1]);
	free(d->block);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

const char *disk_name(const struct disk *d)
{
	return d->name;
}

uint64_t disk_size(const struct disk *d)
{
	return d->size;
}

uint64_t disk_nblocks(const struct disk *d)
{
	return d->nblocks;
}

bool disk_readonly(const struct disk *d)
{
	return d->ro;
}

enum disk_engine disk_engine_used(const struct disk *d)
{
	return d->engine;
}

void disk_identity(const struct disk *d, uint64_t *size, uint8_t hash[DISK_HASH_BYTES])
{
	*size = d->size;
	memcpy(hash, d->hash, DISK_HASH_BYTES);
}

int disk_identity_v1(struct disk *d, uint8_t hash[DISK_HASH_BYTES])
{
	int ret = 0;

	pthread_mutex_lock(&d->lock);
	if (!d->have_hash_v1 && d->size <= DISK_IDENTITY_CACHE_MIN)
		memcpy(d->hash_v1, d->hash, DISK_HASH_BYTES); /* the same hash */
	else if (!d->have_hash_v1)
		ret = disk_identity_sampled(d->fd, d->size, d->hash_v1);
	if (!ret) {
		d->have_hash_v1 = true;
		memcpy(hash, d->hash_v1, DISK_HASH_BYTES);
	}
	pthread_mutex_unlock(&d->lock);
	return ret;
}

/* ------------------------------------------------------------------- views */

/*
 * Copy the iovec entries covering bytes [skip, skip+len) of src into dst
 * (which has room for cnt entries). Returns the count.
 */
static unsigned iov_slice(const struct iovec *src, unsigned cnt, uint64_t skip, uint64_t len,
			  struct iovec *dst)
{
	unsigned n = 0;

	for (unsigned i = 0; i < cnt && len; i++) {
		uint64_t l = src[i].iov_len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		dst[n].iov_base = (char *)src[i].iov_base + skip;
		dst[n].iov_len = MIN(l - skip, len);
		len -= dst[n].iov_len;
		skip = 0;
		n++;
	}
	return n;
}

/* Copy bytes [skip, skip+len) of an iovec list into buf. */
static void iov_to_buf(const struct iovec *iov, unsigned cnt, uint64_t skip, void *buf,
		       uint64_t len)
{
	uint8_t *p = buf;

	for (unsigned i = 0; i < cnt && len; i++) {
		uint64_t l = iov[i].iov_len, k;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		k = MIN(l - skip, len);
		memcpy(p, (uint8_t *)iov[i].iov_base + skip, k);
		p += k;
		len -= k;
		skip = 0;
	}
}

/* Move an iovec list forward by n bytes (in place). */
static void iov_advance(struct iovec **iov, unsigned *cnt, uint64_t n)
{
	while (*cnt && n >= (*iov)->iov_len) {
		n -= (*iov)->iov_len;
		(*iov)++;
		(*cnt)--;
	}
	if (*cnt && n) {
		(*iov)->iov_base = (char *)(*iov)->iov_base + n;
		(*iov)->iov_len -= n;
	}
}

/* preadv/pwritev until len bytes moved; modifies iov. 0 or -errno. */
static int xfer_full(int fd, bool write, struct iovec *iov, unsigned cnt, uint64_t off,
		     uint64_t len)
{
	while (len) {
		unsigned c = MIN(cnt, DISK_IOV_MAX);
		ssize_t n = write ? pwritev(fd, iov, (int)c, (off_t)off)
				  : preadv(fd, iov, (int)c, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO; /* the backing file shrank */
		len -= MIN((uint64_t)n, len);
		off += (uint64_t)n;
		iov_advance(&iov, &cnt, (uint64_t)n);
	}
	return 0;
}

/* Which file serves block b. Lock held. */
static int block_fd(const struct disk *d, uint64_t b)
{
	return bit_test(d->present, b) ? d->ofd : d->fd;
}

/* Block b as the guest sees it, into buf. Lock held. */
static int read_block_locked(struct disk *d, uint64_t b, void *buf)
{
	uint64_t off = b << DISK_BLOCK_SHIFT;
	uint64_t n;

	if (bit_test(d->present, b))
		return rw_pread_all(d->ofd, buf, DISK_BLOCK_SIZE, off);
	n = MIN((uint64_t)DISK_BLOCK_SIZE, d->size - off);
	memset((uint8_t *)buf + n, 0, DISK_BLOCK_SIZE - n);
	return rw_pread_all(d->fd, buf, n, off);
}

/*
 * Blocks [b, end) all served by the same file as b: the end of the run
 * starting at b, capped at last + 1.
 */
static uint64_t run_end(const struct disk *d, uint64_t b, uint64_t last)
{
	uint64_t e = bits_find(d->present, d->nblocks, b + 1, !bit_test(d->present, b));

	return MIN(e, last + 1);
}

/* ------------------------------------------------------------- sync engine */

static int sync_read(struct disk *d, struct disk_req *r)
{
	uint64_t first = r->offset >> DISK_BLOCK_SHIFT;
	uint64_t last = (r->offset + r->len - 1) >> DISK_BLOCK_SHIFT;
	struct iovec slice[DISK_IOV_MAX];

	for (uint64_t b = first; b <= last;) {
		uint64_t e = run_end(d, b, last);
		uint64_t lo = MAX(r->offset, b << DISK_BLOCK_SHIFT);
		uint64_t hi = MIN(r->offset + r->len, e << DISK_BLOCK_SHIFT);
		unsigned n;
		int ret;

		n = iov_slice(r->iov, r->iovcnt, lo - r->offset, hi - lo, slice);
		ret = xfer_full(block_fd(d, b), false, slice, n, lo, hi - lo);
		if (ret)
			return ret;
		b = e;
	}
	return 0;
}

/* Blocks of [off, off+len) entirely covered by it: [*b0, *b1). */
static void whole_blocks(const struct disk *d, uint64_t off, uint64_t len, uint64_t *b0,
			 uint64_t *b1)
{
	uint64_t end = off + len;

	*b0 = (off + DISK_BLOCK_SIZE - 1) >> DISK_BLOCK_SHIFT;
	*b1 = end >> DISK_BLOCK_SHIFT;
	if (*b1 < *b0)
		*b1 = *b0;
}

/* Merge the request's bytes that fall in block b into it. Lock held. */
static int rmw_block(struct disk *d, struct disk_req *r, uint64_t b)
{
	uint64_t bs = b << DISK_BLOCK_SHIFT;
	uint64_t lo = MAX(r->offset, bs), hi = MIN(r->offset + r->len, bs + DISK_BLOCK_SIZE);
	int ret = read_block_locked(d, b, d->block);

	if (ret)
		return ret;
	iov_to_buf(r->iov, r->iovcnt, lo - r->offset, d->block + (lo - bs), hi - lo);
	return rw_pwrite_all(d->ofd, d->block, DISK_BLOCK_SIZE, bs);
}

/*
 * A write, synchronously: partial blocks at either end read-modify-write,
 * whole blocks in between straight to the overlay. Lock held.
 */
static int sync_write(struct disk *d, struct disk_req *r)
{
	uint64_t first = r->offset >> DISK_BLOCK_SHIFT;
	uint64_t last = (r->offset + r->len - 1) >> DISK_BLOCK_SHIFT;
	struct iovec slice[DISK_IOV_MAX];
	uint64_t b0, b1;
	int ret;

	whole_blocks(d, r->offset, r->len, &b0, &b1);
	if (b0 == b1) { /* no whole block: every touched block is partial */
		for (uint64_t b = first; b <= last; b++) {
			ret = rmw_block(d, r, b);
			if (ret)
				return ret;
		}
	} else {
		if (first < b0) {
			ret = rmw_block(d, r, first);
			if (ret)
				return ret;
		}
		if (last >= b1) {
			ret = rmw_block(d, r, last);
			if (ret)
				return ret;
		}
		uint64_t lo = b0 << DISK_BLOCK_SHIFT, hi = b1 << DISK_BLOCK_SHIFT;
		unsigned n = iov_slice(r->iov, r->iovcnt, lo - r->offset, hi - lo, slice);

		ret = xfer_full(d->ofd, true, slice, n, lo, hi - lo);
		if (ret)
			return ret;
	}
	mark_written(d, first, last - first + 1);
	return 0;
}

static bool write_aligned(const struct disk_req *r)
{
	return !(r->offset & (DISK_BLOCK_SIZE - 1)) && !(r->len & (DISK_BLOCK_SIZE - 1));
}

/* ------------------------------------------------------------ uring engine */

static void finish_req(struct disk *d, struct disk_req *r)
{
	if (r->write && !r->result)
		mark_written(d, r->offset >> DISK_BLOCK_SHIFT, r->len >> DISK_BLOCK_SHIFT);
	free(r->priv);
	r->priv = NULL;
	r->next = NULL;
	*d->done_tail = r;
	d->done_tail = &r->next;
}

/* A sub-request ended with res (bytes or -errno). Lock held. */
static void sub_done(struct disk *d, struct disk_sub *s, int res)
{
	struct disk_req *r = s->req;
	int ret = 0;

	if (res == -EAGAIN || res == -EINTR) {
		ret = xfer_full(s->fd, r->write, s->iov, s->iovcnt, s->off, s->len);
	} else if (res < 0) {
		ret = res;
	} else if ((uint64_t)res < s->len) {
		/* short transfer: finish it here */
		struct iovec *iov = s->iov;
		unsigned cnt = s->iovcnt;

		iov_advance(&iov, &cnt, (uint64_t)res);
		ret = xfer_full(s->fd, r->write, iov, cnt, s->off + (uint64_t)res,
				s->len - (uint64_t)res);
	}
	if (ret && !r->result)
		r->result = ret;
	if (--r->subs_left == 0)
		finish_req(d, r);
}

static void reap_locked(struct disk *d)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&d->ring, head, cqe) {
		struct disk_sub *s = io_uring_cqe_get_data(cqe);

		d->outstanding--;
		sub_done(d, s, cqe->res);
		n++;
	}
	io_uring_cq_advance(&d->ring, n);
}

/* Submit what is queued and wait for one completion. Lock held. */
static int wait_one_locked(struct disk *d)
{
	int ret = io_uring_submit_and_wait(&d->ring, 1);

	if (ret >= 0) {
		d->queued = 0;
		return 0;
	}
	if (ret == -EINTR || ret == -EAGAIN || ret == -EBUSY)
		return 0;
	return ret;
}

/* Wait until no SQE is outstanding. Lock held. */
static int drain_locked(struct disk *d)
{
	while (d->outstanding) {
		int ret = wait_one_locked(d);

		if (ret)
			return ret;
		reap_locked(d);
	}
	return 0;
}

static void queue_sub(struct disk *d, struct disk_sub *s, bool write)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&d->ring);

	if (!sqe) {
		/* SQ full: hand the batch to the kernel and retry */
		if (io_uring_submit(&d->ring) >= 0)
			d->queued = 0;
		sqe = io_uring_get_sqe(&d->ring);
	}
	if (!sqe) {
		int ret = xfer_full(s->fd, write, s->iov, s->iovcnt, s->off, s->len);

		sub_done(d, s, ret ? ret : (int)MIN(s->len, (uint64_t)INT32_MAX));
		return;
	}
	if (write)
		io_uring_prep_writev(sqe, s->fd, s->iov, s->iovcnt, s->off);
	else
		io_uring_prep_readv(sqe, s->fd, s->iov, s->iovcnt, s->off);
	io_uring_sqe_set_data(sqe, s);
	d->queued++;
	d->outstanding++;
}

/*
 * Split r into one sub-request per run of blocks served by the same file
 * (one for an aligned write: the overlay) and queue them. Returns 0 or
 * -ENOMEM. Lock held.
 */
static int uring_start(struct disk *d, struct disk_req *r)
{
	uint64_t first = r->offset >> DISK_BLOCK_SHIFT;
	uint64_t last = (r->offset + r->len - 1) >> DISK_BLOCK_SHIFT;
	unsigned nsubs = 0, i = 0;
	struct disk_priv *p;
	struct iovec *iov;

	if (r->write)
		nsubs = 1;
	else
		for (uint64_t b = first; b <= last; b = run_end(d, b, last))
			nsubs++;
	p = malloc(sizeof(*p) + nsubs * sizeof(struct disk_sub) +
		   (r->iovcnt + nsubs) * sizeof(struct iovec));
	if (!p)
		return -ENOMEM;
	p->nsubs = nsubs;
	iov = (struct iovec *)(p->subs + nsubs);
	r->priv = p;
	r->subs_left = nsubs;
	if (r->write) {
		struct disk_sub *s = &p->subs[0];

		*s = (struct disk_sub){ .req = r, .fd = d->ofd, .off = r->offset, .len = r->len };
		s->iov = iov;
		s->iovcnt = iov_slice(r->iov, r->iovcnt, 0, r->len, iov);
	} else {
		for (uint64_t b = first; b <= last; i++) {
			uint64_t e = run_end(d, b, last);
			uint64_t lo = MAX(r->offset, b << DISK_BLOCK_SHIFT);
			uint64_t hi = MIN(r->offset + r->len, e << DISK_BLOCK_SHIFT);
			struct disk_sub *s = &p->subs[i];

			*s = (struct disk_sub){ .req = r, .fd = block_fd(d, b), .off = lo,
						.len = hi - lo };
			s->iov = iov;
			s->iovcnt = iov_slice(r->iov, r->iovcnt, lo - r->offset, hi - lo, iov);
			iov += s->iovcnt;
			b = e;
		}
	}
	/*
	 * Queue after the split: a sub completed synchronously (SQ full) must
	 * not finish the request while later subs are still being built.
	 */
	r->subs_left++;
	for (i = 0; i < nsubs; i++)
		queue_sub(d, &p->subs[i], r->write);
	if (--r->subs_left == 0)
		finish_req(d, r);
	return 0;
}

/* ---------------------------------------------------------------- I/O API */

int disk_submit(struct disk *d, struct disk_req *r)
{
	int ret;

	r->result = 0;
	r->next = NULL;
	r->priv = NULL;
	r->subs_left = 0;
	if (!r->len || (r->offset | r->len) & (DISK_SECTOR_SIZE - 1) || r->offset > d->size ||
	    r->len > d->size - r->offset) {
		r->result = -EINVAL;
		return 1;
	}
	if (r->write && d->ro) {
		r->result = -EROFS;
		return 1;
	}
	if (!r->iovcnt || r->iovcnt > DISK_IOV_MAX) {
		r->result = -EINVAL;
		return 1;
	}
	pthread_mutex_lock(&d->lock);
	if (d->engine == DISK_ENGINE_SYNC) {
		r->result = r->write ? sync_write(d, r) : sync_read(d, r);
		ret = 1;
	} else if (r->write && (!d->uring_writes || !write_aligned(r))) {
		/*
		 * Inline. A partial block must not race a ring write to the
		 * same block: with writes on the ring, wait for all of them
		 * (reads in flight change nothing).
		 */
		ret = d->uring_writes ? drain_locked(d) : 0;
		r->result = ret ? ret : sync_write(d, r);
		ret = 1;
	} else {
		ret = uring_start(d, r);
		if (ret) {
			r->result = ret;
			ret = 1;
		} else {
			d->inflight++;
			ret = 0;
		}
	}
	pthread_mutex_unlock(&d->lock);
	return ret;
}

void disk_kick(struct disk *d)
{
	pthread_mutex_lock(&d->lock);
	if (d->engine == DISK_ENGINE_URING && d->queued) {
		int ret = io_uring_submit(&d->ring);

		if (ret >= 0)
			d->queued = 0;
		else
			rw_debug("%s: io_uring_submit: %s", d->name, rw_strerror(ret));
	}
	pthread_mutex_unlock(&d->lock);
}

struct disk_req *disk_reap(struct disk *d, bool wait)
{
	struct disk_req *list;

	pthread_mutex_lock(&d->lock);
	if (d->engine == DISK_ENGINE_URING) {
		reap_locked(d);
		while (wait && !d->done && d->outstanding) {
			int ret = wait_one_locked(d);

			if (ret) {
				rw_error("%s: waiting for I/O: %s", d->name, rw_strerror(ret));
				break;
			}
			reap_locked(d);
		}
	}
	list = d->done;
	d->done = NULL;
	d->done_tail = &d->done;
	for (struct disk_req *r = list; r; r = r->next)
		d->inflight--;
	pthread_mutex_unlock(&d->lock);
	return list;
}

unsigned disk_inflight(const struct disk *d)
{
	unsigned n;

	pthread_mutex_lock(lock_of(d));
	n = d->inflight;
	pthread_mutex_unlock(lock_of(d));
	return n;
}

bool disk_uring_writes(const struct disk *d)
{
	return d->engine == DISK_ENGINE_URING && d->uring_writes;
}

void disk_set_uring_writes(struct disk *d, bool on)
{
	pthread_mutex_lock(&d->lock);
	if (d->engine == DISK_ENGINE_URING) {
		if (drain_locked(d))
			rw_debug("%s: draining before an engine change failed", d->name);
		d->uring_writes = on;
	}
	pthread_mutex_unlock(&d->lock);
}

int disk_event_fd(const struct disk *d)
{
	return d->engine == DISK_ENGINE_URING ? d->efd : -1;
}

void disk_event_clear(struct disk *d)
{
	uint64_t v;

	if (d->efd >= 0 && read(d->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		rw_debug("%s: reading the completion eventfd: %s", d->name, strerror(errno));
}

/* ---------------------------------------------------------- checkpoint API */

static bool epoch_ok(int epoch)
{
	return epoch >= 0 && epoch < DISK_NR_EPOCHS;
}

int64_t disk_take_dirty(struct disk *d, int epoch, uint64_t **blocks)
{
	uint64_t n, k = 0, *out = NULL;
	uint64_t *map;

	*blocks = NULL;
	if (!epoch_ok(epoch))
		return -EINVAL;
	pthread_mutex_lock(&d->lock);
	map = d->dirty[epoch];
	n = bits_count(map, d->words);
	if (n) {
		out = malloc(n * sizeof(*out));
		if (!out) {
			pthread_mutex_unlock(&d->lock);
			return -ENOMEM;
		}
		for (size_t w = 0; w < d->words; w++) {
			uint64_t v = map[w];

			while (v) {
				out[k++] = w * 64 + (uint64_t)__builtin_ctzll(v);
				v &= v - 1;
			}
			map[w] = 0;
		}
	}
	pthread_mutex_unlock(&d->lock);
	*blocks = out;
	return (int64_t)n;
}

void disk_give_back(struct disk *d, int epoch, const uint64_t *blocks, uint64_t n)
{
	if (!epoch_ok(epoch))
		return;
	pthread_mutex_lock(&d->lock);
	for (uint64_t i = 0; i < n; i++)
		if (blocks[i] < d->nblocks)
			bit_set(d->dirty[epoch], blocks[i]);
	pthread_mutex_unlock(&d->lock);
}

uint64_t disk_dirty_count(const struct disk *d, int epoch)
{
	uint64_t n;

	if (!epoch_ok(epoch))
		return 0;
	pthread_mutex_lock(lock_of(d));
	n = bits_count(d->dirty[epoch], d->words);
	pthread_mutex_unlock(lock_of(d));
	return n;
}

int disk_read_block(struct disk *d, uint64_t idx, void *buf)
{
	int ret;

	if (idx >= d->nblocks)
		return -EINVAL;
	pthread_mutex_lock(&d->lock);
	ret = read_block_locked(d, idx, buf);
	pthread_mutex_unlock(&d->lock);
	return ret;
}

int disk_read_present(struct disk *d, uint64_t first, uint64_t n, void *buf)
{
	uint8_t *out = buf;
	int ret = 0;

	if (first >= d->nblocks || n > d->nblocks - first)
		return -EINVAL;
	pthread_mutex_lock(&d->lock);
	for (uint64_t b = first; !ret && b < first + n;) {
		uint64_t e = run_end(d, b, first + n - 1);
		uint8_t *dst = out + ((b - first) << DISK_BLOCK_SHIFT);

		if (bit_test(d->present, b))
			ret = rw_pread_all(d->ofd, dst, (e - b) << DISK_BLOCK_SHIFT, b << DISK_BLOCK_SHIFT);
		else
			memset(dst, 0, (e - b) << DISK_BLOCK_SHIFT);
		b = e;
	}
	pthread_mutex_unlock(&d->lock);
	return ret;
}

bool disk_block_present(const struct disk *d, uint64_t idx)
{
	bool p;

	if (idx >= d->nblocks)
		return false;
	pthread_mutex_lock(lock_of(d));
	p = bit_test(d->present, idx);
	pthread_mutex_unlock(lock_of(d));
	return p;
}

/* Give the overlay's space for blocks [first, first+n) back (best effort). */
static void punch(struct disk *d, uint64_t first, uint64_t n)
{
	if (fallocate(d->ofd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(first << DISK_BLOCK_SHIFT), (off_t)(n << DISK_BLOCK_SHIFT)) &&
	    errno != EOPNOTSUPP)
		rw_debug("%s: freeing overlay blocks: %s", d->name, strerror(errno));
}

int disk_restore_block(struct disk *d, uint64_t idx, const void *data, int restored_epoch)
{
	int ret = 0;

	if (idx >= d->nblocks || !epoch_ok(restored_epoch))
		return -EINVAL;
	pthread_mutex_lock(&d->lock);
	if (data) {
		ret = rw_pwrite_all(d->ofd, data, DISK_BLOCK_SIZE, idx << DISK_BLOCK_SHIFT);
		if (!ret)
			bit_set(d->present, idx);
	} else {
		bit_clear(d->present, idx);
		punch(d, idx, 1);
	}
	if (!ret)
		for (int e = 0; e < DISK_NR_EPOCHS; e++)
			if (e != restored_epoch)
				bit_set(d->dirty[e], idx);
	pthread_mutex_unlock(&d->lock);
	return ret;
}

bool disk_present_next(const struct disk *d, uint64_t from, uint64_t *start, uint64_t *count)
{
	uint64_t s, e;

	pthread_mutex_lock(lock_of(d));
	s = bits_find(d->present, d->nblocks, from, true);
	e = s < d->nblocks ? bits_find(d->present, d->nblocks, s, false) : s;
	pthread_mutex_unlock(lock_of(d));
	if (s >= d->nblocks)
		return false;
	*start = s;
	*count = e - s;
	return true;
}

uint64_t disk_present_count(const struct disk *d)
{
	uint64_t n;

	pthread_mutex_lock(lock_of(d));
	n = bits_count(d->present, d->words);
	pthread_mutex_unlock(lock_of(d));
	return n;
}

int disk_present_set(struct disk *d, const struct disk_range *ranges, uint64_t n)
{
	uint64_t *map = calloc(d->words ? d->words : 1, sizeof(uint64_t));
	uint64_t prev_end = 0;

	if (!map)
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i++) {
		const struct disk_range *r = &ranges[i];

		if (!r->count || r->start < prev_end || r->start >= d->nblocks ||
		    r->count > d->nblocks - r->start) {
			free(map);
			return -EINVAL;
		}
		bits_set_range(map, r->start, r->count);
		prev_end = r->start + r->count;
	}
	pthread_mutex_lock(&d->lock);
	/* blocks leaving the overlay: free their space */
	for (uint64_t b = 0; b < d->nblocks;) {
		uint64_t s = bits_find(d->present, d->nblocks, b, true), e;

		if (s >= d->nblocks)
			break;
		e = bits_find(d->present, d->nblocks, s, false);
		for (uint64_t i = s; i < e;) {
			uint64_t j = i;

			while (j < e && !bit_test(map, j))
				j++;
			if (j > i)
				punch(d, i, j - i);
			while (j < e && bit_test(map, j))
				j++;
			i = j;
		}
		b = e;
	}
	free(d->present);
	d->present = map;
	pthread_mutex_unlock(&d->lock);
	return 0;
}
