/*
 * cli_args.h - checks of the paths a user names on the command line, made
 * before anything is opened or written, so that a wrong one is a usage
 * error (exit status 2) with one line naming it and what is wrong.
 */
#ifndef RW_PROGRAMS_CLI_ARGS_H
#define RW_PROGRAMS_CLI_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#define EXIT_USAGE 2

/*
 * A usage error of command cmd: logs "cmd: <message> (see 'rewind cmd
 * --help')" and returns EXIT_USAGE.
 */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * --store DIR for command cmd. With must_exist, DIR must hold a store the
 * user can read. Without, it may also be missing or an empty directory
 * (a store is created there); a file or a directory of other files is
 * refused. Returns 0 or EXIT_USAGE (the line is printed).
 */
int cli_check_store(const char *cmd, const char *dir, bool must_exist);

/* A file to read (a regular file the user can read). 0 or EXIT_USAGE. */
int cli_check_input_file(const char *cmd, const char *what, const char *path);

/* A file to create: its directory exists and is a directory. 0 or EXIT_USAGE. */
int cli_check_output_file(const char *cmd, const char *what, const char *path);

struct store;

/*
 * A checkpoint named on the command line: an id, or the label of exactly
 * one checkpoint of store s. Returns 0 with *id set, EXIT_USAGE (no
 * checkpoint has that label, or several do: the line lists them) or 1 (the
 * store failed). cmd prefixes the line.
 */
int cli_checkpoint_arg(const char *cmd, struct store *s, const char *arg, uint64_t *id);

/*
 * Progress of a long operation on a terminal: a bar redrawn in place on
 * stderr, only when stderr is a terminal and the output is not JSON.
 */
struct cli_bar {
	bool on;
	const char *label;
	int last;
};
#define CLI_BAR(name, human) { .on = (human) && isatty(2), .label = (name), .last = -1 }
/* A progress callback (store_progress_fn and the like): arg is the bar. */
void cli_bar_cb(void *arg, uint64_t done, uint64_t total);
/* Finish the bar's line. */
void cli_bar_end(struct cli_bar *b);
/* Erase the bar so that a line can be printed; the next update redraws it. */
void cli_bar_clear(struct cli_bar *b);

/* Was path missing (so a store created there is the command's own)? */
bool cli_path_missing(const char *path);

#endif
