/*
 * rewind-bench: measurements of rewind against the physical floors of the
 * machine it runs on. See bench.h for the output convention.
 */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "bench_devices.h"
#include "bench_store.h"
#include "log.h"

struct bench_cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
};

static const struct bench_cmd cmds[] = {
	{ "floor", bench_floor_main, "physical floors: KVM_RUN round trips, page copy, hash, LMDB put" },
	{ "store", bench_store_main, "checkpoint store: incremental write vs raw LMDB, read vs memcpy" },
	{ "ckpt", bench_ckpt_main, "checkpoint pause vs memcpy of the dirty pages, persist time" },
	{ "reset", bench_reset_main, "fast reset loop vs KVM_RUN round trip + memcpy" },
	{ "devices", bench_devices_main, "virtio-blk throughput vs direct host I/O; checkpointing a writing guest" },
	{ "fuzz", bench_fuzz_main, "AFL++ through rewind (-X) vs AFL++ persistent and forkserver, native" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: rewind-bench BENCH [OPTIONS]\n\nBenches (one JSON line per result on stdout):\n");
	for (unsigned i = 0; i < ARRAY_SIZE(cmds); i++)
		fprintf(f, "  %-8s %s\n", cmds[i].name, cmds[i].help);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(stdout);
		return 0;
	}
	for (unsigned i = 0; i < ARRAY_SIZE(cmds); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "rewind-bench: error: unknown bench '%s' (see rewind-bench --help)\n", argv[1]);
	return 2;
}
