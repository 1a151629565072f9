/*
 * main.c - the rewind command line.
 *
 * Exit status: the guest's exit code for `run`; 2 for a usage error (bad
 * flag, missing or unreadable file, not a kernel); 1 when rewind itself
 * fails; 3 when the guest reported a crash; 4 when the guest died (triple
 * fault, emulation failure, failed VM entry).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <jansson.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli_args.h"
#include "cli_ctl.h"
#include "cli_demo.h"
#include "cli_fuzz.h"
#include "cli_store.h"
#include "control.h"
#include "disk.h"
#include "machine.h"
#include "schedule.h"
#include "store.h"
#include "err.h"
#include "log.h"
#include "util.h"
#include "vm.h"

#define EXIT_CRASH 3
#define EXIT_FATAL 4

static void usage(FILE *f)
{
	fprintf(f,
		"usage: rewind COMMAND [OPTIONS]\n"
		"\n"
		"The demo (periodic checkpoints of a guest with disks, a rollback, a summary):\n"
		"  rewind demo [--store DIR] [--json]\n"
		"\n"
		"Run a VM, or restore one from a checkpoint:\n"
		"  rewind run --kernel FILE [--mem SIZE] [--cpus N] [--args STR]\n"
		"             [--entry kernel|user] [--serial-out FILE] [--no-stdin]\n"
		"             [--disk PATH[,id=NAME][,ro][,engine=uring|sync]]...\n"
		"             [--store DIR [--dirty-log ring|bitmap] [--relaxed-sync] [--json]]\n"
		"             [--control PATH] [--checkpoint-every DURATION [--keep N]]\n"
		"  rewind restore --store DIR ID|LABEL [--serial-out FILE] [--no-stdin] [--json]\n"
		"             [--control PATH] [--disk NAME=PATH]...\n"
		"      --kernel FILE     guest image (a static ELF64, e.g. from the guest SDK)\n"
		"      --mem SIZE        guest RAM, 16M to 64G, suffix K, M or G (default 64M)\n"
		"      --cpus N          vCPUs, 1 to 64 (default 1)\n"
		"      --args STR        argument string handed to the guest program\n"
		"      --entry MODE      kernel: start at CPL0 in the SDK kernel (default);\n"
		"                        user: the VMM enters the CPL3 program directly\n"
		"      --serial-out FILE write the guest console to FILE instead of stdout\n"
		"      --no-stdin        do not feed stdin to the guest console\n"
		"      --disk SPEC       a virtio-blk disk (up to 8). PATH is never written:\n"
		"                        writes go to a copy-on-write overlay that checkpoints\n"
		"                        capture and rollbacks restore. id=NAME names it (the\n"
		"                        record is dev/virtio-blk/NAME), ro makes it read-only,\n"
		"                        engine=sync uses pread/pwrite instead of io_uring\n"
		"      --store DIR       checkpoint store (created if missing); the guest and\n"
		"                        rewind ctl can then take checkpoints and roll back\n"
		"      --dirty-log MODE  ring (default): KVM's per-vCPU dirty ring; bitmap:\n"
		"                        KVM's dirty bitmap (use it for guests with heavy\n"
		"                        CPL0 code on hosts that emulate CPL0, see README)\n"
		"      --relaxed-sync    commit checkpoints without the final metadata sync:\n"
		"                        faster, but a power loss or OS crash may undo the\n"
		"                        last checkpoints (a crash of rewind alone loses none)\n"
		"      --json            checkpoint reports as JSON lines on stderr\n"
		"      --control PATH    serve the control socket at PATH (mode 0600; see rewind ctl)\n"
		"      --checkpoint-every DURATION  take a checkpoint every DURATION (200ms, 5s);\n"
		"                        one still persisting when the next is due makes\n"
		"                        that one skipped (and reported), never queued\n"
		"      --keep N          keep the N most recent periodic checkpoints of this run;\n"
		"                        older ones are deleted and their chunks freed (never\n"
		"                        one taken by hand, by the guest or pinned: ctl pin ID)\n"
		"  restore recreates the VM from checkpoint ID (or the one LABEL names) alone and\n"
		"  continues it; --disk NAME=PATH opens one of its disks where it is now (NAME as\n"
		"  rewind inspect shows it).\n"
		"\n"
		"Inspect and manage a checkpoint store:\n");
	cli_store_usage(f);
	fprintf(f, "\nControl a running VM (see --control):\n");
	cli_ctl_usage(f);
	fprintf(f, "\nFuzz with AFL++ (afl-fuzz -X; README \"Fuzzing with AFL++\"):\n");
	cli_fuzz_usage(f);
	fprintf(f,
		"\n"
		"Common options:\n"
		"  --log-level LEVEL     error, warn (default), info or debug\n"
		"  -h, --help            this help\n"
		"  --version             print the version\n"
		"\n"
		"Exit status: the guest's exit code; 2 usage error; 1 rewind failed;\n"
		"3 the guest reported a crash; 4 the guest died (triple fault, emulation failure).\n");
}

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "rewind: error: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, " (see rewind --help)\n");
	return EXIT_USAGE;
}

/* An input the user named cannot be used: say so, exit 2. */
static int input_error(const char *what, const char *path, const char *why)
{
	fprintf(stderr, "rewind: error: %s '%s': %s\n", what, path, why);
	return EXIT_USAGE;
}

/* --control PATH: its directory exists and the path fits a socket address. */
static int check_control_path(const char *path)
{
	if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return input_error("--control", path, "too long for a Unix socket (at most 107 bytes)");
	return cli_check_output_file(NULL, "--control", path);
}

/* Map how a VM stopped to the process exit status, reporting it once. */
static int report_stop(const struct vm_stop_info *st)
{
	switch (st->reason) {
	case VM_STOP_EXIT:
		return st->exit_code;
	case VM_STOP_CRASH:
		rw_error("%s", st->msg);
		return EXIT_CRASH;
	case VM_STOP_FATAL:
		rw_error("%s", st->msg);
		return EXIT_FATAL;
	case VM_STOP_REQUEST:
		if (st->msg[0])
			rw_info("%s", st->msg);
		return 0;
	case VM_STOP_ERROR:
	default:
		rw_error("%s", st->msg[0] ? st->msg : "the VM stopped for an unknown reason");
		return 1;
	}
}

enum {
	OPT_KERNEL = 0x100,
	OPT_MEM,
	OPT_CPUS,
	OPT_ARGS,
	OPT_ENTRY,
	OPT_SERIAL_OUT,
	OPT_NO_STDIN,
	OPT_LOG_LEVEL,
	OPT_STORE,
	OPT_DIRTY_LOG,
	OPT_JSON,
	OPT_RELAXED_SYNC,
	OPT_CONTROL,
	OPT_EVERY,
	OPT_KEEP,
	OPT_DISK,
};

static const struct option run_opts[] = {
	{ "kernel", required_argument, NULL, OPT_KERNEL },
	{ "mem", required_argument, NULL, OPT_MEM },
	{ "cpus", required_argument, NULL, OPT_CPUS },
	{ "args", required_argument, NULL, OPT_ARGS },
	{ "entry", required_argument, NULL, OPT_ENTRY },
	{ "serial-out", required_argument, NULL, OPT_SERIAL_OUT },
	{ "no-stdin", no_argument, NULL, OPT_NO_STDIN },
	{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
	{ "store", required_argument, NULL, OPT_STORE },
	{ "dirty-log", required_argument, NULL, OPT_DIRTY_LOG },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "relaxed-sync", no_argument, NULL, OPT_RELAXED_SYNC },
	{ "control", required_argument, NULL, OPT_CONTROL },
	{ "checkpoint-every", required_argument, NULL, OPT_EVERY },
	{ "keep", required_argument, NULL, OPT_KEEP },
	{ "disk", required_argument, NULL, OPT_DISK },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* Everything `run` and `restore` are told on the command line. */
struct run_args {
	bool restore;
	uint64_t restore_id;
	const char *restore_arg;  /* an id or a label */
	struct machine_disk_path moved[RW_MAX_DISKS]; /* restore --disk NAME=PATH */
	char moved_path[RW_MAX_DISKS][RW_PATH_MAX];
	unsigned nmoved;
	struct vm_config cfg;
	bool vm_flags;            /* a flag that only `run` takes was given */
	struct machine_opts mo;
	bool json;
	const char *control;
	uint64_t every_ns;        /* --checkpoint-every, 0 = off */
	unsigned keep;            /* --keep, 0 = all */
	struct sched *sched;
};

/* One line per checkpoint on stderr (stdout is the guest's console). */
static void print_report(void *opaque, const struct ckpt_report *r)
{
	const struct run_args *a = opaque;

	if (a->json) {
		json_t *o = json_object();
		json_object_set_new(o, "event", json_string("checkpoint"));
		if (r->err) {
			json_object_set_new(o, "ok", json_false());
			json_object_set_new(o, "error", json_string(rw_errname(r->err)));
			json_object_set_new(o, "message", json_string(rw_strerror(r->err)));
		} else {
			json_object_set_new(o, "ok", json_true());
			json_object_set_new(o, "id", json_integer((json_int_t)r->id));
		}
		json_object_set_new(o, "parent", json_integer((json_int_t)r->parent));
		json_object_set_new(o, "label", json_string(r->label));
		json_object_set_new(o, "dirty_pages", json_integer((json_int_t)r->dirty_pages));
		json_object_set_new(o, "new_chunks", json_integer((json_int_t)r->new_chunks));
		json_object_set_new(o, "dedup_hits", json_integer((json_int_t)r->dedup_hits));
		json_object_set_new(o, "zero_pages", json_integer((json_int_t)r->zero_pages));
		json_object_set_new(o, "bytes_written", json_integer((json_int_t)r->bytes_written));
		json_object_set_new(o, "pause_us", json_real((double)r->pause_ns / 1e3));
		json_object_set_new(o, "persist_ms", json_real((double)r->persist_ns / 1e6));
		char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
		if (line)
			fprintf(stderr, "%s\n", line);
		free(line);
		json_decref(o);
		return;
	}
	if (r->err)
		fprintf(stderr, "rewind: checkpoint (parent %" PRIu64 ") failed: %s\n", r->parent,
			rw_strerror(r->err));
	else {
		char written[32];

		rw_format_size(r->bytes_written, written, sizeof(written));
		fprintf(stderr,
			"rewind: checkpoint %" PRIu64 " (parent %" PRIu64 "): %" PRIu64 " dirty pages, %" PRIu64
			" new chunks, %" PRIu64 " dedup hits, %" PRIu64 " zero pages, %s written, "
			"pause %.0f us, persist %.1f ms\n",
			r->id, r->parent, r->dirty_pages, r->new_chunks, r->dedup_hits, r->zero_pages,
			written, (double)r->pause_ns / 1e3, (double)r->persist_ns / 1e6);
	}
}

/* A periodic checkpoint that could not be taken. */
static void print_skip(void *opaque, int err)
{
	const struct run_args *a = opaque;

	if (a->json)
		fprintf(stderr, "{\"event\":\"checkpoint\",\"ok\":false,\"skipped\":%s,\"error\":\"%s\"}\n",
			err == RW_EBUSY ? "true" : "false", rw_errname(err));
	else if (err == RW_EBUSY)
		fprintf(stderr, "rewind: periodic checkpoint skipped: the previous one is still persisting\n");
	else
		fprintf(stderr, "rewind: periodic checkpoint failed: %s\n", rw_strerror(err));
}

/* The schedule's fields in the control socket's status reply. */
static void status_extra(void *opaque, json_t *o)
{
	const struct run_args *a = opaque;
	json_t *s = json_object();

	json_object_set_new(s, "every_ms", json_real((double)a->every_ns / 1e6));
	json_object_set_new(s, "keep", json_integer(a->keep));
	if (a->sched) {
		struct sched_status ss;
		sched_status(a->sched, &ss);
		json_object_set_new(s, "taken", json_integer((json_int_t)ss.taken));
		json_object_set_new(s, "skipped", json_integer((json_int_t)ss.skipped));
		json_object_set_new(s, "failed", json_integer((json_int_t)ss.failed));
		/* whole microseconds: a reading, not a float's last digits */
		json_object_set_new(s, "next_in_ms", json_real((double)(ss.next_in_ns / 1000) / 1e3));
	}
	json_object_set_new(o, "schedule", s);
}

/* Parse `run`/`restore` options. Returns 0 or the exit status to use. */
static int parse_run(int argc, char **argv, struct run_args *a)
{
	struct vm_config *cfg = &a->cfg;
	struct stat st;
	uint64_t v;
	int c;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":h", run_opts, NULL)) != -1) {
		switch (c) {
		case OPT_KERNEL:
			if (strlen(optarg) >= sizeof(cfg->kernel))
				return usage_error("--kernel path too long: %s", optarg);
			strcpy(cfg->kernel, optarg);
			a->vm_flags = true;
			break;
		case OPT_MEM:
			if (rw_parse_size(optarg, &v) || v < RW_MEM_MIN || v > RW_MEM_MAX)
				return usage_error("--mem must be between 16M and 64G (got '%s')", optarg);
			if (v % (2 * MiB))
				return usage_error("--mem must be a multiple of 2M (got '%s')", optarg);
			cfg->mem_size = v;
			a->vm_flags = true;
			break;
		case OPT_CPUS:
			if (rw_parse_uint(optarg, 1, RW_MAX_CPUS, &v))
				return usage_error("--cpus must be between 1 and 64 (got '%s')", optarg);
			cfg->ncpus = (unsigned)v;
			a->vm_flags = true;
			break;
		case OPT_ARGS:
			if (strlen(optarg) >= sizeof(cfg->args))
				return usage_error("--args is longer than 4095 bytes%s", "");
			strcpy(cfg->args, optarg);
			a->vm_flags = true;
			break;
		case OPT_ENTRY:
			if (strcmp(optarg, "kernel") == 0)
				cfg->entry = VM_ENTRY_KERNEL;
			else if (strcmp(optarg, "user") == 0)
				cfg->entry = VM_ENTRY_USER;
			else
				return usage_error("--entry must be 'kernel' or 'user' (got '%s')", optarg);
			a->vm_flags = true;
			break;
		case OPT_SERIAL_OUT:
			if (strlen(optarg) >= sizeof(cfg->serial_out))
				return usage_error("--serial-out path too long: %s", optarg);
			strcpy(cfg->serial_out, optarg);
			break;
		case OPT_NO_STDIN:
			cfg->serial_in = false;
			a->mo.console_stdin = false;
			break;
		case OPT_LOG_LEVEL: {
			enum rw_log_level l;
			if (rw_log_parse_level(optarg, &l))
				return usage_error("unknown --log-level '%s'", optarg);
			rw_log_set_level(l);
			break;
		}
		case OPT_STORE:
			a->mo.store_dir = optarg;
			break;
		case OPT_DIRTY_LOG:
			if (strcmp(optarg, "ring") == 0)
				a->mo.dirty = DIRTY_RING;
			else if (strcmp(optarg, "bitmap") == 0)
				a->mo.dirty = DIRTY_BITMAP;
			else
				return usage_error("--dirty-log must be 'ring' or 'bitmap' (got '%s')", optarg);
			break;
		case OPT_JSON:
			a->json = true;
			break;
		case OPT_RELAXED_SYNC:
			a->mo.relaxed_sync = true;
			break;
		case OPT_CONTROL:
			a->control = optarg;
			break;
		case OPT_EVERY:
			if (rw_parse_duration(optarg, &a->every_ns) || a->every_ns < 1000000ULL)
				return usage_error("--checkpoint-every needs a duration of at least 1ms, "
						   "such as 200ms or 5s (got '%s')", optarg);
			break;
		case OPT_DISK: {
			char why[256];
			if (a->restore) {
				/* NAME=PATH: a disk of the checkpoint that has moved */
				char *eq = strchr(optarg, '=');
				if (!eq || eq == optarg || !eq[1])
					return usage_error("restore --disk takes NAME=PATH (the disk's "
							   "name as rewind inspect shows it), not '%s'",
							   optarg);
				if (a->nmoved == RW_MAX_DISKS)
					return usage_error("at most 8 --disk options%s", "");
				*eq = 0;
				if (cli_check_input_file(NULL, "--disk", eq + 1))
					return EXIT_USAGE;
				if (!realpath(eq + 1, a->moved_path[a->nmoved]))
					return input_error("--disk", eq + 1, strerror(errno));
				a->moved[a->nmoved].name = optarg;
				a->moved[a->nmoved].path = a->moved_path[a->nmoved];
				a->nmoved++;
				break;
			}
			if (cfg->ndisks == RW_MAX_DISKS)
				return usage_error("at most 8 --disk options%s", "");
			if (disk_config_parse(optarg, &cfg->disks[cfg->ndisks], why, sizeof(why))) {
				fprintf(stderr, "rewind: error: --disk %s: %s (see rewind --help)\n", optarg, why);
				return EXIT_USAGE;
			}
			cfg->ndisks++;
			a->vm_flags = true;
			break;
		}
		case OPT_KEEP:
			if (rw_parse_uint(optarg, 1, 1000000, &v))
				return usage_error("--keep must be a number of checkpoints >= 1 (got '%s')", optarg);
			a->keep = (unsigned)v;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case ':':
			return usage_error("option '%s' needs a value", argv[optind - 1]);
		default:
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (a->restore) {
		if (optind >= argc)
			return usage_error("%s", "restore needs a checkpoint ID");
		a->restore_arg = argv[optind];
		optind++;
		if (!a->mo.store_dir)
			return usage_error("%s", "restore needs --store DIR");
		if (a->vm_flags)
			return usage_error("%s", "restore takes the VM's configuration from the checkpoint: "
					   "--kernel, --mem, --cpus, --args and --entry do not apply");
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if ((a->every_ns || a->keep) && !a->mo.store_dir)
		return usage_error("%s", "--checkpoint-every and --keep need --store DIR");
	if (a->mo.store_dir && cli_check_store(NULL, a->mo.store_dir, a->restore))
		return EXIT_USAGE;
	if (a->control && check_control_path(a->control))
		return EXIT_USAGE;
	if (a->restore)
		return 0;
	if (!cfg->kernel[0])
		return usage_error("%s", "run needs --kernel FILE");
	if (access(cfg->kernel, R_OK) || stat(cfg->kernel, &st)) {
		fprintf(stderr, "rewind: error: cannot read kernel '%s': %s\n", cfg->kernel,
			strerror(errno));
		return EXIT_USAGE;
	}
	if (!S_ISREG(st.st_mode)) {
		fprintf(stderr, "rewind: error: kernel '%s' is not a regular file\n", cfg->kernel);
		return EXIT_USAGE;
	}
	for (unsigned i = 0; i < cfg->ndisks; i++) {
		char *d = cfg->disks[i].path, abs[PATH_MAX];
		int fd = open(d, O_RDONLY | O_CLOEXEC);

		if (fd < 0)
			return input_error("--disk", d, strerror(errno));
		close(fd);
		/* the checkpoint keeps where the disk is, wherever it is restored from */
		if (!realpath(d, abs) || strlen(abs) >= sizeof(cfg->disks[i].path))
			return input_error("--disk", d, "cannot make its path absolute");
		snprintf(d, sizeof(cfg->disks[i].path), "%s", abs);
	}
	return 0;
}

/* The checkpoint restore names: an id, or a label looked up in the store. */
static int restore_id(struct run_args *a)
{
	struct store_open_opts so = { 0 };
	struct store *s;
	int ret;

	if (rw_parse_uint(a->restore_arg, 1, UINT64_MAX, &a->restore_id) == 0)
		return 0;
	ret = store_open(a->mo.store_dir, &so, &s);
	if (ret) {
		rw_error("opening store %s: %s", a->mo.store_dir,
			 store_error_detail() ? store_error_detail() : rw_strerror(ret));
		return 1;
	}
	ret = cli_checkpoint_arg("restore", s, a->restore_arg, &a->restore_id);
	store_close(s);
	return ret;
}

static int run_machine(int argc, char **argv, bool restore)
{
	struct run_args a;
	struct vm_stop_info st;
	struct control *ctl = NULL;
	struct machine *m;
	int ret;

	memset(&a, 0, sizeof(a));
	config_init(&a.cfg);
	a.restore = restore;
	a.mo.console_stdin = true;
	a.mo.on_report = print_report;
	a.mo.opaque = &a;
	ret = parse_run(argc, argv, &a);
	if (ret)
		return ret;
	/* a store this run creates is removed again if the run cannot start */
	bool new_store = a.mo.store_dir && cli_path_missing(a.mo.store_dir);
	if (restore) {
		ret = restore_id(&a);
		if (ret)
			return ret;
		a.mo.serial_out = a.cfg.serial_out;
		a.mo.disk_paths = a.moved;
		a.mo.ndisk_paths = a.nmoved;
		struct cli_bar bar = CLI_BAR("restore", !a.json);
		a.mo.progress = cli_bar_cb;
		a.mo.progress_arg = &bar;
		ret = machine_restore(a.restore_id, &a.mo, &m);
		cli_bar_end(&bar);
	}
	else
		ret = machine_create(&a.cfg, &a.mo, &m);
	if (ret) {
		if (new_store)
			store_remove_new(a.mo.store_dir);
		/* the layer that failed has said what; a bad image or a checkpoint
		 * that is not in the store is a usage error */
		if (!restore && (ret == RW_EBADIMAGE || ret == -ENOENT || ret == -EACCES ||
				 ret == -EISDIR))
			return EXIT_USAGE;
		if (restore && (ret == RW_ENOTFOUND || ret == -ENOENT || ret == -EACCES))
			return EXIT_USAGE; /* no such checkpoint, or a disk not where it was */
		return 1;
	}
	/* the socket is up before the guest runs, so a client never misses it */
	if (a.control) {
		if (control_start(m, a.control, &ctl)) {
			machine_destroy(m); /* control_start said why */
			if (new_store)
				store_remove_new(a.mo.store_dir);
			return 1;
		}
		control_set_status_extra(ctl, status_extra, &a);
	}
	if (a.keep)
		machine_set_retention(m, a.keep);
	ret = machine_start(m);
	if (ret) {
		rw_error("starting the VM: %s", rw_strerror(ret));
		control_stop(ctl);
		machine_destroy(m);
		return 1;
	}
	if (a.every_ns && sched_start(m, a.every_ns, print_skip, &a, &a.sched)) {
		rw_error("starting the checkpoint schedule failed");
		control_stop(ctl);
		machine_destroy(m);
		return 1;
	}
	machine_wait(m, &st);
	control_stop(ctl);
	sched_stop(a.sched);
	machine_destroy(m);
	return report_stop(&st);
}

static int cmd_run(int argc, char **argv)
{
	return run_machine(argc, argv, false);
}

static int cmd_restore(int argc, char **argv)
{
	return run_machine(argc, argv, true);
}

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
};

static const struct command commands[] = {
	{ "run", cmd_run },
	{ "restore", cmd_restore },
	{ "ctl", cli_ctl_main },
	{ "demo", cli_demo_main },
	{ "fuzz-share", cli_fuzz_share_main },
	{ "fuzz-replay", cli_fuzz_replay_main },
};

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
		printf("rewind %s\n", REWIND_VERSION);
		return 0;
	}
	for (unsigned i = 0; i < ARRAY_SIZE(commands); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].fn(argc - 1, argv + 1);
	if (cli_store_has(argv[1]))
		return cli_store_main(argv[1], argc - 1, argv + 1);
	return usage_error("unknown command '%s'", argv[1]);
}
