/*
 * rewind-bench ckpt: the cost of an incremental checkpoint.
 *
 * A guest (dirtier) writes N distinct pages over and over in a guest of
 * --mem bytes. After a first, full checkpoint, each checkpoint captures the
 * N pages written since the previous one. Reported per N (medians of
 * --reps checkpoints):
 *   pause_us       the guest was stopped: pause, harvest, state, page copy
 *   floor_us       memcpy of the same N pages, measured in this run
 *   ratio          pause_us / floor_us
 *   persist_ms     resume .. committed to the store (hash, LMDB, fsync)
 *   bytes_written  new chunk bytes stored
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "log.h"
#include "machine.h"

static int one(uint64_t mem, uint64_t n, enum dirty_mode mode, unsigned reps)
{
	char dir[] = "/tmp/rewind-bench-ckpt-XXXXXX", cmd[128];
	struct vm_config cfg;
	struct machine_opts o = { 0 };
	struct machine *m;
	struct ckpt_report rep;
	double *pause = calloc(reps, sizeof(double)), *persist = calloc(reps, sizeof(double));
	double *bytes = calloc(reps, sizeof(double)), *pages = calloc(reps, sizeof(double));
	int ret = 1;

	if (!mkdtemp(dir) || !pause || !persist || !bytes || !pages)
		goto out;
	config_init(&cfg);
	cfg.mem_size = mem;
	cfg.serial_in = false;
	snprintf(cfg.kernel, sizeof(cfg.kernel), "%s", bench_guest("dirtier"));
	snprintf(cfg.args, sizeof(cfg.args), "pages=%llu rounds=0", (unsigned long long)n);
	snprintf(cfg.serial_out, sizeof(cfg.serial_out), "/dev/null");
	o.store_dir = dir;
	o.dirty = mode;
	if (machine_create(&cfg, &o, &m))
		goto out_rm;
	if (machine_start(m)) {
		machine_destroy(m);
		goto out_rm;
	}
	/* a round of N first writes costs a write-protect fault per page */
	useconds_t gap = (useconds_t)(50000 + n * 30);
	usleep(gap + 200000);
	if (machine_checkpoint(m, "full", true, &rep)) {
		fprintf(stderr, "rewind-bench: the first checkpoint failed: %s\n", rw_strerror(rep.err));
		machine_destroy(m);
		goto out_rm;
	}
	for (unsigned i = 0; i < reps; i++) {
		usleep(gap);
		if (machine_checkpoint(m, NULL, true, &rep)) {
			fprintf(stderr, "rewind-bench: checkpoint failed: %s\n", rw_strerror(rep.err));
			machine_destroy(m);
			goto out_rm;
		}
		pause[i] = (double)rep.pause_ns / 1e3;
		persist[i] = (double)rep.persist_ns / 1e6;
		bytes[i] = (double)rep.bytes_written;
		pages[i] = (double)rep.dirty_pages;
	}
	machine_destroy(m);

	double copy_ns = bench_memcpy_ns_per_page(n, 5);
	double floor_us = copy_ns * (double)n / 1e3;
	double p = bench_median(pause, reps);
	json_t *j = json_object();
	json_object_set_new(j, "bench", json_string("ckpt"));
	json_object_set_new(j, "dirty_pages", json_integer((json_int_t)n));
	json_object_set_new(j, "captured_pages", json_integer((json_int_t)bench_median(pages, reps)));
	json_object_set_new(j, "mem", json_integer((json_int_t)mem));
	json_object_set_new(j, "dirty_log", json_string(mode == DIRTY_RING ? "ring" : "bitmap"));
	json_object_set_new(j, "pause_us", json_real(bench_round(p)));
	json_object_set_new(j, "floor_us", json_real(bench_round(floor_us)));
	json_object_set_new(j, "ratio", json_real(bench_round(p / floor_us)));
	json_object_set_new(j, "persist_ms", json_real(bench_round(bench_median(persist, reps))));
	json_object_set_new(j, "bytes_written", json_integer((json_int_t)bench_median(bytes, reps)));
	bench_emit(j);
	ret = 0;
out_rm:
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "rewind-bench: could not remove %s\n", dir);
out:
	free(pause);
	free(persist);
	free(bytes);
	free(pages);
	return ret;
}

int bench_ckpt_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mem", required_argument, NULL, 'm' },
		{ "dirty", required_argument, NULL, 'd' },
		{ "dirty-log", required_argument, NULL, 'l' },
		{ "reps", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t mem = 1ULL << 30, list[16], v;
	unsigned nlist = 0, reps = 7;
	enum dirty_mode mode = DIRTY_RING;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (rw_parse_size(optarg, &mem) || mem < (16 << 20) || mem > (64ULL << 30)) {
				fprintf(stderr, "rewind-bench: error: bad --mem '%s'\n", optarg);
				return 2;
			}
			break;
		case 'd':
			if (nlist == 16 || rw_parse_uint(optarg, 1, 1 << 24, &v)) {
				fprintf(stderr, "rewind-bench: error: bad --dirty '%s'\n", optarg);
				return 2;
			}
			list[nlist++] = v;
			break;
		case 'l':
			if (!strcmp(optarg, "ring"))
				mode = DIRTY_RING;
			else if (!strcmp(optarg, "bitmap"))
				mode = DIRTY_BITMAP;
			else {
				fprintf(stderr, "rewind-bench: error: --dirty-log ring|bitmap\n");
				return 2;
			}
			break;
		case 'r':
			if (rw_parse_uint(optarg, 1, 1000, &v)) {
				fprintf(stderr, "rewind-bench: error: bad --reps '%s'\n", optarg);
				return 2;
			}
			reps = (unsigned)v;
			break;
		case 'h':
			printf("usage: rewind-bench ckpt [--mem SIZE] [--dirty N]... [--dirty-log ring|bitmap] [--reps R]\n"
			       "  default: --mem 1G, N = 1 64 4096 65536\n");
			return 0;
		default:
			fprintf(stderr, "rewind-bench: error: unknown option '%s'\n", argv[optind - 1]);
			return 2;
		}
	}
	if (!nlist) {
		static const uint64_t def[] = { 1, 64, 4096, 65536 };
		for (unsigned i = 0; i < 4; i++)
			list[nlist++] = def[i];
	}
	for (unsigned i = 0; i < nlist; i++) {
		if (list[i] * 4096 * 2 > mem) {
			fprintf(stderr, "rewind-bench: error: %llu pages do not fit a %llu-byte guest\n",
				(unsigned long long)list[i], (unsigned long long)mem);
			return 2;
		}
		if (one(mem, list[i], mode, reps))
			return 1;
	}
	return 0;
}
