/*
 * cli_fuzz.c - `rewind fuzz-share` and `rewind fuzz-replay` (cli_fuzz.h).
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_args.h"
#include "cli_fuzz.h"
#include "fuzz_share.h"
#include "log.h"
#include "memory.h"
#include "rewind.h"
#include "util.h"

#define EXIT_RUNTIME 1
#define EXIT_CRASH 3
#define EXIT_FATAL 4
#define EXIT_TIMEOUT 5

void cli_fuzz_usage(FILE *f)
{
	fprintf(f,
		"  rewind fuzz-share DIR --kernel FILE [--mem SIZE] [--payload-size N]\n"
		"                    [--timeout MS] [--args STR] [--no-coverage] [--json]\n"
		"      make DIR (created if missing) a share directory for afl-fuzz -X: the\n"
		"      image is copied in, the settings go to DIR/" FUZZ_SHARE_CONFIG ". Then:\n"
		"      AFL_PATH=<dir of libnyx.so> afl-fuzz -X -i IN -o OUT -- DIR\n"
		"      --kernel FILE     the guest image, built with the SDK's coverage runtime\n"
		"      --mem SIZE        guest RAM, 16M to 64G (default 64M)\n"
		"      --payload-size N  the most bytes of an input the guest is handed\n"
		"                        (1 to 16M, default 1M)\n"
		"      --timeout MS      the longest run, in ms or with a unit (500ms, 2s);\n"
		"                        0 = none (default 1000; afl-fuzz sets its own -t)\n"
		"      --args STR        argument string handed to the guest program\n"
		"      --no-coverage     the guest announces no coverage map (runs, but\n"
		"                        afl-fuzz needs coverage)\n"
		"  rewind fuzz-replay DIR FILE... [--console FILE] [--json]\n"
		"      run each input file from the guest's snapshot, as afl-fuzz did, and\n"
		"      print how it ended (a crash's vector, RIP, error code and CR2);\n"
		"      --console FILE (or -) shows the guest's console\n"
		"      exit status: 0 every input said done, else for the first that did\n"
		"      not: 3 crash (or exit), 4 the VM died, 5 timeout\n");
}

static int print_json(json_t *o)
{
	int rc = 0;

	if (!o) {
		rw_error("out of memory");
		return EXIT_RUNTIME;
	}
	if (json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER) || fputc('\n', stdout) == EOF)
		rc = EXIT_RUNTIME;
	json_decref(o);
	fflush(stdout);
	return rc;
}

/*
 * The directory holding libnyx.so beside this rewind: build/nyx in the
 * build tree, <libdir>/rewind/nyx when installed. Empty if neither has it.
 */
static void find_libnyx(char *out, size_t n)
{
	static const char *const rel[] = { "nyx", REWIND_NYX_FROM_BINDIR };
	char exe[PATH_MAX], dir[PATH_MAX + 64], real[PATH_MAX];
	ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	out[0] = 0;
	if (len <= 0)
		return;
	exe[len] = 0;
	char *d = dirname(exe);
	for (size_t i = 0; i < ARRAY_SIZE(rel); i++) {
		snprintf(dir, sizeof(dir), "%s/%s/libnyx.so", d, rel[i]);
		if (access(dir, R_OK) == 0 && realpath(dir, real)) {
			snprintf(out, n, "%s", dirname(real));
			return;
		}
	}
}

enum { OPT_KERNEL = 0x100, OPT_MEM, OPT_PAYLOAD, OPT_TIMEOUT, OPT_ARGS, OPT_NO_COV, OPT_JSON,
       OPT_CONSOLE, OPT_LOG_LEVEL };

/*
 * The options both commands take (--json, --log-level, --help) and getopt's
 * complaints about the rest. Returns -1 to go on, else the status to exit with.
 */
static int common_option(const char *cmd, int c, char **argv, bool *json)
{
	enum rw_log_level l;

	switch (c) {
	case OPT_JSON:
		*json = true;
		return -1;
	case OPT_LOG_LEVEL:
		if (rw_log_parse_level(optarg, &l))
			return cli_usage_error(cmd, "unknown --log-level '%s'", optarg);
		rw_log_set_level(l);
		return -1;
	case 'h':
		printf("usage:\n");
		cli_fuzz_usage(stdout);
		return 0;
	case ':':
		return cli_usage_error(cmd, "option '%s' needs a value", argv[optind - 1]);
	default:
		return cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
	}
}

/* ----------------------------------------------------------- fuzz-share */

/* Undo a share directory this command created and could not finish. */
static void remove_share(const char *dir, const char *kernel)
{
	static const char *const files[] = { FUZZ_SHARE_CONFIG, FUZZ_SHARE_MARKER };
	char path[PATH_MAX + 300];

	snprintf(path, sizeof(path), "%s/%s", dir, kernel);
	unlink(path);
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
}

static int parse_timeout_ms(const char *s, uint32_t *ms)
{
	uint64_t v;

	if (rw_parse_uint(s, 0, FUZZ_SHARE_TIMEOUT_MAX_MS, &v) == 0) {
		*ms = (uint32_t)v;
		return 0;
	}
	if (rw_parse_duration(s, &v) || v % 1000000 || v / 1000000 > FUZZ_SHARE_TIMEOUT_MAX_MS)
		return -EINVAL;
	*ms = (uint32_t)(v / 1000000);
	return 0;
}

int cli_fuzz_share_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, OPT_KERNEL },
		{ "mem", required_argument, NULL, OPT_MEM },
		{ "payload-size", required_argument, NULL, OPT_PAYLOAD },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "args", required_argument, NULL, OPT_ARGS },
		{ "no-coverage", no_argument, NULL, OPT_NO_COV },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *cmd = "fuzz-share", *kernel = NULL, *dir;
	struct fuzz_share s;
	char why[1024], base[PATH_MAX], libnyx[PATH_MAX];
	bool json = false;
	uint64_t v;
	int c, ret;

	fuzz_share_init(&s);
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_KERNEL:
			kernel = optarg;
			break;
		case OPT_MEM:
			if (rw_parse_size(optarg, &v) || v < RW_MEM_MIN || v > RW_MEM_MAX || v % (2 * MiB))
				return cli_usage_error(cmd, "--mem must be a multiple of 2M from 16M to "
						       "64G (got '%s')", optarg);
			s.mem_size = v;
			break;
		case OPT_PAYLOAD:
			if (rw_parse_size(optarg, &v) || v < 1 || v > FUZZ_SHARE_PAYLOAD_MAX)
				return cli_usage_error(cmd, "--payload-size must be from 1 to 16M bytes "
						       "(got '%s')", optarg);
			s.payload_size = (uint32_t)v;
			break;
		case OPT_TIMEOUT:
			if (parse_timeout_ms(optarg, &s.timeout_ms))
				return cli_usage_error(cmd, "--timeout must be milliseconds up to an hour, "
						       "or a duration such as 500ms or 2s (got '%s')",
						       optarg);
			break;
		case OPT_ARGS:
			if (strlen(optarg) > FUZZ_SHARE_ARGS_MAX)
				return cli_usage_error(cmd, "--args is longer than %d bytes",
						       FUZZ_SHARE_ARGS_MAX);
			snprintf(s.args, sizeof(s.args), "%s", optarg);
			break;
		case OPT_NO_COV:
			s.coverage = false;
			break;
		default:
			ret = common_option(cmd, c, argv, &json);
			if (ret >= 0)
				return ret;
		}
	}
	if (optind >= argc)
		return cli_usage_error(cmd, "a share directory DIR is needed");
	dir = argv[optind++];
	if (optind < argc)
		return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
	if (!kernel)
		return cli_usage_error(cmd, "--kernel FILE is needed");
	if (fuzz_share_check_image(kernel, why, sizeof(why)))
		return cli_usage_error(cmd, "--kernel %s", why);
	snprintf(base, sizeof(base), "%s", kernel);
	snprintf(s.kernel, sizeof(s.kernel), "%s", basename(base));
	if (fuzz_share_check(&s, why, sizeof(why)))
		return cli_usage_error(cmd, "%s", why);

	/* a wrong DIR is the user's to fix: refused before anything is written */
	struct stat st;
	bool created = false;
	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			return cli_usage_error(cmd, "%s: not a directory", dir);
	} else if (errno == ENOENT) {
		char parent[PATH_MAX];

		snprintf(parent, sizeof(parent), "%s", dir);
		char *p = dirname(parent);
		if (stat(p, &st) || !S_ISDIR(st.st_mode))
			return cli_usage_error(cmd, "%s: its directory %s does not exist", dir, p);
		created = true;
	} else {
		return cli_usage_error(cmd, "%s: %s", dir, strerror(errno));
	}

	ret = fuzz_share_save(dir, kernel, &s, why, sizeof(why));
	if (ret) {
		rw_error("%s: %s", cmd, why);
		if (created)
			remove_share(dir, s.kernel);
		return EXIT_RUNTIME;
	}
	find_libnyx(libnyx, sizeof(libnyx));
	if (json) {
		json_t *o = json_object();
		json_object_set_new(o, "share_dir", json_string(dir));
		json_object_set_new(o, "config", fuzz_share_json(&s));
		json_object_set_new(o, "libnyx_dir", libnyx[0] ? json_string(libnyx) : json_null());
		return print_json(o);
	}
	printf("share directory %s: guest %s, %llu MiB of RAM, inputs of up to %u bytes, timeout ",
	       dir, s.kernel, (unsigned long long)(s.mem_size >> 20), s.payload_size);
	if (s.timeout_ms)
		printf("%u ms", s.timeout_ms);
	else
		printf("none");
	printf(", args \"%s\"%s\n", s.args, s.coverage ? "" : ", no coverage");
	printf("fuzz it with: AFL_PATH=%s afl-fuzz -X -i IN -o OUT -- %s\n",
	       libnyx[0] ? libnyx : "<the directory of rewind's libnyx.so>", dir);
	return 0;
}

/* ---------------------------------------------------------- fuzz-replay */

/* At most max bytes of path into *buf (malloc'ed); 0 or -errno. */
static int read_input(const char *path, size_t max, uint8_t **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *p;
	size_t got;
	int err;

	if (!f)
		return -errno;
	p = malloc(max ? max : 1);
	if (!p) {
		fclose(f);
		return -ENOMEM;
	}
	got = fread(p, 1, max, f);
	err = ferror(f) ? -EIO : 0;
	fclose(f);
	if (err) {
		free(p);
		return err;
	}
	*buf = p;
	*len = got;
	return 0;
}

static int exit_for(const struct rewind_event *ev)
{
	switch (ev->kind) {
	case REWIND_EV_DONE:
		return 0;
	case REWIND_EV_FATAL:
		return EXIT_FATAL;
	case REWIND_EV_TIMEOUT:
		return EXIT_TIMEOUT;
	default:
		return EXIT_CRASH;
	}
}

static json_t *event_json(const char *input, size_t len, const struct rewind_event *ev,
			  const char *line)
{
	json_t *o = json_object();

	json_object_set_new(o, "input", json_string(input));
	json_object_set_new(o, "bytes", json_integer((json_int_t)len));
	json_object_set_new(o, "event", json_string(fuzz_share_event_name(ev->kind)));
	json_object_set_new(o, "outcome",
			    json_string(fuzz_share_outcome_name(fuzz_share_outcome(ev->kind))));
	json_object_set_new(o, "description", json_string(line));
	if (ev->kind == REWIND_EV_DONE || ev->kind == REWIND_EV_EXIT)
		json_object_set_new(o, "status", json_integer((json_int_t)ev->status));
	if (ev->kind == REWIND_EV_CRASH) {
		if (ev->vector != REWIND_NO_VECTOR) {
			json_object_set_new(o, "vector", json_integer(ev->vector));
			json_object_set_new(o, "error_code", json_integer((json_int_t)ev->error_code));
			json_object_set_new(o, "cr2", json_integer((json_int_t)ev->cr2));
		} else {
			json_object_set_new(o, "code", json_integer((json_int_t)ev->code));
		}
		json_object_set_new(o, "pc", json_integer((json_int_t)ev->pc));
	}
	if (ev->kind == REWIND_EV_FATAL || ev->kind == REWIND_EV_TIMEOUT)
		json_object_set_new(o, "message", json_string(ev->message));
	return o;
}

int cli_fuzz_replay_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "console", required_argument, NULL, OPT_CONSOLE },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *cmd = "fuzz-replay", *console = NULL, *dir;
	struct fuzz_share s;
	struct rewind_vm *vm;
	struct rewind_event ev;
	char why[1024], line[1024];
	bool json = false;
	int c, ret, status = 0;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_CONSOLE:
			console = optarg;
			break;
		default:
			ret = common_option(cmd, c, argv, &json);
			if (ret >= 0)
				return ret;
		}
	}
	if (optind >= argc)
		return cli_usage_error(cmd, "a share directory DIR is needed");
	dir = argv[optind++];
	if (optind >= argc)
		return cli_usage_error(cmd, "at least one input FILE is needed");
	ret = fuzz_share_load(dir, &s, why, sizeof(why));
	if (ret)
		return cli_usage_error(cmd, "%s", why);
	for (int i = optind; i < argc; i++) {
		if (access(argv[i], R_OK))
			return cli_usage_error(cmd, "input %s: %s", argv[i], strerror(errno));
	}
	ret = fuzz_share_boot(&s, console, &vm, why, sizeof(why));
	if (ret) {
		rw_error("%s: share directory %s: %s", cmd, dir, why);
		return EXIT_RUNTIME;
	}
	for (int i = optind; i < argc; i++) {
		uint8_t *in = NULL;
		size_t len = 0;

		if (i > optind && (ret = rewind_reset(vm))) {
			rw_error("%s: resetting the VM: %s", cmd, rewind_strerror(ret));
			status = EXIT_RUNTIME;
			break;
		}
		/* as libnyx.so hands it over: at most payload_size bytes */
		ret = read_input(argv[i], s.payload_size, &in, &len);
		if (ret) {
			rw_error("%s: input %s: %s", cmd, argv[i], strerror(-ret));
			status = EXIT_RUNTIME;
			break;
		}
		ret = rewind_set_payload(vm, in, len);
		free(in);
		if (!ret)
			ret = rewind_run(vm, &ev);
		if (ret) {
			rw_error("%s: input %s: running the guest: %s", cmd, argv[i], rewind_strerror(ret));
			status = EXIT_RUNTIME;
			break;
		}
		fuzz_share_describe(&ev, line, sizeof(line));
		if (json)
			print_json(event_json(argv[i], len, &ev, line));
		else
			printf("%s: %s\n", argv[i], line);
		fflush(stdout);
		if (!status)
			status = exit_for(&ev);
	}
	rewind_destroy(vm);
	return status;
}
