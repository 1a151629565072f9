/*
 * cli_store.h - the store subcommands of the rewind CLI:
 *
 *   rewind ls|inspect|diff|rm|gc|verify|export|import|stats --store DIR ...
 *
 * Each prints a human table by default and one JSON document with --json.
 * Exit status: 0 on success, 1 on a runtime failure (not a store, missing
 * checkpoint, newer store format, damaged data, verify found problems),
 * 2 on a usage error (bad flag, missing or extra argument). Every failure is
 * one line on stderr.
 */
#ifndef RW_VMM_CLI_STORE_H
#define RW_VMM_CLI_STORE_H

#include <stdbool.h>
#include <stdio.h>

/* True if cmd is one of the store subcommands. */
bool cli_store_has(const char *cmd);

/*
 * Run store subcommand cmd. argv[0] is the subcommand's name, the options
 * and arguments follow (argc counts argv[0]). Returns the exit status.
 */
int cli_store_main(const char *cmd, int argc, char **argv);

/* Print the help lines of the store subcommands. */
void cli_store_usage(FILE *f);

#endif
