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
 * The floor loop runs in blocks between blocks of resets and the ratio is
 * the median over the block pairs, so both sides see the same host.
 * lean_resets and lapic_kept: the share of resets that skipped reloading
 * the XCRs and debug registers, and the LAPIC too, because the guest could
 * not have changed them (librewind's rewind_stats).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "log.h"
#include "rewind.h"

#define BLOCKS 10

static int one(uint64_t n, const char *variant, struct bench_exit_loop *floor_loop, unsigned iters)
{
	struct rewind_config c = { 0 };
	struct rewind_vm *vm;
	struct rewind_event ev;
	char args[64];
	double reset_us[BLOCKS], floor_us[BLOCKS], ratio[BLOCKS];
	unsigned per = (iters + BLOCKS - 1) / BLOCKS;
	double copy_us = bench_memcpy_ns_per_page(n, 5) * (double)n / 1e3;

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
	/*
	 * Alternate blocks of the floor loop and of reset iterations, and take
	 * the ratio of each pair: both halves of a pair see the same host.
	 */
	for (unsigned b = 0; b < BLOCKS; b++) {
		double rt = bench_exit_loop_time(floor_loop, per < 200 ? 200 : per);
		uint64_t t0 = rw_now_ns();

		if (rt < 0)
			goto bad_floor;
		for (unsigned i = 0; i < per; i++)
			if (rewind_run(vm, &ev) || ev.kind != REWIND_EV_DONE || rewind_reset(vm))
				goto bad;
		reset_us[b] = (double)(rw_now_ns() - t0) / 1e3 / per;
		floor_us[b] = rt + copy_us;
		ratio[b] = reset_us[b] / floor_us[b];
	}
	struct rewind_stats st;
	rewind_get_stats(vm, &st);
	rewind_destroy(vm);

	double us = bench_median(reset_us, BLOCKS);
	json_t *j = json_object();
	json_object_set_new(j, "bench", json_string("reset"));
	json_object_set_new(j, "dirty_pages", json_integer((json_int_t)n));
	json_object_set_new(j, "variant", json_string(variant));
	json_object_set_new(j, "resets_per_s", json_real(bench_round(1e6 / us)));
	json_object_set_new(j, "reset_us", json_real(bench_round(us)));
	json_object_set_new(j, "floor_us", json_real(bench_round(bench_median(floor_us, BLOCKS))));
	json_object_set_new(j, "ratio", json_real(bench_round(bench_median(ratio, BLOCKS))));
	json_object_set_new(j, "pages_restored", json_integer((json_int_t)st.pages_restored));
	json_object_set_new(j, "hot_pages", json_integer((json_int_t)st.hot_pages));
	json_object_set_new(j, "lean_resets", json_real(bench_round((double)st.lean_resets / (double)st.resets)));
	json_object_set_new(j, "lapic_kept", json_real(bench_round((double)st.lapic_kept_resets / (double)st.resets)));
	bench_emit(j);
	return 0;
bad_floor:
	fprintf(stderr, "rewind-bench: the KVM_RUN floor loop failed\n");
	rewind_destroy(vm);
	return 1;
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
	struct bench_exit_loop *floor_loop = bench_exit_loop_open(bench_guest("hello"), VM_ENTRY_USER);
	if (!floor_loop) {
		fprintf(stderr, "rewind-bench: the KVM_RUN floor loop failed\n");
		return 1;
	}
	int ret = 0;
	for (unsigned i = 0; i < nlist && !ret; i++)
		for (unsigned k = 0; k < nvar && !ret; k++) {
			unsigned it = list[i] >= 4096 ? iters / 8 : iters;
			ret = one(list[i], variants[k], floor_loop, it < BLOCKS ? BLOCKS : it);
		}
	bench_exit_loop_close(floor_loop);
	return ret;
}
