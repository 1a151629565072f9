/*
 * cli_demo.c - `rewind demo`.
 *
 * Runs the SDK's demo workload (guest/programs/demo.c: evolving state in
 * memory, a log appended to a disk, one line per step with a hash of the
 * state) with two scratch disks and periodic checkpoints, rolls back to an
 * earlier checkpoint, lets it continue, and checks that the steps after the
 * rollback repeat the original state hashes and that the disk log is back
 * where it was at that checkpoint. Then it prints a summary: checkpoints,
 * pause p50/p99, bytes stored against guest RAM, dedup ratio and the guest
 * slowdown from dirty tracking (measured in two short calibration runs).
 */
#include "cli_demo.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "machine.h"
#include "schedule.h"
#include "store.h"
#include "util.h"

#define DEMO_MEM (64ULL << 20)
#define DEMO_EVERY_NS (200ULL * 1000000ULL)
#define DEMO_STEPS_BEFORE 100   /* steps before the rollback */
#define DEMO_STEPS_AFTER 40     /* steps past the rollback point's original run */
#define DEMO_MAX_STEPS 4096
#define DEMO_TIMEOUT_S 50

struct step_rec {
	bool seen;
	uint64_t hash;
	uint64_t log;
};

struct demo {
	bool json;
	char dir[PATH_MAX];
	char store[PATH_MAX];
	char console[PATH_MAX];
	char disk0[PATH_MAX], disk1[PATH_MAX];
	char guest[PATH_MAX];

	/* console tail */
	FILE *con;
	struct step_rec orig[DEMO_MAX_STEPS + 1];   /* first run */
	uint64_t last_step;
	bool rolled_back;
	uint64_t first_after;                        /* first step printed after the rollback */
	uint64_t matched, compared, mismatched;

	/* checkpoints (writer thread) */
	pthread_mutex_t lock;
	double pauses_us[4096];
	unsigned npauses;
	uint64_t ids[4096];
	uint64_t at_step[4096];
	unsigned nids;
	uint64_t failed;
};

/* -------------------------------------------------------------- helpers */

static int find_guest(char *out, size_t len)
{
	char exe[PATH_MAX], *slash;
	ssize_t n;

	snprintf(out, len, "%s/demo.elf", REWIND_GUEST_DIR);
	if (access(out, R_OK) == 0)
		return 0;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = 0;
		slash = strrchr(exe, '/');
		if (slash) {
			*slash = 0;
			snprintf(out, len, "%.3900s/guest/demo.elf", exe);
			if (access(out, R_OK) == 0)
				return 0;
			snprintf(out, len, "%.3900s/../share/rewind/guest/demo.elf", exe);
			if (access(out, R_OK) == 0)
				return 0;
		}
	}
	return -ENOENT;
}

static int make_disk(const char *path, uint64_t size)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	int ret = ftruncate(fileno(f), (off_t)size) ? -errno : 0;
	fclose(f);
	return ret;
}

static void on_report(void *opaque, const struct ckpt_report *r)
{
	struct demo *d = opaque;

	pthread_mutex_lock(&d->lock);
	if (r->err) {
		d->failed++;
	} else {
		if (d->npauses < 4096)
			d->pauses_us[d->npauses++] = (double)r->pause_ns / 1e3;
		if (d->nids < 4096) {
			d->ids[d->nids] = r->id;
			d->at_step[d->nids++] = d->last_step;
		}
	}
	pthread_mutex_unlock(&d->lock);
}

/* Read new complete console lines; returns the highest step seen so far. */
static uint64_t tail(struct demo *d)
{
	char line[256];

	clearerr(d->con);
	while (fgets(line, sizeof(line), d->con)) {
		uint64_t n, hash, log;

		if (!strchr(line, '\n')) /* partial: read again later */
			break;
		if (sscanf(line, "step %" SCNu64 " state %" SCNx64 " log %" SCNu64, &n, &hash, &log) != 3 ||
		    n > DEMO_MAX_STEPS)
			continue;
		pthread_mutex_lock(&d->lock);
		if (!d->rolled_back) {
			d->orig[n] = (struct step_rec){ true, hash, log };
		} else {
			if (!d->first_after)
				d->first_after = n;
			if (d->orig[n].seen) {
				d->compared++;
				if (d->orig[n].hash == hash && d->orig[n].log == log)
					d->matched++;
				else
					d->mismatched++;
			}
		}
		d->last_step = n;
		pthread_mutex_unlock(&d->lock);
		if (!d->json)
			printf("  %s", line);
	}
	long pos = ftell(d->con);
	if (pos >= 0)
		fseek(d->con, pos, SEEK_SET);
	return d->last_step;
}

/* Wait until the console shows step n (or the VM stops / time runs out). */
static bool wait_step(struct demo *d, struct machine *m, uint64_t n, uint64_t deadline)
{
	while (tail(d) < n) {
		if (vm_stopped(machine_vm(m)) || rw_now_ns() > deadline)
			return false;
		usleep(10000);
	}
	return true;
}

/* The record count in the demo's disk log header (sector 0 of disk "log"). */
static int log_count(struct machine *m, uint64_t *count)
{
	uint8_t block[4096];
	int ret = machine_read_disk_block(m, "log", 0, block);

	if (ret)
		return ret;
	if (memcmp(block, "RWLOG", 5) != 0) {
		*count = 0;
		return 0;
	}
	memcpy(count, block + 8, 8);
	return 0;
}

/* -------------------------------------------------------- calibration */

/* Seconds for the demo guest to run `steps` steps without sleeping. */
static double timed_run(struct demo *d, bool tracked, unsigned steps)
{
	struct vm_config cfg;
	struct machine_opts o = { 0 };
	struct machine *m;
	struct sched *s = NULL;
	struct vm_stop_info st;
	char store[PATH_MAX + 16], disk[PATH_MAX + 16];

	snprintf(store, sizeof(store), "%.3900s/calibration-store", d->dir);
	snprintf(disk, sizeof(disk), "%.3900s/calibration.img", d->dir);
	if (make_disk(disk, 8 << 20))
		return -1;
	config_init(&cfg);
	cfg.mem_size = DEMO_MEM;
	cfg.serial_in = false;
	snprintf(cfg.kernel, sizeof(cfg.kernel), "%s", d->guest);
	snprintf(cfg.args, sizeof(cfg.args), "steps=%u sleep_ms=0", steps);
	snprintf(cfg.serial_out, sizeof(cfg.serial_out), "/dev/null");
	cfg.ndisks = 1;
	snprintf(cfg.disks[0].path, sizeof(cfg.disks[0].path), "%.4000s", disk);
	snprintf(cfg.disks[0].id, sizeof(cfg.disks[0].id), "log");
	o.store_dir = tracked ? store : NULL;
	if (machine_create(&cfg, &o, &m))
		return -1;
	uint64_t t0 = rw_now_ns();
	if (machine_start(m) || (tracked && sched_start(m, 50000000ULL, NULL, NULL, &s))) {
		machine_destroy(m);
		return -1;
	}
	machine_wait(m, &st);
	double secs = (double)(rw_now_ns() - t0) / 1e9;
	sched_stop(s);
	machine_destroy(m);
	return st.reason == VM_STOP_EXIT && st.exit_code == 0 ? secs : -1;
}

/* ----------------------------------------------------------------- main */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(double *v, unsigned n, double p)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	unsigned i = (unsigned)(p * (n - 1) + 0.5);
	return v[i];
}


static void usage(FILE *f)
{
	fprintf(f, "usage: rewind demo [--store DIR] [--json]\n"
		   "  Runs the demo workload with two scratch disks and a checkpoint every 200 ms,\n"
		   "  rolls back to an earlier checkpoint, and checks that the guest repeats its\n"
		   "  steps and that its disk log is back where it was. --store DIR keeps the\n"
		   "  checkpoints; --json prints only a machine-readable summary.\n");
}

int cli_demo_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "store", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct demo *d = calloc(1, sizeof(*d));
	const char *store_arg = NULL;
	struct vm_config cfg;
	struct machine_opts o = { 0 };
	struct machine *m = NULL;
	struct sched *s = NULL;
	struct vm_stop_info st;
	int c, status = 1;
	bool ok = false;

	if (!d)
		return 1;
	pthread_mutex_init(&d->lock, NULL);
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			store_arg = optarg;
			break;
		case 'j':
			d->json = true;
			break;
		case 'h':
			usage(stdout);
			free(d);
			return 0;
		default:
			fprintf(stderr, "rewind: error: unknown option '%s' (see rewind demo --help)\n",
				argv[optind - 1]);
			free(d);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "rewind: error: unexpected argument '%s' (see rewind demo --help)\n", argv[optind]);
		free(d);
		return 2;
	}
	if (find_guest(d->guest, sizeof(d->guest))) {
		fprintf(stderr, "rewind: error: the demo guest (demo.elf) is not built: build rewind "
				"with cmake first\n");
		free(d);
		return 1;
	}
	snprintf(d->dir, sizeof(d->dir), "%s/rewind-demo-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(d->dir)) {
		fprintf(stderr, "rewind: error: cannot create a scratch directory: %s\n", strerror(errno));
		free(d);
		return 1;
	}
	snprintf(d->store, sizeof(d->store), "%s", store_arg ? store_arg : "");
	if (!store_arg)
		snprintf(d->store, sizeof(d->store), "%.4000s/store", d->dir);
	snprintf(d->console, sizeof(d->console), "%.4000s/console.txt", d->dir);
	snprintf(d->disk0, sizeof(d->disk0), "%.4000s/log.img", d->dir);
	snprintf(d->disk1, sizeof(d->disk1), "%.4000s/scratch.img", d->dir);

	/* calibration: the same work without and with dirty tracking */
	double t_plain = timed_run(d, false, 200), t_tracked = timed_run(d, true, 200);
	if (t_plain <= 0 || t_tracked <= 0) {
		fprintf(stderr, "rewind: error: the demo guest failed to run (calibration)\n");
		goto out;
	}

	if (make_disk(d->disk0, 8 << 20) || make_disk(d->disk1, 4 << 20)) {
		fprintf(stderr, "rewind: error: cannot create the scratch disks in %s\n", d->dir);
		goto out;
	}
	config_init(&cfg);
	cfg.mem_size = DEMO_MEM;
	cfg.serial_in = false;
	snprintf(cfg.kernel, sizeof(cfg.kernel), "%s", d->guest);
	snprintf(cfg.args, sizeof(cfg.args), "steps=0 sleep_ms=20");
	snprintf(cfg.serial_out, sizeof(cfg.serial_out), "%s", d->console);
	cfg.ndisks = 2;
	snprintf(cfg.disks[0].path, sizeof(cfg.disks[0].path), "%s", d->disk0);
	snprintf(cfg.disks[0].id, sizeof(cfg.disks[0].id), "log");
	snprintf(cfg.disks[1].path, sizeof(cfg.disks[1].path), "%s", d->disk1);
	snprintf(cfg.disks[1].id, sizeof(cfg.disks[1].id), "scratch");
	o.store_dir = d->store;
	o.on_report = on_report;
	o.opaque = d;
	if (machine_create(&cfg, &o, &m))
		goto out;
	d->con = fopen(d->console, "r");
	if (!d->con || machine_start(m) || sched_start(m, DEMO_EVERY_NS, NULL, NULL, &s)) {
		fprintf(stderr, "rewind: error: cannot start the demo VM\n");
		goto out;
	}
	if (!d->json)
		printf("rewind demo: %s, 64 MiB RAM, disks log (8 MiB) and scratch (4 MiB), a checkpoint "
		       "every 200 ms into %s\n", d->guest, d->store);
	uint64_t deadline = rw_now_ns() + DEMO_TIMEOUT_S * 1000000000ULL;
	if (!wait_step(d, m, DEMO_STEPS_BEFORE, deadline)) {
		fprintf(stderr, "rewind: error: the demo guest stopped before step %d\n", DEMO_STEPS_BEFORE);
		goto out;
	}

	/* roll back to the checkpoint taken closest to half way */
	uint64_t target = 0, target_step = 0, best = UINT64_MAX;
	pthread_mutex_lock(&d->lock);
	for (unsigned i = 0; i < d->nids; i++) {
		uint64_t dist = d->at_step[i] > DEMO_STEPS_BEFORE / 2 ? d->at_step[i] - DEMO_STEPS_BEFORE / 2
								       : DEMO_STEPS_BEFORE / 2 - d->at_step[i];
		if (dist < best) {
			best = dist;
			target = d->ids[i];
			target_step = d->at_step[i];
		}
	}
	pthread_mutex_unlock(&d->lock);
	if (!target) {
		fprintf(stderr, "rewind: error: no checkpoint was taken\n");
		goto out;
	}
	uint64_t log_before = 0, log_after = 0;
	if (machine_pause(m) || log_count(m, &log_before)) {
		fprintf(stderr, "rewind: error: cannot read the demo's disk log\n");
		goto out;
	}
	uint64_t before_step = tail(d);
	if (!d->json)
		printf("rewind demo: at step %" PRIu64 " (disk log: %" PRIu64 " records), rolling back to "
		       "checkpoint %" PRIu64 " (taken around step %" PRIu64 ")\n",
		       before_step, log_before, target, target_step);
	pthread_mutex_lock(&d->lock);
	d->rolled_back = true;
	pthread_mutex_unlock(&d->lock);
	if (machine_rollback(m, target) || log_count(m, &log_after) || machine_resume(m)) {
		fprintf(stderr, "rewind: error: the rollback to checkpoint %" PRIu64 " failed\n", target);
		goto out;
	}
	if (!d->json)
		printf("rewind demo: rolled back; the disk log now holds %" PRIu64 " records\n", log_after);
	if (!wait_step(d, m, before_step + DEMO_STEPS_AFTER, deadline)) {
		fprintf(stderr, "rewind: error: the demo guest did not continue after the rollback\n");
		goto out;
	}
	sched_stop(s);
	s = NULL;
	machine_quit(m);
	machine_wait(m, &st);

	/* the verdict and the summary */
	uint64_t k = d->first_after ? d->first_after - 1 : 0;
	/*
	 * The disk log must be where the guest was at the checkpoint: k records
	 * (the last step printed before it), or k + 1 if the checkpoint fell
	 * between the guest's write of step k+1's header and its step line.
	 */
	ok = d->mismatched == 0 && d->compared > 0 && (log_after == k || log_after == k + 1) &&
	     log_before > log_after;
	struct store *sto = NULL;
	struct store_stats ss = { 0 };
	if (store_open(d->store, NULL, &sto) == 0) {
		if (store_stats(sto, &ss))
			memset(&ss, 0, sizeof(ss));
		store_close(sto);
	}
	pthread_mutex_lock(&d->lock);
	double p50 = pct(d->pauses_us, d->npauses, 0.5), p99 = pct(d->pauses_us, d->npauses, 0.99);
	unsigned taken = d->npauses;
	pthread_mutex_unlock(&d->lock);
	double slowdown = (t_tracked / t_plain - 1) * 100;
	uint64_t stored = ss.page_bytes + ss.node_bytes + ss.record_bytes;

	if (d->json) {
		json_t *j = json_object();
		json_object_set_new(j, "demo", json_string(ok ? "ok" : "failed"));
		json_object_set_new(j, "checkpoints", json_integer(taken));
		json_object_set_new(j, "checkpoints_failed", json_integer((json_int_t)d->failed));
		json_object_set_new(j, "pause_p50_us", json_real(p50));
		json_object_set_new(j, "pause_p99_us", json_real(p99));
		json_object_set_new(j, "bytes_stored", json_integer((json_int_t)stored));
		json_object_set_new(j, "guest_ram_bytes", json_integer((json_int_t)DEMO_MEM));
		json_object_set_new(j, "stored_vs_ram", json_real((double)stored / (double)DEMO_MEM));
		json_object_set_new(j, "dedup_ratio", json_real(ss.dedup_ratio));
		json_object_set_new(j, "slowdown_pct", json_real(slowdown));
		json_t *rb = json_object();
		json_object_set_new(rb, "checkpoint", json_integer((json_int_t)target));
		json_object_set_new(rb, "from_step", json_integer((json_int_t)before_step));
		json_object_set_new(rb, "to_step", json_integer((json_int_t)k));
		json_object_set_new(rb, "steps_compared", json_integer((json_int_t)d->compared));
		json_object_set_new(rb, "steps_matched", json_integer((json_int_t)d->matched));
		json_object_set_new(rb, "disk_log_before", json_integer((json_int_t)log_before));
		json_object_set_new(rb, "disk_log_after", json_integer((json_int_t)log_after));
		json_object_set_new(j, "rollback", rb);
		json_object_set_new(j, "store", json_string(store_arg ? d->store : ""));
		char *line = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
		if (line)
			printf("%s\n", line);
		free(line);
		json_decref(j);
	} else {
		char a[32], b[32];
		rw_format_size(stored, a, sizeof(a));
		rw_format_size(DEMO_MEM, b, sizeof(b));
		printf("rewind demo: after the rollback the guest went on from step %" PRIu64 ": %" PRIu64
		       " of %" PRIu64 " repeated steps have the original state hashes and log positions; "
		       "the disk log went back from %" PRIu64 " to %" PRIu64 " records\n",
		       k + 1, d->matched, d->compared, log_before, log_after);
		printf("\nsummary\n");
		printf("  checkpoints     %u (every 200 ms), %" PRIu64 " failed\n", taken, d->failed);
		printf("  pause           p50 %.0f us, p99 %.0f us\n", p50, p99);
		printf("  stored          %s for %s of guest RAM plus 12 MiB of disks (x%.3f of RAM)\n", a, b,
		       (double)stored / (double)DEMO_MEM);
		printf("  dedup ratio     %.2f (logical pages / stored pages)\n", ss.dedup_ratio);
		printf("  guest slowdown  %.0f%% with dirty tracking and a checkpoint every 50 ms\n", slowdown);
		printf("  result          %s\n", ok ? "ok: the rollback repeated the guest's history"
					       : "FAILED: the guest did not repeat its history");
		if (store_arg)
			printf("  store           %s (rewind ls --store %s)\n", d->store, d->store);
	}
	status = ok ? 0 : 1;
out:
	sched_stop(s);
	machine_destroy(m);
	if (d->con)
		fclose(d->con);
	char cmd[PATH_MAX + 32];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->dir);
	if (system(cmd) != 0)
		rw_warn("could not remove %s", d->dir);
	pthread_mutex_destroy(&d->lock);
	free(d);
	return status;
}
