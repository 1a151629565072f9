/*
 * cli.h - run the rewind binary from a test and capture what it did.
 */
#ifndef RW_TESTS_CLI_H
#define RW_TESTS_CLI_H

#include <stddef.h>

struct cli_result {
	int status;      /* exit status, or 128 + signal */
	char *out;       /* stdout, NUL-terminated, malloc'ed */
	size_t out_len;
	char *err;       /* stderr */
	size_t err_len;
};

/*
 * Run REWIND_BIN with argv (argv[0] is ignored, NULL-terminated), feeding
 * stdin_data (NULL: /dev/null), killing it after timeout_s seconds. uid, if
 * not 0, is the user to run as. Returns 0 or -errno.
 */
int cli_run(const char *const *argv, const char *stdin_data, unsigned timeout_s, unsigned uid,
	    struct cli_result *res);
void cli_result_free(struct cli_result *res);

/* Number of lines in s (a trailing partial line counts). */
unsigned cli_count_lines(const char *s);

#endif
