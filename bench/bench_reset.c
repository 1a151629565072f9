/*
 * rewind-bench reset: reset-loop iterations of a fuzzing-style harness.
 *
 * The guest (dirtier, "snapshot" mode) writes N pages at CPL3 and says
 * "done"; the harness resets it to the snapshot: N pages copied back, full
 * vCPU, platform and device state reloaded. One iteration is the guest's
 * run plus the reset. Reported per N and per variant:
 *   hot      learned hot set: pages written every iteration stay writable
 *   tracked  every page re-protected every iteration (no hot set)
 *   ring     dirty ring instead of the bitmap (no hot set possible)
 * floor_us = the cheapest KVM_RUN round trip from CPL3 (measured here, as
 * in `rewind-bench floor`) + a memcpy of N pages; ratio = reset_us / floor.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "log.h"
#include "rewind.h"

static int one(uint64_t n, const char *variant, double rt_us, unsigned iters)
{
	struct rewind_config c = { 0 };
	struct rewind_vm *vm;
	struct rewind_event ev;
	char args[64];
	uint64_t t0, t1;

	snprintf(args, sizeof(args), "pages=%llu snapshot", (unsigned long long)n);
	c.kernel = bench_guest("dirtier");
	c.args = args;
	c.mem_size = (n * 4096 * 2 + (32 << 20) + (2 << 20) - 1) & ~((2ULL << 20) - 1);
	c.no_hot_set = strcmp(variant, "hot") != 0;
	c.dirty_ring = strcmp(variant, "ring") == 0;
	if (rewind_create(&c, &vm) || rewind_run(vm, &ev) || ev.kind != REWIND_EV_SNAPSHOT) {
		fprintf(stderr, "rewind-bench: the reset guest did not reach its snapshot\n");
		return 1;
	}
	for (unsigned i = 0; i < iters / 5 + 10; i++) /* warm up, learn the hot set */
		if (rewind_run(vm, &ev) || ev.kind != REWIND_EV_DONE || rewind_reset(vm))
			goto bad;
	t0 = rw_now_ns();
	for (unsigned i = 0; i < iters; i++)
		if (rewind_run(vm, &ev) || ev.kind != REWIND_EV_DONE || rewind_reset(vm))
			goto bad;
	t1 = rw_now_ns();
	struct rewind_stats st;
	rewind_get_stats(vm, &st);
	rewind_destroy(vm);

	double us = (double)(t1 - t0) / 1e3 / iters;
	double floor_us = rt_us + bench_memcpy_ns_per_page(n, 5) * (double)n / 1e3;
	json_t *j = json_object();
	json_object_set_new(j, "bench", json_string("reset"));
	json_object_set_new(j, "dirty_pages", json_integer((json_int_t)n));
	json_object_set_new(j, "variant", json_string(variant));
	json_object_set_new(j, "resets_per_s", json_real(bench_round(1e6 / us)));
	json_object_set_new(j, "reset_us", json_real(bench_round(us)));
	json_object_set_new(j, "floor_us", json_real(bench_round(floor_us)));
	json_object_set_new(j, "ratio", json_real(bench_round(us / floor_us)));
	json_object_set_new(j, "pages_restored", json_integer((json_int_t)st.pages_restored));
	json_object_set_new(j, "hot_pages", json_integer((json_int_t)st.hot_pages));
	bench_emit(j);
	return 0;
bad:
	fprintf(stderr, "rewind-bench: reset loop failed (event %d: %s)\n", ev.kind, ev.message);
	rewind_destroy(vm);
	return 1;
}

int bench_reset_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dirty", required_argument, NULL, 'd' },
		{ "iters", required_argument, NULL, 'n' },
		{ "variant", required_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t list[16], v;
	unsigned nlist = 0, iters = 2000;
	const char *variants[3] = { "hot", "tracked", "ring" };
	unsigned nvar = 3;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			if (nlist == 16 || rw_parse_uint(optarg, 1, 1 << 20, &v)) {
				fprintf(stderr, "rewind-bench: error: bad --dirty '%s'\n", optarg);
				return 2;
			}
			list[nlist++] = v;
			break;
		case 'n':
			if (rw_parse_uint(optarg, 10, 10000000, &v)) {
				fprintf(stderr, "rewind-bench: error: bad --iters '%s'\n", optarg);
				return 2;
			}
			iters = (unsigned)v;
			break;
		case 'v':
			if (strcmp(optarg, "hot") && strcmp(optarg, "tracked") && strcmp(optarg, "ring")) {
				fprintf(stderr, "rewind-bench: error: --variant hot|tracked|ring\n");
				return 2;
			}
			variants[0] = optarg;
			nvar = 1;
			break;
		case 'h':
			printf("usage: rewind-bench reset [--dirty N]... [--iters I] [--variant hot|tracked|ring]\n"
			       "  default: N = 1 16 256 4096, all variants\n");
			return 0;
		default:
			fprintf(stderr, "rewind-bench: error: unknown option '%s'\n", argv[optind - 1]);
			return 2;
		}
	}
	if (!nlist) {
		static const uint64_t def[] = { 1, 16, 256, 4096 };
		for (unsigned i = 0; i < 4; i++)
			list[nlist++] = def[i];
	}
	double rt = bench_exit_roundtrip_us(bench_guest("hello"), VM_ENTRY_USER, 20000);
	if (rt < 0) {
		fprintf(stderr, "rewind-bench: the KVM_RUN floor loop failed\n");
		return 1;
	}
	for (unsigned i = 0; i < nlist; i++)
		for (unsigned k = 0; k < nvar; k++) {
			unsigned it = list[i] >= 4096 ? iters / 8 : iters;
			if (one(list[i], variants[k], rt, it < 10 ? 10 : it))
				return 1;
		}
	return 0;
}
