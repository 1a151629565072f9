/*
 * log.h - the only place rewind prints diagnostics.
 *
 * Messages go to stderr as "rewind: <level>: <text>". The level is set once
 * at start-up (rw_log_set_level) or from the REWIND_LOG environment variable
 * (error, warn, info, debug). Thread-safe: each message is one write(2).
 */
#ifndef RW_VMM_LOG_H
#define RW_VMM_LOG_H

enum rw_log_level { RW_LOG_ERROR, RW_LOG_WARN, RW_LOG_INFO, RW_LOG_DEBUG };

void rw_log_set_level(enum rw_log_level level);
enum rw_log_level rw_log_get_level(void);
/* Parse "error"/"warn"/"info"/"debug"; returns 0 or -EINVAL. */
int rw_log_parse_level(const char *s, enum rw_log_level *out);

void rw_log(enum rw_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define rw_error(...) rw_log(RW_LOG_ERROR, __VA_ARGS__)
#define rw_warn(...) rw_log(RW_LOG_WARN, __VA_ARGS__)
#define rw_info(...) rw_log(RW_LOG_INFO, __VA_ARGS__)
#define rw_debug(...)                                       \
	do {                                                \
		if (rw_log_get_level() >= RW_LOG_DEBUG)     \
			rw_log(RW_LOG_DEBUG, __VA_ARGS__);  \
	} while (0)

#endif
