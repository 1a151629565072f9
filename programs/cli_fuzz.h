/*
 * cli_fuzz.h - fuzzing with AFL++ (README "Fuzzing with AFL++"):
 *
 *   rewind fuzz-share DIR --kernel IMG [--mem SIZE] [--payload-size N]
 *                         [--timeout MS] [--args STR] [--no-coverage] [--json]
 *       make DIR a share directory afl-fuzz -X runs (through libnyx.so)
 *   rewind fuzz-replay DIR FILE... [--console FILE] [--json]
 *       run inputs (a crash afl-fuzz saved) against DIR's guest, each from
 *       the snapshot, and say how each run ended, as libnyx.so would
 *
 * Exit status: 0 ok (fuzz-replay: every input ran to rw_done); 2 usage error
 * (bad flag, a missing, unreadable or damaged file); 1 rewind failed;
 * fuzz-replay, for the first input that did not end normally: 3 crash (or
 * the guest exited), 4 the VM died, 5 timeout.
 */
#ifndef RW_CLI_FUZZ_H
#define RW_CLI_FUZZ_H

#include <stdio.h>

int cli_fuzz_share_main(int argc, char **argv);
int cli_fuzz_replay_main(int argc, char **argv);
void cli_fuzz_usage(FILE *f);

#endif
