/*
 * disk_identity.c - the identity of a disk's backing file, and its cache
 * (contract in disk_identity.h).
 */
#include "disk_identity.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "log.h"
#include "util.h"

#define READ_BYTES (1u << 20)
/* samples of the version 1 identity */
#define SAMPLE_EDGE (1u << 20)
#define SAMPLE_BLOCKS 1024u
/* a file changed less than this before its hash began is not cached */
#define CTIME_MARGIN_NS (50 * 1000 * 1000LL)
#define CACHE_MAGIC "rewind-disk-identity 1"

static int hash_range(int fd, XXH3_state_t *s, uint8_t *buf, uint64_t off, uint64_t len)
{
	while (len) {
		size_t n = (size_t)MIN(len, (uint64_t)READ_BYTES);
		int ret = rw_pread_all(fd, buf, n, off);

		if (ret)
			return ret;
		XXH3_128bits_update(s, buf, n);
		off += n;
		len -= n;
	}
	return 0;
}

/* Hash size bytes of fd, whole or by samples, then the size. */
static int hash_file(int fd, uint64_t size, bool sampled, uint8_t hash[16])
{
	XXH3_state_t *s = XXH3_createState();
	uint8_t *buf = malloc(READ_BYTES);
	XXH128_canonical_t c;
	uint8_t le[8];
	int ret = -ENOMEM;

	if (!s || !buf)
		goto out;
	XXH3_128bits_reset(s);
	if (!sampled || size <= DISK_IDENTITY_CACHE_MIN) {
		ret = hash_range(fd, s, buf, 0, size);
	} else {
		uint64_t step = (size - 2 * SAMPLE_EDGE) / SAMPLE_BLOCKS;

		ret = hash_range(fd, s, buf, 0, SAMPLE_EDGE);
		for (unsigned i = 0; !ret && i < SAMPLE_BLOCKS; i++)
			ret = hash_range(fd, s, buf, ALIGN_DOWN(SAMPLE_EDGE + i * step, 4096ULL),
					 4096);
		if (!ret)
			ret = hash_range(fd, s, buf, size - SAMPLE_EDGE, SAMPLE_EDGE);
	}
	if (ret)
		goto out;
	for (int i = 0; i < 8; i++)
		le[i] = (uint8_t)(size >> (8 * i));
	XXH3_128bits_update(s, le, sizeof(le));
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(s));
	memcpy(hash, c.digest, 16);
out:
	free(buf);
	XXH3_freeState(s);
	return ret;
}

int disk_identity_sampled(int fd, uint64_t size, uint8_t hash[16])
{
	return hash_file(fd, size, true, hash);
}

/* ------------------------------------------------------------------ cache */

static int64_t ts_ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000LL + t->tv_nsec;
}

/* mkdir -p path (each missing folder 0700). */
static int mkdirs(char *path)
{
	for (char *p = path + 1;; p++) {
		if (*p && *p != '/')
			continue;
		char c = *p;

		*p = 0;
		if (mkdir(path, 0700) && errno != EEXIST) {
			*p = c;
			return -errno;
		}
		*p = c;
		if (!c)
			return 0;
	}
}

/* The cache entry's path for st, or NULL when there is no cache folder. */
static char *cache_path(const struct stat *st, bool make_dirs)
{
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	char base[4096], *p;

	if (xdg && xdg[0] == '/')
		snprintf(base, sizeof(base), "%s/rewind/disk-identity", xdg);
	else if (home && home[0] == '/')
		snprintf(base, sizeof(base), "%s/.cache/rewind/disk-identity", home);
	else
		return NULL;
	if (make_dirs && mkdirs(base))
		return NULL;
	if (asprintf(&p, "%s/%" PRIx64 "-%" PRIx64, base, (uint64_t)st->st_dev,
		     (uint64_t)st->st_ino) < 0)
		return NULL;
	return p;
}

/* The line an entry holds for st and hash (without the hash: a prefix). */
static void cache_line(char *line, size_t len, const struct stat *st, uint64_t size,
		       const uint8_t *hash)
{
	int n = snprintf(line, len, CACHE_MAGIC " %" PRIu64 " %" PRId64 " %" PRId64 " ", size,
			 ts_ns(&st->st_mtim), ts_ns(&st->st_ctim));

	for (int i = 0; hash && i < 16 && n > 0 && (size_t)n + 3 < len; i++)
		n += snprintf(line + n, len - (size_t)n, "%02x", hash[i]);
	if (hash && n > 0 && (size_t)n + 2 < len)
		snprintf(line + n, len - (size_t)n, "\n");
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* 1 and the hash when the entry for st is there and current, else 0. */
static int cache_get(const struct stat *st, uint64_t size, uint8_t hash[16])
{
	char *path = cache_path(st, false), want[160], got[160];
	size_t wl;
	ssize_t n;
	int fd;

	if (!path)
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	free(path);
	if (fd < 0)
		return 0;
	n = read(fd, got, sizeof(got) - 1);
	close(fd);
	cache_line(want, sizeof(want), st, size, NULL);
	wl = strlen(want);
	if (n != (ssize_t)(wl + 33) || memcmp(got, want, wl) || got[wl + 32] != '\n')
		return 0;
	for (int i = 0; i < 16; i++) {
		int hi = hexval(got[wl + 2 * i]), lo = hexval(got[wl + 2 * i + 1]);

		if (hi < 0 || lo < 0)
			return 0;
		hash[i] = (uint8_t)(hi << 4 | lo);
	}
	return 1;
}

/* Write the entry (a new file renamed over the old one); failures are quiet. */
static void cache_put(const struct stat *st, uint64_t size, const uint8_t hash[16])
{
	char *path = cache_path(st, true), *tmp = NULL, line[160];
	size_t len;
	int fd;

	if (!path)
		return;
	if (asprintf(&tmp, "%s.%d", path, (int)getpid()) < 0) {
		tmp = NULL;
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		goto out;
	cache_line(line, sizeof(line), st, size, hash);
	len = strlen(line);
	bool ok = write(fd, line, len) == (ssize_t)len;

	if (close(fd) || !ok || rename(tmp, path))
		unlink(tmp);
out:
	free(tmp);
	free(path);
}

int disk_identity_compute(int fd, const char *path, uint64_t size, uint8_t hash[16])
{
	struct stat st, after;
	struct timespec start;
	bool cacheable;
	int ret;

	if (fstat(fd, &st))
		return -errno;
	cacheable = S_ISREG(st.st_mode) && size > DISK_IDENTITY_CACHE_MIN;
	if (cacheable && cache_get(&st, size, hash))
		return 0;
	if (size > DISK_IDENTITY_CACHE_MIN)
		rw_info("disk '%s': reading its %" PRIu64 " MiB once for its identity%s", path,
			size >> 20, cacheable ? " (cached for next time)" : "");
	clock_gettime(CLOCK_REALTIME, &start);
	ret = hash_file(fd, size, false, hash);
	if (ret || !cacheable)
		return ret;
	/* changed while being read, or too recently to tell: not cached */
	if (fstat(fd, &after) || ts_ns(&after.st_ctim) != ts_ns(&st.st_ctim) ||
	    ts_ns(&st.st_ctim) + CTIME_MARGIN_NS > ts_ns(&start))
		return 0;
	cache_put(&st, size, hash);
	return 0;
}
