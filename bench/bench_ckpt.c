/*
 * rewind-bench ckpt: the cost of an incremental checkpoint.
 *
 * A guest (dirtier) writes N distinct pages over and over in a guest of
 * --mem bytes. After a first, full checkpoint, each checkpoint captures the
 * N pages written since the previous one. Reported per N (medians of
 * --reps checkpoints):
 *   pause_us       the guest was stopped: pause, harvest, state, page copy
 *   floor_us       memcpy of N pages, measured with the guest paused just
 *                  before each checkpoint (bench_copy_floor)
 *   ratio          median over the checkpoints of pause / that floor
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
#include "schedule.h"
#include <pthread.h>

static int one(uint64_t mem, uint64_t n, enum dirty_mode mode, unsigned reps)
{
	char dir[] = "/tmp/rewind-bench-ckpt-XXXXXX", cmd[128];
	struct vm_config cfg;
	struct machine_opts o = { 0 };
	struct machine *m;
	struct ckpt_report rep;
	double *pause = calloc(reps, sizeof(double)), *persist = calloc(reps, sizeof(double));
	double *bytes = calloc(reps, sizeof(double)), *pages = calloc(reps, sizeof(double));
	double *floor = calloc(reps, sizeof(double)), *ratio = calloc(reps, sizeof(double));
	struct bench_copy_floor *cf = bench_copy_floor_open(n);
	int ret = 1;

	if (!mkdtemp(dir) || !pause || !persist || !bytes || !pages || !floor || !ratio || !cf)
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
		/* the floor beside this checkpoint, on the same host, guest stopped */
		if (machine_pause(m)) {
			machine_destroy(m);
			goto out_rm;
		}
		floor[i] = bench_copy_floor_us(cf);
		if (machine_resume(m)) {
			machine_destroy(m);
			goto out_rm;
		}
		if (machine_checkpoint(m, NULL, true, &rep)) {
			fprintf(stderr, "rewind-bench: checkpoint failed: %s\n", rw_strerror(rep.err));
			machine_destroy(m);
			goto out_rm;
		}
		pause[i] = (double)rep.pause_ns / 1e3;
		persist[i] = (double)rep.persist_ns / 1e6;
		bytes[i] = (double)rep.bytes_written;
		pages[i] = (double)rep.dirty_pages;
		ratio[i] = pause[i] / floor[i];
	}
	machine_destroy(m);

	double floor_us = bench_median(floor, reps);
	double p = bench_median(pause, reps);
	json_t *j = json_object();
	json_object_set_new(j, "bench", json_string("ckpt"));
	json_object_set_new(j, "dirty_pages", json_integer((json_int_t)n));
	json_object_set_new(j, "captured_pages", json_integer((json_int_t)bench_median(pages, reps)));
	json_object_set_new(j, "mem", json_integer((json_int_t)mem));
	json_object_set_new(j, "dirty_log", json_string(mode == DIRTY_RING ? "ring" : "bitmap"));
	json_object_set_new(j, "pause_us", json_real(bench_round(p)));
	json_object_set_new(j, "floor_us", json_real(bench_round(floor_us)));
	json_object_set_new(j, "ratio", json_real(bench_round(bench_median(ratio, reps))));
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
	free(floor);
	free(ratio);
	bench_copy_floor_close(cf);
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

/* ------------------------------------------- checkpoints of a writing guest */

struct writes_run {
	double guest_mib_s;      /* mean write throughput the guest measured */
	double pause_us;         /* medians over the checkpoints */
	double persist_ms;
	double bytes;
	unsigned checkpoints;
	unsigned skipped;
};

struct report_log {
	pthread_mutex_t lock;
	double pause[256], persist[256], bytes[256];
	unsigned n;
};

static void log_report(void *opaque, const struct ckpt_report *r)
{
	struct report_log *l = opaque;

	pthread_mutex_lock(&l->lock);
	if (!r->err && r->parent && l->n < 256) { /* the first, full one is not typical */
		l->pause[l->n] = (double)r->pause_ns / 1e3;
		l->persist[l->n] = (double)r->persist_ns / 1e6;
		l->bytes[l->n] = (double)r->bytes_written;
		l->n++;
	}
	pthread_mutex_unlock(&l->lock);
}

/* Mean of the guest's own "writer: period N bytes B us T" lines. */
static double guest_rate(const char *console)
{
	FILE *f = fopen(console, "r");
	char line[256];
	double bytes = 0, us = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long p, b, t;
		if (sscanf(line, "writer: period %llu bytes %llu us %llu", &p, &b, &t) == 3 && p > 1) {
			bytes += (double)b;
			us += (double)t;
		}
	}
	fclose(f);
	return us > 0 ? bytes / (1 << 20) / (us / 1e6) : 0;
}

static int writes_run(const char *dir, unsigned mib, bool ckpt, struct writes_run *out)
{
	char disk[4200], store[4200], console[4200];
	struct vm_config cfg;
	struct machine_opts o = { 0 };
	struct report_log l = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct machine *m;
	struct sched *s = NULL;
	struct vm_stop_info st;

	snprintf(disk, sizeof(disk), "%.3900s/writer-%u.img", dir, mib);
	snprintf(store, sizeof(store), "%.3900s/store-%u", dir, mib);
	snprintf(console, sizeof(console), "%.3900s/writer-%u-%d.txt", dir, mib, ckpt);
	FILE *f = fopen(disk, "w");
	if (!f || ftruncate(fileno(f), 1ULL << 30)) {
		if (f)
			fclose(f);
		return 1;
	}
	fclose(f);
	config_init(&cfg);
	cfg.mem_size = 128 << 20;
	cfg.serial_in = false;
	snprintf(cfg.kernel, sizeof(cfg.kernel), "%.4000s", bench_guest("writer"));
	snprintf(cfg.args, sizeof(cfg.args), "mib=%u period_ms=500 periods=8", mib);
	snprintf(cfg.serial_out, sizeof(cfg.serial_out), "%.4000s", console);
	cfg.ndisks = 1;
	snprintf(cfg.disks[0].path, sizeof(cfg.disks[0].path), "%.4000s", disk);
	o.store_dir = ckpt ? store : NULL;
	o.on_report = log_report;
	o.opaque = &l;
	if (machine_create(&cfg, &o, &m))
		return 1;
	if (machine_start(m) || (ckpt && sched_start(m, 500000000ULL, NULL, NULL, &s))) {
		machine_destroy(m);
		return 1;
	}
	machine_wait(m, &st);
	if (s) {
		struct sched_status ss;
		sched_status(s, &ss);
		out->skipped = (unsigned)ss.skipped;
	}
	sched_stop(s);
	machine_destroy(m);
	unlink(disk);
	if (st.reason != VM_STOP_EXIT || st.exit_code != 0)
		return 1;
	out->guest_mib_s = guest_rate(console);
	out->checkpoints = l.n;
	out->pause_us = bench_median(l.pause, l.n);
	out->persist_ms = bench_median(l.persist, l.n);
	out->bytes = bench_median(l.bytes, l.n);
	return 0;
}

int bench_devices_ckpt(void)
{
	static const unsigned mibs[] = { 0, 16, 256 };
	char dir[] = "/tmp/rewind-bench-writes-XXXXXX", cmd[128];
	int ret = 0;

	if (!mkdtemp(dir))
		return 1;
	for (unsigned i = 0; i < ARRAY_SIZE(mibs) && !ret; i++) {
		struct writes_run plain = { 0 }, ck = { 0 };

		if (writes_run(dir, mibs[i], false, &plain) || writes_run(dir, mibs[i], true, &ck)) {
			fprintf(stderr, "rewind-bench: the writer guest failed (%u MiB)\n", mibs[i]);
			ret = 1;
			break;
		}
		json_t *j = json_object();
		json_object_set_new(j, "bench", json_string("devices.ckpt"));
		json_object_set_new(j, "write_mib_per_period", json_integer(mibs[i]));
		json_object_set_new(j, "period_ms", json_integer(500));
		json_object_set_new(j, "checkpoints", json_integer(ck.checkpoints));
		json_object_set_new(j, "skipped", json_integer(ck.skipped));
		json_object_set_new(j, "pause_us", json_real(bench_round(ck.pause_us)));
		json_object_set_new(j, "persist_ms", json_real(bench_round(ck.persist_ms)));
		json_object_set_new(j, "bytes_per_checkpoint", json_integer((json_int_t)ck.bytes));
		json_object_set_new(j, "guest_mib_s", json_real(bench_round(ck.guest_mib_s)));
		json_object_set_new(j, "guest_mib_s_no_ckpt", json_real(bench_round(plain.guest_mib_s)));
		bench_emit(j);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "rewind-bench: could not remove %s\n", dir);
	return ret;
}
