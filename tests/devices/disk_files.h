/*
 * disk_files.h - disk image files for the device tests.
 */
#ifndef RW_TESTS_DISK_FILES_H
#define RW_TESTS_DISK_FILES_H

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "util.h"

/* XXH3-128 of a whole file: to show that a disk file was never written. */
static inline XXH128_hash_t file_hash(const char *path)
{
	struct stat st;
	uint8_t *buf;
	int fd = open(path, O_RDONLY);
	XXH128_hash_t h;

	cr_assert_geq(fd, 0, "open %s", path);
	cr_assert_eq(fstat(fd, &st), 0);
	buf = malloc((size_t)st.st_size + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(rw_pread_all(fd, buf, (size_t)st.st_size, 0), 0);
	h = XXH3_128bits(buf, (size_t)st.st_size);
	free(buf);
	close(fd);
	return h;
}

/* Write size bytes of buf to path (created or truncated). */
static inline void write_disk_file(const char *path, const void *buf, uint64_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	cr_assert_geq(fd, 0, "create %s", path);
	cr_assert_eq(rw_write_all(fd, buf, size), 0);
	close(fd);
}

#endif
