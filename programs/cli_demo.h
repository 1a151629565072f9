/*
 * cli_demo.h - `rewind demo`: rewind's main job on an embedded default.
 */
#ifndef RW_VMM_CLI_DEMO_H
#define RW_VMM_CLI_DEMO_H

int cli_demo_main(int argc, char **argv);

#endif
