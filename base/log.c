#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * The log level is process-wide configuration, not VM state: it is set once
 * from the command line or the environment and read by every VM.
 */
static _Atomic int log_level = -1;

int rw_log_parse_level(const char *s, enum rw_log_level *out)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };

	for (int i = 0; i < 4; i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum rw_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

void rw_log_set_level(enum rw_log_level level)
{
	atomic_store(&log_level, (int)level);
}

enum rw_log_level rw_log_get_level(void)
{
	int l = atomic_load(&log_level);

	if (l < 0) {
		enum rw_log_level parsed = RW_LOG_WARN;
		const char *env = getenv("REWIND_LOG");

		if (env && rw_log_parse_level(env, &parsed) != 0)
			parsed = RW_LOG_WARN;
		l = (int)parsed;
		atomic_store(&log_level, l);
	}
	return (enum rw_log_level)l;
}

void rw_log(enum rw_log_level level, const char *fmt, ...)
{
	static const char *const prefix[] = { "error", "warning", "info", "debug" };
	char buf[1024];
	va_list ap;
	int n, saved = errno;

	if ((int)level > (int)rw_log_get_level())
		return;
	n = snprintf(buf, sizeof(buf), "rewind: %s: ", prefix[level]);
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof(buf) - 1)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	if (write(STDERR_FILENO, buf, (size_t)n) < 0) {
		/* nowhere left to report it */
	}
	errno = saved;
}
