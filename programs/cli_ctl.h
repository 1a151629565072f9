/*
 * cli_ctl.h - `rewind ctl PATH COMMAND [ARGS] [--json]`, the client of the
 * control socket a VM started with --control PATH serves (ckpt/control.h).
 *
 *   checkpoint [LABEL]   rollback ID   pause   resume   status   quit
 *
 * Sends one request and prints the reply: a human line (status: aligned
 * "key: value" lines) by default, the reply's raw JSON line with --json.
 * Exit status: 0 the VM answered ok; 1 the VM refused (its message on
 * stderr, or the raw reply with --json), or the socket could not be reached
 * or broke off (one line naming the path and the reason); 2 usage error.
 */
#ifndef RW_VMM_CLI_CTL_H
#define RW_VMM_CLI_CTL_H

#include <stdio.h>

/* Run `ctl`: argv[0] is "ctl", the path, command and options follow. */
int cli_ctl_main(int argc, char **argv);

/* Print the help lines of `ctl`. */
void cli_ctl_usage(FILE *f);

#endif
