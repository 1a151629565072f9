/*
 * util.h - small helpers shared by every folder.
 */
#ifndef RW_VMM_UTIL_H
#define RW_VMM_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))
#define ALIGN_UP(x, a) (((x) + ((a) - 1)) & ~((typeof(x))(a) - 1))
#define ALIGN_DOWN(x, a) ((x) & ~((typeof(x))(a) - 1))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#define KiB (1024ULL)
#define MiB (1024ULL * KiB)
#define GiB (1024ULL * MiB)

#define RW_PAGE_SIZE 4096ULL
#define RW_PAGE_SHIFT 12

static inline uint64_t rw_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/*
 * Parse a size with an optional K/M/G/T suffix (powers of 1024, "16M",
 * "1G", "4096"). Returns 0 or -EINVAL (empty, junk, overflow).
 */
int rw_parse_size(const char *s, uint64_t *out);

/*
 * Parse a duration: a number with a unit of ns, us, ms, s or m ("200ms",
 * "5s"). Returns 0 or -EINVAL.
 */
int rw_parse_duration(const char *s, uint64_t *out_ns);

/* Parse an unsigned decimal in [min, max]. Returns 0, -EINVAL or -ERANGE. */
int rw_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* write(2)/pwrite(2) loops that retry short writes and EINTR. 0 or -errno. */
int rw_write_all(int fd, const void *buf, size_t len);
int rw_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);
int rw_pread_all(int fd, void *buf, size_t len, uint64_t off);

/*
 * A byte count as people read it, the one format every command prints:
 * "812 B", "4.0 KiB", "2.1 MiB", "1.3 GiB" (powers of 1024, one decimal).
 */
void rw_format_size(uint64_t bytes, char *buf, size_t len);

/*
 * Text read from a file, a store or a guest, made safe to print: control
 * characters (C0, DEL and C1, which can drive a terminal), bytes that are
 * not valid UTF-8 and backslashes become \xNN; printable ASCII and valid
 * UTF-8 stay as they are. Always NUL-terminates buf (cut short if it is
 * too small). Returns buf.
 */
char *rw_escape(const char *s, char *buf, size_t len);

/* Does directory path hold no entry but . and ..? (false if unreadable) */
bool rw_dir_is_empty(const char *path);

/*
 * A helper thread that must never take a signal meant for a vCPU: fn runs
 * with every signal blocked. Returns 0 or -errno.
 */
int rw_thread_start(pthread_t *t, void *(*fn)(void *), void *arg);

/*
 * Stop a helper thread that waits on cond for *stop: set it under lock,
 * wake the thread, join it.
 */
void rw_thread_stop(pthread_t t, pthread_mutex_t *lock, pthread_cond_t *cond, bool *stop);

#endif
