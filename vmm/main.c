/*
 * main.c - the rewind command line.
 *
 * Exit status: the guest's exit code for `run`; 2 for a usage error (bad
 * flag, missing or unreadable file, not a kernel); 1 when rewind itself
 * fails; 3 when the guest reported a crash; 4 when the guest died (triple
 * fault, emulation failure, failed VM entry).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "board.h"
#include "cli_store.h"
#include "console.h"
#include "err.h"
#include "log.h"
#include "util.h"
#include "vm.h"

#define EXIT_USAGE 2
#define EXIT_CRASH 3
#define EXIT_FATAL 4

static void usage(FILE *f)
{
	fprintf(f,
		"usage: rewind COMMAND [OPTIONS]\n"
		"\n"
		"Run a VM:\n"
		"  rewind run --kernel FILE [--mem SIZE] [--cpus N] [--args STR]\n"
		"             [--entry kernel|user] [--serial-out FILE] [--no-stdin]\n"
		"      --kernel FILE     guest image (a static ELF64, e.g. from the guest SDK)\n"
		"      --mem SIZE        guest RAM, 16M to 64G, suffix K, M or G (default 64M)\n"
		"      --cpus N          vCPUs, 1 to 64 (default 1)\n"
		"      --args STR        argument string handed to the guest program\n"
		"      --entry MODE      kernel: start at CPL0 in the SDK kernel (default);\n"
		"                        user: the VMM enters the CPL3 program directly\n"
		"      --serial-out FILE write the guest console to FILE instead of stdout\n"
		"      --no-stdin        do not feed stdin to the guest console\n"
		"\n"
		"Inspect and manage a checkpoint store:\n");
	cli_store_usage(f);
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

/* Quit key on a raw terminal: stop the VM. */
static void on_console_quit(void *opaque)
{
	struct vm *vm = opaque;
	struct vm_stop_info why = { .reason = VM_STOP_REQUEST };

	snprintf(why.msg, sizeof(why.msg), "stopped from the console");
	vm_request_stop(vm, &why);
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
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* Parse `run` options into cfg. Returns 0 or the exit status to use. */
static int parse_run(int argc, char **argv, struct vm_config *cfg)
{
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
			break;
		case OPT_MEM:
			if (rw_parse_size(optarg, &v) || v < RW_MEM_MIN || v > RW_MEM_MAX)
				return usage_error("--mem must be between 16M and 64G (got '%s')", optarg);
			if (v % (2 * MiB))
				return usage_error("--mem must be a multiple of 2M (got '%s')", optarg);
			cfg->mem_size = v;
			break;
		case OPT_CPUS:
			if (rw_parse_uint(optarg, 1, RW_MAX_CPUS, &v))
				return usage_error("--cpus must be between 1 and 64 (got '%s')", optarg);
			cfg->ncpus = (unsigned)v;
			break;
		case OPT_ARGS:
			if (strlen(optarg) >= sizeof(cfg->args))
				return usage_error("--args is longer than 4095 bytes%s", "");
			strcpy(cfg->args, optarg);
			break;
		case OPT_ENTRY:
			if (strcmp(optarg, "kernel") == 0)
				cfg->entry = VM_ENTRY_KERNEL;
			else if (strcmp(optarg, "user") == 0)
				cfg->entry = VM_ENTRY_USER;
			else
				return usage_error("--entry must be 'kernel' or 'user' (got '%s')", optarg);
			break;
		case OPT_SERIAL_OUT:
			if (strlen(optarg) >= sizeof(cfg->serial_out))
				return usage_error("--serial-out path too long: %s", optarg);
			strcpy(cfg->serial_out, optarg);
			break;
		case OPT_NO_STDIN:
			cfg->serial_in = false;
			break;
		case OPT_LOG_LEVEL: {
			enum rw_log_level l;
			if (rw_log_parse_level(optarg, &l))
				return usage_error("unknown --log-level '%s'", optarg);
			rw_log_set_level(l);
			break;
		}
		case 'h':
			usage(stdout);
			exit(0);
		case ':':
			return usage_error("option '%s' needs a value", argv[optind - 1]);
		default:
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
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
	return 0;
}

static int cmd_run(int argc, char **argv)
{
	struct vm_config cfg;
	struct vm_stop_info st;
	struct console *con = NULL;
	struct vm *vm;
	int ret;

	config_init(&cfg);
	ret = parse_run(argc, argv, &cfg);
	if (ret)
		return ret;
	ret = vm_create(&cfg, &vm);
	if (ret) {
		if (ret != RW_ENOKVMCAP)
			rw_error("cannot create the VM: %s", rw_strerror(ret));
		return 1;
	}
	ret = board_build(vm);
	if (ret) {
		vm_destroy(vm);
		return 1;
	}
	ret = vm_boot(vm);
	if (ret) {
		vm_destroy(vm);
		return (ret == RW_EBADIMAGE || ret == -ENOENT || ret == -EACCES) ? EXIT_USAGE : 1;
	}
	if (cfg.serial_in) {
		ret = console_attach(vm, board_serial(vm), STDIN_FILENO, on_console_quit, vm, &con);
		if (ret) {
			rw_error("attaching stdin to the console: %s", rw_strerror(ret));
			vm_destroy(vm);
			return 1;
		}
	}
	ret = vm_start(vm);
	if (ret) {
		rw_error("starting the VM: %s", rw_strerror(ret));
		console_detach(con);
		vm_destroy(vm);
		return 1;
	}
	vm_wait(vm, &st);
	console_detach(con);
	vm_destroy(vm);
	return report_stop(&st);
}

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
};

static const struct command commands[] = {
	{ "run", cmd_run },
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
